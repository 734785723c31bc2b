package uplink

import (
	"strings"
	"sync"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/edgeway/edgeway/agent/broker"
)

// subscriptions counts local subscribers per mirrored filter. The
// connection's loop compares the set with what it subscribed upstream
// whenever changed fires, so Subscribed and Unsubscribed never wait for
// the network and a quick subscribe/unsubscribe pair costs nothing.
type subscriptions struct {
	mu      sync.Mutex
	refs    map[string]int // local filter (no $share/ part) → subscribers
	changed chan struct{}
}

func (s *subscriptions) init() {
	s.refs = map[string]int{}
	s.changed = make(chan struct{}, 1)
}

func (s *subscriptions) poke() {
	select {
	case s.changed <- struct{}{}:
	default:
	}
}

// snapshot returns the local filters with at least one subscriber.
func (s *subscriptions) snapshot() map[string]bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]bool, len(s.refs))
	for f := range s.refs {
		out[f] = true
	}
	return out
}

// Subscribed implements gateway.SubscriptionObserver: a local client
// subscribed to filter (mounted). If the filter lies inside a downlink
// filter, the uplink subscribes upstream to topic_prefix + filter (a
// shared subscription's inner filter) when it gets its first subscriber.
func (u *Uplink) Subscribed(filter string) {
	f, ok := u.mirrorable(filter)
	if !ok {
		return
	}
	u.subs.mu.Lock()
	u.subs.refs[f]++
	first := u.subs.refs[f] == 1
	u.subs.mu.Unlock()
	if first {
		u.subs.poke()
	}
}

// Unsubscribed implements gateway.SubscriptionObserver. The upstream
// subscription goes when its last local subscriber does.
func (u *Uplink) Unsubscribed(filter string) {
	f, ok := u.mirrorable(filter)
	if !ok {
		return
	}
	u.subs.mu.Lock()
	n, had := u.subs.refs[f]
	switch {
	case !had:
	case n > 1:
		u.subs.refs[f] = n - 1
	default:
		delete(u.subs.refs, f)
	}
	u.subs.mu.Unlock()
	if had && n == 1 {
		u.subs.poke()
	}
}

// FilterChanged is the broker's OnFilter callback: a local filter may have
// gained its first or lost its last subscriber. The broker is asked for the
// truth under the subscriptions lock, so callbacks arriving out of order or
// twice still leave the upstream set equal to the local one.
func (u *Uplink) FilterChanged(filter string) {
	f, ok := u.mirrorable(filter)
	if !ok {
		return
	}
	u.subs.mu.Lock()
	want := u.b.HasSubscribers(filter)
	_, had := u.subs.refs[f]
	switch {
	case want && !had:
		u.subs.refs[f] = 1
	case !want && had:
		delete(u.subs.refs, f)
	}
	u.subs.mu.Unlock()
	if want != had {
		u.subs.poke()
	}
}

func (u *Uplink) mirrorable(filter string) (string, bool) {
	if u.b == nil {
		return "", false
	}
	if _, inner, ok := broker.SplitShared(filter); ok {
		filter = inner
	}
	if broker.ValidTopicFilter(filter) != nil || !u.s.mirrors(filter) {
		return "", false
	}
	return filter, true
}

// deliver brings one cloud PUBLISH into the local broker. It reports
// whether the PUBLISH may be acknowledged: not when the local broker is
// closed, so the cloud keeps it for the next session.
func (u *Uplink) deliver(p *packets.PublishPacket) bool {
	local, ok := strings.CutPrefix(p.TopicName, u.s.prefix)
	if !ok || broker.ValidTopicName(local) != nil {
		u.drop(1)
		return true
	}
	if u.echo.enabled() && u.echo.take(u.echo.key("", p.TopicName, p.Payload), u.mono()) {
		u.echoed.Add(1)
		return true
	}
	m := &broker.Message{Topic: local, Payload: p.Payload, QoS: p.Qos, Retain: p.Retain}
	if _, err := u.b.PublishWith(m, broker.PublishOptions{SkipSink: true}); err != nil {
		if err == broker.ErrClosed {
			return false
		}
		u.drop(1)
		u.log.Debug("downlink message refused by the local broker", "topic", local, "error", err)
		return true
	}
	u.received.Add(1)
	u.met.received.Inc()
	return true
}
