package fault

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeway/edgeway/bench/benchkit"
)

// goroutines is the agent's goroutine gauge if its /metrics has one,
// else its OS thread count (a weaker proxy: Go parks goroutines, not
// threads), and which of the two it is.
func goroutines(t *testing.T, r *rig, pid int) (float64, string) {
	if m, err := r.agent.Metrics(); err == nil {
		for k, v := range m {
			if strings.Contains(k, "goroutines") {
				return v, "goroutines"
			}
		}
	}
	ps, err := benchkit.ReadProc(pid)
	if err != nil {
		t.Fatal(err)
	}
	return float64(ps.Threads), "threads"
}

// TestSoak: mixed traffic — steady MQTT-SN QoS 1, STOMP QoS 1, and
// devices that connect, publish once and go — while the agent's RSS and
// goroutines are sampled. It fails when the second half of the run sits
// above the first by more than a bound, i.e. something grows with
// traffic instead of with load.
func TestSoak(t *testing.T) {
	r := newRig(t, nil, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sn := r.load(ctx, "mqttsn", 30, 10)
	st := r.load(ctx, "stomp", 10, 10)
	var churned atomic.Int64
	for _, proto := range []string{"mqttsn", "stomp"} {
		g, err := r.env.Generator(proto, benchkit.Options{QoS: 1, Timeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		first := r.env.Devs(1000000)
		go func() {
			p := benchkit.NewPayload(64)
			for i := uint32(0); ctx.Err() == nil; i++ {
				d, err := g.Dial(ctx, first+i)
				if err != nil {
					continue
				}
				benchkit.Stamp(p, first+i, 0, time.Now())
				_ = d.Publish(ctx, p)
				_ = d.Close()
				churned.Add(1)
				time.Sleep(20 * time.Millisecond)
			}
		}()
	}
	dur := n(5*time.Minute, 12*time.Second)
	every := n(5*time.Second, time.Second)
	pid := r.agent.PID()
	var rss, gor []float64
	var kind string
	for end := time.Now().Add(dur); time.Now().Before(end); time.Sleep(every) {
		ps, err := benchkit.ReadProc(pid)
		if err != nil {
			t.Fatalf("agent gone: %v", err)
		}
		g, k := goroutines(t, r, pid)
		rss, gor, kind = append(rss, float64(ps.RSS)), append(gor, g), k
	}
	cancel()
	sn.Stop()
	st.Stop()
	if r.agent.Exited() {
		t.Fatal("the agent exited")
	}
	// Compare the mean of the second quarter (after warm-up) with the last.
	q := len(rss) / 4
	mean := func(v []float64) float64 {
		var s float64
		for _, x := range v {
			s += x
		}
		return s / float64(len(v))
	}
	rssA, rssZ := mean(rss[q:2*q]), mean(rss[3*q:])
	gA, gZ := mean(gor[q:2*q]), mean(gor[3*q:])
	t.Logf("%s: RSS %.1f → %.1f MB, %s %.0f → %.0f; %d churned sessions, %d + %d steady publishes acknowledged",
		dur, rssA/(1<<20), rssZ/(1<<20), kind, gA, gZ, churned.Load(), sn.Acked.Load(), st.Acked.Load())
	if rssZ > rssA*1.25+8<<20 {
		t.Errorf("RSS grew from %.1f to %.1f MB", rssA/(1<<20), rssZ/(1<<20))
	}
	if gZ > gA*1.25+20 {
		t.Errorf("%s grew from %.0f to %.0f", kind, gA, gZ)
	}
	r.expectAllArrived(sn, 30*time.Second)
	r.expectAllArrived(st, 30*time.Second)
}
