package benchkit

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Sample is one second of a phase.
type Sample struct {
	T         float64 `json:"t"`         // seconds since the phase began
	Sent      int64   `json:"sent"`      // cumulative
	Acked     int64   `json:"acked"`     // cumulative
	Delivered int64   `json:"delivered"` // cumulative, distinct
	RSS       int64   `json:"rss,omitempty"`
	CPU       float64 `json:"cpu,omitempty"` // cores used over the last interval (1.0 = one core)
	Conns     int64   `json:"conns"`
}

// Phase is one measured stretch of a scenario.
type Phase struct {
	Name          string             `json:"name"`
	Protocol      string             `json:"protocol"`
	Clients       int                `json:"clients"`
	QoS           byte               `json:"qos"`
	Payload       int                `json:"payload"`
	RatePerClient float64            `json:"rate_per_client"` // 0 = open throttle
	WarmupS       float64            `json:"warmup_s"`
	DurationS     float64            `json:"duration_s"` // measured window
	Sent          int64              `json:"sent"`
	Acked         int64              `json:"acked"`
	Delivered     int64              `json:"delivered"`
	Duplicates    int64              `json:"duplicates"`
	Missing       int64              `json:"missing"` // acknowledged, never arrived
	OfferedRate   float64            `json:"offered_per_s"`
	AckedRate     float64            `json:"acked_per_s"`
	DeliveredRate float64            `json:"delivered_per_s"`
	Latency       Latency            `json:"latency"`
	RSSStart      int64              `json:"rss_start,omitempty"`
	RSSMax        int64              `json:"rss_max,omitempty"`
	CPUAvg        float64            `json:"cpu_avg,omitempty"`
	Extra         map[string]float64 `json:"extra,omitempty"`
	Timeline      []Sample           `json:"timeline,omitempty"`
}

// Machine describes where a run happened.
type Machine struct {
	OS, Arch  string
	CPUs      int
	CPUModel  string
	Kernel    string
	GoVersion string
	MemTotal  string
	Note      string `json:",omitempty"`
}

// Result is one run of one scenario: what the JSON file holds.
type Result struct {
	Scenario string            `json:"scenario"`
	Started  time.Time         `json:"started"`
	Target   string            `json:"target"` // "edgeway (started by the tool)" or an address
	Params   map[string]string `json:"params"`
	Machine  Machine           `json:"machine"`
	Phases   []Phase           `json:"phases"`
	Notes    []string          `json:"notes,omitempty"`
}

// ThisMachine reads /proc for the CPU model, kernel and memory.
func ThisMachine() Machine {
	m := Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && (strings.TrimSpace(k) == "model name" || strings.TrimSpace(k) == "Model") {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		l, _, _ := strings.Cut(string(b), "\n")
		m.MemTotal = strings.Join(strings.Fields(l)[1:], " ")
	}
	return m
}

// WriteJSON writes r to path.
func (r *Result) WriteJSON(path string) error {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetIndent("", "  ")
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("benchkit: %w", err)
	}
	return os.WriteFile(path, b.Bytes(), 0o644)
}

// ReadResult reads a results file.
func ReadResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("benchkit: %w", err)
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, fmt.Errorf("benchkit: %s: %w", path, err)
	}
	return &r, nil
}

// Sampler records a Sample every interval from a load, a subscriber and
// an agent's /proc entry.
type Sampler struct {
	mu      sync.Mutex
	samples []Sample
	cancel  context.CancelFunc
	done    chan struct{}
}

// StartSampler samples every interval until Stop. pid returns the
// process to read (0: none), asked each time as the agent may restart.
func StartSampler(interval time.Duration, l *Load, s *Subscriber, pid func() int) *Sampler {
	ctx, cancel := context.WithCancel(context.Background())
	sm := &Sampler{cancel: cancel, done: make(chan struct{})}
	start := time.Now()
	var lastCPU float64
	var lastPID int
	lastT := start
	take := func() {
		now := time.Now()
		x := Sample{T: now.Sub(start).Seconds()}
		if l != nil {
			x.Sent, x.Acked, x.Conns = l.Sent.Load(), l.Acked.Load(), l.Connected()
		}
		if s != nil && l != nil {
			x.Delivered, _ = s.Seen.CountRange(l.o.FirstDev, uint32(l.o.Clients))
		} else if s != nil {
			x.Delivered = s.Delivered()
		}
		if p := pid(); p != 0 {
			if ps, err := ReadProc(p); err == nil {
				x.RSS = ps.RSS
				// CPU time ticks at 10 ms: a rate over less than half a
				// second (the sample taken at Stop) is mostly rounding.
				if p != lastPID || now.Sub(lastT) >= interval/2 {
					if p == lastPID {
						x.CPU = (ps.CPUSecs - lastCPU) / now.Sub(lastT).Seconds()
					}
					lastCPU, lastPID, lastT = ps.CPUSecs, p, now
				}
			}
		}
		sm.mu.Lock()
		sm.samples = append(sm.samples, x)
		sm.mu.Unlock()
	}
	take()
	go func() {
		defer close(sm.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				take()
			case <-ctx.Done():
				take()
				return
			}
		}
	}()
	return sm
}

// Last returns the latest sample.
func (sm *Sampler) Last() Sample {
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return sm.samples[len(sm.samples)-1]
}

// Stop takes a last sample and returns them all.
func (sm *Sampler) Stop() []Sample {
	sm.cancel()
	<-sm.done
	sm.mu.Lock()
	defer sm.mu.Unlock()
	return sm.samples
}

// Summarize fills a phase's rates and resource figures from its
// timeline, measuring from the first sample at or after warmup.
func (p *Phase) Summarize(tl []Sample, warmup float64) {
	p.Timeline = tl
	p.WarmupS = warmup
	if len(tl) == 0 {
		return
	}
	a, z := tl[0], tl[len(tl)-1]
	for _, s := range tl {
		if s.T >= warmup {
			a = s
			break
		}
	}
	p.DurationS = z.T - a.T
	if p.DurationS > 0 {
		p.OfferedRate = float64(z.Sent-a.Sent) / p.DurationS
		p.AckedRate = float64(z.Acked-a.Acked) / p.DurationS
		p.DeliveredRate = float64(z.Delivered-a.Delivered) / p.DurationS
	}
	var cpu float64
	var n int
	for _, s := range tl {
		if p.RSSStart == 0 && s.RSS > 0 {
			p.RSSStart = s.RSS
		}
		p.RSSMax = max(p.RSSMax, s.RSS)
		if s.T > a.T && s.CPU > 0 {
			cpu += s.CPU
			n++
		}
	}
	if n > 0 {
		p.CPUAvg = cpu / float64(n)
	}
}
