package stomp_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	gostomp "github.com/go-stomp/stomp/v3"

	"github.com/edgeway/edgeway/agent/auth"
	"github.com/edgeway/edgeway/agent/gateway"
)

func TestConnectVersions(t *testing.T) {
	e := newEnv(t, conf(""))
	for _, v := range []gostomp.Version{gostomp.V10, gostomp.V11, gostomp.V12} {
		t.Run(string(v), func(t *testing.T) {
			c := dialAddr(t, e.addr(), gostomp.ConnOpt.AcceptVersion(v))
			if c.Version() != v {
				t.Fatalf("version = %s, want %s", c.Version(), v)
			}
			if !strings.HasPrefix(c.Server(), "edgeway-stomp/") {
				t.Fatalf("server = %q", c.Server())
			}
			roundTrip(t, c, "versions/"+strings.ReplaceAll(string(v), ".", "_"))
		})
	}
	t.Run("STOMP command", func(t *testing.T) {
		c := dialAddr(t, e.addr(), gostomp.ConnOpt.UseStomp)
		if c.Version() != gostomp.V12 {
			t.Fatalf("version = %s", c.Version())
		}
	})
	t.Run("highest offered", func(t *testing.T) {
		f := e.raw().connect("accept-version:1.1,1.0,1.2")
		if got := f.Header.Get("version"); got != "1.2" {
			t.Fatalf("version = %q", got)
		}
	})
	t.Run("no accept-version means 1.0", func(t *testing.T) {
		f := e.raw().connect("login:x")
		if got := f.Header.Get("version"); got != "1.0" {
			t.Fatalf("version = %q", got)
		}
		if f.Header.Get("session") == "" {
			t.Fatal("no session header")
		}
	})
	t.Run("unsupported", func(t *testing.T) {
		r := e.raw()
		r.frame("CONNECT", "", "accept-version:2.0,3.1")
		f := r.expectError("Supported protocol versions are 1.0,1.1,1.2")
		if got := f.Header.Get("version"); got != "1.0,1.1,1.2" {
			t.Fatalf("version header = %q", got)
		}
	})
	t.Run("second CONNECT", func(t *testing.T) {
		r := e.raw()
		r.connect("accept-version:1.2")
		r.frame("CONNECT", "", "accept-version:1.2")
		r.expectError("Already connected")
	})
}

