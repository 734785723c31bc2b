package gateway

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/metrics"
	"github.com/edgeway/edgeway/transports"
)

// Gateway statuses, as EMQX's API reports them.
const (
	StatusRunning = "running"
	StatusStopped = "stopped"
)

// Gateway is one loaded instance of a kind, [gateway.<kind>].
type Gateway struct {
	m     *Manager
	kind  Kind
	log   *slog.Logger
	stats *metrics.Set

	// mu serialises lifecycle changes of this gateway.
	mu        sync.Mutex
	proto     Protocol
	cfg       atomic.Pointer[config.Gateway]
	chain     atomic.Pointer[Chain]
	listeners map[string]*Listener
	status    string
	createdAt time.Time
	startedAt time.Time
	stoppedAt time.Time

	clientsMu sync.RWMutex
	clients   map[string]*Client

	connections *metrics.Gauge
}

// Name is the kind name ("mqttsn").
func (g *Gateway) Name() string { return g.kind.Name }

// Kind is the registered kind.
func (g *Gateway) Kind() Kind { return g.kind }

// DataDir is where this gateway keeps state that must survive a restart
// (<agent.data_dir>/gateways/<name>), or "" when the agent has no data
// directory. The directory is not created here: a kind creates it when it
// first writes, so a constructor stays free of I/O.
func (g *Gateway) DataDir() string {
	if g.m == nil || g.m.dataDir == "" {
		return ""
	}
	return filepath.Join(g.m.dataDir, "gateways", g.kind.Name)
}

// Config is the gateway's current config. Treat it as read-only.
func (g *Gateway) Config() *config.Gateway { return g.cfg.Load() }

// Spec is the kind's own settings of the current config.
func (g *Gateway) Spec() any { return g.cfg.Load().Spec }

// Logger is the gateway's logger (attribute gateway=<name>).
func (g *Gateway) Logger() *slog.Logger { return g.log }

// Metrics is the gateway-wide counter set.
func (g *Gateway) Metrics() *metrics.Set { return g.stats }

// Broker-facing and hook-facing helpers live on the manager.
func (g *Gateway) manager() *Manager { return g.m }

// Info is a snapshot for the API and the status page.
type Info struct {
	Name               string         `json:"name"`
	Status             string         `json:"status"`
	CreatedAt          time.Time      `json:"created_at"`
	StartedAt          time.Time      `json:"started_at,omitempty"`
	StoppedAt          time.Time      `json:"stopped_at,omitempty"`
	CurrentConnections int            `json:"current_connections"`
	MaxConnections     int64          `json:"max_connections"`
	Listeners          []ListenerInfo `json:"listeners"`
}

// ListenerInfo describes one listener.
type ListenerInfo struct {
	ID                 string `json:"id"`
	Type               string `json:"type"`
	Name               string `json:"name"`
	Bind               string `json:"bind"`
	Address            string `json:"address,omitempty"`
	Running            bool   `json:"running"`
	Enable             bool   `json:"enable"`
	CurrentConnections int    `json:"current_connections"`
	MaxConnections     int64  `json:"max_connections"`
	Error              string `json:"error,omitempty"`
}

// Info returns the gateway's state.
func (g *Gateway) Info() Info {
	g.mu.Lock()
	defer g.mu.Unlock()
	cfg := g.cfg.Load()
	in := Info{Name: g.kind.Name, Status: g.status, CreatedAt: g.createdAt, StartedAt: g.startedAt, StoppedAt: g.stoppedAt}
	in.CurrentConnections = g.ClientCount()
	for _, lc := range cfg.Listeners {
		li := ListenerInfo{ID: lc.ID(), Type: lc.Type, Name: lc.Name, Bind: lc.Bind, Enable: lc.Enable, MaxConnections: int64(lc.MaxConnections)}
		if l, ok := g.listeners[lc.ID()]; ok {
			li.Running = true
			li.Address = l.Addr()
			li.CurrentConnections = l.ConnCount()
			if err := l.err.Load(); err != nil {
				li.Error = (*err).Error()
				li.Running = false
			}
		}
		if lc.MaxConnections.IsUnlimited() || in.MaxConnections < 0 {
			in.MaxConnections = -1
		} else {
			in.MaxConnections += int64(lc.MaxConnections)
		}
		in.Listeners = append(in.Listeners, li)
	}
	return in
}

// Status is "running" or "stopped".
func (g *Gateway) Status() string {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.status
}

// Listener finds a running listener by id.
func (g *Gateway) Listener(id string) (*Listener, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	l, ok := g.listeners[id]
	return l, ok
}

