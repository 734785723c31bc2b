package uplink

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	mpackets "github.com/mochi-mqtt/server/v2/packets"

	"github.com/edgeway/edgeway/agent/config"
)

// cloud is a real MQTT broker started by a test.
type cloud interface {
	Addr() string // host:port, plain MQTT
	Stop()
	Start() // again, on the same port
}

// ---- mochi-mqtt, in process ----

type mochiCloud struct {
	t    testing.TB
	addr string
	mu   sync.Mutex
	srv  *mochi.Server
	opt  func(*mochi.Server)
}

// startMochi starts mochi-mqtt on a TCP listener of 127.0.0.1 with an
// allow-all auth hook; opt may add hooks.
func startMochi(t testing.TB, opt func(*mochi.Server)) *mochiCloud {
	t.Helper()
	m := &mochiCloud{t: t, addr: "127.0.0.1:0", opt: opt}
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

func (m *mochiCloud) Addr() string { return m.addr }

func (m *mochiCloud) Start() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.srv != nil {
		return
	}
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ { // the port of a restarted broker may linger
		if ln, err = net.Listen("tcp", m.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		m.t.Fatalf("mochi listen: %v", err)
	}
	m.addr = ln.Addr().String()
	caps := mochi.NewDefaultServerCapabilities()
	caps.MaximumClientWritesPending = 1 << 16
	srv := mochi.New(&mochi.Options{
		InlineClient: true,
		Capabilities: caps,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err := srv.AddHook(new(allowAll), nil); err != nil {
		m.t.Fatal(err)
	}
	if m.opt != nil {
		m.opt(srv)
	}
	if err := srv.AddListener(listeners.NewNet("t", ln)); err != nil {
		m.t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		m.t.Fatal(err)
	}
	m.srv = srv
}

func (m *mochiCloud) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.srv != nil {
		m.srv.Close()
		m.srv = nil
	}
}

// allowAll lets every client in and everywhere (mochi's own hooks/auth
// package pulls in a YAML module this repository does not carry).
type allowAll struct{ mochi.HookBase }

func (h *allowAll) ID() string { return "allow-all" }
func (h *allowAll) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}
func (h *allowAll) OnConnectAuthenticate(*mochi.Client, mpackets.Packet) bool { return true }
func (h *allowAll) OnACLCheck(*mochi.Client, string, bool) bool               { return true }

// ---- Debian's mosquitto, as a child process ----

type mosquittoCloud struct {
	t      testing.TB
	bin    string
	dir    string
	port   int
	extra  string // config lines after the listener line
	cmd    *exec.Cmd
	exited chan error
	log    *bytes.Buffer
	mu     sync.Mutex
}

// mosquittoPath finds mosquitto: a test that needs it fails when CI is
// set and it is missing, and is skipped otherwise.
func mosquittoPath(t testing.TB) string {
	t.Helper()
	p, err := exec.LookPath("mosquitto")
	if err != nil {
		p = "/usr/sbin/mosquitto"
		if _, serr := os.Stat(p); serr != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("mosquitto not installed (CI is set, so this is a failure): %v", err)
			}
			t.Skip("mosquitto not installed")
		}
	}
	return p
}

// startMosquitto runs mosquitto on a free port of 127.0.0.1 with a
// generated config; extra goes into the listener section.
func startMosquitto(t testing.TB, extra string) *mosquittoCloud {
	t.Helper()
	m := &mosquittoCloud{t: t, bin: mosquittoPath(t), dir: t.TempDir(), port: freePort(t), extra: extra}
	m.Start()
	t.Cleanup(m.Stop)
	return m
}

func (m *mosquittoCloud) Addr() string { return "127.0.0.1:" + strconv.Itoa(m.port) }

