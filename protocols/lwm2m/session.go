package lwm2m

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"

	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/transports"
)

// regInfo is a registration as the register and update events show it.
type regInfo struct {
	EP            string   `json:"ep"`
	LT            int64    `json:"lt"`
	LwM2M         string   `json:"lwm2m"`
	B             string   `json:"b"`
	SMS           string   `json:"sms,omitempty"`
	Q             bool     `json:"Q,omitempty"`
	AlternatePath string   `json:"alternatePath"`
	ObjectList    []string `json:"objectList"`
	// Extra holds the other register and update query parameters (apn,
	// imei, device_id…), published as EMQX does; password is never kept.
	Extra map[string]string `json:"-"`
}

// regKeys are the query parameters regInfo has fields for.
var regKeys = map[string]bool{"ep": true, "lt": true, "lwm2m": true, "b": true, "sms": true, "Q": true, "password": true}

func mergeExtra(dst map[string]string, q map[string]string) map[string]string {
	for k, v := range q {
		if !regKeys[k] {
			if dst == nil {
				dst = map[string]string{}
			}
			dst[k] = v
		}
	}
	return dst
}

// session is one registration.
type session struct {
	p      *proto
	id     string // the location, /rd/{id}
	client *gateway.Client

	mu        sync.Mutex
	ep        *endpoint
	info      regInfo
	qmode     bool
	writeCF   int    // 0: writes in TLV; 110 or 112: in SenML
	identity  string // the dtls PSK identity it registered with
	lifetime  time.Duration
	expiry    *time.Timer
	lastHeard time.Time
	queue     []*command
	inflight  *exchange
	observes  map[string][]byte // path → token
	records   map[string]any    // "action path" → last response, for lookup
	closed    bool
}

var locEnc = base32.StdEncoding.WithPadding(base32.NoPadding)

func newLocation() string {
	var b [5]byte
	_, _ = rand.Read(b[:])
	return strings.ToLower(locEnc.EncodeToString(b[:]))
}

func reply(code codes.Code) *message.Message { return &message.Message{Code: code} }

func uriPath(m *message.Message) []string {
	var out []string
	for _, o := range m.Options {
		if o.ID == message.URIPath {
			out = append(out, string(o.Value))
		}
	}
	return out
}

func queries(m *message.Message) map[string]string {
	q := map[string]string{}
	for _, o := range m.Options {
		if o.ID == message.URIQuery {
			k, v, _ := strings.Cut(string(o.Value), "=")
			q[k] = v
		}
	}
	return q
}

// request answers a device's request; out is the endpoint to answer on
// (another one when the request moved the registration).
func (p *proto) request(ep *endpoint, m *message.Message) (*message.Message, *endpoint) {
	segs := uriPath(m)
	if len(segs) == 1 && segs[0] == "dp" && m.Code == codes.POST {
		return p.send(ep, m), ep
	}
	if len(segs) == 0 || segs[0] != "rd" {
		return reply(codes.NotFound), ep
	}
	switch {
	case len(segs) == 1 && m.Code == codes.POST:
		return p.register(ep, m), ep
	case len(segs) == 2 && m.Code == codes.POST:
		return p.updateReg(ep, m, segs[1])
	case len(segs) == 2 && m.Code == codes.DELETE:
		return p.deregister(ep, segs[1])
	}
	return reply(codes.MethodNotAllowed), ep
}

func (p *proto) lifetimeOf(q map[string]string) (time.Duration, bool) {
	spec := p.spec.Load()
	lt, ok := q["lt"]
	if !ok || lt == "0" {
		return spec.LifetimeMax.D(), true
	}
	n, err := strconv.ParseInt(lt, 10, 64)
	if err != nil || n < 0 {
		return 0, false
	}
	d := time.Duration(n) * time.Second
	if d < spec.LifetimeMin.D() || d > spec.LifetimeMax.D() {
		return 0, false
	}
	return d, true
}

