// Package mqttsn is edgeway's MQTT-SN 1.2 gateway: every message type,
// QoS -1 to 2 both ways, normal, predefined and short topic ids, wills,
// sleeping clients, discovery, and forwarder encapsulation, over udp, dtls
// and RS-485 serial listeners. Sessions are keyed by clientid, never by
// address, so a device keeps its session when its NAT mapping changes.
//
// The codec (packet.go) and the serial framings (framer.go) are exported
// for tools and load generators; the rest is the kind's runtime. The
// README documents configuration, behaviour and the serial frame layout.
package mqttsn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/agent/metrics"
	"github.com/edgeway/edgeway/transports"
)

// Name is the kind's name, [gateway.mqttsn].
const Name = "mqttsn"

func init() {
	gateway.Register(gateway.Kind{
		Name:         Name,
		Description:  "MQTT-SN 1.2 over UDP, DTLS and RS-485 serial, with forwarder encapsulation",
		Transports:   []string{"udp", "dtls", "serial"},
		DefaultBinds: map[string]string{"udp": "1884", "dtls": "1885"},
		NewConfig:    func() any { return NewConfig() },
		NewListenerConfig: func(t string) any {
			if t == "serial" {
				return NewSerialOptions()
			}
			return nil
		},
		New: newProto,
	})
}

// proto is one gateway instance of the kind.
type proto struct {
	gw  *gateway.Gateway
	log *slog.Logger
	cfg atomic.Pointer[Config]
	pre atomic.Pointer[predefined]
	m   *counters

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup // authentication calls, the advertiser

	mu       sync.Mutex
	sessions map[string]*channel // by the device's clientid
	parked   map[parkKey]*channel
	buses    map[*busLink]struct{}
	udps     map[*gateway.Listener]struct{}
	advStop  context.CancelFunc
	advDone  chan struct{}
	stopped  bool
}

// counters are the gateway-wide metrics the kind adds to the framework's.
type counters struct {
	pktIn, pktOut, malformed, unknownPeer, ignored *metrics.Counter
	rebound, parked, lost, retransmit              *metrics.Counter
	regSent, regRejected, regFailed, reregister    *metrics.Counter
	qos3, qos3Denied, qos3Disabled                 *metrics.Counter
	willPublished, willFailed                      *metrics.Counter
	dropped, dropQueue, dropRejected, dropNoTopic  *metrics.Counter
	advertise, searchgw, sleep, wake               *metrics.Counter
	asleep                                         *metrics.Gauge
}

func newCounters(s *metrics.Set) *counters {
	return &counters{
		pktIn: s.Counter(metrics.PacketsReceived), pktOut: s.Counter(metrics.PacketsSent),
		malformed: s.Counter("packets.malformed"), unknownPeer: s.Counter("packets.unknown_peer"),
		ignored: s.Counter("packets.ignored"),
		rebound: s.Counter("clients.rebound"), parked: s.Counter("clients.parked"),
		lost: s.Counter("clients.lost"), retransmit: s.Counter("packets.retransmitted"),
		regSent: s.Counter("register.sent"), regRejected: s.Counter("register.rejected"),
		regFailed: s.Counter("register.failed"), reregister: s.Counter("register.invalid_topic_id"),
		qos3: s.Counter("messages.qos3.received"), qos3Denied: s.Counter("messages.qos3.denied"),
		qos3Disabled:  s.Counter("messages.qos3.disabled"),
		willPublished: s.Counter("messages.will.published"), willFailed: s.Counter("messages.will.failed"),
		dropped: s.Counter(metrics.MessagesDropped), dropQueue: s.Counter(metrics.DeliveryDropped("queue_full")),
		dropRejected: s.Counter(metrics.DeliveryDropped("rejected")), dropNoTopic: s.Counter(metrics.DeliveryDropped("no_topic_id")),
		advertise: s.Counter("advertise.sent"), searchgw: s.Counter("searchgw.received"),
		sleep: s.Counter("clients.sleep"), wake: s.Counter("clients.wake"),
		asleep: s.Gauge("clients.asleep"),
	}
}

