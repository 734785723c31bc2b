package transports

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/metrics"
)

// UDPOptions is `udp_options` of a udp or dtls listener, named as EMQX's.
type UDPOptions struct {
	// ActiveN is accepted for EMQX compatibility and has no effect.
	ActiveN int `toml:"active_n"`
	// Recbuf and Sndbuf size the socket's kernel buffers; 0 keeps the
	// system's. A larger recbuf absorbs bursts of many devices at once.
	Recbuf config.ByteSize `toml:"recbuf"`
	Sndbuf config.ByteSize `toml:"sndbuf"`
	// Buffer is accepted for EMQX compatibility; datagrams are read into a
	// buffer of max_datagram_size.
	Buffer config.ByteSize `toml:"buffer"`
	// Reuseaddr is accepted for EMQX compatibility and has no effect: a
	// UDP port has no TIME_WAIT to wait out on restart, and SO_REUSEADDR
	// on a unicast UDP socket would only let another process bind the
	// same port and silently take its datagrams.
	Reuseaddr bool `toml:"reuseaddr"`
}

// DefaultUDPOptions are EMQX's defaults.
func DefaultUDPOptions() UDPOptions { return UDPOptions{ActiveN: 100, Reuseaddr: true} }

// Validate implements config.Validator.
func (o *UDPOptions) Validate() error {
	if o.ActiveN < 0 {
		return config.Field("active_n", "must not be negative")
	}
	return nil
}

// HealthCheck is a fixed request/reply pair answered straight from the
// read loop, without creating a connection, for cloud load-balancer UDP
// probes. Both empty turns it off.
type HealthCheck struct {
	Request string `toml:"request"`
	Reply   string `toml:"reply"`
}

// UDPSpec is the settings of a udp listener. One socket serves every
// peer; each source address becomes a virtual Conn.
//
// Listener metrics besides the common ones: datagrams.dropped (a peer's
// queue was full), datagrams.dropped.too_large, datagrams.dropped.backlog
// (too many new peers waiting for Accept), datagrams.dropped.kernel (the
// socket's receive buffer overflowed before edgeway could read: raise
// udp_options.recbuf; sampled every second, Linux only),
// health_check.answered and connections.expired.
type UDPSpec struct {
	UDPOptions UDPOptions `toml:"udp_options"`
	// MaxDatagramSize is the largest datagram accepted; larger ones are
	// dropped and counted.
	MaxDatagramSize config.ByteSize `toml:"max_datagram_size"`
	// IdleTimeout closes a virtual connection that has seen no datagram
	// either way and no Read for this long, so peers that went away do not
	// hold memory and a max_connections slot forever. It is a floor under
	// the protocols' own keepalives (MQTT-SN, LwM2M lifetimes), which
	// decide when a session is dead; "0s" turns it off.
	IdleTimeout config.Duration `toml:"idle_timeout"`
	// RecvQueue is how many datagrams each peer may have waiting for Read.
	// When full, newly arriving datagrams are dropped (tail drop, as the
	// kernel does with a full socket buffer) and counted; the protocols'
	// retransmissions recover.
	RecvQueue int `toml:"recv_queue"`
	// AcceptBacklog is how many new peers may wait for Accept; beyond it
	// their first datagrams are dropped and counted.
	AcceptBacklog int         `toml:"accept_backlog"`
	HealthCheck   HealthCheck `toml:"health_check"`
}

// Defaults of a udp listener.
const (
	DefaultMaxDatagramSize = 2048
	DefaultUDPIdleTimeout  = 5 * time.Minute
	DefaultRecvQueue       = 64
	DefaultAcceptBacklog   = 1024
)

// DefaultUDPSpec returns a udp listener's settings with defaults.
func DefaultUDPSpec() *UDPSpec {
	return &UDPSpec{
		UDPOptions:      DefaultUDPOptions(),
		MaxDatagramSize: DefaultMaxDatagramSize,
		IdleTimeout:     config.Duration(DefaultUDPIdleTimeout),
		RecvQueue:       DefaultRecvQueue,
		AcceptBacklog:   DefaultAcceptBacklog,
	}
}

