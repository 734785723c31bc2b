package benchkit

import (
	"context"
	"fmt"
	"time"
)

// Options are the scenario parameters (the command's flags).
type Options struct {
	Protocols []string
	Clients   int
	Rate      float64 // per client per second; 0 = open throttle
	QoS       byte
	Payload   int
	Duration  time.Duration // measured window of a phase
	Warmup    time.Duration
	Settle    time.Duration // after a phase, wait at most this for stragglers
	Interval  time.Duration // sampling
	// Outage is how long the broker stays down (scenario outage).
	Outage time.Duration
	// Backlog is how many messages are queued while the broker is down.
	Backlog int
	// IdleClients per protocol (scenario idle).
	IdleClients int
	// Ceiling: start at Rate (or 10/s) per client, multiply by Factor every
	// Step, at most MaxSteps steps.
	Step     time.Duration
	Factor   float64
	MaxSteps int
	// Timeout of one acknowledgement.
	Timeout time.Duration
}

// Defaults fills unset options.
func (o *Options) Defaults() {
	if len(o.Protocols) == 0 {
		o.Protocols = []string{"mqttsn", "stomp"}
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&o.Duration, 20*time.Second)
	def(&o.Warmup, 2*time.Second)
	def(&o.Settle, 15*time.Second)
	def(&o.Interval, time.Second)
	def(&o.Outage, 5*time.Second)
	def(&o.Step, 5*time.Second)
	def(&o.Timeout, 5*time.Second)
	if o.Clients == 0 {
		o.Clients = 10
	}
	if o.Payload == 0 {
		o.Payload = 64
	}
	if o.Backlog == 0 {
		o.Backlog = 10000
	}
	if o.IdleClients == 0 {
		o.IdleClients = 100
	}
	if o.Factor <= 1 {
		o.Factor = 2
	}
	if o.MaxSteps == 0 {
		o.MaxSteps = 8
	}
}

// Env is what scenarios run against.
type Env struct {
	// Broker is the cloud broker's host:port; Mosq is set when the tool
	// runs it (needed by outage and backlog, which stop it).
	Broker string
	Mosq   *Mosquitto
	// Agent is set when the tool runs edgeway; Addrs has the gateway
	// address per protocol either way.
	Agent *Agent
	Addrs map[string]string
	// PID of a running agent to sample when Agent is nil (0: none).
	PID int
	Sub *Subscriber
	// Logf reports progress (may be nil).
	Logf    func(format string, args ...any)
	nextDev uint32
}

func (e *Env) logf(format string, args ...any) {
	if e.Logf != nil {
		e.Logf(format, args...)
	}
}

func (e *Env) pid() int {
	if e.Agent != nil {
		return e.Agent.PID()
	}
	return e.PID
}

// Generator returns proto's generator aimed at its address ("direct":
// at the broker).
func (e *Env) Generator(proto string, o Options) (Generator, error) {
	addr := e.Addrs[proto]
	if proto == "direct" {
		addr = e.Broker
	}
	if addr == "" {
		return nil, fmt.Errorf("benchkit: no address for protocol %q", proto)
	}
	return NewGenerator(proto, Target{Addr: addr, QoS: o.QoS, Timeout: o.Timeout})
}

// Devs reserves n device numbers, so phases never share keys.
func (e *Env) Devs(n int) uint32 {
	first := e.nextDev
	e.nextDev += uint32(n)
	return first
}

// Run runs the scenario called name.
func Run(ctx context.Context, name string, e *Env, o Options) (*Result, error) {
	o.Defaults()
	r := &Result{Scenario: name, Started: time.Now().UTC(), Machine: ThisMachine(), Params: map[string]string{
		"protocols": fmt.Sprint(o.Protocols), "clients": fmt.Sprint(o.Clients), "rate_per_client": fmt.Sprint(o.Rate),
		"qos": fmt.Sprint(o.QoS), "payload": fmt.Sprint(o.Payload), "duration": o.Duration.String(), "warmup": o.Warmup.String(),
	}}
	var err error
	switch name {
	case "steady":
		err = steady(ctx, e, o, r)
	case "idle":
		err = idle(ctx, e, o, r)
	case "outage":
		r.Params["outage"] = o.Outage.String()
		err = outage(ctx, e, o, r)
	case "backlog":
		r.Params["backlog"] = fmt.Sprint(o.Backlog)
		err = backlog(ctx, e, o, r)
	case "ceiling":
		r.Params["step"], r.Params["factor"] = o.Step.String(), fmt.Sprint(o.Factor)
		err = ceiling(ctx, e, o, r)
	default:
		err = fmt.Errorf("benchkit: unknown scenario %q (steady, idle, outage, backlog, ceiling)", name)
	}
	return r, err
}

