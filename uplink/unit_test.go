package uplink

import (
	"context"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/store"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// [uplink] snippets and the exact error each gives.
func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, toml, want string
	}{
		{"ok", "[uplink]\nserver = \"mqtts://iot.example.com:8883\"\nenvelope = \"json\"\ndownlink = [\"cmd/#\"]\necho_window = \"10s\"", ""},
		{"auto keepalive", "[uplink]\nkeepalive = \"auto\"", ""},
		{"envelope", "[uplink]\nenvelope = \"xml\"", `t.toml:2: uplink.envelope: must be "none" or "json", got "xml"`},
		{"downlink filter", "[uplink]\ndownlink = [\"cmd/#/x\"]", `t.toml:2: uplink.downlink[0]: bad topic filter "cmd/#/x": '#' must be the whole last level`},
		{"echo window", "[uplink]\necho_window = \"soon\"", `t.toml:2: uplink.echo_window: bad duration "soon" (want a number with a unit: ms, s, m, h, d)`},
		{"keepalive too short", "[uplink]\nkeepalive = \"500ms\"", `t.toml:2: uplink.keepalive: must be between 1s and 65535s (or "auto"), got "500ms"`},
		{"keepalive word", "[uplink]\nkeepalive = \"often\"", `t.toml:2: uplink.keepalive: bad duration "often" (want a number with a unit: ms, s, m, h, d) (or "auto")`},
		{"ping timeout", "[uplink]\nping_timeout = \"0s\"", `t.toml:2: uplink.ping_timeout: must be positive`},
		{"prefix wildcard", "[uplink]\ntopic_prefix = \"site/+/\"", `t.toml:2: uplink.topic_prefix: must not contain wildcards, got "site/+/"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := config.Parse([]byte(tc.toml), "t.toml")
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tc.want {
				t.Errorf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// What New refuses beyond the config file's own checks.
func TestNewErrors(t *testing.T) {
	base := func() config.Uplink { return testConfig("mqtt://127.0.0.1:1883") }
	for _, tc := range []struct {
		name string
		mod  func(*config.Uplink)
		want string
	}{
		{"no server", func(c *config.Uplink) { c.Server = "" }, "uplink: server: not set"},
		{"bad scheme", func(c *config.Uplink) { c.Server = "http://x:1" }, `uplink: server: unsupported scheme "http" (mqtt, mqtts, ws, wss)`},
		{"password not repeated", func(c *config.Uplink) { c.Server = "gopher://user:hunter2@x:1" }, `uplink: server: unsupported scheme "gopher" (mqtt, mqtts, ws, wss)`},
		{"empty client id", func(c *config.Uplink) { c.ClientID = config.AgentTemplate{} }, "uplink: client_id: must not be empty with clean_session = false"},
		{"bad status topic", func(c *config.Uplink) { c.StatusTopic = config.MustAgentTemplate("a/#") }, "uplink: status_topic: "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.mod(&cfg)
			_, err := New(cfg, Deps{Queue: newMemQueue(), AgentID: "gw1"})
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("error repeats the password: %v", err)
			}
		})
	}
	if _, err := New(base(), Deps{}); err == nil || err.Error() != "uplink: no queue" {
		t.Errorf("no queue: %v", err)
	}
}

func TestServerURLs(t *testing.T) {
	for _, tc := range []struct{ in, scheme, addr, ws string }{
		{"mqtt://h:1", "mqtt", "h:1", ""},
		{"tcp://h", "mqtt", "h:1883", ""},
		{"ssl://h", "mqtts", "h:8883", ""},
		{"tls://h:9", "mqtts", "h:9", ""},
		{"ws://h:8083", "ws", "h:8083", "ws://h:8083/mqtt"},
		{"wss://u:p@h/mqtt/v1?x=1", "wss", "h:443", "wss://h:443/mqtt/v1?x=1"},
		{"mqtt://[::1]:1883", "mqtt", "[::1]:1883", ""},
	} {
		var s settings
		if err := s.parseServer(tc.in); err != nil {
			t.Fatalf("%s: %v", tc.in, err)
		}
		if s.scheme != tc.scheme || s.addr != tc.addr || s.wsURL != tc.ws || strings.Contains(s.server, "p@") {
			t.Errorf("%s: got %s %s %s (%s)", tc.in, s.scheme, s.addr, s.wsURL, s.server)
		}
	}
}

func TestCovers(t *testing.T) {
	for _, tc := range []struct {
		d, f string
		want bool
	}{
		{"#", "a/b", true},
		{"#", "#", true},
		{"cmd/#", "cmd", true},
		{"cmd/#", "cmd/+/set", true},
		{"cmd/#", "cmd/#", true},
		{"cmd/#", "cmds/x", false},
		{"cmd/#", "#", false},
		{"cmd/+", "cmd/x", true},
		{"cmd/+", "cmd/+", true},
		{"cmd/+", "cmd/x/y", false},
		{"cmd/+", "cmd/#", false},
		{"cmd/+/set", "cmd//set", true},
		{"a/b", "a/b", true},
		{"a/b", "a/+", false},
		{"a", "a/b", false},
		{"a/b", "a", false},
		{"+/#", "x", true},
	} {
		if got := covers(tc.d, tc.f); got != tc.want {
			t.Errorf("covers(%q, %q) = %v, want %v", tc.d, tc.f, got, tc.want)
		}
	}
	s := &settings{downlink: []string{"#"}}
	if s.mirrors("$SYS/#") || !s.mirrors("cmd/x") {
		t.Error("$ topics must stay local, others go up")
	}
}

func TestBackoff(t *testing.T) {
	const i, m = time.Second, 60 * time.Second
	for _, tc := range []struct {
		failures int
		jitter   float64
		rnd      float64
		want     time.Duration
	}{
		{0, 0.2, 0.5, 100 * time.Millisecond}, // after a connection that held: a random share of jitter × initial
		{0, 0, 0.9, 0},
		{1, 0, 0.9, time.Second},
		{2, 0, 0.9, 2 * time.Second},
		{4, 0, 0.9, 8 * time.Second},
		{7, 0, 0.9, 60 * time.Second},
		{100, 0, 0.9, 60 * time.Second},
		{3, 0.5, 0, 2 * time.Second},   // 4s − 50 %
		{3, 0.5, 1, 6 * time.Second},   // 4s + 50 %
		{3, 0.5, 0.5, 4 * time.Second}, // middle
	} {
		if got := backoff(tc.failures, i, m, tc.jitter, tc.rnd); got != tc.want {
			t.Errorf("backoff(%d, jitter %v, rnd %v) = %s, want %s", tc.failures, tc.jitter, tc.rnd, got, tc.want)
		}
	}
}

func TestAutoKeepalive(t *testing.T) {
	var ka keepalive
	ka.init(autoKeepaliveStart, true)
	if ka.current() != 25*time.Second || ka.advertised() != 50*time.Second {
		t.Fatalf("start %s advertised %s", ka.current(), ka.advertised())
	}
	// Holding: +10 % after every autoGrowAfter answered idle pings.
	for i := 0; i < autoGrowAfter-1; i++ {
		ka.idleAnswered(50 * time.Second)
	}
	if ka.current() != 25*time.Second {
		t.Fatalf("grew early: %s", ka.current())
	}
	ka.idleAnswered(50 * time.Second)
	if ka.current() != 27500*time.Millisecond {
		t.Fatalf("after %d: %s, want 27.5s", autoGrowAfter, ka.current())
	}
	// Never beyond what the connection advertised.
	for i := 0; i < 100*autoGrowAfter; i++ {
		ka.idleAnswered(50 * time.Second)
	}
	if ka.current() != 50*time.Second {
		t.Fatalf("capped by advertised: %s", ka.current())
	}
	// An idle death halves it and puts a ceiling at 90 % of what failed.
	ka.idleDied()
	if ka.current() != 25*time.Second || ka.ceiling != 45*time.Second {
		t.Fatalf("after idle death: %s ceiling %s", ka.current(), ka.ceiling)
	}
	for i := 0; i < 100*autoGrowAfter; i++ {
		ka.idleAnswered(ka.advertised())
	}
	if ka.current() != 45*time.Second {
		t.Fatalf("capped by the ceiling: %s", ka.current())
	}
	// Bounds.
	for i := 0; i < 10; i++ {
		ka.idleDied()
	}
	if ka.current() != autoKeepaliveMin || ka.ceiling != autoKeepaliveMin {
		t.Fatalf("floor: %s ceiling %s", ka.current(), ka.ceiling)
	}
	var fixed keepalive
	fixed.init(25*time.Second, false)
	fixed.idleDied()
	fixed.idleAnswered(time.Hour)
	if fixed.current() != 25*time.Second || fixed.advertised() != 25*time.Second {
		t.Errorf("fixed keepalive moved: %s", fixed.current())
	}
}

func TestEchoCache(t *testing.T) {
	e := newEchoCache(time.Second)
	k := e.key("site/gw1/", "cmd/x", []byte("on"))
	if k != e.key("", "site/gw1/cmd/x", []byte("on")) {
		t.Fatal("the key depends on where the topic is split")
	}
	if k == e.key("site/gw1/", "cmd/x", []byte("off")) || k == e.key("site/gw1/", "cmd/xo", []byte("n")) {
		t.Fatal("different messages, same key")
	}
	e.record(k, 0)
	e.record(k, 10) // sent twice (a resend): two echoes expected
	if !e.take(k, 20) || !e.take(k, 30) || e.take(k, 40) {
		t.Fatal("want exactly two echoes taken")
	}
	e.record(k, 100)
	if e.take(k, 100+int64(time.Second)) {
		t.Fatal("an expired entry was taken")
	}
	// A taken entry expiring does not cut short a later one.
	e.record(k, 2e9)
	e.take(k, 2e9)
	e.record(k, 2e9+5e8)
	if !e.take(k, 3e9+1) {
		t.Fatal("the later entry went with the earlier one")
	}
	for i := 0; i < echoCapacity+10; i++ {
		e.record(uint64(i), 4e9)
	}
	if n := len(e.fifo) - e.head; n != echoCapacity {
		t.Fatalf("%d entries, want the cap %d", n, echoCapacity)
	}
}

func TestTokenBucket(t *testing.T) {
	var b tokenBucket
	b.init(100, 0) // 100/s, bursts of 10
	n := 0
	for b.take(0) == 0 {
		n++
	}
	if n != 10 {
		t.Fatalf("burst %d, want 10", n)
	}
	if w := b.take(0); w < 10*time.Millisecond || w > 12*time.Millisecond {
		t.Fatalf("wait %s, want about 10ms", w)
	}
	if b.take(int64(10*time.Millisecond)) != 0 {
		t.Fatal("no token after 10ms")
	}
}

// Golden envelopes: text and binary payloads.
func TestEnvelope(t *testing.T) {
	ts := time.Date(2026, 1, 2, 3, 4, 5, 123e6, time.FixedZone("CET", 3600))
	for _, tc := range []struct {
		name string
		m    store.Message
	}{
		{"text", store.Message{ID: "e1-42", Topic: "sensors/t", Payload: []byte("{\"t\":21.5}\n<&>"), QoS: 1, Gateway: "mqttsn", ClientID: "dev\"1", Time: ts}},
		{"binary", store.Message{ID: "e1-43", Topic: "jt808/13800000000/up", Payload: []byte{0x7e, 0x02, 0xff, 0x00}, QoS: 0, Retain: true, Gateway: "jt808", ClientID: "13800000000", Time: ts}},
		{"event", store.Message{ID: "e1-44", Topic: "edgeway/gw1/events", Payload: []byte(`{"event":"client.connected"}`), QoS: 1, Gateway: eventsGateway, ClientID: "dev1", Time: ts}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := appendEnvelope(nil, &tc.m, "gw-1")
			path := filepath.Join("testdata", "envelope_"+tc.name+".json")
			if *update {
				if err := os.WriteFile(path, append(got, '\n'), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got)+"\n" != string(want) {
				t.Errorf("got  %s\nwant %s", got, want)
			}
		})
	}
}

// Accept stores only what forward filters match; QoS 0 without
// store_qos0 never touches the queue.
func TestAcceptFiltersAndQoS0(t *testing.T) {
	cfg := testConfig("mqtt://127.0.0.1:1")
	cfg.Forward = []string{"sensors/#"}
	cfg.StoreQoS0 = false
	q := newMemQueue()
	u, err := New(cfg, Deps{Queue: q, AgentID: "gw1"})
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []*broker.Message{
		{Topic: "local/only", QoS: 1},
		{Topic: "sensors/t", QoS: 0}, // not connected: dropped, counted
		{Topic: "sensors/t", QoS: 1, Payload: []byte("x")},
		{Topic: "sensors/t", QoS: 2, Payload: []byte("y")},
	} {
		if err := u.Accept(m); err != nil {
			t.Fatal(err)
		}
	}
	if q.len() != 2 || u.Status().Dropped != 1 {
		t.Fatalf("queue %d dropped %d, want 2 and 1", q.len(), u.Status().Dropped)
	}
	q.onFull, q.maxBytes = store.Block, 1
	err = u.Accept(&broker.Message{Topic: "sensors/t", QoS: 1})
	if !errors.Is(err, store.ErrFull) {
		t.Fatalf("full store: %v", err)
	}
}

// Stop is idempotent, safe without Start, and Accept keeps storing after
// it; Start after Stop is refused.
func TestLifecycle(t *testing.T) {
	q := newMemQueue()
	u, err := New(testConfig("mqtt://127.0.0.1:1"), Deps{Queue: q, AgentID: "gw1"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := u.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := u.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := u.Start(ctx); err == nil {
		t.Fatal("start after stop")
	}
	if err := u.Accept(&broker.Message{Topic: "a", QoS: 1}); err != nil || q.len() != 1 {
		t.Fatalf("accept after stop: %v, %d queued", err, q.len())
	}

	u, _ = New(testConfig("mqtt://127.0.0.1:1"), Deps{Queue: q, AgentID: "gw1"})
	if err := u.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := u.Start(ctx); err == nil {
		t.Fatal("started twice")
	}
	eventually(t, 5*time.Second, "a failed attempt", func() bool { return u.Status().LastError != "" })
	if err := u.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if st := u.Status(); st.State != StateDisconnected || !strings.Contains(st.LastError, "127.0.0.1:1") {
		t.Fatalf("after stop: %+v", st)
	}
}