// Validate implements config.Validator.
func (s *UDPSpec) Validate() error {
	var errs []error
	if s.MaxDatagramSize < 1 || s.MaxDatagramSize > 65535 {
		errs = append(errs, config.Field("max_datagram_size", "must be 1B..65535B, got %s", s.MaxDatagramSize))
	}
	if s.RecvQueue < 1 || s.RecvQueue > 65536 {
		errs = append(errs, config.Field("recv_queue", "must be 1..65536, got %d", s.RecvQueue))
	}
	if s.AcceptBacklog < 1 || s.AcceptBacklog > 1<<20 {
		errs = append(errs, config.Field("accept_backlog", "must be 1..1048576, got %d", s.AcceptBacklog))
	}
	if (s.HealthCheck.Request == "") != (s.HealthCheck.Reply == "") {
		errs = append(errs, config.Field("health_check", "request and reply go together"))
	}
	return errors.Join(errs...)
}

func init() {
	Register(Type{
		Name:    "udp",
		NewSpec: func() any { return DefaultUDPSpec() },
		Open: func(ctx context.Context, cfg *config.Listener, env Env) (Listener, error) {
			return listenUDP(ctx, cfg, env)
		},
	})
}

// Metric names of a udp listener.
const (
	mDatagramsDropped = "datagrams.dropped"
	mTooLarge         = "datagrams.dropped.too_large"
	mBacklogFull      = "datagrams.dropped.backlog"
	mKernelDropped    = "datagrams.dropped.kernel"
	mHealthCheck      = "health_check.answered"
	mExpired          = "connections.expired"
)

// smallDgram is the size class most device datagrams fit in; a queued
// datagram holds a buffer of this size or of max_datagram_size.
const smallDgram = 256

// udpListener reads one socket in one goroutine and demultiplexes by
// source address into virtual connections. The demux is a map under a
// RWMutex: the read loop is its only frequent user and takes the read
// lock; writes happen once per peer (new, closed, taken over).
type udpListener struct {
	pc    *net.UDPConn
	cfg   atomic.Pointer[config.Listener]
	env   Env
	guard *Guard
	start time.Time

	maxDgram  int
	queueLen  int
	idle      time.Duration
	hcRequest string
	hcReply   []byte

	mu    sync.RWMutex
	peers map[netip.AddrPort]*vconn

	backlog   chan *vconn
	closed    chan struct{}
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup

	small, large sync.Pool

	in, out, dropped, tooLarge, backlogFull, health, expired, kernelDropped *metrics.Counter
	kernelSeen                                                              uint32 // last SO_MEMINFO drop count; sampler only
}

func listenUDP(ctx context.Context, cfg *config.Listener, env Env) (*udpListener, error) {
	spec := cfg.Spec.(*UDPSpec)
	if err := spec.Validate(); err != nil {
		return nil, err
	}
	var lc net.ListenConfig
	pc, err := lc.ListenPacket(ctx, "udp", bindAddr(cfg.Bind))
	if err != nil {
		return nil, err
	}
	uc := pc.(*net.UDPConn)
	if spec.UDPOptions.Recbuf > 0 {
		_ = uc.SetReadBuffer(int(spec.UDPOptions.Recbuf))
	}
	if spec.UDPOptions.Sndbuf > 0 {
		_ = uc.SetWriteBuffer(int(spec.UDPOptions.Sndbuf))
	}
	if env.Metrics == nil {
		env.Metrics = metrics.NewSet(nil)
	}
	if env.Logger == nil {
		env.Logger = slog.New(slog.DiscardHandler)
	}
	m := env.Metrics
	l := &udpListener{
		pc:          uc,
		env:         env,
		guard:       NewGuard(cfg, m),
		start:       time.Now(),
		maxDgram:    int(spec.MaxDatagramSize),
		queueLen:    spec.RecvQueue,
		idle:        spec.IdleTimeout.D(),
		hcRequest:   spec.HealthCheck.Request,
		hcReply:     []byte(spec.HealthCheck.Reply),
		peers:       map[netip.AddrPort]*vconn{},
		backlog:     make(chan *vconn, spec.AcceptBacklog),
		closed:      make(chan struct{}),
		in:          m.Counter(metrics.BytesReceived),
		out:         m.Counter(metrics.BytesSent),
		dropped:     m.Counter(mDatagramsDropped),
		tooLarge:    m.Counter(mTooLarge),
		backlogFull: m.Counter(mBacklogFull),
		health:      m.Counter(mHealthCheck),
		expired:     m.Counter(mExpired),
	}
	l.cfg.Store(cfg)
	l.wg.Add(1)
	go l.readLoop()
	if _, ok := socketDrops(uc); ok {
		l.kernelDropped = m.Counter(mKernelDropped)
		l.wg.Add(1)
		go l.sampleKernelDrops()
	}
	if l.idle > 0 {
		l.wg.Add(1)
		go l.janitor()
	}
	return l, nil
}