// PhaseRun is a phase in progress.
type PhaseRun struct {
	e       *Env
	P       Phase
	Load    *Load
	sm      *Sampler
	start   time.Time
	first   uint32
	n       uint32
	stopped float64
}

// StartPhase starts a load of proto and samples it.
func StartPhase(ctx context.Context, e *Env, name, proto string, o Options, lo LoadOptions) (*PhaseRun, error) {
	g, err := e.Generator(proto, o)
	if err != nil {
		return nil, err
	}
	lo.FirstDev = e.Devs(lo.Clients)
	if lo.Payload == 0 {
		lo.Payload = o.Payload
	}
	pr := &PhaseRun{e: e, start: time.Now(), P: Phase{Name: name, Protocol: proto, Clients: lo.Clients, QoS: o.QoS,
		Payload: max(lo.Payload, HeaderLen), RatePerClient: lo.Rate}}
	if e.Sub != nil {
		e.Sub.SetPhase(lo.FirstDev, uint32(lo.Clients))
	}
	pr.Load = StartLoad(ctx, g, lo)
	pid := e.pid
	if proto == "direct" {
		pid = func() int { return 0 } // the agent is not involved
	}
	pr.sm = StartSampler(o.Interval, pr.Load, e.Sub, pid)
	pr.first, pr.n = lo.FirstDev, uint32(lo.Clients)
	return pr, nil
}

// Elapsed is the time since the phase started.
func (pr *PhaseRun) Elapsed() time.Duration { return time.Since(pr.start) }

// StopLoad stops the devices; the sampler keeps going. The load ends when
// it is told to: the devices' goodbyes (a LwM2M de-register each) are not
// part of the rate window.
func (pr *PhaseRun) StopLoad() {
	pr.stopped = time.Since(pr.start).Seconds()
	pr.Load.Stop()
}

// Finish waits up to settle for acknowledged messages still on their way
// and fills in the phase. Rates are over [warmup, load stopped].
func (pr *PhaseRun) Finish(warmup, settle time.Duration) Phase {
	if pr.stopped == 0 {
		pr.StopLoad()
	}
	p := &pr.P
	if s := pr.e.Sub; s != nil {
		s.WaitFor(&pr.Load.AckedKeys, settle, 3*time.Second)
	}
	tl := pr.sm.Stop()
	var in []Sample
	for _, s := range tl {
		if s.T <= pr.stopped+0.5 {
			in = append(in, s)
		}
	}
	p.Summarize(in, warmup.Seconds())
	p.Timeline = tl
	p.Sent, p.Acked = pr.Load.Sent.Load(), pr.Load.Acked.Load()
	if s := pr.e.Sub; s != nil {
		p.Delivered, p.Duplicates = s.Seen.CountRange(pr.first, pr.n)
		if p.QoS > 0 {
			p.Missing, _ = pr.Load.AckedKeys.Missing(&s.Seen, 0)
		}
		p.Latency = s.TakeHist().Summary()
	}
	p.extra("loss_pct", lossPct(p.Sent, p.Delivered))
	p.extra("dial_errors", float64(pr.Load.DialErrors.Load()))
	p.extra("publish_failed", float64(pr.Load.Failed.Load()))
	return *p
}

func lossPct(sent, delivered int64) float64 {
	if sent == 0 {
		return 0
	}
	return 100 * float64(max(sent-delivered, 0)) / float64(sent)
}

