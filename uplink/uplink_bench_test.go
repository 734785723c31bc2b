package uplink

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/edgeway/edgeway/store"
)

// Drain speed: a backlog of QoS 1 messages drained into mosquitto by the
// uplink, against a plain paho client publishing the same messages with
// the same window. Run:
//
//	UPLINK_DRAIN=100000,1000000 go test -run TestDrainReport -v -timeout 30m ./uplink/
//	go test -run xxx -bench Drain -benchtime 100000x ./uplink/
//
// The report gives messages/s for each, the ratio (the figure that
// matters), and the peak RSS of this test process during the drain.

const (
	benchTopic  = "bench/dev-1/temp"
	benchWindow = 64
)

var benchPayload = []byte(`{"t":21.5,"h":48.2,"p":1013.2,"bat":3.71,"rssi":-67,"seq":0000000000}`)

func TestDrainReport(t *testing.T) {
	spec := os.Getenv("UPLINK_DRAIN")
	if spec == "" {
		t.Skip("set UPLINK_DRAIN=100000[,1000000] to measure the drain rate")
	}
	m := startMosquitto(t, "")
	for _, f := range strings.Split(spec, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d messages of %d bytes, QoS 1, window %d, into mosquitto, %d CPUs; each run in its own process:", n, len(benchPayload), benchWindow, runtime.NumCPU())
		var pahoRate float64
		for _, mode := range []string{"paho", "mem", "store"} {
			res := drainChild(t, mode, n, m.Addr())
			if mode == "paho" {
				pahoRate = res.rate
			}
			t.Logf("  %-34s %8.0f msg/s  ratio %.2f  RSS before the drain %4d MB (anon %4d), peak during it %4d MB (anon %4d)",
				map[string]string{"paho": "paho client, publishing directly:", "mem": "uplink, in-memory queue:", "store": "uplink, badger store (sync none):"}[mode],
				res.rate, res.rate/pahoRate, res.before>>20, res.beforeAnon>>20, res.peak>>20, res.peakAnon>>20)
		}
	}
}

type drainResult struct {
	rate               float64
	before, beforeAnon int64
	peak, peakAnon     int64
}

// drainChild runs one measurement in a fresh test process, so that one
// run's memory does not count in the next one's RSS.
func drainChild(t *testing.T, mode string, n int, addr string) drainResult {
	cmd := exec.Command(os.Args[0], "-test.run=^TestDrainChild$", "-test.v", "-test.timeout=30m")
	cmd.Env = append(os.Environ(), fmt.Sprintf("UPLINK_DRAIN_CHILD=%s,%d,%s", mode, n, addr))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", mode, err, out)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if _, rest, ok := strings.Cut(line, "DRAIN-RESULT "); ok {
			var r drainResult
			if _, err := fmt.Sscan(rest, &r.rate, &r.before, &r.beforeAnon, &r.peak, &r.peakAnon); err != nil {
				t.Fatal(err)
			}
			return r
		}
	}
	t.Fatalf("%s: no result\n%s", mode, out)
	return drainResult{}
}

func TestDrainChild(t *testing.T) {
	spec := os.Getenv("UPLINK_DRAIN_CHILD")
	if spec == "" {
		t.Skip("run by TestDrainReport")
	}
	parts := strings.Split(spec, ",")
	mode, addr := parts[0], parts[2]
	n, _ := strconv.Atoi(parts[1])
	var run func()
	switch mode {
	case "paho":
		run = func() { drainPaho(t, addr, n) }
	case "mem":
		q := prefilledMem(n)
		run = func() { drainUplink(t, addr, q, n) }
	case "store":
		q := prefilledStore(t, n)
		run = func() { drainUplink(t, addr, q, n) }
	}
	runtime.GC()
	before, beforeAnon := rss()
	rate, peak, peakAnon := measure(run, n)
	fmt.Printf("DRAIN-RESULT %f %d %d %d %d\n", rate, before, beforeAnon, peak, peakAnon)
}

