package fault

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeway/edgeway/bench/benchkit"
)

// TestScenarios runs every edgeway-bench scenario at toy size against the
// rig and renders its report, so the tool keeps working between releases
// (its numbers are not asserted: speed is measured, not tested).
func TestScenarios(t *testing.T) {
	r := newRig(t, nil, nil)
	o := benchkit.Options{Protocols: []string{"mqttsn", "stomp"}, Clients: 3, Rate: 20, QoS: 1,
		Duration: 2 * time.Second, Warmup: 500 * time.Millisecond, Settle: 5 * time.Second,
		Outage: time.Second, Backlog: 300, IdleClients: 20, Step: time.Second, MaxSteps: 2}
	for _, sc := range []string{"steady", "idle", "outage", "backlog", "ceiling"} {
		t.Run(sc, func(t *testing.T) {
			res, err := benchkit.Run(context.Background(), sc, r.env, o)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Phases) == 0 {
				t.Fatal("no phases")
			}
			for _, p := range res.Phases {
				if p.Acked == 0 && sc != "idle" {
					t.Errorf("%s: nothing acknowledged", p.Name)
				}
				if p.Missing != 0 {
					t.Errorf("%s: %d acknowledged messages missing", p.Name, p.Missing)
				}
			}
			if sc == "idle" && res.Phases[0].Extra["connected"] != 20 {
				t.Errorf("idle: %v connected", res.Phases[0].Extra["connected"])
			}
			dir := t.TempDir()
			if err := benchkit.WriteReport(res, dir); err != nil {
				t.Fatal(err)
			}
			back, err := benchkit.ReadResult(filepath.Join(dir, "results.json"))
			if err != nil || len(back.Phases) != len(res.Phases) {
				t.Fatalf("results.json round trip: %v", err)
			}
			for _, f := range []string{"throughput.svg", "latency.svg", "rss.svg", "summary.md"} {
				if fi, err := os.Stat(filepath.Join(dir, f)); err != nil || fi.Size() == 0 {
					t.Errorf("%s: %v", f, err)
				}
			}
		})
	}
}
