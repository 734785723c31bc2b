package mqttsn

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/gateway"
)

// A channel is one client, keyed by the clientid its device sent. It
// outlives addresses (it moves between links) and connections (a
// CleanSession=0 channel stays, disconnected, for session_expiry).
//
// Everything that happens to a channel is an event: a message from its
// device, a delivery from the broker, an authentication result, a timer.
// Events are queued and run one at a time by whichever goroutine finds the
// channel idle (a link reader, a publisher draining the broker, a timer),
// the way the broker drains sessions. So the state needs no lock, and the
// channel may call into the broker (Publish, Ack, Resume) while handling
// an event: deliveries that causes come back as events queued behind the
// current one, never re-entering it.

type evKind uint8

const (
	evPacket evKind = iota
	evDeliver
	evAuth
	evKick
	evUnbound
	evTimer
	evRetry
	evExpire
	evShutdown
)

// Reasons a channel loses its binding.
const (
	unboundLinkDown  = "link_down" // the link ended: park, the device may come back
	unboundDisplaced = "displaced" // another client took the address
)

type event struct {
	kind evKind
	gen  uint64
	lk   link
	r    route
	m    *Message
	d    *gateway.Delivery
	ci   *gateway.ClientInfo
	l    *gateway.Listener
	err  error
	s    string
}

type chState uint8

const (
	stNew          chState = iota // made by a CONNECT, not yet handled
	stWillTopic                   // WILLTOPICREQ sent
	stWillMsg                     // WILLMSGREQ sent
	stAuth                        // authentication under way
	stActive                      // connected
	stAsleep                      // DISCONNECT with a duration: deliveries held
	stAwake                       // PINGREQ while asleep: flushing held deliveries
	stDisconnected                // gone, CleanSession=0 session kept
	stClosed                      // removed from the gateway
)

var stateNames = [...]string{"new", "willtopic", "willmsg", "authenticating", "active", "asleep", "awake", "disconnected", "closed"}

func (s chState) String() string { return stateNames[s] }

type will struct {
	topic  string
	msg    []byte
	qos    byte
	retain bool
}

// connecting is a CONNECT being handled (will handshake, authentication).
type connecting struct {
	clean     bool
	keepalive time.Duration
	will      *will
	started   time.Time
}

type outState uint8

const (
	waitPuback  outState = iota // QoS 1 PUBLISH sent
	waitPubrec                  // QoS 2 PUBLISH sent
	waitPubcomp                 // PUBREL sent
)

// outMsg is a QoS 1/2 delivery sent to the device and not yet acknowledged.
type outMsg struct {
	msgID     uint16
	topicType byte
	topicID   uint16
	state     outState
	tries     int
	sentAt    time.Time
	d         gateway.Delivery
}

// regWait is the gateway's REGISTER in flight (one at a time).
type regWait struct {
	msgID  uint16
	id     uint16
	name   string
	tries  int
	sentAt time.Time
}

// pendItem waits to be sent: a delivery, or a REGISTER of subs_resume.
type pendItem struct {
	d   *gateway.Delivery
	reg *regItem
}

type channel struct {
	p        *proto
	id       string
	parkedAt *parkKey // guarded by p.mu

	mu      sync.Mutex
	q       []event
	head    int
	running bool

	// The rest belongs to the goroutine running the channel.
	state     chState
	lk        link
	r         route
	bound     bool
	client    *gateway.Client
	attempt   uint64 // bumped per authentication
	cgen      uint64 // attempt that opened client
	clean     bool
	held      bool // client.Hold in force
	keepalive time.Duration
	sleep     time.Duration
	lastIn    time.Time
	conn      *connecting
	will      *will
	reg       registry
	nextID    uint16
	out       []*outMsg
	rel       map[uint16]struct{} // QoS 2 publishes awaiting PUBREL
	pending   []pendItem
	regOut    *regWait
	timer     *time.Timer
	retryT    *time.Timer
	retryOn   bool
	expT      *time.Timer
}

func newChannel(p *proto, id string) *channel {
	return &channel{p: p, id: id, clean: true}
}

// clientHandle is the gateway.Handler of one attachment of a channel;
// events of an earlier attachment are recognised by gen and ignored.
type clientHandle struct {
	ch  *channel
	gen uint64
}

func (h clientHandle) Deliver(d gateway.Delivery) {
	h.ch.post(event{kind: evDeliver, gen: h.gen, d: &d})
}

func (h clientHandle) Kick(reason string) {
	h.ch.post(event{kind: evKick, gen: h.gen, s: reason})
}

// post queues ev and runs the channel unless someone already does.
func (ch *channel) post(ev event) {
	ch.mu.Lock()
	ch.q = append(ch.q, ev)
	if ch.running {
		ch.mu.Unlock()
		return
	}
	ch.running = true
	ch.mu.Unlock()
	ch.run()
}