func (l *udpListener) Addr() net.Addr { return l.pc.LocalAddr() }

func (l *udpListener) Update(cfg *config.Listener) error {
	if SocketChanged(l.cfg.Load(), cfg) {
		return ErrRestartRequired
	}
	l.guard.Update(cfg)
	l.cfg.Store(cfg)
	return nil
}

func (l *udpListener) Accept() (Conn, error) {
	for {
		select {
		case c := <-l.backlog:
			if c.dead() {
				continue // expired or closed while waiting
			}
			return c, nil
		case <-l.closed:
			return nil, fmt.Errorf("%s: %w", l.cfg.Load().ID(), net.ErrClosed)
		}
	}
}

// Close stops the read loop and the janitor, closes the socket and ends
// every virtual connection: their Reads return io.EOF.
func (l *udpListener) Close() error {
	l.closeOnce.Do(func() {
		close(l.closed)
		l.closeErr = l.pc.Close()
		l.wg.Wait()
		l.mu.RLock()
		all := make([]*vconn, 0, len(l.peers))
		for _, c := range l.peers {
			all = append(all, c)
		}
		l.mu.RUnlock()
		for _, c := range all {
			c.kill(io.EOF, nil)
		}
	})
	return l.closeErr
}

// clock is monotonic nanoseconds since the listener opened.
func (l *udpListener) clock() int64 { return int64(time.Since(l.start)) }

func (l *udpListener) readLoop() {
	defer l.wg.Done()
	buf := make([]byte, l.maxDgram+1) // one spare byte tells an oversized datagram
	for {
		n, from, err := l.pc.ReadFromUDPAddrPort(buf)
		if err != nil {
			select {
			case <-l.closed:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			l.env.Logger.Debug("udp read failed", "listener", l.cfg.Load().ID(), "error", err)
			time.Sleep(time.Millisecond) // never spin on a persistent error
			continue
		}
		if n > l.maxDgram {
			l.tooLarge.Inc()
			continue
		}
		l.dispatch(buf[:n], from)
	}
}

func (l *udpListener) dispatch(d []byte, from netip.AddrPort) {
	if l.hcRequest != "" && string(d) == l.hcRequest {
		if l.guard.Allowed(from.Addr().Unmap()) {
			// Counted before the reply leaves, so whoever sees the reply
			// also sees the count.
			l.health.Inc()
			_, _ = l.pc.WriteToUDPAddrPort(l.hcReply, from)
		}
		return
	}
	// A second lookup covers a conn closed or taken over between the
	// lookup and the enqueue.
	for range 2 {
		l.mu.RLock()
		c := l.peers[from]
		l.mu.RUnlock()
		if c == nil {
			l.newPeer(d, from)
			return
		}
		if c.enqueue(d) {
			return
		}
	}
}

func (l *udpListener) newPeer(d []byte, from netip.AddrPort) {
	if len(l.backlog) == cap(l.backlog) {
		l.backlogFull.Inc()
		return
	}
	if l.guard.Admit(from.Addr()) != nil {
		return // counted by the guard
	}
	cfg := l.cfg.Load()
	c := &vconn{l: l, peer: from, notify: make(chan struct{}, 1)}
	c.info = ConnInfo{ListenerID: cfg.ID(), Transport: cfg.Transport,
		Peer: netip.AddrPortFrom(from.Addr().Unmap(), from.Port()), Accepted: time.Now()}
	c.last.Store(l.clock())
	b := l.get(len(d))
	copy(*b, d)
	c.q = append(make([]*[]byte, 0, 2), b)
	l.mu.Lock()
	l.peers[from] = c
	l.mu.Unlock()
	select {
	case l.backlog <- c:
	default: // only this goroutine sends, and there was room
		c.kill(io.EOF, l.backlogFull)
	}
}

// sampleKernelDrops moves the kernel's receive-queue drop count into
// datagrams.dropped.kernel, so loss before the read loop is counted like
// every other loss.
func (l *udpListener) sampleKernelDrops() {
	defer l.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-l.closed:
			return
		case <-t.C:
			l.sampleKernelDropsOnce()
		}
	}
}