// Listeners returns the running listeners sorted by id.
func (g *Gateway) Listeners() []*Listener {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]*Listener, 0, len(g.listeners))
	for _, l := range g.listeners {
		out = append(out, l)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID() < out[j].ID() })
	return out
}

// Client finds a connected client by clientid.
func (g *Gateway) Client(clientid string) (*Client, bool) {
	g.clientsMu.RLock()
	defer g.clientsMu.RUnlock()
	c, ok := g.clients[clientid]
	return c, ok
}

// Clients returns every connected client, sorted by clientid.
func (g *Gateway) Clients() []*Client {
	g.clientsMu.RLock()
	out := make([]*Client, 0, len(g.clients))
	for _, c := range g.clients {
		out = append(out, c)
	}
	g.clientsMu.RUnlock()
	sort.Slice(out, func(i, j int) bool { return out[i].info.ClientID < out[j].info.ClientID })
	return out
}

// ClientCount is the number of connected clients.
func (g *Gateway) ClientCount() int {
	g.clientsMu.RLock()
	defer g.clientsMu.RUnlock()
	return len(g.clients)
}

func newGateway(m *Manager, k Kind, cfg *config.Gateway) (*Gateway, error) {
	g := &Gateway{
		m:         m,
		kind:      k,
		log:       m.log.With("gateway", k.Name),
		stats:     m.metrics.Set("gateway/"+k.Name, map[string]string{"gateway": k.Name}),
		listeners: map[string]*Listener{},
		clients:   map[string]*Client{},
		status:    StatusStopped,
		createdAt: time.Now(),
	}
	g.connections = g.stats.Gauge("connections.count")
	chain, err := BuildChain(cfg.Authentication.Chain, m.authnEnv(g.log))
	if err != nil {
		return nil, fmt.Errorf("gateway %s: %w", k.Name, err)
	}
	g.cfg.Store(cfg)
	proto, err := k.New(g)
	if err != nil {
		chain.Close()
		return nil, fmt.Errorf("gateway %s: %w", k.Name, err)
	}
	g.proto = proto
	g.chain.Store(chain)
	return g, nil
}

// start opens every enabled listener. On failure, listeners already
// opened stay open and the error names the ones that failed.
func (g *Gateway) start(ctx context.Context) error {
	cfg := g.cfg.Load()
	if !cfg.Enable {
		return nil
	}
	var errs []error
	for _, lc := range cfg.Listeners {
		if !lc.Enable {
			continue
		}
		if _, running := g.listeners[lc.ID()]; running {
			continue
		}
		if err := g.startListener(ctx, lc); err != nil {
			errs = append(errs, err)
		}
	}
	g.status = StatusRunning
	g.startedAt = time.Now()
	return errors.Join(errs...)
}

func (g *Gateway) startListener(ctx context.Context, lc *config.Listener) error {
	lm := g.m.metrics.Set("listener/"+lc.ID(), map[string]string{"gateway": g.kind.Name, "listener": lc.ID()})
	var chain *Chain
	if lc.Authentication.Set {
		c, err := BuildChain(lc.Authentication.Chain, g.m.authnEnv(g.log))
		if err != nil {
			return fmt.Errorf("%s: %w", lc.ID(), err)
		}
		chain = c
	}
	tl, err := transports.Open(ctx, lc, transports.Env{Logger: g.log.With("listener", lc.ID()), Metrics: lm})
	if err != nil {
		chain.Close()
		return err
	}
	l := &Listener{gw: g, tl: tl, metrics: lm, conns: map[*trackedConn]struct{}{}, done: make(chan struct{})}
	l.cfg.Store(lc)
	l.chain.Store(chain)
	lctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	g.listeners[lc.ID()] = l
	go func() {
		defer close(l.done)
		err := g.proto.Serve(lctx, l)
		if err != nil && lctx.Err() == nil {
			l.err.Store(&err)
			g.log.Error("listener stopped", "listener", lc.ID(), "error", err)
		}
	}()
	g.log.Info("listener started", "listener", lc.ID(), "address", tl.Addr().String())
	return nil
}

// stopListener closes the socket, ends Serve, and closes every
// connection accepted through it (and so the clients on it).
func (g *Gateway) stopListener(ctx context.Context, l *Listener) {
	delete(g.listeners, l.ID())
	l.stopAccepting()
	for _, c := range g.Clients() {
		if c.l == l {
			c.Kick("listener_stopped")
		}
	}
	l.stop(ctx)
	l.chain.Load().Close()
	g.log.Info("listener stopped", "listener", l.ID())
}