func (ch *channel) run() {
	finished := false
	defer func() {
		if !finished { // a handler panicked: let the next post run
			ch.mu.Lock()
			ch.running = false
			ch.mu.Unlock()
		}
	}()
	idled := true
	for {
		ch.mu.Lock()
		if ch.head == len(ch.q) {
			if !idled {
				ch.mu.Unlock()
				idled = true
				ch.idle()
				continue
			}
			if cap(ch.q) > 4 {
				ch.q = nil
			} else {
				ch.q = ch.q[:0]
			}
			ch.head = 0
			ch.running = false
			ch.mu.Unlock()
			finished = true
			return
		}
		ev := ch.q[ch.head]
		ch.q[ch.head] = event{}
		ch.head++
		ch.mu.Unlock()
		idled = false
		ch.handle(&ev)
	}
}

func (ch *channel) handle(ev *event) {
	switch ev.kind {
	case evPacket:
		ch.onPacket(ev.lk, ev.r, ev.m)
	case evDeliver:
		if ev.gen != ch.cgen || ch.client == nil {
			// An earlier attachment's: the broker redelivers what needs an ack.
			return
		}
		ch.enqueue(pendItem{d: ev.d})
		ch.pump()
	case evAuth:
		ch.onAuth(ev)
	case evKick:
		if ev.gen != ch.cgen || ch.client == nil {
			return
		}
		ch.client = nil
		ch.send(&Message{Type: TypeDisconnect})
		ch.finish()
	case evUnbound:
		if ch.bound && ch.lk == ev.lk && ch.r == ev.r {
			ch.bound = false
			if ev.s == unboundLinkDown {
				ch.p.park(ch.lk.parkKey(ch.r), ch)
			}
			ch.hold()
		}
	case evTimer:
		ch.onTimer()
	case evRetry:
		ch.onRetry()
	case evExpire:
		if ch.state == stDisconnected {
			ch.close()
		}
	case evShutdown:
		ch.stopTimers()
		ch.setState(stClosed)
	}
}

// idle runs when the queue has drained: an awake client that has been
// given everything goes back to sleep.
func (ch *channel) idle() {
	if ch.state == stAwake && ch.flushed() {
		ch.setState(stAsleep)
		ch.hold()
		ch.armTimer()
		ch.send(&Message{Type: TypePingresp})
	}
}

func (ch *channel) flushed() bool {
	if len(ch.pending) > 0 || ch.regOut != nil || len(ch.out) > 0 || ch.client == nil {
		return false
	}
	st := ch.client.Session()
	return st.Queued == 0 && st.Inflight == 0
}

func (ch *channel) setState(s chState) {
	if ch.state == s {
		return
	}
	if ch.state == stAsleep {
		ch.p.m.asleep.Dec()
	}
	if s == stAsleep {
		ch.p.m.asleep.Inc()
	}
	ch.state = s
}

func (ch *channel) connected() bool {
	return ch.state == stActive || ch.state == stAsleep || ch.state == stAwake
}

func (ch *channel) canSend() bool {
	return ch.bound && ch.client != nil && (ch.state == stActive || ch.state == stAwake)
}

// send writes m to the device, if it is reachable.
func (ch *channel) send(m *Message) {
	if !ch.bound {
		return
	}
	bp := getBuf()
	b, err := m.Append((*bp)[:0])
	if err == nil && ch.lk.send(ch.r, b) == nil {
		ch.p.m.pktOut.Inc()
	}
	*bp = b
	putBuf(bp)
}

// rebind makes (lk, r) the channel's address. A udp device that moved to
// a new port keeps its Conn (TakeOver); anything else moves the binding.
func (ch *channel) rebind(lk link, r route) {
	if ch.bound && ch.lk == lk && ch.r == r {
		return
	}
	p := ch.p
	moved := ch.bound || ch.lk != nil
	p.unparkChannel(ch)
	if ch.bound {
		old, ok1 := ch.lk.(*connLink)
		nw, ok2 := lk.(*connLink)
		if ok1 && ok2 && old.l == nw.l && r == (route{}) && ch.r == (route{}) &&
			old.only(ch) && nw.empty() && old.takeOver(nw) {
			p.m.rebound.Inc()
			return
		}
		ch.lk.base().unbind(ch.r, ch)
		ch.bound = false
	}
	prev, ok := lk.base().bind(r, ch)
	if !ok {
		return
	}
	if prev != nil && prev != ch {
		prev.post(event{kind: evUnbound, lk: lk, r: r, s: unboundDisplaced})
	}
	ch.lk, ch.r, ch.bound = lk, r, true
	if k, ok := lk.(*connLink); ok {
		k.settle()
	}
	if moved {
		p.m.rebound.Inc()
	}
}

