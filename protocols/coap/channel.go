package coap

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/transports"
)

// query keys and their EMQX short aliases.
var aliases = map[string]string{"c": "clientid", "t": "token", "u": "username", "p": "password", "q": "qos", "r": "retain"}

func normQuery(q map[string]string) map[string]string {
	for short, long := range aliases {
		if v, ok := q[short]; ok {
			if _, has := q[long]; !has {
				q[long] = v
			}
			delete(q, short)
		}
	}
	return q
}

func text(code uint8, s string) *Message { return &Message{Code: code, Payload: []byte(s)} }

// request handles one request and returns its response (nil: none).
func (p *proto) request(ep *endpoint, m *Message) *Message {
	if m.Code > codeDELETE {
		return text(codeNotAllow, "method not allowed")
	}
	spec := p.spec.Load()
	if !spec.Blockwise.Enable {
		// without block-wise, Block1/Block2 are critical options we do not know
		if _, ok := m.Opt(optBlock1); ok {
			return text(codeBadOpt, "block-wise disabled")
		}
		if _, ok := m.Opt(optBlock2); ok {
			return text(codeBadOpt, "block-wise disabled")
		}
	}
	if v, ok := m.Opt(optBlock2); ok {
		if _, valid := parseBlock(v); !valid {
			return text(codeBadReq, "invalid block szx")
		}
	}
	payload := m.Payload
	if v, ok := m.Opt(optBlock1); ok {
		b, valid := parseBlock(v)
		if !valid {
			return text(codeBadReq, "invalid block szx")
		}
		full, resp := ep.assemble(m, b, spec)
		if resp != nil {
			return resp
		}
		payload = full
	}
	path := m.Path()
	q := normQuery(m.Query())
	if q == nil {
		q = map[string]string{}
	}
	var resp *Message
	switch {
	case len(path) >= 1 && path[0] == "ps":
		resp = p.pubsub(ep, m, path, q, payload, spec)
	case len(path) == 2 && path[0] == "mqtt" && path[1] == "connection":
		resp = p.connection(ep, m, q, spec)
	default:
		resp = text(codeNotFound, "unknown path")
	}
	if resp != nil {
		if v, ok := m.Opt(optBlock1); ok && resp.Code>>5 == 2 {
			resp.Options = append(resp.Options, Option{ID: optBlock1, Value: v})
		}
	}
	return resp
}

// maxAssemblies bounds the Block1 transfers one peer may have open.
const maxAssemblies = 4

// assemble collects a Block1 transfer; it returns the whole body when the
// last block arrived, or the response to send now. Partial bodies count
// against the instance's budget, so peers cannot park unbounded memory.
func (ep *endpoint) assemble(m *Message, b block, spec *Config) ([]byte, *Message) {
	key := pathKey(m.Path())
	ep.mu.Lock()
	defer ep.mu.Unlock()
	if ep.block1 == nil {
		ep.block1 = map[string]*assembly{}
	}
	for k, a := range ep.block1 {
		if time.Since(a.at) > spec.Blockwise.ExchangeLifetime.D() {
			ep.dropAssembly(k)
		}
	}
	a := ep.block1[key]
	size := b.size()
	if b.num == 0 {
		if a == nil && len(ep.block1) >= maxAssemblies {
			return nil, text(codeUnavail, "too many block-wise transfers")
		}
		ep.dropAssembly(key)
		a = &assembly{}
		ep.block1[key] = a
	}
	if a == nil || int(b.num)*size != len(a.buf) {
		ep.dropAssembly(key)
		return nil, text(codeIncompl, "block out of order")
	}
	if len(a.buf)+len(m.Payload) > int(spec.Blockwise.MaxBodySize) {
		ep.dropAssembly(key)
		r := text(codeTooLarge, "body too large")
		r.Options = []Option{{ID: optSize1, Value: uintValue(uint32(spec.Blockwise.MaxBodySize))}}
		return nil, r
	}
	if b.more && len(m.Payload) != size {
		ep.dropAssembly(key)
		return nil, text(codeBadReq, "short block")
	}
	if ep.p.asmBytes.Add(int64(len(m.Payload))) > assemblyBudget(spec) {
		ep.p.asmBytes.Add(-int64(len(m.Payload)))
		ep.dropAssembly(key)
		ep.m.count("blockwise.dropped.budget")
		return nil, text(codeUnavail, "block-wise budget exhausted")
	}
	a.buf = append(a.buf, m.Payload...)
	a.at = time.Now()
	if b.more {
		r := &Message{Code: codeContinue}
		r.Options = []Option{{ID: optBlock1, Value: block{num: b.num, more: true, szx: b.szx}.value()}}
		return nil, r
	}
	body := a.buf
	ep.dropAssembly(key)
	return body, nil
}

