package jt808_test

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"io"
	"net"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/agent/metrics"
	"github.com/edgeway/edgeway/internal/gwtest"

	_ "github.com/edgeway/edgeway/agent/auth" // anonymous authenticator
	_ "github.com/edgeway/edgeway/protocols/jt808"
	_ "github.com/edgeway/edgeway/transports"
)

// wait bounds every single expectation; tests assert on what arrives.
const wait = 5 * time.Second

type env struct {
	t testing.TB
	m *gateway.Manager
	b *broker.Broker
}

// conf is a test gateway: keys go into [gateway.jt808], auth into
// [gateway.jt808.proto.auth] (anonymous when empty).
func conf(keys, auth string) string {
	if auth == "" {
		auth = "allow_anonymous = true"
	}
	if !strings.Contains(keys, "idle_timeout") {
		keys = "idle_timeout = \"5s\"\n" + keys
	}
	return `
[gateway.jt808]
` + keys + `
[gateway.jt808.proto.auth]
` + auth + `

[[gateway.jt808.authentication]]
type = "anonymous"

[gateway.jt808.listeners.tcp.default]
bind = "127.0.0.1:0"
`
}

func newEnv(t testing.TB, toml string, authz ...gateway.Authorizer) *env {
	t.Helper()
	return newEnvDir(t, toml, "", authz...)
}

// newEnvDir is newEnv with the agent's data_dir set to dataDir.
func newEnvDir(t testing.TB, toml, dataDir string, authz ...gateway.Authorizer) *env {
	t.Helper()
	e := &env{t: t}
	var m *gateway.Manager
	e.b = broker.New(broker.Options{OnDrop: func(s string, msg *broker.Message, r string) { m.OnDrop(s, msg, r) }})
	o := gateway.ManagerOptions{Broker: e.b, Metrics: metrics.NewRegistry(), DataDir: dataDir}
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
	g, ok := e.m.Get("jt808")
	if !ok {
		e.t.Fatal("jt808 not loaded")
	}
	return g
}

func (e *env) addr() string {
	l, ok := e.gw().Listener("jt808:tcp:default")
	if !ok {
		e.t.Fatal("listener not running")
	}
	return l.Addr()
}

func (e *env) counter(name string) float64 { return e.gw().Metrics().Snapshot()[name] }

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
		e.t.Fatal(err)
	}
}

// ---- the terminal: an honest peer with its own small encoder ----

type terminal struct {
	t     testing.TB
	c     net.Conn
	r     *bufio.Reader
	phone string // BCD digits: 12 (2013) or 20 (2019)
	v19   bool
	sn    uint16
}

type msg struct {
	id, sn     uint16
	phone      string
	v19        bool
	fragTotal  uint16
	fragSN     uint16
	body       []byte
	rawFrame   []byte
	checksumOK bool
}

func (e *env) terminal(phone string) *terminal {
	e.t.Helper()
	c, err := net.Dial("tcp", e.addr())
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { c.Close() })
	return &terminal{t: e.t, c: c, r: bufio.NewReader(c), phone: phone, v19: len(phone) == 20}
}

func h(s string) []byte {
	b, err := hex.DecodeString(strings.NewReplacer(" ", "").Replace(s))
	if err != nil {
		panic(err)
	}
	return b
}

// encode builds a frame as the standard describes it: header, body, XOR
// of both, 0x7e and 0x7d escaped, delimited by 0x7e.
func (tm *terminal) encode(id, sn uint16, phone string, body []byte, fragTotal, fragSN uint16) []byte {
	props := uint16(len(body))
	if fragTotal > 0 {
		props |= 1 << 13
	}
	var raw []byte
	raw = binary.BigEndian.AppendUint16(raw, id)
	if len(phone) == 20 {
		props |= 1 << 14
		raw = binary.BigEndian.AppendUint16(raw, props)
		raw = append(raw, 1)
	} else {
		raw = binary.BigEndian.AppendUint16(raw, props)
	}
	ph, err := hex.DecodeString(phone)
	if err != nil {
		panic(err)
	}
	raw = append(raw, ph...)
	raw = binary.BigEndian.AppendUint16(raw, sn)
	if fragTotal > 0 {
		raw = binary.BigEndian.AppendUint16(raw, fragTotal)
		raw = binary.BigEndian.AppendUint16(raw, fragSN)
	}
	raw = append(raw, body...)
	var x byte
	for _, c := range raw {
		x ^= c
	}
	raw = append(raw, x)
	out := []byte{0x7e}
	for _, c := range raw {
		switch c {
		case 0x7e:
			out = append(out, 0x7d, 0x02)
		case 0x7d:
			out = append(out, 0x7d, 0x01)
		default:
			out = append(out, c)
		}
	}
	return append(out, 0x7e)
}

func (tm *terminal) frame(id uint16, body []byte) ([]byte, uint16) {
	sn := tm.sn
	tm.sn++
	return tm.encode(id, sn, tm.phone, body, 0, 0), sn
}

func (tm *terminal) write(b []byte) {
	tm.t.Helper()
	if _, err := tm.c.Write(b); err != nil {
		tm.t.Fatal(err)
	}
}

// send writes one message and returns its msg_sn.
func (tm *terminal) send(id uint16, body []byte) uint16 {
	tm.t.Helper()
	f, sn := tm.frame(id, body)
	tm.write(f)
	return sn
}

