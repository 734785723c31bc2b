package broker

import (
	"cmp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Session is a handle to one broker session. OpenSession returns a handle
// bound to that attachment: once another client takes the session over,
// the old handle's Detach, Close, Ack, Hold and Resume do nothing and its
// Subscribe and Unsubscribe fail with ErrTakenOver, so a kicked channel
// cleaning up cannot hurt its successor. Broker.Session returns an
// administrative handle that always acts on the current attachment.
type Session struct {
	c   *core
	gen uint64 // attachment the handle belongs to; 0 for administrative handles
}

// SessionStats is a snapshot of one session.
type SessionStats struct {
	Queued        int    // messages waiting to be delivered
	Inflight      int    // QoS 1/2 deliveries awaiting Ack
	Subscriptions int    // filters, shared ones included
	Dropped       uint64 // messages dropped from this session, all reasons
	Delivered     uint64 // first deliveries
	Redelivered   uint64 // deliveries repeated with Dup after reattach
	Attached      bool   // a Deliverer is attached
}

// core is the session state shared by all handles.
type core struct {
	b        *Broker
	id       string
	attached atomic.Bool // mirrors d != nil for lock-free shared-group picks

	mu          sync.Mutex
	d           Deliverer // nil while detached
	gen         uint64    // bumped on every attach
	held        bool
	draining    bool // some goroutine is in drain
	closed      bool
	q           ring
	inflight    []Delivery // sorted by ID
	resend      int        // inflight[resend:] must be redelivered (after reattach)
	nextID      uint64
	subs        map[string]byte
	maxQueue    int
	maxInflight int
	expiry      time.Duration
	timer       Timer
	expGen      uint64 // bumped on every attach, so a stale expiry timer is ignored

	dropped, delivered, redelivered uint64
}

// queued is a message routed to a session but not yet delivered.
type queued struct {
	msg      *Message
	filter   string
	group    string
	qos      byte
	retained bool
}

// ID returns the session id given to OpenSession.
func (s *Session) ID() string { return s.c.id }

// staleLocked reports whether the handle belongs to an earlier attachment.
func (s *Session) staleLocked() bool { return s.gen != 0 && s.gen != s.c.gen }

func (s *Session) checkLocked() error {
	switch {
	case s.c.closed:
		return ErrSessionClosed
	case s.staleLocked():
		return ErrTakenOver
	}
	return nil
}

// Subscribe adds filter at qos (0–2), or changes the QoS of an existing
// subscription to it. A $share/{group}/{filter} filter joins that group.
//
// Retained messages matching a non-shared filter are queued to the session
// (with Delivery.Retained set, at min(message QoS, qos)) and delivered
// through the Deliverer like any other message, possibly before Subscribe
// returns; the count is returned. A channel that must send its SUBACK
// first calls Hold before Subscribe and Resume after the SUBACK. Shared
// subscriptions get no retained messages, as in MQTT 5. A retained message
// published while Subscribe runs may arrive twice (live and retained),
// never not at all.
func (s *Session) Subscribe(filter string, qos byte) (retained int, err error) {
	if err := ValidTopicFilter(filter); err != nil {
		return 0, err
	}
	if qos > 2 {
		return 0, ErrInvalidQoS
	}
	// The trie keeps the filter; don't let it pin a caller's packet buffer.
	filter = strings.Clone(filter)
	group, inner, shared := SplitShared(filter)
	if !shared {
		inner = filter
	}
	c, b := s.c, s.c.b
	b.mu.Lock()
	c.mu.Lock()
	if err := s.checkLocked(); err != nil {
		c.mu.Unlock()
		b.mu.Unlock()
		return 0, err
	}
	_, first := b.trie.insert(inner, group, c, qos)
	c.subs[filter] = qos
	c.mu.Unlock()
	b.mu.Unlock()
	if first {
		b.filterChanged(inner)
	}
	if shared {
		return 0, nil
	}
	msgs := b.retainedFor(inner)
	if len(msgs) == 0 {
		return 0, nil
	}
	return c.putRetained(msgs, inner, qos), nil
}

// Unsubscribe removes filter, exactly as it was subscribed. It returns
// ErrNoSubscription if the session has no such subscription. Messages
// already queued for the filter are still delivered.
func (s *Session) Unsubscribe(filter string) error {
	if err := ValidTopicFilter(filter); err != nil {
		return err
	}
	group, inner, shared := SplitShared(filter)
	if !shared {
		inner = filter
	}
	c, b := s.c, s.c.b
	removed, err := func() (bool, error) {
		b.mu.Lock()
		defer b.mu.Unlock()
		c.mu.Lock()
		defer c.mu.Unlock()
		if err := s.checkLocked(); err != nil {
			return false, err
		}
		if _, ok := c.subs[filter]; !ok {
			return false, ErrNoSubscription
		}
		delete(c.subs, filter)
		_, last := b.trie.remove(inner, group, c)
		return last, nil
	}()
	if removed {
		b.filterChanged(inner)
	}
	return err
}

// Subscriptions returns a copy of the session's filters and their QoS,
// shared ones with their $share/{group}/ prefix.
func (s *Session) Subscriptions() map[string]byte {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]byte, len(c.subs))
	for f, q := range c.subs {
		out[f] = q
	}
	return out
}