func (l *udpListener) sampleKernelDropsOnce() {
	if n, ok := socketDrops(l.pc); ok && n != l.kernelSeen {
		l.kernelDropped.Add(uint64(n - l.kernelSeen)) // u32 wrap-around included
		l.kernelSeen = n
	}
}

func (l *udpListener) janitor() {
	defer l.wg.Done()
	t := time.NewTicker(min(max(l.idle/4, 10*time.Millisecond), 30*time.Second))
	defer t.Stop()
	idle := int64(l.idle)
	var stale []*vconn
	for {
		select {
		case <-l.closed:
			return
		case <-t.C:
		}
		now := l.clock()
		l.mu.RLock()
		for _, c := range l.peers {
			if now-c.last.Load() > idle {
				stale = append(stale, c)
			}
		}
		l.mu.RUnlock()
		for _, c := range stale {
			if now-c.last.Load() > idle {
				c.kill(io.EOF, l.expired)
			}
		}
		clear(stale)
		stale = stale[:0]
	}
}

// get returns a pooled buffer of length n.
func (l *udpListener) get(n int) *[]byte {
	p, size := &l.large, l.maxDgram
	if n <= smallDgram && l.maxDgram > smallDgram {
		p, size = &l.small, smallDgram
	}
	if b, ok := p.Get().(*[]byte); ok {
		*b = (*b)[:n]
		return b
	}
	b := make([]byte, n, size)
	return &b
}

func (l *udpListener) put(b *[]byte) {
	if cap(*b) == smallDgram && l.maxDgram > smallDgram {
		l.small.Put(b)
	} else {
		l.large.Put(b)
	}
}

// vconn is one peer of a udp listener: a Conn, a Datagram and a Rebinder.
//
// Lock order: listener.mu before vconn.mu.
type vconn struct {
	l    *udpListener
	info ConnInfo
	last atomic.Int64 // listener clock of the last datagram in or out, or Read
	wd   atomic.Int64 // write deadline, Unix nanoseconds; 0 for none

	mu     sync.Mutex
	peer   netip.AddrPort // the demux key, as the socket reports it
	q      []*[]byte      // inbound datagrams, q[head:] pending
	head   int
	err    error         // set once: io.EOF (ended by the transport) or net.ErrClosed
	notify chan struct{} // capacity 1: a datagram was queued or the conn ended
	rd     deadline

	// Push mode (ServePackets): fn gets each datagram on a worker that
	// runs only while datagrams wait; end is called once, after the last
	// fn, when the conn has ended.
	fn        func(p []byte)
	end       func(err error)
	running   bool // a worker is draining q
	endCalled bool
}

// enqueue copies d into the queue. It reports false when the conn has
// ended, so the caller looks the peer up again.
func (c *vconn) enqueue(d []byte) bool {
	l := c.l
	b := l.get(len(d))
	copy(*b, d)
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		l.put(b)
		return false
	}
	if len(c.q)-c.head >= l.queueLen {
		c.mu.Unlock()
		l.put(b)
		l.dropped.Inc()
		return true
	}
	if c.head > 0 && len(c.q) == cap(c.q) {
		n := copy(c.q, c.q[c.head:])
		clear(c.q[n:])
		c.q, c.head = c.q[:n], 0
	}
	c.q = append(c.q, b)
	start := c.fn != nil && !c.running
	if start {
		c.running = true
	}
	c.mu.Unlock()
	c.last.Store(l.clock())
	if start {
		go c.drain()
	} else {
		c.wake()
	}
	return true
}

// popLocked takes the oldest queued datagram (nil if none) and says
// whether more wait. c.mu is held.
func (c *vconn) popLocked() (b *[]byte, more bool) {
	if c.head >= len(c.q) {
		return nil, false
	}
	b = c.q[c.head]
	c.q[c.head] = nil
	c.head++
	if more = c.head < len(c.q); !more {
		c.q, c.head = c.q[:0], 0
	}
	return b, more
}

