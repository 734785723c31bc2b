package transports

// Shared helpers for the listener tests of this package (tls, udp, dtls,
// serial): listener configs, free loopback addresses, a throw-away PKI.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/metrics"
)

// testKind is a gateway kind that takes every listener type; it is only
// registered (for config.Parse) by parseConfig.
const testKind = "transportstest"

var registerTestKind sync.Once

func testKindSchema() config.KindSchema {
	return config.KindSchema{Name: testKind, ListenerTypes: Types()}
}

// listenerConfig returns a listener of type typ with every default set,
// bound to 127.0.0.1 on a free port. Change cfg.Spec.(*XxxSpec) as needed.
func listenerConfig(t testing.TB, typ string) *config.Listener {
	t.Helper()
	l, err := config.NewListener(testKindSchema(), typ, "t")
	if err != nil {
		t.Fatal(err)
	}
	l.Bind = "127.0.0.1:0"
	return l
}

// parseConfig parses a whole config file; listeners go under
// [gateway.transportstest.listeners.<type>.<name>].
func parseConfig(data string) (*config.Config, error) {
	registerTestKind.Do(func() { config.RegisterKind(testKindSchema()) })
	return config.Parse([]byte(data), "t.toml")
}

// openListener opens cfg with a fresh metrics set and closes it at the
// end of the test.
func openListener(t testing.TB, cfg *config.Listener) (Listener, *metrics.Set) {
	t.Helper()
	m := metrics.NewSet(nil)
	l, err := Open(context.Background(), cfg, Env{Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l, m
}

// count reads a counter of a metrics set.
func count(m *metrics.Set, name string) uint64 { return m.Counter(name).Load() }

// eventually polls cond until it holds, failing the test after 5 s.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still waiting for %s after 5s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// freeAddr returns a loopback address with a port that was free a moment
// ago (network "tcp" or "udp").
func freeAddr(t testing.TB, network string) string {
	t.Helper()
	switch network {
	case "udp", "udp4":
		c, err := net.ListenPacket("udp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		return c.LocalAddr().String()
	default:
		l, err := net.Listen("tcp4", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		return l.Addr().String()
	}
}

// testPKI is a throw-away CA that issues server and client certificates
// into a temporary directory.
type testPKI struct {
	dir    string
	CAFile string
	Pool   *x509.CertPool
	ca     *x509.Certificate
	key    *ecdsa.PrivateKey
	serial int64
}

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "edgeway test CA", Organization: []string{"edgeway"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	p := &testPKI{dir: t.TempDir(), ca: ca, key: key, serial: 1, Pool: x509.NewCertPool()}
	p.Pool.AddCert(ca)
	p.CAFile = filepath.Join(p.dir, "ca.pem")
	writePEM(t, p.CAFile, "CERTIFICATE", der)
	return p
}

// issue signs a certificate for cn (a server certificate for 127.0.0.1
// and localhost when server is set, else a client certificate) and
// returns its files and the loaded pair.
func (p *testPKI) issue(t testing.TB, cn string, server bool) (certFile, keyFile string, pair tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p.serial++
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(p.serial),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"edgeway"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile = filepath.Join(p.dir, cn+".pem")
	keyFile = filepath.Join(p.dir, cn+".key")
	writePEM(t, certFile, "CERTIFICATE", der)
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	pair, err = tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, pair
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// guardOf returns the Guard of a tcp, tls or udp listener.
func guardOf(t testing.TB, l Listener) *Guard {
	t.Helper()
	switch x := l.(type) {
	case *streamListener:
		return x.guard
	case *tlsListener:
		return x.sl.guard
	case *udpListener:
		return x.guard
	}
	t.Fatalf("no guard in %T", l)
	return nil
}

// freezeClock stops the guard's clock and fills its max_conn_rate
// bucket, so a rate test does not depend on how fast the machine is.
func freezeClock(g *Guard) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := g.last
	g.now = func() time.Time { return now }
	g.tokens = float64(g.rate)
}