func (ch *channel) unbind() {
	if ch.bound {
		ch.lk.base().unbind(ch.r, ch)
		ch.bound = false
	}
	ch.p.unparkChannel(ch)
}

func (ch *channel) onPacket(lk link, r route, m *Message) {
	if ch.state == stClosed {
		// The session ended while this waited: start over.
		ch.p.dispatch(lk, r, m)
		return
	}
	if m.Type == TypeConnect {
		ch.onConnect(lk, r, m)
		return
	}
	if !ch.bound || (m.Type == TypePingreq && (ch.lk != lk || ch.r != r)) {
		if !ch.connected() {
			ch.p.m.unknownPeer.Inc()
			ch.p.sendTo(lk, r, &Message{Type: TypeDisconnect})
			return
		}
		wasBound := ch.bound
		ch.rebind(lk, r)
		if !wasBound && ch.state == stActive {
			ch.resendAll()
			ch.resume()
		}
	}
	ch.lastIn = time.Now()
	switch ch.state {
	case stWillTopic, stWillMsg:
		ch.onHandshake(m)
		return
	case stAuth:
		ch.p.m.ignored.Inc()
		return
	}
	switch m.Type {
	case TypePublish:
		ch.onPublish(m)
	case TypePuback:
		ch.onPuback(m)
	case TypePubrec:
		if o := ch.outByMsgID(m.MsgID); o != nil && o.state != waitPuback {
			o.state, o.sentAt, o.tries = waitPubcomp, time.Now(), 0
		}
		ch.send(&Message{Type: TypePubrel, MsgID: m.MsgID})
	case TypePubcomp:
		if o := ch.outByMsgID(m.MsgID); o != nil && o.state != waitPuback {
			ch.removeOut(o)
			ch.client.Ack(o.d.ID)
			ch.pump()
		}
	case TypePubrel:
		delete(ch.rel, m.MsgID)
		ch.send(&Message{Type: TypePubcomp, MsgID: m.MsgID})
	case TypeRegister:
		ch.onRegister(m)
	case TypeRegack:
		ch.onRegack(m)
	case TypeSubscribe:
		ch.onSubscribe(m)
	case TypeUnsubscribe:
		ch.onUnsubscribe(m)
	case TypePingreq:
		if ch.state == stActive {
			ch.send(&Message{Type: TypePingresp})
		} else {
			ch.wake()
		}
	case TypeDisconnect:
		ch.onDisconnect(m)
	case TypeWillTopicUpd:
		ch.onWillTopicUpd(m)
	case TypeWillMsgUpd:
		if ch.will == nil {
			ch.will = &will{}
		}
		ch.will.msg = m.Data
		ch.send(&Message{Type: TypeWillMsgResp, ReturnCode: RCAccepted})
	default:
		ch.p.m.ignored.Inc()
	}
}

func (ch *channel) onConnect(lk link, r route, m *Message) {
	ch.rebind(lk, r)
	if !ch.bound { // the link ended meanwhile
		ch.p.sendTo(lk, r, &Message{Type: TypeDisconnect})
		if ch.state == stNew {
			ch.close()
		}
		return
	}
	ch.lastIn = time.Now()
	if m.ProtocolID != ProtocolID {
		ch.send(&Message{Type: TypeConnack, ReturnCode: RCNotSupported})
		ch.abortConnect()
		return
	}
	// A connected device that connects again has restarted: hold its
	// deliveries until the new connection is settled.
	ch.hold()
	ch.stopRetry()
	ch.conn = &connecting{clean: m.CleanSession(), keepalive: time.Duration(m.Duration) * time.Second, started: time.Now()}
	if m.Will() {
		ch.setState(stWillTopic)
		ch.send(&Message{Type: TypeWillTopicReq})
		ch.armTimer()
		return
	}
	ch.startAuth()
}

func (ch *channel) onHandshake(m *Message) {
	switch {
	case m.Type == TypeWillTopic && ch.state == stWillTopic:
		if m.NoFlags || m.TopicName == "" {
			ch.startAuth() // an empty WILLTOPIC: no will after all
			return
		}
		if broker.ValidTopicName(m.TopicName) != nil {
			ch.send(&Message{Type: TypeConnack, ReturnCode: RCNotSupported})
			ch.abortConnect()
			return
		}
		q := m.QoS()
		if q < 0 {
			q = 0
		}
		ch.conn.will = &will{topic: m.TopicName, qos: byte(q), retain: m.Retain()}
		ch.setState(stWillMsg)
		ch.send(&Message{Type: TypeWillMsgReq})
	case m.Type == TypeWillMsg && ch.state == stWillMsg:
		ch.conn.will.msg = m.Data
		ch.startAuth()
	case m.Type == TypeDisconnect:
		ch.send(&Message{Type: TypeDisconnect})
		ch.abortConnect()
	default:
		ch.p.m.ignored.Inc()
	}
}