// ServePackets implements PacketServer.
func (c *vconn) ServePackets(fn func(p []byte), end func(err error)) {
	c.mu.Lock()
	c.fn, c.end = fn, end
	var endNow error
	switch {
	case c.err != nil:
		c.endCalled, endNow = true, c.err
	case c.head < len(c.q):
		c.running = true
	}
	running := c.running
	c.mu.Unlock()
	switch {
	case endNow != nil:
		go end(endNow)
	case running:
		go c.drain()
	}
}

// drain is the push-mode worker: it hands out what is queued, in order,
// and exits when the queue is empty (or, once the conn has ended, calls
// end).
func (c *vconn) drain() {
	for {
		c.mu.Lock()
		if c.err != nil {
			c.running = false
			call := !c.endCalled
			c.endCalled = true
			err := c.err
			c.mu.Unlock()
			if call {
				c.end(err)
			}
			return
		}
		b, _ := c.popLocked()
		if b == nil {
			c.running = false
			c.mu.Unlock()
			return
		}
		c.mu.Unlock()
		c.count(len(*b))
		c.fn(*b)
		c.l.put(b)
	}
}

func (c *vconn) wake() {
	select {
	case c.notify <- struct{}{}:
	default:
	}
}

func (c *vconn) dead() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err != nil
}

// kill ends the conn with reason: it leaves the demux, drops what is
// queued, releases its guard slot, counts in tally (may be nil) and only
// then wakes readers, so a reader seeing the end sees the counts too. It
// reports whether this call ended it.
func (c *vconn) kill(reason error, tally *metrics.Counter) bool {
	l := c.l
	l.mu.Lock()
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		l.mu.Unlock()
		return false
	}
	c.err = reason
	if l.peers[c.peer] == c {
		delete(l.peers, c.peer)
	}
	q := c.q[c.head:]
	c.q, c.head = nil, 0
	end := c.end != nil && !c.running && !c.endCalled
	if end {
		c.endCalled = true // a running worker calls it when it sees err
	}
	c.mu.Unlock()
	l.mu.Unlock()
	for _, b := range q {
		l.put(b)
	}
	l.guard.Release()
	if tally != nil {
		tally.Inc()
	}
	c.wake()
	if end {
		go c.end(reason)
	}
	return true
}

// Read returns one datagram, truncated to p if larger.
func (c *vconn) Read(p []byte) (int, error) {
	b, err := c.next()
	if err != nil {
		return 0, err
	}
	n := copy(p, *b)
	c.l.put(b)
	c.count(n)
	return n, nil
}

// count records n bytes read (a truncating Read counts what it returned).
func (c *vconn) count(n int) {
	c.info.BytesIn.Add(uint64(n))
	c.l.in.Add(uint64(n))
	c.last.Store(c.l.clock())
}

// next waits for the next datagram; the caller counts it and returns the
// buffer with c.l.put.
func (c *vconn) next() (*[]byte, error) {
	for {
		dl := c.rd.wait()
		select {
		case <-dl:
			return nil, os.ErrDeadlineExceeded
		default:
		}
		c.mu.Lock()
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			c.wake() // pass the news on to a concurrent reader
			if err == io.EOF {
				return nil, io.EOF
			}
			return nil, c.opError("read", err)
		}
		if b, more := c.popLocked(); b != nil {
			c.mu.Unlock()
			if more {
				c.wake()
			}
			return b, nil
		}
		c.mu.Unlock()
		select {
		case <-c.notify:
		case <-dl:
			return nil, os.ErrDeadlineExceeded
		}
	}
}

// Write sends p as one datagram to the peer's current address.
func (c *vconn) Write(p []byte) (int, error) {
	if wd := c.wd.Load(); wd != 0 && time.Now().UnixNano() >= wd {
		return 0, os.ErrDeadlineExceeded
	}
	c.mu.Lock()
	peer, err := c.peer, c.err
	c.mu.Unlock()
	if err != nil {
		return 0, c.opError("write", net.ErrClosed)
	}
	n, err := c.l.pc.WriteToUDPAddrPort(p, peer)
	if n > 0 {
		c.info.BytesOut.Add(uint64(n))
		c.l.out.Add(uint64(n))
		c.last.Store(c.l.clock())
	}
	return n, err
}

