package lwm2m

import (
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// rawRegister registers ep over a plain udp socket (no CoAP client
// state in the process, so heap measurements see the gateway's side).
func rawRegister(tb testing.TB, addr *net.UDPAddr, ep string) *net.UDPConn {
	c, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		tb.Fatal(err)
	}
	m := &message.Message{Type: message.Confirmable, Code: codes.POST, MessageID: 1, Token: []byte{1, 2, 3, 4},
		Payload: []byte("</1/0>,</3/0>,</3303/0>")}
	m.Options = message.Options{{ID: message.URIPath, Value: []byte("rd")}, {ID: message.ContentFormat, Value: []byte{40}},
		{ID: message.URIQuery, Value: []byte("ep=" + ep)}, {ID: message.URIQuery, Value: []byte("lt=3600")}}
	b, err := encode(m)
	if err != nil {
		tb.Fatal(err)
	}
	buf := make([]byte, 256)
	for try := 0; ; try++ {
		if _, err := c.Write(b); err != nil {
			tb.Fatal(err)
		}
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		n, err := c.Read(buf)
		if err != nil {
			if try < 3 {
				continue
			}
			tb.Fatalf("register %s: %v", ep, err)
		}
		if n < 2 || codes.Code(buf[1]) != codes.Created {
			tb.Fatalf("register %s: % x", ep, buf[:n])
		}
		return c
	}
}

// BenchmarkRegister measures registrations per second and the heap an
// idle registration holds.
func BenchmarkRegister(b *testing.B) {
	e := newEnv(b, conf(`lifetime_max = "2h"`, "max_connections = 1000000\nmax_conn_rate = 1000000\n"))
	addr, _ := net.ResolveUDPAddr("udp", e.addr("lwm2m:udp:default"))
	conns := make([]*net.UDPConn, b.N)
	defer func() {
		for _, c := range conns {
			if c != nil {
				_ = c.Close()
			}
		}
	}()
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	b.ResetTimer()
	start := time.Now()
	// 16 devices registering at once, as after a gateway restart.
	var wg sync.WaitGroup
	const workers = 16
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < b.N; i += workers {
				conns[i] = rawRegister(b, addr, "bench-"+strconv.Itoa(i))
			}
		}()
	}
	wg.Wait()
	el := time.Since(start)
	b.StopTimer()
	eventually(b, "registrations", func() bool { return e.gw().ClientCount() == b.N })
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	b.ReportMetric(float64(b.N)/el.Seconds(), "registrations/s")
	b.ReportMetric(float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(b.N), "heapB/registration")
}

// BenchmarkReadRoundTrip: an MQTT read command in, the device answers,
// the JSON reply out.
func BenchmarkReadRoundTrip(b *testing.B) {
	e := newEnv(b, conf("", ""))
	up := e.observe("lwm2m/rt/up/resp")
	d := newDevice(b, "rt")
	d.reqs = make(chan devReq, b.N+16)
	d.dial(e.addr("lwm2m:udp:default"))
	d.set("/3/0/0", 0, []byte("Edge"))
	if c := d.register("</3/0>", "lt=300"); c != codes.Created {
		b.Fatalf("register: %v", c)
	}
	up.next(b)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		e.publish("lwm2m/rt/dn", `{"reqID":"`+strconv.Itoa(i)+`","msgType":"read","data":{"path":"/3/0/0"}}`)
		up.next(b)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "reads/s")
}
