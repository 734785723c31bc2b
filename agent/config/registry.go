package config

import (
	"fmt"
	"sort"
	"strings"
	"sync"
)

// KindSchema describes the config section of one gateway kind,
// [gateway.<Name>]. The gateway framework fills it from gateway.Register.
type KindSchema struct {
	Name string
	// ListenerTypes are the canonical listener types the kind accepts
	// ("tcp", "tls", "udp", "dtls", "serial").
	ListenerTypes []string
	// DefaultMountpoint is used when the section sets none
	// ("lwm2m/${endpoint_name}/" for LwM2M).
	DefaultMountpoint string
	// NewSpec returns a pointer to the kind's own settings with defaults
	// filled in. Keys of [gateway.<kind>] that are not common gateway keys
	// are decoded into it; a Validate method on it checks the section.
	// May be nil for a kind with no settings of its own.
	NewSpec func() any
	// NewListenerSpec optionally returns kind-specific keys allowed on a
	// listener of the given type (e.g. a serial framing option); nil for none.
	NewListenerSpec func(listenerType string) any
	// DefaultBinds are the kind's default ports by canonical listener type
	// ("udp": "1884"), used when a listener sets no bind.
	DefaultBinds map[string]string
}

// ListenerSchema describes one listener type, [...listeners.<Name>.<name>].
type ListenerSchema struct {
	Name    string   // canonical type name
	Aliases []string // other spellings accepted ("ssl" for "tls")
	// NewSpec returns a pointer to the type's settings (socket, TLS, serial
	// options) with defaults; keys that are not common listener keys go there.
	NewSpec func() any
	// DefaultBind is used when a listener sets no bind (kinds usually give their own).
	DefaultBind string
}

// AuthnSchema describes one authenticator type, [[...authentication]] type = Name.
type AuthnSchema struct {
	Name    string
	NewSpec func() any
}

var reg = struct {
	sync.RWMutex
	kinds     map[string]KindSchema
	listeners map[string]ListenerSchema
	aliases   map[string]string
	authn     map[string]AuthnSchema
}{
	kinds:     map[string]KindSchema{},
	listeners: map[string]ListenerSchema{},
	aliases:   map[string]string{},
	authn:     map[string]AuthnSchema{},
}

// RegisterKind adds a gateway kind's schema. A duplicate name panics.
func RegisterKind(s KindSchema) {
	reg.Lock()
	defer reg.Unlock()
	if _, dup := reg.kinds[s.Name]; dup {
		panic("config: gateway kind " + s.Name + " registered twice")
	}
	reg.kinds[s.Name] = s
}

// UnregisterKind removes a kind (for tests that register throw-away kinds).
func UnregisterKind(name string) {
	reg.Lock()
	defer reg.Unlock()
	delete(reg.kinds, name)
}

// RegisterListener adds a listener type. A duplicate name or alias panics.
func RegisterListener(s ListenerSchema) {
	reg.Lock()
	defer reg.Unlock()
	for _, n := range append([]string{s.Name}, s.Aliases...) {
		if _, dup := reg.aliases[n]; dup {
			panic("config: listener type " + n + " registered twice")
		}
		reg.aliases[n] = s.Name
	}
	reg.listeners[s.Name] = s
}

// RegisterAuthn adds an authenticator type. A duplicate name panics.
func RegisterAuthn(s AuthnSchema) {
	reg.Lock()
	defer reg.Unlock()
	if _, dup := reg.authn[s.Name]; dup {
		panic("config: authenticator type " + s.Name + " registered twice")
	}
	reg.authn[s.Name] = s
}

// Kinds lists the registered gateway kinds, sorted.
func Kinds() []string {
	reg.RLock()
	defer reg.RUnlock()
	return sortedKeys(reg.kinds)
}

// Kind returns a registered kind's schema.
func Kind(name string) (KindSchema, bool) {
	reg.RLock()
	defer reg.RUnlock()
	k, ok := reg.kinds[name]
	return k, ok
}

// CanonicalListenerType maps an alias ("ssl") to its type ("tls").
func CanonicalListenerType(t string) (string, bool) {
	reg.RLock()
	defer reg.RUnlock()
	c, ok := reg.aliases[t]
	return c, ok
}

func listenerSchema(t string) (ListenerSchema, bool) {
	reg.RLock()
	defer reg.RUnlock()
	s, ok := reg.listeners[reg.aliases[t]]
	return s, ok
}

func authnSchema(t string) (AuthnSchema, bool) {
	reg.RLock()
	defer reg.RUnlock()
	s, ok := reg.authn[t]
	return s, ok
}

func authnNames() string {
	reg.RLock()
	defer reg.RUnlock()
	return strings.Join(sortedKeys(reg.authn), ", ")
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func quoteList(s []string) string {
	q := make([]string, len(s))
	for i, x := range s {
		q[i] = fmt.Sprintf("%q", x)
	}
	return strings.Join(q, ", ")
}
