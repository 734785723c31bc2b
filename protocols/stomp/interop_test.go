package stomp_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	gostomp "github.com/go-stomp/stomp/v3"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/protocols/stomp/stomptest"
)

// brokerPeer is stomptest.Peer on the Manager's broker: the MQTT side
// without a network in between.
type brokerPeer struct {
	e   *env
	qos byte
	mu  sync.Mutex
	n   int
}

type chanDeliverer struct {
	s  *broker.Session
	ch chan stomptest.Message
}

func (d *chanDeliverer) Deliver(bd broker.Delivery) {
	d.ch <- stomptest.Message{Topic: bd.Msg.Topic, Payload: bd.Msg.Payload}
	if bd.ID != 0 {
		d.s.Ack(bd.ID)
	}
}

func (p *brokerPeer) Subscribe(filter string) (<-chan stomptest.Message, error) {
	p.mu.Lock()
	p.n++
	id := fmt.Sprintf("test/peer-%d", p.n)
	p.mu.Unlock()
	d := &chanDeliverer{ch: make(chan stomptest.Message, 1<<14)}
	d.s, _ = p.e.b.OpenSession(id, d, true, broker.SessionOptions{Held: true, MaxQueueLen: 1 << 14})
	if _, err := d.s.Subscribe(filter, p.qos); err != nil {
		return nil, err
	}
	d.s.Resume()
	p.e.t.Cleanup(d.s.Close)
	return d.ch, nil
}

func (p *brokerPeer) Publish(topic string, payload []byte) error {
	_, err := p.e.b.Publish(&broker.Message{Topic: topic, Payload: payload, QoS: p.qos})
	return err
}

// TestExchange1000 moves 1 000 messages STOMP → broker and 1 000 broker →
// STOMP, in order and none lost, at QoS 0 (auto ack) and QoS 1
// (client-individual, each ACKed).
func TestExchange1000(t *testing.T) {
	e := newEnv(t, conf(`mountpoint = "edge/"`))
	for _, qos := range []byte{0, 1} {
		t.Run(fmt.Sprintf("qos%d", qos), func(t *testing.T) {
			c := e.dial()
			res, err := stomptest.Exchange(context.Background(), c, &brokerPeer{e: e, qos: qos}, stomptest.Options{
				N: 1000, QoS: qos,
				UpDest: fmt.Sprintf("up/%d", qos), PeerUpFilter: fmt.Sprintf("edge/up/%d", qos),
				DownDest: fmt.Sprintf("down/%d", qos), PeerDownTopic: fmt.Sprintf("edge/down/%d", qos),
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("1000 up in %s, 1000 down in %s", res.Up, res.Down)
		})
	}
}

// pythonStomp finds a python3 that can import stomp (Debian's
// python3-stomp installs it for /usr/bin/python3).
func pythonStomp() (string, bool) {
	for _, py := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(py, "-c", "import stomp").Run() == nil {
			return py, true
		}
	}
	return "", false
}

// TestPythonStomp runs stomp.py against the gateway: a second
// independent implementation of the protocol.
func TestPythonStomp(t *testing.T) {
	py, ok := pythonStomp()
	if !ok {
		if ci() {
			t.Fatal("python3-stomp is not installed (apt-get install python3-stomp): CI must run this test")
		}
		t.Skip("python3-stomp is not installed (apt-get install python3-stomp)")
	}
	e := newEnv(t, conf(""))
	obs := e.observe("py/in/#", 0)
	host, port, _ := net.SplitHostPort(e.addr())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, filepath.Join("testdata", "stomppy_peer.py"), host, port)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var out []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		line := sc.Text()
		out = append(out, line)
		if line == "READY" {
			e.publish("py/out", "from mqtt", 1)
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("stomp.py peer: %v\nstdout:\n%s\nstderr:\n%s", err, strings.Join(out, "\n"), stderr.String())
	}
	if len(out) == 0 || out[len(out)-1] != "OK" {
		t.Fatalf("stomp.py peer did not finish: %v", out)
	}
	d := obs.next(t)
	if d.Msg.Topic != "py/in/text" || d.Msg.Headers["x-trace"] != "py:1" {
		t.Fatalf("broker got %+v", d.Msg)
	}
}

// TestTLS runs the gateway on a tls listener (written "ssl", as EMQX
// does) with a certificate from a throw-away CA.
func TestTLS(t *testing.T) {
	dir := t.TempDir()
	pool, certFile, keyFile := testPKI(t, dir)
	e := newEnv(t, `
[gateway.stomp]
[[gateway.stomp.authentication]]
type = "anonymous"

[gateway.stomp.listeners.ssl.default]
bind = "127.0.0.1:0"
ssl_options.certfile = "`+certFile+`"
ssl_options.keyfile = "`+keyFile+`"
`)
	addr := e.listenerAddr("stomp:ssl:default")
	tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
	if err != nil {
		t.Fatalf("tls dial: %v", err)
	}
	c, err := gostomp.Connect(tc, gostomp.ConnOpt.HeartBeat(0, 0), gostomp.ConnOpt.AcceptVersion(gostomp.V12), gostomp.ConnOpt.Logger(quietLogger{}))
	if err != nil {
		t.Fatalf("stomp over tls: %v", err)
	}
	defer c.Disconnect()
	roundTrip(t, c, "tls/a")
	// A plain-TCP client on the TLS port gets nowhere.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	fmt.Fprint(raw, "CONNECT\naccept-version:1.2\n\n\x00")
	_ = raw.SetReadDeadline(time.Now().Add(wait))
	if b, _ := bufio.NewReader(raw).ReadString(0); strings.Contains(b, "CONNECTED") {
		t.Fatal("plain STOMP accepted on the tls listener")
	}
}

// testPKI writes a CA and a localhost server certificate it signed.
func testPKI(t *testing.T, dir string) (*x509.CertPool, string, string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "edgeway test CA"},
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
