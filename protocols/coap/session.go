package coap

import (
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeway/edgeway/agent/gateway"
)

// session is one gateway client: a connection-mode client (token,
// heartbeat, may move between endpoints) or a connectionless one, which
// lives as long as its endpoint (the udp peer's idle_timeout, or the DTLS
// session).
type session struct {
	p        *proto
	connMode bool
	token    string
	clientID string
	username string
	client   *gateway.Client

	ep       atomic.Pointer[endpoint]
	lastSeen atomic.Int64

	mu        sync.Mutex
	observers map[string]*observer // by filter
	hb        *time.Timer
	closed    bool
}

// observer is one observe relation: notifications for one filter on one
// token, at most one CON in flight, the rest queued (drop-oldest).
type observer struct {
	s        *session
	token    []byte
	filter   string
	path     string // Uri-Path key of the relation, for Block2 follow-ups
	seq      uint32
	inflight bool
	queue    []gateway.Delivery
	lastNON  uint16
	hasNON   bool
}

func (s *session) endpoint() *endpoint { return s.ep.Load() }

func (s *session) touch() { s.lastSeen.Store(time.Now().UnixNano()) }

// bind moves the session to ep (a new address or DTLS session after NAT
// rebinding), so notifications and retransmissions go there.
func (s *session) bind(ep *endpoint) {
	old := s.ep.Swap(ep)
	if old == ep {
		return
	}
	if s.connMode {
		ep.mu.Lock()
		ep.bound++
		ep.mu.Unlock()
		if old != nil {
			old.mu.Lock()
			old.bound--
			idle := old.bound == 0 && len(old.cl) == 0
			old.mu.Unlock()
			if idle {
				// nothing else lives at the old address: free its slot
				_ = old.c.Close()
			}
		}
	}
}

// Deliver implements gateway.Handler.
func (s *session) Deliver(d gateway.Delivery) {
	s.mu.Lock()
	ob := s.observers[d.Filter]
	if ob == nil || s.closed {
		s.mu.Unlock()
		if d.ID != 0 {
			s.client.Ack(d.ID)
		}
		return
	}
	if ob.inflight {
		spec := s.p.spec.Load()
		if len(ob.queue) >= spec.NotifyQueueLen {
			var dropped gateway.Delivery
			if len(ob.queue) == 0 {
				dropped = d
			} else {
				dropped = ob.queue[0]
				copy(ob.queue, ob.queue[1:])
				ob.queue[len(ob.queue)-1] = d
			}
			s.mu.Unlock()
			s.dropped(dropped)
			return
		}
		ob.queue = append(ob.queue, d)
		s.mu.Unlock()
		return
	}
	ack := s.notifyLocked(ob, d)
	s.mu.Unlock()
	s.ack(ack)
}

// ack acknowledges a delivery to the broker; never with s.mu held, as the
// broker may deliver the next message from inside Ack.
func (s *session) ack(id uint64) {
	if id != 0 {
		s.client.Ack(id)
	}
}

func (s *session) dropped(d gateway.Delivery) {
	if ep := s.endpoint(); ep != nil {
		ep.m.count("delivery.dropped")
		ep.m.count("delivery.dropped.queue_full")
		ep.m.count("messages.dropped")
	}
	if d.ID != 0 {
		s.client.Ack(d.ID)
	}
}

