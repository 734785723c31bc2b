package broker

import (
	"slices"
	"strings"
	"sync/atomic"
)

// trie holds every subscription, keyed by filter level. It is not safe for
// concurrent use by itself: the Broker guards it with an RWMutex, so
// publishes match in parallel and only (un)subscribes serialise.
type trie struct {
	root  node
	count int // subscriptions, each shared group member counted once
}

// node is one filter level. Wildcard children live in their own fields so a
// lookup never has to hash "+" or "#".
type node struct {
	parent   *node
	key      string // level under parent ("+" and "#" for the wildcard children)
	filter   string // the whole filter up to this level, shared by all its deliveries
	children map[string]*node
	plus     *node
	hash     *node
	subs     []subscriber
	groups   []*shareGroup
	// n counts subscribers on this exact filter, plain and shared, so the
	// broker can tell when a filter gains its first or loses its last.
	n int
}

type subscriber struct {
	c   *core
	qos byte
}

// shareGroup is one $share/{name}/{filter} subscription.
type shareGroup struct {
	name    string
	members []subscriber
	next    atomic.Uint32 // round-robin cursor; bumped under the read lock
}

// hit is one subscription matched by a publish.
type hit struct {
	c      *core
	filter string
	group  string
	qos    byte
}

func (n *node) empty() bool {
	return len(n.children) == 0 && n.plus == nil && n.hash == nil && len(n.subs) == 0 && len(n.groups) == 0
}

// find returns the node of filter, or nil.
func (t *trie) find(filter string) *node {
	n := &t.root
	for {
		level, rest, more := cut(filter)
		switch level {
		case "+":
			n = n.plus
		case "#":
			n = n.hash
		default:
			n = n.children[level]
		}
		if n == nil || !more {
			return n
		}
		filter = rest
	}
}

// build returns the node of filter, creating missing levels.
func (t *trie) build(filter string) *node {
	n := &t.root
	start := 0
	for {
		end := len(filter)
		if i := strings.IndexByte(filter[start:], '/'); i >= 0 {
			end = start + i
		}
		level := filter[start:end]
		var c *node
		switch level {
		case "+":
			c = n.plus
		case "#":
			c = n.hash
		default:
			c = n.children[level]
		}
		if c == nil {
			c = &node{parent: n, key: level, filter: filter[:end]}
			switch level {
			case "+":
				n.plus = c
			case "#":
				n.hash = c
			default:
				if n.children == nil {
					n.children = make(map[string]*node)
				}
				n.children[level] = c
			}
		}
		n = c
		if end == len(filter) {
			return n
		}
		start = end + 1
	}
}

// insert adds or updates c's subscription to filter (the inner filter for a
// shared group). It reports whether the subscription is new.
// insert adds c's subscription; it reports whether it was new and whether
// the filter had no subscriber before.
func (t *trie) insert(filter, group string, c *core, qos byte) (added, first bool) {
	n := t.build(filter)
	if group == "" {
		for i := range n.subs {
			if n.subs[i].c == c {
				n.subs[i].qos = qos
				return false, false
			}
		}
		n.subs = append(n.subs, subscriber{c: c, qos: qos})
		t.count++
		n.n++
		return true, n.n == 1
	}
	var g *shareGroup
	for _, x := range n.groups {
		if x.name == group {
			g = x
			break
		}
	}
	if g == nil {
		g = &shareGroup{name: group}
		n.groups = append(n.groups, g)
	}
	for i := range g.members {
		if g.members[i].c == c {
			g.members[i].qos = qos
			return false, false
		}
	}
	g.members = append(g.members, subscriber{c: c, qos: qos})
	t.count++
	n.n++
	return true, n.n == 1
}

