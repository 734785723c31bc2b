package jt808

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/transports"
)

const (
	readBufferSize = 512
	// maxReassemblies bounds the sub-packaged messages one connection may
	// have in progress at once.
	maxReassemblies = 8
	closeGrace      = time.Second
	// maxOutFrames bounds the frames waiting for the socket: a terminal
	// that sends but does not read is closed rather than buffered for.
	maxOutFrames = 4096
)

// channel is one terminal connection.
type channel struct {
	p    *proto
	l    *gateway.Listener
	conn transports.Conn
	cfg  *Config
	cs   charset
	m    *listenerMetrics
	log  *slog.Logger
	ac   *authClient

	// Reader goroutine only.
	df     *Deframer
	idle   *gateway.IdleWatch
	phone  string // authenticated phone; "" before
	up     string // rendered up_topic
	reason string

	fragMu sync.Mutex
	frags  map[fragKey]*fragBuf

	mu        sync.Mutex
	cl        *gateway.Client
	v19       bool
	protoVer  uint8
	sn        uint16 // next platform msg_sn
	out       [][]byte
	writing   bool
	closed    bool
	inflight  []*pending
	queue     []*pending
	retry     *time.Timer
	writersWG sync.WaitGroup
}

// pending is a downlink awaiting its reply (or a free inflight slot).
type pending struct {
	msgID    uint16
	sn       uint16
	lastSN   uint16 // of the last package, for a body sent in sub-packages
	customSN bool
	body     []byte
	frame    []byte
	sent     time.Time
	retries  int
}

type fragKey struct{ id, first uint16 }

type fragBuf struct {
	h     Header
	parts [][]byte
	got   int
	size  int
	timer *time.Timer
	asked bool
}

func newChannel(p *proto, l *gateway.Listener, c transports.Conn, m *listenerMetrics, log *slog.Logger) *channel {
	cfg := p.spec.Load()
	return &channel{p: p, l: l, conn: c, cfg: cfg, cs: cfg.charset(), m: m, log: log,
		df: NewDeframer(cfg.Frame.MaxLength)}
}

func (ch *channel) serve(ctx context.Context) {
	ch.idle = ch.l.Gateway().WatchIdle(ch.conn)
	ch.readLoop(ctx)
	ch.shutdown()
}

func (ch *channel) readLoop(ctx context.Context) {
	buf := make([]byte, readBufferSize)
	keepalive := ch.cfg.Proto.Keepalive.D()
	for {
		if ch.phone != "" {
			_ = ch.conn.SetReadDeadline(time.Now().Add(keepalive))
		}
		n, err := ch.conn.Read(buf)
		if n > 0 {
			garbage := ch.df.Garbage
			stop := false
			ch.df.Feed(buf[:n], func(frame []byte, ferr error) {
				if stop {
					return
				}
				if ferr != nil {
					ch.frameError(ferr)
					return
				}
				if err := ch.onFrame(ctx, frame); err != nil {
					stop = true
				}
			})
			if ch.df.Garbage != garbage {
				ch.m.sets[0].Counter("frames.garbage_bytes").Add(uint64(ch.df.Garbage - garbage))
			}
			if stop {
				return
			}
		}
		if err != nil {
			var ne net.Error
			switch {
			case errors.As(err, &ne) && ne.Timeout() && ch.phone != "":
				ch.reason = "keepalive_timeout"
				ch.m.count("connections.keepalive_timeout")
			case ch.reason == "":
				ch.reason = "closed"
			}
			return
		}
	}
}

func (ch *channel) frameError(err error) {
	switch {
	case errors.Is(err, ErrChecksum):
		ch.m.count("frames.bad_checksum")
	case errors.Is(err, ErrTooLong):
		ch.m.count("frames.too_long")
	default:
		ch.m.count("frames.malformed")
	}
	ch.log.Debug("dropped frame", "error", err)
}

