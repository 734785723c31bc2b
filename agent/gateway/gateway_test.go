package gateway_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/agent/hooks"
	"github.com/edgeway/edgeway/agent/metrics"
	"github.com/edgeway/edgeway/internal/testkind"
)

type userList struct {
	Users []string `toml:"users"`
}

// listAuthn decides for the usernames it lists and ignores the rest.
type listAuthn struct {
	users    map[string]bool
	decision gateway.Decision
	attrs    map[string]string
	calls    *sync.Map
	name     string
}

func (a *listAuthn) Authenticate(_ context.Context, ci *gateway.ClientInfo) gateway.AuthResult {
	n, _ := a.calls.LoadOrStore(a.name, new(int))
	*(n.(*int))++
	if a.users["*"] || a.users[ci.Username] {
		return gateway.AuthResult{Decision: a.decision, ClientAttrs: a.attrs, Reason: a.name}
	}
	return gateway.AuthResult{Decision: gateway.Ignore}
}

var authCalls sync.Map

func TestMain(m *testing.M) {
	testkind.Register("linea")
	testkind.Register("lineb")
	for name, d := range map[string]gateway.Decision{"t_allow": gateway.Allow, "t_deny": gateway.Deny} {
		gateway.RegisterAuthn(gateway.AuthnType{
			Name:    name,
			NewSpec: func() any { return &userList{} },
			New: func(spec any, _ gateway.AuthnEnv) (gateway.Authenticator, error) {
				u := map[string]bool{}
				for _, x := range spec.(*userList).Users {
					u[x] = true
				}
				return &listAuthn{users: u, decision: d, calls: &authCalls, name: name}, nil
			},
		})
	}
	gateway.RegisterAuthn(gateway.AuthnType{
		Name: "t_attrs",
		New: func(any, gateway.AuthnEnv) (gateway.Authenticator, error) {
			return &listAuthn{users: map[string]bool{"*": true}, decision: gateway.Allow, attrs: map[string]string{"site": "plant7"}, calls: &authCalls, name: "t_attrs"}, nil
		},
	})
	os.Exit(m.Run())
}

type env struct {
	t      *testing.T
	m      *gateway.Manager
	b      *broker.Broker
	bus    *hooks.Bus
	events chan hooks.Event
}

func newEnv(t *testing.T, profile string, az gateway.Authorizer) *env {
	t.Helper()
	bus := hooks.New(hooks.Options{})
	e := &env{t: t, bus: bus, events: make(chan hooks.Event, 1000)}
	reg := metrics.NewRegistry()
	var m *gateway.Manager
	e.b = broker.New(broker.Options{OnDrop: func(s string, msg *broker.Message, r string) { m.OnDrop(s, msg, r) }})
	m = gateway.NewManager(gateway.ManagerOptions{Broker: e.b, Hooks: bus, Metrics: reg, Authorizer: az, SecurityProfile: profile,
		AgentVars: config.MapVars{"agent.id": "gw1"}})
	e.m = m
	cancel := bus.Subscribe("test", nil, 1000, func(ev hooks.Event) { e.events <- ev })
	t.Cleanup(func() {
		ctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		defer c()
		m.Close(ctx)
		cancel()
		bus.Close()
		e.b.Close()
	})
	return e
}

func parse(t *testing.T, src string) config.Gateways {
	t.Helper()
	c, err := config.Parse([]byte(src), "test.toml")
	if err != nil {
		t.Fatalf("config:\n%v", err)
	}
	return c.Gateways
}

func (e *env) apply(src string) {
	e.t.Helper()
	if err := e.m.Apply(context.Background(), parse(e.t, src)); err != nil {
		e.t.Fatalf("apply: %v", err)
	}
}

func (e *env) addr(gw, listener string) string {
	e.t.Helper()
	g, ok := e.m.Get(gw)
	if !ok {
		e.t.Fatalf("gateway %s not loaded", gw)
	}
	l, ok := g.Listener(listener)
	if !ok {
		e.t.Fatalf("listener %s not running", listener)
	}
	return l.Addr()
}

type tc struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

func dial(t *testing.T, addr string) *tc {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &tc{t: t, c: c, r: bufio.NewReader(c)}
}

