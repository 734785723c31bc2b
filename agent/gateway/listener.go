package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"reflect"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/hooks"
	"github.com/edgeway/edgeway/agent/metrics"
	"github.com/edgeway/edgeway/transports"
)

// Listener is a running listener of a gateway, handed to Protocol.Serve.
type Listener struct {
	gw      *Gateway
	tl      transports.Listener
	cfg     atomic.Pointer[config.Listener]
	chain   atomic.Pointer[Chain] // nil: the gateway's chain
	metrics *metrics.Set
	cancel  context.CancelFunc
	done    chan struct{}
	err     atomic.Pointer[error]

	connsMu sync.Mutex
	conns   map[*trackedConn]struct{}
	closed  bool
}

// ID is "{kind}:{type}:{name}".
func (l *Listener) ID() string { return l.cfg.Load().ID() }

// Config is the listener's current config.
func (l *Listener) Config() *config.Listener { return l.cfg.Load() }

// Gateway is the owning gateway.
func (l *Listener) Gateway() *Gateway { return l.gw }

// Transport is the underlying transport listener (for protocols that need
// the packet socket itself, such as a CoAP server).
func (l *Listener) Transport() transports.Listener { return l.tl }

// Metrics is the listener's counter set.
func (l *Listener) Metrics() *metrics.Set { return l.metrics }

// Addr is the bound address.
func (l *Listener) Addr() string { return l.tl.Addr().String() }

// Logger is the gateway logger with listener=<id>.
func (l *Listener) Logger() *slog.Logger { return l.gw.log.With("listener", l.ID()) }

// ConnCount is the number of open connections accepted here.
func (l *Listener) ConnCount() int {
	l.connsMu.Lock()
	defer l.connsMu.Unlock()
	return len(l.conns)
}

// Accept returns the next connection. The framework closes it when the
// listener stops.
func (l *Listener) Accept() (transports.Conn, error) {
	c, err := l.tl.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, l: l}
	l.connsMu.Lock()
	if l.closed {
		l.connsMu.Unlock()
		c.Close()
		return nil, fmt.Errorf("%s: %w", l.ID(), net.ErrClosed)
	}
	l.conns[tc] = struct{}{}
	l.connsMu.Unlock()
	return tc, nil
}

type trackedConn struct {
	transports.Conn
	l    *Listener
	once sync.Once
}

// NetConn returns the transport's Conn, so transports can unwrap it.
func (c *trackedConn) NetConn() net.Conn { return c.Conn }

// TakeOver passes a NAT rebinding to the transport (transports.Rebinder):
// c takes other's peer address. The caller still closes other, which only
// ends its tracking here.
func (c *trackedConn) TakeOver(other transports.Conn) error {
	r, ok := c.Conn.(transports.Rebinder)
	if !ok {
		return fmt.Errorf("%s: transport %s cannot rebind", c.l.ID(), c.Info().Transport)
	}
	if o, ok := other.(*trackedConn); ok {
		other = o.Conn
	}
	return r.TakeOver(other)
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() {
		c.l.connsMu.Lock()
		delete(c.l.conns, c)
		c.l.connsMu.Unlock()
	})
	return err
}

// stopAccepting closes the socket and cancels Serve; open connections stay.
func (l *Listener) stopAccepting() {
	l.cancel()
	_ = l.tl.Close()
}

// stop closes every connection accepted here and waits for Serve.
func (l *Listener) stop(ctx context.Context) {
	l.stopAccepting()
	l.connsMu.Lock()
	l.closed = true
	conns := make([]*trackedConn, 0, len(l.conns))
	for c := range l.conns {
		conns = append(conns, c)
	}
	l.connsMu.Unlock()
	for _, c := range conns {
		_ = c.Close()
	}
	select {
	case <-l.done:
	case <-ctx.Done():
		l.gw.log.Warn("listener did not stop in time", "listener", l.ID())
	}
}