// onFrame handles one unescaped frame; an error ends the connection.
func (ch *channel) onFrame(ctx context.Context, raw []byte) error {
	h, body, err := ParseFrame(raw)
	if err != nil {
		ch.frameError(err)
		if !ch.cfg.Proto.IgnoreUnsupportedFrames && ch.phone != "" {
			ch.reason = "malformed_frame"
			return err
		}
		return nil
	}
	inc(ch.m.in)
	if ch.phone != "" && h.Phone != ch.phone {
		ch.m.count("frames.phone_mismatch")
		if !ch.cfg.Proto.IgnoreUnsupportedFrames {
			ch.reason = "phone_mismatch"
			return errors.New("phone mismatch")
		}
		return nil
	}
	replySN := h.MsgSN
	if h.FragTotal > 0 {
		full, ok := ch.reassemble(&h, body)
		if !ok {
			return nil
		}
		body = full
	}
	return ch.handle(ctx, &h, body, replySN)
}

// reassemble keeps a package of a sub-packaged message; it returns the
// whole body (and h rewritten to the first package's header) once every
// package arrived. Each package but the completing one is answered with
// 0x8001 at once, so the terminal goes on sending.
func (ch *channel) reassemble(h *Header, body []byte) ([]byte, bool) {
	key := fragKey{h.MsgID, h.MsgSN - (h.FragSN - 1)}
	ch.fragMu.Lock()
	fb := ch.frags[key]
	if fb == nil {
		if len(ch.frags) >= maxReassemblies {
			ch.fragMu.Unlock()
			ch.m.count("frames.fragments_dropped")
			return nil, false
		}
		if ch.frags == nil {
			ch.frags = map[fragKey]*fragBuf{}
		}
		fb = &fragBuf{h: *h, parts: make([][]byte, h.FragTotal)}
		fb.h.MsgSN = key.first
		ch.frags[key] = fb
		fb.timer = time.AfterFunc(ch.cfg.Frame.ReassemblyTimeout.D(), func() { ch.fragTimeout(key) })
	}
	i := int(h.FragSN) - 1
	if int(h.FragTotal) != len(fb.parts) || fb.parts[i] != nil {
		ch.fragMu.Unlock()
		ch.m.count("frames.fragments_dropped")
		return nil, false
	}
	if fb.size+len(body) > int(ch.cfg.Frame.MaxReassembledLength) {
		fb.timer.Stop()
		delete(ch.frags, key)
		ch.fragMu.Unlock()
		ch.m.count("frames.fragments_too_long")
		return nil, false
	}
	fb.parts[i] = bytes.Clone(body)
	fb.got++
	fb.size += len(body)
	done := fb.got == len(fb.parts)
	if done {
		fb.timer.Stop()
		delete(ch.frags, key)
	}
	ch.fragMu.Unlock()
	if !done {
		ch.reply(h, MsgPlatformAck, obj{{"seq", int64(h.MsgSN)}, {"id", int64(h.MsgID)}, {"result", 0}})
		return nil, false
	}
	full := make([]byte, 0, fb.size)
	for _, p := range fb.parts {
		full = append(full, p...)
	}
	*h = fb.h
	h.FragTotal, h.FragSN, h.Len = 0, 0, len(full)
	ch.m.count("frames.reassembled")
	return full, true
}

// fragTimeout asks once for the missing packages (0x8003), then gives up.
func (ch *channel) fragTimeout(key fragKey) {
	ch.fragMu.Lock()
	fb := ch.frags[key]
	if fb == nil {
		ch.fragMu.Unlock()
		return
	}
	if fb.asked {
		delete(ch.frags, key)
		ch.fragMu.Unlock()
		ch.m.count("frames.reassembly_timeout")
		return
	}
	fb.asked = true
	var ids []any
	for i, p := range fb.parts {
		if p == nil {
			ids = append(ids, int64(i+1))
		}
	}
	fb.timer.Reset(ch.cfg.Frame.ReassemblyTimeout.D())
	h := fb.h
	ch.fragMu.Unlock()
	ch.send(&h, MsgPlatformRetx, obj{{"seq", int64(key.first)}, {"ids", ids}})
}

