// Package metrics holds edgeway's counters and gauges under EMQX 5's
// metric names (bytes.received, messages.dropped, connections.count, …),
// grouped in Sets — one per gateway, per listener and per client — that a
// Registry lists for the HTTP API and writes out in the Prometheus text
// format.
//
// Metrics belong to the framework: it creates the Sets and hands
// protocols the counters to increment. On a hot path, look a counter up
// once and keep the pointer; an increment is then one atomic add.
package metrics

import (
	"maps"
	"sync"
	"sync/atomic"
)

// EMQX 5 metric names. All are counters except ConnectionsCount, a gauge.
const (
	BytesReceived     = "bytes.received"
	BytesSent         = "bytes.sent"
	MessagesReceived  = "messages.received"
	MessagesSent      = "messages.sent"
	MessagesDropped   = "messages.dropped"
	MessagesDelivered = "messages.delivered"
	MessagesAcked     = "messages.acked"
	PacketsReceived   = "packets.received"
	PacketsSent       = "packets.sent"
	ConnectionsCount  = "connections.count"

	// DeliveryDroppedPrefix starts the names of the per-reason counters
	// of messages dropped on the way to a subscriber; see DeliveryDropped.
	DeliveryDroppedPrefix = "delivery.dropped."
)

// Label names the framework gives its Sets. A Set with a LabelClientID
// label is client-scoped.
const (
	LabelGateway  = "gateway"
	LabelListener = "listener"
	LabelClientID = "clientid"
)

// DeliveryDropped returns the name of the counter of deliveries dropped
// for reason, e.g. "delivery.dropped.queue_full". Reasons are free-form;
// EMQX uses queue_full, no_local, expired, too_large, qos0_msg.
func DeliveryDropped(reason string) string {
	return DeliveryDroppedPrefix + reason
}

// Counter is a monotonically increasing count. The zero value is ready.
type Counter struct{ v atomic.Uint64 }

// Add adds n.
func (c *Counter) Add(n uint64) { c.v.Add(n) }

// Inc adds 1.
func (c *Counter) Inc() { c.v.Add(1) }

// Load returns the current count.
func (c *Counter) Load() uint64 { return c.v.Load() }

// Gauge is a value that goes up and down. The zero value is ready.
type Gauge struct{ v atomic.Int64 }

// Add adds n, which may be negative.
func (g *Gauge) Add(n int64) { g.v.Add(n) }

// Inc adds 1.
func (g *Gauge) Inc() { g.v.Add(1) }

// Dec subtracts 1.
func (g *Gauge) Dec() { g.v.Add(-1) }

// Set replaces the value.
func (g *Gauge) Set(n int64) { g.v.Store(n) }

// Load returns the current value.
func (g *Gauge) Load() int64 { return g.v.Load() }

// Set is a named group of counters and gauges sharing one set of labels:
// one gateway, one listener or one client. Metrics are created on first
// use and never removed; a name is either a counter or a gauge, for the
// life of the Set. It is safe for concurrent use.
type Set struct {
	labels map[string]string

	mu       sync.RWMutex
	counters map[string]*Counter
	gauges   map[string]*Gauge
}

// NewSet returns an empty Set with a copy of labels.
func NewSet(labels map[string]string) *Set {
	return &Set{
		labels:   maps.Clone(labels),
		counters: make(map[string]*Counter),
		gauges:   make(map[string]*Gauge),
	}
}

// Counter returns the counter called name, creating it at zero on first
// use. It panics if name is already a gauge in this Set: that is a bug in
// the caller, not a condition to handle.
func (s *Set) Counter(name string) *Counter {
	s.mu.RLock()
	c := s.counters[name]
	s.mu.RUnlock()
	if c != nil {
		return c
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c = s.counters[name]; c == nil {
		if _, ok := s.gauges[name]; ok {
			panic("metrics: " + name + " is a gauge, not a counter")
		}
		c = new(Counter)
		s.counters[name] = c
	}
	return c
}

// Gauge returns the gauge called name, creating it at zero on first use.
// It panics if name is already a counter in this Set.
func (s *Set) Gauge(name string) *Gauge {
	s.mu.RLock()
	g := s.gauges[name]
	s.mu.RUnlock()
	if g != nil {
		return g
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if g = s.gauges[name]; g == nil {
		if _, ok := s.counters[name]; ok {
			panic("metrics: " + name + " is a counter, not a gauge")
		}
		g = new(Gauge)
		s.gauges[name] = g
	}
	return g
}

// Snapshot returns the current value of every counter and gauge by name.
// Each value is read atomically, the whole is not: a snapshot taken while
// counters move may pair a newer bytes.received with an older
// packets.received.
func (s *Set) Snapshot() map[string]float64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	m := make(map[string]float64, len(s.counters)+len(s.gauges))
	for name, c := range s.counters {
		m[name] = float64(c.Load())
	}
	for name, g := range s.gauges {
		m[name] = float64(g.Load())
	}
	return m
}

// Labels returns a copy of the Set's labels.
func (s *Set) Labels() map[string]string {
	return maps.Clone(s.labels)
}

// clientScoped reports whether the Set belongs to one client.
func (s *Set) clientScoped() bool {
	_, ok := s.labels[LabelClientID]
	return ok
}
