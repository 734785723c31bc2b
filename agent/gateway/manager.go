package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/hooks"
	"github.com/edgeway/edgeway/agent/metrics"
)

// Errors callers of the Manager branch on.
var (
	ErrNotFound      = errors.New("gateway not loaded")
	ErrAlreadyLoaded = errors.New("gateway already loaded")
	ErrUnknownKind   = errors.New("unknown gateway kind")
)

// ManagerOptions wires a Manager to the rest of the agent.
type ManagerOptions struct {
	Broker  *broker.Broker
	Hooks   *hooks.Bus // may be nil
	Metrics *metrics.Registry
	// Authorizer checks publishes and subscribes; nil allows everything.
	Authorizer Authorizer
	// SecurityProfile is config.ProfileHardened (default) or ProfileLegacy.
	SecurityProfile string
	// AgentVars resolves agent.id, board.serial… in client templates.
	AgentVars config.Vars
	Logger    *slog.Logger
	DataDir   string
}

// Manager owns the gateway instances: load, unload, start, stop, enable,
// disable and update at runtime. Operations on the Manager are serialised;
// clients of one gateway are never disturbed by an operation on another.
type Manager struct {
	broker    *broker.Broker
	hooks     *hooks.Bus
	metrics   *metrics.Registry
	log       *slog.Logger
	agentVars config.Vars
	dataDir   string

	authz   atomic.Pointer[authzBox]
	profile atomic.Pointer[string]

	mu       sync.Mutex
	gateways map[string]*Gateway
}

type authzBox struct{ a Authorizer }

// NewManager builds a Manager. It starts nothing.
func NewManager(o ManagerOptions) *Manager {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Metrics == nil {
		o.Metrics = metrics.NewRegistry()
	}
	if o.Broker == nil {
		o.Broker = broker.New(broker.Options{})
	}
	m := &Manager{broker: o.Broker, hooks: o.Hooks, metrics: o.Metrics, log: o.Logger, agentVars: o.AgentVars,
		dataDir: o.DataDir, gateways: map[string]*Gateway{}}
	m.SetAuthorizer(o.Authorizer)
	m.SetSecurityProfile(o.SecurityProfile)
	return m
}

// Broker is the local broker.
func (m *Manager) Broker() *broker.Broker { return m.broker }

// Hooks is the event bus (may be nil).
func (m *Manager) Hooks() *hooks.Bus { return m.hooks }

// MetricsRegistry holds every gateway, listener and client counter set.
func (m *Manager) MetricsRegistry() *metrics.Registry { return m.metrics }

// SetAuthorizer replaces the authorizer (a reload of [authorization]).
func (m *Manager) SetAuthorizer(a Authorizer) { m.authz.Store(&authzBox{a}) }

// SetSecurityProfile switches between hardened and legacy.
func (m *Manager) SetSecurityProfile(p string) {
	if p == "" {
		p = config.ProfileHardened
	}
	m.profile.Store(&p)
}

// SecurityProfile is the profile in force.
func (m *Manager) SecurityProfile() string { return *m.profile.Load() }

func (m *Manager) authnEnv(log *slog.Logger) AuthnEnv {
	return AuthnEnv{Logger: log, SecurityProfile: m.SecurityProfile(), DataDir: m.dataDir}
}

// authorize: superusers pass; then the client.authorize hook; then the ACL.
func (m *Manager) authorize(ci *ClientInfo, a Action, topic string) bool {
	if ci.IsSuperuser {
		return true
	}
	switch m.hooks.RunAuthorize(ci.HookClient(), string(a), topic) {
	case hooks.Allow:
		return true
	case hooks.Deny:
		return false
	}
	az := m.authz.Load().a
	ok := az == nil || az.Authorize(ci, a, topic)
	if m.hooks.Enabled(hooks.ClientAuthorize) {
		r := "allow"
		if !ok {
			r = "deny"
		}
		m.hooks.Emit(hooks.Event{Name: hooks.ClientAuthorize, Time: time.Now(), Client: ci.HookClient(), Topic: topic, Reason: r, Attrs: map[string]string{"action": string(a)}})
	}
	return ok
}

// Get returns a loaded gateway.
func (m *Manager) Get(name string) (*Gateway, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.gateways[name]
	return g, ok
}

// List returns the loaded gateways sorted by name.
func (m *Manager) List() []*Gateway {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*Gateway, 0, len(m.gateways))
	for _, g := range m.gateways {
		out = append(out, g)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].kind.Name < out[j].kind.Name })
	return out
}

