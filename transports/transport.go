// Package transports is the listener layer under every gateway: TCP, TLS,
// UDP, DTLS and serial listeners, selected by
// [gateway.<kind>.listeners.<type>.<name>], with the limits every type
// shares (access rules, max_connections, max_conn_rate) and byte counters
// per listener and per connection.
//
// Protocols never open sockets themselves: the gateway framework opens a
// Listener from config and hands it to the protocol, which accepts Conns.
package transports

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/metrics"
)

// Errors a caller may branch on.
var (
	// ErrRestartRequired is returned by Listener.Update when the change
	// touches the socket itself (bind, socket or TLS options), so the
	// listener must be closed and opened again.
	ErrRestartRequired = errors.New("transports: change needs a listener restart")
	// ErrDenied is an access rule refusing a peer.
	ErrDenied = errors.New("transports: denied by access rules")
	// ErrTooMany is max_connections reached.
	ErrTooMany = errors.New("transports: max_connections reached")
	// ErrRateLimited is max_conn_rate exceeded.
	ErrRateLimited = errors.New("transports: max_conn_rate exceeded")
)

// Type is one listener type. Implementations register from init.
type Type struct {
	Name    string
	Aliases []string
	// NewSpec returns the type's own settings with defaults (a pointer).
	NewSpec func() any
	// Open starts listening. It must not block beyond binding.
	Open func(ctx context.Context, cfg *config.Listener, env Env) (Listener, error)
}

var types = struct {
	sync.RWMutex
	m map[string]Type
}{m: map[string]Type{}}

// Register adds a listener type and its config schema. Duplicates panic.
func Register(t Type) {
	types.Lock()
	if _, dup := types.m[t.Name]; dup {
		types.Unlock()
		panic("transports: type " + t.Name + " registered twice")
	}
	types.m[t.Name] = t
	types.Unlock()
	config.RegisterListener(config.ListenerSchema{Name: t.Name, Aliases: t.Aliases, NewSpec: t.NewSpec})
}