func (m *mosquittoCloud) Start() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd != nil {
		return
	}
	conf := "per_listener_settings false\nallow_anonymous true\npersistence false\n" +
		"max_queued_messages 0\nmax_inflight_messages 0\nlog_dest stderr\nlog_type error\nlog_type warning\n"
	if os.Geteuid() == 0 {
		conf += "user root\n" // else it switches to the mosquitto user, who cannot read t.TempDir()
	}
	conf += fmt.Sprintf("listener %d 127.0.0.1\n%s\n", m.port, m.extra)
	path := filepath.Join(m.dir, "mosquitto.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		m.t.Fatal(err)
	}
	m.log = new(bytes.Buffer)
	cmd := exec.Command(m.bin, "-c", path)
	cmd.Stdout, cmd.Stderr = m.log, m.log
	if err := cmd.Start(); err != nil {
		m.t.Fatalf("start mosquitto: %v", err)
	}
	m.cmd = cmd
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", m.Addr(), 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		select {
		case err := <-exited:
			m.cmd = nil
			m.t.Fatalf("mosquitto exited: %v\n%s", err, m.log)
		default:
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("mosquitto not listening on %s: %v\n%s", m.Addr(), err, m.log)
		}
		time.Sleep(20 * time.Millisecond)
	}
	m.exited = exited
}

func (m *mosquittoCloud) Stop() {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.exited:
	case <-time.After(5 * time.Second):
		m.cmd.Process.Kill()
		<-m.exited
	}
	m.cmd = nil
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// ---- a TCP proxy that misbehaves on demand ----

// proxy forwards TCP between the uplink and a broker, parsing MQTT on
// the way so it can record the client's PUBLISHes (DUP flag included)
// and swallow the broker's PUBACKs. It can black-hole its connections
// (stop forwarding both ways without closing, like a NAT that forgot the
// mapping), kill them, or stop listening (broker unreachable).
type proxy struct {
	t      testing.TB
	addr   string
	target string

	dropAcks atomic.Bool

	done   chan struct{} // closed by Close
	mu     sync.Mutex
	ln     net.Listener
	pairs  []*pair
	pubs   []proxyPub
	nconns int
	closed bool
	wg     sync.WaitGroup
}

type pair struct {
	idx            int
	client, server net.Conn
	hole           chan struct{}
	holeOnce       sync.Once
}

// proxyPub is a PUBLISH seen from the client.
type proxyPub struct {
	conn    int // which connection through the proxy (0, 1, …)
	dup     bool
	pid     uint16
	topic   string
	payload string
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	p := &proxy{t: t, target: target, addr: "127.0.0.1:0", done: make(chan struct{})}
	p.Up()
	t.Cleanup(p.Close)
	return p
}

func (p *proxy) Addr() string { return p.addr }

// Up (re)starts listening on the same address.
func (p *proxy) Up() {
	p.t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", p.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		p.t.Fatalf("proxy listen: %v", err)
	}
	p.mu.Lock()
	p.addr = ln.Addr().String()
	p.ln = ln
	p.mu.Unlock()
	p.wg.Add(1)
	go p.accept(ln)
}

// Down stops listening and kills the connections: the broker is
// unreachable (connection refused).
func (p *proxy) Down() {
	p.mu.Lock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	p.mu.Unlock()
	p.Kill()
}

func (p *proxy) accept(ln net.Listener) {
	defer p.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		s, err := net.Dial("tcp", p.target)
		if err != nil {
			c.Close()
			continue
		}
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			c.Close()
			s.Close()
			return
		}
		pr := &pair{idx: p.nconns, client: c, server: s, hole: make(chan struct{})}
		p.nconns++
		p.pairs = append(p.pairs, pr)
		p.mu.Unlock()
		p.wg.Add(2)
		go p.pipe(pr, c, s, true)
		go p.pipe(pr, s, c, false)
	}
}