// dropAssembly forgets a partial body and returns its bytes to the
// budget; ep.mu is held.
func (ep *endpoint) dropAssembly(key string) {
	if a := ep.block1[key]; a != nil {
		ep.p.asmBytes.Add(-int64(len(a.buf)))
		delete(ep.block1, key)
	}
}

// assemblyBudget is the most all peers together may hold in partial
// Block1 bodies: sixteen maximal bodies, at least 64 MiB.
func assemblyBudget(spec *Config) int64 { return max(16*int64(spec.Blockwise.MaxBodySize), 64<<20) }

func (ep *endpoint) cacheBody(path string, body, etag []byte) {
	ep.mu.Lock()
	if ep.block2 == nil {
		ep.block2 = map[string]*bodyCache{}
	}
	ep.block2[path] = &bodyCache{body: body, etag: etag, at: time.Now()}
	ep.mu.Unlock()
}

// block2 serves a Block2 follow-up GET from the body cached when the
// first block of a notification went out.
func (ep *endpoint) serveBlock2(m *Message, b block, spec *Config) *Message {
	ep.mu.Lock()
	c := ep.block2[pathKey(m.Path())]
	ep.mu.Unlock()
	if c == nil || time.Since(c.at) > spec.Blockwise.ExchangeLifetime.D() {
		return text(codeNotFound, "no representation to continue")
	}
	if b.size() > spec.Blockwise.MaxBlockSize {
		b.szx = szxFor(spec.Blockwise.MaxBlockSize)
	}
	start := int(b.num) * b.size()
	if start >= len(c.body) {
		return text(codeBadReq, "block beyond body")
	}
	end := min(start+b.size(), len(c.body))
	r := &Message{Code: codeContent, Payload: c.body[start:end]}
	r.Options = []Option{{ID: optETag, Value: c.etag}, {ID: optBlock2, Value: block{num: b.num, more: end < len(c.body), szx: b.szx}.value()}}
	return r
}

// identify finds or builds the session a /ps request acts as. A request
// with clientid and token belongs to that connection (and moves it here);
// otherwise, unless connection_required, it is authenticated on its own,
// and acts through a gateway client kept per peer and clientid (as EMQX
// keeps a channel per peer), so a sensor posting every second does not
// connect and disconnect a client, with their hooks, every second.
func (p *proto) identify(ep *endpoint, q map[string]string, spec *Config, observing bool) (*session, *Message) {
	cid, tok := q["clientid"], q["token"]
	if tok != "" || spec.ConnectionRequired {
		return p.byToken(ep, cid, tok)
	}
	if cid == "" {
		ep.mu.Lock()
		if ep.anonID == "" {
			ep.anonID = randomID()
		}
		cid = ep.anonID
		ep.mu.Unlock()
	}
	ci := newClientInfo(ep, cid, q)
	if err := ep.l.Authenticate(ep.ctx, ci); err != nil {
		return nil, text(codeUnauth, "unauthorized")
	}
	ep.mu.Lock()
	s := ep.cl[ci.ClientID]
	ep.mu.Unlock()
	if s != nil && s.username == ci.Username && s.client.Connected() {
		return s, nil
	}
	s = &session{p: p, clientID: ci.ClientID, username: ci.Username}
	s.ep.Store(ep)
	c, _, err := ep.l.Connect(ci, s, gateway.ConnectOptions{CleanStart: true, Held: observing})
	if err != nil {
		return nil, text(codeInternal, "connect failed")
	}
	s.client = c
	p.byClient.Store(c, s)
	ep.mu.Lock()
	if ep.closed {
		ep.mu.Unlock()
		s.close("peer_gone")
		return nil, text(codeUnavail, "gone")
	}
	if ep.cl == nil {
		ep.cl = map[string]*session{}
	}
	ep.cl[ci.ClientID] = s
	ep.mu.Unlock()
	return s, nil
}

