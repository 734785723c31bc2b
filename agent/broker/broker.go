// Package broker is edgeway's in-process publish/subscribe hub. Every
// gateway client (MQTT-SN, CoAP, STOMP … devices) and the cloud uplink are
// clients of it, and it gives them MQTT semantics: topic filters with '+'
// and '#', QoS 0/1/2 with a per-session inflight window, bounded queues,
// persistent sessions with takeover and expiry, retained messages and
// $share/{group}/{filter} shared subscriptions.
//
// # Delivery and ordering
//
// A protocol channel opens a Session with a Deliverer. Deliveries are made
// without any broker or session lock held, by whichever goroutine finds the
// session idle: a publisher, an Ack, a Subscribe (retained messages) or
// OpenSession. That goroutine drains the session's FIFO queue while others
// only append to it, so there is no goroutine per session or per message
// and messages from one publisher reach each subscriber in publish order.
// The price is that a slow Deliverer slows the publishers that happen to
// drain its session; Deliver must hand the delivery off quickly.
//
// Deliver may call Ack, Subscribe, Publish and Detach on its own session,
// synchronously or from another goroutine: they only queue work that the
// draining goroutine picks up before it returns.
//
// # What a session holds
//
// A session's queue holds messages routed to it that were not yet handed to
// Deliver: because it is detached, held (see Session.Hold), or its inflight
// window is full. The queue is strict FIFO, so a QoS 0 message behind a
// QoS 1 message that waits for a window slot waits too. While detached,
// QoS 0 messages are queued like the others (EMQX's mqueue_store_qos0).
// Inflight holds QoS 1/2 deliveries awaiting Ack; they are redelivered with
// Dup set, in order, before anything else when a client reattaches.
//
// Every message dropped anywhere is passed to Options.OnDrop with a reason
// (the Drop… constants) and counted in Stats.
package broker

