package metrics

import (
	"slices"
	"strings"
	"sync"
)

// Registry holds Sets by key so that the HTTP API and the Prometheus
// endpoint can list them. The framework picks the keys (for example
// "gateway:mqttsn", "listener:mqttsn:udp:default", "client:mqttsn:dev-1")
// and removes a client's Set when the client goes. It is safe for
// concurrent use.
type Registry struct {
	mu   sync.RWMutex
	sets map[string]*Set
}

// NewRegistry returns an empty Registry.
func NewRegistry() *Registry {
	return &Registry{sets: make(map[string]*Set)}
}

// Set returns the Set under key, creating it with labels if there is
// none. The labels of an existing Set are left as they are.
func (r *Registry) Set(key string, labels map[string]string) *Set {
	r.mu.RLock()
	s := r.sets[key]
	r.mu.RUnlock()
	if s != nil {
		return s
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if s = r.sets[key]; s == nil {
		s = NewSet(labels)
		r.sets[key] = s
	}
	return s
}

// Remove forgets the Set under key. Counters already handed out keep
// working but are no longer listed.
func (r *Registry) Remove(key string) {
	r.mu.Lock()
	delete(r.sets, key)
	r.mu.Unlock()
}

// Lookup returns the Set under key, if any.
func (r *Registry) Lookup(key string) (*Set, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	s, ok := r.sets[key]
	return s, ok
}

// Each calls fn for every Set in ascending key order. It works on a copy
// of the list, so fn may add or remove Sets; those changes do not affect
// the current walk.
func (r *Registry) Each(fn func(key string, s *Set)) {
	type entry struct {
		key string
		s   *Set
	}
	r.mu.RLock()
	list := make([]entry, 0, len(r.sets))
	for k, s := range r.sets {
		list = append(list, entry{k, s})
	}
	r.mu.RUnlock()
	slices.SortFunc(list, func(a, b entry) int { return strings.Compare(a.key, b.key) })
	for _, e := range list {
		fn(e.key, e.s)
	}
}
