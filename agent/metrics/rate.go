package metrics

import (
	"sync"
	"time"
)

// Point is one value of a Rate's series: the per-second rate over the
// interval that ends at Time.
type Point struct {
	Time  time.Time
	Value float64
}

// Rate turns samples of a counter into per-second rates over a sliding
// window of the last N samples, for the status page's charts. The caller
// samples, typically every second from one ticker for all rates. It is
// safe for concurrent use.
//
// A sample lower than the one before means the counter restarted from
// zero (its Set was removed and created again), as in Prometheus' rate():
// the increase over that interval is taken to be the new value.
type Rate struct {
	mu   sync.Mutex
	ring []rateSample
	next int // index the next sample goes to
	n    int // samples held, up to len(ring)
}

type rateSample struct {
	t time.Time
	v uint64
}

// NewRate returns a Rate that keeps the last window samples. A window
// below 2 is raised to 2, the fewest that give a rate.
func NewRate(window int) *Rate {
	return &Rate{ring: make([]rateSample, max(window, 2))}
}

// Sample records value, read from the counter at now. A sample that is
// not later than the previous one is ignored. Times from time.Now carry
// a monotonic reading, so a wall clock set by NTP after boot does not
// disturb the rates.
func (r *Rate) Sample(now time.Time, value uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n > 0 && !now.After(r.at(r.n-1).t) {
		return
	}
	r.ring[r.next] = rateSample{now, value}
	r.next = (r.next + 1) % len(r.ring)
	r.n = min(r.n+1, len(r.ring))
}

// PerSecond returns the average rate over the window: the counter's
// increase between the oldest and the newest sample, divided by the time
// between them. It is 0 until there are two samples.
func (r *Rate) PerSecond() float64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n < 2 {
		return 0
	}
	var inc uint64
	for i := 1; i < r.n; i++ {
		inc += increase(r.at(i-1).v, r.at(i).v)
	}
	return float64(inc) / r.at(r.n-1).t.Sub(r.at(0).t).Seconds()
}

// Series returns the rate over each interval between consecutive
// samples, oldest first: N samples give N-1 points.
func (r *Rate) Series() []Point {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.n < 2 {
		return nil
	}
	pts := make([]Point, 0, r.n-1)
	for i := 1; i < r.n; i++ {
		prev, cur := r.at(i-1), r.at(i)
		pts = append(pts, Point{
			Time:  cur.t,
			Value: float64(increase(prev.v, cur.v)) / cur.t.Sub(prev.t).Seconds(),
		})
	}
	return pts
}

// at returns the i-th held sample, oldest first.
func (r *Rate) at(i int) rateSample {
	return r.ring[(r.next-r.n+i+len(r.ring))%len(r.ring)]
}

func increase(prev, cur uint64) uint64 {
	if cur < prev {
		return cur // restarted from zero
	}
	return cur - prev
}