// update applies a listener config that keeps the same socket.
func (l *Listener) update(_ context.Context, lc *config.Listener) error {
	old := l.cfg.Load()
	if err := l.tl.Update(lc); err != nil {
		return err
	}
	if !reflect.DeepEqual(old.Authentication, lc.Authentication) {
		var chain *Chain
		if lc.Authentication.Set {
			c, err := BuildChain(lc.Authentication.Chain, l.gw.m.authnEnv(l.gw.log))
			if err != nil {
				return fmt.Errorf("%s: %w", lc.ID(), err)
			}
			chain = c
		}
		l.chain.Swap(chain).Close()
	}
	l.cfg.Store(lc)
	return nil
}

// NewClientInfo starts a ClientInfo for a connection accepted here.
func (l *Listener) NewClientInfo(c transports.Conn) *ClientInfo {
	ci := &ClientInfo{Gateway: l.gw.kind.Name, ListenerID: l.ID(), Protocol: l.gw.kind.Name, agentVars: l.gw.m.agentVars}
	if c != nil {
		in := c.Info()
		ci.Peer = in.Peer
		ci.PeerCert = in.PeerCert
		ci.CertCN = in.CertCN
		ci.CertDN = in.CertDN
	}
	return ci
}

// Authenticate applies clientinfo_override, renders the mountpoint, runs
// the authentication chain (the listener's if it has one, else the
// gateway's) and renders the mountpoint again with what authentication
// added. It returns an error wrapping ErrNotAuthorized on a denial.
func (l *Listener) Authenticate(ctx context.Context, ci *ClientInfo) error {
	g := l.gw
	gcfg := g.cfg.Load()
	lcfg := l.cfg.Load()
	if ci.agentVars == nil {
		ci.agentVars = g.m.agentVars
	}
	ov := gcfg.ClientinfoOverride
	if !ov.ClientID.IsZero() {
		ci.ClientID = ov.ClientID.Render(ci)
	}
	if !ov.Username.IsZero() {
		ci.Username = ov.Username.Render(ci)
	}
	if !ov.Password.IsZero() {
		ci.Password = []byte(ov.Password.Render(ci))
	}
	mp := gcfg.EffectiveMountpoint(lcfg)
	ci.Mountpoint = mp.Render(ci)

	res := l.runAuthn(ctx, ci, lcfg)
	if g.m.hooks.Enabled(hooks.ClientAuthenticate) {
		g.m.hooks.Emit(hooks.Event{Name: hooks.ClientAuthenticate, Time: time.Now(), Client: ci.HookClient(), Reason: res.Decision.String()})
	}
	if res.Decision != Allow {
		g.stats.Counter("authentication.failure").Inc()
		reason := res.Reason
		if reason == "" {
			reason = "denied"
		}
		return fmt.Errorf("%w: %s", ErrNotAuthorized, reason)
	}
	g.stats.Counter("authentication.success").Inc()
	ci.IsSuperuser = ci.IsSuperuser || res.IsSuperuser
	if len(res.ClientAttrs) > 0 {
		if ci.ClientAttrs == nil {
			ci.ClientAttrs = map[string]string{}
		}
		for k, v := range res.ClientAttrs {
			ci.ClientAttrs[k] = v
		}
	}
	if !res.ExpireAt.IsZero() {
		ci.ExpireAt = res.ExpireAt
	}
	ci.Mountpoint = mp.Render(ci)
	return nil
}

func (l *Listener) runAuthn(ctx context.Context, ci *ClientInfo, lcfg *config.Listener) AuthResult {
	g := l.gw
	switch g.m.hooks.RunAuthenticate(ci.HookClient(), ci.Password) {
	case hooks.Allow:
		return AuthResult{Decision: Allow}
	case hooks.Deny:
		return AuthResult{Decision: Deny, Reason: "denied by client.authenticate hook"}
	}
	if !lcfg.EnableAuthn {
		return AuthResult{Decision: Allow}
	}
	chain := l.chain.Load()
	if chain == nil {
		chain = g.chain.Load()
	}
	if chain.Len() == 0 {
		if g.m.SecurityProfile() == config.ProfileLegacy {
			return AuthResult{Decision: Allow}
		}
		return AuthResult{Decision: Deny, Reason: "no authenticator configured (hardened profile)"}
	}
	return chain.Run(ctx, ci)
}
