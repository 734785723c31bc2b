// Package benchkit is the machinery behind edgeway-bench and the fault
// suite: virtual devices per protocol, the cloud-side subscriber that
// measures what arrives, the agent and mosquitto as subprocesses, /proc
// sampling, scenarios, and the JSON, SVG and Markdown report.
package benchkit

import (
	"math"
	"math/bits"
	"sort"
	"time"
)

// Hist is a log-bucketed latency histogram in microseconds: 64 linear
// sub-buckets per power of two, so a quantile is within 1.6% of the true
// value. Its zero value is ready; it is not safe for concurrent use.
type Hist struct {
	counts map[int]uint64
	n      uint64
	max    int64
	sum    float64
}

const subBits = 6

func bucketOf(us int64) int {
	if us < 1<<subBits {
		return int(us)
	}
	e := 63 - bits.LeadingZeros64(uint64(us)) - subBits
	return (e+1)<<subBits + int(us>>uint(e)) - 1<<subBits
}

// lowOf is the smallest value in bucket b.
func lowOf(b int) int64 {
	if b < 1<<subBits {
		return int64(b)
	}
	e := b>>subBits - 1
	return (int64(b&(1<<subBits-1)) + 1<<subBits) << uint(e)
}

// Record adds one latency.
func (h *Hist) Record(d time.Duration) {
	us := d.Microseconds()
	if us < 0 {
		us = 0
	}
	if h.counts == nil {
		h.counts = map[int]uint64{}
	}
	h.counts[bucketOf(us)]++
	h.n++
	h.sum += float64(us)
	if us > h.max {
		h.max = us
	}
}

// Merge adds o's counts to h.
func (h *Hist) Merge(o *Hist) {
	if o == nil {
		return
	}
	if h.counts == nil {
		h.counts = map[int]uint64{}
	}
	for b, c := range o.counts {
		h.counts[b] += c
	}
	h.n += o.n
	h.sum += o.sum
	h.max = max(h.max, o.max)
}

// Count is the number of values recorded.
func (h *Hist) Count() uint64 { return h.n }

// Quantile returns the value at q (0..1) in microseconds.
func (h *Hist) Quantile(q float64) int64 {
	if h.n == 0 {
		return 0
	}
	want := uint64(math.Ceil(q * float64(h.n)))
	want = max(want, 1)
	var seen uint64
	for _, b := range h.sorted() {
		seen += h.counts[b]
		if seen >= want {
			return min(lowOf(b), h.max)
		}
	}
	return h.max
}

func (h *Hist) sorted() []int {
	bs := make([]int, 0, len(h.counts))
	for b := range h.counts {
		bs = append(bs, b)
	}
	sort.Ints(bs)
	return bs
}

// Bucket is one histogram bucket in a report: values from LowUS up.
type Bucket struct {
	LowUS int64  `json:"low_us"`
	Count uint64 `json:"count"`
}

// Latency is the summary a report keeps.
type Latency struct {
	Count   uint64   `json:"count"`
	MeanUS  float64  `json:"mean_us"`
	P50US   int64    `json:"p50_us"`
	P90US   int64    `json:"p90_us"`
	P99US   int64    `json:"p99_us"`
	MaxUS   int64    `json:"max_us"`
	Buckets []Bucket `json:"buckets,omitempty"`
}

// Summary returns the quantiles and the non-empty buckets.
func (h *Hist) Summary() Latency {
	l := Latency{Count: h.n, P50US: h.Quantile(.5), P90US: h.Quantile(.9), P99US: h.Quantile(.99), MaxUS: h.max}
	if h.n > 0 {
		l.MeanUS = h.sum / float64(h.n)
	}
	for _, b := range h.sorted() {
		l.Buckets = append(l.Buckets, Bucket{LowUS: lowOf(b), Count: h.counts[b]})
	}
	return l
}