// handle acts on one complete message.
func (ch *channel) handle(ctx context.Context, h *Header, body []byte, replySN uint16) error {
	switch h.MsgID {
	case MsgRegister:
		ch.onRegister(ctx, h, body, replySN)
		return nil
	case MsgAuth:
		ch.onAuth(ctx, h, body, replySN)
		return nil
	}
	if ch.phone == "" {
		ch.m.count("frames.unauthenticated")
		if h.MsgID == MsgDeregister {
			ch.reason = "deregistered"
			return errors.New("deregistered")
		}
		return nil
	}
	var b obj
	var err error
	if h.Encrypt != 0 {
		b = obj{{"data", base64.StdEncoding.EncodeToString(body)}}
	} else {
		b, err = decodeBody(h.MsgID, h.V2019, ch.cs, body)
	}
	switch {
	case errors.Is(err, errUnknown):
		if !ch.cfg.Frame.ParseUnknownMessage {
			ch.m.count("frames.unsupported")
			if !ch.cfg.Proto.IgnoreUnsupportedFrames {
				ch.reason = "unsupported_frame"
				return err
			}
			return nil
		}
		b = obj{{"unknown_id", true}, {"data", base64.StdEncoding.EncodeToString(body)}}
	case err != nil:
		ch.m.count("frames.invalid_body")
		ch.log.Debug("bad message body", "msg_id", h.MsgID, "error", err)
		if !ch.cfg.Proto.IgnoreUnsupportedFrames {
			ch.reason = "invalid_frame"
			return err
		}
		ch.generalAck(h, replySN, 2)
		return nil
	}
	result := byte(0)
	if err := ch.publish(h, len(body), b); err != nil && !errors.Is(err, gateway.ErrDenied) {
		// Sent again by the terminal; a denied publish is dropped by
		// policy (and counted by the framework), as EMQX does.
		result = 1
	}
	ch.settle(h.MsgID, b)
	switch {
	case h.MsgID == MsgQueryTime:
		ch.reply(h, MsgTimeAck, timeBody(time.Now()))
	case h.MsgID == MsgMultimedia:
		id, _ := b.get("id")
		ch.reply(h, MsgMultimediaAck, obj{{"mm_id", id}})
	case autoAck[h.MsgID]:
		ch.generalAck(h, replySN, result)
	}
	if h.MsgID == MsgDeregister {
		ch.reason = "deregistered"
		return errors.New("deregistered")
	}
	return nil
}

var jsonBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 512); return &b }}

func (ch *channel) publish(h *Header, bodyLen int, b obj) error {
	ch.mu.Lock()
	cl := ch.cl
	ch.mu.Unlock()
	bp := jsonBufPool.Get().(*[]byte)
	buf := append((*bp)[:0], `{"header":`...)
	buf = appendJSON(buf, headerObj(h, bodyLen))
	buf = append(buf, `,"body":`...)
	buf = appendJSON(buf, b)
	buf = append(buf, '}')
	payload := bytes.Clone(buf)
	*bp = buf
	jsonBufPool.Put(bp)
	err := cl.Publish(ch.up, payload, 1, false, nil)
	if err != nil {
		ch.m.count("messages.publish_failed")
		ch.log.Debug("publish failed", "error", err)
	}
	return err
}

func (ch *channel) generalAck(h *Header, sn uint16, result byte) {
	ch.reply(h, MsgPlatformAck, obj{{"seq", int64(sn)}, {"id", int64(h.MsgID)}, {"result", int64(result)}})
}

// reply sends a platform message to the terminal that sent h, in h's
// edition.
func (ch *channel) reply(h *Header, id uint16, body obj) { ch.send(h, id, body) }

