package lwm2m

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// exchange is one downlink request: retransmitted until acknowledged
// (RFC 7252 §4.2), then waiting for a separate response if the ACK was
// empty.
type exchange struct {
	p     *proto
	s     *session
	cmd   *command
	mid   uint16
	token []byte

	mu    sync.Mutex
	b     []byte
	tries int
	timer *time.Timer
	done  bool
	body  []byte // Block2 blocks received so far
	obs   int64  // the first block's Observe value, -1 for none

	req      *command // the command as sent (its write format chosen)
	alt      string
	blk1Size int // Block1 block size while a large payload goes out; 0 for none
}

// observation is an accepted observe: notifications carry its token.
type observation struct {
	s    *session
	cmd  *command
	path string
}

func (p *proto) newExchange(s *session, cmd *command) *exchange {
	x := &exchange{p: p, s: s, cmd: cmd, mid: uint16(p.mid.Add(1)), obs: -1}
	if cmd.msgType == "cancel-observe" {
		x.token = s.observes[cmd.reqPath] // RFC 7641 §3.6: the observe's own token
	}
	if x.token == nil {
		x.token = make([]byte, 8)
		_, _ = rand.Read(x.token)
	}
	return x
}

func (x *exchange) start(ep *endpoint) {
	x.s.mu.Lock()
	alt, cf := x.s.info.AlternatePath, x.s.writeCF
	x.s.mu.Unlock()
	x.req, x.alt = x.cmd.withFormat(cf), alt
	var b []byte
	var err error
	if bs := x.p.spec.Load().Blockwise.MaxBlockSize; len(x.req.payload) > bs {
		x.blk1Size = bs
		b, err = x.block1(0, x.mid)
	} else {
		b, err = encode(x.req.coapMessage(alt, x.token, x.mid))
	}
	if err != nil {
		x.fail("coap_timeout")
		return
	}
	x.b = b
	p := x.p
	p.mu.Lock()
	p.exch[x.mid] = x
	p.tokens[string(x.token)] = x
	p.mu.Unlock()
	x.mu.Lock()
	x.timer = time.AfterFunc(jitter(ackTimeout), x.retransmit)
	x.mu.Unlock()
	if err := ep.writeRaw(b); err != nil {
		x.fail("coap_timeout")
	}
}

func jitter(d time.Duration) time.Duration {
	var b [1]byte
	_, _ = rand.Read(b[:])
	return d + d*time.Duration(b[0])/512 // ACK_RANDOM_FACTOR 1.5
}

func (x *exchange) retransmit() {
	x.mu.Lock()
	if x.done {
		x.mu.Unlock()
		return
	}
	x.tries++
	if x.tries > maxRetransmit {
		x.mu.Unlock()
		x.fail("coap_timeout")
		return
	}
	x.timer.Reset(jitter(ackTimeout << x.tries))
	b := x.b
	x.mu.Unlock()
	x.p.m.retransmit.Inc()
	x.s.mu.Lock()
	ep := x.s.ep
	x.s.mu.Unlock()
	if ep != nil {
		_ = ep.writeRaw(b)
	}
}

// forget drops the exchange without a reply (the registration ended).
func (x *exchange) forget() { x.finish() }

// finish marks x done and unlinks it; false if it already was.
func (x *exchange) finish() bool {
	x.mu.Lock()
	if x.done {
		x.mu.Unlock()
		return false
	}
	x.done = true
	if x.timer != nil {
		x.timer.Stop()
	}
	x.mu.Unlock()
	p := x.p
	p.mu.Lock()
	if p.exch[x.mid] == x {
		delete(p.exch, x.mid)
	}
	if p.tokens[string(x.token)] == x {
		delete(p.tokens, string(x.token))
	}
	p.mu.Unlock()
	return true
}

// next frees the in-flight slot and sends what waits.
func (x *exchange) next() {
	s := x.s
	s.mu.Lock()
	if s.inflight == x {
		s.inflight = nil
	}
	s.mu.Unlock()
	s.dispatch()
}

func (x *exchange) fail(msgType string) {
	if !x.finish() {
		return
	}
	if msgType == "coap_timeout" {
		x.p.m.timeout.Inc()
	} else {
		x.p.m.reset.Inc()
	}
	resp := x.cmd.failure(msgType)
	x.s.record(x.cmd.msgType, x.cmd.reqPath, resp)
	x.s.publishResp(resp)
	x.next()
}