// parseLinks reads a register or update payload: object links and an
// alternate path (`</x>;rt="oma.lwm2m"`).
func parseLinks(payload []byte) (alt string, objs []string, writeCF int) {
	alt = "/"
	type link struct{ target, attrs string }
	var links []link
	for _, l := range strings.Split(string(payload), ",") {
		l = strings.TrimSpace(l)
		if !strings.HasPrefix(l, "<") {
			continue
		}
		end := strings.IndexByte(l, '>')
		if end < 0 {
			continue
		}
		links = append(links, link{l[1:end], l[end+1:]})
		if strings.Contains(l[end+1:], `rt="oma.lwm2m"`) {
			alt = "/" + strings.Trim(l[1:end], "/")
			writeCF = senmlPreference(l[end+1:])
		}
	}
	objs = []string{}
	for _, lk := range links {
		if strings.Contains(lk.attrs, `rt="oma.lwm2m"`) {
			continue
		}
		t := lk.target
		if alt != "/" {
			t = strings.TrimPrefix(t, alt)
		}
		t = normPath(t)
		if t == "" || t == "/" {
			writeCF = senmlPreference(lk.attrs)
			continue
		}
		if _, err := parsePath(t); err != nil {
			continue
		}
		objs = append(objs, t)
	}
	return alt, objs, writeCF
}

// senmlPreference reads the content formats a 1.1 device lists on its
// root link (`</>;ct="60 110 112 11543"` or `ct=112`): SenML CBOR, else
// SenML JSON, for a device that does not list TLV; 0 keeps TLV.
func senmlPreference(attrs string) int {
	_, v, ok := strings.Cut(attrs, "ct=")
	if !ok {
		return 0
	}
	v, _, _ = strings.Cut(v, ";")
	has := map[string]bool{}
	for _, f := range strings.Fields(strings.Trim(v, `"`)) {
		has[f] = true
	}
	switch {
	case has["11542"] || has["1542"]:
		return 0
	case has["112"]:
		return cfSenMLCBOR
	case has["110"]:
		return cfSenMLJSON
	}
	return 0
}

// queueMode: binding UQ, SQ or UQS (1.0), the Q parameter (1.1), or a
// China-Telecom NB-IoT PSM APN (as EMQX).
func queueMode(b string, q map[string]string) bool {
	if _, ok := q["Q"]; ok {
		return true
	}
	return psmAPN(q["apn"]) || strings.Contains(b, "Q")
}

func psmAPN(apn string) bool {
	switch apn {
	case "Ctnb", "psmA.eDRX0.ctnb", "psmC.eDRX0.ctnb", "psmF.eDRXC.ctnb":
		return true
	}
	return false
}