func (ch *channel) send(h *Header, id uint16, body obj) {
	if id == MsgPlatformAck {
		// The hot reply: built directly, no JSON round trip.
		seq, _ := body[0].v.(int64)
		mid, _ := body[1].v.(int64)
		res, _ := body[2].v.(int64)
		b := []byte{byte(seq >> 8), byte(seq), byte(mid >> 8), byte(mid), byte(res)}
		ch.sendRaw(h, id, b)
		return
	}
	m, err := objToMap(body)
	if err == nil {
		var b []byte
		b, err = encodeBody(nil, id, h.V2019, ch.cs, m)
		if err == nil {
			ch.mu.Lock()
			out := Header{MsgID: id, V2019: h.V2019, ProtoVer: h.ProtoVer, Phone: h.Phone, MsgSN: ch.nextSNLocked()}
			var f []byte
			f, err = AppendFrame(nil, &out, b)
			if err == nil {
				ch.enqueueLocked(f)
			}
			ch.mu.Unlock()
		}
	}
	if err != nil {
		ch.log.Warn("cannot encode reply", "msg_id", id, "error", err)
	}
}

func (ch *channel) sendRaw(h *Header, id uint16, b []byte) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	out := Header{MsgID: id, V2019: h.V2019, ProtoVer: h.ProtoVer, Phone: h.Phone, MsgSN: ch.nextSNLocked()}
	f, err := AppendFrame(make([]byte, 0, 32), &out, b)
	if err != nil {
		return
	}
	ch.enqueueLocked(f)
}

// objToMap turns a body built in code into the encoder's input.
func objToMap(o obj) (map[string]any, error) {
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(appendJSON(nil, o)))
	d.UseNumber()
	return m, d.Decode(&m)
}

func (ch *channel) nextSNLocked() uint16 {
	for {
		sn := ch.sn
		ch.sn++
		if !ch.snInUseLocked(sn) {
			return sn
		}
	}
}

func (ch *channel) snInUseLocked(sn uint16) bool {
	for _, p := range ch.inflight {
		if sn-p.sn <= p.lastSN-p.sn {
			return true
		}
	}
	return false
}

// ---- registration and authentication ----

func (ch *channel) onRegister(ctx context.Context, h *Header, body []byte, replySN uint16) {
	b, err := decodeBody(MsgRegister, h.V2019, ch.cs, body)
	if err != nil {
		ch.m.count("frames.invalid_body")
		return
	}
	a := &ch.cfg.Proto.Auth
	result, code := byte(0), ""
	if a.Registry != "" {
		result, code, err = ch.authc().register(ctx, a.Registry, h.Phone, b)
		if err != nil {
			ch.m.count("auth.registry_error")
			ch.log.Warn("registry unavailable", "phone", h.Phone, "error", err)
			return
		}
	} else {
		code = newAuthCode()
		if reg, ok := ch.p.regs.get(h.Phone); ok {
			code = reg.code
		}
	}
	if result == 0 {
		man, _ := b.get("manufacture")
		dev, _ := b.get("dev_id")
		ms, _ := man.(string)
		ds, _ := dev.(string)
		if err := ch.p.regs.put(h.Phone, &registration{code: code, manufacturer: ms, terminalID: ds, at: time.Now()}); err != nil {
			// Held in memory all the same: refusing the terminal over a
			// full disk would be worse than a re-registration after a
			// restart.
			ch.m.count("registrations.persist_error")
			ch.log.Warn("registration not persisted", "phone", h.Phone, "error", err)
		}
		ch.m.count("registrations.success")
	} else {
		ch.m.count("registrations.failure")
	}
	ack := obj{{"seq", int64(replySN)}, {"result", int64(result)}}
	if result == 0 {
		ack = append(ack, kv{"auth_code", code})
	}
	ch.reply(h, MsgRegisterAck, ack)
}

func (ch *channel) authc() *authClient {
	if ch.ac == nil {
		ch.ac = ch.p.authClient(ch.cfg)
	}
	return ch.ac
}

func (ch *channel) onAuth(ctx context.Context, h *Header, body []byte, replySN uint16) {
	b, err := decodeBody(MsgAuth, h.V2019, ch.cs, body)
	if err != nil {
		ch.m.count("frames.invalid_body")
		ch.generalAck(h, replySN, 2)
		return
	}
	cv, _ := b.get("code")
	code, _ := cv.(string)
	ok := ch.checkAuth(ctx, h.Phone, code)
	if ok && ch.phone != "" {
		// A repeated authentication on a live connection.
		if h.Phone != ch.phone {
			ok = false
		}
		ch.generalAck(h, replySN, boolResult(ok))
		return
	}
	if ok {
		ok = ch.connect(ctx, h, b, code, replySN)
		if ok {
			return
		}
	}
	ch.m.count("auth.failure")
	ch.generalAck(h, replySN, 1)
}

