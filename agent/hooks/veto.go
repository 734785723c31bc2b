package hooks

import (
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
)

// Decision is a veto hook's answer.
type Decision int

const (
	// Continue passes the question to the next handler.
	Continue Decision = iota
	// Allow ends the chain and lets the client or action through.
	Allow
	// Deny ends the chain and refuses.
	Deny
)

// String returns "continue", "allow" or "deny".
func (d Decision) String() string {
	switch d {
	case Continue:
		return "continue"
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return "decision(" + strconv.Itoa(int(d)) + ")"
}

// AuthenticateFunc decides whether a client may connect with the given
// password. It runs in the connecting client's goroutine, so it should be
// quick; it must not keep or log the password.
type AuthenticateFunc func(c Client, password []byte) Decision

// AuthorizeFunc decides whether a client may perform action ("publish" or
// "subscribe") on topic. The topic is the one the broker sees, with the
// mountpoint applied. It runs on the message path, so it should be quick.
type AuthorizeFunc func(c Client, action string, topic string) Decision

// PublishFunc sees every message a client publishes before the broker
// routes it and may drop it by returning false. It runs on the message
// path, so it should be quick; it must not modify or keep payload.
type PublishFunc func(c Client, topic string, payload []byte, qos byte) (allow bool)

// OnAuthenticate adds f to the authentication chain. Handlers run in
// descending priority, handlers of equal priority in the order they were
// added. The returned remove takes f out again; it is idempotent.
func (b *Bus) OnAuthenticate(priority int, f AuthenticateFunc) (remove func()) {
	if f == nil {
		panic("hooks: nil AuthenticateFunc")
	}
	return b.authn.add(priority, f)
}

// RunAuthenticate asks the authentication handlers in turn and returns
// the first decision that is not Continue, or Continue if there is none
// (and then the caller's own default applies). It does not emit
// client.authenticate; the caller does, with the outcome.
func (b *Bus) RunAuthenticate(c Client, password []byte) Decision {
	if b == nil {
		return Continue
	}
	if hs := b.authn.list.Load(); hs != nil {
		for _, h := range *hs {
			if d := h.f(c, password); d != Continue {
				return d
			}
		}
	}
	return Continue
}

// OnAuthorize adds f to the authorization chain, ordered as for
// OnAuthenticate. The returned remove is idempotent.
func (b *Bus) OnAuthorize(priority int, f AuthorizeFunc) (remove func()) {
	if f == nil {
		panic("hooks: nil AuthorizeFunc")
	}
	return b.authz.add(priority, f)
}

// RunAuthorize asks the authorization handlers in turn and returns the
// first decision that is not Continue, or Continue if there is none.
func (b *Bus) RunAuthorize(c Client, action, topic string) Decision {
	if b == nil {
		return Continue
	}
	if hs := b.authz.list.Load(); hs != nil {
		for _, h := range *hs {
			if d := h.f(c, action, topic); d != Continue {
				return d
			}
		}
	}
	return Continue
}

// OnPublish adds f to the message.publish chain, ordered as for
// OnAuthenticate. The returned remove is idempotent.
func (b *Bus) OnPublish(priority int, f PublishFunc) (remove func()) {
	if f == nil {
		panic("hooks: nil PublishFunc")
	}
	return b.pub.add(priority, f)
}

// RunPublish runs the message.publish handlers in turn and reports
// whether the message may go on: false as soon as one handler returns
// false (the rest are not asked), true if all allow or none is
// registered.
func (b *Bus) RunPublish(c Client, topic string, payload []byte, qos byte) bool {
	if b == nil {
		return true
	}
	if hs := b.pub.list.Load(); hs != nil {
		for _, h := range *hs {
			if !h.f(c, topic, payload, qos) {
				return false
			}
		}
	}
	return true
}

// chain is a copy-on-write list of handlers sorted by priority, so that
// Run… reads it with one atomic load and no lock.
type chain[F any] struct {
	mu   sync.Mutex
	seq  uint64
	list atomic.Pointer[[]handler[F]] // nil when empty
}

type handler[F any] struct {
	priority int
	id       uint64
	f        F
}

func (c *chain[F]) add(priority int, f F) (remove func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.seq++
	h := handler[F]{priority: priority, id: c.seq, f: f}
	var cur []handler[F]
	if p := c.list.Load(); p != nil {
		cur = *p
	}
	// After every handler of higher or equal priority.
	i := 0
	for i < len(cur) && cur[i].priority >= priority {
		i++
	}
	next := slices.Insert(slices.Clone(cur), i, h)
	c.list.Store(&next)
	var once sync.Once
	return func() { once.Do(func() { c.remove(h.id) }) }
}

func (c *chain[F]) remove(id uint64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p := c.list.Load()
	if p == nil {
		return
	}
	next := slices.DeleteFunc(slices.Clone(*p), func(h handler[F]) bool { return h.id == id })
	if len(next) == 0 {
		c.list.Store(nil)
		return
	}
	c.list.Store(&next)
}
