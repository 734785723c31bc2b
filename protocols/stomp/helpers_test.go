package stomp_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	gostomp "github.com/go-stomp/stomp/v3"
	stompframe "github.com/go-stomp/stomp/v3/frame"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/agent/metrics"
	"github.com/edgeway/edgeway/internal/gwtest"

	_ "github.com/edgeway/edgeway/agent/auth" // anonymous and built_in authenticators
	_ "github.com/edgeway/edgeway/protocols/stomp"
	_ "github.com/edgeway/edgeway/transports"
)

// wait bounds every single expectation; tests assert on what arrives,
// this only keeps a broken build from hanging.
const wait = 5 * time.Second

// env is a Manager with its own broker and the stomp gateway loaded from
// a TOML snippet.
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

// conf is the usual test gateway: anonymous authentication and one tcp
// listener on a free port; keys go into [gateway.stomp].
func conf(keys string) string {
	if !strings.Contains(keys, "idle_timeout") {
		keys = "idle_timeout = \"5s\"\n" + keys
	}
	return `
[gateway.stomp]
` + keys + `
[[gateway.stomp.authentication]]
type = "anonymous"

[gateway.stomp.listeners.tcp.default]
bind = "127.0.0.1:0"
`
}

func newEnv(t testing.TB, toml string, opts ...envOption) *env {
	t.Helper()
	e := &env{t: t, reg: metrics.NewRegistry()}
	var m *gateway.Manager
	e.b = broker.New(broker.Options{OnDrop: func(s string, msg *broker.Message, r string) { m.OnDrop(s, msg, r) }})
	o := gateway.ManagerOptions{Broker: e.b, Metrics: e.reg}
	for _, f := range opts {
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
	e.t.Helper()
	g, ok := e.m.Get("stomp")
	if !ok {
		e.t.Fatal("stomp gateway not loaded")
	}
	return g
}

func (e *env) addr() string { return e.listenerAddr("stomp:tcp:default") }

func (e *env) listenerAddr(id string) string {
	e.t.Helper()
	l, ok := e.gw().Listener(id)
	if !ok {
		e.t.Fatalf("listener %s not running", id)
	}
	return l.Addr()
}

// counter reads a counter of the gateway's set ("gateway/stomp") or a
// listener's ("listener/stomp:tcp:default").
func (e *env) counter(set, name string) float64 {
	s, ok := e.reg.Lookup(set)
	if !ok {
		return 0
	}
	return s.Snapshot()[name]
}

// eventually polls cond (for effects with no frame to wait on, such as a
// counter moving after a close).
// eventually polls cond until it holds (5 s).
var eventually = gwtest.Eventually

// dial connects go-stomp with heart-beats off unless opts say otherwise.
func (e *env) dial(opts ...func(*gostomp.Conn) error) *gostomp.Conn {
	e.t.Helper()
	return dialAddr(e.t, e.addr(), opts...)
}

func dialAddr(t testing.TB, addr string, opts ...func(*gostomp.Conn) error) *gostomp.Conn {
	t.Helper()
	all := append([]func(*gostomp.Conn) error{
		gostomp.ConnOpt.HeartBeat(0, 0), gostomp.ConnOpt.Logger(quietLogger{}),
		gostomp.ConnOpt.DisconnectReceiptTimeout(wait), gostomp.ConnOpt.UnsubscribeReceiptTimeout(wait),
		gostomp.ConnOpt.RcvReceiptTimeout(wait),
	}, opts...)
	c, err := gostomp.Dial("tcp", addr, all...)
	if err != nil {
		t.Fatalf("stomp dial: %v", err)
	}
	t.Cleanup(func() {
		// A live connection must get its DISCONNECT receipt.
		if err := c.Disconnect(); errors.Is(err, gostomp.ErrDisconnectReceiptTimeout) {
			t.Errorf("DISCONNECT: %v", err)
		}
	})
	return c
}

// recv reads the next message of a go-stomp subscription.
func recv(t testing.TB, sub *gostomp.Subscription) *gostomp.Message {
	t.Helper()
	select {
	case m, ok := <-sub.C:
		if !ok {
			t.Fatal("subscription closed")
		}
		if m.Err != nil {
			t.Fatalf("subscription error: %v", m.Err)
		}
		return m
	case <-time.After(wait):
		t.Fatal("no message")
	}
	return nil
}

// observer is a broker session opened directly on the Manager's broker:
// the MQTT side of a test.
type observer struct {
	s  *broker.Session
	ch chan broker.Delivery
}

func (o *observer) Deliver(d broker.Delivery) {
	if d.ID != 0 {
		o.s.Ack(d.ID)
	}
	o.ch <- d
}

var obsSeq struct {
	sync.Mutex
	n int
}

func (e *env) observe(filter string, qos byte) *observer {
	e.t.Helper()
	obsSeq.Lock()
	obsSeq.n++
	id := "test/observer-" + string(rune('a'+obsSeq.n%26)) + strings.Repeat("x", obsSeq.n/26)
	obsSeq.Unlock()
	o := &observer{ch: make(chan broker.Delivery, 4096)}
	o.s, _ = e.b.OpenSession(id, o, true, broker.SessionOptions{Held: true, MaxQueueLen: 100000})
	if _, err := o.s.Subscribe(filter, qos); err != nil {
		e.t.Fatalf("observer subscribe: %v", err)
	}
	o.s.Resume()
	e.t.Cleanup(o.s.Close)
	return o
}

func (o *observer) next(t testing.TB) broker.Delivery {
	t.Helper()
	select {
	case d := <-o.ch:
		return d
	case <-time.After(wait):
		t.Fatal("observer: no message")
	}
	return broker.Delivery{}
}

// publish puts a message on the local broker as an MQTT client would.
func (e *env) publish(topic, payload string, qos byte) {
	e.t.Helper()
	if _, err := e.b.Publish(&broker.Message{Topic: topic, Payload: []byte(payload), QoS: qos}); err != nil {
		e.t.Fatalf("publish: %v", err)
	}
}

// raw is a STOMP connection driven frame by frame, reading with go-stomp's
// frame reader.
type raw struct {
	t testing.TB
	c net.Conn
	r *stompframe.Reader
}

func (e *env) raw() *raw {
	e.t.Helper()
	return rawAddr(e.t, e.addr())
}

func rawAddr(t testing.TB, addr string) *raw {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &raw{t: t, c: c, r: stompframe.NewReaderSize(c, 1<<17)}
}

// write sends bytes as they are.
func (r *raw) write(s string) {
	r.t.Helper()
	if _, err := io.WriteString(r.c, s); err != nil {
		r.t.Fatalf("write: %v", err)
	}
}

// frame sends cmd with "key:value" headers (written as given) and body.
func (r *raw) frame(cmd, body string, headers ...string) {
	r.t.Helper()
	var b strings.Builder
	b.WriteString(cmd + "\n")
	for _, h := range headers {
		b.WriteString(h + "\n")
	}
	b.WriteString("\n" + body + "\x00")
	r.write(b.String())
}

// connect sends CONNECT with the given headers and expects CONNECTED.
func (r *raw) connect(hs ...string) *stompframe.Frame {
	r.t.Helper()
	r.frame("CONNECT", "", hs...)
	f := r.read()
	if f.Command != "CONNECTED" {
		r.t.Fatalf("CONNECT answered with %s %v %q", f.Command, headers(f), f.Body)
	}
	return f
}

// read returns the next frame, skipping heart-beats.
func (r *raw) read() *stompframe.Frame {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(wait))
	for {
		f, err := r.r.Read()
		if err != nil {
			r.t.Fatalf("read: %v", err)
		}
		if f != nil {
			return f
		}
	}
}