func (ch *channel) startAuth() {
	p := ch.p
	ch.setState(stAuth)
	ch.stopTimer()
	ch.attempt++
	gen := ch.attempt
	l := ch.lk.listener()
	ci := l.NewClientInfo(ch.lk.conn())
	ci.ClientID = ch.id
	p.fillInfo(ci, ch.r)
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return
	}
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		ctx, cancel := context.WithTimeout(p.ctx, authTimeout)
		err := l.Authenticate(ctx, ci)
		cancel()
		ch.post(event{kind: evAuth, gen: gen, ci: ci, l: l, err: err})
	}()
}

func (ch *channel) onAuth(ev *event) {
	if ev.gen != ch.attempt || ch.state != stAuth {
		return
	}
	cn := ch.conn
	ch.conn = nil
	if ev.err != nil {
		ch.p.log.Debug("connect refused", "clientid", ch.id, "error", ev.err)
		ch.send(&Message{Type: TypeConnack, ReturnCode: RCNotAuthorized})
		ch.abortConnect()
		return
	}
	cfg := ch.p.cfg.Load()
	opts := gateway.ConnectOptions{CleanStart: cn.clean, Held: true, MaxInflight: cfg.MaxInflight, MaxQueueLen: cfg.MqueueLen}
	if !cn.clean {
		opts.Expiry = cfg.SessionExpiry.D()
	}
	old := ch.client
	c, present, err := ev.l.Connect(ev.ci, clientHandle{ch: ch, gen: ev.gen}, opts)
	if err != nil {
		ch.send(&Message{Type: TypeConnack, ReturnCode: RCFailedSession})
		ch.abortConnect()
		return
	}
	if old != nil && old.ClientID() != c.ClientID() {
		old.Close("reconnected") // an override gave the device another id
	}
	ch.client, ch.cgen, ch.held = c, ev.gen, true
	ch.clean, ch.keepalive, ch.will, ch.sleep = cn.clean, cn.keepalive, cn.will, 0
	ch.lastIn = time.Now() // the keepalive runs from the CONNACK
	if present {
		ch.keepForResume()
	} else {
		ch.resetSession()
	}
	if ch.expT != nil {
		ch.expT.Stop()
	}
	ch.setState(stActive)
	ch.send(&Message{Type: TypeConnack, ReturnCode: RCAccepted})
	if present && cfg.SubsResume {
		regs := ch.reg.gatewayAssigned()
		items := make([]pendItem, 0, len(regs)+len(ch.pending))
		for i := range regs {
			items = append(items, pendItem{reg: &regs[i]})
		}
		ch.pending = append(items, ch.pending...)
	}
	ch.armTimer()
	ch.resume()
}

// abortConnect ends a CONNECT that failed; a persistent session survives.
func (ch *channel) abortConnect() {
	ch.conn = nil
	if c := ch.client; c != nil {
		ch.client = nil
		c.Close("connect_failed")
	}
	ch.finish()
}

func (ch *channel) resetSession() {
	ch.reg.reset()
	ch.out, ch.rel, ch.pending, ch.regOut = nil, nil, nil, nil
}

// keepForResume keeps what a resumed session needs: topic ids, QoS 2
// state and unacknowledged deliveries, whose message ids are reused when
// the broker redelivers them. Queued deliveries that need an ack are
// dropped: the broker redelivers those too.
func (ch *channel) keepForResume() {
	if w := ch.regOut; w != nil {
		ch.reg.forget(w.name) // never acknowledged
		ch.regOut = nil
	}
	kept := ch.pending[:0]
	for _, it := range ch.pending {
		if it.reg != nil || it.d.ID == 0 {
			kept = append(kept, it)
		}
	}
	clear(ch.pending[len(kept):])
	ch.pending = kept
	for _, o := range ch.out {
		o.tries = 0
	}
}

func (ch *channel) onPublish(m *Message) {
	qos := m.QoS()
	topic, rc := ch.topicOf(m)
	if rc != RCAccepted {
		ch.puback(m, rc)
		return
	}
	if qos < 0 {
		qos = 0
	}
	if qos == 2 {
		if _, dup := ch.rel[m.MsgID]; dup {
			ch.send(&Message{Type: TypePubrec, MsgID: m.MsgID})
			return
		}
		if len(ch.rel) >= ch.p.cfg.Load().MaxAwaitingRel {
			ch.puback(m, RCCongestion)
			return
		}
	}
	if err := ch.client.Publish(topic, m.Data, byte(qos), m.Retain(), nil); err != nil {
		ch.puback(m, rcFor(err))
		return
	}
	switch qos {
	case 1:
		ch.puback(m, RCAccepted)
	case 2:
		if ch.rel == nil {
			ch.rel = map[uint16]struct{}{}
		}
		ch.rel[m.MsgID] = struct{}{}
		ch.send(&Message{Type: TypePubrec, MsgID: m.MsgID})
	}
}

