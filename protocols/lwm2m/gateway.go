// Package lwm2m is edgeway's LwM2M 1.0/1.1 server side: the registration
// interface over CoAP (udp and dtls listeners), EMQX's JSON command,
// response and event formats on MQTT, queue mode, and registrations keyed
// by location rather than address so they survive NAT rebinding.
package lwm2m

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/agent/metrics"
	"github.com/edgeway/edgeway/transports"
)

func init() {
	gateway.Register(gateway.Kind{
		Name:              "lwm2m",
		Description:       "LwM2M 1.0/1.1 over udp and dtls, EMQX JSON translators",
		Transports:        []string{"udp", "dtls"},
		DefaultMountpoint: "lwm2m/${endpoint_name}/",
		NewConfig:         func() any { return DefaultConfig() },
		New:               newProto,
	})
}

// CoAP transmission parameters (RFC 7252 §4.8). Variables so that tests
// can shorten them.
var (
	ackTimeout    = 2 * time.Second
	maxRetransmit = 4
)

// proto is one lwm2m gateway: every registration of every listener.
type proto struct {
	gw   *gateway.Gateway
	spec atomic.Pointer[Config]
	db   atomic.Pointer[objectDB]
	mid  atomic.Uint32

	mu      sync.Mutex
	byLoc   map[string]*session
	byEP    map[string]*session
	exch    map[uint16]*exchange // outstanding downlinks by message id
	tokens  map[string]*exchange // by token, for separate responses
	observe map[string]*observation

	m protoMetrics
}

type protoMetrics struct {
	register, update, deregister, expired, rebind, badPacket      *metrics.Counter
	sent, queued, droppedTTL, droppedFull, timeout, reset, notify *metrics.Counter
	responses, registerFailed, retransmit, unknownMsgType, pktsIn *metrics.Counter
	send, sendRejected, block1, block2                            *metrics.Counter
}

var protos sync.Map // *gateway.Gateway → *proto, for the HTTP API

func newProto(gw *gateway.Gateway) (gateway.Protocol, error) {
	p := &proto{gw: gw, byLoc: map[string]*session{}, byEP: map[string]*session{},
		exch: map[uint16]*exchange{}, tokens: map[string]*exchange{}, observe: map[string]*observation{}}
	spec, _ := gw.Spec().(*Config)
	if spec == nil {
		spec = DefaultConfig()
	}
	if err := p.Update(spec); err != nil {
		return nil, err
	}
	var b [2]byte
	_, _ = rand.Read(b[:])
	p.mid.Store(uint32(binary.BigEndian.Uint16(b[:])))
	s := gw.Metrics()
	c := s.Counter
	p.m = protoMetrics{
		register: c("lwm2m.register"), update: c("lwm2m.update"), deregister: c("lwm2m.deregister"),
		expired: c("lwm2m.lifetime_expired"), rebind: c("lwm2m.rebind"), badPacket: c("lwm2m.packets.malformed"),
		sent: c("lwm2m.downlink.sent"), queued: c("lwm2m.downlink.queued"), droppedTTL: c("lwm2m.downlink.dropped.ttl"),
		droppedFull: c("lwm2m.downlink.dropped.queue_full"), timeout: c("lwm2m.downlink.coap_timeout"),
		reset: c("lwm2m.downlink.coap_reset"), notify: c("lwm2m.notify"), responses: c("lwm2m.downlink.responses"),
		registerFailed: c("lwm2m.register.refused"), retransmit: c("lwm2m.downlink.retransmit"),
		unknownMsgType: c("lwm2m.downlink.unsupported_msg_type"), pktsIn: c(metrics.PacketsReceived),
		send: c("lwm2m.send"), sendRejected: c("lwm2m.send.rejected"), block1: c("lwm2m.downlink.block1"), block2: c("lwm2m.downlink.block2"),
	}
	protos.Store(gw, p)
	return p, nil
}