// roundTrip subscribes, sends with a receipt and checks the message.
func roundTrip(t *testing.T, c *gostomp.Conn, dest string) {
	t.Helper()
	sub, err := c.Subscribe(dest, gostomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	// No Unsubscribe: go-stomp v3.1.3 can miss the wake-up for its
	// RECEIPT and wait out the whole timeout. The subscription ends with
	// the connection.
	//
	// SUBSCRIBE has no receipt in go-stomp's API; a SEND with one after
	// it is processed after it, and its MESSAGE follows.
	if err := c.Send(dest, "text/plain", []byte("ping "+dest), gostomp.SendOpt.Receipt); err != nil {
		t.Fatalf("send: %v", err)
	}
	m := recv(t, sub)
	if string(m.Body) != "ping "+dest || m.Destination != dest {
		t.Fatalf("got %q on %q", m.Body, m.Destination)
	}
}

func TestSubscribeSendRoundTrip(t *testing.T) {
	e := newEnv(t, conf(""))
	obs := e.observe("rt/#", 0)
	c := e.dial()
	roundTrip(t, c, "rt/a")
	d := obs.next(t)
	if d.Msg.Topic != "rt/a" || string(d.Msg.Payload) != "ping rt/a" || d.Msg.Gateway != "stomp" {
		t.Fatalf("broker saw %+v", d.Msg)
	}

	// The MESSAGE frame as it is on the wire.
	r := e.raw()
	r.connect("accept-version:1.2")
	r.frame("SUBSCRIBE", "", "id:s1", "destination:rt/b", "receipt:sub")
	r.until("sub")
	e.publish("rt/b", "bin\x00ary", 0)
	f := r.read()
	h := headers(f)
	if f.Command != "MESSAGE" || h["subscription"] != "s1" || h["destination"] != "rt/b" || h["message-id"] == "" ||
		h["content-length"] != "7" || string(f.Body) != "bin\x00ary" {
		t.Fatalf("MESSAGE %v %q", h, f.Body)
	}
	if _, ok := h["ack"]; ok {
		t.Fatal("ack header on an auto subscription")
	}
}

func TestWildcards(t *testing.T) {
	e := newEnv(t, conf(""))
	r := e.raw()
	r.connect("accept-version:1.2")
	r.frame("SUBSCRIBE", "", "id:plus", "destination:sensors/+/temp")
	r.frame("SUBSCRIBE", "", "id:hash", "destination:alerts/#", "receipt:subs")
	r.until("subs")
	for _, topic := range []string{"sensors/1/temp", "sensors/1/hum", "alerts", "alerts/a/b", "other/x", "sensors/2/temp"} {
		e.publish(topic, topic, 0)
	}
	got := map[string]string{}
	for _, f := range r.barrier("b") {
		got[string(f.Body)] = f.Header.Get("subscription")
	}
	want := map[string]string{"sensors/1/temp": "plus", "sensors/2/temp": "plus", "alerts": "hash", "alerts/a/b": "hash"}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("received %v, want %v", got, want)
	}
	// A wildcard is no destination for SEND.
	r.frame("SEND", "x", "destination:sensors/+/temp", "receipt:bad")
	f := r.expectError("Invalid destination")
	if f.Header.Get("receipt-id") != "bad" {
		t.Fatalf("ERROR without receipt-id: %v", headers(f))
	}
}

func TestCustomHeaders(t *testing.T) {
	e := newEnv(t, conf(""))
	obs := e.observe("hdr/#", 0)
	c := e.dial()
	sub, err := c.Subscribe("hdr/x", gostomp.AckAuto)
	if err != nil {
		t.Fatal(err)
	}
	err = c.Send("hdr/x", "application/json", []byte(`{"t":21.5}`),
		gostomp.SendOpt.Header("x-trace", "abc:def\nline2"),
		gostomp.SendOpt.Header("x-trace", "second"),
		gostomp.SendOpt.Header("qos", "1"),
		gostomp.SendOpt.Receipt)
	if err != nil {
		t.Fatal(err)
	}
	m := recv(t, sub)
	if m.ContentType != "application/json" || m.Header.Get("x-trace") != "abc:def\nline2" {
		t.Fatalf("headers %v", m.Header)
	}
	if _, ok := m.Header.Contains("qos"); ok {
		t.Fatal("qos header carried to subscribers")
	}
	d := obs.next(t)
	if d.Msg.QoS != 1 || d.Msg.Headers["x-trace"] != "abc:def\nline2" || d.Msg.Headers["content-type"] != "application/json" {
		t.Fatalf("broker message %+v", d.Msg)
	}
	if _, ok := d.Msg.Headers["receipt"]; ok {
		t.Fatal("receipt carried as a custom header")
	}

	// A 1.0 subscriber cannot be sent a line break: that header is left out.
	r := e.raw()
	r.connect("accept-version:1.0")
	r.frame("SUBSCRIBE", "", "destination:hdr/10", "receipt:s")
	r.until("s")
	r.frame("SEND", "x", "destination:hdr/10", "x-ok:a:b", "x-also:kept", "receipt:sent")
	if fs := r.until("sent"); len(fs) != 1 || headers(fs[0])["x-ok"] != "a:b" || headers(fs[0])["x-also"] != "kept" {
		t.Fatalf("1.0 round trip: %v", fs)
	}
	if _, err := e.b.Publish(brokerMsg("hdr/10", map[string]string{"x-ok": "a:b", "x-bad": "l1\nl2"})); err != nil {
		t.Fatal(err)
	}
	fs := r.barrier("b")
	if len(fs) != 1 {
		t.Fatalf("got %d frames", len(fs))
	}
	if h := headers(fs[0]); h["x-ok"] != "a:b" || h["x-bad"] != "" {
		t.Fatalf("1.0 MESSAGE headers %v", h)
	}
}