func boolResult(ok bool) byte {
	if ok {
		return 0
	}
	return 1
}

// checkAuth: the code must be the one this phone registered with; an
// HTTP authentication service, when configured, has the last word.
func (ch *channel) checkAuth(ctx context.Context, phone, code string) bool {
	reg, registered := ch.p.regs.get(phone)
	if registered && reg.code != code {
		return false
	}
	a := &ch.cfg.Proto.Auth
	if a.Authentication == "" {
		return registered
	}
	ok, err := ch.authc().authenticate(ctx, a.Authentication, phone, code)
	if err != nil {
		ch.m.count("auth.service_error")
		ch.log.Warn("authentication service unavailable", "phone", phone, "error", err)
	}
	return ok
}

// connect makes the terminal a client of the gateway; it answers the
// authentication itself on success.
func (ch *channel) connect(ctx context.Context, h *Header, b obj, code string, replySN uint16) bool {
	ci := ch.l.NewClientInfo(ch.conn)
	ci.ClientID = h.Phone
	ci.Username = h.Phone
	ci.Password = []byte(code)
	ci.SetField("phone", h.Phone)
	if h.V2019 {
		ci.SetField("proto_ver", itoa(int(h.ProtoVer)))
	} else {
		ci.SetField("proto_ver", "2013")
	}
	if reg, ok := ch.p.regs.get(h.Phone); ok {
		ci.SetField("manufacturer", reg.manufacturer)
		ci.SetField("terminal_id", reg.terminalID)
	}
	if imei, ok := b.get("imei"); ok {
		ci.SetField("imei", imei.(string))
	}
	if err := ch.l.Authenticate(ctx, ci); err != nil {
		ch.log.Info("authentication denied", "phone", h.Phone, "error", err)
		return false
	}
	ch.mu.Lock()
	ch.v19, ch.protoVer = h.V2019, h.ProtoVer
	ch.mu.Unlock()
	cl, _, err := ch.l.Connect(ci, ch, gateway.ConnectOptions{CleanStart: true, Held: true})
	if err != nil {
		ch.log.Warn("connect failed", "phone", h.Phone, "error", err)
		return false
	}
	ch.up = ch.cfg.Proto.UpTopic.Render(ci)
	ch.mu.Lock()
	ch.cl = cl
	ch.phone = h.Phone
	ch.mu.Unlock()
	ch.idle.Stop()
	if err := cl.Subscribe(ch.cfg.Proto.DnTopic.Render(ci), 1); err != nil {
		ch.log.Warn("downlink subscription refused", "error", err)
	}
	ch.generalAck(h, replySN, 0)
	cl.Resume()
	ch.m.count("auth.success")
	return true
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for n > 0 {
		i--
		b[i] = byte('0' + n%10)
		n /= 10
	}
	return string(b[i:])
}

// ---- downlinks ----

