package coap_test

import (
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"

	"github.com/edgeway/edgeway/protocols/coap"
)

// BenchmarkPublish is CoAP POST /ps publishes through the gateway into
// the local broker, where a subscriber session takes them; one device,
// lock-step (each request waits for its response).
//
//	go test -run '^$' -bench Publish -benchtime 2s ./protocols/coap/
func BenchmarkPublish(b *testing.B) {
	for _, typ := range []struct {
		name string
		t    uint8
		conn bool
	}{{"NON", coap.NON, false}, {"CON", coap.CON, false}, {"NON-connection", coap.NON, true}, {"CON-connection", coap.CON, true}} {
		b.Run(typ.name, func(b *testing.B) {
			e := newEnv(b, conf(""))
			s := e.subscribe("bench/#", 1)
			go func() {
				for d := range s.ch {
					if d.ID != 0 {
						s.s.Ack(d.ID)
					}
				}
			}()
			r := dialRaw(b, e.udp())
			q := []string{"c=bench"}
			if typ.conn {
				// a connection-mode device: one authenticated client for all publishes
				resp := r.roundTrip(r.req(coap.CON, 2, "cx", "/mqtt/connection", "c=bench"))
				q = append(q, "t="+string(resp.Payload))
			}
			m := r.req(typ.t, 2, "bt", "/ps/bench/t", q...)
			m.Payload = []byte(`{"temp":21.5}`)
			buf := coap.Append(nil, m)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				mid := i + 0x1000 // clear of the MIDs r.req used
				buf[2], buf[3] = byte(mid>>8), byte(mid)
				r.sendBytes(buf)
				r.recv()
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "publishes/s")
		})
	}
}

// BenchmarkIdleSessionHeap is the heap held by one idle connection-mode
// session (its udp peer, endpoint, gateway client and broker session).
//
//	go test -run '^$' -bench IdleSessionHeap -benchtime 1x ./protocols/coap/
func BenchmarkIdleSessionHeap(b *testing.B) {
	const n = 500
	e := newEnv(b, conf(`heartbeat = "1h"`))
	peers := make([]*raw, n)
	for i := range peers {
		peers[i] = dialRaw(b, e.udp())
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	rss0 := rss(b)
	b.ResetTimer()
	for i, r := range peers {
		resp := r.roundTrip(r.req(coap.CON, 2, "cx", "/mqtt/connection", "c=idle"+strconv.Itoa(i)))
		if resp.Code != code(2, 1) {
			b.Fatalf("connect %d: %+v", i, resp)
		}
	}
	b.StopTimer()
	runtime.GC()
	runtime.ReadMemStats(&after)
	if got := e.gw().ClientCount(); got != n {
		b.Fatalf("%d clients, want %d", got, n)
	}
	b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "heap-B/session")
	b.ReportMetric(float64(rss(b)-rss0)/n, "rss-B/session")
}

// rss is the process's resident set (Linux), in bytes.
func rss(b *testing.B) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		b.Skip("no /proc/self/status")
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