func TestReceipts(t *testing.T) {
	e := newEnv(t, conf(""))
	r := e.raw()
	r.connect("accept-version:1.2")
	for i, fr := range [][]string{
		{"SUBSCRIBE", "id:1", "destination:r/1"},
		{"SEND", "destination:r/2"},
		{"BEGIN", "transaction:t1"},
		{"SEND", "destination:r/2", "transaction:t1"},
		{"COMMIT", "transaction:t1"},
		{"BEGIN", "transaction:t2"},
		{"ABORT", "transaction:t2"},
		{"ACK", "id:999"},
		{"UNSUBSCRIBE", "id:1"},
	} {
		id := fmt.Sprintf("rc-%d", i)
		r.frame(fr[0], "", append(fr[1:], "receipt:"+id)...)
		if fs := r.until(id); len(fs) != 0 {
			t.Fatalf("%s: frames before the receipt: %v", fr[0], fs)
		}
	}
	r.frame("DISCONNECT", "", "receipt:bye")
	r.until("bye")
	r.expectClosed()

	// An ERROR echoes the receipt of the frame that caused it.
	r = e.raw()
	r.connect("accept-version:1.2")
	r.frame("SEND", "x", "receipt:r9")
	f := r.expectError("Missing destination")
	if f.Header.Get("receipt-id") != "r9" {
		t.Fatalf("ERROR %v", headers(f))
	}
}

func TestFramesBeforeConnect(t *testing.T) {
	e := newEnv(t, conf(""))
	for _, fr := range [][]string{
		{"SEND", "destination:a", "receipt:early"},
		{"SUBSCRIBE", "destination:a", "id:1"},
		{"BEGIN", "transaction:t"},
		{"SEND", "destination:a", "transaction:t"},
	} {
		t.Run(fr[0], func(t *testing.T) {
			r := e.raw()
			r.write("\n\n") // heart-beats are fine before CONNECT
			r.frame(fr[0], "x", fr[1:]...)
			f := r.expectError("Not connected")
			if fr[0] == "SEND" && strings.Contains(fr[2], "receipt") && f.Header.Get("receipt-id") != "early" {
				t.Fatalf("ERROR %v", headers(f))
			}
		})
	}
	if n := e.counter("gateway/stomp", "errors.not_connected"); n != 4 {
		t.Fatalf("errors.not_connected = %v", n)
	}
	if e.b.Stats().Published != 0 {
		t.Fatal("something was published")
	}
}

func TestStickyAndPartialFrames(t *testing.T) {
	e := newEnv(t, conf(""))
	r := e.raw()
	// Three frames in one write.
	r.write("CONNECT\naccept-version:1.2\n\n\x00" +
		"SUBSCRIBE\nid:1\ndestination:sticky\nreceipt:s\n\n\x00" +
		"SEND\ndestination:sticky\ncontent-length:2\n\nhi\x00\n")
	if f := r.read(); f.Command != "CONNECTED" {
		t.Fatalf("got %s", f.Command)
	}
	r.until("s")
	if f := r.read(); f.Command != "MESSAGE" || string(f.Body) != "hi" {
		t.Fatalf("got %s %q", f.Command, f.Body)
	}
	// One frame cut after its headers, then byte by byte.
	frame := "SEND\ndestination:sticky\nreceipt:p\n\npartial\x00"
	cut := strings.Index(frame, "\n\n") + 2
	r.write(frame[:cut])
	time.Sleep(20 * time.Millisecond)
	for i := cut; i < len(frame); i++ {
		r.write(frame[i : i+1])
	}
	fs := r.until("p")
	if len(fs) != 1 || string(fs[0].Body) != "partial" {
		t.Fatalf("got %v", bodies(fs))
	}
}

