package gbt32960_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestTLS: a vehicle logs in and reports over a tls listener (written
// "ssl", as EMQX does) whose certificate comes from a throw-away CA.
func TestTLS(t *testing.T) {
	pool, certFile, keyFile := throwawayPKI(t)
	e := newEnv(t, `
[gateway.gbt32960]
[[gateway.gbt32960.authentication]]
type = "anonymous"

[gateway.gbt32960.listeners.ssl.default]
bind = "127.0.0.1:0"
ssl_options.certfile = "`+certFile+`"
ssl_options.keyfile = "`+keyFile+`"
`)
	obs := e.observe("gbt32960/+/upstream/#")
	l, ok := e.gw().Listener("gbt32960:ssl:default")
	if !ok {
		t.Fatal("ssl listener not running")
	}
	c, err := tls.Dial("tcp", l.Addr(), &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	v := &vehicle{t: t, c: c}
	v.login()
	expectTopic(t, obs.Next(t), up+"vlogin")
	v.send(cmdFrame(0x02, allInfos))
	golden(t, "info_all", obs.Next(t).Msg.Payload)
}

func throwawayPKI(t *testing.T) (*x509.CertPool, string, string) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "gbt32960 test CA"},
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
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"}, DNSNames: []string{"localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, leaf, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(caCert)
	return pool, certFile, keyFile
}