func (p *proto) onAck(ep *endpoint, m *message.Message) {
	p.mu.Lock()
	x := p.exch[uint16(m.MessageID)]
	p.mu.Unlock()
	if x == nil {
		return
	}
	if p.attach(x.s, ep) == nil {
		return
	}
	x.s.heard()
	if m.Type == message.Reset {
		x.fail("coap_reset")
		return
	}
	// Empty ACK: a separate response follows; stop retransmitting and
	// wait for it up to EXCHANGE_LIFETIME.
	x.mu.Lock()
	if x.done {
		x.mu.Unlock()
		return
	}
	x.tries = maxRetransmit
	x.timer.Reset(ackTimeout * 123)
	x.mu.Unlock()
	x.s.publishResp(x.cmd.failure("ack"))
}

func (p *proto) onResponse(ep *endpoint, m *message.Message) {
	p.mu.Lock()
	var x *exchange
	if m.Type == message.Acknowledgement {
		x = p.exch[uint16(m.MessageID)]
	} else {
		x = p.tokens[string(m.Token)]
	}
	if x != nil && !bytes.Equal(x.token, m.Token) {
		x = nil
	}
	var o *observation
	if x == nil {
		o = p.observe[string(m.Token)]
	}
	p.mu.Unlock()
	switch {
	case x != nil:
		if p.attach(x.s, ep) == nil {
			return
		}
		x.s.heard()
		x.complete(m)
	case o != nil:
		if p.attach(o.s, ep) == nil {
			return
		}
		o.s.heard()
		o.notify(m)
		o.s.dispatch()
	default:
		if m.Type == message.NonConfirmable {
			// An observation we do not know: tell the device to stop.
			_ = ep.write(&message.Message{Type: message.Reset, MessageID: m.MessageID, Code: codes.Empty})
		}
	}
}

func contentFormat(m *message.Message, dflt int) int {
	if v, err := m.Options.GetUint32(message.ContentFormat); err == nil {
		return int(v)
	}
	return dflt
}

// nextBlock asks for the next Block2 block (RFC 7959) of a response
// that has more; false when m is the last (or only) block.
func (x *exchange) nextBlock(m *message.Message) bool {
	v, err := m.Options.GetUint32(message.Block2)
	if err != nil || m.Code != codes.Content {
		return false
	}
	p := x.p
	x.mu.Lock()
	if x.done {
		x.mu.Unlock()
		return true
	}
	if o, err := m.Options.GetUint32(message.Observe); err == nil && x.body == nil {
		x.obs = int64(o)
	}
	x.body = append(x.body, m.Payload...)
	if v&8 == 0 {
		m.Payload = x.body
		x.mu.Unlock()
		return false
	}
	if len(x.body) > int(p.spec.Load().Blockwise.MaxBodySize) {
		x.mu.Unlock()
		x.fail("coap_timeout")
		return true
	}
	mid := uint16(p.mid.Add(1))
	num := v>>4 + 1
	cm := *x.req
	cm.observe = -1 // later blocks are plain GETs (RFC 7959 §2.6)
	b, err := encode(cm.coapMessage(x.alt, x.token, mid, message.Option{ID: message.Block2, Value: uintBytes(num<<4 | v&7)}))
	if err != nil {
		x.mu.Unlock()
		x.fail("coap_timeout")
		return true
	}
	x.sendNextLocked(mid, b)
	p.m.block2.Inc()
	return true
}

// sendNextLocked sends the next message of a multi-message exchange
// under a new message id; x.mu is held and released.
func (x *exchange) sendNextLocked(mid uint16, b []byte) {
	p := x.p
	old := x.mid
	x.mid, x.b, x.tries = mid, b, 0
	x.timer.Reset(jitter(ackTimeout))
	x.mu.Unlock()
	p.mu.Lock()
	delete(p.exch, old)
	p.exch[mid] = x
	p.mu.Unlock()
	x.s.mu.Lock()
	ep := x.s.ep
	x.s.mu.Unlock()
	if ep != nil {
		_ = ep.writeRaw(b)
	}
}

// block1 encodes block num of a large request payload (RFC 7959 §2.5).
func (x *exchange) block1(num int, mid uint16) ([]byte, error) {
	size := x.blk1Size
	start := num * size
	end := min(start+size, len(x.req.payload))
	v := uint32(num) << 4
	if end < len(x.req.payload) {
		v |= 8
	}
	szx := uint32(0)
	for 16<<szx < size {
		szx++
	}
	cm := *x.req
	cm.payload = x.req.payload[start:end]
	return encode(cm.coapMessage(x.alt, x.token, mid, message.Option{ID: message.Block1, Value: uintBytes(v | szx)}))
}

