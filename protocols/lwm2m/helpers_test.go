package lwm2m

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/agent/metrics"
	"github.com/edgeway/edgeway/internal/gwtest"

	_ "github.com/edgeway/edgeway/agent/auth"
	_ "github.com/edgeway/edgeway/transports"
)

// wait bounds every single expectation; tests assert on what arrives.
const wait = 5 * time.Second

var update = flag.Bool("update", false, "rewrite golden files")

func TestMain(m *testing.M) {
	// Short CoAP timers keep the timeout tests quick.
	ackTimeout, maxRetransmit = 100*time.Millisecond, 2
	os.Exit(m.Run())
}

type env struct {
	t   testing.TB
	m   *gateway.Manager
	b   *broker.Broker
	reg *metrics.Registry
}

// conf is a gateway with anonymous authentication and a udp listener on a
// free port; keys go into [gateway.lwm2m], extra after it.
func conf(keys, extra string) string {
	if !strings.Contains(keys, "lifetime_min") {
		keys = "lifetime_min = \"1s\"\n" + keys
	}
	return `
[gateway.lwm2m]
` + keys + `
[[gateway.lwm2m.authentication]]
type = "anonymous"

[gateway.lwm2m.listeners.udp.default]
bind = "127.0.0.1:0"
` + extra
}