// newClientInfo fills identity from the query; the other query keys
// are ${packet.KEY} for clientinfo_override.
func newClientInfo(ep *endpoint, cid string, q map[string]string) *gateway.ClientInfo {
	ci := ep.l.NewClientInfo(ep.c)
	ci.ClientID, ci.Username, ci.Password = cid, q["username"], []byte(q["password"])
	ci.Packet = make(map[string]string, len(q))
	for k, v := range q {
		if k != "password" && k != "token" {
			ci.Packet[k] = v
		}
	}
	var nc net.Conn = ep.c
	if w, ok := nc.(interface{ NetConn() net.Conn }); ok {
		nc = w.NetConn()
	}
	if id, ok := nc.(transports.PSKIdentity); ok && id.PSKIdentity() != "" {
		ci.SetField("psk_identity", id.PSKIdentity())
	}
	return ci
}

// byToken checks clientid and token against the open connections.
func (p *proto) byToken(ep *endpoint, cid, tok string) (*session, *Message) {
	if cid == "" || tok == "" {
		ep.m.count("requests.unauthorized")
		return nil, text(codeUnauth, "clientid and token required")
	}
	p.mu.Lock()
	s := p.sessions[cid]
	p.mu.Unlock()
	if s == nil || subtle.ConstantTimeCompare([]byte(s.token), []byte(tok)) != 1 {
		ep.m.count("requests.unauthorized")
		return nil, text(codeUnauth, "bad clientid or token")
	}
	s.touch()
	if s.endpoint() != ep {
		ep.m.count("sessions.takenover")
		ep.log.Debug("connection moved to a new peer", "clientid", cid)
		s.bind(ep)
	}
	return s, nil
}

func (p *proto) pubsub(ep *endpoint, m *Message, path []string, q map[string]string, payload []byte, spec *Config) *Message {
	topic := strings.Join(path[1:], "/")
	if topic == "" {
		return text(codeBadReq, "empty topic")
	}
	switch m.Code {
	case codePOST, codePUT:
		qos := mapQoS(spec.PublishQoS, m.Type)
		if v, ok := q["qos"]; ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 2 {
				return text(codeBadReq, "bad qos")
			}
			qos = byte(n)
		}
		retain := q["retain"] == "true" || q["retain"] == "1"
		var headers map[string]string
		if e, ok := q["expiry"]; ok {
			if _, err := strconv.ParseUint(e, 10, 32); err != nil {
				return text(codeBadReq, "bad expiry")
			}
			headers = map[string]string{"Message-Expiry-Interval": e}
		}
		s, resp := p.identify(ep, q, spec, false)
		if resp != nil {
			return resp
		}
		if _, ok := m.Opt(optBlock1); !ok {
			// the broker keeps the payload; the read buffer is reused
			payload = append([]byte(nil), payload...)
		}
		err := s.client.Publish(topic, payload, qos, retain, headers)
		switch {
		case err == nil:
			return &Message{Code: codeChanged}
		case errors.Is(err, gateway.ErrDenied):
			return text(codeUnauth, "not authorized")
		default:
			return text(codeBadReq, err.Error())
		}
	case codeGET:
		obs, isObs := m.Opt(optObserve)
		if v, ok := m.Opt(optBlock2); ok && spec.Blockwise.Enable {
			// a later block of a notification (some clients repeat Observe)
			if b, _ := parseBlock(v); b.num > 0 || !isObs {
				return ep.serveBlock2(m, b, spec)
			}
		}
		if !isObs {
			return text(codeNotAllow, "GET needs Observe")
		}
		switch decodeUint(obs) {
		case 0:
			return p.observe(ep, m, topic, path, q, spec)
		case 1:
			return p.unobserve(ep, m, topic, q, spec)
		}
		return text(codeBadReq, "bad observe value")
	}
	return text(codeNotAllow, "method not allowed")
}