// Load creates a gateway from its config and starts it (unless enable = false).
func (m *Manager) Load(ctx context.Context, cfg *config.Gateway) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.loadLocked(ctx, cfg)
}

func (m *Manager) loadLocked(ctx context.Context, cfg *config.Gateway) error {
	if _, ok := m.gateways[cfg.Kind]; ok {
		return fmt.Errorf("%w: %s", ErrAlreadyLoaded, cfg.Kind)
	}
	k, ok := LookupKind(cfg.Kind)
	if !ok {
		return fmt.Errorf("%w: %q", ErrUnknownKind, cfg.Kind)
	}
	g, err := newGateway(m, k, cfg)
	if err != nil {
		return err
	}
	g.mu.Lock()
	err = g.start(ctx)
	g.mu.Unlock()
	m.gateways[cfg.Kind] = g
	if err != nil {
		return fmt.Errorf("gateway %s: %w", cfg.Kind, err)
	}
	m.log.Info("gateway loaded", "gateway", cfg.Kind, "status", g.Status())
	return nil
}

// Unload stops a gateway, ends its clients and removes it.
func (m *Manager) Unload(ctx context.Context, name string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.unloadLocked(ctx, name)
}

func (m *Manager) unloadLocked(ctx context.Context, name string) error {
	g, ok := m.gateways[name]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	delete(m.gateways, name)
	g.mu.Lock()
	g.unload(ctx)
	g.mu.Unlock()
	m.log.Info("gateway unloaded", "gateway", name)
	return nil
}

// Update applies a new config to a loaded gateway, touching only what
// changed; an identical config is a no-op.
func (m *Manager) Update(ctx context.Context, cfg *config.Gateway) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.gateways[cfg.Kind]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, cfg.Kind)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.update(ctx, cfg)
}

// Enable starts (true) or stops (false) a loaded gateway; a stopped
// gateway keeps its config and can be enabled again.
func (m *Manager) Enable(ctx context.Context, name string, on bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	g, ok := m.gateways[name]
	if !ok {
		return fmt.Errorf("%w: %s", ErrNotFound, name)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	nc := *g.cfg.Load()
	if nc.Enable == on && (on == (g.status == StatusRunning)) {
		return nil
	}
	nc.Enable = on
	if !on {
		g.stop(ctx)
		g.cfg.Store(&nc)
		return nil
	}
	g.cfg.Store(&nc)
	return g.start(ctx)
}

// Apply makes the loaded gateways match a whole [gateway] table: new kinds
// are loaded, missing ones unloaded, changed ones updated. Errors of
// separate gateways are collected; one failing does not stop the others.
func (m *Manager) Apply(ctx context.Context, gws config.Gateways) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var errs []error
	for _, name := range sortedNames(m.gateways) {
		if _, keep := gws[name]; !keep {
			if err := m.unloadLocked(ctx, name); err != nil {
				errs = append(errs, err)
			}
		}
	}
	for _, name := range gws.Names() {
		cfg := gws[name]
		if g, ok := m.gateways[name]; ok {
			g.mu.Lock()
			err := g.update(ctx, cfg)
			g.mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := m.loadLocked(ctx, cfg); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Close unloads every gateway (sources stop before sinks, so the agent
// calls this before closing the store).
func (m *Manager) Close(ctx context.Context) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, name := range sortedNames(m.gateways) {
		_ = m.unloadLocked(ctx, name)
	}
}

// OnDrop is the broker's OnDrop callback: it counts a dropped delivery on
// the gateway and client the session belongs to and raises message.dropped.
func (m *Manager) OnDrop(sessionID string, msg *broker.Message, reason string) {
	gw, clientid, _ := strings.Cut(sessionID, "/")
	if s, ok := m.metrics.Lookup("gateway/" + gw); ok {
		s.Counter("messages.dropped").Inc()
		s.Counter("delivery.dropped." + reason).Inc()
	}
	if s, ok := m.metrics.Lookup(clientKey(gw, clientid)); ok {
		s.Counter("messages.dropped").Inc()
	}
	if m.hooks.Enabled(hooks.MessageDropped) {
		m.hooks.Emit(hooks.Event{Name: hooks.MessageDropped, Time: time.Now(),
			Client: hooks.Client{Gateway: gw, ClientID: clientid}, Topic: msg.Topic, QoS: msg.QoS, Reason: reason})
	}
}

func sortedNames(m map[string]*Gateway) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