func newEnv(t testing.TB, toml string) *env {
	t.Helper()
	e := &env{t: t, reg: metrics.NewRegistry()}
	var m *gateway.Manager
	e.b = broker.New(broker.Options{OnDrop: func(s string, msg *broker.Message, r string) { m.OnDrop(s, msg, r) }})
	m = gateway.NewManager(gateway.ManagerOptions{Broker: e.b, Metrics: e.reg})
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
	g, ok := e.m.Get("lwm2m")
	if !ok {
		e.t.Fatal("lwm2m gateway not loaded")
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

func (e *env) counter(name string) float64 {
	s, ok := e.reg.Lookup("gateway/lwm2m")
	if !ok {
		return 0
	}
	return s.Snapshot()[name]
}

// eventually polls cond until it holds (5 s).
var eventually = gwtest.Eventually

// observer is the MQTT side: a broker session subscribed to a filter.
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

var obsN struct {
	sync.Mutex
	n int
}

func (e *env) observe(filter string) *observer {
	e.t.Helper()
	obsN.Lock()
	obsN.n++
	id := "test/observer-" + strings.Repeat("x", obsN.n)
	obsN.Unlock()
	o := &observer{ch: make(chan broker.Delivery, 1024)}
	o.s, _ = e.b.OpenSession(id, o, true, broker.SessionOptions{Held: true, MaxQueueLen: 10000})
	if _, err := o.s.Subscribe(filter, 1); err != nil {
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

// nextJSON returns the next message as a map.
func (o *observer) nextJSON(t testing.TB) map[string]any {
	t.Helper()
	d := o.next(t)
	var m map[string]any
	if err := json.Unmarshal(d.Msg.Payload, &m); err != nil {
		t.Fatalf("%s: %v: %s", d.Msg.Topic, err, d.Msg.Payload)
	}
	return m
}

// empty reports no message is waiting (after the caller made sure any
// would have arrived, e.g. behind a later message).
func (o *observer) empty() bool { return len(o.ch) == 0 }

func (e *env) publish(topic, payload string) {
	e.t.Helper()
	if _, err := e.b.Publish(&broker.Message{Topic: topic, Payload: []byte(payload), QoS: 1}); err != nil {
		e.t.Fatalf("publish: %v", err)
	}
}

// golden compares v with testdata/name.json, both as canonical JSON.
func golden(t testing.TB, name string, v any) {
	t.Helper()
	got, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	file := filepath.Join("testdata", name+".json")
	if *update {
		if err := os.WriteFile(file, append(got, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(file)
	if err != nil {
		t.Fatalf("golden %s: %v (run with -update)", file, err)
	}
	var w any
	if err := json.Unmarshal(want, &w); err != nil {
		t.Fatalf("golden %s: %v", file, err)
	}
	wb, _ := json.MarshalIndent(w, "", "  ")
	if !bytes.Equal(wb, got) {
		t.Errorf("%s differs:\n got: %s\nwant: %s", file, got, wb)
	}
}

// devReq is what the simulated device was asked.
type devReq struct {
	code    codes.Code
	path    string
	queries []string
	cf      int
	accept  int
	observe int
	payload []byte
}

type resource struct {
	cf   message.MediaType
	body []byte
}

// device is a simulated LwM2M client on go-coap's own client. It answers
// from a table of resources that tests fill with payloads they encode
// themselves.
type device struct {
	t    testing.TB
	ep   string
	cc   *udpclient.Conn
	loc  string
	reqs chan devReq

	mu     sync.Mutex
	res    map[string]resource
	obsTok message.Token
	obsCC  mux.Conn
	seq    uint32
}

func newDevice(t testing.TB, ep string) *device {
	return &device{t: t, ep: ep, reqs: make(chan devReq, 64), res: map[string]resource{}}
}

func (d *device) set(path string, cf message.MediaType, body []byte) {
	d.mu.Lock()
	d.res[path] = resource{cf, body}
	d.mu.Unlock()
}

func (d *device) handler() mux.HandlerFunc {
	return func(w mux.ResponseWriter, r *mux.Message) {
		p, _ := r.Options().Path()
		var body []byte
		if r.Body() != nil {
			body, _ = io.ReadAll(r.Body())
		}
		q, _ := r.Options().Queries()
		rq := devReq{code: r.Code(), path: p, queries: q, cf: -1, accept: -1, observe: -1, payload: body}
		if cf, err := r.Options().ContentFormat(); err == nil {
			rq.cf = int(cf)
		}
		if a, err := r.Options().Accept(); err == nil {
			rq.accept = int(a)
		}
		if o, err := r.Options().Observe(); err == nil {
			rq.observe = int(o)
		}
		d.reqs <- rq
		d.mu.Lock()
		res, ok := d.res[p]
		d.mu.Unlock()
		switch r.Code() {
		case codes.GET:
			if rq.accept == int(message.AppLinkFormat) {
				_ = w.SetResponse(codes.Content, message.AppLinkFormat, bytes.NewReader([]byte("</3/0>,</3/0/0>,</3/0/1>;dim=1")))
				return
			}
			if !ok {
				_ = w.SetResponse(codes.NotFound, message.TextPlain, nil)
				return
			}
			if rq.observe == 0 {
				d.mu.Lock()
				d.obsTok = append(message.Token(nil), r.Token()...)
				d.obsCC = w.Conn()
				d.seq = 1
				d.mu.Unlock()
				_ = w.SetResponse(codes.Content, res.cf, bytes.NewReader(res.body), message.Option{ID: message.Observe, Value: []byte{1}})
				return
			}
			_ = w.SetResponse(codes.Content, res.cf, bytes.NewReader(res.body))
		case codes.PUT:
			_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
		case codes.POST:
			if strings.Count(strings.Trim(p, "/"), "/") == 0 {
				_ = w.SetResponse(codes.Created, message.TextPlain, nil)
				return
			}
			_ = w.SetResponse(codes.Changed, message.TextPlain, nil)
		case codes.DELETE:
			_ = w.SetResponse(codes.Deleted, message.TextPlain, nil)
		}
	}
}

// dial opens the device's socket (a new source port each time).
func (d *device) dial(addr string) {
	d.t.Helper()
	cc, err := udp.Dial(addr, options.WithMux(d.handler()), options.WithContext(context.Background()))
	if err != nil {
		d.t.Fatalf("dial: %v", err)
	}
	d.cc = cc
	d.t.Cleanup(func() { _ = cc.Close() })
}

func (d *device) dialDTLS(addr string, identity, key string) {
	d.t.Helper()
	cc, err := coapdtls.Dial(addr, &piondtls.Config{
		PSK:                   func([]byte) ([]byte, error) { return []byte(key), nil },
		PSKIdentityHint:       []byte(identity),
		CipherSuites:          []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
		ConnectionIDGenerator: piondtls.OnlySendCIDGenerator(),
	}, options.WithMux(d.handler()))
	if err != nil {
		d.t.Fatalf("dtls dial: %v", err)
	}
	d.cc = cc
	d.t.Cleanup(func() { _ = cc.Close() })
}

func queryOpts(qs ...string) []message.Option {
	var out []message.Option
	for _, q := range qs {
		out = append(out, message.Option{ID: message.URIQuery, Value: []byte(q)})
	}
	return out
}

// register posts /rd and returns the response code; on 2.01 the location.
func (d *device) register(links string, qs ...string) codes.Code {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	resp, err := d.cc.Post(ctx, "/rd", message.AppLinkFormat, strings.NewReader(links), queryOpts(append([]string{"ep=" + d.ep}, qs...)...)...)
	if err != nil {
		d.t.Fatalf("register: %v", err)
	}
	if resp.Code() == codes.Created {
		loc, err := resp.Options().LocationPath()
		if err != nil {
			d.t.Fatalf("register: no location: %v", err)
		}
		d.loc = loc
	}
	return resp.Code()
}

func (d *device) update(links string, qs ...string) codes.Code {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var body io.ReadSeeker
	if links != "" {
		body = strings.NewReader(links)
	}
	resp, err := d.cc.Post(ctx, d.loc, message.AppLinkFormat, body, queryOpts(qs...)...)
	if err != nil {
		d.t.Fatalf("update: %v", err)
	}
	return resp.Code()
}

func (d *device) deregister() codes.Code {
	d.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	resp, err := d.cc.Delete(ctx, d.loc)
	if err != nil {
		d.t.Fatalf("deregister: %v", err)
	}
	return resp.Code()
}

func (d *device) nextReq() devReq {
	d.t.Helper()
	select {
	case r := <-d.reqs:
		return r
	case <-time.After(wait):
		d.t.Fatal("device: no request")
	}
	return devReq{}
}

// notify sends a confirmable notification on the observation.
func (d *device) notify(cf message.MediaType, body []byte) {
	d.t.Helper()
	d.mu.Lock()
	d.seq++
	seq, tok, cc := d.seq, d.obsTok, d.obsCC
	d.mu.Unlock()
	if cc == nil {
		d.t.Fatal("notify: nothing observed")
	}
	m := cc.AcquireMessage(context.Background())
	defer cc.ReleaseMessage(m)
	m.SetCode(codes.Content)
	m.SetToken(tok)
	m.SetObserve(seq)
	m.SetContentFormat(cf)
	m.SetBody(bytes.NewReader(body))
	if err := cc.WriteMessage(m); err != nil {
		d.t.Fatalf("notify: %v", err)
	}
}

// Independent encoders of the device: TLV by hand, per the LwM2M spec's
// examples, not by the package's codec.
func devTLV(typ byte, id byte, v []byte) []byte {
	if len(v) < 8 {
		return append([]byte{typ | byte(len(v)), id}, v...)
	}
	return append([]byte{typ | 0x08, id, byte(len(v))}, v...)
}

func jsonOf(t testing.TB, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	return m
}