func (ch *channel) puback(m *Message, rc byte) {
	ch.send(&Message{Type: TypePuback, TopicID: m.TopicID, MsgID: m.MsgID, ReturnCode: rc})
}

func rcFor(err error) byte {
	switch {
	case errors.Is(err, gateway.ErrDenied):
		return RCNotAuthorized
	case errors.Is(err, broker.ErrInvalidTopicName):
		return RCNotSupported
	}
	return RCCongestion
}

// topicOf resolves the topic of a PUBLISH from the device.
func (ch *channel) topicOf(m *Message) (string, byte) {
	switch m.TopicIDType() {
	case TopicNormal:
		if name, ok := ch.reg.name(m.TopicID); ok {
			return name, RCAccepted
		}
		return "", RCInvalidTopicID
	case TopicPredefined:
		if name, ok := ch.p.pre.Load().byID[m.TopicID]; ok {
			return name, RCAccepted
		}
		return "", RCInvalidTopicID
	case TopicShort:
		return ShortTopic(m.TopicID), RCAccepted
	}
	return "", RCNotSupported
}

// topicIDFor picks how to name topic in a PUBLISH to the device.
func (ch *channel) topicIDFor(topic string) (typ byte, id uint16, ok bool) {
	if id, ok := ch.p.pre.Load().byName[topic]; ok {
		return TopicPredefined, id, true
	}
	if id, ok := ch.reg.id(topic); ok {
		return TopicNormal, id, true
	}
	if len(topic) == 2 {
		return TopicShort, ShortID(topic), true
	}
	return 0, 0, false
}

func (ch *channel) onRegister(m *Message) {
	reply := &Message{Type: TypeRegack, MsgID: m.MsgID}
	if broker.ValidTopicName(m.TopicName) != nil {
		reply.ReturnCode = RCNotSupported
	} else if id, err := ch.reg.assign(m.TopicName, true); err != nil {
		reply.ReturnCode = RCExceedLimitation
	} else {
		reply.TopicID = id
	}
	ch.send(reply)
}

func (ch *channel) onRegack(m *Message) {
	w := ch.regOut
	if w == nil || m.MsgID != w.msgID {
		return
	}
	switch m.ReturnCode {
	case RCAccepted:
		ch.regOut = nil
	case RCCongestion:
		w.sentAt = time.Now() // ask again after retry_interval
		return
	default:
		ch.p.m.regRejected.Inc()
		ch.regFailed(w, "rejected")
	}
	ch.pump()
}

// regFailed gives up registering w's topic: its waiting deliveries go.
func (ch *channel) regFailed(w *regWait, reason string) {
	ch.regOut = nil
	ch.reg.forget(w.name)
	kept := ch.pending[:0]
	for _, it := range ch.pending {
		if it.d != nil && it.d.Topic == w.name {
			ch.drop(it.d, reason)
			continue
		}
		kept = append(kept, it)
	}
	clear(ch.pending[len(kept):])
	ch.pending = kept
}

func (ch *channel) onSubscribe(m *Message) {
	qos := m.QoS()
	if qos < 0 {
		qos = 0
	}
	var filter string
	var tid uint16
	rc := RCAccepted
	switch m.TopicIDType() {
	case TopicNormal:
		filter = m.TopicName
		if broker.ValidTopicFilter(filter) != nil {
			rc = RCNotSupported
		} else if !hasWildcard(filter) {
			id, err := ch.reg.assign(filter, false)
			if err != nil {
				rc = RCExceedLimitation
			}
			tid = id
		}
	case TopicPredefined:
		name, ok := ch.p.pre.Load().byID[m.TopicID]
		if !ok {
			rc = RCInvalidTopicID
		}
		filter, tid = name, m.TopicID
	case TopicShort:
		filter, tid = ShortTopic(m.TopicID), m.TopicID
	default:
		rc = RCNotSupported
	}
	if rc == RCAccepted {
		if err := ch.client.Subscribe(filter, byte(qos)); err != nil {
			rc = RCNotSupported
			if errors.Is(err, gateway.ErrDenied) {
				rc = RCNotAuthorized
			}
		}
	}
	if rc != RCAccepted {
		tid = 0
	}
	// Retained messages the subscription matched are already queued
	// behind this event, so the SUBACK goes first.
	ch.send(&Message{Type: TypeSuback, Flags: QoSFlags(qos), TopicID: tid, MsgID: m.MsgID, ReturnCode: rc})
}

