package mqttsn_test

import (
	"fmt"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
	sn "github.com/edgeway/edgeway/protocols/mqttsn/mqttsntest"
)

const benchSection = `[gateway.mqttsn]
mqueue_len = 100000
[gateway.mqttsn.listeners.udp.default]
bind = "127.0.0.1:0"
max_connections = "infinity"
max_conn_rate = "infinity"
udp_options = { recbuf = "4MB", sndbuf = "4MB" }
recv_queue = 1024
[[gateway.mqttsn.authentication]]
type = "anonymous"
`

// counter is a broker session standing in for the cloud that only counts.
type counter struct {
	n atomic.Int64
	s *broker.Session
}

func (c *counter) Deliver(d broker.Delivery) {
	c.n.Add(1)
	if d.ID != 0 {
		c.s.Ack(d.ID)
	}
}

// BenchmarkPublish: N devices publish over UDP through the gateway into
// the local broker, where one subscriber session counts. QoS 0 devices
// keep at most 512 messages in all unaccounted for, so the benchmark
// measures the gateway, not socket buffer overflow; QoS 1 devices wait
// for each PUBACK, and the PUBLISH→PUBACK time is the latency reported.
func BenchmarkPublish(b *testing.B) {
	for _, n := range []int{1, 50} {
		for _, qos := range []byte{0, 1} {
			b.Run(fmt.Sprintf("qos%d/devices=%d", qos, n), func(b *testing.B) { benchPublish(b, n, qos) })
		}
	}
}

func benchPublish(b *testing.B, n int, qos byte) {
	e := newEnv(b, benchSection)
	cnt := &counter{}
	cnt.s, _ = e.b.OpenSession("bench/cloud", cnt, true, broker.SessionOptions{MaxInflight: 65535, MaxQueueLen: 1 << 20})
	if _, err := cnt.s.Subscribe("bench/#", 1); err != nil {
		b.Fatal(err)
	}
	devs := make([]*sn.Device, n)
	tids := make([]uint16, n)
	for i := range devs {
		devs[i] = e.device()
		devs[i].Connect(fmt.Sprintf("bench-%d", i), true, 600)
		tids[i] = devs[i].Register(1, fmt.Sprintf("bench/%d", i))
	}
	payload := make([]byte, 64)
	var sent atomic.Int64
	lat := make([][]time.Duration, n)
	errs := make(chan error, n)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range devs {
		share := b.N / n
		if i < b.N%n {
			share++
		}
		wg.Add(1)
		go func(i, share int) {
			defer wg.Done()
			c := devs[i].Conn()
			buf := make([]byte, 64)
			for k := 0; k < share; k++ {
				if qos == 0 {
					for sent.Load()-cnt.n.Load() > 512 {
						time.Sleep(20 * time.Microsecond)
					}
					sent.Add(1)
					if _, err := c.Write(sn.PublishMsg(sn.QoS0, tids[i], 0, payload)); err != nil {
						errs <- err
						return
					}
					continue
				}
				t0 := time.Now()
				if _, err := c.Write(sn.PublishMsg(sn.QoS1, tids[i], uint16(k%65535+1), payload)); err != nil {
					errs <- err
					return
				}
				_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Read(buf); err != nil {
					errs <- fmt.Errorf("device %d waiting for PUBACK: %w", i, err)
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
			}
		}(i, share)
	}
	wg.Wait()
	select {
	case err := <-errs:
		b.Fatal(err)
	default:
	}
	// QoS 0 over UDP may lose a datagram: wait until arrivals stop.
	last, lastAt := cnt.n.Load(), time.Now()
	for last < int64(b.N) && time.Since(lastAt) < 500*time.Millisecond {
		time.Sleep(time.Millisecond)
		if n := cnt.n.Load(); n != last {
			last, lastAt = n, time.Now()
		}
	}
	el := lastAt.Sub(start)
	b.StopTimer()
	got := last
	b.ReportMetric(float64(got)/el.Seconds(), "msgs/s")
	if got < int64(b.N) {
		b.ReportMetric(float64(int64(b.N)-got), "lost")
	}
	if qos == 1 {
		var all []time.Duration
		for _, l := range lat {
			all = append(all, l...)
		}
		slices.Sort(all)
		if len(all) > 0 {
			b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
		}
	}
}

// BenchmarkIdleSessions: heap held by the gateway per connected, idle
// client (its UDP conn, reader, channel, client and broker session).
// The devices' own sockets exist before the baseline is taken, so only
// what connecting adds is measured. Run it with -benchtime=1x.
func BenchmarkIdleSessions(b *testing.B) {
	const n = 2000
	for range b.N {
		e := newEnv(b, benchSection)
		addr, _ := net.ResolveUDPAddr("udp", e.addr("mqttsn:udp:default"))
		conns := make([]*net.UDPConn, n)
		for i := range conns {
			c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)}, addr)
			if err != nil {
				b.Fatal(err)
			}
			conns[i] = c
		}
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		g0 := runtime.NumGoroutine()
		buf := make([]byte, 16)
		for i, c := range conns {
			if _, err := c.Write(sn.ConnectMsg(fmt.Sprintf("idle-%05d", i), sn.Clean, 3600)); err != nil {
				b.Fatal(err)
			}
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			if k, err := c.Read(buf); err != nil || k != 3 || buf[1] != sn.CONNACK || buf[2] != 0 {
				b.Fatalf("device %d: CONNACK % x, %v", i, buf[:k], err)
			}
		}
		if got := e.gateway().ClientCount(); got != n {
			b.Fatalf("%d clients", got)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/session")
		b.ReportMetric(float64(after.StackInuse-before.StackInuse)/n, "stack-B/session")
		b.ReportMetric(float64(runtime.NumGoroutine()-g0)/n, "goroutines/session")
		for _, c := range conns {
			c.Close()
		}
		e.close()
	}
}
