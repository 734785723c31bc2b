package broker

import (
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// recorder is a Deliverer that keeps what it is given. With autoAck it
// acknowledges QoS 1/2 deliveries from inside Deliver, the synchronous
// call-back the broker must tolerate.
type recorder struct {
	mu      sync.Mutex
	got     []Delivery
	kicks   []string
	s       *Session
	autoAck bool
	yield   bool // widen race windows: let other goroutines run first
}

func (r *recorder) Deliver(d Delivery) {
	if r.yield {
		runtime.Gosched()
	}
	r.mu.Lock()
	r.got = append(r.got, d)
	s, ack := r.s, r.autoAck
	r.mu.Unlock()
	if ack && d.ID != 0 {
		s.Ack(d.ID)
	}
}

func (r *recorder) Kick(reason string) {
	r.mu.Lock()
	r.kicks = append(r.kicks, reason)
	r.mu.Unlock()
}

// take returns and forgets what arrived so far.
func (r *recorder) take() []Delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	got := r.got
	r.got = nil
	return got
}

func (r *recorder) kicked() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.kicks)
}

// open opens a session for a fresh recorder, wiring autoAck.
func open(t *testing.T, b *Broker, id string, autoAck bool, opts SessionOptions) (*Session, *recorder) {
	t.Helper()
	r := &recorder{autoAck: autoAck}
	r.mu.Lock() // nothing may be delivered before r.s is set
	s, _ := b.OpenSession(id, r, false, withHeld(opts))
	r.s = s
	r.mu.Unlock()
	if !opts.Held {
		s.Resume()
	}
	return s, r
}

func withHeld(o SessionOptions) SessionOptions {
	o.Held = true
	return o
}

func subscribe(t *testing.T, s *Session, filter string, qos byte) {
	t.Helper()
	if _, err := s.Subscribe(filter, qos); err != nil {
		t.Fatalf("Subscribe(%q, %d): %v", filter, qos, err)
	}
}

func publish(t *testing.T, b *Broker, topic string, qos byte, payload string) int {
	t.Helper()
	n, err := b.Publish(&Message{Topic: topic, QoS: qos, Payload: []byte(payload)})
	if err != nil {
		t.Fatalf("Publish(%q): %v", topic, err)
	}
	return n
}

func payloads(ds []Delivery) []string {
	out := make([]string, len(ds))
	for i, d := range ds {
		out[i] = string(d.Msg.Payload)
	}
	return out
}

func wantPayloads(t *testing.T, what string, ds []Delivery, want ...string) {
	t.Helper()
	got := payloads(ds)
	if want == nil {
		want = []string{}
	}
	if !slices.Equal(got, want) {
		t.Fatalf("%s: got %q, want %q", what, got, want)
	}
}

// dropLog records OnDrop calls.
type dropLog struct {
	mu    sync.Mutex
	drops []string // "session payload reason"
}

func (l *dropLog) onDrop(session string, m *Message, reason string) {
	l.mu.Lock()
	l.drops = append(l.drops, session+" "+string(m.Payload)+" "+reason)
	l.mu.Unlock()
}

func (l *dropLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.drops
	l.drops = nil
	return d
}

// fakeClock fires timers only when the test advances it.
type fakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

type fakeTimer struct {
	c       *fakeClock
	at      time.Time
	f       func()
	stopped bool
	fired   bool
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, at: c.now.Add(d), f: f}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	was := !t.stopped && !t.fired
	t.stopped = true
	return was
}

// Advance moves time on and runs the timers that came due, in the
// caller's goroutine.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var due []*fakeTimer
	for _, t := range c.timers {
		if !t.stopped && !t.fired && !t.at.After(c.now) {
			t.fired = true
			due = append(due, t)
		}
	}
	c.mu.Unlock()
	for _, t := range due {
		t.f()
	}
}

// pending counts timers neither fired nor stopped.
func (c *fakeClock) pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for _, t := range c.timers {
		if !t.stopped && !t.fired {
			n++
		}
	}
	return n
}