// Deliver implements gateway.Handler: a JSON downlink from dn_topic.
// The broker delivery is acknowledged at once: from here the gateway's
// own window and queue hold the message, bounded and counted.
func (ch *channel) Deliver(d gateway.Delivery) {
	ch.mu.Lock()
	cl := ch.cl
	ch.mu.Unlock()
	if d.ID != 0 && cl != nil {
		defer cl.Ack(d.ID)
	}
	var msg struct {
		Header struct {
			MsgID *int64 `json:"msg_id"`
			MsgSN *int64 `json:"msg_sn"`
		} `json:"header"`
		Body map[string]any `json:"body"`
	}
	dec := json.NewDecoder(bytes.NewReader(d.Payload))
	dec.UseNumber()
	if err := dec.Decode(&msg); err != nil || msg.Header.MsgID == nil {
		ch.m.count("delivery.dropped.invalid")
		ch.log.Warn("invalid downlink dropped", "error", err)
		return
	}
	id := *msg.Header.MsgID
	if id < 0x8000 || id > 0xffff {
		ch.m.count("delivery.dropped.invalid")
		return
	}
	ch.mu.Lock()
	v19 := ch.v19
	ch.mu.Unlock()
	body, err := encodeBody(nil, uint16(id), v19, ch.cs, msg.Body)
	if err == nil && len(body) > int(ch.cfg.Frame.MaxReassembledLength) {
		err = errors.New("body longer than frame.max_reassembled_length")
	}
	if err != nil {
		ch.m.count("delivery.dropped.invalid")
		ch.log.Warn("downlink dropped", "msg_id", id, "error", err)
		return
	}
	p := &pending{msgID: uint16(id), body: body}
	if sn := msg.Header.MsgSN; sn != nil {
		if *sn < 0 || *sn > 0xffff {
			ch.m.count("delivery.dropped.invalid")
			return
		}
		p.sn, p.customSN = uint16(*sn), true
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed {
		return
	}
	if noAck[p.msgID] {
		ch.transmitLocked(p)
		return
	}
	if len(ch.inflight) < ch.cfg.MaxInflight && len(ch.queue) == 0 {
		ch.startLocked(p)
		return
	}
	if len(ch.queue) >= ch.cfg.MessageQueueLen {
		ch.m.count("delivery.dropped.queue_full")
		return
	}
	ch.queue = append(ch.queue, p)
}

// startLocked sends p and puts it in the inflight window.
func (ch *channel) startLocked(p *pending) {
	if p.customSN && ch.snInUseLocked(p.sn) {
		ch.m.count("delivery.dropped.msg_sn_conflict")
		return
	}
	ch.transmitLocked(p)
	p.sent = time.Now()
	ch.inflight = append(ch.inflight, p)
	ch.armRetryLocked()
}

func (ch *channel) transmitLocked(p *pending) {
	if p.frame == nil {
		// A body beyond the header's 10-bit length goes in sub-packages
		// with consecutive msg_sn.
		n := max(1, (len(p.body)+MaxBodyLen-1)/MaxBodyLen)
		if !p.customSN {
			p.sn = ch.nextSNLocked()
			ch.sn += uint16(n - 1)
		}
		p.lastSN = p.sn + uint16(n-1)
		var f []byte
		for i := 0; i < n; i++ {
			h := Header{MsgID: p.msgID, V2019: ch.v19, ProtoVer: ch.protoVer, Phone: ch.phone, MsgSN: p.sn + uint16(i)}
			part := p.body[i*MaxBodyLen : min(len(p.body), (i+1)*MaxBodyLen)]
			if n > 1 {
				h.FragTotal, h.FragSN = uint16(n), uint16(i+1)
			}
			var err error
			if f, err = AppendFrame(f, &h, part); err != nil {
				ch.log.Warn("downlink dropped", "msg_id", p.msgID, "error", err)
				return
			}
		}
		p.frame = f
	}
	ch.enqueueLocked(p.frame)
	ch.m.count("messages.delivered")
}

func (ch *channel) armRetryLocked() {
	if len(ch.inflight) == 0 || ch.closed {
		return
	}
	next := ch.inflight[0].sent
	for _, p := range ch.inflight[1:] {
		if p.sent.Before(next) {
			next = p.sent
		}
	}
	d := time.Until(next.Add(ch.cfg.RetryInterval.D()))
	if ch.retry == nil {
		ch.retry = time.AfterFunc(d, ch.onRetry)
	} else {
		ch.retry.Reset(d)
	}
}

func (ch *channel) onRetry() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed {
		return
	}
	now := time.Now()
	iv := ch.cfg.RetryInterval.D()
	kept := ch.inflight[:0]
	for _, p := range ch.inflight {
		if now.Sub(p.sent) < iv {
			kept = append(kept, p)
			continue
		}
		if p.retries >= ch.cfg.MaxRetryTimes {
			ch.m.count("delivery.dropped.retry_exhausted")
			continue
		}
		p.retries++
		p.sent = now
		ch.enqueueLocked(p.frame)
		ch.m.count("messages.retransmitted")
		kept = append(kept, p)
	}
	clear(ch.inflight[len(kept):])
	ch.inflight = kept
	ch.fillLocked()
	ch.armRetryLocked()
}