// Types lists the registered listener types, sorted.
func Types() []string {
	types.RLock()
	defer types.RUnlock()
	out := make([]string, 0, len(types.m))
	for k := range types.m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Env is what a listener gets from the framework.
type Env struct {
	Logger *slog.Logger
	// Metrics is the listener's counter set (bytes.received, bytes.sent,
	// connections.count, connections.refused.<reason>). May be nil.
	Metrics *metrics.Set
}

// Listener accepts connections of one configured listener.
type Listener interface {
	// Accept waits for the next admitted connection. After Close it returns
	// an error wrapping net.ErrClosed.
	Accept() (Conn, error)
	// Addr is the bound address (useful with bind = "127.0.0.1:0").
	Addr() net.Addr
	// Close stops accepting. Connections already accepted stay open; their
	// owner closes them.
	Close() error
	// Update applies a changed config without touching the socket when
	// only limits or access rules changed; otherwise ErrRestartRequired.
	Update(cfg *config.Listener) error
}

// Conn is an accepted connection: a TCP or TLS stream, a virtual UDP or
// DTLS connection, or a serial port.
type Conn interface {
	net.Conn
	// Info describes the connection. The pointer is stable for the Conn's life.
	Info() *ConnInfo
}

// ConnInfo is what the transport knows about a connection.
type ConnInfo struct {
	ListenerID string
	Transport  string
	// Peer is the address the connection was accepted from (zero for
	// serial). A udp Rebinder.TakeOver updates it from the goroutine that
	// calls TakeOver; other goroutines should not read it after accept.
	// For dtls sessions that migrate by Connection ID, see CurrentPeer.
	Peer     netip.AddrPort
	PeerCert *x509.Certificate
	// CertCN and CertDN are the peer certificate's subject common name and
	// full distinguished name, when a certificate was presented.
	CertCN, CertDN string
	Accepted       time.Time

	BytesIn, BytesOut atomic.Uint64
}

// Open starts a listener of cfg's type.
func Open(ctx context.Context, cfg *config.Listener, env Env) (Listener, error) {
	types.RLock()
	t, ok := types.m[cfg.Transport]
	types.RUnlock()
	if !ok {
		return nil, fmt.Errorf("transports: unknown listener type %q", cfg.Type)
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	l, err := t.Open(ctx, cfg, env)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", cfg.ID(), err)
	}
	return l, nil
}

// SocketChanged reports whether going from a to b needs the socket
// reopened: anything other than limits, access rules, mountpoint and
// authentication.
func SocketChanged(a, b *config.Listener) bool {
	return a.Transport != b.Transport || a.Bind != b.Bind || a.Enable != b.Enable ||
		!reflect.DeepEqual(a.Spec, b.Spec)
}

// Guard applies the limits every listener type shares: ordered access
// rules, max_connections and a max_conn_rate token bucket. Refusals are
// counted in the listener's metrics by reason.
type Guard struct {
	mu      sync.Mutex
	rules   []config.AccessRule
	maxConn config.Limit
	rate    config.Limit
	tokens  float64
	last    time.Time
	now     func() time.Time
	active  atomic.Int64
	m       *metrics.Set
	refused [3]*metrics.Counter
	current *metrics.Gauge
}

// NewGuard builds a guard from a listener config.
func NewGuard(cfg *config.Listener, m *metrics.Set) *Guard {
	g := &Guard{now: time.Now, m: m}
	if m != nil {
		g.refused[0] = m.Counter("connections.refused.access_rules")
		g.refused[1] = m.Counter("connections.refused.max_connections")
		g.refused[2] = m.Counter("connections.refused.max_conn_rate")
		g.current = m.Gauge("connections.count")
	}
	g.Update(cfg)
	return g
}

// Update swaps in new limits and rules; existing connections are untouched.
func (g *Guard) Update(cfg *config.Listener) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.rules = append([]config.AccessRule(nil), cfg.AccessRules...)
	g.maxConn = cfg.MaxConnections
	if g.rate != cfg.MaxConnRate {
		g.rate = cfg.MaxConnRate
		g.tokens = float64(cfg.MaxConnRate)
		g.last = g.now()
	}
}

// Allowed checks the access rules only (first match wins; no match allows).
func (g *Guard) Allowed(addr netip.Addr) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.allowedLocked(addr)
}

func (g *Guard) allowedLocked(addr netip.Addr) bool {
	for _, r := range g.rules {
		if r.Matches(addr) {
			return r.Allow
		}
	}
	return true
}

// Admit decides on a new connection from addr (zero for serial: rules are
// skipped). On success the caller must call Release when it ends.
func (g *Guard) Admit(addr netip.Addr) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if addr.IsValid() && !g.allowedLocked(addr.Unmap()) {
		g.count(0)
		return ErrDenied
	}
	if !g.maxConn.IsUnlimited() && g.active.Load() >= int64(g.maxConn) {
		g.count(1)
		return ErrTooMany
	}
	if !g.rate.IsUnlimited() {
		now := g.now()
		g.tokens += now.Sub(g.last).Seconds() * float64(g.rate)
		if g.tokens > float64(g.rate) {
			g.tokens = float64(g.rate)
		}
		g.last = now
		if g.tokens < 1 {
			g.count(2)
			return ErrRateLimited
		}
		g.tokens--
	}
	g.active.Add(1)
	if g.current != nil {
		g.current.Inc()
	}
	return nil
}

// Release ends one admitted connection.
func (g *Guard) Release() {
	g.active.Add(-1)
	if g.current != nil {
		g.current.Dec()
	}
}

// Active is the number of admitted connections now open.
func (g *Guard) Active() int { return int(g.active.Load()) }

func (g *Guard) count(i int) {
	if g.refused[i] != nil {
		g.refused[i].Inc()
	}
}

