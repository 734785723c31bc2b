package coap_test

import (
	"bytes"
	"context"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/agent/metrics"
	"github.com/edgeway/edgeway/internal/gwtest"
	"github.com/edgeway/edgeway/protocols/coap"

	_ "github.com/edgeway/edgeway/agent/auth"
	_ "github.com/edgeway/edgeway/transports"
)

// wait bounds every single expectation; tests assert on what arrives.
const wait = 5 * time.Second

type env struct {
	t   testing.TB
	m   *gateway.Manager
	b   *broker.Broker
	reg *metrics.Registry
}

// conf is the usual gateway: anonymous authentication and one udp
// listener; keys go into [gateway.coap].
func conf(keys string) string {
	return `
[gateway.coap]
` + keys + `
[[gateway.coap.authentication]]
type = "anonymous"

[gateway.coap.listeners.udp.default]
bind = "127.0.0.1:0"
`
}

func withProfile(p string) func(*gateway.ManagerOptions) {
	return func(o *gateway.ManagerOptions) { o.SecurityProfile = p }
}

func withAuthorizer(a gateway.Authorizer) func(*gateway.ManagerOptions) {
	return func(o *gateway.ManagerOptions) { o.Authorizer = a }
}

func newEnv(t testing.TB, toml string, mods ...func(*gateway.ManagerOptions)) *env {
	t.Helper()
	e := &env{t: t, reg: metrics.NewRegistry()}
	var m *gateway.Manager
	e.b = broker.New(broker.Options{OnDrop: func(s string, msg *broker.Message, r string) { m.OnDrop(s, msg, r) }})
	o := gateway.ManagerOptions{Broker: e.b, Metrics: e.reg}
	for _, f := range mods {
		f(&o)
	}
	m = gateway.NewManager(o)
	e.m = m
	c, err := config.Parse([]byte(toml), "test.toml")
	if err != nil {
		t.Fatalf("config:\n%v", err)
	}
	if err := m.Apply(context.Background(), c.Gateways); err != nil {
		t.Fatalf("apply: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		m.Close(ctx)
		e.b.Close()
	})
	return e
}

func (e *env) gw() *gateway.Gateway {
	g, ok := e.m.Get("coap")
	if !ok {
		e.t.Fatal("coap gateway not loaded")
	}
	return g
}

func (e *env) addr(id string) string {
	e.t.Helper()
	l, ok := e.gw().Listener(id)
	if !ok {
		e.t.Fatalf("listener %s not running", id)
	}
	return l.Addr()
}

func (e *env) udp() string { return e.addr("coap:udp:default") }

func (e *env) counter(name string) float64 {
	s, ok := e.reg.Lookup("gateway/coap")
	if !ok {
		return 0
	}
	return s.Snapshot()[name]
}

// sub is a broker session that records what reaches it.
type sub struct {
	s  *broker.Session
	ch chan broker.Delivery
}

func (s *sub) Deliver(d broker.Delivery) { s.ch <- d }

func (e *env) subscribe(filter string, qos byte) *sub {
	e.t.Helper()
	s := &sub{ch: make(chan broker.Delivery, 1000)}
	s.s, _ = e.b.OpenSession("test/"+filter, s, true, broker.SessionOptions{})
	if _, err := s.s.Subscribe(filter, qos); err != nil {
		e.t.Fatal(err)
	}
	return s
}

func (s *sub) next(t testing.TB) broker.Delivery {
	t.Helper()
	select {
	case d := <-s.ch:
		if d.ID != 0 {
			s.s.Ack(d.ID)
		}
		return d
	case <-time.After(wait):
		t.Fatal("no message reached the broker subscriber")
	}
	return broker.Delivery{}
}

func (e *env) publish(topic, payload string, qos byte) {
	e.t.Helper()
	if _, err := e.b.Publish(&broker.Message{Topic: topic, Payload: []byte(payload), QoS: qos}); err != nil {
		e.t.Fatal(err)
	}
}

// eventually polls cond until it holds (5 s).
var eventually = gwtest.Eventually