import (
	"errors"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for Options and SessionOptions fields left zero.
const (
	DefaultMaxQueueLen = 1000
	DefaultMaxInflight = 32
)

// Reasons passed to Options.OnDrop.
const (
	// DropQueueFull: the session queue was at its bound; which message
	// goes depends on the DropPolicy.
	DropQueueFull = "queue_full"
	// DropNoSubscribers: a non-retained publish matched no subscription.
	// It is reported with an empty session id and counted in
	// Stats.NoSubscribers, not in Stats.Dropped.
	DropNoSubscribers = "no_subscribers"
	// DropExpired: the session expired with messages still queued or
	// unacknowledged.
	DropExpired = "expired"
	// DropSessionClosed: the session was closed with messages pending.
	DropSessionClosed = "session_closed"
	// DropSessionDiscarded: a clean start discarded the old session.
	DropSessionDiscarded = "session_discarded"
	// DropBrokerClosed: the broker shut down with messages pending.
	DropBrokerClosed = "broker_closed"
)

// Reasons passed to Kicker.Kick.
const (
	KickTakeover     = "takeover"       // another client opened the same session
	KickDetached     = "detached"       // Detach through an administrative handle
	KickClosed       = "session closed" // Close through an administrative handle
	KickBrokerClosed = "broker closed"
)

// Sentinel errors that callers branch on.
var (
	ErrClosed         = errors.New("broker: closed")
	ErrSessionClosed  = errors.New("broker: session closed")
	ErrTakenOver      = errors.New("broker: session taken over by another client")
	ErrNoSubscription = errors.New("broker: no such subscription")
	ErrInvalidQoS     = errors.New("broker: invalid qos")
	errNilMessage     = errors.New("broker: nil message")
)

// Message is one publish travelling through the broker. Publish fills in
// ID and Time if they are zero; after that the message is immutable and
// shared by every session it is routed to, so nobody may modify it.
type Message struct {
	ID       uint64            // unique per broker process; Publish assigns it if 0
	Topic    string            // a valid topic name
	Payload  []byte            // may be empty
	QoS      byte              // 0, 1 or 2
	Retain   bool              // store as the topic's retained message (empty payload clears)
	Gateway  string            // origin gateway kind ("mqttsn"; "" for internal or uplink)
	ClientID string            // origin client id
	Time     time.Time         // receive time; Publish sets it if zero
	Headers  map[string]string // optional protocol headers (e.g. STOMP custom headers); may be nil
}

// Delivery is one message handed to one session.
type Delivery struct {
	// ID identifies a QoS 1/2 delivery within its session; pass it to
	// Session.Ack. It is 0 for QoS 0 deliveries, which need no Ack.
	ID  uint64
	Msg *Message
	// QoS is min(message QoS, subscription QoS); with overlapping
	// subscriptions, the highest of those.
	QoS byte
	// Filter is the subscription filter that matched (the one granting
	// QoS). For a shared subscription it is the inner filter, without
	// the $share/{group}/ prefix, and Group names the group.
	Filter string
	Group  string
	// Dup is set on redelivery of an unacknowledged delivery after the
	// session was reattached or taken over.
	Dup bool
	// Retained is set when the message is sent because a new
	// subscription matched a retained message. Msg.Retain is the
	// publisher's flag; Retained is the one MQTT says to send.
	Retained bool
}

// Deliverer receives the deliveries of one session: it is the protocol
// channel's side of the session. Deliver is called from whatever goroutine
// drains the session (often a publisher's), one call at a time per session
// and in order, never with a broker lock held. It must not block for long:
// queue the delivery for the channel's writer and return. It may call Ack,
// Subscribe, Publish or Detach, synchronously or later from any goroutine.
//
// The Delivery is passed by value; Msg is shared and must not be modified.
type Deliverer interface {
	Deliver(d Delivery)
}

// Kicker is optionally implemented by a Deliverer that wants to know when
// the broker detaches it rather than the client leaving on its own: a
// takeover by another connection with the same session id, an
// administrative Detach or Close, or broker shutdown. Kick is called once,
// without locks held; the channel should close its connection. Calls the
// kicked channel makes afterwards through its Session are ignored.
type Kicker interface {
	Kick(reason string)
}

// Sink sees every message before it is routed; the uplink and the store
// implement it. If Accept returns an error, Publish returns that same error
// and routes nothing, so a device can be told to retry (MQTT-SN
// congestion). Accept runs in the publisher's goroutine with no lock held
// and must not keep a reference to the message it cannot honour. Messages
// published with PublishOptions.SkipSink (for instance those coming down
// from the cloud through the uplink) bypass it.
type Sink interface {
	Accept(m *Message) error
}

// DropPolicy says which message goes when a session queue is full.
type DropPolicy int

const (
	// DropOldest drops the oldest queued message to make room.
	DropOldest DropPolicy = iota
	// DropNew drops the message being queued.
	DropNew
)

// String returns the policy's config spelling, "drop_oldest" or "drop_new".
func (p DropPolicy) String() string {
	switch p {
	case DropOldest:
		return "drop_oldest"
	case DropNew:
		return "drop_new"
	}
	return "DropPolicy(" + strconv.Itoa(int(p)) + ")"
}

// Clock is the broker's source of time, replaced in tests.
type Clock interface {
	Now() time.Time
	// AfterFunc calls f in its own goroutine after d, unless stopped. It
	// must not call f synchronously.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	Stop() bool
}

type realClock struct{}

func (realClock) Now() time.Time                            { return time.Now() }
func (realClock) AfterFunc(d time.Duration, f func()) Timer { return time.AfterFunc(d, f) }

// Options configures a Broker. Zero values take the defaults.
type Options struct {
	MaxQueueLen int        // per-session queue bound; default DefaultMaxQueueLen
	MaxInflight int        // per-session QoS 1/2 deliveries awaiting Ack; default DefaultMaxInflight
	DropPolicy  DropPolicy // default DropOldest
	// OnDrop is told of every dropped message, with the session id ("" if
	// none) and one of the Drop… reasons. It is called without locks held,
	// in whatever goroutine caused the drop, and must be quick (count it).
	OnDrop func(sessionID string, m *Message, reason string)
	// OnFilter is told, after the fact and without locks held, that filter
	// (without any $share/{group}/ part) may have gained its first or
	// lost its last subscriber. Calls can arrive in any order and more than
	// once: the callee asks HasSubscribers for the truth (the uplink uses
	// this to mirror local subscriptions upstream).
	OnFilter func(filter string)
	Clock    Clock // default: the system clock
}

// SessionOptions configures one session; zero values take the broker's.
type SessionOptions struct {
	MaxQueueLen int
	MaxInflight int
	// Expiry is how long a detached session is kept. 0 removes it on
	// Detach, as with MQTT's clean session; a negative value keeps it
	// until Close or a clean start.
	Expiry time.Duration
	// Held opens the session without delivering anything until
	// Session.Resume, so the channel can send its CONNACK first.
	Held bool
}

// PublishOptions modifies one publish.
type PublishOptions struct {
	// SkipSink routes the message without offering it to the Sink, for
	// messages that came from the sink's side (cloud downlink) or are
	// being replayed from the store.
	SkipSink bool
}

// Stats is a snapshot of broker counters.
type Stats struct {
	Sessions      int    // open sessions, attached or not
	Attached      int    // sessions with a Deliverer
	Subscriptions int    // subscriptions, each shared group member counted
	Retained      int    // retained messages stored
	Published     uint64 // messages accepted by Publish
	Delivered     uint64 // first deliveries (redeliveries not counted)
	Dropped       uint64 // messages dropped from sessions, all reasons
	NoSubscribers uint64 // non-retained publishes that matched nothing
}

// Broker routes messages between sessions. Create it with New; all methods
// are safe for concurrent use.
type Broker struct {
	opts  Options
	clock Clock

	// mu guards the trie, the session table and closing. Lock order:
	// mu before any core.mu. Neither is held while calling out.
	mu       sync.RWMutex
	trie     trie
	sessions map[string]*core

	rmu      sync.RWMutex
	retained map[string]*Message

	sink   atomic.Pointer[sinkBox]
	closed atomic.Bool
	timers sync.WaitGroup // expiry callbacks in progress

	seq           atomic.Uint64
	published     atomic.Uint64
	delivered     atomic.Uint64
	dropped       atomic.Uint64
	noSubscribers atomic.Uint64
}

type sinkBox struct{ s Sink }

// New returns a broker with opts. It starts no goroutine; session expiry
// timers are started as sessions detach and stopped by Close.
func New(opts Options) *Broker {
	if opts.MaxQueueLen <= 0 {
		opts.MaxQueueLen = DefaultMaxQueueLen
	}
	if opts.MaxInflight <= 0 {
		opts.MaxInflight = DefaultMaxInflight
	}
	if opts.Clock == nil {
		opts.Clock = realClock{}
	}
	return &Broker{
		opts:     opts,
		clock:    opts.Clock,
		sessions: make(map[string]*core),
		retained: make(map[string]*Message),
	}
}

// SetSink installs the sink that sees every publish; nil removes it. It
// may be called at any time.
func (b *Broker) SetSink(s Sink) {
	if s == nil {
		b.sink.Store(nil)
		return
	}
	b.sink.Store(&sinkBox{s})
}

// Publish routes m to every matching session and returns how many
// sessions it was routed to (a shared group counts once). See PublishWith.
func (b *Broker) Publish(m *Message) (matched int, err error) {
	return b.PublishWith(m, PublishOptions{})
}

// scratch is per-publish working memory, pooled so routing allocates
// nothing in the steady state.
type scratch struct {
	hits []hit
	idx  map[*core]int
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// PublishWith validates m, assigns its ID and Time if zero, offers it to
// the sink (unless o.SkipSink), stores or clears it as retained, and routes
// it. A sink error is returned unchanged and the message goes nowhere.
// Each matching session receives the message once, at the highest QoS its
// matching subscriptions grant; each matching shared group gives it to one
// member. A session's full queue drops per the DropPolicy and is reported
// through OnDrop, not as an error.
func (b *Broker) PublishWith(m *Message, o PublishOptions) (matched int, err error) {
	if m == nil {
		return 0, errNilMessage
	}
	if err := ValidTopicName(m.Topic); err != nil {
		return 0, err
	}
	if m.QoS > 2 {
		return 0, ErrInvalidQoS
	}
	if b.closed.Load() {
		return 0, ErrClosed
	}
	if m.ID == 0 {
		m.ID = b.seq.Add(1)
	}
	if m.Time.IsZero() {
		m.Time = b.clock.Now()
	}
	if !o.SkipSink {
		if sb := b.sink.Load(); sb != nil {
			if err := sb.s.Accept(m); err != nil {
				return 0, err
			}
		}
	}
	b.published.Add(1)
	if m.Retain {
		// Stored before routing: a concurrent Subscribe either sees the
		// subscription matched here or finds the retained message.
		b.rmu.Lock()
		if len(m.Payload) == 0 {
			delete(b.retained, m.Topic)
		} else {
			b.retained[m.Topic] = m
		}
		b.rmu.Unlock()
	}

	sc := scratchPool.Get().(*scratch)
	b.mu.RLock()
	sc.hits = b.trie.match(m.Topic, sc.hits[:0])
	b.mu.RUnlock()
	for _, h := range sc.dedup() {
		qos := min(m.QoS, h.qos)
		if h.c.put(queued{msg: m, filter: h.filter, group: h.group, qos: qos}) {
			matched++
		}
	}
	clear(sc.hits) // drop references to sessions and messages before pooling
	sc.hits = sc.hits[:0]
	scratchPool.Put(sc)

	if matched == 0 && !m.Retain {
		b.noSubscribers.Add(1)
		if b.opts.OnDrop != nil {
			b.opts.OnDrop("", m, DropNoSubscribers)
		}
	}
	return matched, nil
}

// dedup merges the non-shared hits of one session into one, keeping the
// highest QoS and the filter that granted it. Shared hits stay separate:
// MQTT 5 §4.8.2 gives a session a copy per shared subscription.
func (sc *scratch) dedup() []hit {
	hits := sc.hits
	if len(hits) < 2 {
		return hits
	}
	out := hits[:0] // compacts in place; h is a copy, so overwriting is safe
	if len(hits) <= 32 {
		for _, h := range hits {
			if h.group == "" {
				j := slices.IndexFunc(out, func(x hit) bool { return x.c == h.c && x.group == "" })
				if j >= 0 {
					if h.qos > out[j].qos {
						out[j].qos, out[j].filter = h.qos, h.filter
					}
					continue
				}
			}
			out = append(out, h)
		}
		return out
	}
	if sc.idx == nil {
		sc.idx = make(map[*core]int)
	}
	clear(sc.idx)
	for _, h := range hits {
		if h.group == "" {
			if j, ok := sc.idx[h.c]; ok {
				if h.qos > out[j].qos {
					out[j].qos, out[j].filter = h.qos, h.filter
				}
				continue
			}
			sc.idx[h.c] = len(out)
		}
		out = append(out, h)
	}
	clear(sc.idx)
	return out
}

// drop reports one dropped message.
func (b *Broker) drop(sessionID string, m *Message, reason string) {
	b.dropped.Add(1)
	if b.opts.OnDrop != nil {
		b.opts.OnDrop(sessionID, m, reason)
	}
}

// retainedFor returns the retained messages matching filter, oldest
// publish first. It scans them all: an edge gateway holds few, and
// subscribes are rare next to publishes.
func (b *Broker) retainedFor(filter string) []*Message {
	var out []*Message
	b.rmu.RLock()
	for topic, m := range b.retained {
		if Match(filter, topic) {
			out = append(out, m)
		}
	}
	b.rmu.RUnlock()
	slices.SortFunc(out, func(x, y *Message) int {
		switch {
		case x.ID < y.ID:
			return -1
		case x.ID > y.ID:
			return 1
		}
		return 0
	})
	return out
}

// HasSubscribers reports whether any session, plain or shared, is
// subscribed to exactly this filter (no $share/ part).
func (b *Broker) HasSubscribers(filter string) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	n := b.trie.find(filter)
	return n != nil && n.n > 0
}

// Filters lists every filter with at least one subscriber (without
// $share/ parts), sorted.
func (b *Broker) Filters() []string {
	b.mu.RLock()
	defer b.mu.RUnlock()
	var out []string
	var walk func(n *node)
	walk = func(n *node) {
		if n.n > 0 {
			out = append(out, n.filter)
		}
		for _, c := range n.children {
			walk(c)
		}
		if n.plus != nil {
			walk(n.plus)
		}
		if n.hash != nil {
			walk(n.hash)
		}
	}
	walk(&b.trie.root)
	sort.Strings(out)
	return out
}

func (b *Broker) filterChanged(filter string) {
	if b.opts.OnFilter != nil {
		b.opts.OnFilter(filter)
	}
}

// Retained returns the retained message for topic, if any.
func (b *Broker) Retained(topic string) (*Message, bool) {
	b.rmu.RLock()
	m, ok := b.retained[topic]
	b.rmu.RUnlock()
	return m, ok
}

// Session returns an administrative handle to the session id. Unlike the
// handle OpenSession returns, it stays valid across takeovers, and its
// Detach and Close kick the attached client.
func (b *Broker) Session(id string) (*Session, bool) {
	b.mu.RLock()
	c, ok := b.sessions[id]
	b.mu.RUnlock()
	if !ok {
		return nil, false
	}
	return &Session{c: c}, true
}

// OpenSession creates or resumes the session with this id (the caller's
// key, e.g. "mqttsn/client1") and attaches d to it.
//
// With cleanStart an existing session is discarded, its pending messages
// dropped (DropSessionDiscarded), and present is false. Otherwise an
// existing session is resumed with its subscriptions, queue and inflight
// (present is true), and opts replace its previous options.
//
// If another Deliverer is attached, it is detached first and told through
// Kicker (KickTakeover); the old handle then becomes inert. Unacknowledged
// deliveries are redelivered to d with Dup set, in order, then the queue
// follows; unless opts.Held, this starts before OpenSession returns.
//
// d must not be nil. After Close the broker returns a closed session whose
// methods fail with ErrSessionClosed.
func (b *Broker) OpenSession(id string, d Deliverer, cleanStart bool, opts SessionOptions) (s *Session, present bool) {
	if d == nil {
		panic("broker: OpenSession with a nil Deliverer")
	}
	var after aftermath
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return &Session{c: &core{b: b, id: id, closed: true}}, false
	}
	c := b.sessions[id]
	if c != nil && cleanStart {
		c.mu.Lock()
		b.removeLocked(c, &after, DropSessionDiscarded, true)
		if after.kick == d {
			after.kick = nil
		}
		after.kickReason = KickTakeover
		c.mu.Unlock()
		c = nil
	}
	present = c != nil
	if c == nil {
		c = &core{b: b, id: id, subs: make(map[string]byte)}
		b.sessions[id] = c
	}

	c.mu.Lock()
	if c.d != nil && c.d != d {
		after.kick, after.kickReason = c.d, KickTakeover
	}
	c.gen++
	c.d = d
	c.attached.Store(true)
	c.held = opts.Held
	c.resend = 0
	c.expGen++
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	c.maxQueue = cmp0(opts.MaxQueueLen, b.opts.MaxQueueLen)
	c.maxInflight = cmp0(opts.MaxInflight, b.opts.MaxInflight)
	c.expiry = opts.Expiry
	// A resumed session may come back with a smaller queue bound.
	var trimmed []*Message
	for c.q.n > c.maxQueue {
		if b.opts.DropPolicy == DropNew {
			trimmed = append(trimmed, c.q.popBack().msg)
		} else {
			trimmed = append(trimmed, c.q.pop().msg)
		}
		c.dropped++
	}
	start := c.startLocked()
	s = &Session{c: c, gen: c.gen}
	c.mu.Unlock()
	b.mu.Unlock()

	after.run(b)
	for _, m := range trimmed {
		b.drop(id, m, DropQueueFull)
	}
	if start {
		c.drain()
	}
	return s, present
}