func (p *proto) register(ep *endpoint, m *message.Message) *message.Message {
	q := queries(m)
	name := q["ep"]
	refuse := func(c codes.Code, why string) *message.Message {
		p.m.registerFailed.Inc()
		p.gw.Logger().Debug("lwm2m register refused", "endpoint", name, "reason", why)
		return reply(c)
	}
	if name == "" {
		return refuse(codes.BadRequest, "no ep")
	}
	ver, ok := q["lwm2m"]
	if !ok {
		ver = "1.0"
	}
	switch ver {
	case "1.0", "1", "1.1":
	default:
		return refuse(codes.PreconditionFailed, "unsupported lwm2m version "+ver)
	}
	lt, ok := p.lifetimeOf(q)
	if !ok {
		return refuse(codes.BadRequest, "lifetime out of bounds")
	}
	identity := pskIdentity(ep.conn)
	if identity != "" {
		if identity != name {
			return refuse(codes.Forbidden, "psk identity differs from endpoint name")
		}
	}
	b := q["b"]
	if b == "" {
		b = "U"
	}
	alt, objs, writeCF := parseLinks(m.Payload)
	info := regInfo{EP: name, LT: int64(lt / time.Second), LwM2M: ver, B: b, SMS: q["sms"], AlternatePath: alt, ObjectList: objs,
		Extra: mergeExtra(nil, q)}
	if _, ok := q["Q"]; ok {
		info.Q = true
	}

	ci := ep.l.NewClientInfo(ep.conn)
	ci.ClientID = name
	if v := q["device_id"]; v != "" {
		ci.ClientID = v
	}
	ci.Username = name
	if v := q["imei"]; v != "" {
		ci.Username = v
	}
	if v, ok := q["password"]; ok {
		ci.Password = []byte(v)
	}
	ci.SetField("endpoint_name", name)
	ci.SetField("lifetime", strconv.FormatInt(info.LT, 10))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	err := ep.l.Authenticate(ctx, ci)
	cancel()
	if err != nil {
		return refuse(codes.Forbidden, err.Error())
	}

	if ver != "1.1" {
		writeCF = 0
	}
	s := &session{p: p, id: newLocation(), ep: ep, info: info, qmode: queueMode(b, q), lifetime: lt, writeCF: writeCF, identity: identity,
		lastHeard: time.Now(), observes: map[string][]byte{}, records: map[string]any{}}
	// A re-register replaces the old registration but keeps its queued
	// commands (Leshan#207).
	p.mu.Lock()
	old := p.byEP[name]
	p.mu.Unlock()
	if old != nil {
		old.mu.Lock()
		if old.inflight != nil { // unanswered: it goes again
			s.queue = append(s.queue, old.inflight.cmd)
		}
		s.queue = append(s.queue, old.queue...)
		old.queue = nil
		sameConn := old.ep == ep
		old.mu.Unlock()
		old.end("re-registered", !sameConn)
	}
	c, _, err := ep.l.Connect(ci, s, gateway.ConnectOptions{CleanStart: true, Held: true})
	if err != nil {
		return refuse(codes.InternalServerError, err.Error())
	}
	s.client = c
	spec := p.spec.Load()
	if err := c.Subscribe(spec.Translators.Command.Topic, byte(spec.Translators.Command.QoS)); err != nil {
		c.Close("subscribe_failed")
		return refuse(codes.Forbidden, err.Error())
	}
	p.mu.Lock()
	p.byLoc[s.id] = s
	p.byEP[name] = s
	p.mu.Unlock()
	ep.sess.Store(s)
	s.mu.Lock()
	s.expiry = time.AfterFunc(lt, func() { s.expire() })
	s.mu.Unlock()
	p.m.register.Inc()
	s.publishReg("register", spec.Translators.Register)
	c.Resume()
	s.autoObserve()

	r := reply(codes.Created)
	r.Options = message.Options{{ID: message.LocationPath, Value: []byte("rd")}, {ID: message.LocationPath, Value: []byte(s.id)}}
	return r
}

func (s *session) publishReg(msgType string, t Translator) {
	s.mu.Lock()
	info := s.info
	info.ObjectList = append([]string(nil), s.info.ObjectList...)
	data := make(map[string]any, len(info.Extra)+8)
	for k, v := range info.Extra {
		data[k] = v
	}
	s.mu.Unlock()
	b, _ := json.Marshal(info)
	var fixed map[string]any
	_ = json.Unmarshal(b, &fixed)
	for k, v := range fixed {
		data[k] = v
	}
	b, _ = json.Marshal(map[string]any{"msgType": msgType, "data": data})
	_ = s.client.Publish(t.Topic, b, byte(t.QoS), false, nil)
}

func (p *proto) lookupLoc(id string) *session {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.byLoc[id]
}

func (p *proto) updateReg(ep *endpoint, m *message.Message, id string) (*message.Message, *endpoint) {
	s := p.lookupLoc(id)
	if s == nil {
		return reply(codes.NotFound), ep
	}
	q := queries(m)
	var lt time.Duration
	if _, has := q["lt"]; has {
		var ok bool
		if lt, ok = p.lifetimeOf(q); !ok {
			return reply(codes.BadRequest), ep
		}
	}
	out := p.attach(s, ep)
	if out == nil {
		return reply(codes.Forbidden), ep
	}
	s.mu.Lock()
	if s.closed { // expired or replaced meanwhile
		s.mu.Unlock()
		return reply(codes.NotFound), ep
	}
	if lt > 0 {
		s.lifetime = lt
		s.info.LT = int64(lt / time.Second)
	}
	if b := q["b"]; b != "" {
		s.info.B = b
		s.qmode = queueMode(b, q) || psmAPN(s.info.Extra["apn"])
	}
	if v, ok := q["sms"]; ok {
		s.info.SMS = v
	}
	s.info.Extra = mergeExtra(s.info.Extra, q)
	hasObjs := len(m.Payload) > 0
	if hasObjs {
		var cf int
		s.info.AlternatePath, s.info.ObjectList, cf = parseLinks(m.Payload)
		if s.info.LwM2M == "1.1" {
			s.writeCF = cf
		}
	}
	if s.expiry != nil {
		s.expiry.Reset(s.lifetime)
	}
	s.mu.Unlock()
	p.m.update.Inc()
	spec := p.spec.Load()
	if spec.UpdateMsgPublishCondition == "always" || hasObjs {
		s.publishReg("update", spec.Translators.Update)
	}
	return reply(codes.Changed), out
}