func TestFrameLimits(t *testing.T) {
	e := newEnv(t, conf(""))
	other := e.dial()
	roundTrip(t, other, "limits/before")
	for _, tc := range []struct {
		name, frame, message, kind string
	}{
		{"too many headers", "SEND\ndestination:a\n" + strings.Repeat("x:y\n", 10) + "\nbody\x00", "Too many headers", "too_many_headers"},
		{"too long header", "SEND\ndestination:a\nx:" + strings.Repeat("y", 1100) + "\n\nbody\x00", "Header too long", "header_too_long"},
		{"too long body", "SEND\ndestination:a\n\n" + strings.Repeat("b", 65537) + "\x00", "Body too long", "body_too_long"},
		{"too long announced body", "SEND\ndestination:a\ncontent-length:70000\n\n", "Body too long", "body_too_long"},
		{"too long frame in CONNECT", "CONNECT\naccept-version:1.2\nlogin:" + strings.Repeat("u", 2000) + "\n\n\x00", "Header too long", "header_too_long"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.raw()
			if !strings.HasPrefix(tc.frame, "CONNECT") {
				r.connect("accept-version:1.2")
			}
			before := e.counter("gateway/stomp", "errors."+tc.kind)
			r.write(tc.frame)
			r.expectError(tc.message)
			if got := e.counter("gateway/stomp", "errors."+tc.kind); got != before+1 {
				t.Fatalf("errors.%s = %v, want %v", tc.kind, got, before+1)
			}
			if got := e.counter("listener/stomp:tcp:default", "errors."+tc.kind); got < 1 {
				t.Fatalf("listener errors.%s = %v", tc.kind, got)
			}
			// Only that connection went.
			roundTrip(t, other, "limits/"+strings.ReplaceAll(tc.name, " ", "_"))
		})
	}
	if e.b.Stats().Published != 6 {
		t.Fatalf("published %d, want only the 6 round trips", e.b.Stats().Published)
	}
}

func TestFrameLimitsFromConfig(t *testing.T) {
	e := newEnv(t, conf(`frame.max_headers = 3
frame.max_header_length = 100
frame.max_body_length = "1KB"`))
	r := e.raw()
	r.connect("accept-version:1.2")
	r.frame("SEND", strings.Repeat("b", 1024), "destination:a", "receipt:ok")
	r.until("ok")
	r.frame("SEND", "", "destination:a", "x:"+strings.Repeat("y", 100))
	r.expectError("Header too long")
	r = e.raw()
	r.connect("accept-version:1.2")
	r.frame("SEND", "", "destination:a", "a:1", "b:2", "c:3")
	r.expectError("Too many headers")
	r = e.raw()
	r.connect("accept-version:1.2")
	r.frame("SEND", strings.Repeat("b", 1025), "destination:a")
	r.expectError("Body too long")
}

func TestMalformedFrames(t *testing.T) {
	e := newEnv(t, conf(""))
	for _, tc := range []struct{ name, wire, message string }{
		{"bad escape", "SEND\ndestination:a\nx:\\t\n\n\x00", "Malformed frame"},
		{"no colon", "SEND\ndestination\n\n\x00", "Malformed frame"},
		{"unknown command", "PUBLISH\n\n\x00", "Unknown command"},
		{"server frame", "MESSAGE\n\n\x00", "Unknown command"},
		{"bad qos", "SEND\ndestination:a\nqos:3\n\n\x00", "Bad qos header"},
		{"bad ack mode", "SUBSCRIBE\nid:1\ndestination:a\nack:sometimes\n\n\x00", "Bad ack header"},
		{"missing id", "SUBSCRIBE\ndestination:a\n\n\x00", "Missing id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.raw()
			r.connect("accept-version:1.2")
			r.write(tc.wire)
			r.expectError(tc.message)
		})
	}
}