func (ch *channel) onUnsubscribe(m *Message) {
	var filter string
	switch m.TopicIDType() {
	case TopicNormal:
		filter = m.TopicName
	case TopicPredefined:
		filter = ch.p.pre.Load().byID[m.TopicID]
	case TopicShort:
		filter = ShortTopic(m.TopicID)
	}
	if filter != "" {
		_ = ch.client.Unsubscribe(filter)
	}
	ch.send(&Message{Type: TypeUnsuback, MsgID: m.MsgID})
}

func (ch *channel) onWillTopicUpd(m *Message) {
	rc := RCAccepted
	switch {
	case m.NoFlags || m.TopicName == "":
		ch.will = nil
	case broker.ValidTopicName(m.TopicName) != nil:
		rc = RCNotSupported
	default:
		if ch.will == nil {
			ch.will = &will{}
		}
		q := m.QoS()
		if q < 0 {
			q = 0
		}
		ch.will.topic, ch.will.qos, ch.will.retain = m.TopicName, byte(q), m.Retain()
	}
	ch.send(&Message{Type: TypeWillTopicResp, ReturnCode: rc})
}

func (ch *channel) onDisconnect(m *Message) {
	if m.HasDuration && m.Duration > 0 {
		if ch.state != stAsleep {
			ch.p.m.sleep.Inc()
		}
		// Asleep before the acknowledgement: whatever is published once
		// the device has it waits in the session.
		ch.sleep = time.Duration(m.Duration) * time.Second
		ch.setState(stAsleep)
		ch.hold()
		ch.stopRetry()
		ch.armTimer()
		ch.send(&Message{Type: TypeDisconnect})
		return
	}
	ch.send(&Message{Type: TypeDisconnect})
	ch.end("normal", false)
}

// wake starts flushing what an asleep client missed; idle sends the
// PINGRESP once everything went out and was acknowledged.
func (ch *channel) wake() {
	if ch.state == stAsleep {
		ch.p.m.wake.Inc()
	}
	ch.setState(stAwake)
	ch.armTimer()
	ch.resendAll()
	ch.resume()
}

// resendAll repeats everything unacknowledged (after a sleep or a move).
func (ch *channel) resendAll() {
	if !ch.canSend() {
		return
	}
	for _, o := range ch.out {
		ch.resend(o)
	}
	if w := ch.regOut; w != nil {
		w.sentAt = time.Now()
		ch.send(&Message{Type: TypeRegister, TopicID: w.id, MsgID: w.msgID, TopicName: w.name})
	}
}

func (ch *channel) hold() {
	if !ch.held && ch.client != nil {
		ch.held = true
		ch.client.Hold()
	}
}

// resume lets deliveries flow again when the device can take them.
func (ch *channel) resume() {
	if !ch.canSend() {
		return
	}
	if ch.held {
		ch.held = false
		ch.client.Resume()
	}
	ch.pump()
	if len(ch.out) > 0 || ch.regOut != nil {
		ch.armRetry()
	}
}

// enqueue adds a delivery behind those waiting, dropping the oldest
// when mqueue_len are already waiting.
func (ch *channel) enqueue(it pendItem) {
	if len(ch.pending) >= ch.p.cfg.Load().MqueueLen {
		for i, x := range ch.pending {
			if x.d != nil {
				ch.drop(x.d, "queue_full")
				copy(ch.pending[i:], ch.pending[i+1:])
				ch.pending[len(ch.pending)-1] = pendItem{}
				ch.pending = ch.pending[:len(ch.pending)-1]
				break
			}
		}
	}
	ch.pending = append(ch.pending, it)
}

func (ch *channel) popPending() {
	ch.pending[0] = pendItem{}
	ch.pending = ch.pending[1:]
	if len(ch.pending) == 0 {
		ch.pending = nil
	}
}

// drop gives up a delivery, acknowledging it so the window moves on.
func (ch *channel) drop(d *gateway.Delivery, reason string) {
	m := ch.p.m
	m.dropped.Inc()
	switch reason {
	case "queue_full":
		m.dropQueue.Inc()
	case "no_topic_id":
		m.dropNoTopic.Inc()
	default:
		m.dropRejected.Inc()
	}
	if d.ID != 0 && ch.client != nil {
		ch.client.Ack(d.ID)
	}
}

// pump sends waiting deliveries in order until one needs a REGISTER
// first or the device cannot take more.
func (ch *channel) pump() {
	for ch.canSend() && ch.regOut == nil && len(ch.pending) > 0 {
		it := ch.pending[0]
		if it.reg != nil {
			ch.popPending()
			ch.register(it.reg.id, it.reg.name)
			continue
		}
		d := it.d
		if d.ID != 0 {
			if o := ch.outByDelivery(d.ID); o != nil {
				ch.popPending()
				ch.resend(o)
				continue
			}
		}
		typ, tid, ok := ch.topicIDFor(d.Topic)
		if !ok {
			id, err := ch.reg.assign(d.Topic, false)
			if err != nil {
				ch.popPending()
				ch.drop(d, "no_topic_id")
				continue
			}
			ch.register(id, d.Topic)
			return
		}
		ch.popPending()
		ch.publish(d, typ, tid)
	}
}

