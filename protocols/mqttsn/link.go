package mqttsn

import (
	"context"
	"encoding/hex"
	"net"
	"net/netip"
	"reflect"
	"strconv"
	"sync"
	"time"

	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/agent/metrics"
	"github.com/edgeway/edgeway/transports"
)

// The peer abstraction. A channel (one client, keyed by clientid) talks to
// its device through a link and a route on it:
//
//   - a connLink is one udp or dtls Conn, i.e. one peer address; a plain
//     device sits on it at the zero route, and a forwarder's nodes sit on
//     it at routes carrying their Wireless Node Id;
//   - a busLink is one serial listener's bus; nodes sit on it at routes
//     carrying their node address (and a Wireless Node Id when the node is
//     itself a forwarder).
//
// A link demultiplexes inbound messages by route to the channel bound
// there. Bindings move when a client shows up elsewhere (NAT rebinding,
// another forwarder); the channel, not the link, owns the session.

// route is where on a link a device sits.
type route struct {
	node byte   // serial node address; 0 on udp/dtls and length-framed serial
	wnid string // forwarder Wireless Node Id; "" for a direct device
}

// link is one transport-level path to one or more devices.
type link interface {
	// send writes one encoded MQTT-SN message to r; msg is not retained.
	send(r route, msg []byte) error
	listener() *gateway.Listener
	// conn is the transport connection, for ClientInfo (nil while a
	// serial port is down).
	conn() transports.Conn
	// describe names r for logs and connectionless client ids.
	describe(r route) string
	// park is where a channel bound at r waits when the link goes away,
	// so that its device's next message finds it (zero: no parking).
	parkKey(r route) parkKey
	base() *demux
}

// demux is the binding table every link has. Most links carry one
// direct device, so that binding has a field of its own and the map is
// made only for forwarded or serial routes.
type demux struct {
	mu     sync.Mutex
	direct *channel // at route{}
	peers  map[route]*channel
	qos3   map[route]*gateway.Client // connectionless (QoS -1) publishers
	dead   bool
}

func (d *demux) lookup(r route) *channel {
	d.mu.Lock()
	defer d.mu.Unlock()
	if r == (route{}) {
		return d.direct
	}
	return d.peers[r]
}

// bind puts ch at r and returns who was there. It fails on a dead link.
func (d *demux) bind(r route, ch *channel) (prev *channel, ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.dead {
		return nil, false
	}
	if r == (route{}) {
		prev, d.direct = d.direct, ch
		return prev, true
	}
	if d.peers == nil {
		d.peers = map[route]*channel{}
	}
	prev = d.peers[r]
	d.peers[r] = ch
	return prev, true
}

func (d *demux) unbind(r route, ch *channel) {
	d.mu.Lock()
	if r == (route{}) {
		if d.direct == ch {
			d.direct = nil
		}
	} else if d.peers[r] == ch {
		delete(d.peers, r)
	}
	d.mu.Unlock()
}

// only reports whether ch is the one binding of the link.
func (d *demux) only(ch *channel) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.direct == ch && len(d.peers) == 0 && len(d.qos3) == 0
}

func (d *demux) empty() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.direct == nil && len(d.peers) == 0 && len(d.qos3) == 0
}

// kill marks the link dead and returns what was bound to it.
func (d *demux) kill() (map[route]*channel, map[route]*gateway.Client) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.dead = true
	p, q := d.peers, d.qos3
	if d.direct != nil {
		if p == nil {
			p = map[route]*channel{}
		}
		p[route{}] = d.direct
	}
	d.direct, d.peers, d.qos3 = nil, nil, nil
	return p, q
}

// parkKey identifies a device by the address it was last seen at.
type parkKey struct {
	listener string
	peer     netip.AddrPort
	r        route
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 256); return &b }}

func getBuf() *[]byte { return bufPool.Get().(*[]byte) }

func putBuf(b *[]byte) {
	if cap(*b) <= 4096 {
		*b = (*b)[:0]
		bufPool.Put(b)
	}
}

// connLink is one udp or dtls Conn.
type connLink struct {
	demux
	p *proto
	l *gateway.Listener
	c transports.Conn
	// idle closes a Conn on which no client shows up within the
	// gateway's idle_timeout (a SEARCHGW, a stray datagram).
	idle     *gateway.IdleWatch
	idleOnce sync.Once
}