// fillLocked moves queued downlinks into free inflight slots.
func (ch *channel) fillLocked() {
	for len(ch.queue) > 0 && len(ch.inflight) < ch.cfg.MaxInflight {
		p := ch.queue[0]
		ch.queue[0] = nil
		ch.queue = ch.queue[1:]
		ch.startLocked(p)
	}
}

// settle acknowledges the downlink a terminal message answers.
func (ch *channel) settle(id uint16, b obj) {
	var ids []uint16
	seq, hasSeq := b.get("seq")
	switch id {
	case MsgTermAck:
		v, _ := b.get("id")
		n, _ := v.(int64)
		ids = []uint16{uint16(n)}
	default:
		ids = replies[id]
		if ids == nil {
			return
		}
	}
	sn, _ := seq.(int64)
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for i, p := range ch.inflight {
		// A general response settles a sub-packaged downlink with the
		// answer to its last package; a specific reply names any of them.
		if hasSeq && id == MsgTermAck && p.lastSN != uint16(sn) {
			continue
		}
		if hasSeq && id != MsgTermAck && uint16(sn)-p.sn > p.lastSN-p.sn {
			continue
		}
		for _, want := range ids {
			if p.msgID == want {
				ch.inflight = append(ch.inflight[:i], ch.inflight[i+1:]...)
				ch.m.count("messages.acked")
				ch.fillLocked()
				ch.armRetryLocked()
				return
			}
		}
	}
}

// Kick implements gateway.Handler.
func (ch *channel) Kick(reason string) {
	ch.mu.Lock()
	ch.closed = true
	ch.mu.Unlock()
	ch.m.count("connections.kicked")
	_ = ch.conn.Close()
}

// ---- writer ----

func (ch *channel) enqueueLocked(f []byte) {
	if ch.closed {
		return
	}
	if len(ch.out) >= maxOutFrames {
		ch.closed = true
		ch.m.count("connections.slow_consumer")
		_ = ch.conn.Close()
		return
	}
	ch.out = append(ch.out, f)
	if !ch.writing {
		ch.writing = true
		ch.writersWG.Add(1)
		go ch.writeLoop()
	}
}

func (ch *channel) writeLoop() {
	defer ch.writersWG.Done()
	var buf []byte
	for {
		ch.mu.Lock()
		items := ch.out
		if len(items) == 0 || ch.closed {
			ch.writing = false
			ch.mu.Unlock()
			return
		}
		ch.out = nil
		ch.mu.Unlock()
		buf = buf[:0]
		for _, f := range items {
			buf = append(buf, f...)
			inc(ch.m.out)
		}
		if _, err := ch.conn.Write(buf); err != nil {
			_ = ch.conn.Close()
			ch.mu.Lock()
			ch.writing = false
			ch.mu.Unlock()
			return
		}
	}
}

func (ch *channel) shutdown() {
	ch.idle.Stop()
	ch.mu.Lock()
	writing := ch.writing
	ch.mu.Unlock()
	if writing {
		t := time.AfterFunc(closeGrace, func() { _ = ch.conn.Close() })
		ch.writersWG.Wait()
		t.Stop()
	}
	ch.mu.Lock()
	ch.closed = true
	if ch.retry != nil {
		ch.retry.Stop()
	}
	if n := len(ch.inflight) + len(ch.queue); n > 0 {
		ch.m.sets[0].Counter("delivery.dropped.closed").Add(uint64(n))
	}
	ch.inflight, ch.queue = nil, nil
	cl := ch.cl
	ch.mu.Unlock()
	ch.fragMu.Lock()
	for _, fb := range ch.frags {
		fb.timer.Stop()
	}
	ch.frags = nil
	ch.fragMu.Unlock()
	_ = ch.conn.Close()
	ch.writersWG.Wait()
	if cl != nil {
		cl.Close(ch.reason)
	}
	ch.log.Debug("connection closed", "reason", ch.reason)
}