func cmp0(v, def int) int {
	if v <= 0 {
		return def
	}
	return v
}

// Stats returns a snapshot of the broker's counters.
func (b *Broker) Stats() Stats {
	var st Stats
	b.mu.RLock()
	st.Sessions = len(b.sessions)
	for _, c := range b.sessions {
		if c.attached.Load() {
			st.Attached++
		}
	}
	st.Subscriptions = b.trie.count
	b.mu.RUnlock()
	b.rmu.RLock()
	st.Retained = len(b.retained)
	b.rmu.RUnlock()
	st.Published = b.published.Load()
	st.Delivered = b.delivered.Load()
	st.Dropped = b.dropped.Load()
	st.NoSubscribers = b.noSubscribers.Load()
	return st
}

// Close shuts the broker down: later publishes fail with ErrClosed, every
// session is closed (attached clients are kicked with KickBrokerClosed and
// pending messages reported as DropBrokerClosed), retained messages are
// forgotten and expiry timers stopped. It waits for expiry callbacks
// already running. Close is idempotent.
func (b *Broker) Close() {
	var afters []aftermath
	b.mu.Lock()
	if b.closed.Swap(true) {
		b.mu.Unlock()
		b.timers.Wait()
		return
	}
	for _, c := range b.sessions {
		var a aftermath
		c.mu.Lock()
		b.removeLocked(c, &a, DropBrokerClosed, false)
		c.mu.Unlock()
		if a.kick != nil {
			a.kickReason = KickBrokerClosed
		}
		afters = append(afters, a)
	}
	b.mu.Unlock()
	b.rmu.Lock()
	clear(b.retained)
	b.rmu.Unlock()
	for i := range afters {
		afters[i].run(b)
	}
	b.timers.Wait()
}

