package mqttsn_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	_ "github.com/edgeway/edgeway/agent/auth" // the anonymous authenticator
	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/agent/metrics"
	"github.com/edgeway/edgeway/protocols/mqttsn"
	sn "github.com/edgeway/edgeway/protocols/mqttsn/mqttsntest"
)

// env is a gateway.Manager with its broker, running one [gateway.mqttsn].
type env struct {
	t   testing.TB
	m   *gateway.Manager
	b   *broker.Broker
	reg *metrics.Registry
}

type envOption func(*gateway.ManagerOptions)

func withAuthorizer(a gateway.Authorizer) envOption {
	return func(o *gateway.ManagerOptions) { o.Authorizer = a }
}

// newEnv starts a manager with the gateway section given as TOML (the
// [gateway.mqttsn] header and its keys). Without listeners of its own, a
// udp listener on 127.0.0.1:0 and an anonymous authenticator are added.
func newEnv(t testing.TB, section string, opts ...envOption) *env {
	t.Helper()
	if !strings.Contains(section, "[gateway.mqttsn.listeners") {
		section += "\n[gateway.mqttsn.listeners.udp.default]\nbind = \"127.0.0.1:0\"\n"
	}
	if !strings.Contains(section, "authentication") {
		section += "\n[[gateway.mqttsn.authentication]]\ntype = \"anonymous\"\n"
	}
	e := &env{t: t, reg: metrics.NewRegistry()}
	var m *gateway.Manager
	e.b = broker.New(broker.Options{OnDrop: func(s string, msg *broker.Message, r string) { m.OnDrop(s, msg, r) }})
	mo := gateway.ManagerOptions{Broker: e.b, Metrics: e.reg}
	for _, o := range opts {
		o(&mo)
	}
	m = gateway.NewManager(mo)
	e.m = m
	t.Cleanup(e.close)
	c, err := config.Parse([]byte(section), "test.toml")
	if err != nil {
		t.Fatalf("config:\n%v", err)
	}
	if err := m.Apply(context.Background(), c.Gateways); err != nil {
		t.Fatalf("apply: %v", err)
	}
	return e
}

// close unloads the gateway and closes the broker (again: a no-op).
func (e *env) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	e.m.Close(ctx)
	e.b.Close()
}

func (e *env) gateway() *gateway.Gateway {
	g, ok := e.m.Get(mqttsn.Name)
	if !ok {
		e.t.Fatal("mqttsn not loaded")
	}
	return g
}

// addr is the bound address of listener "mqttsn:<typ>:<name>".
func (e *env) addr(id string) string {
	e.t.Helper()
	l, ok := e.gateway().Listener(id)
	if !ok {
		e.t.Fatalf("listener %s not running", id)
	}
	return l.Addr()
}

func (e *env) device() *sn.Device {
	return sn.DialUDP(e.t, e.addr("mqttsn:udp:default"))
}

func (e *env) cloud(filters ...string) *sn.Cloud { return sn.NewCloud(e.t, e.b, filters...) }

// counter reads a gateway-wide metric.
func (e *env) counter(name string) float64 {
	return e.gateway().Metrics().Snapshot()[name]
}

// waitFor polls cond for things the gateway does after the device already
// saw the outcome (counters, session state).
func (e *env) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// session is the broker's administrative handle on a client's session.
// Tests read session state through it rather than through
// gateway.Client, whose fields Listener.Connect fills after publishing
// the client in the gateway's table.
func (e *env) session(id string) *broker.Session {
	e.t.Helper()
	s, ok := e.b.Session(mqttsn.Name + "/" + id)
	if !ok {
		e.t.Fatalf("no session for %s", id)
	}
	return s
}

// connected reports whether a client of that id is in the gateway's table.
func (e *env) connected(id string) bool {
	_, ok := e.gateway().Client(id)
	return ok
}

// expectNothing checks that nothing but the listed exceptions arrives
// within a short window; used only next to positive assertions.
func expectNothing(t testing.TB, d *sn.Device, within time.Duration) {
	t.Helper()
	if p, err := d.TryRecv(within); err == nil {
		t.Fatalf("unexpected %s", p)
	}
}

func section(keys ...string) string {
	return "[gateway.mqttsn]\n" + strings.Join(keys, "\n") + "\n"
}

func payload(i int) string { return fmt.Sprintf("m%03d", i) }
