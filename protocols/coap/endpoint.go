package coap

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/transports"
)

// dedupSize is how many recent request MIDs an endpoint remembers with
// their responses; devices number their messages in sequence, so the
// last few dozen cover every retransmission within EXCHANGE_LIFETIME.
const dedupSize = 32

// readBuf is the largest datagram read: a 1024-byte block with room for
// a generous header.
const readBuf = 2048

type dedupEntry struct {
	mid  uint16
	used bool
	at   time.Time
	resp []byte // nil: a NON, or a CON still being processed
}

// endpoint is one peer: a udp source address or a dtls session. Its read
// goroutine handles requests in order; deliveries and timers write
// through send, which is safe from any goroutine.
type endpoint struct {
	p   *proto
	l   *gateway.Listener
	c   transports.Conn
	m   *listenerMetrics
	log *slog.Logger
	ctx context.Context // the listener's; ends when it stops

	mu      sync.Mutex
	dedup   []dedupEntry // ring, allocated on first request
	dedupAt int
	cl      map[string]*session // connectionless sessions by clientid
	anonID  string
	bound   int // connection-mode sessions bound here
	block1  map[string]*assembly
	block2  map[string]*bodyCache
	waiters map[string]chan *Message // API requests by token
	closed  bool
	wbuf    []byte
}

type assembly struct {
	buf  []byte
	next uint32
	at   time.Time
}

type bodyCache struct {
	body []byte
	etag []byte
	at   time.Time
}

func newEndpoint(p *proto, l *gateway.Listener, c transports.Conn, m *listenerMetrics) *endpoint {
	return &endpoint{p: p, l: l, c: c, m: m, log: l.Logger().With("peer", c.RemoteAddr().String()), ctx: context.Background()}
}

func (ep *endpoint) serve(ctx context.Context) {
	ep.ctx = ctx
	defer ep.end()
	buf := make([]byte, readBuf)
	var msg Message
	for {
		n, err := ep.c.Read(buf)
		if err != nil {
			return
		}
		if ctx.Err() != nil {
			return
		}
		inc(ep.m.in)
		ep.handle(buf[:n], &msg)
	}
}

// end runs when the peer's Conn is gone: connectionless observers end
// with it; connection-mode sessions live on until their heartbeat
// expires or their device comes back from elsewhere.
func (ep *endpoint) end() {
	ep.mu.Lock()
	ep.closed = true
	cl := ep.cl
	ep.cl = nil
	for _, w := range ep.waiters {
		close(w)
	}
	ep.waiters = nil
	for k := range ep.block1 {
		ep.dropAssembly(k)
	}
	ep.mu.Unlock()
	for _, s := range cl {
		s.close("peer_gone")
	}
	_ = ep.c.Close()
}

// send encodes and writes m through the endpoint's buffer. Safe from
// any goroutine.
func (ep *endpoint) send(m *Message) {
	ep.mu.Lock()
	ep.wbuf = Append(ep.wbuf[:0], m)
	_, err := ep.c.Write(ep.wbuf)
	ep.mu.Unlock()
	if err == nil {
		inc(ep.m.out)
	}
}

func (ep *endpoint) write(b []byte) {
	if _, err := ep.c.Write(b); err == nil {
		inc(ep.m.out)
	}
}

func (ep *endpoint) reset(mid uint16) {
	ep.send(&Message{Type: RST, MID: mid})
}

// handle processes one datagram.
func (ep *endpoint) handle(b []byte, m *Message) {
	err := Decode(b, m)
	switch {
	case err == nil:
	case errors.Is(err, ErrShort), errors.Is(err, ErrVersion):
		ep.m.count("packets.dropped.malformed")
		return
	case errors.Is(err, ErrBadOption):
		ep.m.count("packets.bad_option")
		if isRequest(m.Code) && (m.Type == CON || m.Type == NON) {
			ep.reply(m, &Message{Code: codeBadOpt, Payload: []byte("bad critical option")})
		} else if m.Type == CON {
			ep.reset(m.MID)
		}
		return
	default:
		ep.m.count("packets.dropped.malformed")
		if m.Type == CON || m.Type == NON {
			ep.reset(m.MID)
		}
		return
	}
	switch m.Type {
	case ACK, RST:
		ep.p.onAckReset(ep, m)
		return
	}
	class := m.Code >> 5
	switch {
	case m.Code == codeEmpty: // CoAP ping (CON) gets RST; an empty NON is ignored
		if m.Type == CON {
			ep.reset(m.MID)
		}
		return
	case class >= 2 && class <= 5: // a separate response to an API request
		ep.response(m)
		return
	case class != 0:
		if m.Type == CON {
			ep.reset(m.MID)
		}
		return
	}
	if ep.duplicate(m) {
		ep.m.count("packets.duplicate")
		return
	}
	resp := ep.p.request(ep, m)
	if resp != nil {
		ep.reply(m, resp)
	}
}

func isRequest(code uint8) bool { return code>>5 == 0 && code != codeEmpty }

// reply sends resp as the response to req: piggybacked on the ACK of a
// CON, or a NON of its own, and caches it against req's MID.
func (ep *endpoint) reply(req, resp *Message) {
	resp.Token = req.Token
	if req.Type == CON {
		resp.Type, resp.MID = ACK, req.MID
	} else {
		resp.Type, resp.MID = NON, ep.p.nextMID()
	}
	if req.Type != CON {
		ep.send(resp)
		return
	}
	b := Append(nil, resp)
	ep.write(b)
	ep.remember(req.MID, b)
}

