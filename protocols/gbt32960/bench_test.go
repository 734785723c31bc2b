package gbt32960_test

import (
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/protocols/gbt32960"
)

type counter struct {
	n      atomic.Int64
	target int64
	done   chan struct{}
}

func (c *counter) Deliver(broker.Delivery) {
	if c.n.Add(1) == c.target {
		close(c.done)
	}
}

// BenchmarkRealtimeReports: real-time reports with all nine 2016
// information types (338 bytes each) from one vehicle over TCP, decoded,
// turned into JSON and published at QoS 1 into the local broker, counted
// by one subscriber.
//
//	go test -run xxx -bench RealtimeReports -benchtime 20000x ./protocols/gbt32960/
func BenchmarkRealtimeReports(b *testing.B) {
	e := newEnv(b, conf(""))
	sub := &counter{target: int64(b.N), done: make(chan struct{})}
	s, _ := e.b.OpenSession("bench/sub", sub, true, broker.SessionOptions{MaxQueueLen: b.N + 1})
	if _, err := s.Subscribe("gbt32960/+/upstream/info", 0); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	v := e.dial()
	v.login()
	frame := cmdFrame(0x02, allInfos)
	batch := make([]byte, 0, 64*len(frame))
	for range 64 {
		batch = append(batch, frame...)
	}
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i += 64 {
		n := min(64, b.N-i)
		v.send(batch[:n*len(frame)])
	}
	select {
	case <-sub.done:
	case <-time.After(time.Minute):
		b.Fatalf("%d of %d delivered", sub.n.Load(), b.N)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "reports/s")
}

// BenchmarkDecodeJSON is the codec alone: one all-types report to JSON.
func BenchmarkDecodeJSON(b *testing.B) {
	f := gbt32960.Frame{Cmd: 0x02, Ack: 0xFE, VIN: vin, Encrypt: 1, Data: allInfos}
	buf := make([]byte, 0, 4096)
	b.ReportAllocs()
	for range b.N {
		buf, _ = gbt32960.AppendJSON(buf[:0], &f)
	}
}

// BenchmarkIdleVehicleHeap: heap held per logged-in, idle vehicle (its
// channel, client, broker session and subscription), over b.N vehicles.
//
//	go test -run xxx -bench IdleVehicleHeap -benchtime 1000x ./protocols/gbt32960/
func BenchmarkIdleVehicleHeap(b *testing.B) {
	e := newEnv(b, conf("")+"max_connections = 100000\nmax_conn_rate = \"infinity\"\n")
	addr := e.addr()
	conns := make([]net.Conn, 0, b.N)
	b.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	for i := range b.N {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
		v := &vehicle{t: b, c: c}
		id := fmt.Sprintf("LBENCH%011d", i)
		v.send(wireFrame{cmd: 0x01, ack: 0xFE, vin: id, data: loginData}.bytes())
		if r := v.read(); r.ack != 0x01 {
			b.Fatalf("login %d: %+v", i, r)
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(b.N), "heapB/vehicle")
	b.ReportMetric(float64(runtime.NumGoroutine())/float64(b.N), "goroutines/vehicle")
}

// BenchmarkRealtimeReportsFleet: 1000 logged-in vehicles, eight senders
// each driving 125 of them in turn, every report a real-time report with
// all nine information types, into the local broker.
//
//	go test -run xxx -bench ReportsFleet -benchtime 50000x ./protocols/gbt32960/
func BenchmarkRealtimeReportsFleet(b *testing.B) {
	const vehicles, senders = 1000, 8
	e := newEnv(b, conf("")+"max_connections = 100000\nmax_conn_rate = \"infinity\"\n")
	sub := &counter{target: int64(b.N), done: make(chan struct{})}
	s, _ := e.b.OpenSession("bench/sub", sub, true, broker.SessionOptions{MaxQueueLen: b.N + 1})
	if _, err := s.Subscribe("gbt32960/+/upstream/info", 0); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	addr := e.addr()
	conns := make([]net.Conn, vehicles)
	frames := make([][]byte, vehicles)
	for i := range vehicles {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { c.Close() })
		id := fmt.Sprintf("LFLEET%011d", i)
		v := &vehicle{t: b, c: c}
		v.send(wireFrame{cmd: 0x01, ack: 0xFE, vin: id, data: loginData}.bytes())
		if r := v.read(); r.ack != 0x01 {
			b.Fatalf("login %d: %+v", i, r)
		}
		conns[i] = c
		frames[i] = wireFrame{cmd: 0x02, ack: 0xFE, vin: id, data: allInfos}.bytes()
	}
	b.SetBytes(int64(len(frames[0])))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	done := make(chan struct{})
	for g := range senders {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := g; i < b.N; i += senders {
				k := (i/senders)%(vehicles/senders)*senders + g
				if _, err := conns[k].Write(frames[k]); err != nil {
					return
				}
			}
		}()
	}
	for range senders {
		<-done
	}
	select {
	case <-sub.done:
	case <-time.After(time.Minute):
		b.Fatalf("%d of %d delivered", sub.n.Load(), b.N)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "reports/s")
}
