package hooks

import (
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultBuffer is the queue size Subscribe uses when asked for none.
const DefaultBuffer = 1024

// dropLogEvery limits how often one consumer's losses are logged.
const dropLogEvery = 10 * time.Second

// Options configures a Bus.
type Options struct {
	// Logger receives a warning, at most every 10s per consumer, while a
	// consumer is dropping events. Nil discards.
	Logger *slog.Logger
}

// Bus delivers notifications to consumers and runs veto hooks. It is safe
// for concurrent use. Its methods also work on a nil *Bus, which has no
// consumers and no handlers.
type Bus struct {
	log *slog.Logger

	// routes is what Emit reads; nil while nobody is subscribed, which is
	// the whole cost of an Emit nobody wants.
	routes atomic.Pointer[routes]

	mu        sync.Mutex // guards the fields below; never held by Emit or Run…
	consumers []*consumer
	dropped   map[string]*atomic.Uint64
	closed    bool

	authn chain[AuthenticateFunc]
	authz chain[AuthorizeFunc]
	pub   chain[PublishFunc]
}

// routes is an immutable index from name to consumers, rebuilt on every
// Subscribe and cancel.
type routes struct {
	all []*consumer // subscribed to every name
	by  map[Name][]*consumer
}

type consumer struct {
	name    string
	names   []Name // nil means all
	fn      func(Event)
	ch      chan Event
	dropped *atomic.Uint64 // shared by consumers of the same name
	log     *slog.Logger

	stopOnce sync.Once
	done     chan struct{} // closed to ask the goroutine to finish
	exited   chan struct{} // closed by the goroutine

	// owned by the goroutine
	logged  uint64
	lastLog time.Time
}

// New returns a Bus with no consumers and no handlers.
func New(opts Options) *Bus {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Bus{log: log, dropped: make(map[string]*atomic.Uint64)}
}

// Subscribe registers fn as an asynchronous consumer of the given names;
// no names means all of them, including names outside All. The consumer
// name labels it in Dropped and in logs: use a few fixed names such as
// "metrics" or "eventlog", not one per client.
//
// Events for the consumer are queued in a buffer of the given size
// (DefaultBuffer if buffer < 1) and handed to fn, one at a time and in
// the order they were emitted, by a goroutine the Bus owns. Events
// emitted concurrently from several goroutines have no defined order
// between them. When the buffer is full the event is dropped for this
// consumer only and counted under name in Dropped.
//
// The returned cancel unregisters the consumer, lets its goroutine hand
// fn what is already queued, and waits for it to exit; after cancel
// returns fn is not called again. Cancel is idempotent and must not be
// called from fn. Subscribe on a closed Bus starts nothing and returns a
// no-op cancel.
func (b *Bus) Subscribe(name string, names []Name, buffer int, fn func(Event)) (cancel func()) {
	if fn == nil {
		panic("hooks: Subscribe with nil func")
	}
	if buffer < 1 {
		buffer = DefaultBuffer
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return func() {}
	}
	cnt := b.dropped[name]
	if cnt == nil {
		cnt = new(atomic.Uint64)
		b.dropped[name] = cnt
	}
	c := &consumer{
		name:    name,
		fn:      fn,
		ch:      make(chan Event, buffer),
		dropped: cnt,
		log:     b.log,
		done:    make(chan struct{}),
		exited:  make(chan struct{}),
		logged:  cnt.Load(),
	}
	if len(names) > 0 {
		c.names = slices.Compact(slices.Sorted(slices.Values(names)))
	}
	go c.run()
	b.consumers = append(b.consumers, c)
	b.publishLocked()
	return func() { b.unsubscribe(c) }
}

func (b *Bus) unsubscribe(c *consumer) {
	b.mu.Lock()
	if i := slices.Index(b.consumers, c); i >= 0 {
		b.consumers = slices.Delete(b.consumers, i, i+1)
		b.publishLocked()
	}
	b.mu.Unlock()
	c.stop()
	c.wait()
}

// publishLocked rebuilds the routes from b.consumers.
func (b *Bus) publishLocked() {
	if len(b.consumers) == 0 {
		b.routes.Store(nil)
		return
	}
	r := &routes{by: make(map[Name][]*consumer)}
	for _, c := range b.consumers {
		if c.names == nil {
			r.all = append(r.all, c)
			continue
		}
		for _, n := range c.names {
			r.by[n] = append(r.by[n], c)
		}
	}
	b.routes.Store(r)
}

// Enabled reports whether any consumer wants events named n. It lets a
// producer skip building an Event; Emit makes the same check itself.
func (b *Bus) Enabled(n Name) bool {
	if b == nil {
		return false
	}
	r := b.routes.Load()
	return r != nil && (len(r.all) > 0 || len(r.by[n]) > 0)
}

// Emit queues e for every consumer subscribed to e.Name. It never blocks:
// a consumer whose queue is full loses the event, which is counted. With
// no consumer for e.Name it does nothing and allocates nothing.
func (b *Bus) Emit(e Event) {
	// Kept small enough to inline, so that with no consumer at all the
	// caller does not even copy the Event.
	if b == nil {
		return
	}
	if r := b.routes.Load(); r != nil {
		r.emit(&e)
	}
}

func (r *routes) emit(e *Event) {
	subs := r.by[e.Name]
	if len(subs) == 0 && len(r.all) == 0 {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	// A consumer is in one list or the other, never both.
	for _, c := range r.all {
		c.offer(e)
	}
	for _, c := range subs {
		c.offer(e)
	}
}

// Dropped returns, per consumer name, how many events were dropped
// because that consumer's queue was full. Counts are kept after cancel so
// they only ever grow; consumers sharing a name share a count.
func (b *Bus) Dropped() map[string]uint64 {
	if b == nil {
		return map[string]uint64{}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	m := make(map[string]uint64, len(b.dropped))
	for name, n := range b.dropped {
		m[name] = n.Load()
	}
	return m
}

// Close unregisters every consumer, lets each hand its queued events to
// its func, and waits for all their goroutines to exit. Later Emits do
// nothing and later Subscribes start nothing. Veto hooks keep working.
// Close is idempotent.
func (b *Bus) Close() {
	if b == nil {
		return
	}
	b.mu.Lock()
	cs := b.consumers
	b.consumers = nil
	b.closed = true
	b.routes.Store(nil)
	b.mu.Unlock()
	// Ask all first, then wait, so slow consumers finish in parallel.
	for _, c := range cs {
		c.stop()
	}
	for _, c := range cs {
		c.wait()
	}
}

func (c *consumer) offer(e *Event) {
	select {
	case c.ch <- *e:
	default:
		c.dropped.Add(1)
	}
}

func (c *consumer) stop() { c.stopOnce.Do(func() { close(c.done) }) }
func (c *consumer) wait() { <-c.exited }

func (c *consumer) run() {
	defer close(c.exited)
	for {
		select {
		case e := <-c.ch:
			c.handle(e)
		case <-c.done:
			// An Emit that loaded the routes before the consumer was
			// removed may still add to the queue after this drain; such
			// late events are never delivered.
			for {
				select {
				case e := <-c.ch:
					c.handle(e)
				default:
					return
				}
			}
		}
	}
}

func (c *consumer) handle(e Event) {
	c.fn(e)
	// Losses are logged from here rather than from Emit, to keep the
	// producer's path free of logging.
	if n := c.dropped.Load(); n != c.logged {
		if now := time.Now(); c.lastLog.IsZero() || now.Sub(c.lastLog) >= dropLogEvery {
			c.log.Warn("hooks: consumer is dropping events, queue full",
				"consumer", c.name, "dropped", n, "since_last", n-c.logged)
			c.logged, c.lastLog = n, now
		}
	}
}