// duplicate reports whether m's MID was seen; a CON duplicate is answered
// from the cache.
func (ep *endpoint) duplicate(m *Message) bool {
	life := ep.p.spec.Load().Blockwise.ExchangeLifetime.D()
	now := time.Now()
	ep.mu.Lock()
	if ep.dedup == nil {
		ep.dedup = make([]dedupEntry, dedupSize)
	}
	for i := range ep.dedup {
		e := &ep.dedup[i]
		if e.used && e.mid == m.MID && now.Sub(e.at) < life {
			resp := e.resp
			ep.mu.Unlock()
			if resp != nil && m.Type == CON {
				ep.write(resp)
			}
			return true
		}
	}
	ep.dedup[ep.dedupAt] = dedupEntry{mid: m.MID, used: true, at: now}
	ep.dedupAt = (ep.dedupAt + 1) % dedupSize
	ep.mu.Unlock()
	return false
}

func (ep *endpoint) remember(mid uint16, resp []byte) {
	ep.mu.Lock()
	for i := range ep.dedup {
		if ep.dedup[i].used && ep.dedup[i].mid == mid {
			ep.dedup[i].resp = resp
			break
		}
	}
	ep.mu.Unlock()
}

// response routes a separate response to the API request waiting for it.
func (ep *endpoint) response(m *Message) {
	ep.mu.Lock()
	w := ep.waiters[string(m.Token)]
	ep.mu.Unlock()
	if m.Type == CON {
		if w == nil {
			ep.reset(m.MID)
			return
		}
		ep.send(&Message{Type: ACK, MID: m.MID})
	}
	if w != nil {
		deliverResponse(w, m)
	}
}

func deliverResponse(w chan *Message, m *Message) {
	c := *m
	c.Token = append([]byte(nil), m.Token...)
	c.Payload = append([]byte(nil), m.Payload...)
	c.Options = nil
	for _, o := range m.Options {
		c.Options = append(c.Options, Option{ID: o.ID, Value: append([]byte(nil), o.Value...)})
	}
	select {
	case w <- &c:
	default:
	}
}

// outCON is a confirmable message the gateway sent and retransmits until
// it is acknowledged, reset, or MAX_RETRANSMIT runs out.
type outCON struct {
	mid     uint16
	b       []byte
	ep      *endpoint
	s       *session // when set, the session's current endpoint may answer and is written to
	tries   int
	timeout time.Duration
	timer   *time.Timer
	// done is called once, off the pending lock: ack is the ACK (nil on
	// RST or timeout), reset reports an RST.
	done func(ack *Message, reset bool)
}

func (o *outCON) target() *endpoint {
	if o.s != nil {
		if ep := o.s.endpoint(); ep != nil {
			return ep
		}
	}
	return o.ep
}

// sendCON sends m as CON (assigning its MID) and retransmits it.
func (p *proto) sendCON(ep *endpoint, s *session, m *Message, done func(*Message, bool)) {
	spec := p.spec.Load()
	m.Type = CON
	m.MID = p.nextMID()
	o := &outCON{mid: m.MID, ep: ep, s: s, done: done, b: Append(nil, m)}
	// ACK_TIMEOUT × random factor 1..1.5
	o.timeout = spec.AckTimeout.D() + time.Duration(rand.Int64N(int64(spec.AckTimeout.D()/2)+1))
	p.pendMu.Lock()
	if old := p.pending[m.MID]; old != nil {
		old.timer.Stop()
	}
	p.pending[m.MID] = o
	o.timer = time.AfterFunc(o.timeout, func() { p.retransmit(o) })
	p.pendMu.Unlock()
	ep.write(o.b)
}

func (p *proto) retransmit(o *outCON) {
	spec := p.spec.Load()
	p.pendMu.Lock()
	if p.pending[o.mid] != o {
		p.pendMu.Unlock()
		return
	}
	if o.tries >= spec.MaxRetransmit {
		delete(p.pending, o.mid)
		p.pendMu.Unlock()
		o.target().m.count("packets.retransmit.timeout")
		o.done(nil, false)
		return
	}
	o.tries++
	o.timeout *= 2
	o.timer.Reset(o.timeout)
	p.pendMu.Unlock()
	ep := o.target()
	ep.m.count("packets.retransmitted")
	ep.write(o.b)
}

// onAckReset matches an ACK or RST to what was sent. Only the endpoint
// the CON went to (or the owning session's current one) may settle it.
func (p *proto) onAckReset(ep *endpoint, m *Message) {
	p.pendMu.Lock()
	o := p.pending[m.MID]
	if o == nil || (o.ep != ep && (o.s == nil || o.s.endpoint() != ep)) {
		p.pendMu.Unlock()
		if m.Type == RST {
			p.resetNON(ep, m.MID)
		}
		return
	}
	delete(p.pending, m.MID)
	o.timer.Stop()
	p.pendMu.Unlock()
	if m.Type == RST {
		o.done(nil, true)
		return
	}
	o.done(m, false)
}

// resetNON handles an RST answering a NON notification: RFC 7641 §3.6
// lets the client cancel an observation that way.
func (p *proto) resetNON(ep *endpoint, mid uint16) {
	for _, s := range p.sessionsAt(ep) {
		s.resetNON(mid)
	}
}

// sessionsAt lists the sessions bound to ep.
func (p *proto) sessionsAt(ep *endpoint) []*session {
	var out []*session
	ep.mu.Lock()
	for _, s := range ep.cl {
		out = append(out, s)
	}
	bound := ep.bound
	ep.mu.Unlock()
	if bound > 0 {
		p.mu.Lock()
		for _, s := range p.sessions {
			if s.endpoint() == ep {
				out = append(out, s)
			}
		}
		p.mu.Unlock()
	}
	return out
}
