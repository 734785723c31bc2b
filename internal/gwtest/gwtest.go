// Package gwtest holds test helpers shared by the gateway packages: the
// cloud application's side of a test as a session on the local broker,
// and waiting for a condition.
package gwtest

import (
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
)

// Wait bounds every wait in these helpers.
const Wait = 5 * time.Second

// Observer is a session on the local broker standing for the cloud
// application: it acknowledges QoS 1/2 deliveries and keeps them in order.
type Observer struct {
	s  *broker.Session
	ch chan broker.Delivery
}

// Deliver implements broker.Deliverer.
func (o *Observer) Deliver(d broker.Delivery) {
	if d.ID != 0 {
		o.s.Ack(d.ID)
	}
	o.ch <- d
}

var seq atomic.Int64

// Observe subscribes a new observer to filter on b, closed at cleanup.
func Observe(tb testing.TB, b *broker.Broker, filter string) *Observer {
	tb.Helper()
	o := &Observer{ch: make(chan broker.Delivery, 1<<16)}
	id := fmt.Sprintf("test/observer-%d", seq.Add(1))
	o.s, _ = b.OpenSession(id, o, true, broker.SessionOptions{Held: true, MaxQueueLen: 1 << 20})
	if _, err := o.s.Subscribe(filter, 1); err != nil {
		tb.Fatalf("observer subscribe: %v", err)
	}
	o.s.Resume()
	tb.Cleanup(o.s.Close)
	return o
}

// Next returns the next delivery, failing the test after Wait.
func (o *Observer) Next(tb testing.TB) broker.Delivery {
	tb.Helper()
	select {
	case d := <-o.ch:
		return d
	case <-time.After(Wait):
		tb.Fatal("observer: no message")
	}
	return broker.Delivery{}
}

// Chan exposes the deliveries for tests that select on them.
func (o *Observer) Chan() <-chan broker.Delivery { return o.ch }

// Eventually polls cond until it holds, failing the test after Wait.
func Eventually(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(Wait)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
