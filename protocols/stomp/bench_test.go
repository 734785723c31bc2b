package stomp_test

import (
	"bufio"
	"io"
	"net"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
)

// counter is an MQTT-side session that counts what it gets.
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

func (e *env) counterSession(b *testing.B, filter string, target int) *counter {
	c := &counter{target: int64(target), done: make(chan struct{})}
	s, _ := e.b.OpenSession("bench/sub", c, true, broker.SessionOptions{MaxQueueLen: target + 1})
	if _, err := s.Subscribe(filter, 0); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(s.Close)
	return c
}

const benchPayload = "21.5,22.0,21.8,21.9,22.1,22.3,22.2,22.0,21.7,21.6,21.5,21.4,21.3,21"

// BenchmarkSendThroughput: SEND frames (QoS 0, 64-byte body) from one
// STOMP connection through the gateway into the local broker, delivered
// to one MQTT-side session.
//
//	go test -run xxx -bench SendThroughput -benchtime 200000x ./protocols/stomp/
func BenchmarkSendThroughput(b *testing.B) {
	e := newEnv(b, conf(""))
	sub := e.counterSession(b, "bench/#", b.N)
	c, err := net.Dial("tcp", e.addr())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "CONNECT\naccept-version:1.2\n\n\x00")
	if _, err := bufio.NewReader(c).ReadString(0); err != nil {
		b.Fatal(err)
	}
	frame := []byte("SEND\ndestination:bench/t\ncontent-length:" + strconv.Itoa(len(benchPayload)) + "\n\n" + benchPayload + "\x00")
	w := bufio.NewWriterSize(c, 64<<10)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		w.Write(frame)
	}
	w.Flush()
	select {
	case <-sub.done:
	case <-time.After(time.Minute):
		b.Fatalf("%d of %d delivered", sub.n.Load(), b.N)
	}
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "frames/s")
}

// BenchmarkBrokerPublishDirect is the baseline for SendThroughput: the
// same messages published straight into the broker, as a local MQTT
// client would, to the same kind of subscriber.
func BenchmarkBrokerPublishDirect(b *testing.B) {
	e := newEnv(b, conf(""))
	sub := e.counterSession(b, "bench/#", b.N)
	payload := []byte(benchPayload)
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for range b.N {
		if _, err := e.b.Publish(&broker.Message{Topic: "bench/t", Payload: payload}); err != nil {
			b.Fatal(err)
		}
	}
	<-sub.done
	el := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/el.Seconds(), "msgs/s")
}

const idleConns = 2000

// BenchmarkIdleConnMemory opens 2 000 connected, idle STOMP clients and
// reports the heap and goroutine-stack growth per connection, next to
// the same count of bare TCP connections (both ends in this process, as
// for the STOMP ones) so the gateway's own share can be read off.
//
//	go test -run xxx -bench IdleConnMemory -benchtime 1x ./protocols/stomp/
func BenchmarkIdleConnMemory(b *testing.B) {
	e := newEnv(b, conf("")+"max_connections = 10000\nmax_conn_rate = \"infinity\"\n")
	for range b.N {
		heap, stack := measure(b, func() []net.Conn { return openSTOMP(b, e.addr(), idleConns) })
		bareHeap, bareStack := measure(b, func() []net.Conn { return openBare(b, idleConns) })
		b.ReportMetric(heap/idleConns, "heap-B/conn")
		b.ReportMetric(stack/idleConns, "stack-B/conn")
		b.ReportMetric((heap-bareHeap)/idleConns, "gateway-heap-B/conn")
		b.ReportMetric((heap+stack-bareHeap-bareStack)/idleConns, "gateway-total-B/conn")
	}
}

func measure(b *testing.B, open func() []net.Conn) (heap, stack float64) {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	conns := open()
	time.Sleep(100 * time.Millisecond) // let accept-side goroutines settle
	runtime.GC()
	runtime.ReadMemStats(&after)
	for _, c := range conns {
		c.Close()
	}
	time.Sleep(200 * time.Millisecond)
	return float64(after.HeapAlloc) - float64(before.HeapAlloc), float64(after.StackInuse) - float64(before.StackInuse)
}

func openSTOMP(b *testing.B, addr string, n int) []net.Conn {
	conns := make([]net.Conn, 0, n)
	buf := make([]byte, 512)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		io.WriteString(c, "CONNECT\naccept-version:1.2\nheart-beat:0,0\n\n\x00")
		got := 0
		for {
			k, err := c.Read(buf[got:])
			if err != nil {
				b.Fatal(err)
			}
			got += k
			if buf[got-1] == 0 {
				break
			}
		}
		conns = append(conns, c)
	}
	return conns
}

// openBare makes n TCP connections to a listener that only holds them.
func openBare(b *testing.B, n int) []net.Conn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, n)
	go func() {
		for range n {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	conns := make([]net.Conn, 0, 2*n)
	for range n {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		conns = append(conns, c)
	}
	for range n {
		conns = append(conns, <-accepted)
	}
	return conns
}
