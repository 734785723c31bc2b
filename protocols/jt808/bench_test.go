package jt808_test

import (
	"bufio"
	"fmt"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// idleTerminals logs in n terminals and leaves them connected. Their
// readers are small so that the heap measured is mostly the gateway's.
func (e *env) idleTerminals(n int) []*terminal {
	ts := make([]*terminal, n)
	for i := range ts {
		c, err := net.Dial("tcp", e.addr())
		if err != nil {
			e.t.Fatal(err)
		}
		ts[i] = &terminal{t: e.t, c: c, r: bufio.NewReaderSize(c, 64), phone: fmt.Sprintf("%012d", 100000+i)}
		ts[i].login()
	}
	e.t.Cleanup(func() {
		for _, tm := range ts {
			tm.c.Close()
		}
	})
	return ts
}

// BenchmarkLocationReports measures 0x0200 reports per second from 8
// terminals through the gateway into the local broker (one subscriber),
// with 1 000 more terminals connected and idle, each report answered
// with 0x8001. It also reports the heap each idle terminal costs
// (gateway and the test's client end together).
func BenchmarkLocationReports(b *testing.B) {
	e := newEnv(b, conf(`idle_timeout = "60s"`, ""))
	var got atomic.Int64
	obs := e.observe("jt808/+/+/up")
	go func() {
		for range obs.Chan() {
			got.Add(1)
		}
	}()

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	const idle = 1000
	e.idleTerminals(idle)
	runtime.GC()
	runtime.ReadMemStats(&after)
	heapPer := float64(after.HeapInuse-before.HeapInuse) / idle
	stackPer := float64(after.StackInuse-before.StackInuse) / idle

	const senders = 8
	ts := make([]*terminal, senders)
	for i := range ts {
		ts[i] = e.terminal(fmt.Sprintf("%012d", 900000+i))
		ts[i].login()
	}
	body := locationBody()
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for i, tm := range ts {
		n := b.N / senders
		if i == 0 {
			n += b.N % senders
		}
		wg.Add(2)
		go func() { // drain the acks
			defer wg.Done()
			buf := make([]byte, 32<<10)
			for {
				if _, err := tm.c.Read(buf); err != nil {
					return
				}
			}
		}()
		go func() {
			defer wg.Done()
			var out []byte
			for j := 0; j < n; j++ {
				f, _ := tm.frame(0x0200, body)
				out = append(out, f...)
				if len(out) > 16<<10 || j == n-1 {
					if _, err := tm.c.Write(out); err != nil {
						return
					}
					out = out[:0]
				}
			}
		}()
	}
	for got.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "reports/s")
	b.ReportMetric(heapPer, "heapB/idle-terminal")
	b.ReportMetric(stackPer, "stackB/idle-terminal")
	for _, tm := range ts {
		tm.c.Close()
	}
	wg.Wait()
}