// notifyLocked sends one notification; s.mu is held. It returns the
// delivery to acknowledge once the lock is released (a NON needs no ACK).
func (s *session) notifyLocked(ob *observer, d gateway.Delivery) uint64 {
	ep := s.endpoint()
	if ep == nil {
		return d.ID
	}
	spec := s.p.spec.Load()
	con := spec.NotifyType == "con" || (spec.NotifyType == "qos" && d.QoS > 0)
	ob.seq = (ob.seq + 1) & 0xffffff
	m := &Message{Code: codeContent, Token: ob.token}
	m.Options = append(m.Options, Option{ID: optObserve, Value: uintValue(ob.seq)})
	payload := d.Payload
	bs := spec.Blockwise.MaxBlockSize
	if spec.Blockwise.Enable && len(payload) > bs {
		etag := uintValue(ob.seq | 1<<24)
		ep.cacheBody(ob.path, payload, etag)
		m.Options = append(m.Options, Option{ID: optETag, Value: etag})
		m.Options = append(m.Options, Option{ID: optBlock2, Value: block{num: 0, more: true, szx: szxFor(bs)}.value()})
		m.Options = append(m.Options, Option{ID: optSize2, Value: uintValue(uint32(len(payload)))})
		payload = payload[:bs]
	}
	m.Payload = payload
	if !con {
		m.Type, m.MID = NON, s.p.nextMID()
		ob.lastNON, ob.hasNON = m.MID, true
		ep.send(m)
		return d.ID
	}
	ob.inflight = true
	id := d.ID
	s.p.sendCON(ep, s, m, func(ack *Message, reset bool) {
		if id != 0 {
			s.client.Ack(id)
		}
		if ack == nil {
			// RST or no ACK after MAX_RETRANSMIT: RFC 7641 §4.5 ends the relation
			s.cancel(ob, true)
			return
		}
		s.mu.Lock()
		ob.inflight = false
		// NONs queued behind the CON go out now, up to the next CON
		for len(ob.queue) > 0 && s.observers[ob.filter] == ob && !ob.inflight {
			d := ob.queue[0]
			ob.queue = ob.queue[1:]
			if a := s.notifyLocked(ob, d); a != 0 {
				s.mu.Unlock()
				s.ack(a)
				s.mu.Lock()
			}
		}
		s.mu.Unlock()
	})
	return 0
}

func (s *session) resetNON(mid uint16) {
	s.mu.Lock()
	var hit *observer
	for _, ob := range s.observers {
		if ob.hasNON && ob.lastNON == mid {
			hit = ob
		}
	}
	s.mu.Unlock()
	if hit != nil {
		s.cancel(hit, true)
	}
}

// cancel ends an observe relation; queued notifications are acknowledged
// to the broker and dropped.
func (s *session) cancel(ob *observer, unsubscribe bool) {
	s.mu.Lock()
	if s.observers[ob.filter] != ob {
		s.mu.Unlock()
		return
	}
	delete(s.observers, ob.filter)
	q := ob.queue
	ob.queue = nil
	s.mu.Unlock()
	for _, d := range q {
		if d.ID != 0 {
			s.client.Ack(d.ID)
		}
	}
	if unsubscribe {
		_ = s.client.Unsubscribe(ob.filter)
	}
}

// Kick implements gateway.Handler.
func (s *session) Kick(reason string) { s.close(reason) }

// close ends the session and its gateway client.
func (s *session) close(reason string) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	obs := s.observers
	s.observers = nil
	if s.hb != nil {
		s.hb.Stop()
	}
	s.mu.Unlock()
	for _, ob := range obs {
		for _, d := range ob.queue {
			if d.ID != 0 {
				s.client.Ack(d.ID)
			}
		}
	}
	p := s.p
	if s.connMode {
		p.mu.Lock()
		if p.sessions[s.clientID] == s {
			delete(p.sessions, s.clientID)
		}
		p.mu.Unlock()
		if ep := s.ep.Swap(nil); ep != nil {
			ep.mu.Lock()
			ep.bound--
			ep.mu.Unlock()
		}
	} else if ep := s.endpoint(); ep != nil {
		ep.mu.Lock()
		if ep.cl[s.clientID] == s {
			delete(ep.cl, s.clientID)
		}
		ep.mu.Unlock()
	}
	p.byClient.Delete(s.client)
	s.client.Close(reason)
}

// startHeartbeat disconnects a connection-mode client silent for 1.5×
// heartbeat.
func (s *session) startHeartbeat() {
	s.touch()
	var check func()
	check = func() {
		hb := s.p.spec.Load().Heartbeat.D() * 3 / 2
		idle := time.Since(time.Unix(0, s.lastSeen.Load()))
		if idle >= hb {
			if ep := s.endpoint(); ep != nil {
				ep.m.count("connections.heartbeat_timeout")
			}
			s.close("heartbeat_timeout")
			return
		}
		s.mu.Lock()
		if !s.closed {
			s.hb.Reset(hb - idle)
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	s.hb = time.AfterFunc(s.p.spec.Load().Heartbeat.D()*3/2, check)
	s.mu.Unlock()
}

// pathKey is the Uri-Path as one string, the key of Block2 caches.
func pathKey(segs []string) string { return strings.Join(segs, "/") }