// expire is the expiry timer's callback for c's detachment number eg.
func (b *Broker) expire(c *core, eg uint64) {
	var after aftermath
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		return
	}
	// Registered under mu, which Close holds while setting closed, so
	// Close's Wait sees every callback that got this far.
	b.timers.Add(1)
	defer b.timers.Done()
	c.mu.Lock()
	if c.closed || c.d != nil || c.expGen != eg {
		c.mu.Unlock()
		b.mu.Unlock()
		return
	}
	b.removeLocked(c, &after, DropExpired, true)
	c.mu.Unlock()
	b.mu.Unlock()
	after.run(b)
}

// aftermath is what ending an attachment or a session leaves to do once
// the locks are released: calls out of the broker never happen under them.
type aftermath struct {
	kick       Deliverer
	kickReason string
	session    string
	reason     string
	drops      []*Message
	moves      []move
	filters    []string
}

// move hands a shared-subscription message to another group member.
type move struct {
	to *core
	it queued
}

func (a *aftermath) run(b *Broker) {
	if a.kick != nil {
		if k, ok := a.kick.(Kicker); ok {
			k.Kick(a.kickReason)
		}
	}
	for _, m := range a.drops {
		b.drop(a.session, m, a.reason)
	}
	for _, mv := range a.moves {
		mv.to.put(mv.it)
	}
	for _, f := range a.filters {
		b.filterChanged(f)
	}
}

