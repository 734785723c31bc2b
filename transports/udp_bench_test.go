package transports

import (
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/config"
)

// flow sends b.N 64-byte datagrams with at most window in flight (below
// the listener's recv_queue and the socket buffer, so nothing is dropped
// and the count is exact) and reports datagrams per second delivered to
// read, and the process's CPU time per datagram (sender, kernel and
// receiver together: on loopback the sender's syscall is usually the
// bottleneck, so the CPU figure shows the listener's cost better).
func flow(b *testing.B, send func([]byte), read func([]byte) error) {
	const window = 32
	credit := make(chan struct{}, window)
	var got atomic.Int64
	done := make(chan error, 1)
	go func() {
		buf := make([]byte, 2048)
		for got.Load() < int64(b.N) {
			if err := read(buf); err != nil {
				done <- err
				return
			}
			got.Add(1)
			<-credit
		}
		done <- nil
	}()
	payload := make([]byte, 64)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	start := time.Now()
	for range b.N {
		credit <- struct{}{}
		send(payload)
	}
	if err := <-done; err != nil {
		b.Fatalf("after %d of %d datagrams: %v", got.Load(), b.N, err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "dgrams/s")
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/dgram")
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkUDPListener: datagrams through the udp listener's read loop,
// demux and queue into one Conn. Compare with BenchmarkUDPBare.
func BenchmarkUDPListener(b *testing.B) {
	cfg := udpConfig(b)
	l, _ := openListener(b, cfg)
	p := newPeer(b, l, "127.0.0.1")
	p.send("hello")
	c := acceptOne(b, l)
	readString(b, c)
	_ = c.SetReadDeadline(time.Now().Add(time.Minute))
	flow(b, func(d []byte) { _, _ = p.pc.WriteToUDPAddrPort(d, p.to) },
		func(buf []byte) error { _, err := c.Read(buf); return err })
}

// BenchmarkUDPBare: the same sender into a bare net.UDPConn read loop.
func BenchmarkUDPBare(b *testing.B) {
	pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer pc.Close()
	_ = pc.SetReadBuffer(4 << 20)
	_ = pc.SetReadDeadline(time.Now().Add(time.Minute))
	s, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	to := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	flow(b, func(d []byte) { _, _ = s.WriteToUDPAddrPort(d, to) },
		func(buf []byte) error { _, _, err := pc.ReadFromUDPAddrPort(buf); return err })
}

// BenchmarkIdleVConnMemory reports the heap held per idle virtual
// connection: 10 000 peers (batches of sockets on 127.0.k.1) each send one
// datagram, the Conns are accepted and their datagram read, and the heap
// is compared before and after. It measures once per run, whatever
// -benchtime says; its ns/op means nothing.
func BenchmarkIdleVConnMemory(b *testing.B) {
	measured := false
	for b.Loop() {
		if !measured {
			measured = true
			b.ReportMetric(idleVConnBytes(b), "B/vconn")
		}
	}
}

func idleVConnBytes(b *testing.B) float64 {
	const peers, batch = 10000, 500
	cfg := udpConfig(b)
	cfg.MaxConnections, cfg.MaxConnRate = config.Unlimited, config.Unlimited
	cfg.Spec.(*UDPSpec).AcceptBacklog = peers
	l, _ := openListener(b, cfg)
	to := addrPort(l.Addr())
	conns := make([]Conn, 0, peers)
	var mu sync.Mutex
	seen := map[netip.AddrPort]bool{}
	acceptDone := make(chan struct{})

	runtime.GC()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)

	go func() {
		defer close(acceptDone)
		buf := make([]byte, 64)
		for len(conns) < peers {
			c, err := l.Accept()
			if err != nil {
				return
			}
			_, _ = c.Read(buf)
			conns = append(conns, c)
			mu.Lock()
			seen[c.Info().Peer] = true
			mu.Unlock()
		}
	}()
	for k := range peers / batch {
		ip := netip.AddrFrom4([4]byte{127, 0, byte(10 + k), 1})
		socks := make([]*net.UDPConn, batch)
		for i := range socks {
			s, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 0)))
			if err != nil {
				b.Fatal(err)
			}
			socks[i] = s
		}
		// Resend what got lost; a batch is done when every socket has a Conn.
		for try := 0; ; try++ {
			missing := 0
			for _, s := range socks {
				mu.Lock()
				ok := seen[s.LocalAddr().(*net.UDPAddr).AddrPort()]
				mu.Unlock()
				if !ok {
					missing++
					_, _ = s.WriteToUDPAddrPort([]byte("hello"), to)
				}
			}
			if missing == 0 {
				break
			}
			if try == 100 {
				b.Fatalf("batch %d: %d peers never got a Conn", k, missing)
			}
			time.Sleep(5 * time.Millisecond)
		}
		for _, s := range socks {
			s.Close()
		}
	}
	<-acceptDone
	if len(conns) != peers {
		b.Fatalf("accepted %d conns, want %d", len(conns), peers)
	}
	seen = nil
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&after)
	runtime.KeepAlive(conns)
	l.Close()
	return float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / peers
}

// BenchmarkDemuxLookup compares the two demux structures considered for
// the read loop's per-datagram lookup among 10 000 peers.
func BenchmarkDemuxLookup(b *testing.B) {
	const peers = 10000
	keys := make([]netip.AddrPort, peers)
	for i := range keys {
		keys[i] = netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)}), uint16(1024+i))
	}
	b.Run("map+RWMutex", func(b *testing.B) {
		var mu sync.RWMutex
		m := map[netip.AddrPort]*vconn{}
		for _, k := range keys {
			m[k] = &vconn{}
		}
		i := 0
		for b.Loop() {
			mu.RLock()
			c := m[keys[i%peers]]
			mu.RUnlock()
			if c == nil {
				b.Fatal("missing")
			}
			i++
		}
	})
	b.Run("sync.Map", func(b *testing.B) {
		var m sync.Map
		for _, k := range keys {
			m.Store(k, &vconn{})
		}
		i := 0
		for b.Loop() {
			c, _ := m.Load(keys[i%peers])
			if c == nil {
				b.Fatal("missing")
			}
			i++
		}
	})
}