// remove deletes c's subscription and prunes levels left empty, so churn
// of device subscriptions does not grow the trie forever.
// remove reports whether c had the subscription and whether it was the
// filter's last.
func (t *trie) remove(filter, group string, c *core) (removed, last bool) {
	n := t.find(filter)
	if n == nil {
		return false, false
	}
	found := false
	if group == "" {
		for i := range n.subs {
			if n.subs[i].c == c {
				// Order-preserving so round-robin and tests stay predictable.
				n.subs = slices.Delete(n.subs, i, i+1)
				found = true
				break
			}
		}
	} else {
		for gi, g := range n.groups {
			if g.name != group {
				continue
			}
			for i := range g.members {
				if g.members[i].c == c {
					g.members = slices.Delete(g.members, i, i+1)
					found = true
					break
				}
			}
			if len(g.members) == 0 {
				n.groups = slices.Delete(n.groups, gi, gi+1)
			}
			break
		}
	}
	if !found {
		return false, false
	}
	t.count--
	n.n--
	last = n.n == 0
	for n != &t.root && n.empty() {
		p := n.parent
		switch {
		case p.plus == n:
			p.plus = nil
		case p.hash == n:
			p.hash = nil
		default:
			delete(p.children, n.key)
		}
		n = p
	}
	return true, last
}

// group returns the shared group name at filter, or nil.
func (t *trie) group(filter, name string) *shareGroup {
	n := t.find(filter)
	if n == nil {
		return nil
	}
	for _, g := range n.groups {
		if g.name == name {
			return g
		}
	}
	return nil
}

// match appends to out every subscription matching topic, which must be a
// valid topic name. Each shared group contributes one hit, its chosen
// member. It does not allocate beyond growing out.
func (t *trie) match(topic string, out []hit) []hit {
	dollar := topic[0] == '$'
	if t.root.hash != nil && !dollar {
		out = t.root.hash.appendSubs(out)
	}
	return t.root.walk(topic, true, dollar, out)
}

// walk matches the levels in rest below n. first is true at the root, where
// a '$' topic must not be matched by a wildcard.
func (n *node) walk(rest string, first, dollar bool, out []hit) []hit {
	level, rest, more := cut(rest)
	if c := n.children[level]; c != nil {
		out = c.visit(rest, more, out)
	}
	if n.plus != nil && !(first && dollar) {
		out = n.plus.visit(rest, more, out)
	}
	return out
}

// visit is called on a node that matched one level.
func (n *node) visit(rest string, more bool, out []hit) []hit {
	// "x/#" matches "x" itself and everything below it.
	if n.hash != nil {
		out = n.hash.appendSubs(out)
	}
	if !more {
		return n.appendSubs(out)
	}
	return n.walk(rest, false, false, out)
}

func (n *node) appendSubs(out []hit) []hit {
	for _, s := range n.subs {
		out = append(out, hit{c: s.c, qos: s.qos, filter: n.filter})
	}
	for _, g := range n.groups {
		if s, ok := g.pick(nil, true); ok {
			out = append(out, hit{c: s.c, qos: s.qos, filter: n.filter, group: g.name})
		}
	}
	return out
}

// pick chooses the next member round-robin, skipping members that are not
// attached to a client so a message does not wait in a sleeping session
// while another member could take it. except is never chosen. If no other
// member is attached, pick returns the round-robin choice anyway when
// anyMember is set (the message then waits in that member's queue), and
// nothing otherwise.
func (g *shareGroup) pick(except *core, anyMember bool) (subscriber, bool) {
	n := uint32(len(g.members))
	if n == 0 {
		return subscriber{}, false
	}
	start := (g.next.Add(1) - 1) % n
	fallback := -1
	for i := uint32(0); i < n; i++ {
		s := g.members[(start+i)%n]
		if s.c == except {
			continue
		}
		if s.c.attached.Load() {
			return s, true
		}
		if fallback < 0 {
			fallback = int((start + i) % n)
		}
	}
	if anyMember && fallback >= 0 {
		return g.members[fallback], true
	}
	return subscriber{}, false
}