func (p *proto) deregister(ep *endpoint, id string) (*message.Message, *endpoint) {
	s := p.lookupLoc(id)
	if s == nil {
		return reply(codes.NotFound), ep
	}
	out := p.attach(s, ep)
	if out == nil {
		return reply(codes.Forbidden), ep
	}
	p.m.deregister.Inc()
	// The Conn stays open for the reply; handle closes it after.
	s.end("deregistered", false)
	return reply(codes.Deleted), out
}

func (s *session) expire() {
	s.p.m.expired.Inc()
	s.end("lifetime_expired", true)
}

// afterRequest runs after a request of the device was answered: it was
// heard from, so a queue-mode device is awake.
func (s *session) afterRequest() {
	s.mu.Lock()
	s.lastHeard = time.Now()
	s.mu.Unlock()
	s.dispatch()
}

func (s *session) heard() {
	s.mu.Lock()
	s.lastHeard = time.Now()
	s.mu.Unlock()
}

// end finishes the registration. closeConn is false when a re-register
// on the same Conn replaces it.
func (s *session) end(reason string, closeConn bool) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	if s.expiry != nil {
		s.expiry.Stop()
	}
	inflight := s.inflight
	s.inflight = nil
	ep := s.ep
	toks := make([]string, 0, len(s.observes))
	for _, t := range s.observes {
		toks = append(toks, string(t))
	}
	s.mu.Unlock()
	p := s.p
	p.mu.Lock()
	if p.byLoc[s.id] == s {
		delete(p.byLoc, s.id)
	}
	if p.byEP[s.info.EP] == s {
		delete(p.byEP, s.info.EP)
	}
	for _, t := range toks {
		if o := p.observe[t]; o != nil && o.s == s {
			delete(p.observe, t)
		}
	}
	p.mu.Unlock()
	if inflight != nil {
		inflight.forget()
	}
	if s.client != nil {
		s.client.Close(reason)
	}
	if ep != nil && ep.sess.CompareAndSwap(s, nil) && closeConn {
		_ = ep.conn.Close()
	}
}

// Deliver implements gateway.Handler: a downlink command.
func (s *session) Deliver(d gateway.Delivery) {
	if d.ID != 0 {
		defer s.client.Ack(d.ID)
	}
	cmd, errResp := parseCommand(d.Payload)
	if errResp != nil {
		if data, _ := errResp["data"].(map[string]any); data["codeMsg"] == "unsupported_msg_type" {
			s.p.m.unknownMsgType.Inc()
		}
		s.publishResp(errResp)
		return
	}
	s.enqueue(cmd)
}

// Kick implements gateway.Handler.
func (s *session) Kick(reason string) { s.end(reason, true) }

func (s *session) enqueue(cmd *command) {
	spec := s.p.spec.Load()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	if len(s.queue) >= spec.MaxMqueueLen {
		s.mu.Unlock()
		s.p.m.droppedFull.Inc()
		s.publishResp(cmd.failure("coap_timeout"))
		return
	}
	cmd.queuedAt = time.Now()
	s.queue = append(s.queue, cmd)
	s.mu.Unlock()
	s.p.m.queued.Inc()
	s.dispatch()
}

// awakeLocked: a device not in queue mode is always reachable; one in
// queue mode for qmode_time_window after it was last heard from.
func (s *session) awakeLocked() bool {
	if s.ep == nil || s.ep.dead.Load() {
		return false
	}
	if !s.qmode {
		return true
	}
	return time.Since(s.lastHeard) <= s.p.spec.Load().QmodeTimeWindow.D()
}