// settle stops the idle watch once a client lives on the link.
func (k *connLink) settle() { k.idleOnce.Do(func() { k.idle.Stop() }) }

func (k *connLink) base() *demux                { return &k.demux }
func (k *connLink) listener() *gateway.Listener { return k.l }
func (k *connLink) conn() transports.Conn       { return k.c }

func (k *connLink) send(r route, msg []byte) error {
	if r.wnid == "" {
		_, err := k.c.Write(msg)
		return err
	}
	bp := getBuf()
	b, err := AppendEncapsulated((*bp)[:0], 0, []byte(r.wnid), msg)
	if err == nil {
		_, err = k.c.Write(b)
	}
	*bp = b
	putBuf(bp)
	return err
}

func (k *connLink) peer() netip.AddrPort { return transports.CurrentPeer(k.c) }

func (k *connLink) describe(r route) string {
	s := k.peer().String()
	if r.wnid != "" {
		s += "/" + hex.EncodeToString([]byte(r.wnid))
	}
	return s
}

func (k *connLink) parkKey(r route) parkKey {
	return parkKey{listener: k.l.ID(), peer: k.peer(), r: r}
}

// serve reads datagrams until the Conn ends, then releases its bindings.
func (k *connLink) serve(size int) {
	buf := make([]byte, size)
	for {
		n, err := k.c.Read(buf)
		if err != nil {
			break
		}
		k.p.received(k, route{}, buf[:n])
	}
	k.finish()
}

// finish runs once the link's Conn has ended and nothing more is read.
func (k *connLink) finish() {
	k.settle()
	k.p.linkDown(k)
	_ = k.c.Close()
}

// takeOver moves other's address onto k (udp NAT rebinding): k's Conn
// serves the new address from now on and other's Conn ends.
func (k *connLink) takeOver(other *connLink) bool {
	rb, ok := unwrapConn(k.c).(transports.Rebinder)
	if !ok {
		return false
	}
	if err := rb.TakeOver(unwrapConn(other.c)); err != nil {
		return false
	}
	// The transport ended other's Conn; closing the framework's wrapper
	// too drops it from the listener's table at once.
	other.settle()
	_ = other.c.Close()
	return true
}

// unwrapConn finds the transport's own Conn under the framework's
// wrappers: through NetConn where a wrapper offers it, else through the
// exported embedded Conn field of the gateway listener's tracking wrapper.
func unwrapConn(c transports.Conn) transports.Conn {
	for range 8 {
		if _, ok := c.(transports.Rebinder); ok {
			return c
		}
		if x, ok := c.(interface{ NetConn() net.Conn }); ok {
			if n, ok := x.NetConn().(transports.Conn); ok {
				c = n
				continue
			}
		}
		v := reflect.ValueOf(c)
		if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
			return c
		}
		f := v.Elem().FieldByName("Conn")
		if !f.IsValid() || !f.CanInterface() {
			return c
		}
		n, ok := f.Interface().(transports.Conn)
		if !ok || n == nil {
			return c
		}
		c = n
	}
	return c
}

// busLink is one serial listener's bus. The port underneath may come and
// go (the transport reopens it); the bus and its bindings stay.
type busLink struct {
	demux
	p      *proto
	l      *gateway.Listener
	opts   SerialOptions
	device string
	allow  [256]bool

	cmu sync.Mutex
	c   transports.Conn

	out chan []byte // frames for the writer

	// half duplex: when each node was last heard, and what waits for it
	hmu   sync.Mutex
	heard map[byte]time.Time
	held  map[byte][][]byte

	framesIn, badCRC, noise, tooLarge, dropped, heldC, denied *metrics.Counter
}

// Per-node frames kept for a half-duplex node between its polls.
const maxHeldFrames = 64

func newBusLink(p *proto, l *gateway.Listener, opts SerialOptions) *busLink {
	b := &busLink{p: p, l: l, opts: opts, device: l.Addr(), out: make(chan []byte, 256),
		heard: map[byte]time.Time{}, held: map[byte][][]byte{}}
	if len(opts.Nodes) == 0 {
		for i := minNode; i <= maxNode; i++ {
			b.allow[i] = true
		}
	}
	for _, n := range opts.Nodes {
		b.allow[n] = true
	}
	m := l.Metrics()
	b.framesIn = m.Counter("frames.received")
	b.badCRC = m.Counter("frames.bad_crc")
	b.noise = m.Counter("frames.noise_octets")
	b.tooLarge = m.Counter("frames.too_large")
	b.dropped = m.Counter("frames.dropped")
	b.heldC = m.Counter("frames.held")
	b.denied = m.Counter("frames.unknown_node")
	return b
}

