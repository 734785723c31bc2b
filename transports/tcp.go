package transports

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/edgeway/edgeway/agent/config"
)

// TCPOptions is `tcp_options` of a tcp or tls listener, named as EMQX's.
type TCPOptions struct {
	// Backlog is accepted for EMQX compatibility; Go listens with the
	// kernel's somaxconn.
	Backlog int  `toml:"backlog"`
	Nodelay bool `toml:"nodelay"`
	// Keepalive is the TCP keepalive idle time; "0s" turns it off.
	Keepalive   config.Duration `toml:"keepalive"`
	Sndbuf      config.ByteSize `toml:"sndbuf"`
	Recbuf      config.ByteSize `toml:"recbuf"`
	Buffer      config.ByteSize `toml:"buffer"`
	SendTimeout config.Duration `toml:"send_timeout"`
	// SendTimeoutClose closes a connection whose write timed out (EMQX default true).
	SendTimeoutClose bool `toml:"send_timeout_close"`
	Reuseaddr        bool `toml:"reuseaddr"`
	// ActiveN is accepted for EMQX compatibility and has no effect.
	ActiveN int `toml:"active_n"`
}

// TCPSpec is the settings of a tcp listener.
type TCPSpec struct {
	// Acceptors is accepted for EMQX compatibility; one accept loop serves
	// any rate a gateway box sees.
	Acceptors  int        `toml:"acceptors"`
	TCPOptions TCPOptions `toml:"tcp_options"`
}

// DefaultTCPOptions are EMQX's defaults, with a 30 s keepalive so dead
// terminals behind carrier NAT are noticed.
func DefaultTCPOptions() TCPOptions {
	return TCPOptions{Backlog: 1024, Nodelay: true, Keepalive: config.Duration(30 * time.Second),
		SendTimeout: config.Duration(15 * time.Second), SendTimeoutClose: true, Reuseaddr: true, ActiveN: 100}
}

// Validate implements config.Validator.
func (o *TCPOptions) Validate() error {
	if o.Backlog < 0 {
		return config.Field("backlog", "must not be negative")
	}
	return nil
}

func init() {
	Register(Type{
		Name:    "tcp",
		NewSpec: func() any { return &TCPSpec{Acceptors: 16, TCPOptions: DefaultTCPOptions()} },
		Open: func(ctx context.Context, cfg *config.Listener, env Env) (Listener, error) {
			spec := cfg.Spec.(*TCPSpec)
			return listenTCP(ctx, cfg, env, spec.TCPOptions, nil)
		},
	})
}

// streamListener serves tcp and tls: wrap is nil for plain TCP.
type streamListener struct {
	ln    net.Listener
	cfg   atomic.Pointer[config.Listener]
	env   Env
	guard *Guard
	opts  TCPOptions
	wrap  func(net.Conn, *ConnInfo) (net.Conn, error)
}

func listenTCP(ctx context.Context, cfg *config.Listener, env Env, opts TCPOptions, wrap func(net.Conn, *ConnInfo) (net.Conn, error)) (*streamListener, error) {
	lc := net.ListenConfig{KeepAlive: -1}
	ln, err := lc.Listen(ctx, "tcp", bindAddr(cfg.Bind))
	if err != nil {
		return nil, err
	}
	l := &streamListener{ln: ln, env: env, guard: NewGuard(cfg, env.Metrics), opts: opts, wrap: wrap}
	l.cfg.Store(cfg)
	return l, nil
}

func (l *streamListener) Addr() net.Addr { return l.ln.Addr() }
func (l *streamListener) Close() error   { return l.ln.Close() }

func (l *streamListener) Update(cfg *config.Listener) error {
	if SocketChanged(l.cfg.Load(), cfg) {
		return ErrRestartRequired
	}
	l.guard.Update(cfg)
	l.cfg.Store(cfg)
	return nil
}

func (l *streamListener) Accept() (Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			// Out of file descriptors and the like: keep serving once the
			// pressure is gone instead of ending the protocol's accept loop.
			l.env.Logger.Warn("accept failed, retrying", "listener", l.cfg.Load().ID(), "error", err, "backoff", backoff)
			time.Sleep(backoff)
			backoff = min(backoff*2, time.Second)
			continue
		}
		backoff = 5 * time.Millisecond
		peer := addrPort(c.RemoteAddr())
		if err := l.guard.Admit(peer.Addr()); err != nil {
			l.env.Logger.Debug("connection refused", "listener", l.cfg.Load().ID(), "peer", peer.String(), "reason", err)
			c.Close()
			continue
		}
		l.tune(c)
		cfg := l.cfg.Load()
		info := &ConnInfo{ListenerID: cfg.ID(), Transport: cfg.Transport, Peer: peer, Accepted: time.Now()}
		nc := c
		if l.wrap != nil {
			nc, err = l.wrap(c, info)
			if err != nil {
				l.env.Logger.Debug("handshake failed", "listener", cfg.ID(), "peer", peer.String(), "error", err)
				c.Close()
				l.guard.Release()
				continue
			}
		}
		var out net.Conn = nc
		if l.opts.SendTimeout > 0 {
			out = &deadlineConn{Conn: nc, timeout: l.opts.SendTimeout.D(), closeOnTimeout: l.opts.SendTimeoutClose}
		}
		return newCounted(out, info, l.env.Metrics, l.guard.Release), nil
	}
}

func (l *streamListener) tune(c net.Conn) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return
	}
	_ = tc.SetNoDelay(l.opts.Nodelay)
	if l.opts.Keepalive > 0 {
		_ = tc.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: l.opts.Keepalive.D(), Interval: l.opts.Keepalive.D() / 3, Count: 3})
	} else {
		_ = tc.SetKeepAlive(false)
	}
	if l.opts.Sndbuf > 0 {
		_ = tc.SetWriteBuffer(int(l.opts.Sndbuf))
	}
	if l.opts.Recbuf > 0 {
		_ = tc.SetReadBuffer(int(l.opts.Recbuf))
	}
}

// deadlineConn bounds each write, so one stuck terminal cannot hold a
// delivery goroutine forever.
type deadlineConn struct {
	net.Conn
	timeout        time.Duration
	closeOnTimeout bool
}

func (c *deadlineConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.timeout))
	n, err := c.Conn.Write(p)
	if err != nil {
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if c.closeOnTimeout {
				c.Conn.Close()
			}
			return n, fmt.Errorf("send timeout after %s: %w", c.timeout, err)
		}
	}
	return n, err
}

// NetConn returns the wrapped connection.
func (c *deadlineConn) NetConn() net.Conn { return c.Conn }
