package fault

import (
	"context"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/edgeway/edgeway/bench/benchkit"
)

// corpus is the seeds plus the fuzz corpus of the codec's package, when
// one was checked in (testdata/fuzz/<target>).
func corpus(t *testing.T, seeds [][]byte, dir string) [][]byte {
	_, file, _, _ := runtime.Caller(0)
	root := filepath.Join(filepath.Dir(file), "..", "..")
	extra := benchkit.ReadFuzzCorpus(filepath.Join(root, dir))
	t.Logf("%s: %d seeds + %d corpus entries", dir, len(seeds), len(extra))
	return append(append([][]byte(nil), seeds...), extra...)
}

// sumLike adds every metric whose name contains part and whose labels
// contain sel.
func sumLike(m map[string]float64, part, sel string) float64 {
	var t float64
	for k, v := range m {
		name, _, _ := strings.Cut(k, "{")
		if strings.Contains(name, part) && strings.Contains(k, sel) {
			t += v
		}
	}
	return t
}

// TestMalformedFlood: good MQTT-SN and STOMP clients run at a fixed rate;
// their acknowledged throughput is measured alone, then again while
// mutated codec-test frames flood both listeners. The good clients must
// keep ≥ 95% of it, the agent must not crash, and the bad frames must be
// counted in its metrics.
func TestMalformedFlood(t *testing.T) {
	r := newRig(t, nil, nil)
	ctx := context.Background()
	sn := r.load(ctx, "mqttsn", n(200, 40), 5)
	st := r.load(ctx, "stomp", n(50, 10), 5)
	window := n(10*time.Second, 4*time.Second)
	measure := func() float64 {
		a := sn.Acked.Load() + st.Acked.Load()
		time.Sleep(window)
		return float64(sn.Acked.Load()+st.Acked.Load()-a) / window.Seconds()
	}
	if !sn.WaitConnected(n(200, 40), 30*time.Second) || !st.WaitConnected(n(50, 10), 30*time.Second) {
		t.Fatal("good clients did not connect")
	}
	time.Sleep(time.Second)
	base := measure()

	fctx, stop := context.WithCancel(ctx)
	sentSN, sentST := benchkit.Flood(fctx, r.agent.Conf.MQTTSN, r.agent.Conf.STOMP,
		corpus(t, benchkit.MQTTSNSeeds, "protocols/mqttsn/testdata/fuzz/FuzzDecode"),
		corpus(t, benchkit.STOMPSeeds, "protocols/stomp/testdata/fuzz/FuzzParseFrame"), n(10000, 4000))
	time.Sleep(500 * time.Millisecond)
	flooded := measure()
	stop()
	t.Logf("good clients: %.0f/s alone, %.0f/s under flood (%.1f%%); flood: %d MQTT-SN datagrams, %d STOMP connections",
		base, flooded, 100*flooded/base, sentSN.Load(), sentST.Load())
	if flooded < 0.95*base {
		t.Errorf("good clients fell to %.1f%% of their throughput under the flood (want ≥ 95%%)", 100*flooded/base)
	}
	if r.agent.Exited() {
		t.Fatal("the agent crashed under the flood")
	}
	m := r.metrics()
	snBad := sumLike(m, "malformed", `gateway="mqttsn"`)
	stBad := sumLike(m, "malformed", `gateway="stomp"`) + sumLike(m, "unknown_command", `gateway="stomp"`)
	t.Logf("counted: mqttsn malformed %v, stomp malformed/unknown %v", snBad, stBad)
	if snBad == 0 {
		t.Error("no malformed MQTT-SN frame was counted")
	}
	if stBad == 0 {
		t.Error("no malformed STOMP frame was counted")
	}
	sn.Stop()
	st.Stop()
	r.expectAllArrived(sn, 30*time.Second)
	r.expectAllArrived(st, 30*time.Second)
}