func newProto(gw *gateway.Gateway) (gateway.Protocol, error) {
	cfg, ok := gw.Spec().(*Config)
	if !ok || cfg == nil {
		return nil, fmt.Errorf("mqttsn: spec is %T, want *mqttsn.Config", gw.Spec())
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mqttsn: %w", err)
	}
	p := &proto{
		gw: gw, log: gw.Logger(), m: newCounters(gw.Metrics()),
		sessions: map[string]*channel{}, parked: map[parkKey]*channel{},
		buses: map[*busLink]struct{}{}, udps: map[*gateway.Listener]struct{}{},
	}
	p.ctx, p.cancel = context.WithCancel(context.Background())
	p.cfg.Store(cfg)
	p.pre.Store(newPredefined(cfg.Predefined))
	return p, nil
}

// Update applies changed settings live: every key takes effect for the
// next packet; the advertiser restarts if its keys changed.
func (p *proto) Update(spec any) error {
	cfg, ok := spec.(*Config)
	if !ok {
		return fmt.Errorf("mqttsn: spec is %T, want *mqttsn.Config", spec)
	}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("mqttsn: %w", err)
	}
	old := p.cfg.Swap(cfg)
	p.pre.Store(newPredefined(cfg.Predefined))
	if old.Broadcast != cfg.Broadcast || old.BroadcastAddress != cfg.BroadcastAddress ||
		old.AdvertiseInterval != cfg.AdvertiseInterval || old.GatewayID != cfg.GatewayID {
		p.mu.Lock()
		p.restartAdvertiserLocked()
		p.mu.Unlock()
	}
	return nil
}

// Stop ends the advertiser, waits for authentication calls and forgets
// every session (their clients were ended by the framework before).
func (p *proto) Stop(ctx context.Context) error {
	p.mu.Lock()
	if p.stopped {
		p.mu.Unlock()
		return nil
	}
	p.stopped = true
	p.stopAdvertiserLocked()
	chans := make([]*channel, 0, len(p.sessions))
	for _, ch := range p.sessions {
		chans = append(chans, ch)
	}
	p.sessions = map[string]*channel{}
	p.parked = map[parkKey]*channel{}
	p.mu.Unlock()
	p.cancel()
	for _, ch := range chans {
		ch.post(event{kind: evShutdown})
	}
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("mqttsn: stop: %w", ctx.Err())
	}
}

// Serve runs one listener: udp and dtls Conns become connLinks, a serial
// port becomes a busLink.
func (p *proto) Serve(ctx context.Context, l *gateway.Listener) error {
	if l.Config().Transport == "serial" {
		return p.serveSerial(ctx, l)
	}
	size := 2048
	switch s := l.Config().Spec.(type) {
	case *transports.UDPSpec:
		size = max(int(s.MaxDatagramSize), 1)
	case *transports.DTLSSpec:
		size = max(size, s.MTU)
	}
	if l.Config().Transport == "udp" {
		p.mu.Lock()
		p.udps[l] = struct{}{}
		p.startAdvertiserLocked()
		p.mu.Unlock()
		defer func() {
			p.mu.Lock()
			delete(p.udps, l)
			p.mu.Unlock()
		}()
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		k := &connLink{p: p, l: l, c: c}
		k.idle = l.Gateway().WatchIdle(c)
		wg.Add(1)
		if ps, ok := transports.Unwrap(c).(transports.PacketServer); ok {
			// udp: no goroutine, stack or buffer while the peer is silent
			// (thousands of sleeping sensors); datagrams are pushed.
			ps.ServePackets(func(b []byte) { p.received(k, route{}, b) }, func(error) {
				k.finish()
				wg.Done()
			})
			continue
		}
		go func() {
			defer wg.Done()
			k.serve(size)
		}()
	}
}

func (p *proto) serveSerial(ctx context.Context, l *gateway.Listener) error {
	opts := NewSerialOptions()
	if o, ok := l.Config().KindSpec.(*SerialOptions); ok && o != nil {
		opts = o
	}
	b := newBusLink(p, l, *opts)
	p.mu.Lock()
	p.buses[b] = struct{}{}
	p.startAdvertiserLocked()
	p.mu.Unlock()
	wctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		b.writer(wctx)
	}()
	defer func() {
		stop()
		wg.Wait()
		p.mu.Lock()
		delete(p.buses, b)
		p.mu.Unlock()
		p.linkDown(b)
	}()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		b.setConn(c)
		b.read(c)
		b.setConn(nil)
		_ = c.Close()
		if ctx.Err() != nil {
			return nil
		}
	}
}

