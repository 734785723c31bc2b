package transports

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/metrics"
)

// tlsSetup is a CA, a server certificate and a tls listener config using them.
type tlsSetup struct {
	pki *testPKI
	cfg *config.Listener
}

func newTLSSetup(t *testing.T) *tlsSetup {
	t.Helper()
	pki := newTestPKI(t)
	cert, key, _ := pki.issue(t, "server", true)
	cfg := listenerConfig(t, "ssl")
	spec := cfg.Spec.(*TLSSpec)
	spec.SSLOptions.CertFile, spec.SSLOptions.KeyFile, spec.SSLOptions.CACertFile = cert, key, pki.CAFile
	return &tlsSetup{pki: pki, cfg: cfg}
}

func (s *tlsSetup) spec() *TLSSpec { return s.cfg.Spec.(*TLSSpec) }

// dial connects and completes the client side of the handshake.
func (s *tlsSetup) dial(l Listener, cert *tls.Certificate) (*tls.Conn, error) {
	tc := &tls.Config{RootCAs: s.pki.Pool, ServerName: "localhost"}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", l.Addr().String(), tc)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// mustDial dials and checks the connection is served with one echo round.
func (s *tlsSetup) mustDial(t *testing.T, l Listener, cert *tls.Certificate) *tls.Conn {
	t.Helper()
	c, err := s.dial(l, cert)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// echo serves c until it closes.
func echo(c Conn) {
	defer c.Close()
	_, _ = io.Copy(c, c)
}

// roundTrip writes a line and expects it back.
func roundTrip(t *testing.T, c net.Conn, line string) {
	t.Helper()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		t.Fatalf("write: %v", err)
	}
	got, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	if got != line+"\n" {
		t.Fatalf("echo = %q, want %q", got, line+"\n")
	}
}

// acceptOne accepts one connection, failing after 5 s.
func acceptOne(t testing.TB, l Listener) Conn {
	t.Helper()
	type res struct {
		c   Conn
		err error
	}
	ch := make(chan res, 1)
	go func() {
		c, err := l.Accept()
		ch <- res{c, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			t.Fatalf("accept: %v", r.err)
		}
		t.Cleanup(func() { r.c.Close() })
		return r.c
	case <-time.After(5 * time.Second):
		t.Fatal("accept: nothing after 5s")
		return nil
	}
}

// refusedByServer checks that a dial fails or the connection is closed by
// the server before the first echo.
func (s *tlsSetup) refusedByServer(t *testing.T, l Listener, cert *tls.Certificate) {
	t.Helper()
	c, err := s.dial(l, cert)
	if err != nil {
		return
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = io.WriteString(c, "x\n")
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("connection was served, want it refused (read: %v)", err)
	}
}

func TestTLSEcho(t *testing.T) {
	s := newTLSSetup(t)
	l, m := openListener(t, s.cfg)
	c := s.mustDial(t, l, nil)
	sc := acceptOne(t, l)
	go echo(sc)
	roundTrip(t, c, "hello over tls")
	info := sc.Info()
	if info.Transport != "tls" || info.ListenerID != "transportstest:ssl:t" {
		t.Errorf("info = %s %s, want tls transportstest:ssl:t", info.Transport, info.ListenerID)
	}
	if info.Peer.String() != c.LocalAddr().String() {
		t.Errorf("peer = %s, want %s", info.Peer, c.LocalAddr())
	}
	if info.PeerCert != nil || info.CertCN != "" {
		t.Errorf("peer cert without verify_peer: %v %q", info.PeerCert, info.CertCN)
	}
	if got := tlsConnOf(sc).ConnectionState().Version; got != tls.VersionTLS13 {
		t.Errorf("version = %x, want TLS 1.3", got)
	}
	eventually(t, "byte counters", func() bool {
		return info.BytesIn.Load() == 15 && info.BytesOut.Load() == 15 && count(m, metrics.BytesSent) == 15
	})
}

func TestTLSVersions(t *testing.T) {
	s := newTLSSetup(t)
	s.spec().SSLOptions.Versions = []string{"tlsv1.2"}
	s.spec().SSLOptions.Ciphers = []string{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"}
	l, _ := openListener(t, s.cfg)
	c := s.mustDial(t, l, nil)
	sc := acceptOne(t, l)
	go echo(sc)
	roundTrip(t, c, "v12")
	st := c.ConnectionState()
	if st.Version != tls.VersionTLS12 || st.CipherSuite != tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 {
		t.Errorf("negotiated %x/%x, want TLS 1.2 with ECDHE_ECDSA_AES_128_GCM", st.Version, st.CipherSuite)
	}
}

func TestTLSPeerCertificate(t *testing.T) {
	s := newTLSSetup(t)
	s.spec().SSLOptions.Verify = "verify_peer"
	_, _, client := s.pki.issue(t, "dev-42", false)
	l, _ := openListener(t, s.cfg)

	c := s.mustDial(t, l, &client)
	sc := acceptOne(t, l)
	go echo(sc)
	roundTrip(t, c, "with cert")
	info := sc.Info()
	if info.CertCN != "dev-42" || info.CertDN != "CN=dev-42,O=edgeway" || info.PeerCert == nil {
		t.Errorf("cert info = %q %q %v", info.CertCN, info.CertDN, info.PeerCert != nil)
	}

	// verify_peer alone lets a client without a certificate in.
	c2 := s.mustDial(t, l, nil)
	sc2 := acceptOne(t, l)
	go echo(sc2)
	roundTrip(t, c2, "without cert")
	if sc2.Info().PeerCert != nil || sc2.Info().CertCN != "" {
		t.Errorf("cert info for a client without one: %q", sc2.Info().CertCN)
	}
}

func TestTLSFailIfNoPeerCert(t *testing.T) {
	s := newTLSSetup(t)
	s.spec().SSLOptions.Verify = "verify_peer"
	s.spec().SSLOptions.FailIfNoPeerCert = true
	_, _, client := s.pki.issue(t, "dev-1", false)
	l, m := openListener(t, s.cfg)

	s.refusedByServer(t, l, nil)
	eventually(t, "refused handshake counted", func() bool { return count(m, "connections.refused.handshake") == 1 })

	// A certificate from another CA is refused too.
	other := newTestPKI(t)
	_, _, stranger := other.issue(t, "intruder", false)
	s.refusedByServer(t, l, &stranger)
	eventually(t, "second refusal counted", func() bool { return count(m, "connections.refused.handshake") == 2 })

	c := s.mustDial(t, l, &client)
	sc := acceptOne(t, l)
	go echo(sc)
	roundTrip(t, c, "good client")
	if sc.Info().CertCN != "dev-1" {
		t.Errorf("accepted %q, want the good client dev-1", sc.Info().CertCN)
	}
	if g := guardOf(t, l).Active(); g != 1 {
		t.Errorf("guard holds %d slots, want 1 (refused handshakes release theirs)", g)
	}
}

func TestTLSMaxConnections(t *testing.T) {
	s := newTLSSetup(t)
	s.cfg.MaxConnections = 2
	l, m := openListener(t, s.cfg)
	for i := range 2 {
		c := s.mustDial(t, l, nil)
		sc := acceptOne(t, l)
		go echo(sc)
		roundTrip(t, c, fmt.Sprint("client ", i))
	}
	s.refusedByServer(t, l, nil)
	if n := count(m, "connections.refused.max_connections"); n != 1 {
		t.Errorf("refused.max_connections = %d, want 1", n)
	}
	if g := m.Gauge(metrics.ConnectionsCount).Load(); g != 2 {
		t.Errorf("connections.count = %d, want 2", g)
	}
}

func TestTLSMaxConnRate(t *testing.T) {
	s := newTLSSetup(t)
	s.cfg.MaxConnRate = 2
	l, m := openListener(t, s.cfg)
	freezeClock(guardOf(t, l))
	for i := range 2 {
		c := s.mustDial(t, l, nil)
		sc := acceptOne(t, l)
		go echo(sc)
		roundTrip(t, c, fmt.Sprint("client ", i))
	}
	s.refusedByServer(t, l, nil)
	if n := count(m, "connections.refused.max_conn_rate"); n != 1 {
		t.Errorf("refused.max_conn_rate = %d, want 1", n)
	}
}

func TestTLSAccessRules(t *testing.T) {
	s := newTLSSetup(t)
	rule, err := config.ParseAccessRule("deny 127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	s.cfg.AccessRules = []config.AccessRule{rule}
	l, m := openListener(t, s.cfg)
	s.refusedByServer(t, l, nil)
	if n := count(m, "connections.refused.access_rules"); n != 1 {
		t.Errorf("refused.access_rules = %d, want 1", n)
	}
	if n := count(m, "connections.refused.handshake"); n != 0 {
		t.Errorf("refused.handshake = %d: a denied client must not reach the handshake", n)
	}
}

func TestTLSUpdate(t *testing.T) {
	s := newTLSSetup(t)
	l, m := openListener(t, s.cfg)
	c := s.mustDial(t, l, nil)
	sc := acceptOne(t, l)
	go echo(sc)
	roundTrip(t, c, "before")

	next := *s.cfg
	next.MaxConnections = 1
	if err := l.Update(&next); err != nil {
		t.Fatalf("update of limits: %v", err)
	}
	roundTrip(t, c, "after update")
	s.refusedByServer(t, l, nil)
	if n := count(m, "connections.refused.max_connections"); n != 1 {
		t.Errorf("refused.max_connections = %d, want 1 after lowering the limit", n)
	}

	tlsChanged := next
	spec := *s.spec()
	spec.SSLOptions.Verify = "verify_peer"
	tlsChanged.Spec = &spec
	if err := l.Update(&tlsChanged); !errors.Is(err, ErrRestartRequired) {
		t.Errorf("update of ssl_options = %v, want ErrRestartRequired", err)
	}
	roundTrip(t, c, "still open")
}

// A client that connects and never sends its ClientHello must not delay
// anyone else.
func TestTLSSlowHandshakeDoesNotBlockAccept(t *testing.T) {
	s := newTLSSetup(t)
	l, m := openListener(t, s.cfg) // handshake_timeout 15s
	var silent []net.Conn
	for range 3 {
		raw, err := net.Dial("tcp", l.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer raw.Close()
		silent = append(silent, raw)
	}
	eventually(t, "silent clients admitted", func() bool { return guardOf(t, l).Active() == 3 })

	c := s.mustDial(t, l, nil)
	sc := acceptOne(t, l)
	if sc.Info().Peer.String() != c.LocalAddr().String() {
		t.Fatalf("accepted %s, want the good client %s", sc.Info().Peer, c.LocalAddr())
	}
	if n := count(m, "connections.refused.handshake"); n != 0 {
		t.Fatalf("refused.handshake = %d: the silent clients timed out first, so this proves nothing", n)
	}
	go echo(sc)
	roundTrip(t, c, "not blocked")

	// Closing the listener aborts the pending handshakes.
	l.Close()
	for _, raw := range silent {
		_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := raw.Read(make([]byte, 1)); err == nil || isTimeout(err) {
			t.Errorf("silent client after listener close: read %v, want closed", err)
		}
	}
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("accept after close = %v, want net.ErrClosed", err)
	}
	roundTrip(t, c, "accepted conns outlive the listener")
}

func TestTLSHandshakeTimeout(t *testing.T) {
	s := newTLSSetup(t)
	s.spec().HandshakeTimeout = config.Duration(200 * time.Millisecond)
	l, m := openListener(t, s.cfg)
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := raw.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("silent client: read %v, want the server to close it", err)
	}
	eventually(t, "timeout counted", func() bool { return count(m, "connections.refused.handshake") == 1 })
	eventually(t, "slot released", func() bool { return guardOf(t, l).Active() == 0 })
}

// With max_handshakes = 1, a silent client holds the only handshake slot:
// the good client gets in only once the silent one has timed out.
func TestTLSMaxHandshakes(t *testing.T) {
	s := newTLSSetup(t)
	s.spec().MaxHandshakes = 1
	s.spec().HandshakeTimeout = config.Duration(300 * time.Millisecond)
	l, m := openListener(t, s.cfg)
	raw, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	eventually(t, "silent client admitted", func() bool { return guardOf(t, l).Active() == 1 })

	c := s.mustDial(t, l, nil)
	sc := acceptOne(t, l)
	if n := count(m, "connections.refused.handshake"); n != 1 {
		t.Errorf("good client accepted with refused.handshake = %d, want 1 (the slot was taken)", n)
	}
	go echo(sc)
	roundTrip(t, c, "after the slot freed")
}

func TestTLSConfig(t *testing.T) {
	pki := newTestPKI(t)
	cert, key, _ := pki.issue(t, "server", true)
	head := "[gateway." + testKind + ".listeners.ssl.a]\nbind = \"127.0.0.1:0\"\n"
	files := fmt.Sprintf("certfile = %q\nkeyfile = %q\n", cert, key)
	pfx := "gateway." + testKind + ".listeners.ssl.a."
	cases := []struct {
		name, toml string
		want       []string
	}{
		{"ok", head + "[gateway." + testKind + ".listeners.ssl.a.ssl_options]\n" + files, nil},
		{"no certificate", head, []string{pfx + "ssl_options.certfile: a tls listener needs a server certificate: set certfile and keyfile"}},
		{"old version", head + "[gateway." + testKind + ".listeners.ssl.a.ssl_options]\n" + files + "versions = [\"tlsv1.3\", \"tlsv1.1\"]\n",
			[]string{pfx + "ssl_options.versions[1]: tlsv1.1 is not supported (insecure); use tlsv1.2 or tlsv1.3"}},
		{"dtls version", head + "[gateway." + testKind + ".listeners.ssl.a.ssl_options]\n" + files + "versions = [\"dtlsv1.2\"]\n",
			[]string{pfx + `ssl_options.versions[0]: unknown TLS version "dtlsv1.2" (want tlsv1.2 or tlsv1.3)`}},
		{"psk cipher", head + "[gateway." + testKind + ".listeners.ssl.a.ssl_options]\n" + files + "ciphers = [\"TLS_PSK_WITH_AES_128_CCM\"]\n",
			[]string{pfx + `ssl_options.ciphers[0]: "TLS_PSK_WITH_AES_128_CCM" is a DTLS PSK suite, not available on tls`}},
		{"handshake limits", head + "handshake_timeout = \"0s\"\nmax_handshakes = 0\n[gateway." + testKind + ".listeners.ssl.a.ssl_options]\n" + files,
			[]string{pfx + "handshake_timeout: must be positive, got 0s", pfx + "max_handshakes: must be at least 1, got 0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parseConfig(tc.toml)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				l := c.Gateways[testKind].Listeners[0]
				if l.Transport != "tls" || l.Type != "ssl" {
					t.Errorf("type %s/%s, want ssl/tls", l.Type, l.Transport)
				}
				return
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error\n%v\nwant a line ending in\n%s", err, w)
				}
			}
		})
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