// counted wraps a net.Conn to count bytes per connection and per listener,
// and to release its guard slot exactly once on Close.
type counted struct {
	net.Conn
	info      *ConnInfo
	in, out   *metrics.Counter
	release   func()
	closeOnce sync.Once
	closeErr  error
}

func newCounted(c net.Conn, info *ConnInfo, m *metrics.Set, release func()) *counted {
	cc := &counted{Conn: c, info: info, release: release}
	if m != nil {
		cc.in = m.Counter("bytes.received")
		cc.out = m.Counter("bytes.sent")
	}
	return cc
}

func (c *counted) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.info.BytesIn.Add(uint64(n))
		if c.in != nil {
			c.in.Add(uint64(n))
		}
	}
	return n, err
}

func (c *counted) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.info.BytesOut.Add(uint64(n))
		if c.out != nil {
			c.out.Add(uint64(n))
		}
	}
	return n, err
}

func (c *counted) Close() error {
	c.closeOnce.Do(func() {
		c.closeErr = c.Conn.Close()
		if c.release != nil {
			c.release()
		}
	})
	return c.closeErr
}

func (c *counted) Info() *ConnInfo { return c.info }

// NetConn returns the wrapped connection (for TLS state and socket options).
func (c *counted) NetConn() net.Conn { return c.Conn }

func addrPort(a net.Addr) netip.AddrPort {
	switch x := a.(type) {
	case *net.TCPAddr:
		return x.AddrPort()
	case *net.UDPAddr:
		return x.AddrPort()
	}
	ap, _ := netip.ParseAddrPort(a.String())
	return ap
}

// bindAddr turns "1884" into ":1884".
func bindAddr(b string) string {
	for _, c := range b {
		if c < '0' || c > '9' {
			return b
		}
	}
	return ":" + b
}

// Rebinder is implemented by the Conns of a udp listener. A UDP "connection"
// is only a peer address, and NAT rebinding changes it mid-session: the
// device's next datagram arrives from a new address and so on a new Conn.
// Once the protocol has matched that datagram to the identity an existing
// Conn serves (MQTT-SN clientid, CoAP token…), it calls
// existing.TakeOver(newConn): datagrams from the new address reach the
// existing Conn from then on, its writes go there, and newConn is closed.
// The datagram already read from newConn is the protocol's to handle.
//
// The reverse case needs nothing from the transport: when a stranger
// reuses an address an old session had, its datagrams arrive on the old
// Conn and the protocol, seeing a different identity, must not hand it the
// old session.
type Rebinder interface {
	TakeOver(other Conn) error
}

// PacketServer is a datagram Conn that can push datagrams instead of being
// read: after ServePackets, fn gets each datagram (in its own buffer: copy
// what you keep) on a goroutine that exists only while datagrams are
// waiting — one at a time per Conn, in order — and end is called once,
// after the last fn, when the Conn has ended (closed, expired, taken over
// by another Conn, the listener closed). Read must not be used after it. A
// protocol with thousands of mostly silent peers then keeps no goroutine,
// stack or buffer per idle peer. The udp listener's Conns implement it.
type PacketServer interface {
	ServePackets(fn func(p []byte), end func(err error))
}

// Unwrap follows NetConn() wrappers down to the transport's own Conn.
func Unwrap(c net.Conn) net.Conn {
	for {
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return c
		}
		c = w.NetConn()
	}
}

// IsDatagram reports whether c (or what it wraps) is a datagram Conn.
func IsDatagram(c net.Conn) bool {
	for {
		if _, ok := c.(Datagram); ok {
			return true
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return false
		}
		c = w.NetConn()
	}
}

// Datagram is implemented by Conns of packet listeners (udp, dtls): each
// Read returns exactly one datagram (truncated to the buffer if larger)
// and each Write sends one.
type Datagram interface {
	Datagram()
}