// received handles one message (possibly forwarder-encapsulated) that
// arrived on lk at r. b is the reader's buffer: anything kept is copied.
func (p *proto) received(lk link, r route, b []byte) {
	if Encapsulated(b) {
		_, node, inner, err := Unwrap(b)
		if err != nil {
			p.m.malformed.Inc()
			return
		}
		r.wnid = string(node)
		b = inner
	}
	msg := make([]byte, len(b))
	copy(msg, b)
	m := new(Message)
	if err := m.Unmarshal(msg); err != nil {
		p.m.malformed.Inc()
		p.log.Debug("malformed message", "peer", lk.describe(r), "error", err)
		return
	}
	p.m.pktIn.Inc()
	p.dispatch(lk, r, m)
}

// dispatch finds the channel a message belongs to. Identity wins over
// address: CONNECT and PINGREQ with a clientid go to that clientid's
// channel wherever they came from.
func (p *proto) dispatch(lk link, r route, m *Message) {
	d := lk.base()
	switch m.Type {
	case TypeConnect:
		id := m.ClientID
		if id == "" {
			id = randomClientID()
			m.ClientID = id
		}
		if ch := p.channelFor(id, true); ch != nil {
			ch.post(event{kind: evPacket, lk: lk, r: r, m: m})
		}
		return
	case TypeSearchGW:
		p.m.searchgw.Inc()
		p.sendTo(lk, r, &Message{Type: TypeGWInfo, GwID: byte(p.cfg.Load().GatewayID)})
		return
	case TypeAdvertise, TypeGWInfo:
		return // other gateways and clients answering for us
	}
	ch := d.lookup(r)
	if m.Type == TypePingreq && m.ClientID != "" {
		if owner := p.channelFor(m.ClientID, false); owner != nil {
			ch = owner
		}
	}
	if ch == nil && m.Type == TypePublish && m.QoS() == -1 {
		p.publishQoS3(lk, r, m)
		return
	}
	if ch == nil {
		ch = p.unpark(lk.parkKey(r))
	}
	if ch == nil {
		p.m.unknownPeer.Inc()
		p.sendTo(lk, r, &Message{Type: TypeDisconnect})
		return
	}
	ch.post(event{kind: evPacket, lk: lk, r: r, m: m})
}

// sendTo answers a peer that has no channel.
func (p *proto) sendTo(lk link, r route, m *Message) {
	bp := getBuf()
	b, err := m.Append((*bp)[:0])
	if err == nil && lk.send(r, b) == nil {
		p.m.pktOut.Inc()
	}
	*bp = b
	putBuf(bp)
}

// channelFor returns clientid's channel, creating it if asked.
func (p *proto) channelFor(id string, create bool) *channel {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return nil
	}
	ch := p.sessions[id]
	if ch == nil && create {
		ch = newChannel(p, id)
		p.sessions[id] = ch
	}
	return ch
}

// removeSession forgets ch (its session ended).
func (p *proto) removeSession(ch *channel) {
	p.mu.Lock()
	if p.sessions[ch.id] == ch {
		delete(p.sessions, ch.id)
	}
	if ch.parkedAt != nil && p.parked[*ch.parkedAt] == ch {
		delete(p.parked, *ch.parkedAt)
	}
	ch.parkedAt = nil
	p.mu.Unlock()
}

func (p *proto) park(k parkKey, ch *channel) {
	if k == (parkKey{}) {
		return
	}
	p.mu.Lock()
	if ch.parkedAt != nil && p.parked[*ch.parkedAt] == ch {
		delete(p.parked, *ch.parkedAt)
	}
	p.parked[k] = ch
	ch.parkedAt = &k
	p.mu.Unlock()
	p.m.parked.Inc()
}

// unparkChannel forgets where ch was parked, if anywhere.
func (p *proto) unparkChannel(ch *channel) {
	p.mu.Lock()
	if ch.parkedAt != nil {
		if p.parked[*ch.parkedAt] == ch {
			delete(p.parked, *ch.parkedAt)
		}
		ch.parkedAt = nil
	}
	p.mu.Unlock()
}

