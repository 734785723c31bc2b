package transports

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"math/big"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
	piondeadline "github.com/pion/transport/v5/deadline"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/metrics"
)

// ---- helpers (prefixed dtls: other listener tests share the package) ----

func dtlsPSKSpec(ids ...string) *DTLSSpec {
	s := NewDTLSSpec()
	for _, id := range ids {
		s.PSK = append(s.PSK, PSKEntry{Identity: id, Key: config.Secret("key-of-" + id)})
	}
	return s
}

func dtlsListenerConfig(spec *DTLSSpec) *config.Listener {
	return &config.Listener{
		Kind: "dtlskind", Type: "dtls", Transport: "dtls", Name: "default",
		Enable: true, Bind: "127.0.0.1:0",
		MaxConnections: config.Unlimited, MaxConnRate: config.Unlimited,
		EnableAuthn: true, Spec: spec,
	}
}

func dtlsOpen(tb testing.TB, cfg *config.Listener) (*DTLSListener, *metrics.Set) {
	tb.Helper()
	m := metrics.NewSet(map[string]string{metrics.LabelListener: cfg.ID()})
	l, err := Open(context.Background(), cfg, Env{Metrics: m})
	if err != nil {
		tb.Fatalf("open: %v", err)
	}
	dl := l.(*DTLSListener)
	tb.Cleanup(func() { dl.Close() })
	return dl, m
}

func dtlsPSKOptions(identity, key string) []dtls.ClientOption {
	return []dtls.ClientOption{
		dtls.WithPSK(func([]byte) ([]byte, error) { return []byte(key), nil }),
		dtls.WithPSKIdentityHint([]byte(identity)),
		dtls.WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_CCM_8),
	}
}

// dtlsDial handshakes a pion client against l; the caller closes it.
func dtlsDial(l *DTLSListener, opts ...dtls.ClientOption) (*dtls.Conn, error) {
	return dtlsDialWithin(5*time.Second, l, opts...)
}