func BenchmarkDrainPaho(b *testing.B) {
	m := startMosquitto(b, "")
	b.ResetTimer()
	drainPaho(b, m.Addr(), b.N)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

func BenchmarkDrainUplinkMem(b *testing.B) {
	m := startMosquitto(b, "")
	q := prefilledMem(b.N)
	b.ResetTimer()
	drainUplink(b, m.Addr(), q, b.N)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

func BenchmarkDrainUplinkStore(b *testing.B) {
	m := startMosquitto(b, "")
	q := prefilledStore(b, b.N)
	b.ResetTimer()
	drainUplink(b, m.Addr(), q, b.N)
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msg/s")
}

// measure runs fn and returns n/s and the peak RSS (total, anonymous)
// seen meanwhile.
func measure(fn func(), n int) (rate float64, peak, peakAnon int64) {
	runtime.GC()
	var maxT, maxA atomic.Int64
	done := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			if r, a := rss(); r > maxT.Load() {
				maxT.Store(r)
				maxA.Store(max(a, maxA.Load()))
			} else if a > maxA.Load() {
				maxA.Store(a)
			}
			select {
			case <-done:
				return
			case <-t.C:
			}
		}
	}()
	start := time.Now()
	fn()
	el := time.Since(start)
	close(done)
	<-sampled
	return float64(n) / el.Seconds(), maxT.Load(), maxA.Load()
}

// rss returns VmRSS and its anonymous part (RssAnon; the rest is
// mapped files, which badger's memory-mapped tables are).
func rss() (total, anon int64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	defer f.Close()
	kb := func(v string) int64 {
		n, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
		return n << 10
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			total = kb(v)
		}
		if v, ok := strings.CutPrefix(sc.Text(), "RssAnon:"); ok {
			anon = kb(v)
		}
	}
	return total, anon
}

func benchMsg(i int) *store.Message {
	p := append([]byte(nil), benchPayload...)
	copy(p[len(p)-11:], fmt.Sprintf("%010d", i))
	return &store.Message{Topic: benchTopic, Payload: p, QoS: 1, Gateway: "mqttsn", ClientID: "dev-1"}
}

func prefilledMem(n int) *memQueue {
	q := newMemQueue()
	batch := make([]*store.Message, 0, 1000)
	for i := 0; i < n; i++ {
		batch = append(batch, benchMsg(i))
		if len(batch) == cap(batch) || i == n-1 {
			q.Append(context.Background(), batch...)
			batch = batch[:0]
		}
	}
	return q
}

func prefilledStore(tb testing.TB, n int) *store.Store {
	tb.Helper()
	st := openStore(tb, filepath.Join(tb.TempDir(), "q"), store.Options{Sync: store.SyncNone, MaxBytes: 4 << 30})
	batch := make([]*store.Message, 0, 1000)
	for i := 0; i < n; i++ {
		batch = append(batch, benchMsg(i))
		if len(batch) == cap(batch) || i == n-1 {
			if err := st.Append(context.Background(), batch...); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	return st
}

// drainUplink starts an uplink on q and waits until it has n acks.
func drainUplink(tb testing.TB, addr string, q store.Queue, n int) {
	tb.Helper()
	cfg := testConfig("mqtt://" + addr)
	cfg.MaxInflight = benchWindow
	u, err := New(cfg, Deps{Queue: q, AgentID: "bench"})
	if err != nil {
		tb.Fatal(err)
	}
	if err := u.Start(context.Background()); err != nil {
		tb.Fatal(err)
	}
	defer u.Stop(context.Background())
	for u.acked.Load() < uint64(n) {
		time.Sleep(time.Millisecond)
		if st := u.Status(); st.LastError != "" && st.Connects == 0 && st.ConnectAttempts > 5 {
			tb.Fatalf("uplink cannot connect: %s", st.LastError)
		}
	}
}

// drainPaho publishes n messages with paho, QoS 1, at most benchWindow
// unacknowledged: what the uplink competes with.
func drainPaho(tb testing.TB, addr string, n int) {
	tb.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + addr).SetClientID("bench-paho").
		SetCleanSession(true).SetAutoReconnect(false).SetMaxResumePubInFlight(benchWindow)
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		tb.Fatalf("paho connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	toks := make(chan paho.Token, benchWindow)
	waited := make(chan error, 1)
	go func() {
		for tok := range toks {
			tok.Wait()
			if err := tok.Error(); err != nil {
				waited <- err
				for range toks {
				}
				return
			}
		}
		waited <- nil
	}()
	topic := "site/bench/" + benchTopic
	for i := 0; i < n; i++ {
		m := benchMsg(i)
		toks <- c.Publish(topic, 1, false, m.Payload)
	}
	close(toks)
	if err := <-waited; err != nil {
		tb.Fatal(err)
	}
}