func (ch *channel) publish(d *gateway.Delivery, typ byte, tid uint16) {
	m := Message{Type: TypePublish, Flags: QoSFlags(int8(d.QoS)) | typ, TopicID: tid, Data: d.Payload}
	if d.Dup {
		m.Flags |= FlagDup
	}
	if d.Retain {
		m.Flags |= FlagRetain
	}
	if d.QoS > 0 {
		m.MsgID = ch.newMsgID()
		st := waitPuback
		if d.QoS == 2 {
			st = waitPubrec
		}
		ch.out = append(ch.out, &outMsg{msgID: m.MsgID, topicType: typ, topicID: tid, state: st, sentAt: time.Now(), d: *d})
		ch.armRetry()
	}
	ch.send(&m)
}

func (ch *channel) resend(o *outMsg) {
	o.sentAt = time.Now()
	if o.state == waitPubcomp {
		ch.send(&Message{Type: TypePubrel, MsgID: o.msgID})
		return
	}
	ch.send(&Message{Type: TypePublish, Flags: FlagDup | QoSFlags(int8(o.d.QoS)) | o.topicType,
		TopicID: o.topicID, MsgID: o.msgID, Data: o.d.Payload})
}

func (ch *channel) register(id uint16, name string) {
	ch.regOut = &regWait{msgID: ch.newMsgID(), id: id, name: name, sentAt: time.Now()}
	ch.p.m.regSent.Inc()
	ch.send(&Message{Type: TypeRegister, TopicID: id, MsgID: ch.regOut.msgID, TopicName: name})
	ch.armRetry()
}

func (ch *channel) onPuback(m *Message) {
	o := ch.outByMsgID(m.MsgID)
	if o == nil || o.state == waitPubcomp || (o.state == waitPubrec && m.ReturnCode == RCAccepted) {
		// A PUBACK for a QoS 0 PUBLISH can only be a complaint; a QoS 2
		// PUBLISH is answered with PUBREC, or refused with PUBACK.
		if m.ReturnCode == RCInvalidTopicID {
			if name, ok := ch.reg.name(m.TopicID); ok {
				ch.p.m.reregister.Inc()
				ch.reg.forget(name)
			}
		}
		return
	}
	switch m.ReturnCode {
	case RCAccepted:
		ch.removeOut(o)
		ch.client.Ack(o.d.ID)
	case RCInvalidTopicID:
		// The device lost the id: register the topic again and resend.
		ch.p.m.reregister.Inc()
		ch.removeOut(o)
		ch.reg.forget(o.d.Topic)
		d := o.d
		d.Dup = false
		ch.pending = append([]pendItem{{d: &d}}, ch.pending...)
	case RCCongestion:
		o.sentAt = time.Now() // try again after retry_interval
		return
	default:
		ch.removeOut(o)
		ch.drop(&o.d, "rejected")
	}
	ch.pump()
}

func (ch *channel) outByMsgID(id uint16) *outMsg {
	for _, o := range ch.out {
		if o.msgID == id {
			return o
		}
	}
	return nil
}

func (ch *channel) outByDelivery(id uint64) *outMsg {
	for _, o := range ch.out {
		if o.d.ID == id {
			return o
		}
	}
	return nil
}

func (ch *channel) removeOut(o *outMsg) {
	for i, x := range ch.out {
		if x == o {
			copy(ch.out[i:], ch.out[i+1:])
			ch.out[len(ch.out)-1] = nil
			ch.out = ch.out[:len(ch.out)-1]
			break
		}
	}
	if len(ch.out) == 0 {
		ch.out = nil
	}
}

// newMsgID returns a message id no outstanding exchange uses.
func (ch *channel) newMsgID() uint16 {
	for {
		ch.nextID++
		if ch.nextID == 0 {
			ch.nextID = 1
		}
		if ch.outByMsgID(ch.nextID) == nil && (ch.regOut == nil || ch.regOut.msgID != ch.nextID) {
			return ch.nextID
		}
	}
}

// end closes the client from the gateway's side.
func (ch *channel) end(reason string, withWill bool) {
	if withWill && ch.will != nil && ch.will.topic != "" && ch.client != nil {
		w := ch.will
		if err := ch.client.Publish(w.topic, w.msg, w.qos, w.retain, nil); err != nil {
			ch.p.m.willFailed.Inc()
			ch.p.log.Debug("will not published", "clientid", ch.id, "error", err)
		} else {
			ch.p.m.willPublished.Inc()
		}
	}
	if c := ch.client; c != nil {
		ch.client = nil
		c.Close(reason)
	}
	ch.finish()
}