// Ack completes the QoS 1/2 delivery deliveryID (PUBACK for QoS 1, PUBCOMP
// for QoS 2), freeing its inflight slot so the next queued message can go.
// Unknown or repeated ids are ignored.
func (s *Session) Ack(deliveryID uint64) {
	c := s.c
	c.mu.Lock()
	if deliveryID == 0 || c.closed || s.staleLocked() {
		c.mu.Unlock()
		return
	}
	i, ok := slices.BinarySearchFunc(c.inflight, deliveryID, func(d Delivery, id uint64) int {
		return cmp.Compare(d.ID, id)
	})
	if !ok {
		c.mu.Unlock()
		return
	}
	c.inflight = slices.Delete(c.inflight, i, i+1)
	if i < c.resend {
		c.resend--
	}
	start := c.startLocked()
	c.mu.Unlock()
	if start {
		c.drain()
	}
}

// Hold stops deliveries until Resume; messages queue meanwhile (bounded,
// with the drop policy). A Deliver call already under way may still
// complete. Channels use it to send a CONNACK or SUBACK before the
// publishes that follow it.
func (s *Session) Hold() {
	c := s.c
	c.mu.Lock()
	if !c.closed && !s.staleLocked() {
		c.held = true
	}
	c.mu.Unlock()
}

// Resume ends Hold (or SessionOptions.Held) and delivers what waited,
// possibly before it returns.
func (s *Session) Resume() {
	c := s.c
	c.mu.Lock()
	if c.closed || s.staleLocked() {
		c.mu.Unlock()
		return
	}
	c.held = false
	start := c.startLocked()
	c.mu.Unlock()
	if start {
		c.drain()
	}
}

// Detach tells the broker the client went away. A session with zero
// Expiry is closed (DropSessionClosed for what was pending). Otherwise it
// keeps its subscriptions, queue and inflight; new messages queue up to
// the bound, and the session is removed with DropExpired after Expiry
// unless reopened (never, for a negative Expiry).
//
// Unacknowledged and queued messages that came through a shared
// subscription are handed to another attached member of their group if
// there is one (as fresh deliveries, Dup not set); otherwise they stay for
// this session's return.
func (s *Session) Detach() {
	c, b := s.c, s.c.b
	var after aftermath
	b.mu.Lock()
	c.mu.Lock()
	if c.closed || s.staleLocked() || c.d == nil {
		c.mu.Unlock()
		b.mu.Unlock()
		return
	}
	if c.expiry == 0 {
		b.removeLocked(c, &after, DropSessionClosed, true)
	} else {
		after.kick = c.d
		c.d = nil
		c.attached.Store(false)
		c.resend = 0
		b.moveSharedLocked(c, &after)
		if c.expiry > 0 {
			eg := c.expGen
			c.timer = b.clock.AfterFunc(c.expiry, func() { b.expire(c, eg) })
		}
	}
	if s.gen == 0 {
		after.kickReason = KickDetached
	} else {
		after.kick = nil // the channel detached itself
	}
	c.mu.Unlock()
	b.mu.Unlock()
	after.run(b)
}

// moveSharedLocked takes the shared-subscription messages of detached
// session c that another attached member can take over. b.mu and c.mu
// must be held.
func (b *Broker) moveSharedLocked(c *core, a *aftermath) {
	target := func(it queued) (subscriber, bool) {
		if it.group == "" {
			return subscriber{}, false
		}
		g := b.trie.group(it.filter, it.group)
		if g == nil {
			return subscriber{}, false
		}
		return g.pick(c, false)
	}
	kept := c.inflight[:0]
	for _, d := range c.inflight {
		it := queued{msg: d.Msg, filter: d.Filter, group: d.Group, qos: d.QoS}
		if s, ok := target(it); ok {
			a.moves = append(a.moves, move{to: s.c, it: reshare(it, s.qos)})
			continue
		}
		kept = append(kept, d)
	}
	clear(c.inflight[len(kept):])
	c.inflight = kept
	for i, n := 0, c.q.n; i < n; i++ {
		it := c.q.pop()
		if s, ok := target(it); ok {
			a.moves = append(a.moves, move{to: s.c, it: reshare(it, s.qos)})
			continue
		}
		c.q.push(it)
	}
}

// Close removes the session and its subscriptions now. Pending messages
// go to other shared-group members where possible and are otherwise
// dropped (DropSessionClosed). Through an administrative handle it also
// kicks the attached client (KickClosed).
func (s *Session) Close() {
	c, b := s.c, s.c.b
	var after aftermath
	b.mu.Lock()
	c.mu.Lock()
	if c.closed || s.staleLocked() {
		c.mu.Unlock()
		b.mu.Unlock()
		return
	}
	b.removeLocked(c, &after, DropSessionClosed, true)
	if s.gen == 0 {
		after.kickReason = KickClosed
	} else {
		after.kick = nil
	}
	c.mu.Unlock()
	b.mu.Unlock()
	after.run(b)
}

