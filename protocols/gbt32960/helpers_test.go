package gbt32960_test

import (
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/agent/metrics"
	"github.com/edgeway/edgeway/internal/gwtest"

	_ "github.com/edgeway/edgeway/agent/auth" // anonymous and http authenticators
	_ "github.com/edgeway/edgeway/protocols/gbt32960"
	_ "github.com/edgeway/edgeway/transports"
)

// wait bounds every single expectation; tests assert on what arrives,
// this only keeps a broken build from hanging.
const wait = 5 * time.Second

const vin = "1G1BL52P7TR115520" // the VIN of EMQX's data exchange guide

type env struct {
	t   testing.TB
	m   *gateway.Manager
	b   *broker.Broker
	reg *metrics.Registry
}

// conf is the usual test gateway: anonymous authentication and one tcp
// listener on a free port; keys go into [gateway.gbt32960].
func conf(keys string) string {
	return `
[gateway.gbt32960]
idle_timeout = "5s"
` + keys + `
[[gateway.gbt32960.authentication]]
type = "anonymous"

[gateway.gbt32960.listeners.tcp.default]
bind = "127.0.0.1:0"
`
}

func newEnv(t testing.TB, toml string, authz ...gateway.Authorizer) *env {
	t.Helper()
	e := &env{t: t, reg: metrics.NewRegistry()}
	var m *gateway.Manager
	e.b = broker.New(broker.Options{OnDrop: func(s string, msg *broker.Message, r string) { m.OnDrop(s, msg, r) }})
	o := gateway.ManagerOptions{Broker: e.b, Metrics: e.reg}
	if len(authz) > 0 {
		o.Authorizer = authz[0]
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
	g, ok := e.m.Get("gbt32960")
	if !ok {
		e.t.Fatal("gbt32960 gateway not loaded")
	}
	return g
}

func (e *env) addr() string {
	e.t.Helper()
	l, ok := e.gw().Listener("gbt32960:tcp:default")
	if !ok {
		e.t.Fatal("listener not running")
	}
	return l.Addr()
}

func (e *env) counter(name string) float64 {
	s, ok := e.reg.Lookup("gateway/gbt32960")
	if !ok {
		return 0
	}
	return s.Snapshot()[name]
}

// eventually polls cond until it holds (5 s).
var eventually = gwtest.Eventually

// observer is the cloud application's side: a session on the local broker.
type observer = gwtest.Observer

func (e *env) observe(filter string) *observer {
	e.t.Helper()
	return gwtest.Observe(e.t, e.b, filter)
}

func (e *env) publish(topic, payload string) {
	e.t.Helper()
	if _, err := e.b.Publish(&broker.Message{Topic: topic, Payload: []byte(payload), QoS: 1}); err != nil {
		e.t.Fatalf("publish: %v", err)
	}
}

// ---- the test vehicle: its own encoder, written from the standard's
// frame layout (GB/T 32960.3-2016 §6.2, table 2), not from the codec.

type wireFrame struct {
	start   string
	cmd     byte
	ack     byte
	vin     string
	encrypt byte
	data    []byte
}

func (f wireFrame) bytes() []byte {
	start := f.start
	if start == "" {
		start = "##"
	}
	body := []byte{f.cmd, f.ack}
	v := []byte(f.vin)
	for len(v) < 17 {
		v = append(v, 0)
	}
	body = append(body, v[:17]...)
	enc := f.encrypt
	if enc == 0 {
		enc = 1
	}
	body = append(body, enc, byte(len(f.data)>>8), byte(len(f.data)))
	body = append(body, f.data...)
	var x byte
	for _, c := range body {
		x ^= c
	}
	return append(append([]byte(start), body...), x)
}

func cmdFrame(cmd byte, data []byte) []byte {
	return wireFrame{cmd: cmd, ack: 0xFE, vin: vin, data: data}.bytes()
}

type vehicle struct {
	t testing.TB
	c net.Conn
}

func (e *env) dial() *vehicle {
	e.t.Helper()
	c, err := net.DialTimeout("tcp", e.addr(), wait)
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return &vehicle{t: e.t, c: c}
}

func (v *vehicle) send(b []byte) {
	v.t.Helper()
	if _, err := v.c.Write(b); err != nil {
		v.t.Fatalf("vehicle write: %v", err)
	}
}

// read returns the next frame from the gateway, checking its BCC.
func (v *vehicle) read() wireFrame {
	v.t.Helper()
	_ = v.c.SetReadDeadline(time.Now().Add(wait))
	h := make([]byte, 24)
	if _, err := io.ReadFull(v.c, h); err != nil {
		v.t.Fatalf("vehicle read: %v", err)
	}
	n := int(h[22])<<8 | int(h[23])
	rest := make([]byte, n+1)
	if _, err := io.ReadFull(v.c, rest); err != nil {
		v.t.Fatalf("vehicle read body: %v", err)
	}
	var x byte
	for _, c := range append(h[2:], rest[:n]...) {
		x ^= c
	}
	if x != rest[n] {
		v.t.Fatalf("gateway sent BCC %02x, want %02x", rest[n], x)
	}
	return wireFrame{start: string(h[:2]), cmd: h[2], ack: h[3], vin: strings.TrimRight(string(h[4:21]), "\x00"), encrypt: h[21], data: rest[:n]}
}

// closed reports whether the gateway closed the connection (after
// reading whatever it sent first).
func (v *vehicle) expectClosed() {
	v.t.Helper()
	_ = v.c.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, 256)
	for {
		_, err := v.c.Read(buf)
		if err == io.EOF || (err != nil && !isTimeout(err)) {
			return
		}
		if err != nil {
			v.t.Fatal("connection still open")
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// ---- data units, from the example values of EMQX's data exchange guide.

func be16(v int) []byte { return []byte{byte(v >> 8), byte(v)} }
func be32(v int) []byte { return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)} }

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func tm(y, mo, d, h, mi, s byte) []byte { return []byte{y, mo, d, h, mi, s} }

var (
	loginData = cat(tm(12, 12, 29, 12, 19, 20), be16(1), []byte("12345678901234567890"), []byte{1, 1}, []byte("C"))
	infoTime  = tm(16, 1, 1, 2, 59, 0)

	infoVehicle = cat([]byte{0x01, 1, 1, 1}, be16(2000), be32(999999), be16(5000), be16(15000), []byte{50, 1, 5}, be16(6000), []byte{90, 0})
	infoMotors  = cat([]byte{0x02, 2},
		[]byte{1, 1, 125}, be16(30000), be16(25000), []byte{125}, be16(30012), be16(31203),
		[]byte{2, 1, 125}, be16(30200), be16(25300), []byte{145}, be16(32000), be16(30200))
	infoFuelCell = cat([]byte{0x03}, be16(10000), be16(12000), be16(45000), be16(2), []byte{120, 121},
		be16(12500), []byte{10}, be16(35000), []byte{11}, be16(500), []byte{12}, []byte{1})
	infoEngine   = cat([]byte{0x04, 1}, be16(2000), be16(200))
	infoLocation = cat([]byte{0x05, 0}, be32(10), be32(100))
	infoExtreme  = cat([]byte{0x06, 12, 10}, be16(7500), []byte{13, 11}, be16(2000), []byte{14, 12, 120, 15, 13, 40})
	infoAlarm    = cat([]byte{0x07, 1}, be32(3), []byte{1}, be32(0xC8), []byte{0}, []byte{1}, be32(0x6F), []byte{0})
	infoVoltage  = cat([]byte{0x08, 2},
		[]byte{1}, be16(5000), be16(10000), be16(2), be16(0), []byte{1}, be16(5000),
		[]byte{2}, be16(5001), be16(10001), be16(2), be16(1), []byte{1}, be16(5001))
	infoTemp = cat([]byte{0x09, 2}, []byte{1}, be16(10), []byte{0, 0, 0, 0, 0, 0, 0, 0, 19, 136}, []byte{2}, be16(1), []byte{100})

	allInfos = cat(infoTime, infoVehicle, infoMotors, infoFuelCell, infoEngine, infoLocation, infoExtreme, infoAlarm, infoVoltage, infoTemp)
)

// login logs the vehicle in and checks the gateway's answer.
func (v *vehicle) login() {
	v.t.Helper()
	v.send(cmdFrame(0x01, loginData))
	r := v.read()
	// GB/T 32960.3-2016 §6.3.2: the answer keeps the frame's time, nothing else.
	if r.cmd != 0x01 || r.ack != 0x01 || r.vin != vin || string(r.data) != string(loginData[:6]) {
		v.t.Fatalf("login answer %+v", r)
	}
}