// dial is go-coap's own UDP client.
func dial(t testing.TB, addr string, opts ...udp.Option) *udpclient.Conn {
	t.Helper()
	c, err := udp.Dial(addr, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func query(kv ...string) []message.Option {
	var out []message.Option
	for _, s := range kv {
		out = append(out, message.Option{ID: message.URIQuery, Value: []byte(s)})
	}
	return out
}

func ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return c
}

func post(t testing.TB, c *udpclient.Conn, path, payload string, q ...string) *pool.Message {
	t.Helper()
	r, err := c.Post(ctx(t), path, message.TextPlain, bytes.NewReader([]byte(payload)), query(q...)...)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	return r
}

func expectCode(t testing.TB, r *pool.Message, want codes.Code) {
	t.Helper()
	if r.Code() != want {
		b, _ := r.ReadBody()
		t.Fatalf("code %v (%q), want %v", r.Code(), b, want)
	}
}

// connect opens a connection-mode session and returns its token.
func connect(t testing.TB, c *udpclient.Conn, clientid string, extra ...string) string {
	t.Helper()
	r := post(t, c, "/mqtt/connection", "", append([]string{"clientid=" + clientid}, extra...)...)
	expectCode(t, r, codes.Created)
	b, _ := r.ReadBody()
	return string(b)
}

// raw is a hand-driven UDP peer speaking through the package's codec,
// for byte-level cases and for holding ACKs back.
type raw struct {
	t   testing.TB
	c   net.Conn
	mid uint16
}

func dialRaw(t testing.TB, addr string) *raw {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.DialUDP("udp", nil, ua)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return &raw{t: t, c: c, mid: 0x100}
}

func (r *raw) sendBytes(b []byte) {
	r.t.Helper()
	if _, err := r.c.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// req builds a request: path "/ps/a/b", query pairs.
func (r *raw) req(typ, code uint8, token, path string, q ...string) *coap.Message {
	r.mid++
	m := &coap.Message{Type: typ, Code: code, MID: r.mid, Token: []byte(token)}
	for _, seg := range strings.Split(strings.Trim(path, "/"), "/") {
		m.Options = append(m.Options, coap.Option{ID: 11, Value: []byte(seg)})
	}
	for _, kv := range q {
		m.Options = append(m.Options, coap.Option{ID: 15, Value: []byte(kv)})
	}
	return m
}

func (r *raw) send(m *coap.Message) { r.sendBytes(coap.Append(nil, m)) }

func (r *raw) recv() *coap.Message {
	r.t.Helper()
	m, ok := r.tryRecv(wait)
	if !ok {
		r.t.Fatal("no datagram from the gateway")
	}
	return m
}

func (r *raw) tryRecv(d time.Duration) (*coap.Message, bool) {
	buf := make([]byte, 4096)
	_ = r.c.SetReadDeadline(time.Now().Add(d))
	n, err := r.c.Read(buf)
	if err != nil {
		return nil, false
	}
	m := &coap.Message{}
	if err := coap.Decode(buf[:n], m); err != nil {
		r.t.Fatalf("gateway sent undecodable %x: %v", buf[:n], err)
	}
	return m, true
}

// roundTrip sends m and returns the first datagram back.
func (r *raw) roundTrip(m *coap.Message) *coap.Message {
	r.send(m)
	return r.recv()
}

func (r *raw) ack(m *coap.Message) { r.send(&coap.Message{Type: coap.ACK, MID: m.MID}) }

func code(c, d uint8) uint8 { return c<<5 | d }

// collector gathers observe notifications from go-coap.
type collector struct {
	mu   sync.Mutex
	ch   chan string
	seen []string
}

func newCollector() *collector { return &collector{ch: make(chan string, 100)} }

func (c *collector) fn(m *pool.Message) {
	b, _ := m.ReadBody()
	if _, err := m.Observe(); err != nil {
		return
	}
	c.ch <- string(b)
}

func (c *collector) next(t testing.TB) string {
	t.Helper()
	for {
		select {
		case s := <-c.ch:
			if s == "" { // the registration response
				continue
			}
			return s
		case <-time.After(wait):
			t.Fatal("no notification")
		}
	}
}