func (p *proto) observe(ep *endpoint, m *Message, topic string, path []string, q map[string]string, spec *Config) *Message {
	if len(m.Token) == 0 {
		return text(codeBadReq, "observe needs a token")
	}
	s, resp := p.identify(ep, q, spec, true)
	if resp != nil {
		return resp
	}
	qos := mapQoS(spec.SubscribeQoS, m.Type)
	if v, ok := q["qos"]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > 2 {
			return text(codeBadReq, "bad qos")
		}
		qos = byte(n)
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return text(codeUnavail, "session closed")
	}
	if s.observers == nil {
		s.observers = map[string]*observer{}
	}
	ob := s.observers[topic]
	if ob == nil {
		ob = &observer{s: s, filter: topic}
		s.observers[topic] = ob
	}
	ob.token = append([]byte(nil), m.Token...)
	ob.path = pathKey(path)
	ob.seq = (ob.seq + 1) & 0xffffff
	seq := ob.seq
	s.mu.Unlock()
	// deliveries (retained ones too) wait until the registration response
	// is out, so the device sees it first
	s.client.Hold()
	err := s.client.Subscribe(topic, qos)
	if err != nil {
		s.client.Resume()
		s.cancel(ob, false)
		if errors.Is(err, gateway.ErrDenied) {
			return text(codeUnauth, "not authorized")
		}
		return text(codeBadReq, err.Error())
	}
	r := &Message{Code: codeContent}
	r.Options = []Option{{ID: optObserve, Value: uintValue(seq)}}
	ep.reply(m, r)
	s.client.Resume()
	return nil
}

func (p *proto) unobserve(ep *endpoint, m *Message, topic string, q map[string]string, spec *Config) *Message {
	var s *session
	if q["token"] != "" || spec.ConnectionRequired {
		var resp *Message
		if s, resp = p.byToken(ep, q["clientid"], q["token"]); resp != nil {
			return resp
		}
	} else {
		// without a clientid the relation is found by its token, which a
		// deregistering GET repeats (RFC 7641 §3.6)
		cid := q["clientid"]
		ep.mu.Lock()
		s = ep.cl[cid]
		var cands []*session
		if s == nil {
			for _, c := range ep.cl {
				cands = append(cands, c)
			}
		}
		ep.mu.Unlock()
		for _, c := range cands {
			c.mu.Lock()
			ob := c.observers[topic]
			hit := ob != nil && bytes.Equal(ob.token, m.Token)
			c.mu.Unlock()
			if hit {
				s = c
				break
			}
		}
	}
	if s != nil {
		s.mu.Lock()
		ob := s.observers[topic]
		s.mu.Unlock()
		if ob != nil {
			s.cancel(ob, true)
		}
	}
	return &Message{Code: codeContent}
}

// connection serves /mqtt/connection: POST opens, PUT heartbeats, DELETE
// closes.
func (p *proto) connection(ep *endpoint, m *Message, q map[string]string, spec *Config) *Message {
	cid := q["clientid"]
	switch m.Code {
	case codePOST:
		if cid == "" {
			return text(codeBadReq, "clientid required")
		}
		ci := newClientInfo(ep, cid, q)
		if err := ep.l.Authenticate(ep.ctx, ci); err != nil {
			return text(codeUnauth, "unauthorized")
		}
		// keyed by the clientid the device sends with its token, which
		// clientinfo_override may have changed for the gateway client
		s := &session{p: p, connMode: true, clientID: cid, username: ci.Username, token: randomToken()}
		s.bind(ep)
		c, _, err := ep.l.Connect(ci, s, gateway.ConnectOptions{CleanStart: true})
		if err != nil {
			s.ep.Store(nil)
			ep.mu.Lock()
			ep.bound--
			ep.mu.Unlock()
			return text(codeInternal, "connect failed")
		}
		s.client = c
		p.byClient.Store(c, s)
		p.mu.Lock()
		p.sessions[cid] = s
		p.mu.Unlock()
		s.startHeartbeat()
		return &Message{Code: codeCreated, Payload: []byte(s.token)}
	case codePUT:
		if _, resp := p.byToken(ep, cid, q["token"]); resp != nil {
			return resp
		}
		return &Message{Code: codeChanged}
	case codeDELETE:
		s, resp := p.byToken(ep, cid, q["token"])
		if resp != nil {
			return resp
		}
		s.close("normal")
		return &Message{Code: codeDeleted}
	}
	return text(codeNotAllow, "method not allowed")
}