// Stats returns a snapshot of the session's counters.
func (s *Session) Stats() SessionStats {
	c := s.c
	c.mu.Lock()
	defer c.mu.Unlock()
	return SessionStats{
		Queued:        c.q.n,
		Inflight:      len(c.inflight),
		Subscriptions: len(c.subs),
		Dropped:       c.dropped,
		Delivered:     c.delivered,
		Redelivered:   c.redelivered,
		Attached:      c.d != nil,
	}
}

// put queues one routed message and, if nobody is delivering for this
// session, delivers until the session has nothing deliverable. It reports
// false if the session is closed.
func (c *core) put(it queued) bool {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return false
	}
	dropped := c.pushLocked(it)
	start := c.startLocked()
	c.mu.Unlock()
	if dropped != nil {
		c.b.drop(c.id, dropped, DropQueueFull)
	}
	if start {
		c.drain()
	}
	return true
}

// putRetained queues retained messages for a new subscription.
func (c *core) putRetained(msgs []*Message, filter string, qos byte) int {
	var drops []*Message
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return 0
	}
	for _, m := range msgs {
		it := queued{msg: m, filter: filter, qos: min(m.QoS, qos), retained: true}
		if d := c.pushLocked(it); d != nil {
			drops = append(drops, d)
		}
	}
	start := c.startLocked()
	c.mu.Unlock()
	for _, m := range drops {
		c.b.drop(c.id, m, DropQueueFull)
	}
	if start {
		c.drain()
	}
	return len(msgs)
}

// pushLocked appends it to the queue, applying the drop policy when the
// queue is full. It returns the dropped message, if any.
func (c *core) pushLocked(it queued) (dropped *Message) {
	if c.q.n >= c.maxQueue {
		c.dropped++
		if c.b.opts.DropPolicy == DropNew {
			return it.msg
		}
		dropped = c.q.pop().msg
	}
	c.q.push(it)
	return dropped
}

// startLocked claims the drainer role if there is something to deliver and
// nobody is delivering. The caller must call drain if it returns true.
func (c *core) startLocked() bool {
	if c.draining || !c.readyLocked() {
		return false
	}
	c.draining = true
	return true
}

func (c *core) readyLocked() bool {
	if c.d == nil || c.held || c.closed {
		return false
	}
	if c.resend < len(c.inflight) {
		return true
	}
	if c.q.n == 0 {
		return false
	}
	return c.q.peek().qos == 0 || len(c.inflight) < c.maxInflight
}

// drain delivers while anything is deliverable. Only the goroutine that
// claimed c.draining runs it, which is what keeps deliveries in queue
// order; Deliver is called with no lock held, so it may call back into the
// session, and anything it (or anyone) queues meanwhile is picked up here.
func (c *core) drain() {
	var n uint64
	finished := false
	defer func() {
		if !finished { // Deliver panicked: let the next caller drain
			c.mu.Lock()
			c.draining = false
			c.mu.Unlock()
		}
		c.b.delivered.Add(n)
	}()
	c.mu.Lock()
	for c.readyLocked() {
		d := c.d
		var out Delivery
		if c.resend < len(c.inflight) {
			c.inflight[c.resend].Dup = true
			out = c.inflight[c.resend]
			c.resend++
			c.redelivered++
		} else {
			it := c.q.pop()
			out = Delivery{Msg: it.msg, QoS: it.qos, Filter: it.filter, Group: it.group, Retained: it.retained}
			if it.qos > 0 {
				c.nextID++
				out.ID = c.nextID
				c.inflight = append(c.inflight, out)
				c.resend = len(c.inflight)
			}
			c.delivered++
			n++
		}
		c.mu.Unlock()
		d.Deliver(out)
		c.mu.Lock()
	}
	c.draining = false
	finished = true
	c.mu.Unlock()
}

// ring is a FIFO of queued messages in a power-of-two circular buffer.
type ring struct {
	buf  []queued
	head int
	n    int
}

func (r *ring) push(it queued) {
	if r.n == len(r.buf) {
		nb := make([]queued, max(8, 2*len(r.buf)))
		for i := 0; i < r.n; i++ {
			nb[i] = r.buf[(r.head+i)&(len(r.buf)-1)]
		}
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.n)&(len(r.buf)-1)] = it
	r.n++
}

func (r *ring) peek() *queued { return &r.buf[r.head] }

func (r *ring) pop() queued {
	it := r.buf[r.head]
	r.buf[r.head] = queued{}
	r.head = (r.head + 1) & (len(r.buf) - 1)
	r.n--
	if r.n == 0 && len(r.buf) > 64 {
		// A session that once queued a backlog should not keep its
		// buffer for the rest of its life.
		r.buf, r.head = nil, 0
	}
	return it
}

func (r *ring) popBack() queued {
	i := (r.head + r.n - 1) & (len(r.buf) - 1)
	it := r.buf[i]
	r.buf[i] = queued{}
	r.n--
	return it
}
