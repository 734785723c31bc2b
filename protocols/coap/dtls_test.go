package coap_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	"github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"

	"github.com/edgeway/edgeway/protocols/coap"
)

func dtlsConf(keys string) string {
	return `
[gateway.coap]
` + keys + `
[[gateway.coap.authentication]]
type = "anonymous"

[gateway.coap.listeners.dtls.default]
bind = "127.0.0.1:0"
psk = [{ identity = "dev1", key = "secret1" }]
`
}

func pskConfig(identity, key string) *piondtls.Config {
	return &piondtls.Config{
		PSK:             func([]byte) ([]byte, error) { return []byte(key), nil },
		PSKIdentityHint: []byte(identity),
		CipherSuites:    []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
	}
}

func dialDTLS(t testing.TB, addr string, cfg *piondtls.Config) *udpclient.Conn {
	t.Helper()
	c, err := dtls.Dial(addr, cfg)
	if err != nil {
		t.Fatalf("dtls dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// TestDTLSConnectionMode is EMQX issue 16199: /mqtt/connection over DTLS
// must answer, and the token must work across DTLS sessions.
func TestDTLSConnectionMode(t *testing.T) {
	e := newEnv(t, dtlsConf(`connection_required = true`))
	addr := e.addr("coap:dtls:default")
	s := e.subscribe("d/#", 0)
	a := dialDTLS(t, addr, pskConfig("dev1", "secret1"))
	tok := connect(t, a, "dtls1")
	expectCode(t, post(t, a, "/ps/d/1", "one", "c=dtls1", "t="+tok), codes.Changed)
	if d := s.next(t); string(d.Msg.Payload) != "one" {
		t.Fatalf("got %+v", d.Msg)
	}
	col := newCollector()
	obs, err := a.Observe(ctx(t), "/ps/down", col.fn, query("c=dtls1", "t="+tok)...)
	if err != nil {
		t.Fatal(err)
	}
	_ = obs
	eventually(t, "subscribed", func() bool { return e.b.HasSubscribers("down") })
	e.publish("down", "n1", 1)
	if got := col.next(t); got != "n1" {
		t.Fatalf("got %q", got)
	}
	// a new DTLS session (device rebooted its stack, or a NAT without
	// Connection ID) presents the token and takes the session over
	b := dialDTLS(t, addr, pskConfig("dev1", "secret1"))
	expectCode(t, post(t, b, "/ps/d/2", "two", "c=dtls1", "t="+tok), codes.Changed)
	if d := s.next(t); string(d.Msg.Payload) != "two" {
		t.Fatalf("got %+v", d.Msg)
	}
	if e.counter("sessions.takenover") != 1 {
		t.Fatalf("takenover %v", e.counter("sessions.takenover"))
	}
	expectCode(t, post(t, b, "/ps/d/3", "x", "c=dtls1", "t=bad"), codes.Unauthorized)
}

func TestDTLSCertificate(t *testing.T) {
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	e := newEnv(t, `
[gateway.coap]
[[gateway.coap.authentication]]
type = "anonymous"
[gateway.coap.listeners.dtls.default]
bind = "127.0.0.1:0"
dtls_options = { certfile = "`+cert+`", keyfile = "`+key+`" }
`)
	s := e.subscribe("cert", 0)
	c := dialDTLS(t, e.addr("coap:dtls:default"), &piondtls.Config{InsecureSkipVerify: true})
	expectCode(t, post(t, c, "/ps/cert", "ok", "c=certdev"), codes.Changed)
	if d := s.next(t); string(d.Msg.Payload) != "ok" {
		t.Fatalf("got %+v", d.Msg)
	}
}

func selfSigned(t testing.TB, dir string) (string, string) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edgeway-test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	kd, _ := x509.MarshalECPrivateKey(k)
	cf, kf := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(cf, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kf, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kd}), 0o600); err != nil {
		t.Fatal(err)
	}
	return cf, kf
}

// dialRawDTLS is the raw codec-driven peer over a pion DTLS session.
func dialRawDTLS(t testing.TB, addr string) *raw {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	c, err := piondtls.Client(pc, ua, pskConfig("dev1", "secret1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(); _ = pc.Close() })
	hctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := c.HandshakeContext(hctx); err != nil {
		t.Fatal(err)
	}
	return &raw{t: t, c: c, mid: 0x200}
}

// TestDTLSTakeoverKeepsObserve: a device whose DTLS session is replaced by
// a new one (new port, new handshake) presents its token and its observe
// relation follows it.
func TestDTLSTakeoverKeepsObserve(t *testing.T) {
	e := newEnv(t, dtlsConf(`notify_type = "con"`))
	addr := e.addr("coap:dtls:default")
	a := dialRawDTLS(t, addr)
	resp := a.roundTrip(a.req(coap.CON, 2, "c1", "/mqtt/connection", "c=dt1"))
	if resp.Code != code(2, 1) {
		t.Fatalf("connect %+v", resp)
	}
	tok := string(resp.Payload)
	m := a.req(coap.CON, 1, "ob", "/ps/dt", "c=dt1", "t="+tok)
	m.Options = append([]coap.Option{{ID: 6}}, m.Options...)
	if resp := a.roundTrip(m); resp.Code != code(2, 5) {
		t.Fatalf("observe %+v", resp)
	}
	e.publish("dt", "one", 0)
	n := a.recv()
	if string(n.Payload) != "one" || n.Type != coap.CON {
		t.Fatalf("got %+v", n)
	}
	a.ack(n)
	b := dialRawDTLS(t, addr)
	if resp := b.roundTrip(b.req(coap.CON, 3, "hb", "/mqtt/connection", "c=dt1", "t="+tok)); resp.Code != code(2, 4) {
		t.Fatalf("heartbeat from the new session %+v", resp)
	}
	e.publish("dt", "two", 0)
	n = b.recv()
	if string(n.Payload) == "one" && string(n.Token) == "ob" {
		// a's ACK raced the takeover: the notification still in flight
		// followed the relation to the new session and was sent again
		// (at least once), before the next one.
		b.ack(n)
		n = b.recv()
	}
	if string(n.Payload) != "two" || string(n.Token) != "ob" {
		t.Fatalf("got %+v", n)
	}
	b.ack(n)
}