// expectError reads an ERROR with this message header, then the close.
func (r *raw) expectError(message string) *stompframe.Frame {
	r.t.Helper()
	f := r.read()
	if f.Command != "ERROR" || f.Header.Get("message") != message {
		r.t.Fatalf("got %s %v %q, want ERROR %q", f.Command, headers(f), f.Body, message)
	}
	r.expectClosed()
	return f
}

// expectClosed reads until the server closes the connection.
func (r *raw) expectClosed() {
	r.t.Helper()
	_ = r.c.SetReadDeadline(time.Now().Add(wait))
	for {
		f, err := r.r.Read()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				r.t.Fatal("connection still open")
			}
			return
		}
		if f != nil {
			r.t.Fatalf("frame after the end: %s %v", f.Command, headers(f))
		}
	}
}

// until reads frames up to the RECEIPT with id, returning those before it.
func (r *raw) until(receipt string) []*stompframe.Frame {
	r.t.Helper()
	var out []*stompframe.Frame
	for {
		f := r.read()
		if f.Command == "RECEIPT" && f.Header.Get("receipt-id") == receipt {
			return out
		}
		if f.Command == "ERROR" {
			r.t.Fatalf("ERROR %v %q", headers(f), f.Body)
		}
		out = append(out, f)
	}
}

// barrier sends a frame with a receipt and returns the frames that came
// before the RECEIPT: the server writes in order, so whatever it had
// queued for this connection by then is included.
func (r *raw) barrier(id string) []*stompframe.Frame {
	r.t.Helper()
	r.frame("UNSUBSCRIBE", "", "id:no-such-subscription-"+id, "receipt:"+id)
	return r.until(id)
}

func headers(f *stompframe.Frame) map[string]string {
	out := map[string]string{}
	for i := 0; i < f.Header.Len(); i++ {
		k, v := f.Header.GetAt(i)
		if _, dup := out[k]; !dup {
			out[k] = v
		}
	}
	return out
}

func bodies(fs []*stompframe.Frame) []string {
	var out []string
	for _, f := range fs {
		out = append(out, string(f.Body))
	}
	return out
}

// quietLogger keeps go-stomp's ERROR-frame log lines out of test output.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...interface{})   {}
func (quietLogger) Debug(string)                    {}
func (quietLogger) Infof(string, ...interface{})    {}
func (quietLogger) Info(string)                     {}
func (quietLogger) Warningf(string, ...interface{}) {}
func (quietLogger) Warning(string)                  {}
func (quietLogger) Errorf(string, ...interface{})   {}
func (quietLogger) Error(string)                    {}

// ci reports whether missing tools must fail tests rather than skip them.
func ci() bool { return os.Getenv("CI") != "" }

func brokerMsg(topic string, headers map[string]string) *broker.Message {
	return &broker.Message{Topic: topic, Payload: []byte(topic), Headers: headers}
}