// Update implements gateway.Protocol: every key applies live to the next
// message; lifetimes already granted keep running.
func (p *proto) Update(spec any) error {
	s, ok := spec.(*Config)
	if !ok {
		return nil
	}
	db, err := loadObjects(s.XMLDir)
	if err != nil {
		return err
	}
	p.db.Store(&db)
	p.spec.Store(s)
	return nil
}

// Stop implements gateway.Stopper.
func (p *proto) Stop(ctx context.Context) error {
	p.mu.Lock()
	all := make([]*session, 0, len(p.byLoc))
	for _, s := range p.byLoc {
		all = append(all, s)
	}
	p.mu.Unlock()
	for _, s := range all {
		s.end("shutdown", true)
	}
	p.mu.Lock()
	xs := make([]*exchange, 0, len(p.exch))
	for _, x := range p.exch {
		xs = append(xs, x)
	}
	p.mu.Unlock()
	for _, x := range xs {
		x.forget()
	}
	protos.Delete(p.gw)
	return nil
}

// Serve implements gateway.Protocol: one reader goroutine per accepted
// Conn (a udp peer or a dtls session).
func (p *proto) Serve(ctx context.Context, l *gateway.Listener) error {
	var wg sync.WaitGroup // this listener's readers only
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		ep := &endpoint{p: p, l: l, conn: c, dtls: l.Config().Transport == "dtls"}
		wg.Add(1)
		go func() {
			defer wg.Done()
			ep.readLoop()
		}()
	}
}

// endpoint is one transport Conn and what it carries.
type endpoint struct {
	p       *proto
	l       *gateway.Listener
	conn    transports.Conn
	dtls    bool
	closing atomic.Bool // a delayed close is pending
	sess    atomic.Pointer[session]
	dead    atomic.Bool
	wmu     sync.Mutex
	// replies caches the last replies to confirmable requests, so a
	// retransmitted request gets the same answer and is not run twice.
	replies [4]struct {
		mid uint16
		b   []byte
	}
	next int
	// seen holds the message ids of recent confirmable responses and
	// notifications, so a retransmission is acknowledged, not published
	// twice.
	seen  [8]uint16
	nseen int
}

func (ep *endpoint) readLoop() {
	defer ep.dead.Store(true)
	// One datagram at a time: the listener's datagram limit for udp, the
	// most pion hands to a dtls Read.
	size := 8192
	if spec, ok := ep.l.Config().Spec.(*transports.UDPSpec); ok {
		size = int(spec.MaxDatagramSize)
	}
	buf := make([]byte, size)
	for {
		n, err := ep.conn.Read(buf)
		if err != nil {
			if s := ep.sess.Load(); s == nil {
				_ = ep.conn.Close()
			}
			return
		}
		ep.p.m.pktsIn.Inc()
		var m message.Message
		m.Options = make(message.Options, 0, 16)
		if _, err := coder.DefaultCoder.Decode(buf[:n], &m); err != nil {
			ep.p.m.badPacket.Inc()
			ep.closeIfIdle()
			continue
		}
		m.Payload = append([]byte(nil), m.Payload...)
		m.Token = append(message.Token(nil), m.Token...)
		for i := range m.Options {
			m.Options[i].Value = append([]byte(nil), m.Options[i].Value...)
		}
		ep.handle(&m)
		ep.closeIfIdle()
	}
}

// closeIfIdle closes a Conn that carries no registration: a stranger's
// datagram or a refused register must not pin a peer. A dtls session
// gets a second, so its close_notify does not overtake the reply and the
// device can still register on it.
func (ep *endpoint) closeIfIdle() {
	if ep.sess.Load() != nil {
		return
	}
	if ep.dtls {
		if !ep.closing.CompareAndSwap(false, true) {
			return
		}
		time.AfterFunc(time.Second, func() {
			ep.closing.Store(false)
			if ep.sess.Load() == nil {
				_ = ep.conn.Close()
			}
		})
		return
	}
	_ = ep.conn.Close()
}

func (ep *endpoint) write(m *message.Message) error {
	b, err := encode(m)
	if err != nil {
		return err
	}
	return ep.writeRaw(b)
}

func (ep *endpoint) writeRaw(b []byte) error {
	ep.wmu.Lock()
	defer ep.wmu.Unlock()
	_, err := ep.conn.Write(b)
	return err
}