// Close ends the conn; the listener keeps serving other peers, and a later
// datagram from this address starts a new conn.
func (c *vconn) Close() error {
	c.kill(net.ErrClosed, nil)
	return nil
}

func (c *vconn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "udp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
}

func (c *vconn) LocalAddr() net.Addr { return c.l.pc.LocalAddr() }

// RemoteAddr is the peer's current address (it changes on TakeOver).
func (c *vconn) RemoteAddr() net.Addr {
	c.mu.Lock()
	p := c.peer
	c.mu.Unlock()
	return net.UDPAddrFromAddrPort(p)
}

func (c *vconn) SetDeadline(t time.Time) error {
	_ = c.SetReadDeadline(t)
	return c.SetWriteDeadline(t)
}

func (c *vconn) SetReadDeadline(t time.Time) error {
	c.rd.set(t)
	c.wake() // a blocked Read picks the new deadline up
	return nil
}

func (c *vconn) SetWriteDeadline(t time.Time) error {
	if t.IsZero() {
		c.wd.Store(0)
	} else {
		c.wd.Store(t.UnixNano())
	}
	return nil
}

func (c *vconn) Info() *ConnInfo { return &c.info }

// Datagram marks vconn as a packet Conn.
func (c *vconn) Datagram() {}

// TakeOver makes c serve other's peer address: the demux entry of other's
// address points to c, c's old address is released (a stranger sending
// from it later gets a new conn), c's writes go to the new address, and
// datagrams other had queued move to c. Other ends (its Read returns
// io.EOF) and its guard slot is released.
//
// c.Info().Peer changes here; read it from the goroutine that calls
// TakeOver or after it.
func (c *vconn) TakeOver(other Conn) error {
	o, ok := asVConn(other)
	if !ok {
		return fmt.Errorf("udp: take over: %T is not a udp connection", other)
	}
	if o.l != c.l {
		return errors.New("udp: take over: connections of different listeners")
	}
	if o == c {
		return nil
	}
	l := c.l
	l.mu.Lock()
	c.mu.Lock()
	o.mu.Lock()
	if c.err != nil || o.err != nil {
		o.mu.Unlock()
		c.mu.Unlock()
		l.mu.Unlock()
		return fmt.Errorf("udp: take over: %w", net.ErrClosed)
	}
	if l.peers[c.peer] == c {
		delete(l.peers, c.peer)
	}
	c.peer = o.peer
	l.peers[c.peer] = c
	o.err = io.EOF
	moved := 0
	for _, b := range o.q[o.head:] {
		if len(c.q)-c.head >= l.queueLen {
			l.put(b)
			l.dropped.Inc()
			continue
		}
		c.q = append(c.q, b)
		moved++
	}
	o.q, o.head = nil, 0
	c.info.Peer = o.info.Peer
	oEnd := o.end != nil && !o.running && !o.endCalled
	if oEnd {
		o.endCalled = true // else o's running worker calls it
	}
	cStart := moved > 0 && c.fn != nil && !c.running
	if cStart {
		c.running = true
	}
	o.mu.Unlock()
	c.mu.Unlock()
	l.mu.Unlock()
	c.last.Store(l.clock())
	l.guard.Release()
	o.wake()
	if moved > 0 {
		c.wake()
	}
	if oEnd {
		go o.end(io.EOF)
	}
	if cStart {
		go c.drain()
	}
	return nil
}

// asVConn finds the vconn under wrappers that expose NetConn.
func asVConn(c net.Conn) (*vconn, bool) {
	for range 8 {
		switch x := c.(type) {
		case *vconn:
			return x, true
		case interface{ NetConn() net.Conn }:
			c = x.NetConn()
		default:
			return nil, false
		}
	}
	return nil, false
}

// deadline is a read deadline as a channel closed when it passes (the
// shape net.Pipe uses). The channel is made on first use, so a conn that
// never sets a deadline pays nothing for it.
type deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{} // nil: no deadline ever set
}

func (d *deadline) set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired: wait until it closed the channel
	}
	d.timer = nil
	closed := d.cancel == nil || isClosed(d.cancel)
	if t.IsZero() {
		if d.cancel != nil && closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if closed {
		d.cancel = make(chan struct{})
	}
	if dur := time.Until(t); dur > 0 {
		ch := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(ch) })
		return
	}
	close(d.cancel)
}

func (d *deadline) wait() chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