// removeLocked ends session c: out of the table and the trie, detached,
// pending messages either moved to another member of their shared group
// (if redispatch) or dropped with reason. b.mu and c.mu must be held.
func (b *Broker) removeLocked(c *core, a *aftermath, reason string, redispatch bool) {
	if b.sessions[c.id] == c {
		delete(b.sessions, c.id)
	}
	for f := range c.subs {
		group, inner, shared := SplitShared(f)
		if !shared {
			inner = f
		}
		if _, last := b.trie.remove(inner, group, c); last {
			a.filters = append(a.filters, inner)
		}
	}
	c.subs = nil
	c.closed = true
	if c.d != nil {
		a.kick = c.d
		c.d = nil
		c.attached.Store(false)
	}
	if c.timer != nil {
		c.timer.Stop()
		c.timer = nil
	}
	a.session, a.reason = c.id, reason
	take := func(it queued) {
		if it.group != "" && redispatch {
			if g := b.trie.group(it.filter, it.group); g != nil {
				if s, ok := g.pick(c, true); ok {
					a.moves = append(a.moves, move{to: s.c, it: reshare(it, s.qos)})
					return
				}
			}
		}
		a.drops = append(a.drops, it.msg)
		c.dropped++
	}
	for _, d := range c.inflight {
		take(queued{msg: d.Msg, filter: d.Filter, group: d.Group, qos: d.QoS})
	}
	for c.q.n > 0 {
		take(c.q.pop())
	}
	c.inflight = nil
	c.resend = 0
	c.q = ring{}
}

// reshare is it as it goes to another group member subscribed at qos.
func reshare(it queued, qos byte) queued {
	it.qos = min(it.msg.QoS, qos)
	return it
}