func encode(m *message.Message) ([]byte, error) {
	n, err := coder.DefaultCoder.Size(*m)
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := coder.DefaultCoder.Encode(*m, b); err != nil {
		return nil, err
	}
	return b, nil
}

func (ep *endpoint) handle(m *message.Message) {
	switch {
	case m.Code == codes.Empty:
		switch m.Type {
		case message.Confirmable: // CoAP ping
			_ = ep.write(&message.Message{Type: message.Reset, MessageID: m.MessageID, Code: codes.Empty})
		case message.Acknowledgement, message.Reset:
			ep.p.onAck(ep, m)
		}
	case m.Code >= codes.GET && m.Code <= codes.DELETE:
		if m.Type == message.Confirmable {
			ep.wmu.Lock()
			for _, r := range ep.replies {
				if r.b != nil && r.mid == uint16(m.MessageID) {
					b := r.b
					ep.wmu.Unlock()
					_ = ep.writeRaw(b)
					return
				}
			}
			ep.wmu.Unlock()
		}
		resp, out := ep.p.request(ep, m)
		if m.Type == message.Confirmable {
			resp.Type, resp.MessageID = message.Acknowledgement, m.MessageID
		} else {
			resp.Type, resp.MessageID = message.NonConfirmable, int32(uint16(ep.p.mid.Add(1)))
		}
		resp.Token = m.Token
		b, err := encode(resp)
		if err != nil {
			return
		}
		if m.Type == message.Confirmable {
			out.wmu.Lock()
			out.replies[out.next] = struct {
				mid uint16
				b   []byte
			}{uint16(m.MessageID), b}
			out.next = (out.next + 1) % len(out.replies)
			out.wmu.Unlock()
		}
		_ = out.writeRaw(b)
		if s := ep.p.sessionOf(out); s != nil {
			s.afterRequest()
		} else if out != ep {
			out.closeIfIdle()
		}
	default: // a response: piggybacked, separate, or a notification
		if m.Type == message.Confirmable {
			_ = ep.write(&message.Message{Type: message.Acknowledgement, MessageID: m.MessageID, Code: codes.Empty})
			if ep.duplicate(uint16(m.MessageID)) {
				return
			}
		}
		ep.p.onResponse(ep, m)
	}
}

func (p *proto) sessionOf(ep *endpoint) *session { return ep.sess.Load() }

// attach makes ep the way to reach s after s was heard on ep. For a udp
// peer that moved (NAT rebinding), the old Conn takes over the new
// address, so the registration keeps its Conn; otherwise (dtls without
// CID, an expired udp peer) the registration moves to ep.
//
// It returns nil when ep may not carry s: another listener, or a dtls
// session of another PSK identity. A registration never moves to a
// weaker or different identity, so knowing a location is not enough.
func (p *proto) attach(s *session, ep *endpoint) *endpoint {
	s.mu.Lock()
	old := s.ep
	s.mu.Unlock()
	if old == ep {
		return ep
	}
	if ep.l != s.client.Listener() || pskIdentity(ep.conn) != s.identity {
		return nil
	}
	p.m.rebind.Inc()
	if old != nil && !old.dead.Load() {
		if r, ok := old.conn.(transports.Rebinder); ok && r.TakeOver(ep.conn) == nil {
			p.gw.Logger().Debug("lwm2m registration moved", "clientid", s.client.ClientID(), "peer", old.conn.Info().Peer)
			return old
		}
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ep
	}
	s.ep = ep
	ep.sess.Store(s) // under s.mu, so end sees it
	s.mu.Unlock()
	if old != nil {
		old.sess.CompareAndSwap(s, nil)
		_ = old.conn.Close()
	}
	return ep
}

func (ep *endpoint) duplicate(mid uint16) bool {
	n := min(ep.nseen, len(ep.seen))
	for _, s := range ep.seen[:n] {
		if s == mid {
			return true
		}
	}
	ep.seen[ep.nseen%len(ep.seen)] = mid
	ep.nseen++
	return false
}