func (c *tc) send(format string, args ...any) {
	c.t.Helper()
	if _, err := fmt.Fprintf(c.c, format+"\n", args...); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

// line reads the next line; a closed connection gives "EOF".
func (c *tc) line() string {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	s, err := c.r.ReadString('\n')
	if err != nil {
		if s != "" {
			return strings.TrimSpace(s)
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.t.Fatalf("no line within 5s")
		}
		return "EOF"
	}
	return strings.TrimSpace(s)
}

func (c *tc) expect(prefix string) string {
	c.t.Helper()
	l := c.line()
	if !strings.HasPrefix(l, prefix) {
		c.t.Fatalf("got %q, want prefix %q", l, prefix)
	}
	return l
}

func (c *tc) connect(clientid, user, pass string, extra ...string) {
	c.t.Helper()
	c.send("CONNECT %s %s %s %s", clientid, user, pass, strings.Join(extra, " "))
	c.expect("CONNACK ok")
}

func connected(t *testing.T, addr, clientid string) *tc {
	t.Helper()
	c := dial(t, addr)
	c.connect(clientid, "u", "p")
	return c
}

const twoGateways = `
[agent]
security_profile = "legacy"
[gateway.linea.listeners.tcp.one]
bind = "127.0.0.1:0"
[gateway.linea.listeners.tcp.two]
bind = "127.0.0.1:0"
[gateway.lineb.listeners.tcp.one]
bind = "127.0.0.1:0"
`

func TestPubSubAcrossGateways(t *testing.T) {
	e := newEnv(t, config.ProfileLegacy, nil)
	e.apply(twoGateways)
	sub := connected(t, e.addr("lineb", "lineb:tcp:one"), "s1")
	sub.send("SUB 1 sensors/+")
	sub.expect("SUBACK ok")
	pub := connected(t, e.addr("linea", "linea:tcp:one"), "p1")
	pub.send("PUB 1 sensors/t1 21.5")
	pub.expect("PUBACK ok")
	got := sub.expect("MSG ")
	var id uint64
	var qos int
	var topic, payload string
	fmt.Sscanf(got, "MSG %d %d %s %s", &id, &qos, &topic, &payload)
	if qos != 1 || topic != "sensors/t1" || payload != "21.5" || id == 0 {
		t.Fatalf("delivery %q", got)
	}
	sub.send("ACK %d", id)
	pub.send("PUB 0 other/x 1")
	pub.expect("PUBACK ok")
	pub.send("PUB 0 sensors/t2 2")
	pub.expect("PUBACK ok")
	if got := sub.expect("MSG "); !strings.HasSuffix(got, "sensors/t2 2") {
		t.Fatalf("unsubscribed topic leaked or order wrong: %q", got)
	}
	ga, _ := e.m.Get("linea")
	if n := ga.Metrics().Counter("messages.received").Load(); n != 3 {
		t.Errorf("linea messages.received = %d, want 3", n)
	}
	gb, _ := e.m.Get("lineb")
	if n := gb.Metrics().Counter("messages.sent").Load(); n != 2 {
		t.Errorf("lineb messages.sent = %d, want 2", n)
	}
}

func TestTakeoverSameClientID(t *testing.T) {
	e := newEnv(t, config.ProfileLegacy, nil)
	e.apply(twoGateways)
	a := e.addr("linea", "linea:tcp:one")
	first := dial(t, a)
	first.connect("dev1", "u", "p", "persist")
	first.send("SUB 1 cmd/#")
	first.expect("SUBACK ok")
	// The same clientid in the other gateway is a different client.
	other := connected(t, e.addr("lineb", "lineb:tcp:one"), "dev1")

	second := dial(t, e.addr("linea", "linea:tcp:two"))
	second.send("CONNECT dev1 u p persist")
	if got := second.expect("CONNACK ok"); !strings.Contains(got, "true") {
		t.Fatalf("session not resumed on takeover: %q", got)
	}
	first.expect("KICK takenover")
	if got := first.line(); got != "EOF" {
		t.Fatalf("old connection still open: %q", got)
	}
	g, _ := e.m.Get("linea")
	if n := g.ClientCount(); n != 1 {
		t.Fatalf("linea clients = %d, want 1", n)
	}
	c, ok := g.Client("dev1")
	if !ok || c.Listener().ID() != "linea:tcp:two" {
		t.Fatalf("dev1 not on the new listener")
	}
	// The resumed session kept the subscription.
	pub := connected(t, a, "p")
	pub.send("PUB 1 cmd/reboot now")
	pub.expect("PUBACK ok")
	second.expect("MSG ")
	// The other gateway's dev1 was not touched.
	other.send("WHOAMI")
	other.expect("ME dev1")
	waitEvent(t, e.events, hooks.SessionTakenover, "dev1")
}

func TestUpdateListenerKeepsOtherClients(t *testing.T) {
	e := newEnv(t, config.ProfileLegacy, nil)
	e.apply(twoGateways)
	one := connected(t, e.addr("linea", "linea:tcp:one"), "c1")
	two := connected(t, e.addr("linea", "linea:tcp:two"), "c2")
	b := connected(t, e.addr("lineb", "lineb:tcp:one"), "b1")

	// Non-socket change on listener one (limits), socket change on two
	// (a new bind): one's client stays, two's is closed.
	e.apply(`
[agent]
security_profile = "legacy"
[gateway.linea.listeners.tcp.one]
bind = "127.0.0.1:0"
max_connections = 10
access_rules = ["allow 127.0.0.1", "deny all"]
[gateway.linea.listeners.tcp.two]
bind = "127.0.0.2:0"
[gateway.lineb.listeners.tcp.one]
bind = "127.0.0.1:0"
`)
	one.send("WHOAMI")
	one.expect("ME c1")
	two.expect("KICK listener_stopped")
	b.send("WHOAMI")
	b.expect("ME b1")
	if !strings.HasPrefix(e.addr("linea", "linea:tcp:two"), "127.0.0.2:") {
		t.Fatal("listener two was not rebound")
	}
	// Removing listener two leaves listener one and gateway b alone.
	e.apply(`
[agent]
security_profile = "legacy"
[gateway.linea.listeners.tcp.one]
bind = "127.0.0.1:0"
max_connections = 10
access_rules = ["allow 127.0.0.1", "deny all"]
[gateway.lineb.listeners.tcp.one]
bind = "127.0.0.1:0"
`)
	one.send("WHOAMI")
	one.expect("ME c1")
	g, _ := e.m.Get("linea")
	if _, ok := g.Listener("linea:tcp:two"); ok {
		t.Fatal("listener two still running")
	}
}

func TestMaxConnectionsAppliedLive(t *testing.T) {
	e := newEnv(t, config.ProfileLegacy, nil)
	e.apply(twoGateways)
	addr := e.addr("linea", "linea:tcp:one")
	c1 := connected(t, addr, "c1")
	e.apply(strings.Replace(twoGateways, "[gateway.linea.listeners.tcp.one]\nbind = \"127.0.0.1:0\"", "[gateway.linea.listeners.tcp.one]\nbind = \"127.0.0.1:0\"\nmax_connections = 1", 1))
	if e.addr("linea", "linea:tcp:one") != addr {
		t.Fatal("listener was restarted for a limit change")
	}
	refused := dial(t, addr)
	refused.send("CONNECT c2 u p")
	if got := refused.line(); got != "EOF" {
		t.Fatalf("second connection beyond max_connections got %q", got)
	}
	c1.send("WHOAMI")
	c1.expect("ME c1")
	g, _ := e.m.Get("linea")
	l, _ := g.Listener("linea:tcp:one")
	if n := l.Metrics().Counter("connections.refused.max_connections").Load(); n != 1 {
		t.Fatalf("refusals counted %d, want 1", n)
	}
}

func TestLoadUnloadEnableDisable(t *testing.T) {
	e := newEnv(t, config.ProfileLegacy, nil)
	gws := parse(t, twoGateways)
	ctx := context.Background()
	if err := e.m.Load(ctx, gws["linea"]); err != nil {
		t.Fatal(err)
	}
	if err := e.m.Load(ctx, gws["linea"]); !errors.Is(err, gateway.ErrAlreadyLoaded) {
		t.Fatalf("double load: %v", err)
	}
	if err := e.m.Load(ctx, gws["lineb"]); err != nil {
		t.Fatal(err)
	}
	addr := e.addr("linea", "linea:tcp:one")
	c := connected(t, addr, "c1")
	b := connected(t, e.addr("lineb", "lineb:tcp:one"), "b1")

	if err := e.m.Enable(ctx, "linea", false); err != nil {
		t.Fatal(err)
	}
	c.expect("KICK gateway_stopped")
	g, _ := e.m.Get("linea")
	if g.Status() != gateway.StatusStopped || g.Info().Listeners[0].Running {
		t.Fatalf("status %s after disable", g.Status())
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("disabled gateway still accepts connections")
	}
	b.send("WHOAMI")
	b.expect("ME b1")

	if err := e.m.Enable(ctx, "linea", true); err != nil {
		t.Fatal(err)
	}
	connected(t, e.addr("linea", "linea:tcp:one"), "c1")

	// Updating the kind's own settings live.
	p := testkind.Instance("linea")
	e.apply(strings.Replace(twoGateways, "[gateway.linea.listeners.tcp.one]", "[gateway.linea]\ngreeting = \"hi\"\n[gateway.linea.listeners.tcp.one]", 1))
	if p.Updates.Load() != 1 {
		t.Fatal("kind spec update not applied live")
	}
	c2 := dial(t, e.addr("linea", "linea:tcp:one"))
	c2.send("CONNECT c9 u p")
	c2.expect("CONNACK ok false hi")

	// A setting the kind cannot change live restarts this gateway only.
	e.apply(strings.Replace(twoGateways, "[gateway.linea.listeners.tcp.one]", "[gateway.linea]\ngreeting = \"hi\"\nrestart = true\n[gateway.linea.listeners.tcp.one]", 1))
	c2.expect("KICK gateway_stopped")
	b.send("WHOAMI")
	b.expect("ME b1")
	p2 := testkind.Instance("linea")
	if p2 == p {
		t.Fatal("gateway was not rebuilt")
	}

	if err := e.m.Unload(ctx, "linea"); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.m.Get("linea"); ok {
		t.Fatal("still loaded")
	}
	if err := e.m.Unload(ctx, "linea"); !errors.Is(err, gateway.ErrNotFound) {
		t.Fatalf("double unload: %v", err)
	}
	b.send("WHOAMI")
	b.expect("ME b1")
}

func TestIdenticalApplyIsNoop(t *testing.T) {
	e := newEnv(t, config.ProfileLegacy, nil)
	e.apply(twoGateways)
	addr := e.addr("linea", "linea:tcp:one")
	c := connected(t, addr, "c1")
	e.apply(twoGateways)
	if e.addr("linea", "linea:tcp:one") != addr {
		t.Fatal("identical config reopened a listener")
	}
	c.send("WHOAMI")
	c.expect("ME c1")
}

func TestMountpointAndOverride(t *testing.T) {
	e := newEnv(t, config.ProfileLegacy, nil)
	e.apply(`
[agent]
security_profile = "legacy"
[gateway.linea]
mountpoint = "site/${agent.id}/${clientid}/"
clientinfo_override = { clientid = "${username}-${peerhost}" }
[gateway.linea.listeners.tcp.one]
bind = "127.0.0.1:0"
[gateway.linea.listeners.tcp.flat]
bind = "127.0.0.1:0"
mountpoint = ""
[[gateway.lineb.authentication]]
type = "t_attrs"
[gateway.lineb]
mountpoint = "${client_attrs.site}/"
[gateway.lineb.listeners.tcp.one]
bind = "127.0.0.1:0"
`)
	c := dial(t, e.addr("linea", "linea:tcp:one"))
	c.connect("ignored", "alice", "pw")
	c.send("WHOAMI")
	c.expect("ME alice-127.0.0.1 site/gw1/alice-127.0.0.1/")

	flat := connected(t, e.addr("linea", "linea:tcp:flat"), "x")
	flat.send("SUB 0 #")
	flat.expect("SUBACK ok")
	c.send("PUB 0 temp 20")
	c.expect("PUBACK ok")
	if got := flat.expect("MSG "); got != "MSG 0 0 site/gw1/alice-127.0.0.1/temp 20" {
		t.Fatalf("mounted publish arrived as %q", got)
	}
	// Deliveries have the mountpoint removed.
	c.send("SUB 0 cmd")
	c.expect("SUBACK ok")
	flat.send("UNSUB #")
	flat.expect("UNSUBACK ok")
	flat.send("PUB 0 site/gw1/alice-127.0.0.1/cmd go")
	flat.expect("PUBACK ok")
	if got := c.expect("MSG "); got != "MSG 0 0 cmd go" {
		t.Fatalf("delivery %q", got)
	}
	// Mountpoint rendered again after authentication: client_attrs feed it.
	b := connected(t, e.addr("lineb", "lineb:tcp:one"), "b1")
	b.send("WHOAMI")
	b.expect("ME b1 plant7/")
}

func TestAuthnChainAndProfiles(t *testing.T) {
	e := newEnv(t, config.ProfileHardened, nil)
	e.apply(`
[gateway.linea.listeners.tcp.one]
bind = "127.0.0.1:0"
[[gateway.linea.listeners.tcp.chain.authentication]]
type = "t_deny"
users = ["mallory"]
[[gateway.linea.listeners.tcp.chain.authentication]]
type = "t_allow"
users = ["alice", "mallory"]
[[gateway.linea.listeners.tcp.chain.authentication]]
type = "t_deny"
users = ["*"]
enable = false
[gateway.linea.listeners.tcp.chain]
bind = "127.0.0.1:0"
[gateway.linea.listeners.tcp.open]
bind = "127.0.0.1:0"
enable_authn = false
`)
	// Hardened: a gateway with no authenticator denies everyone.
	c := dial(t, e.addr("linea", "linea:tcp:one"))
	c.send("CONNECT c1 alice pw")
	if got := c.expect("CONNACK err"); !strings.Contains(got, "no authenticator configured") {
		t.Fatalf("hardened default: %q", got)
	}
	// The listener's chain: first decision wins, in order.
	authCalls.Clear()
	chain := e.addr("linea", "linea:tcp:chain")
	a := dial(t, chain)
	a.connect("c2", "alice", "pw")
	m := dial(t, chain)
	m.send("CONNECT c3 mallory pw")
	m.expect("CONNACK err not authorized: t_deny")
	z := dial(t, chain)
	z.send("CONNECT c4 zed pw")
	z.expect("CONNACK err not authorized: no authenticator accepted the client")
	// enable_authn = false bypasses authentication.
	connected(t, e.addr("linea", "linea:tcp:open"), "c5")

	// Legacy: no authenticator means allow.
	e.m.SetSecurityProfile(config.ProfileLegacy)
	connected(t, e.addr("linea", "linea:tcp:one"), "c6")
	g, _ := e.m.Get("linea")
	if n := g.Metrics().Counter("authentication.failure").Load(); n != 3 {
		t.Fatalf("authentication.failure = %d, want 3", n)
	}
}

func TestAuthorizerSeesDeviceTopic(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	az := gateway.AuthorizerFunc(func(ci *gateway.ClientInfo, a gateway.Action, topic string) bool {
		mu.Lock()
		seen = append(seen, string(a)+" "+topic)
		mu.Unlock()
		return !strings.HasPrefix(topic, "secret")
	})
	e := newEnv(t, config.ProfileLegacy, az)
	e.apply(`
[gateway.linea]
mountpoint = "m/"
[gateway.linea.listeners.tcp.one]
bind = "127.0.0.1:0"
`)
	c := connected(t, e.addr("linea", "linea:tcp:one"), "c1")
	c.send("PUB 0 secret/x 1")
	c.expect("PUBACK err denied")
	c.send("SUB 0 secret/#")
	c.expect("SUBACK err denied")
	c.send("PUB 0 open/x 1")
	c.expect("PUBACK ok")
	mu.Lock()
	defer mu.Unlock()
	want := []string{"publish secret/x", "subscribe secret/#", "publish open/x"}
	if fmt.Sprint(seen) != fmt.Sprint(want) {
		t.Fatalf("authorizer saw %v, want %v", seen, want)
	}
}

func TestIdleTimeoutClosesUnauthenticated(t *testing.T) {
	e := newEnv(t, config.ProfileLegacy, nil)
	e.apply(`
[gateway.linea]
idle_timeout = "200ms"
[gateway.linea.listeners.tcp.one]
bind = "127.0.0.1:0"
`)
	addr := e.addr("linea", "linea:tcp:one")
	silent := dial(t, addr)
	ok := connected(t, addr, "c1")
	if got := silent.line(); got != "EOF" {
		t.Fatalf("silent connection got %q", got)
	}
	time.Sleep(300 * time.Millisecond)
	ok.send("WHOAMI")
	ok.expect("ME c1")
	g, _ := e.m.Get("linea")
	if n := g.Metrics().Counter("connections.idle_timeout").Load(); n != 1 {
		t.Fatalf("idle timeouts counted %d, want 1", n)
	}
}

func TestHookEvents(t *testing.T) {
	e := newEnv(t, config.ProfileLegacy, nil)
	e.apply(twoGateways)
	c := connected(t, e.addr("linea", "linea:tcp:one"), "h1")
	c.send("SUB 0 a/b")
	c.expect("SUBACK ok")
	c.c.Close()
	waitEvent(t, e.events, hooks.ClientConnected, "h1")
	waitEvent(t, e.events, hooks.SessionSubscribed, "h1")
	ev := waitEvent(t, e.events, hooks.ClientDisconnected, "h1")
	if ev.Client.Gateway != "linea" || ev.Client.Listener != "linea:tcp:one" || ev.Client.PeerHost != "127.0.0.1" {
		t.Fatalf("event identity %+v", ev.Client)
	}
}

func TestRegistry(t *testing.T) {
	var names []string
	for _, k := range gateway.Kinds() {
		names = append(names, k.Name)
	}
	if !strings.Contains(strings.Join(names, ","), "linea,lineb") {
		t.Fatalf("kinds %v", names)
	}
	defer func() {
		if recover() == nil {
			t.Fatal("duplicate kind did not panic")
		}
	}()
	testkind.Register("linea")
}

func waitEvent(t *testing.T, ch chan hooks.Event, name hooks.Name, clientid string) hooks.Event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-ch:
			if ev.Name == name && ev.Client.ClientID == clientid {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event for %s", name, clientid)
		}
	}
}