// pipe forwards whole MQTT packets from src to dst.
func (p *proxy) pipe(pr *pair, src, dst net.Conn, fromClient bool) {
	defer p.wg.Done()
	defer src.Close()
	defer dst.Close()
	br := bufio.NewReader(src)
	for {
		pk, err := readRawPacket(br)
		if err != nil {
			return
		}
		select {
		case <-pr.hole:
			<-p.done // forward nothing, close nothing, until the test ends
			return
		default:
		}
		typ := pk[0] >> 4
		if fromClient && typ == 3 {
			p.recordPublish(pr.idx, pk)
		}
		if !fromClient && typ == 4 && p.dropAcks.Load() {
			continue
		}
		if _, err := dst.Write(pk); err != nil {
			return
		}
	}
}

func (p *proxy) recordPublish(conn int, pk []byte) {
	qos := pk[0] >> 1 & 3
	i := 1
	for pk[i]&0x80 != 0 {
		i++
	}
	i++
	tl := int(pk[i])<<8 | int(pk[i+1])
	topic := string(pk[i+2 : i+2+tl])
	i += 2 + tl
	var pid uint16
	if qos > 0 {
		pid = uint16(pk[i])<<8 | uint16(pk[i+1])
		i += 2
	}
	p.mu.Lock()
	p.pubs = append(p.pubs, proxyPub{conn: conn, dup: pk[0]&0x08 != 0, pid: pid, topic: topic, payload: string(pk[i:])})
	p.mu.Unlock()
}

// Publishes returns the PUBLISHes the client sent so far.
func (p *proxy) Publishes() []proxyPub {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]proxyPub(nil), p.pubs...)
}

// Conns is how many connections went through the proxy.
func (p *proxy) Conns() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.nconns
}

// BlackHole stops forwarding on every current connection, both ways,
// without closing anything. New connections are forwarded normally.
func (p *proxy) BlackHole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, pr := range p.pairs {
		pr.holeOnce.Do(func() { close(pr.hole) })
	}
}

// Kill closes every current connection.
func (p *proxy) Kill() {
	p.mu.Lock()
	prs := p.pairs
	p.pairs = nil
	p.mu.Unlock()
	for _, pr := range prs {
		pr.client.Close()
		pr.server.Close()
	}
}

func (p *proxy) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	p.mu.Unlock()
	close(p.done)
	p.Down()
	p.wg.Wait()
}

// readRawPacket reads one MQTT packet, header included.
func readRawPacket(br *bufio.Reader) ([]byte, error) {
	h, err := br.ReadByte()
	if err != nil {
		return nil, err
	}
	pk := []byte{h}
	n, mul := 0, 1
	for i := 0; ; i++ {
		b, err := br.ReadByte()
		if err != nil {
			return nil, err
		}
		pk = append(pk, b)
		n += int(b&0x7f) * mul
		if b&0x80 == 0 {
			break
		}
		if i == 3 {
			return nil, fmt.Errorf("bad length")
		}
		mul *= 128
	}
	body := make([]byte, n)
	if _, err := io.ReadFull(br, body); err != nil {
		return nil, err
	}
	return append(pk, body...), nil
}

// ---- certificates ----

type pki struct {
	dir                            string
	ca, serverCert, serverKey      string
	clientCert, clientKey, otherCA string
	caCert                         *x509.Certificate
	caKey                          *ecdsa.PrivateKey
}

// newPKI writes a CA, a server certificate for 127.0.0.1/localhost, a
// client certificate and an unrelated CA into a temp dir.
func newPKI(t testing.TB) *pki {
	t.Helper()
	p := &pki{dir: t.TempDir()}
	p.caCert, p.caKey = makeCA(t, "edgeway test CA")
	p.ca = p.write(t, "ca.pem", "CERTIFICATE", p.caCert.Raw)
	other, _ := makeCA(t, "some other CA")
	p.otherCA = p.write(t, "other-ca.pem", "CERTIFICATE", other.Raw)
	p.serverCert, p.serverKey = p.leaf(t, "server", x509.ExtKeyUsageServerAuth)
	p.clientCert, p.clientKey = p.leaf(t, "client", x509.ExtKeyUsageClientAuth)
	return p
}