// dtlsDialWithin bounds the client's handshake by d: a wrong PSK key is
// noticed by neither side before its deadline.
func dtlsDialWithin(d time.Duration, l *DTLSListener, opts ...dtls.ClientOption) (*dtls.Conn, error) {
	c, err := dtls.DialWithOptions("udp", l.Addr().(*net.UDPAddr), opts...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

func dtlsMustDial(tb testing.TB, l *DTLSListener, opts ...dtls.ClientOption) *dtls.Conn {
	tb.Helper()
	c, err := dtlsDial(l, opts...)
	if err != nil {
		tb.Fatalf("client handshake: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

func dtlsAccept(tb testing.TB, l *DTLSListener) *dtlsConn {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := l.AcceptWithContext(ctx)
	if err != nil {
		tb.Fatalf("accept: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return c.(*dtlsConn)
}

// dtlsWaitFor polls cond: for counters a server goroutine updates after
// the client has already seen the outcome.
func dtlsWaitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	for end := time.Now().Add(10 * time.Second); !cond(); {
		if time.Now().After(end) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dtlsRead(tb testing.TB, c net.Conn) string {
	tb.Helper()
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 9000)
	n, err := c.Read(buf)
	if err != nil {
		tb.Fatalf("read: %v", err)
	}
	return string(buf[:n])
}

func dtlsWrite(tb testing.TB, c net.Conn, s string) {
	tb.Helper()
	if _, err := c.Write([]byte(s)); err != nil {
		tb.Fatalf("write %q: %v", s, err)
	}
}

type dtlsPKI struct {
	dir                     string
	caFile, srvCert, srvKey string
	roots                   *x509.CertPool
	client                  tls.Certificate
	caKey                   *ecdsa.PrivateKey
	ca                      *x509.Certificate
	serverName, clientCN    string
	serial                  int64
}

// dtlsNewPKI writes a self-signed ECDSA CA, a server certificate for
// "localhost" and makes a client certificate with CN "device-42".
func dtlsNewPKI(tb testing.TB) *dtlsPKI {
	tb.Helper()
	p := &dtlsPKI{dir: tb.TempDir(), serverName: "localhost", clientCN: "device-42", serial: 1}
	var err error
	p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edgeway test CA", Organization: []string{"edgeway"}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		tb.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.roots = x509.NewCertPool()
	p.roots.AddCert(p.ca)
	p.caFile = filepath.Join(p.dir, "ca.pem")
	dtlsWritePEM(tb, p.caFile, "CERTIFICATE", der)

	srvDER, srvKey := p.issue(tb, pkix.Name{CommonName: p.serverName}, x509.ExtKeyUsageServerAuth)
	p.srvCert, p.srvKey = filepath.Join(p.dir, "server.pem"), filepath.Join(p.dir, "server.key")
	dtlsWritePEM(tb, p.srvCert, "CERTIFICATE", srvDER)
	kb, _ := x509.MarshalPKCS8PrivateKey(srvKey)
	dtlsWritePEM(tb, p.srvKey, "PRIVATE KEY", kb)

	cliDER, cliKey := p.issue(tb, pkix.Name{CommonName: p.clientCN, Organization: []string{"acme"}}, x509.ExtKeyUsageClientAuth)
	p.client = tls.Certificate{Certificate: [][]byte{cliDER}, PrivateKey: cliKey}
	return p
}

func (p *dtlsPKI) issue(tb testing.TB, subj pkix.Name, usage x509.ExtKeyUsage) ([]byte, *ecdsa.PrivateKey) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial), Subject: subj,
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames: []string{p.serverName}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		tb.Fatal(err)
	}
	return der, key
}

func dtlsWritePEM(tb testing.TB, path, typ string, der []byte) {
	tb.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		tb.Fatal(err)
	}
}

func (p *dtlsPKI) spec(verify string, failIfNoCert bool) *DTLSSpec {
	s := NewDTLSSpec()
	s.DTLSOptions.CertFile, s.DTLSOptions.KeyFile = p.srvCert, p.srvKey
	s.DTLSOptions.CACertFile = p.caFile
	s.DTLSOptions.Verify = verify
	s.DTLSOptions.FailIfNoPeerCert = failIfNoCert
	return s
}

func (p *dtlsPKI) clientOptions(withCert bool) []dtls.ClientOption {
	opts := []dtls.ClientOption{dtls.WithRootCAs(p.roots), dtls.WithServerName(p.serverName)}
	if withCert {
		opts = append(opts, dtls.WithCertificates(p.client))
	}
	return opts
}

// ---- PSK ----

func TestDTLSPSKEcho(t *testing.T) {
	l, m := dtlsOpen(t, dtlsListenerConfig(dtlsPSKSpec("dev1", "dev2")))
	cli := dtlsMustDial(t, l, dtlsPSKOptions("dev2", "key-of-dev2")...)
	srv := dtlsAccept(t, l)

	dtlsWrite(t, cli, "ping")
	if got := dtlsRead(t, srv); got != "ping" {
		t.Fatalf("server read %q", got)
	}
	dtlsWrite(t, srv, "pong!")
	if got := dtlsRead(t, cli); got != "pong!" {
		t.Fatalf("client read %q", got)
	}

	var conn Conn = srv
	if id := conn.(PSKIdentity).PSKIdentity(); id != "dev2" {
		t.Errorf("PSKIdentity = %q, want dev2", id)
	}
	if _, ok := conn.(Datagram); !ok {
		t.Error("dtls Conn does not implement Datagram")
	}
	info := srv.Info()
	wantPeer := cli.LocalAddr().(*net.UDPAddr).AddrPort()
	if info.Transport != "dtls" || info.ListenerID != "dtlskind:dtls:default" || info.Peer.Port() != wantPeer.Port() || !info.Peer.Addr().IsLoopback() {
		t.Errorf("info = %+v, client at %v", info, wantPeer)
	}
	if info.PeerCert != nil || info.CertCN != "" {
		t.Errorf("PSK session has a certificate: %q", info.CertCN)
	}
	if in, out := info.BytesIn.Load(), info.BytesOut.Load(); in != 4 || out != 5 {
		t.Errorf("conn bytes in/out = %d/%d, want 4/5", in, out)
	}
	snap := m.Snapshot()
	if snap["bytes.received"] != 4 || snap["bytes.sent"] != 5 || snap["connections.count"] != 1 {
		t.Errorf("metrics = %v", snap)
	}
	if st, ok := srv.ConnectionState(); !ok || st.CipherSuiteID != dtls.TLS_PSK_WITH_AES_128_CCM_8 {
		t.Errorf("cipher suite = %v", st.CipherSuiteID)
	}

	// A record longer than the reader's buffer is truncated, not lost.
	dtlsWrite(t, cli, "0123456789")
	buf := make([]byte, 4)
	_ = srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := srv.Read(buf); err != nil || string(buf[:n]) != "0123" {
		t.Fatalf("short read = %q, %v", buf[:n], err)
	}
	dtlsWrite(t, cli, "next")
	if got := dtlsRead(t, srv); got != "next" {
		t.Fatalf("after truncation read %q", got)
	}

	srv.Close()
	if g := m.Snapshot()["connections.count"]; g != 0 {
		t.Errorf("connections.count after close = %v", g)
	}
}

func TestDTLSPSKRefused(t *testing.T) {
	spec := dtlsPSKSpec("dev1")
	spec.HandshakeTimeout = config.Duration(time.Second)
	l, m := dtlsOpen(t, dtlsListenerConfig(spec))

	t.Run("unknown identity", func(t *testing.T) {
		before := m.Counter(MetricRefusedHandshake).Load()
		_, err := dtlsDial(l, dtlsPSKOptions("stranger", "key-of-dev1")...)
		if err == nil {
			t.Fatal("handshake with an unknown identity succeeded")
		}
		dtlsWaitFor(t, "refused.handshake", func() bool { return m.Counter(MetricRefusedHandshake).Load() == before+1 })
	})
	t.Run("wrong key", func(t *testing.T) {
		before := m.Counter(MetricRefusedHandshake).Load()
		c, err := dtls.DialWithOptions("udp", l.Addr().(*net.UDPAddr), dtlsPSKOptions("dev1", "not-the-key")...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		// A bad Finished is dropped silently (RFC 6347 4.1.2.7): both
		// sides give up at their own deadline.
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		if err := c.HandshakeContext(ctx); err == nil {
			t.Fatal("handshake with a wrong key succeeded")
		}
		dtlsWaitFor(t, "refused.handshake", func() bool { return m.Counter(MetricRefusedHandshake).Load() == before+1 })
	})
	if n := m.Snapshot()["connections.count"]; n != 0 {
		t.Errorf("connections.count = %v after refused handshakes", n)
	}
	// Nothing reached Accept; a good client still does.
	cli := dtlsMustDial(t, l, dtlsPSKOptions("dev1", "key-of-dev1")...)
	srv := dtlsAccept(t, l)
	dtlsWrite(t, cli, "ok")
	if got := dtlsRead(t, srv); got != "ok" || srv.PSKIdentity() != "dev1" {
		t.Fatalf("read %q from %q", got, srv.PSKIdentity())
	}
}

func TestDTLSPSKHexAndFile(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "psk.txt")
	if err := os.WriteFile(file, []byte("# devices\n\nfiled:hex:cafe01\nplain:s3cret:with:colons\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	spec := NewDTLSSpec()
	spec.PSK = []PSKEntry{{Identity: "inline", Key: "hex:00ff10"}}
	spec.PSKFile = file
	spec.PSKIdentityHint = "edgeway"
	l, _ := dtlsOpen(t, dtlsListenerConfig(spec))
	for _, c := range []struct{ id, key string }{{"inline", "\x00\xff\x10"}, {"filed", "\xca\xfe\x01"}, {"plain", "s3cret:with:colons"}} {
		var hint atomic.Value
		opts := dtlsPSKOptions(c.id, c.key)
		opts[0] = dtls.WithPSK(func(h []byte) ([]byte, error) { hint.Store(string(h)); return []byte(c.key), nil })
		cli := dtlsMustDial(t, l, opts...)
		srv := dtlsAccept(t, l)
		if srv.PSKIdentity() != c.id {
			t.Errorf("identity %q, want %q", srv.PSKIdentity(), c.id)
		}
		if h, _ := hint.Load().(string); h != "edgeway" {
			t.Errorf("client saw hint %q", h)
		}
		cli.Close()
	}
}

// ---- certificates ----

func TestDTLSCertificates(t *testing.T) {
	pki := dtlsNewPKI(t)
	t.Run("verify_peer with client cert", func(t *testing.T) {
		l, _ := dtlsOpen(t, dtlsListenerConfig(pki.spec("verify_peer", true)))
		cli := dtlsMustDial(t, l, pki.clientOptions(true)...)
		srv := dtlsAccept(t, l)
		info := srv.Info()
		if info.CertCN != "device-42" || info.PeerCert == nil || !strings.Contains(info.CertDN, "CN=device-42") || !strings.Contains(info.CertDN, "O=acme") {
			t.Errorf("cert info CN=%q DN=%q", info.CertCN, info.CertDN)
		}
		if srv.PSKIdentity() != "" {
			t.Errorf("certificate session has PSK identity %q", srv.PSKIdentity())
		}
		dtlsWrite(t, cli, "hello")
		if got := dtlsRead(t, srv); got != "hello" {
			t.Fatalf("read %q", got)
		}
	})
	t.Run("fail_if_no_peer_cert refuses", func(t *testing.T) {
		l, m := dtlsOpen(t, dtlsListenerConfig(pki.spec("verify_peer", true)))
		if _, err := dtlsDial(l, pki.clientOptions(false)...); err == nil {
			t.Fatal("client without certificate got in")
		}
		dtlsWaitFor(t, "refused.handshake", func() bool { return m.Counter(MetricRefusedHandshake).Load() == 1 })
	})
	t.Run("verify_peer without fail_if_no_peer_cert", func(t *testing.T) {
		l, _ := dtlsOpen(t, dtlsListenerConfig(pki.spec("verify_peer", false)))
		dtlsMustDial(t, l, pki.clientOptions(false)...)
		if srv := dtlsAccept(t, l); srv.Info().PeerCert != nil {
			t.Errorf("unexpected peer cert %q", srv.Info().CertCN)
		}
	})
	t.Run("certificate and psk on one listener", func(t *testing.T) {
		spec := pki.spec("verify_none", false)
		spec.PSK = []PSKEntry{{Identity: "dev1", Key: "k1"}}
		l, _ := dtlsOpen(t, dtlsListenerConfig(spec))
		dtlsMustDial(t, l, pki.clientOptions(false)...)
		dtlsAccept(t, l)
		dtlsMustDial(t, l, dtlsPSKOptions("dev1", "k1")...)
		if srv := dtlsAccept(t, l); srv.PSKIdentity() != "dev1" {
			t.Errorf("identity %q", srv.PSKIdentity())
		}
	})
}

// ---- Connection ID and address migration ----

// dtlsSwitchConn is the client's socket: a net.PacketConn over two UDP
// sockets that sends from the first until Switch, then from the other,
// as a NAT that rebinds the device to a new port would. It reads from
// both and remembers which one the last datagram came in on.
type dtlsSwitchConn struct {
	socks    [2]*net.UDPConn
	active   atomic.Int32
	lastSock atomic.Int32
	in       chan dtlsDatagram
	rd       *piondeadline.Deadline
	done     chan struct{}
	once     sync.Once
	wg       sync.WaitGroup
}

type dtlsDatagram struct {
	b    []byte
	from net.Addr
	sock int32
}

func dtlsNewSwitchConn(tb testing.TB) *dtlsSwitchConn {
	tb.Helper()
	s := &dtlsSwitchConn{in: make(chan dtlsDatagram, 64), rd: piondeadline.New(), done: make(chan struct{})}
	s.lastSock.Store(-1)
	for i := range s.socks {
		c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			tb.Fatal(err)
		}
		s.socks[i] = c
		s.wg.Add(1)
		go func(i int32, c *net.UDPConn) {
			defer s.wg.Done()
			for {
				buf := make([]byte, 9000)
				n, from, err := c.ReadFrom(buf)
				if err != nil {
					return
				}
				select {
				case s.in <- dtlsDatagram{buf[:n], from, i}:
				case <-s.done:
					return
				}
			}
		}(int32(i), c)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func (s *dtlsSwitchConn) Switch(to int) { s.active.Store(int32(to)) }

func (s *dtlsSwitchConn) addr(i int) netip.AddrPort {
	return s.socks[i].LocalAddr().(*net.UDPAddr).AddrPort()
}

func (s *dtlsSwitchConn) ReadFrom(p []byte) (int, net.Addr, error) {
	select {
	case d := <-s.in:
		s.lastSock.Store(d.sock)
		return copy(p, d.b), d.from, nil
	case <-s.rd.Done():
		return 0, nil, os.ErrDeadlineExceeded
	case <-s.done:
		return 0, nil, net.ErrClosed
	}
}

func (s *dtlsSwitchConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	return s.socks[s.active.Load()].WriteTo(p, addr)
}

func (s *dtlsSwitchConn) Close() error {
	s.once.Do(func() {
		close(s.done)
		s.socks[0].Close()
		s.socks[1].Close()
		s.wg.Wait()
	})
	return nil
}

func (s *dtlsSwitchConn) LocalAddr() net.Addr                { return s.socks[s.active.Load()].LocalAddr() }
func (s *dtlsSwitchConn) SetDeadline(t time.Time) error      { s.rd.Set(t); return nil }
func (s *dtlsSwitchConn) SetReadDeadline(t time.Time) error  { s.rd.Set(t); return nil }
func (s *dtlsSwitchConn) SetWriteDeadline(t time.Time) error { return nil }

// dtlsMigrationSetup handshakes a client on a dtlsSwitchConn (sending
// CIDs, not asking for one: OnlySendCIDGenerator) and checks a first
// exchange from socket 0.
func dtlsMigrationSetup(t *testing.T, connectionID bool) (*DTLSListener, *dtlsSwitchConn, *dtls.Conn, *dtlsConn) {
	spec := dtlsPSKSpec("dev1")
	spec.ConnectionID = connectionID
	l, _ := dtlsOpen(t, dtlsListenerConfig(spec))
	sw := dtlsNewSwitchConn(t)
	opts := append(dtlsPSKOptions("dev1", "key-of-dev1"), dtls.WithConnectionIDGenerator(dtls.OnlySendCIDGenerator()))
	cli, err := dtls.ClientWithOptions(sw, l.Addr(), opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cli.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := cli.HandshakeContext(ctx); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	srv := dtlsAccept(t, l)
	dtlsWrite(t, cli, "hello")
	if got := dtlsRead(t, srv); got != "hello" {
		t.Fatalf("server read %q", got)
	}
	dtlsWrite(t, srv, "hi")
	if got := dtlsRead(t, cli); got != "hi" || sw.lastSock.Load() != 0 {
		t.Fatalf("client read %q on socket %d", got, sw.lastSock.Load())
	}
	if srv.LivePeer() != sw.addr(0) {
		t.Fatalf("LivePeer %v, client on %v", srv.LivePeer(), sw.addr(0))
	}
	return l, sw, cli, srv
}

func TestDTLSConnectionIDMigration(t *testing.T) {
	l, sw, cli, srv := dtlsMigrationSetup(t, true)
	if st, _ := srv.ConnectionState(); st.CipherSuiteID == 0 {
		t.Fatal("no session state")
	}
	attempts := l.attempts.Load()

	sw.Switch(1) // NAT rebinding: same session, new source port
	dtlsWrite(t, cli, "moved")
	if got := dtlsRead(t, srv); got != "moved" {
		t.Fatalf("server read %q after the port change", got)
	}
	// pion hands the record's data to Read before it moves the session to
	// the record's source (conn.go: the RFC 9146 address update comes
	// after the decrypted data is queued), so the move may land a moment
	// after the read (seen in CI: 9 of 200 runs under -race).
	eventually(t, "the session to move to the new port", func() bool { return srv.LivePeer() == sw.addr(1) })
	if srv.LivePeer() != sw.addr(1) || CurrentPeer(srv) != sw.addr(1) {
		t.Errorf("LivePeer %v, want the new port %v", srv.LivePeer(), sw.addr(1))
	}
	if srv.Info().Peer != sw.addr(0) {
		t.Errorf("Info().Peer %v, want the address the session started from %v", srv.Info().Peer, sw.addr(0))
	}
	dtlsWrite(t, srv, "reply")
	if got := dtlsRead(t, cli); got != "reply" {
		t.Fatalf("client read %q", got)
	}
	if s := sw.lastSock.Load(); s != 1 {
		t.Errorf("server reply came in on socket %d, want the new one", s)
	}
	// One session, one handshake: pion started no other.
	if n := l.attempts.Load(); n != attempts {
		t.Errorf("%d new sessions started after the port change", n-attempts)
	}
	if n := l.guard.Active(); n != 1 {
		t.Errorf("active sessions = %d", n)
	}
}

func TestDTLSWithoutConnectionIDPortChangeBreaks(t *testing.T) {
	_, sw, cli, srv := dtlsMigrationSetup(t, false)

	sw.Switch(1)
	dtlsWrite(t, cli, "lost") // from a port the server has no session for
	sw.Switch(0)
	dtlsWrite(t, cli, "marker")
	// Both went through the server's one socket in order: if "lost" had
	// reached the session it would be read first.
	if got := dtlsRead(t, srv); got != "marker" {
		t.Fatalf("server read %q, want the record from the old port only", got)
	}
	if srv.LivePeer() != sw.addr(0) {
		t.Errorf("LivePeer moved to %v without a CID", srv.LivePeer())
	}
}

// ---- ClientHello flood ----

// dtlsClientHello captures the first flight of a real pion client.
func dtlsClientHello(t *testing.T) []byte {
	sink, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	c, err := dtls.DialWithOptions("udp", sink.LocalAddr().(*net.UDPAddr), dtlsPSKOptions("flood", "x")...)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = c.HandshakeContext(ctx) }()
	defer func() { cancel(); <-done }()
	_ = sink.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	n, _, err := sink.ReadFrom(buf)
	if err != nil {
		t.Fatal(err)
	}
	if buf[0] != 22 || buf[13] != 1 { // handshake record, ClientHello
		t.Fatalf("not a ClientHello: % x", buf[:16])
	}
	return bytes.Clone(buf[:n])
}

func TestDTLSClientHelloFlood(t *testing.T) {
	const hellos, maxHS = 2000, 16
	spec := dtlsPSKSpec("dev1")
	spec.MaxHandshakes = maxHS
	spec.HandshakeTimeout = config.Duration(500 * time.Millisecond)
	l, m := dtlsOpen(t, dtlsListenerConfig(spec))
	hello := dtlsClientHello(t)
	gauge := m.Gauge(MetricHandshakesInflight)

	runtime.GC()
	baseline := runtime.NumGoroutine()

	var sampled atomic.Int64
	stop := make(chan struct{})
	var sampler sync.WaitGroup
	sampler.Go(func() {
		for {
			if v := gauge.Load(); v > sampled.Load() {
				sampled.Store(v)
			}
			select {
			case <-stop:
				return
			default:
				runtime.Gosched()
			}
		}
	})

	// Many source ports: batches of sockets, each sending one hello.
	srvAddr := l.Addr()
	for sent := 0; sent < hellos; {
		var batch []*net.UDPConn
		for ; sent < hellos && len(batch) < 250; sent++ {
			c, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := c.WriteTo(hello, srvAddr); err != nil {
				t.Fatal(err)
			}
			batch = append(batch, c)
		}
		for _, c := range batch {
			c.Close()
		}
	}

	dtlsWaitFor(t, "handshakes to drain", func() bool { return gauge.Load() == 0 && l.inflight.Load() == 0 })
	close(stop)
	sampler.Wait()

	if p := l.peak.Load(); p > maxHS || sampled.Load() > maxHS {
		t.Fatalf("in-progress handshakes peaked at %d (sampled %d), cap %d", p, sampled.Load(), maxHS)
	}
	if p := l.peak.Load(); p != maxHS {
		t.Errorf("peak %d: the flood never reached the cap", p)
	}
	refusedCap, failed := m.Counter(MetricRefusedHandshakeCap).Load(), m.Counter(MetricRefusedHandshake).Load()
	if refusedCap == 0 || failed == 0 {
		t.Errorf("refused: cap %d, handshake %d", refusedCap, failed)
	}
	t.Logf("%d hellos: pion started %d sessions, %d refused at the cap, %d timed out", hellos, l.attempts.Load(), refusedCap, failed)

	// Every handshake goroutine (ours and pion's) is gone.
	dtlsWaitFor(t, "goroutines back to baseline", func() bool {
		return runtime.NumGoroutine() <= baseline+2
	})

	cli := dtlsMustDial(t, l, dtlsPSKOptions("dev1", "key-of-dev1")...)
	srv := dtlsAccept(t, l)
	dtlsWrite(t, cli, "still here")
	if got := dtlsRead(t, srv); got != "still here" {
		t.Fatalf("read %q", got)
	}
}

// ---- limits and access rules ----

func TestDTLSGuard(t *testing.T) {
	t.Run("access rules", func(t *testing.T) {
		cfg := dtlsListenerConfig(dtlsPSKSpec("dev1"))
		deny, _ := config.ParseAccessRule("deny 127.0.0.0/8")
		cfg.AccessRules = []config.AccessRule{deny}
		spec := cfg.Spec.(*DTLSSpec)
		spec.HandshakeTimeout = config.Duration(300 * time.Millisecond)
		l, m := dtlsOpen(t, cfg)
		c, err := dtls.DialWithOptions("udp", l.Addr().(*net.UDPAddr), dtlsPSKOptions("dev1", "key-of-dev1")...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_ = c.HandshakeContext(ctx)
		}()
		dtlsWaitFor(t, "access_rules refusal", func() bool { return m.Counter("connections.refused.access_rules").Load() >= 1 })
		if l.peak.Load() != 0 {
			t.Error("a denied peer started a handshake")
		}
	})
	t.Run("max_connections", func(t *testing.T) {
		cfg := dtlsListenerConfig(dtlsPSKSpec("dev1"))
		cfg.MaxConnections = 1
		cfg.Spec.(*DTLSSpec).HandshakeTimeout = config.Duration(300 * time.Millisecond)
		l, m := dtlsOpen(t, cfg)
		dtlsMustDial(t, l, dtlsPSKOptions("dev1", "key-of-dev1")...)
		dtlsAccept(t, l)
		c, err := dtls.DialWithOptions("udp", l.Addr().(*net.UDPAddr), dtlsPSKOptions("dev1", "key-of-dev1")...)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
		defer cancel()
		if err := c.HandshakeContext(ctx); err == nil {
			t.Fatal("second session admitted with max_connections = 1")
		}
		if n := m.Counter("connections.refused.max_connections").Load(); n == 0 {
			t.Error("max_connections refusal not counted")
		}
	})
}

// ---- live update ----

func TestDTLSUpdatePSK(t *testing.T) {
	spec := dtlsPSKSpec("old")
	cfg := dtlsListenerConfig(spec)
	l, _ := dtlsOpen(t, cfg)
	cli := dtlsMustDial(t, l, dtlsPSKOptions("old", "key-of-old")...)
	srv := dtlsAccept(t, l)

	file := filepath.Join(t.TempDir(), "psk")
	if err := os.WriteFile(file, []byte("filed:v1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ns := *spec
	ns.PSK = []PSKEntry{{Identity: "new", Key: "key-of-new"}}
	ns.PSKFile = file
	ns.MaxHandshakes = 4
	ncfg := *cfg
	ncfg.Spec = &ns
	ncfg.MaxConnections = 100
	if err := l.Update(&ncfg); err != nil {
		t.Fatalf("update: %v", err)
	}

	// The session of the removed identity goes on.
	dtlsWrite(t, cli, "still")
	if got := dtlsRead(t, srv); got != "still" {
		t.Fatalf("old session read %q", got)
	}
	dtlsWrite(t, srv, "yes")
	if got := dtlsRead(t, cli); got != "yes" {
		t.Fatalf("old session client read %q", got)
	}
	if _, err := dtlsDial(l, dtlsPSKOptions("old", "key-of-old")...); err == nil {
		t.Error("removed identity still connects")
	}
	dtlsMustDial(t, l, dtlsPSKOptions("new", "key-of-new")...)
	if s := dtlsAccept(t, l); s.PSKIdentity() != "new" {
		t.Errorf("identity %q", s.PSKIdentity())
	}
	dtlsMustDial(t, l, dtlsPSKOptions("filed", "v1")...)
	dtlsAccept(t, l)
	if l.maxHS.Load() != 4 {
		t.Errorf("max_handshakes not applied: %d", l.maxHS.Load())
	}

	// psk_file is read again on every update.
	if err := os.WriteFile(file, []byte("filed:v2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.Update(&ncfg); err != nil {
		t.Fatalf("update: %v", err)
	}
	if _, err := dtlsDialWithin(time.Second, l, dtlsPSKOptions("filed", "v1")...); err == nil {
		t.Error("old file key still accepted")
	}
	dtlsMustDial(t, l, dtlsPSKOptions("filed", "v2")...)
	dtlsAccept(t, l)

	// A broken file keeps the keys in use.
	if err := os.WriteFile(file, []byte("no separator\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := l.Update(&ncfg); err == nil || errors.Is(err, ErrRestartRequired) {
		t.Fatalf("update with a bad psk_file: %v", err)
	}
	dtlsMustDial(t, l, dtlsPSKOptions("new", "key-of-new")...)
	dtlsAccept(t, l)
}

func TestDTLSUpdateNeedsRestart(t *testing.T) {
	spec := dtlsPSKSpec("dev1")
	cfg := dtlsListenerConfig(spec)
	l, _ := dtlsOpen(t, cfg)
	for name, mod := range map[string]func(*DTLSSpec, *config.Listener){
		"mtu":           func(s *DTLSSpec, _ *config.Listener) { s.MTU = 1400 },
		"connection_id": func(s *DTLSSpec, _ *config.Listener) { s.ConnectionID = false },
		"hint":          func(s *DTLSSpec, _ *config.Listener) { s.PSKIdentityHint = "x" },
		"recbuf":        func(s *DTLSSpec, _ *config.Listener) { s.UDPOptions.Recbuf = 1 << 20 },
		"certfile":      func(s *DTLSSpec, _ *config.Listener) { s.DTLSOptions.CertFile = "/x" },
		"psk off":       func(s *DTLSSpec, _ *config.Listener) { s.PSK = nil },
		"bind":          func(_ *DTLSSpec, c *config.Listener) { c.Bind = "127.0.0.1:1" },
	} {
		ns, ncfg := *spec, *cfg
		ncfg.Spec = &ns
		mod(&ns, &ncfg)
		if err := l.Update(&ncfg); !errors.Is(err, ErrRestartRequired) {
			t.Errorf("%s: Update = %v, want ErrRestartRequired", name, err)
		}
	}
	// Limits alone apply live.
	ncfg := *cfg
	ncfg.MaxConnRate = 5
	if err := l.Update(&ncfg); err != nil {
		t.Errorf("limits update: %v", err)
	}
}

// ---- close and go-coap ----

func TestDTLSClose(t *testing.T) {
	l, _ := dtlsOpen(t, dtlsListenerConfig(dtlsPSKSpec("dev1")))
	cli := dtlsMustDial(t, l, dtlsPSKOptions("dev1", "key-of-dev1")...)
	srv := dtlsAccept(t, l)
	errc := make(chan error, 1)
	go func() { _, err := l.Accept(); errc <- err }()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	err := <-errc
	if !errors.Is(err, net.ErrClosed) || !errors.Is(err, io.EOF) {
		t.Fatalf("Accept after Close = %v", err)
	}
	if err := l.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	// The accepted session outlives the listener.
	dtlsWrite(t, cli, "after")
	if got := dtlsRead(t, srv); got != "after" {
		t.Fatalf("read %q", got)
	}
}

// TestDTLSGoCoapServer runs go-coap's DTLS server on the listener and
// talks to it with go-coap's DTLS client.
func TestDTLSGoCoapServer(t *testing.T) {
	l, m := dtlsOpen(t, dtlsListenerConfig(dtlsPSKSpec("dev1")))
	router := mux.NewRouter()
	_ = router.Handle("/who", mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) {
		id := "?"
		if p, ok := w.Conn().NetConn().(PSKIdentity); ok {
			id = p.PSKIdentity()
		}
		_ = w.SetResponse(codes.Content, message.TextPlain, strings.NewReader("hello "+id))
	}))
	s := coapdtls.NewServer(options.WithMux(router))
	served := make(chan error, 1)
	go func() { served <- s.Serve(l) }()

	cc, err := coapdtls.Dial(l.Addr().String(), &dtls.Config{
		PSK:                   func([]byte) ([]byte, error) { return []byte("key-of-dev1"), nil },
		PSKIdentityHint:       []byte("dev1"),
		CipherSuites:          []dtls.CipherSuiteID{dtls.TLS_PSK_WITH_AES_128_CCM_8},
		ConnectionIDGenerator: dtls.OnlySendCIDGenerator(),
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cc.Get(ctx, "/who")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := resp.ReadBody()
	if resp.Code() != codes.Content || string(body) != "hello dev1" {
		t.Fatalf("got %v %q", resp.Code(), body)
	}
	cc.Close()
	if m.Snapshot()["bytes.received"] == 0 {
		t.Error("go-coap traffic not counted")
	}
	s.Stop()
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("listener not closed by go-coap's Stop: %v", err)
	}
}

// ---- config ----

func init() {
	config.RegisterKind(config.KindSchema{Name: "dtlskind", ListenerTypes: []string{"dtls"}})
}

func TestDTLSConfig(t *testing.T) {
	dir := t.TempDir()
	pskFile := filepath.Join(dir, "psk")
	if err := os.WriteFile(pskFile, []byte("a:hex:0102\n# c\nb:two\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badFile := filepath.Join(dir, "bad")
	if err := os.WriteFile(badFile, []byte("a:1\nbroken\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const head = "[gateway.dtlskind.listeners.dtls.default]\nbind = \"5684\"\n"
	const key = "gateway.dtlskind.listeners.dtls.default."
	cases := []struct {
		name, toml string
		want       []string
	}{
		{"psk ok", `psk = [{ identity = "dev1", key = "secret" }, { identity = "dev2", key = "hex:00ff" }]`, nil},
		{"psk_file ok", `psk_file = "` + pskFile + `"`, nil},
		{"all keys", `acceptors = 4
psk = [{ identity = "d", key = "k" }]
psk_identity_hint = "edgeway"
connection_id = false
handshake_timeout = "5s"
max_handshakes = 32
mtu = 1280
udp_options = { recbuf = "256KB", sndbuf = "256KB", buffer = "8KB", reuseaddr = true, active_n = 100 }
dtls_options = { ciphers = ["TLS_PSK_WITH_AES_128_CCM_8", "TLS_PSK_WITH_CHACHA20_POLY1305_SHA256"], versions = ["dtlsv1.2", "dtlsv1"] }`, nil},
		{"nothing to authenticate with", `mtu = 1200`, []string{`t.toml:1: ` + key + `psk: a dtls listener needs dtls_options.certfile, psk or psk_file`}},
		{"duplicate identity", `psk = [{ identity = "d", key = "k" }, { identity = "d", key = "k2" }]`, []string{`t.toml:3: ` + key + `psk[1].identity: duplicate identity "d"`}},
		{"empty identity and key", `psk = [{ identity = "", key = "" }]`, []string{
			`t.toml:3: ` + key + `psk[0].identity: must not be empty`,
			`t.toml:3: ` + key + `psk[0].key: must not be empty`,
		}},
		{"bad hex", `psk = [{ identity = "d", key = "hex:zz" }]`, []string{`t.toml:3: ` + key + `psk[0].key: bad hex after "hex:"`}},
		{"psk_file missing", `psk_file = "` + dir + `/nope"`, []string{`t.toml:3: ` + key + `psk_file: open ` + dir + `/nope: no such file or directory`}},
		{"psk_file bad line", `psk_file = "` + badFile + `"`, []string{`t.toml:3: ` + key + `psk_file: ` + badFile + `:2: want identity:secret`}},
		{"psk_file and psk overlap", "psk_file = \"" + pskFile + "\"\npsk = [{ identity = \"b\", key = \"k\" }]", []string{`t.toml:3: ` + key + `psk_file: identity "b" is also in psk`}},
		{"unknown cipher", "psk = [{ identity = \"d\", key = \"k\" }]\ndtls_options = { ciphers = [\"TLS_PSK_WITH_AES_128_CCM_8\", \"TLS_AES_128_GCM_SHA256\"] }", []string{
			`t.toml:4: ` + key + `dtls_options.ciphers[1]: unknown dtls cipher suite "TLS_AES_128_GCM_SHA256" (pion/dtls has ` + strings.Join(dtlsCipherNames(), ", ") + `)`,
		}},
		{"no psk suite", "psk = [{ identity = \"d\", key = \"k\" }]\ndtls_options = { ciphers = [\"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\"] }", []string{
			`t.toml:4: ` + key + `dtls_options.ciphers: no TLS_PSK_* or TLS_ECDHE_PSK_* suite although psk is set`,
		}},
		{"bad version", "psk = [{ identity = \"d\", key = \"k\" }]\ndtls_options = { versions = [\"tlsv1.3\"] }", []string{
			`t.toml:4: ` + key + `dtls_options.versions[0]: unknown dtls version "tlsv1.3" (want dtlsv1.2)`,
			`t.toml:4: ` + key + `dtls_options.versions: must include "dtlsv1.2", the only version served`,
		}},
		{"limits", "psk = [{ identity = \"d\", key = \"k\" }]\nmax_handshakes = 0\nmtu = 100", []string{
			`t.toml:4: ` + key + `max_handshakes: must be at least 1, got 0`,
			`t.toml:5: ` + key + `mtu: must be within 256..65535, got 100`,
		}},
		{"hint without psk", "dtls_options = { certfile = \"" + pskFile + "\", keyfile = \"" + pskFile + "\" }\npsk_identity_hint = \"h\"", []string{
			`t.toml:4: ` + key + `psk_identity_hint: needs psk or psk_file`,
		}},
		{"unknown key", "psk = [{ identity = \"d\", key = \"k\" }]\ncid = true", []string{`t.toml:4: ` + key + `cid: unknown key`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg, err := config.Parse([]byte(head+c.toml), "t.toml")
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error:\n%v", err)
				}
				l := cfg.Gateways["dtlskind"].Listeners[0]
				if s := l.Spec.(*DTLSSpec); c.name == "psk ok" && (!s.ConnectionID || s.MaxHandshakes != 128 || s.MTU != 1200 || s.HandshakeTimeout.D() != 10*time.Second) {
					t.Errorf("defaults: %+v", s)
				}
				return
			}
			if err == nil {
				t.Fatalf("no error, want %q", c.want)
			}
			got := strings.Split(err.Error(), "\n")
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", err, strings.Join(c.want, "\n"))
			}
		})
	}
	// The secret never shows in errors.
	_, err := config.Parse([]byte(head+`psk = [{ identity = "d", key = "hex:topsecretzz" }]`), "t.toml")
	if err == nil || strings.Contains(err.Error(), "topsecret") {
		t.Errorf("error leaks the key: %v", err)
	}
}

func TestDTLSCipherTable(t *testing.T) {
	for _, s := range dtlsSuites {
		// pion spells one of them with dashes.
		if got := strings.ReplaceAll(dtls.CipherSuiteName(s.id), "-", "_"); got != s.name {
			t.Errorf("%s: pion calls 0x%04x %s", s.name, uint16(s.id), got)
		}
	}
	if len(dtlsSuites) != len(dtls.CipherSuites())+2 { // + the two CBC_SHA256 PSK suites pion has but does not list
		t.Errorf("pion lists %d suites, table has %d", len(dtls.CipherSuites()), len(dtlsSuites))
	}
}
