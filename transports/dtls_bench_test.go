package transports

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/pion/dtls/v3"
)

// dtlsBenchHandshakes measures full handshakes (cookie exchange
// included) of one client after another against l; client and server
// share the machine's cores.
func dtlsBenchHandshakes(b *testing.B, l *DTLSListener, opts []dtls.ClientOption) {
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	raddr := l.Addr().(*net.UDPAddr)
	for b.Loop() {
		c, err := dtls.DialWithOptions("udp", raddr, opts...)
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = c.HandshakeContext(ctx)
		cancel()
		c.Close()
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "handshakes/s")
}

func BenchmarkDTLSHandshakePSK(b *testing.B) {
	l, _ := dtlsOpen(b, dtlsListenerConfig(dtlsPSKSpec("dev1")))
	opts := append(dtlsPSKOptions("dev1", "key-of-dev1"), dtls.WithConnectionIDGenerator(dtls.OnlySendCIDGenerator()))
	dtlsBenchHandshakes(b, l, opts)
}

// BenchmarkDTLSHandshakeECDSA is ECDHE-ECDSA with a P-256 server
// certificate, no client certificate.
func BenchmarkDTLSHandshakeECDSA(b *testing.B) {
	pki := dtlsNewPKI(b)
	l, _ := dtlsOpen(b, dtlsListenerConfig(pki.spec("verify_none", false)))
	opts := append(pki.clientOptions(false), dtls.WithConnectionIDGenerator(dtls.OnlySendCIDGenerator()))
	dtlsBenchHandshakes(b, l, opts)
}