func (g *Gateway) stop(ctx context.Context) {
	ls := make([]*Listener, 0, len(g.listeners))
	for _, l := range g.listeners {
		ls = append(ls, l)
		l.stopAccepting()
	}
	for _, c := range g.Clients() {
		c.Kick("gateway_stopped")
	}
	for _, l := range ls {
		g.stopListener(ctx, l)
	}
	if g.status == StatusRunning {
		g.stoppedAt = time.Now()
	}
	g.status = StatusStopped
}

func (g *Gateway) unload(ctx context.Context) {
	g.stop(ctx)
	if s, ok := g.proto.(Stopper); ok {
		if err := s.Stop(ctx); err != nil {
			g.log.Warn("stop", "error", err)
		}
	}
	g.chain.Load().Close()
	g.m.metrics.Remove("gateway/" + g.kind.Name)
}

// update applies a changed config: listeners whose socket settings are the
// same are updated in place and keep their clients; only what changed is
// touched. Everything that can fail is prepared before anything changes.
func (g *Gateway) update(ctx context.Context, nc *config.Gateway) error {
	old := g.cfg.Load()
	if reflect.DeepEqual(old, nc) {
		return nil
	}
	var newChain *Chain
	if !reflect.DeepEqual(old.Authentication, nc.Authentication) {
		c, err := BuildChain(nc.Authentication.Chain, g.m.authnEnv(g.log))
		if err != nil {
			return fmt.Errorf("gateway %s: %w", g.kind.Name, err)
		}
		newChain = c
	}
	if !nc.Enable {
		g.stop(ctx)
		g.swapConfig(nc, newChain)
		return nil
	}
	if !reflect.DeepEqual(old.Spec, nc.Spec) {
		if err := g.proto.Update(nc.Spec); err != nil {
			if !errors.Is(err, ErrRestartRequired) {
				newChain.Close()
				return fmt.Errorf("gateway %s: %w", g.kind.Name, err)
			}
			g.log.Info("restarting gateway for a changed setting")
			g.stop(ctx)
			if s, ok := g.proto.(Stopper); ok {
				_ = s.Stop(ctx)
			}
			g.swapConfig(nc, newChain)
			proto, err := g.kind.New(g)
			if err != nil {
				return fmt.Errorf("gateway %s: %w", g.kind.Name, err)
			}
			g.proto = proto
			return g.start(ctx)
		}
	}
	g.swapConfig(nc, newChain)
	var errs []error
	want := map[string]*config.Listener{}
	for _, lc := range nc.Listeners {
		if lc.Enable {
			want[lc.ID()] = lc
		}
	}
	for id, l := range g.listeners {
		if _, keep := want[id]; !keep {
			g.stopListener(ctx, l)
		}
	}
	for _, lc := range nc.Listeners {
		if !lc.Enable {
			continue
		}
		l, running := g.listeners[lc.ID()]
		if running {
			if err := l.update(ctx, lc); err == nil {
				continue
			} else if !errors.Is(err, transports.ErrRestartRequired) {
				errs = append(errs, err)
				continue
			}
			g.stopListener(ctx, l)
		}
		if err := g.startListener(ctx, lc); err != nil {
			errs = append(errs, err)
		}
	}
	if g.status != StatusRunning {
		g.status = StatusRunning
		g.startedAt = time.Now()
	}
	return errors.Join(errs...)
}

func (g *Gateway) swapConfig(nc *config.Gateway, chain *Chain) {
	g.cfg.Store(nc)
	if chain != nil {
		g.chain.Swap(chain).Close()
	}
}

// IdleWatch closes a connection that has not authenticated within the
// gateway's idle_timeout. Stop it once the client is connected.
type IdleWatch struct{ t *time.Timer }

// Stop cancels the watch; it reports false if the connection was already closed by it.
func (w *IdleWatch) Stop() bool {
	if w == nil || w.t == nil {
		return true
	}
	return w.t.Stop()
}

// WatchIdle starts an idle watch on c with the gateway's idle_timeout.
func (g *Gateway) WatchIdle(c interface{ Close() error }) *IdleWatch {
	d := g.cfg.Load().IdleTimeout.D()
	if d <= 0 {
		return &IdleWatch{}
	}
	return &IdleWatch{t: time.AfterFunc(d, func() {
		g.stats.Counter("connections.idle_timeout").Inc()
		_ = c.Close()
	})}
}