func (b *busLink) base() *demux                { return &b.demux }
func (b *busLink) listener() *gateway.Listener { return b.l }

func (b *busLink) conn() transports.Conn {
	b.cmu.Lock()
	defer b.cmu.Unlock()
	return b.c
}

func (b *busLink) setConn(c transports.Conn) {
	b.cmu.Lock()
	b.c = c
	b.cmu.Unlock()
}

func (b *busLink) describe(r route) string {
	s := "serial:" + b.device
	if b.opts.Framing == FramingSLIP {
		s += "#" + strconv.Itoa(int(r.node))
	}
	if r.wnid != "" {
		s += "/" + hex.EncodeToString([]byte(r.wnid))
	}
	return s
}

// Nodes on a bus never change address, so there is nothing to park.
func (b *busLink) parkKey(route) parkKey { return parkKey{} }

func (b *busLink) send(r route, msg []byte) error {
	var frame []byte
	if r.wnid != "" {
		enc, err := AppendEncapsulated(make([]byte, 0, len(msg)+len(r.wnid)+3), 0, []byte(r.wnid), msg)
		if err != nil {
			return err
		}
		msg = enc
	}
	if b.opts.Framing == FramingSLIP {
		frame = AppendSLIPFrame(make([]byte, 0, len(msg)+8), r.node, msg)
	} else {
		frame = append([]byte(nil), msg...)
	}
	b.hmu.Lock()
	defer b.hmu.Unlock()
	if b.opts.HalfDuplex && r.node != broadcastNode && time.Since(b.heard[r.node]) > b.opts.Turnaround.D() {
		q := b.held[r.node]
		if len(q) >= maxHeldFrames {
			q = q[1:]
			b.dropped.Inc()
		}
		b.held[r.node] = append(q, frame)
		b.heldC.Inc()
		return nil
	}
	b.enqueueLocked(frame)
	return nil
}

func (b *busLink) enqueueLocked(frame []byte) {
	select {
	case b.out <- frame:
	default:
		b.dropped.Inc()
	}
}

// heardFrom opens node's half-duplex window and sends what waited for it.
func (b *busLink) heardFrom(node byte) {
	if !b.opts.HalfDuplex {
		return
	}
	b.hmu.Lock()
	b.heard[node] = time.Now()
	q := b.held[node]
	delete(b.held, node)
	for _, f := range q {
		b.enqueueLocked(f)
	}
	b.hmu.Unlock()
}

// writer sends frames in order while ctx lasts.
func (b *busLink) writer(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case f := <-b.out:
			c := b.conn()
			if c == nil {
				b.dropped.Inc()
				continue
			}
			if _, err := c.Write(f); err != nil {
				b.dropped.Inc()
			}
		}
	}
}

// read runs the framer over one open port until it fails.
func (b *busLink) read(c transports.Conn) {
	buf := make([]byte, 512)
	var last framerStats
	count := func(s framerStats) {
		b.framesIn.Add(s.frames - last.frames)
		b.badCRC.Add(s.badCRC - last.badCRC)
		b.noise.Add(s.noise - last.noise)
		b.tooLarge.Add(s.tooLarge - last.tooLarge)
		last = s
	}
	if b.opts.Framing == FramingSLIP {
		var fr slipReader
		emit := func(node byte, msg []byte) {
			if !b.allow[node] {
				b.denied.Inc()
				return
			}
			b.heardFrom(node)
			b.p.received(b, route{node: node}, msg)
		}
		for {
			n, err := c.Read(buf)
			if n > 0 {
				fr.feed(buf[:n], emit)
				count(fr.stats)
			}
			if err != nil {
				return
			}
		}
	}
	fr := lengthReader{gap: lengthFrameGap}
	emit := func(msg []byte) {
		b.heardFrom(0)
		b.p.received(b, route{}, msg)
	}
	for {
		n, err := c.Read(buf)
		if n > 0 {
			fr.feed(buf[:n], time.Now(), emit)
			count(fr.stats)
		}
		if err != nil {
			return
		}
	}
}

// lengthFrameGap: a length-framed message left incomplete this long is
// discarded (a sender does not pause inside a message).
const lengthFrameGap = 100 * time.Millisecond