// dispatch sends the next queued command when none is in flight and the
// device is reachable. Commands whose mheaders.ttl ran out are dropped.
func (s *session) dispatch() {
	for {
		s.mu.Lock()
		if s.closed || s.inflight != nil || len(s.queue) == 0 || !s.awakeLocked() {
			s.mu.Unlock()
			return
		}
		cmd := s.queue[0]
		s.queue[0] = nil
		s.queue = s.queue[1:]
		if cmd.ttl > 0 && time.Since(cmd.queuedAt) > cmd.ttl {
			s.mu.Unlock()
			s.p.m.droppedTTL.Inc()
			continue
		}
		x := s.p.newExchange(s, cmd)
		if cmd.ttl > 0 {
			s.inflight = x
		}
		ep := s.ep
		s.mu.Unlock()
		s.p.m.sent.Inc()
		x.start(ep)
		if cmd.ttl == 0 {
			continue // fire and forget: the next one goes at once
		}
		return
	}
}

func (s *session) publishResp(v map[string]any) {
	b, err := json.Marshal(v)
	if err != nil {
		return
	}
	t := s.p.spec.Load().Translators.Response
	_ = s.client.Publish(t.Topic, b, byte(t.QoS), false, nil)
}

const maxRecords = 100

func (s *session) record(action, p string, resp map[string]any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.records) >= maxRecords {
		for k := range s.records {
			delete(s.records, k)
			break
		}
	}
	s.records[action+" "+p] = resp
}

// autoObserve sends observe commands per auto_observe.
func (s *session) autoObserve() {
	ao := s.p.spec.Load().AutoObserve
	if !ao.All && len(ao.Paths) == 0 {
		return
	}
	s.mu.Lock()
	objs := append([]string(nil), s.info.ObjectList...)
	s.mu.Unlock()
	var paths []string
	if ao.All {
		skip := map[uint16]bool{0: true, 1: true, 2: true, 4: true, 5: true, 6: true, 7: true, 9: true, 15: true}
		for _, o := range objs {
			if pp, err := parsePath(o); err == nil && !skip[pp[0]] {
				paths = append(paths, o)
			}
		}
	} else {
		for _, want := range ao.Paths {
			for _, o := range objs {
				if want == o || strings.HasPrefix(want, o+"/") || strings.HasPrefix(o, want+"/") {
					paths = append(paths, want)
					break
				}
			}
		}
	}
	for _, pth := range paths {
		cmd, errResp := newCommand(map[string]any{"msgType": "observe", "data": map[string]any{"path": pth}})
		if errResp == nil {
			s.enqueue(cmd)
		}
	}
}

// pskIdentity finds the DTLS PSK identity through Conn wrappers.
func pskIdentity(c net.Conn) string {
	for c != nil {
		if pi, ok := c.(transports.PSKIdentity); ok {
			return pi.PSKIdentity()
		}
		w, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return ""
		}
		c = w.NetConn()
	}
	return ""
}

// send is the LwM2M 1.1 Send operation (POST /dp, SenML): published on
// the notify topic as msgType "send". Only a registered peer may send.
func (p *proto) send(ep *endpoint, m *message.Message) *message.Message {
	s := ep.sess.Load()
	if s == nil {
		p.m.sendRejected.Inc()
		return reply(codes.Unauthorized)
	}
	cf := contentFormat(m, cfSenMLCBOR)
	if cf != cfSenMLCBOR && cf != cfSenMLJSON {
		p.m.sendRejected.Inc()
		return reply(codes.UnsupportedMediaType)
	}
	content, err := decodeContent(cf, m.Payload, nil, *p.db.Load())
	if err != nil {
		p.m.sendRejected.Inc()
		return reply(codes.BadRequest)
	}
	p.m.send.Inc()
	b, err := json.Marshal(map[string]any{"msgType": "send", "data": map[string]any{"content": content}})
	if err != nil {
		return reply(codes.InternalServerError)
	}
	t := p.spec.Load().Translators.Notify
	if err := s.client.Publish(t.Topic, b, byte(t.QoS), false, nil); err != nil {
		// 2.04 is the device's licence to forget the data: refuse it
		// unless it was taken (queued durably at QoS 1), so the device
		// keeps it and sends again.
		if errors.Is(err, gateway.ErrDenied) {
			return reply(codes.Forbidden)
		}
		return reply(codes.ServiceUnavailable)
	}
	return reply(codes.Changed)
}
