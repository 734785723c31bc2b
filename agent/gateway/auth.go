package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/edgeway/edgeway/agent/config"
)

// Decision is an authenticator's or authorizer's answer.
type Decision int

const (
	// Ignore passes the decision to the next authenticator in the chain.
	Ignore Decision = iota
	// Allow accepts.
	Allow
	// Deny rejects.
	Deny
)

func (d Decision) String() string {
	switch d {
	case Allow:
		return "allow"
	case Deny:
		return "deny"
	}
	return "ignore"
}

// AuthResult is what an authenticator decided about a client.
type AuthResult struct {
	Decision    Decision
	IsSuperuser bool
	// ClientAttrs are merged into ClientInfo.ClientAttrs on Allow.
	ClientAttrs map[string]string
	// ExpireAt, if set, ends the client's connection at that time.
	ExpireAt time.Time
	// Reason explains a Deny (for logs and events, never containing secrets).
	Reason string
}

// Authenticator is one link of an authentication chain.
//
// Authenticate is called once per connecting client, concurrently from many
// goroutines. It returns Ignore when it has no opinion (unknown user for a
// user database that is not authoritative, a backend answering "ignore"),
// Allow or Deny otherwise. A backend failure should be Deny in the hardened
// profile: implementations get the profile in AuthnEnv. ctx carries the
// connection's deadline.
//
// An Authenticator that holds resources also implements io.Closer; the
// framework closes it when the chain is replaced or the gateway unloads.
type Authenticator interface {
	Authenticate(ctx context.Context, ci *ClientInfo) AuthResult
}

// AuthnEnv is what an authenticator constructor gets.
type AuthnEnv struct {
	Logger          *slog.Logger
	SecurityProfile string
	DataDir         string
}

// AuthnType is one authenticator type (`type = "built_in"`).
type AuthnType struct {
	Name string
	// NewSpec returns a pointer to the type's settings with defaults; nil for none.
	NewSpec func() any
	// New builds an authenticator from its decoded settings.
	New func(spec any, env AuthnEnv) (Authenticator, error)
}

var authnTypes = struct {
	sync.RWMutex
	m map[string]AuthnType
}{m: map[string]AuthnType{}}

// RegisterAuthn adds an authenticator type. Duplicates panic.
func RegisterAuthn(t AuthnType) {
	authnTypes.Lock()
	if _, dup := authnTypes.m[t.Name]; dup {
		authnTypes.Unlock()
		panic("gateway: authenticator type " + t.Name + " registered twice")
	}
	authnTypes.m[t.Name] = t
	authnTypes.Unlock()
	config.RegisterAuthn(config.AuthnSchema{Name: t.Name, NewSpec: t.NewSpec})
}

// AuthnTypes lists registered authenticator types.
func AuthnTypes() []string {
	authnTypes.RLock()
	defer authnTypes.RUnlock()
	out := make([]string, 0, len(authnTypes.m))
	for k := range authnTypes.m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Chain is a built authentication chain.
type Chain struct {
	links []Authenticator
	types []string
}

// BuildChain builds authenticators from config, skipping disabled ones.
func BuildChain(cfgs []*config.Authn, env AuthnEnv) (*Chain, error) {
	c := &Chain{}
	for i, a := range cfgs {
		if !a.Enable {
			continue
		}
		authnTypes.RLock()
		t, ok := authnTypes.m[a.Type]
		authnTypes.RUnlock()
		if !ok {
			c.Close()
			return nil, fmt.Errorf("authentication[%d]: unknown type %q", i, a.Type)
		}
		au, err := t.New(a.Spec, env)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("authentication[%d] (%s): %w", i, a.Type, err)
		}
		c.links = append(c.links, au)
		c.types = append(c.types, a.Type)
	}
	return c, nil
}

// Len is the number of enabled authenticators.
func (c *Chain) Len() int {
	if c == nil {
		return 0
	}
	return len(c.links)
}

// Authenticators returns the chain's authenticators in order (for the API
// to reach a built_in user database).
func (c *Chain) Authenticators() []Authenticator {
	if c == nil {
		return nil
	}
	return append([]Authenticator(nil), c.links...)
}

// Types lists the chain's authenticator types in order.
func (c *Chain) Types() []string { return append([]string(nil), c.types...) }

// Run asks each authenticator in order; the first Allow or Deny decides.
// A chain where everyone ignores denies (nobody vouched for the client).
func (c *Chain) Run(ctx context.Context, ci *ClientInfo) AuthResult {
	for _, l := range c.links {
		r := l.Authenticate(ctx, ci)
		if r.Decision != Ignore {
			return r
		}
	}
	return AuthResult{Decision: Deny, Reason: "no authenticator accepted the client"}
}

// Close releases authenticators that hold resources.
func (c *Chain) Close() {
	if c == nil {
		return
	}
	for _, l := range c.links {
		if cl, ok := l.(io.Closer); ok {
			_ = cl.Close()
		}
	}
}

// Action is what a client wants to do with a topic.
type Action string

// Actions checked by authorization.
const (
	ActionPublish   Action = "publish"
	ActionSubscribe Action = "subscribe"
)

// Authorizer decides whether a client may publish to or subscribe to a
// topic (the topic as the device wrote it, before the mountpoint). It is
// called on every publish and subscribe and must be fast and safe for
// concurrent use.
type Authorizer interface {
	Authorize(ci *ClientInfo, action Action, topic string) bool
}

// AuthorizerFunc adapts a function to Authorizer.
type AuthorizerFunc func(ci *ClientInfo, action Action, topic string) bool

// Authorize implements Authorizer.
func (f AuthorizerFunc) Authorize(ci *ClientInfo, a Action, t string) bool { return f(ci, a, t) }

// Errors returned to protocols, which map them to their own codes.
var (
	// ErrNotAuthorized: authentication denied the client.
	ErrNotAuthorized = errors.New("not authorized")
	// ErrDenied: authorization refused a publish or subscribe.
	ErrDenied = errors.New("denied by authorization")
	// ErrClosed: the client, its listener or its gateway has gone.
	ErrClosed = errors.New("client closed")
)
