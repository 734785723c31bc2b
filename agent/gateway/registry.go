// Package gateway is the framework protocols plug into: the registry of
// kinds, gateway instances that load, start, stop, update and unload at
// runtime, ClientInfo, authentication chains, mountpoints, the clients
// table with takeover, and the client handle a protocol publishes and
// subscribes through.
//
// A protocol package registers its kind from init:
//
//	func init() {
//		gateway.Register(gateway.Kind{
//			Name:       "stomp",
//			Transports: []string{"tcp", "tls"},
//			NewConfig:  func() any { return &Config{MaxHeaders: 10} },
//			New:        newGateway,
//		})
//	}
//
// and the agent never switches on a protocol's name.
package gateway

import (
	"context"
	"errors"
	"sort"
	"sync"

	"github.com/edgeway/edgeway/agent/config"
)

// Kind is one protocol that can be configured as [gateway.<Name>].
type Kind struct {
	Name string
	// Description is one line for `gateway-registry list`.
	Description string
	// Transports are the listener types allowed ("tcp", "tls", "udp", "dtls", "serial").
	Transports []string
	// DefaultMountpoint applies when the config sets none.
	DefaultMountpoint string
	// NewConfig returns a pointer to the kind's own settings, defaults
	// filled in; a Validate() error method on it checks the section. May be nil.
	NewConfig func() any
	// NewListenerConfig optionally returns kind-specific listener keys.
	NewListenerConfig func(listenerType string) any
	// DefaultBinds are default ports by listener type ("udp": "1884").
	DefaultBinds map[string]string
	// New builds the runtime of one gateway instance. It must do no I/O:
	// listeners are opened by the framework and handed to Serve.
	New func(gw *Gateway) (Protocol, error)
}

// Protocol is a kind's runtime for one gateway instance.
//
// The framework calls Serve once per started listener, each in its own
// goroutine, and cancels ctx to stop it; Serve must return soon after
// (Accept fails once the listener is closed). Connections accepted through
// the Listener are closed by the framework when their listener stops, so a
// protocol only has to end its per-connection goroutines when their Conn
// fails.
//
// Update receives changed kind settings (the value NewConfig returned,
// decoded); it applies them live or returns ErrRestartRequired, and the
// framework then restarts this gateway alone.
//
// A Protocol may also implement Stopper for instance-wide cleanup.
type Protocol interface {
	Serve(ctx context.Context, l *Listener) error
	Update(spec any) error
}

// Stopper is implemented by protocols that hold instance-wide resources.
type Stopper interface {
	Stop(ctx context.Context) error
}

// ErrRestartRequired tells the framework a change cannot be applied live.
var ErrRestartRequired = errors.New("gateway: change needs a restart")

var kinds = struct {
	sync.RWMutex
	m map[string]Kind
}{m: map[string]Kind{}}

// Register adds a kind. Registering a name twice panics.
func Register(k Kind) {
	if k.Name == "" || k.New == nil {
		panic("gateway: Register needs Name and New")
	}
	kinds.Lock()
	if _, dup := kinds.m[k.Name]; dup {
		kinds.Unlock()
		panic("gateway: kind " + k.Name + " registered twice")
	}
	kinds.m[k.Name] = k
	kinds.Unlock()
	config.RegisterKind(config.KindSchema{
		Name:              k.Name,
		ListenerTypes:     k.Transports,
		DefaultMountpoint: k.DefaultMountpoint,
		NewSpec:           k.NewConfig,
		NewListenerSpec:   k.NewListenerConfig,
		DefaultBinds:      k.DefaultBinds,
	})
}

// Unregister removes a kind; for tests that register throw-away kinds.
func Unregister(name string) {
	kinds.Lock()
	delete(kinds.m, name)
	kinds.Unlock()
	config.UnregisterKind(name)
}

// Kinds lists every registered kind, sorted by name (the gateway-registry).
func Kinds() []Kind {
	kinds.RLock()
	defer kinds.RUnlock()
	out := make([]Kind, 0, len(kinds.m))
	for _, k := range kinds.m {
		out = append(out, k)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// LookupKind finds a registered kind.
func LookupKind(name string) (Kind, bool) {
	kinds.RLock()
	defer kinds.RUnlock()
	k, ok := kinds.m[name]
	return k, ok
}