func (p *proto) unpark(k parkKey) *channel {
	if k == (parkKey{}) {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	ch := p.parked[k]
	if ch != nil {
		delete(p.parked, k)
		ch.parkedAt = nil
	}
	return ch
}

// linkDown releases everything bound to a link that ended.
func (p *proto) linkDown(lk link) {
	peers, qos3 := lk.base().kill()
	for r, ch := range peers {
		ch.post(event{kind: evUnbound, lk: lk, r: r, s: unboundLinkDown})
	}
	for _, c := range qos3 {
		c.Close("link_closed")
	}
}

// publishQoS3 handles a connectionless publish (QoS -1): predefined or
// short topic ids only, through a client per peer that is authenticated
// like any other and kept while the peer's link lives.
func (p *proto) publishQoS3(lk link, r route, m *Message) {
	cfg := p.cfg.Load()
	p.m.qos3.Inc()
	if !cfg.EnableQoS3 {
		p.m.qos3Disabled.Inc()
		p.sendTo(lk, r, &Message{Type: TypePuback, TopicID: m.TopicID, MsgID: m.MsgID, ReturnCode: RCNotSupported})
		return
	}
	var topic string
	switch m.TopicIDType() {
	case TopicPredefined:
		t, ok := p.pre.Load().byID[m.TopicID]
		if !ok {
			p.sendTo(lk, r, &Message{Type: TypePuback, TopicID: m.TopicID, MsgID: m.MsgID, ReturnCode: RCInvalidTopicID})
			return
		}
		topic = t
	case TopicShort:
		topic = ShortTopic(m.TopicID)
	default:
		p.sendTo(lk, r, &Message{Type: TypePuback, TopicID: m.TopicID, MsgID: m.MsgID, ReturnCode: RCNotSupported})
		return
	}
	c, err := p.qos3Client(lk, r)
	if err != nil {
		p.m.qos3Denied.Inc()
		p.log.Debug("qos -1 publish refused", "peer", lk.describe(r), "error", err)
		return
	}
	if err := c.Publish(topic, m.Data, 0, m.Retain(), nil); err != nil {
		p.m.qos3Denied.Inc()
	}
}

func (p *proto) qos3Client(lk link, r route) (*gateway.Client, error) {
	d := lk.base()
	d.mu.Lock()
	c := d.qos3[r]
	d.mu.Unlock()
	if c != nil && c.Connected() {
		return c, nil
	}
	l := lk.listener()
	ci := l.NewClientInfo(lk.conn())
	ci.ClientID = "qos3-" + lk.describe(r)
	p.fillInfo(ci, r)
	ctx, cancel := context.WithTimeout(p.ctx, authTimeout)
	defer cancel()
	if err := l.Authenticate(ctx, ci); err != nil {
		return nil, err
	}
	h := &qos3Handle{d: d, r: r}
	c, _, err := l.Connect(ci, h, gateway.ConnectOptions{CleanStart: true})
	if err != nil {
		return nil, err
	}
	h.c = c
	d.mu.Lock()
	if d.dead {
		d.mu.Unlock()
		c.Close("link_closed")
		return nil, gateway.ErrClosed
	}
	if d.qos3 == nil {
		d.qos3 = map[route]*gateway.Client{}
	}
	if old := d.qos3[r]; old != nil && old != c {
		defer old.Close("replaced")
	}
	d.qos3[r] = c
	d.mu.Unlock()
	if k, ok := lk.(*connLink); ok {
		k.settle()
	}
	return c, nil
}

// qos3Handle is the Handler of a connectionless publisher: it receives
// nothing, and a kick only forgets it.
type qos3Handle struct {
	d *demux
	r route
	c *gateway.Client
}

func (h *qos3Handle) Deliver(gateway.Delivery) {}

func (h *qos3Handle) Kick(string) {
	h.d.mu.Lock()
	if h.d.qos3[h.r] == h.c {
		delete(h.d.qos3, h.r)
	}
	h.d.mu.Unlock()
}

// fillInfo adds the MQTT-SN fields to a ClientInfo.
func (p *proto) fillInfo(ci *gateway.ClientInfo, r route) {
	ci.SetField("gateway_id", itoa(p.cfg.Load().GatewayID))
	if r.node != 0 {
		ci.SetField("node", itoa(int(r.node)))
	}
	if r.wnid != "" {
		ci.SetField("wireless_node_id", hexString(r.wnid))
	}
}

// authTimeout bounds one authentication call.
const authTimeout = 30 * time.Second