var serial atomic.Int64

func makeCA(t testing.TB, cn string) (*x509.Certificate, *ecdsa.PrivateKey) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, tpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, key
}

func (p *pki) leaf(t testing.TB, name string, usage x509.ExtKeyUsage) (cert, key string) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial.Add(1)), Subject: pkix.Name{CommonName: "edgeway-" + name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tpl, p.caCert, &k.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+"-key.pem", "PRIVATE KEY", kder)
}

func (p *pki) write(t testing.TB, name, typ string, der []byte) string {
	path := filepath.Join(p.dir, name)
	// 0644: mosquitto may run as another user; these are throwaway keys.
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// ---- an independent MQTT client: paho ----

// subscriber collects what a paho client receives on a filter.
type subscriber struct {
	c    paho.Client
	mu   sync.Mutex
	msgs []received
	ch   chan struct{}
}

type received struct {
	topic    string
	payload  string
	retained bool
}

func subscribe(t testing.TB, addr, filter string) *subscriber {
	t.Helper()
	s := &subscriber{ch: make(chan struct{}, 1)}
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("sub-%d", serial.Add(1))).
		SetCleanSession(true).SetOrderMatters(true).SetAutoReconnect(false).SetConnectRetry(false)
	s.c = paho.NewClient(o)
	if tok := s.c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscriber connect to %s: %v", addr, tok.Error())
	}
	tok := s.c.Subscribe(filter, 1, func(_ paho.Client, m paho.Message) {
		s.mu.Lock()
		s.msgs = append(s.msgs, received{m.Topic(), string(m.Payload()), m.Retained()})
		s.mu.Unlock()
		select {
		case s.ch <- struct{}{}:
		default:
		}
	})
	if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe %q: %v", filter, tok.Error())
	}
	t.Cleanup(func() { s.c.Disconnect(0) })
	return s
}

func (s *subscriber) received() []received {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]received(nil), s.msgs...)
}

// waitFor waits until ok holds for what was received, or fails after d
// showing what arrived.
func (s *subscriber) waitFor(t testing.TB, d time.Duration, what string, ok func([]received) bool) []received {
	t.Helper()
	deadline := time.After(d)
	for {
		got := s.received()
		if ok(got) {
			return got
		}
		select {
		case <-s.ch:
		case <-time.After(50 * time.Millisecond):
		case <-deadline:
			last := got
			if len(last) > 5 {
				last = last[len(last)-5:]
			}
			t.Fatalf("waiting for %s: %d messages received, the last %v", what, len(got), last)
		}
	}
}

// publisher is a paho client publishing into the cloud broker.
func publisher(t testing.TB, addr string) paho.Client {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID(fmt.Sprintf("pub-%d", serial.Add(1))).
		SetAutoReconnect(false)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("publisher connect to %s: %v", addr, tok.Error())
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c
}

// testConfig is the default [uplink] aimed at addr, with timings for tests.
func testConfig(server string) config.Uplink {
	c := config.Default().Uplink
	c.Server = server
	c.ClientID = config.MustAgentTemplate("edgeway-${agent.id}")
	c.Keepalive = "5s"
	c.PingTimeout = config.Duration(2 * time.Second)
	c.ConnectTimeout = config.Duration(3 * time.Second)
	c.Backoff = config.Backoff{Initial: config.Duration(50 * time.Millisecond), Max: config.Duration(500 * time.Millisecond), Jitter: 0.2}
	c.TopicPrefix = config.MustAgentTemplate("site/${agent.id}/")
	return c
}

// eventually polls cond every 10ms for up to d.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testLogger logs to the test with -v, and discards otherwise.
func testLogger(t testing.TB) *slog.Logger {
	if !testing.Verbose() {
		return slog.New(slog.DiscardHandler)
	}
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}