// lost ends a client that went silent: keepalive or sleep expired, or
// retransmissions exhausted. The will is published.
func (ch *channel) lost(reason string) {
	ch.p.m.lost.Inc()
	ch.p.log.Debug("client lost", "clientid", ch.id, "reason", reason)
	ch.send(&Message{Type: TypeDisconnect})
	ch.end(reason, true)
}

// finish runs once the client is gone: a CleanSession=0 channel waits,
// disconnected, for its session's expiry; any other is removed.
func (ch *channel) finish() {
	ch.stopTimers()
	ch.unbind()
	ch.held = false
	exp := ch.p.cfg.Load().SessionExpiry.D()
	if ch.clean || exp <= 0 || ch.cgen == 0 {
		ch.close()
		return
	}
	ch.setState(stDisconnected)
	ch.expT = time.AfterFunc(exp, func() { ch.post(event{kind: evExpire}) })
}

func (ch *channel) close() {
	ch.stopTimers()
	ch.unbind()
	ch.setState(stClosed)
	ch.resetSession()
	ch.will, ch.conn = nil, nil
	ch.p.removeSession(ch)
}

// deadline is when the current state times out (zero: never).
func (ch *channel) deadline() time.Time {
	switch ch.state {
	case stWillTopic, stWillMsg:
		d := ch.p.gw.Config().IdleTimeout.D()
		if d <= 0 {
			d = 30 * time.Second
		}
		return ch.conn.started.Add(d)
	case stActive:
		if ch.keepalive > 0 {
			return ch.lastIn.Add(ch.keepalive * 3 / 2)
		}
	case stAsleep, stAwake:
		if ch.sleep > 0 {
			return ch.lastIn.Add(ch.sleep * 3 / 2)
		}
	}
	return time.Time{}
}

func (ch *channel) armTimer() {
	dl := ch.deadline()
	if dl.IsZero() {
		ch.stopTimer()
		return
	}
	d := time.Until(dl)
	if ch.timer == nil {
		ch.timer = time.AfterFunc(d, func() { ch.post(event{kind: evTimer}) })
		return
	}
	ch.timer.Reset(d)
}

func (ch *channel) stopTimer() {
	if ch.timer != nil {
		ch.timer.Stop()
	}
}

func (ch *channel) onTimer() {
	dl := ch.deadline()
	if dl.IsZero() {
		return
	}
	if time.Now().Before(dl) {
		ch.armTimer()
		return
	}
	switch ch.state {
	case stWillTopic, stWillMsg:
		ch.abortConnect()
	case stActive:
		ch.lost("keepalive_timeout")
	case stAsleep, stAwake:
		ch.lost("sleep_timeout")
	}
}

func (ch *channel) armRetry() {
	if ch.retryOn {
		return
	}
	ch.retryOn = true
	d := ch.p.cfg.Load().RetryInterval.D()
	if ch.retryT == nil {
		ch.retryT = time.AfterFunc(d, func() { ch.post(event{kind: evRetry}) })
		return
	}
	ch.retryT.Reset(d)
}

func (ch *channel) stopRetry() {
	if ch.retryT != nil {
		ch.retryT.Stop()
	}
	ch.retryOn = false
}

// onRetry repeats what the device did not acknowledge in time; a device
// that ignores max_retry repeats is lost.
func (ch *channel) onRetry() {
	ch.retryOn = false
	if !ch.canSend() {
		return // resent on wake-up or return
	}
	cfg := ch.p.cfg.Load()
	iv := cfg.RetryInterval.D()
	now := time.Now()
	due := func(t time.Time) bool { return now.Sub(t) >= iv-iv/8 }
	for _, o := range ch.out {
		if !due(o.sentAt) {
			continue
		}
		if o.tries >= cfg.MaxRetry {
			ch.lost("max_retry")
			return
		}
		o.tries++
		ch.p.m.retransmit.Inc()
		ch.resend(o)
	}
	if w := ch.regOut; w != nil && due(w.sentAt) {
		if w.tries >= cfg.MaxRetry {
			// As EMQX: skip the topic the device will not register, so
			// the rest keeps flowing.
			ch.p.m.regFailed.Inc()
			ch.regFailed(w, "register_failed")
			ch.pump()
		} else {
			w.tries++
			w.sentAt = now
			ch.p.m.retransmit.Inc()
			ch.send(&Message{Type: TypeRegister, TopicID: w.id, MsgID: w.msgID, TopicName: w.name})
		}
	}
	if len(ch.out) > 0 || ch.regOut != nil {
		ch.armRetry()
	}
}

func (ch *channel) stopTimers() {
	ch.stopTimer()
	ch.stopRetry()
	if ch.expT != nil {
		ch.expT.Stop()
	}
}