// read returns the next frame from the gateway, decoded by hand.
func (tm *terminal) read() msg {
	tm.t.Helper()
	_ = tm.c.SetReadDeadline(time.Now().Add(wait))
	if _, err := tm.r.ReadBytes(0x7e); err != nil {
		tm.t.Fatalf("read: %v", err)
	}
	esc, err := tm.r.ReadBytes(0x7e)
	if err != nil {
		tm.t.Fatalf("read: %v", err)
	}
	esc = esc[:len(esc)-1]
	var raw []byte
	for i := 0; i < len(esc); i++ {
		if esc[i] == 0x7d {
			i++
			switch esc[i] {
			case 0x01:
				raw = append(raw, 0x7d)
			case 0x02:
				raw = append(raw, 0x7e)
			default:
				tm.t.Fatalf("bad escape 7d %02x from the gateway", esc[i])
			}
			continue
		}
		raw = append(raw, esc[i])
	}
	var x byte
	for _, c := range raw[:len(raw)-1] {
		x ^= c
	}
	m := msg{checksumOK: x == raw[len(raw)-1], rawFrame: raw}
	raw = raw[:len(raw)-1]
	m.id = binary.BigEndian.Uint16(raw)
	props := binary.BigEndian.Uint16(raw[2:])
	p := raw[4:]
	plen := 6
	if props&(1<<14) != 0 {
		m.v19 = true
		p = p[1:]
		plen = 10
	}
	m.phone = hex.EncodeToString(p[:plen])
	m.sn = binary.BigEndian.Uint16(p[plen:])
	p = p[plen+2:]
	if props&(1<<13) != 0 {
		m.fragTotal, m.fragSN = binary.BigEndian.Uint16(p), binary.BigEndian.Uint16(p[2:])
		p = p[4:]
	}
	m.body = p
	if int(props&0x3ff) != len(p) || !m.checksumOK {
		tm.t.Fatalf("bad frame from the gateway: % x", raw)
	}
	return m
}

func (tm *terminal) expect(id uint16) msg {
	tm.t.Helper()
	m := tm.read()
	if m.id != id {
		tm.t.Fatalf("got 0x%04X (% x), want 0x%04X", m.id, m.body, id)
	}
	if m.phone != tm.phone {
		tm.t.Fatalf("reply to phone %s, want %s", m.phone, tm.phone)
	}
	return m
}

// expectAck reads a 0x8001 and checks it answers (sn, id) with result.
func (tm *terminal) expectAck(sn, id uint16, result byte) msg {
	tm.t.Helper()
	m := tm.expect(0x8001)
	want := binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, sn), id)
	want = append(want, result)
	if string(m.body) != string(want) {
		tm.t.Fatalf("0x8001 body % x, want % x", m.body, want)
	}
	return m
}

func registerBody(v19 bool) []byte {
	if v19 {
		return h("002c 012c 4d414e5546303030303031 4d4f44454c2d58" + strings.Repeat("00", 23) + "54455231" + strings.Repeat("00", 26) + "01 41313233")
	}
	// EMQX's register body (emqx_jt808_SUITE).
	return h("003a 003b 6578616d70 3333333333333333333333333333333333000000 31323334353600 03 756a766c323339")
}

// register sends 0x0100 and returns the 0x8100 result and auth code.
func (tm *terminal) register() (byte, string) {
	tm.t.Helper()
	sn := tm.send(0x0100, registerBody(tm.v19))
	m := tm.expect(0x8100)
	if binary.BigEndian.Uint16(m.body) != sn {
		tm.t.Fatalf("0x8100 answers %d, want %d", binary.BigEndian.Uint16(m.body), sn)
	}
	return m.body[2], string(m.body[3:])
}

func authBody(v19 bool, code string) []byte {
	if !v19 {
		return []byte(code)
	}
	b := append([]byte{byte(len(code))}, code...)
	b = append(b, "867530040000001"...)
	return append(b, make([]byte, 20)...)
}

// auth sends 0x0102 and returns the 0x8001 result.
func (tm *terminal) auth(code string) byte {
	tm.t.Helper()
	sn := tm.send(0x0102, authBody(tm.v19, code))
	m := tm.expect(0x8001)
	if binary.BigEndian.Uint16(m.body) != sn || binary.BigEndian.Uint16(m.body[2:]) != 0x0102 {
		tm.t.Fatalf("0x8001 answers % x", m.body)
	}
	return m.body[4]
}

// login registers and authenticates.
func (tm *terminal) login() {
	tm.t.Helper()
	res, code := tm.register()
	if res != 0 || code == "" {
		tm.t.Fatalf("register: result %d code %q", res, code)
	}
	if r := tm.auth(code); r != 0 {
		tm.t.Fatalf("auth result %d", r)
	}
}

func (tm *terminal) expectClosed() {
	tm.t.Helper()
	_ = tm.c.SetReadDeadline(time.Now().Add(wait))
	for {
		_, err := tm.r.ReadByte()
		if err == io.EOF || (err != nil && !isTimeout(err)) {
			return
		}
		if err != nil {
			tm.t.Fatal("connection not closed")
		}
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

// jsonEqual compares JSON documents by value.
func jsonEqual(t testing.TB, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("bad JSON %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad want JSON: %v", err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("JSON\n got %s\nwant %s", got, want)
	}
}

func locationBody() []byte {
	// EMQX's location_report() test body: basic fields and extras 01 02 03 04 11 12 13.
	return h("00000002 00000003 000003e8 000003e9 07d0 0087 0020 171022111553" +
		"01 04 0000305b 02 02 03cc 03 02 001d 04 02 0012 11 05 02 0000001d 12 06 08 00000017 59 13 07 0000002d 0015 01")
}