func TestHeartbeats(t *testing.T) {
	e := newEnv(t, conf(""))
	t.Run("server beats", func(t *testing.T) {
		r := e.raw()
		f := r.connect("accept-version:1.2", "heart-beat:0,100")
		if got := f.Header.Get("heart-beat"); got != "100,0" {
			t.Fatalf("heart-beat = %q", got)
		}
		_ = r.c.SetReadDeadline(time.Now().Add(450 * time.Millisecond))
		buf := make([]byte, 64)
		eols := 0
		for {
			n, err := r.c.Read(buf)
			eols += strings.Count(string(buf[:n]), "\n")
			if err != nil {
				break
			}
		}
		if eols < 3 {
			t.Fatalf("%d heart-beats in 450ms at 100ms", eols)
		}
	})
	t.Run("floor", func(t *testing.T) {
		r := e.raw()
		f := r.connect("accept-version:1.2", "heart-beat:10,20")
		if got := f.Header.Get("heart-beat"); got != "100,100" {
			t.Fatalf("heart-beat = %q", got)
		}
		r.frame("DISCONNECT", "")
	})
	t.Run("client beats keep it open", func(t *testing.T) {
		r := e.raw()
		r.connect("accept-version:1.2", "heart-beat:100,0")
		for range 8 {
			time.Sleep(50 * time.Millisecond)
			r.write("\n")
		}
		r.barrier("alive")
		r.frame("DISCONNECT", "")
	})
	t.Run("missed beats close", func(t *testing.T) {
		before := e.counter("gateway/stomp", "errors.heartbeat_timeout")
		r := e.raw()
		r.connect("accept-version:1.2", "heart-beat:100,0")
		start := time.Now()
		r.expectClosed()
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Fatalf("closed after %s, before two intervals", d)
		}
		eventually(t, "heartbeat_timeout counted", func() bool {
			return e.counter("gateway/stomp", "errors.heartbeat_timeout") == before+1
		})
	})
	t.Run("go-stomp both ways", func(t *testing.T) {
		c := e.dial(gostomp.ConnOpt.HeartBeat(150*time.Millisecond, 150*time.Millisecond), gostomp.ConnOpt.HeartBeatError(100*time.Millisecond))
		time.Sleep(700 * time.Millisecond)
		roundTrip(t, c, "hb/go")
	})
	t.Run("bad header", func(t *testing.T) {
		r := e.raw()
		r.frame("CONNECT", "", "accept-version:1.2", "heart-beat:fast")
		r.expectError("Bad heart-beat header")
	})
}

func TestAuthentication(t *testing.T) {
	hash, err := auth.HashPassword("s3cret", auth.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, `
[gateway.stomp]
[[gateway.stomp.authentication]]
type = "built_in"
[[gateway.stomp.authentication.users]]
user_id = "alice"
password_hash = "`+hash+`"

[gateway.stomp.listeners.tcp.default]
bind = "127.0.0.1:0"

[gateway.stomp.listeners.tcp.open]
bind = "127.0.0.1:0"
enable_authn = false
`)
	c := e.dial(gostomp.ConnOpt.Login("alice", "s3cret"))
	roundTrip(t, c, "auth/ok")
	for _, login := range [][2]string{{"alice", "wrong"}, {"mallory", "s3cret"}, {"", ""}} {
		r := e.raw()
		r.frame("CONNECT", "", "accept-version:1.2", "login:"+login[0], "passcode:"+login[1])
		r.expectError("Login failed")
	}
	if _, err := gostomp.Dial("tcp", e.addr(), gostomp.ConnOpt.Login("alice", "nope"), gostomp.ConnOpt.Logger(quietLogger{})); err == nil {
		t.Fatal("go-stomp connected with a wrong passcode")
	}
	if n := e.counter("gateway/stomp", "errors.auth_failed"); n != 4 {
		t.Fatalf("errors.auth_failed = %v", n)
	}
	// A listener with enable_authn = false lets anyone in.
	dialAddr(t, e.listenerAddr("stomp:tcp:open"))

	// Hardened profile, no authenticator: nobody gets in.
	h := newEnv(t, `
[gateway.stomp.listeners.tcp.default]
bind = "127.0.0.1:0"
`)
	r := h.raw()
	r.frame("CONNECT", "", "accept-version:1.2")
	r.expectError("Login failed")
}

