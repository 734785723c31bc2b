package metrics_test

import (
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/metrics"
)

func TestRate(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }

	r := metrics.NewRate(4)
	if r.PerSecond() != 0 || r.Series() != nil {
		t.Fatal("empty Rate not zero")
	}
	r.Sample(at(0), 100)
	if r.PerSecond() != 0 || r.Series() != nil {
		t.Fatal("one sample gave a rate")
	}
	r.Sample(at(1000), 110) // 10/s
	r.Sample(at(2000), 130) // 20/s
	r.Sample(at(2000), 999) // not later: ignored
	r.Sample(at(1500), 999) // earlier: ignored
	r.Sample(at(2500), 160) // 60/s
	if got, want := r.PerSecond(), 60.0/2.5; got != want {
		t.Errorf("PerSecond() = %v, want %v", got, want)
	}
	checkSeries(t, r.Series(), []metrics.Point{{at(1000), 10}, {at(2000), 20}, {at(2500), 60}})

	// The window slides: the sample at 0 falls out.
	r.Sample(at(3500), 160) // 0/s
	if got, want := r.PerSecond(), 50.0/2.5; got != want {
		t.Errorf("PerSecond() after slide = %v, want %v", got, want)
	}
	checkSeries(t, r.Series(), []metrics.Point{{at(2000), 20}, {at(2500), 60}, {at(3500), 0}})

	// The counter restarted from zero: the increase is the new value.
	r.Sample(at(4500), 5)
	checkSeries(t, r.Series(), []metrics.Point{{at(2500), 60}, {at(3500), 0}, {at(4500), 5}})
	if got, want := r.PerSecond(), 35.0/2.5; got != want {
		t.Errorf("PerSecond() after restart = %v, want %v", got, want)
	}
}

func TestRateSmallWindow(t *testing.T) {
	t0 := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	r := metrics.NewRate(0) // raised to 2
	r.Sample(t0, 0)
	r.Sample(t0.Add(time.Second), 4)
	r.Sample(t0.Add(3*time.Second), 10)
	if got := r.PerSecond(); got != 3 {
		t.Errorf("PerSecond() = %v, want 3", got)
	}
	checkSeries(t, r.Series(), []metrics.Point{{t0.Add(3 * time.Second), 3}})
}

func checkSeries(t *testing.T, got, want []metrics.Point) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("Series() = %v, want %v", got, want)
	}
	for i := range got {
		if !got[i].Time.Equal(want[i].Time) || got[i].Value != want[i].Value {
			t.Errorf("Series()[%d] = %v, want %v", i, got[i], want[i])
		}
	}
}