// nextBlock1 sends the next Block1 block after the device's 2.31
// Continue, at the block size it asks for; false for a final response.
func (x *exchange) nextBlock1(m *message.Message) bool {
	if x.blk1Size == 0 || m.Code != codes.Continue {
		return false
	}
	v, err := m.Options.GetUint32(message.Block1)
	if err != nil {
		return false
	}
	x.mu.Lock()
	if x.done {
		x.mu.Unlock()
		return true
	}
	size := 16 << (v & 7)
	offset := (int(v>>4) + 1) * size
	x.blk1Size = min(x.blk1Size, size)
	if offset >= len(x.req.payload) {
		x.mu.Unlock()
		return false
	}
	mid := uint16(x.p.mid.Add(1))
	b, err := x.block1(offset/x.blk1Size, mid)
	if err != nil {
		x.mu.Unlock()
		x.fail("coap_timeout")
		return true
	}
	x.sendNextLocked(mid, b)
	x.p.m.block1.Inc()
	return true
}

func (x *exchange) complete(m *message.Message) {
	if x.nextBlock1(m) || x.nextBlock(m) {
		return
	}
	if !x.finish() {
		return
	}
	p, s, c := x.p, x.s, x.cmd
	p.m.responses.Inc()
	var resp map[string]any
	ok := m.Code >= codes.Created && m.Code < codes.BadRequest
	var seq int64 = -1
	if v, err := m.Options.GetUint32(message.Observe); err == nil {
		seq = int64(v)
	} else {
		x.mu.Lock()
		seq = x.obs
		x.mu.Unlock()
	}
	switch {
	case !ok:
		resp = c.response(m.Code, nil, 0)
	case c.msgType == "read" || c.msgType == "observe" || c.msgType == "cancel-observe" || c.msgType == "discover":
		pp, _ := parsePath(c.reqPath)
		dflt := cfText
		if c.msgType == "discover" {
			dflt = cfLinkFormat
		}
		content, err := decodeContent(contentFormat(m, dflt), m.Payload, pp, *p.db.Load())
		if err != nil {
			p.gw.Logger().Debug("lwm2m undecodable response", "clientid", s.client.ClientID(), "error", err)
			resp = c.response(codes.BadRequest, nil, 0)
			break
		}
		resp = c.response(m.Code, content, max(seq, 0))
		if c.msgType == "observe" && seq >= 0 {
			p.mu.Lock()
			p.observe[string(x.token)] = &observation{s: s, cmd: c, path: c.reqPath}
			p.mu.Unlock()
			s.mu.Lock()
			s.observes[c.reqPath] = x.token
			s.mu.Unlock()
		}
	default:
		resp = c.response(m.Code, nil, 0)
	}
	if c.msgType == "cancel-observe" {
		s.mu.Lock()
		tok := s.observes[c.reqPath]
		delete(s.observes, c.reqPath)
		s.mu.Unlock()
		p.mu.Lock()
		delete(p.observe, string(tok))
		p.mu.Unlock()
	}
	s.record(c.msgType, c.reqPath, resp)
	s.publishResp(resp)
	x.next()
}

func (o *observation) notify(m *message.Message) {
	s := o.s
	p := s.p
	p.m.notify.Inc()
	var seq int64
	if v, err := m.Options.GetUint32(message.Observe); err == nil {
		seq = int64(v)
	}
	data := map[string]any{"reqPath": o.path, "code": codeString(m.Code), "codeMsg": codeMsg(m.Code)}
	if m.Code == codes.Content || m.Code == codes.Changed {
		pp, _ := parsePath(o.path)
		content, err := decodeContent(contentFormat(m, cfText), m.Payload, pp, *p.db.Load())
		if err != nil {
			data["code"], data["codeMsg"] = codeString(codes.BadRequest), codeMsg(codes.BadRequest)
		} else {
			data["content"] = content
		}
	}
	msg := map[string]any{"msgType": "notify", "seqNum": seq, "data": data}
	b, err := json.Marshal(msg)
	if err != nil {
		return
	}
	t := p.spec.Load().Translators.Notify
	_ = s.client.Publish(t.Topic, b, byte(t.QoS), false, nil)
	s.record("notify", o.path, msg)
}