func (p *Phase) extra(k string, v float64) {
	if p.Extra == nil {
		p.Extra = map[string]float64{}
	}
	p.Extra[k] = v
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	select {
	case <-time.After(d):
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func runPhase(ctx context.Context, e *Env, name, proto string, o Options, lo LoadOptions) (Phase, error) {
	e.logf("phase %s: %s, %d clients, %.4g msg/s each, qos %d", name, proto, lo.Clients, lo.Rate, o.QoS)
	pr, err := StartPhase(ctx, e, name, proto, o, lo)
	if err != nil {
		return Phase{}, err
	}
	err = sleepCtx(ctx, o.Warmup+o.Duration)
	p := pr.Finish(o.Warmup, o.Settle)
	e.logf("  offered %.0f/s delivered %.0f/s missing %d p99 %dµs", p.OfferedRate, p.DeliveredRate, p.Missing, p.Latency.P99US)
	return p, err
}

func steady(ctx context.Context, e *Env, o Options, r *Result) error {
	lo := LoadOptions{Clients: o.Clients, Rate: o.Rate}
	for _, proto := range o.Protocols {
		p, err := runPhase(ctx, e, proto, proto, o, lo)
		r.Phases = append(r.Phases, p)
		if err != nil {
			return err
		}
	}
	base, err := runPhase(ctx, e, "baseline (direct to broker)", "direct", o, lo)
	r.Phases = append(r.Phases, base)
	for i := range r.Phases[:len(r.Phases)-1] {
		p := &r.Phases[i]
		if base.DeliveredRate > 0 {
			p.extra("delivered_ratio_vs_direct", p.DeliveredRate/base.DeliveredRate)
		}
		if base.Latency.P99US > 0 {
			p.extra("p99_ratio_vs_direct", float64(p.Latency.P99US)/float64(base.Latency.P99US))
		}
	}
	return err
}

func idle(ctx context.Context, e *Env, o Options, r *Result) error {
	if e.pid() == 0 {
		return fmt.Errorf("benchkit: idle measures the agent's RSS: it needs the agent started by the tool or -pid")
	}
	for _, proto := range o.Protocols {
		if proto == "direct" {
			continue
		}
		n := o.IdleClients
		if e.Agent != nil {
			// A fresh agent per protocol: the Go runtime keeps the heap the
			// previous sessions freed, and the next protocol's sessions would
			// move into it without growing RSS (a negative bytes/session).
			e.Agent.Stop()
			if err := e.Agent.Start(); err != nil {
				return err
			}
		}
		e.logf("phase idle %s: %d clients", proto, n)
		before := settledRSS(e.pid())
		pr, err := StartPhase(ctx, e, "idle "+proto, proto, o, LoadOptions{Clients: n, Idle: true})
		if err != nil {
			return err
		}
		ok := pr.Load.WaitConnected(n, 30*time.Second+time.Duration(n)*2*time.Millisecond)
		after := settledRSS(e.pid())
		conns := pr.Load.Connected()
		pr.StopLoad()
		p := pr.Finish(0, 0)
		p.extra("connected", float64(conns))
		p.extra("rss_before", float64(before))
		p.extra("rss_after", float64(after))
		if conns > 0 {
			p.extra("bytes_per_session", float64(after-before)/float64(conns))
		}
		r.Phases = append(r.Phases, p)
		e.logf("  %d connected, %.0f bytes/session", conns, p.Extra["bytes_per_session"])
		if !ok {
			r.Notes = append(r.Notes, fmt.Sprintf("idle %s: only %d of %d clients connected", proto, conns, n))
		}
		if proto == "coap" {
			r.Notes = append(r.Notes, "idle coap: connectionless CoAP keeps no state for a device that sent nothing, so its figure is not a session's cost")
		}
		_ = sleepCtx(ctx, 2*time.Second) // let the agent drop the sessions before the next protocol
	}
	return nil
}

// settledRSS reads RSS twice, 1 s apart, after a GC has had a chance.
func settledRSS(pid int) int64 {
	time.Sleep(time.Second)
	a, _ := ReadProc(pid)
	time.Sleep(time.Second)
	b, _ := ReadProc(pid)
	return max(a.RSS, b.RSS)
}

func outage(ctx context.Context, e *Env, o Options, r *Result) error {
	if e.Mosq == nil {
		return ErrNoMosquitto
	}
	proto := o.Protocols[0]
	e.logf("phase outage: %s, %d clients, broker down %s", proto, o.Clients, o.Outage)
	pr, err := StartPhase(ctx, e, "outage "+proto, proto, o, LoadOptions{Clients: o.Clients, Rate: o.Rate})
	if err != nil {
		return err
	}
	_ = sleepCtx(ctx, o.Warmup+o.Duration/4)
	down := pr.Elapsed()
	e.Mosq.Stop()
	_ = sleepCtx(ctx, o.Outage)
	if err := e.Mosq.Start(); err != nil {
		pr.Finish(0, 0)
		return err
	}
	up := time.Now()
	upAt := pr.Elapsed()
	backlog := pr.Load.AckedKeys.Clone()
	deliveredAtUp := e.Sub.Seen.Clone()
	queued, _ := backlog.Missing(deliveredAtUp, 0)
	// Drain: wait until everything acknowledged before the broker came
	// back arrived, while the load continues.
	drainDone := make(chan time.Duration, 1)
	go func() {
		left := e.Sub.WaitFor(backlog, o.Duration+o.Settle, 0)
		if left == 0 {
			drainDone <- time.Since(up)
		}
		close(drainDone)
	}()
	_ = sleepCtx(ctx, max(o.Duration-o.Duration/4-o.Outage, o.Duration/4))
	p := pr.Finish(o.Warmup, o.Settle)
	drain, drained := <-drainDone
	p.extra("broker_down_at_s", down.Seconds())
	p.extra("broker_up_at_s", upAt.Seconds())
	p.extra("queued_at_broker_up", float64(queued))
	if drained {
		p.extra("drain_s", drain.Seconds())
		if drain > 0 {
			p.extra("drain_per_s", float64(queued)/drain.Seconds())
		}
	} else {
		r.Notes = append(r.Notes, "outage: the backlog did not drain within the phase")
	}
	r.Phases = append(r.Phases, p)
	e.logf("  queued %d at broker up, drained in %.2fs, missing %d, duplicates %d", queued, drain.Seconds(), p.Missing, p.Duplicates)
	if p.QoS > 0 && p.Missing > 0 {
		r.Notes = append(r.Notes, fmt.Sprintf("outage: %d acknowledged messages LOST", p.Missing))
	}
	return nil
}

func backlog(ctx context.Context, e *Env, o Options, r *Result) error {
	if e.Mosq == nil {
		return ErrNoMosquitto
	}
	proto := o.Protocols[0]
	per := (o.Backlog + o.Clients - 1) / o.Clients
	e.logf("phase backlog: %s, %d messages queued with the broker down", proto, per*o.Clients)
	e.Mosq.Stop()
	pr, err := StartPhase(ctx, e, "backlog "+proto, proto, o, LoadOptions{Clients: o.Clients, MaxMessages: per})
	if err != nil {
		return err
	}
	fill := time.Now()
	for pr.Load.Acked.Load() < int64(per*o.Clients) && time.Since(fill) < 10*o.Duration && ctx.Err() == nil {
		time.Sleep(50 * time.Millisecond)
	}
	fillTime := time.Since(fill)
	pr.StopLoad()
	queued := pr.Load.Acked.Load()
	if err := e.Mosq.Start(); err != nil {
		return err
	}
	up := time.Now()
	left := e.Sub.WaitFor(&pr.Load.AckedKeys, 10*o.Duration+o.Settle, 10*time.Second)
	drain := time.Since(up)
	p := pr.Finish(0, 0)
	p.extra("queued", float64(queued))
	p.extra("fill_s", fillTime.Seconds())
	p.extra("drain_s", drain.Seconds())
	p.extra("drain_per_s", float64(queued-left)/drain.Seconds())
	r.Phases = append(r.Phases, p)
	e.logf("  queued %d in %.1fs, drained in %.2fs (%.0f/s), missing %d", queued, fillTime.Seconds(), drain.Seconds(), p.Extra["drain_per_s"], left)

	e.logf("phase backlog baseline: direct publish of %d messages", per*o.Clients)
	pr, err = StartPhase(ctx, e, "direct publish", "direct", o, LoadOptions{Clients: o.Clients, MaxMessages: per})
	if err != nil {
		return err
	}
	start := time.Now()
	for pr.Load.Acked.Load() < int64(per*o.Clients) && time.Since(start) < 10*o.Duration && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
	left = e.Sub.WaitFor(&pr.Load.AckedKeys, o.Settle, 3*time.Second)
	took := time.Since(start)
	d := pr.Finish(0, 0)
	d.extra("direct_per_s", float64(pr.Load.Acked.Load()-left)/took.Seconds())
	d.extra("direct_s", took.Seconds())
	r.Phases = append(r.Phases, d)
	if d.Extra["direct_per_s"] > 0 {
		r.Phases[len(r.Phases)-2].extra("drain_ratio_vs_direct", p.Extra["drain_per_s"]/d.Extra["direct_per_s"])
	}
	e.logf("  direct: %.0f/s", d.Extra["direct_per_s"])
	return nil
}

func ceiling(ctx context.Context, e *Env, o Options, r *Result) error {
	proto := o.Protocols[0]
	rate := o.Rate
	if rate == 0 {
		rate = 10
	}
	so := o
	so.Duration = o.Step
	so.Warmup = min(o.Warmup, o.Step/2)
	so.Settle = 3 * time.Second
	best := 0.0
	for step := 0; step < o.MaxSteps && ctx.Err() == nil; step++ {
		want := rate * float64(o.Clients)
		p, err := runPhase(ctx, e, fmt.Sprintf("%s %.0f/s", proto, want), proto, so, LoadOptions{Clients: o.Clients, Rate: rate})
		p.extra("target_per_s", want)
		r.Phases = append(r.Phases, p)
		if err != nil {
			return err
		}
		if p.DeliveredRate < 0.95*want {
			r.Notes = append(r.Notes, fmt.Sprintf("ceiling: delivered %.0f/s < 95%% of %.0f/s offered at step %d; best sustained %.0f/s", p.DeliveredRate, want, step+1, best))
			return nil
		}
		best = max(best, p.DeliveredRate)
		rate *= o.Factor
	}
	r.Notes = append(r.Notes, fmt.Sprintf("ceiling: not reached within %d steps; best sustained %.0f/s", o.MaxSteps, best))
	return nil
}