func TestAuthorization(t *testing.T) {
	deny := gateway.AuthorizerFunc(func(ci *gateway.ClientInfo, a gateway.Action, topic string) bool {
		return !strings.HasPrefix(topic, "forbidden/")
	})
	e := newEnv(t, conf(""), withAuthorizer(deny))
	r := e.raw()
	r.connect("accept-version:1.2")
	r.frame("SEND", "x", "destination:allowed/a", "receipt:ok")
	r.until("ok")
	r.frame("SEND", "x", "destination:forbidden/a", "receipt:no")
	if f := r.expectError("Not authorized"); f.Header.Get("receipt-id") != "no" {
		t.Fatalf("ERROR %v", headers(f))
	}
	r = e.raw()
	r.connect("accept-version:1.2")
	r.frame("SUBSCRIBE", "", "id:1", "destination:forbidden/#")
	r.expectError("Not authorized")
	if e.b.Stats().Published != 1 {
		t.Fatalf("published %d", e.b.Stats().Published)
	}
}

func TestSubscriptionIDInUse(t *testing.T) {
	e := newEnv(t, conf(""))
	r := e.raw()
	r.connect("accept-version:1.2")
	r.frame("SUBSCRIBE", "", "id:1", "destination:a")
	r.frame("SUBSCRIBE", "", "id:1", "destination:b", "receipt:dup")
	if f := r.expectError("Subscription id in use"); f.Header.Get("receipt-id") != "dup" {
		t.Fatalf("ERROR %v", headers(f))
	}
	r = e.raw()
	r.connect("accept-version:1.2")
	r.frame("SUBSCRIBE", "", "id:1", "destination:a")
	r.frame("SUBSCRIBE", "", "id:2", "destination:a")
	r.expectError("Already subscribed")
}

func TestUnsubscribe(t *testing.T) {
	e := newEnv(t, conf(""))
	r := e.raw()
	r.connect("accept-version:1.1")
	r.frame("SUBSCRIBE", "", "id:u", "destination:un/sub", "receipt:s")
	r.until("s")
	e.publish("un/sub", "one", 0)
	r.frame("UNSUBSCRIBE", "", "id:u", "receipt:u")
	if fs := r.until("u"); len(fs) != 1 || string(fs[0].Body) != "one" {
		t.Fatalf("before UNSUBSCRIBE: %v", bodies(fs))
	}
	e.publish("un/sub", "two", 0)
	if fs := r.barrier("after"); len(fs) != 0 {
		t.Fatalf("after UNSUBSCRIBE: %v", bodies(fs))
	}
	// 1.0 subscribes and unsubscribes by destination.
	r = e.raw()
	r.connect()
	r.frame("SUBSCRIBE", "", "destination:un/10", "receipt:s")
	r.until("s")
	r.frame("UNSUBSCRIBE", "", "destination:un/10", "receipt:u")
	r.until("u")
	e.publish("un/10", "gone", 0)
	if fs := r.barrier("after"); len(fs) != 0 {
		t.Fatalf("after UNSUBSCRIBE: %v", bodies(fs))
	}
}

