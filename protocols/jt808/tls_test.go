package jt808_test

import (
	"bufio"
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
	"testing"
	"time"
)

// TestTLS runs a terminal over a tls listener (written "ssl", as EMQX
// does) with a certificate from a throw-away CA.
func TestTLS(t *testing.T) {
	pool, certFile, keyFile := testPKI(t, t.TempDir())
	e := newEnv(t, `
[gateway.jt808]
[gateway.jt808.proto.auth]
allow_anonymous = true
[[gateway.jt808.authentication]]
type = "anonymous"
[gateway.jt808.listeners.ssl.default]
bind = "127.0.0.1:0"
ssl_options.certfile = "`+certFile+`"
ssl_options.keyfile = "`+keyFile+`"
`)
	l, ok := e.gw().Listener("jt808:ssl:default")
	if !ok {
		t.Fatal("no ssl listener")
	}
	c, err := tls.Dial("tcp", l.Addr(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	obs := e.observe("jt808/+/+/up")
	tm := &terminal{t: t, c: c, r: bufio.NewReader(c), phone: phone19, v19: true}
	tm.login()
	tm.sn = 0x7e7d
	sn := tm.send(0x0200, locationBody())
	tm.expectAck(sn, 0x0200, 0)
	golden(t, "location_2019", obs.Next(t).Msg.Payload)
}

func testPKI(t *testing.T, dir string) (*x509.CertPool, string, string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edgeway jt808 test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	leaf := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, certFile, keyFile
}
