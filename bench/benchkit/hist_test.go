package benchkit

import (
	"strings"
	"testing"
	"time"
)

func TestHistBucketsRoundTrip(t *testing.T) {
	for _, v := range []int64{0, 1, 63, 64, 65, 127, 128, 1000, 123456, 1 << 40} {
		b := bucketOf(v)
		lo, hi := lowOf(b), lowOf(b+1)
		if v < lo || v >= hi {
			t.Errorf("%d in bucket %d [%d,%d)", v, b, lo, hi)
		}
		if v >= 64 && float64(hi-lo)/float64(lo) > 1.0/64+1e-9 {
			t.Errorf("%d: bucket [%d,%d) wider than 1/64", v, lo, hi)
		}
	}
}

func TestHistQuantiles(t *testing.T) {
	var h Hist
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want int64
	}{{.5, 5000}, {.9, 9000}, {.99, 9900}, {1, 10000}} {
		got := h.Quantile(c.q)
		if d := float64(got-c.want) / float64(c.want); d > 0.02 || d < -0.02 {
			t.Errorf("q%.2f = %d, want ≈%d", c.q, got, c.want)
		}
	}
	s := h.Summary()
	if s.MaxUS != 10000 || s.Count != 10000 {
		t.Errorf("summary %+v", s)
	}
	var m Hist
	m.Merge(&h)
	m.Merge(&h)
	if m.Count() != 20000 || m.Quantile(.5) != h.Quantile(.5) {
		t.Errorf("merge: %d %d", m.Count(), m.Quantile(.5))
	}
}

func TestChartsOfEmptyResult(t *testing.T) {
	r := &Result{Scenario: "idle", Phases: []Phase{{Name: "idle", Timeline: []Sample{{T: 0, RSS: 1 << 20}, {T: 1, RSS: 2 << 20}}}}}
	for name, c := range Charts(r) {
		if s := c.SVG(); len(s) > 100000 || !strings.HasPrefix(s, "<svg") {
			t.Errorf("%s: %d bytes", name, len(s))
		}
	}
}