func TestMountpoint(t *testing.T) {
	e := newEnv(t, conf(`mountpoint = "site1/${username}/"`))
	obs := e.observe("site1/#", 0)
	r := e.raw()
	r.connect("accept-version:1.2", "login:alice")
	r.frame("SEND", "up", "destination:t/up", "receipt:s")
	r.until("s")
	if d := obs.next(t); d.Msg.Topic != "site1/alice/t/up" {
		t.Fatalf("broker topic %q", d.Msg.Topic)
	}
	r.frame("SUBSCRIBE", "", "id:1", "destination:down/+", "receipt:sub")
	r.until("sub")
	e.publish("site1/alice/down/x", "down", 0)
	e.publish("site1/bob/down/x", "not mine", 0)
	fs := r.barrier("b")
	if len(fs) != 1 || fs[0].Header.Get("destination") != "down/x" || string(fs[0].Body) != "down" {
		t.Fatalf("got %v", fs)
	}
	for _, c := range e.gw().Clients() {
		if _, ok := c.Subscriptions()["down/+"]; !ok {
			t.Fatalf("client subscriptions %v", c.Subscriptions())
		}
	}
}

func TestClientinfoOverride(t *testing.T) {
	e := newEnv(t, `
[gateway.stomp.clientinfo_override]
clientid = "${packet.headers.login}"
username = "user-${packet.headers.login}"

[[gateway.stomp.authentication]]
type = "anonymous"

[gateway.stomp.listeners.tcp.default]
bind = "127.0.0.1:0"
`)
	r := e.raw()
	f := r.connect("accept-version:1.2", "login:dev42")
	if f.Header.Get("session") != "dev42" {
		t.Fatalf("session = %q", f.Header.Get("session"))
	}
	c, ok := e.gw().Client("dev42")
	if !ok || c.Info().Username != "user-dev42" {
		t.Fatalf("client %v %+v", ok, c)
	}
	// Without override the clientid is random.
	e2 := newEnv(t, conf(""))
	a := e2.raw().connect("accept-version:1.2", "login:dev42").Header.Get("session")
	b := e2.raw().connect("accept-version:1.2", "login:dev42").Header.Get("session")
	if a == b || len(a) != 32 {
		t.Fatalf("clientids %q %q", a, b)
	}
}

func TestKick(t *testing.T) {
	e := newEnv(t, conf(""))
	r := e.raw()
	id := r.connect("accept-version:1.2").Header.Get("session")
	c, ok := e.gw().Client(id)
	if !ok {
		t.Fatal("client not in the table")
	}
	c.Kick("api")
	r.expectError("Connection closed by the gateway (api)")
	eventually(t, "client gone", func() bool { return e.gw().ClientCount() == 0 })
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, conf(""))
	c := e.dial()
	roundTrip(t, c, "m/a")
	_ = c.Disconnect()
	eventually(t, "disconnect", func() bool { return e.gw().ClientCount() == 0 })
	for set, want := range map[string]map[string]float64{
		"gateway/stomp": {
			"packets.connect.received": 1, "packets.subscribe.received": 1, "packets.send.received": 1,
			"packets.disconnect.received": 1, "packets.connected.sent": 1, "packets.message.sent": 1,
			"packets.receipt.sent": 2, "messages.received": 1, "messages.sent": 1,
		},
		"listener/stomp:tcp:default": {"packets.send.received": 1, "packets.message.sent": 1},
	} {
		for name, v := range want {
			if got := e.counter(set, name); got != v {
				t.Errorf("%s %s = %v, want %v", set, name, got, v)
			}
		}
	}
	if e.counter("gateway/stomp", "packets.received") < 4 || e.counter("gateway/stomp", "packets.sent") < 4 {
		t.Errorf("packets: %v", e.counter("gateway/stomp", "packets.received"))
	}
}

func TestIdleTimeout(t *testing.T) {
	e := newEnv(t, conf(`idle_timeout = "200ms"`))
	r := e.raw()
	start := time.Now()
	r.expectClosed()
	if time.Since(start) < 150*time.Millisecond {
		t.Fatal("closed early")
	}
	// A connected client is not subject to it.
	r = e.raw()
	r.connect("accept-version:1.2")
	time.Sleep(300 * time.Millisecond)
	r.barrier("alive")
}
