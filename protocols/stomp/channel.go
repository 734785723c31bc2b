package stomp

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/agent/metrics"
	"github.com/edgeway/edgeway/transports"
)

// Tunables that are not worth a config key.
const (
	// readBufferSize is the per-connection read buffer; longer header
	// lines are assembled up to frame.max_headers_length.
	readBufferSize = 1024
	// minHeartbeat is the shortest heart-beat interval the gateway agrees
	// to, either way: a client asking for 1 ms gets 100 ms.
	minHeartbeat = 100 * time.Millisecond
	// authTimeout bounds the authenticator chain for one CONNECT.
	authTimeout = 15 * time.Second
	// closeGrace is how long an ERROR or RECEIPT may take to leave before
	// the connection is closed anyway.
	closeGrace = 2 * time.Second
	// maxQueuedControl is how many RECEIPT frames may wait for a client
	// that does not read before the gateway stops reading its frames.
	maxQueuedControl = 256
	// writeBatch is the size at which the writer hands its buffer to the socket.
	writeBatch = 64 << 10
	// Per-connection bounds on what a client can make the gateway hold.
	maxSubscriptions  = 1024
	maxTransactions   = 64
	maxTxFrames       = 1000
	maxTxBufferedSize = 4 << 20
)

// errStop ends the read loop; the reason is in channel.reason.
var errStop = errors.New("stomp: connection ends")

// channel is one STOMP connection: a reader goroutine that parses and
// handles frames (it owns the connection and ends it), and a writer
// goroutine started whenever there is something to send and gone when
// there is not, so an idle connection costs one goroutine.
type channel struct {
	p    *proto
	l    *gateway.Listener
	conn transports.Conn
	cfg  *Config
	m    *listenerMetrics
	log  *slog.Logger // the listener's; see logAt
	cid  atomic.Pointer[string]
	rd   *Reader

	reads  atomic.Uint64 // socket reads that returned data (heart-beat watch)
	writes atomic.Uint64 // socket writes (heart-beat watch)

	// Reader goroutine only.
	reason     string
	idle       *gateway.IdleWatch
	hbTimedOut atomic.Bool

	mu         sync.Mutex
	cond       sync.Cond // signalled when the writer has taken the queue
	ver        Version
	cl         *gateway.Client
	mountpoint string
	cm         *clientMetrics
	subs       map[string]*subscription // by id
	byDest     map[string]*subscription
	acks       map[uint64]ackRef
	orphans    map[string][]*pending
	txs        map[string]*transaction
	txBytes    int
	nextID     uint64
	out, spare []outItem
	queuedMsgs int // QoS 0 MESSAGEs in out
	parked0    int // QoS 0 messages parked behind full windows, all subscriptions
	ctrl       int // control frames in out
	writing    bool
	closing    bool // an ERROR, a RECEIPT of DISCONNECT or a kick is the last thing to send
	closed     bool
	hbIn       *time.Timer
	hbOut      *time.Timer
	wg         sync.WaitGroup // the writer
}

// outItem is one thing for the writer: a control frame, a MESSAGE, or
// (both nil) a heart-beat EOL.
type outItem struct {
	f           *Frame
	d           *gateway.Delivery
	subID       string
	msgID       uint64
	ackHdr      bool
	redelivered bool
	brokerAck   uint64 // auto mode: acknowledge to the broker once written
}

type clientMetrics struct {
	in, out *metrics.Counter
	set     *metrics.Set
}

func newChannel(p *proto, l *gateway.Listener, c transports.Conn, m *listenerMetrics, log *slog.Logger) *channel {
	cfg := p.spec.Load()
	// Maps are made on first use: most of an idle connection's memory
	// would otherwise be empty maps.
	ch := &channel{p: p, l: l, conn: c, cfg: cfg, m: m, log: log}
	ch.cond.L = &ch.mu
	ch.rd = NewReader(activityReader{c, &ch.reads}, readBufferSize, cfg.limits())
	return ch
}

// activityReader counts reads for the heart-beat watch: any byte from the
// client proves it alive, however slowly a large frame trickles in.
type activityReader struct {
	c net.Conn
	n *atomic.Uint64
}

func (a activityReader) Read(b []byte) (int, error) {
	n, err := a.c.Read(b)
	if n > 0 {
		a.n.Add(1)
	}
	return n, err
}

func (ch *channel) serve(ctx context.Context) {
	ch.idle = ch.l.Gateway().WatchIdle(ch.conn)
	ch.readLoop(ctx)
	ch.shutdown()
}

func (ch *channel) readLoop(ctx context.Context) {
	for {
		f, err := ch.rd.Read()
		if err != nil {
			ch.readFailed(err)
			return
		}
		if f == nil {
			inc(ch.m.hbIn)
			continue
		}
		inc(ch.m.in)
		if c, ok := ch.m.cmdIn[f.Command]; ok {
			inc(c)
		}
		if cm := ch.clientMetrics(); cm != nil {
			cm.in.Inc()
		}
		if err := ch.handle(ctx, f); err != nil {
			return
		}
		ch.mu.Lock()
		for ch.ctrl > maxQueuedControl && !ch.closing && !ch.closed {
			ch.cond.Wait()
		}
		stop := ch.closing
		ch.mu.Unlock()
		if stop {
			if ch.reason == "" {
				ch.reason = "kicked"
			}
			return
		}
	}
}

// readFailed turns a read error into an ERROR frame (frame errors) or a
// close reason.
func (ch *channel) readFailed(err error) {
	switch {
	case ch.hbTimedOut.Load():
		ch.reason = "heartbeat_timeout"
	case errors.Is(err, ErrTooManyHeaders):
		ch.fail(nil, "too_many_headers", "Too many headers", err.Error())
	case errors.Is(err, ErrHeaderTooLong):
		ch.fail(nil, "header_too_long", "Header too long", err.Error())
	case errors.Is(err, ErrBodyTooLong):
		ch.fail(nil, "body_too_long", "Body too long", err.Error())
	case errors.Is(err, ErrUnknownCommand):
		ch.fail(nil, "unknown_command", "Unknown command", err.Error())
	case errors.Is(err, ErrMalformed), errors.Is(err, ErrBadEscape):
		ch.fail(nil, "malformed_frame", "Malformed frame", err.Error())
	case errors.Is(err, io.EOF):
		ch.reason = "closed"
	case errors.Is(err, io.ErrUnexpectedEOF):
		ch.reason = "closed_mid_frame"
	default:
		if ch.reason == "" {
			ch.reason = "sock_error"
		}
	}
}

// handle dispatches one frame; a non-nil error ends the connection.
func (ch *channel) handle(ctx context.Context, f *Frame) error {
	if f.Command == CmdConnect || f.Command == CmdStomp {
		return ch.onConnect(ctx, f)
	}
	if ch.client() == nil {
		switch f.Command {
		case CmdSend, CmdSubscribe, CmdUnsubscribe, CmdAck, CmdNack, CmdBegin, CmdCommit, CmdAbort, CmdDisconnect:
			return ch.fail(f, "not_connected", "Not connected", "send CONNECT first")
		}
		return ch.fail(f, "unknown_command", "Unknown command", f.Command+" is a server frame")
	}
	switch f.Command {
	case CmdSend:
		return ch.onSend(f)
	case CmdSubscribe:
		return ch.onSubscribe(f)
	case CmdUnsubscribe:
		return ch.onUnsubscribe(f)
	case CmdAck, CmdNack:
		return ch.onAck(f)
	case CmdBegin:
		return ch.onBegin(f)
	case CmdCommit:
		return ch.onCommit(f)
	case CmdAbort:
		return ch.onAbort(f)
	case CmdDisconnect:
		ch.reason = "normal"
		ch.mu.Lock()
		if r, ok := f.Lookup(hdrReceipt); ok {
			ch.enqueueLocked(outItem{f: receiptFrame(r)})
		}
		ch.closing = true
		ch.mu.Unlock()
		return errStop
	}
	return ch.fail(f, "unknown_command", "Unknown command", f.Command+" is a server frame")
}

func (ch *channel) client() *gateway.Client {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.cl
}

func (ch *channel) clientMetrics() *clientMetrics {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.cm
}

// fail sends ERROR (echoing f's receipt), counts kind and ends the
// connection once the ERROR is out. It returns errStop.
func (ch *channel) fail(f *Frame, kind, message, detail string) error {
	ch.countError(kind)
	ch.logAt(slog.LevelDebug, "stomp error", "kind", kind, "detail", detail)
	e := &Frame{Command: CmdError}
	ch.mu.Lock()
	if ch.closing || ch.closed {
		ch.mu.Unlock()
		return errStop
	}
	e.Add(hdrMessage, message)
	if f != nil {
		if r, ok := f.Lookup(hdrReceipt); ok {
			e.Add(hdrReceiptID, r)
		}
	}
	if kind == "unsupported_version" {
		e.Add(hdrVersion, supportedVersions)
	}
	e.Add(hdrContentType, "text/plain")
	e.Body = []byte(detail)
	e.Add(hdrContentLength, strconv.Itoa(len(e.Body)))
	ch.enqueueLocked(outItem{f: e})
	ch.closing = true
	ch.mu.Unlock()
	if ch.reason == "" {
		ch.reason = kind
	}
	return errStop
}

// logAt logs with the connection's peer and clientid, building nothing
// unless the level is on.
func (ch *channel) logAt(level slog.Level, msg string, args ...any) {
	if !ch.log.Enabled(context.Background(), level) {
		return
	}
	args = append(args, "peer", ch.conn.Info().Peer.String())
	if id := ch.cid.Load(); id != nil {
		args = append(args, "clientid", *id)
	}
	ch.log.Log(context.Background(), level, msg, args...)
}

func (ch *channel) countError(kind string) {
	ch.m.count("errors." + kind)
	if cm := ch.clientMetrics(); cm != nil && cm.set != nil {
		cm.set.Counter("errors." + kind).Inc()
	}
}

// drop counts a message the gateway let go (delivery.dropped.<reason>).
func (ch *channel) drop(reason string) {
	ch.m.count(metrics.MessagesDropped)
	ch.m.count(metrics.DeliveryDropped(reason))
}

func receiptFrame(id string) *Frame {
	return &Frame{Command: CmdReceipt, Headers: []Header{{hdrReceiptID, id}}}
}

// receipt answers f's receipt header, if any.
func (ch *channel) receipt(f *Frame) {
	r, ok := f.Lookup(hdrReceipt)
	if !ok {
		return
	}
	ch.mu.Lock()
	ch.enqueueLocked(outItem{f: receiptFrame(r)})
	ch.mu.Unlock()
}

// ---- CONNECT ----

func negotiate(f *Frame) (Version, bool) {
	av, ok := f.Lookup(hdrAcceptVersion)
	if !ok {
		return V10, true
	}
	var best Version
	for _, v := range strings.Split(av, ",") {
		switch strings.TrimSpace(v) {
		case "1.0":
			best = max(best, V10)
		case "1.1":
			best = max(best, V11)
		case "1.2":
			best = max(best, V12)
		}
	}
	return best, best != 0
}

// parseHeartBeat reads "cx,cy" in milliseconds; absent means 0,0.
func parseHeartBeat(s string) (cx, cy time.Duration, ok bool) {
	if s == "" {
		return 0, 0, true
	}
	a, b, found := strings.Cut(s, ",")
	if !found {
		return 0, 0, false
	}
	x, err1 := strconv.ParseUint(strings.TrimSpace(a), 10, 31)
	y, err2 := strconv.ParseUint(strings.TrimSpace(b), 10, 31)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return time.Duration(x) * time.Millisecond, time.Duration(y) * time.Millisecond, true
}

func randomClientID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func (ch *channel) onConnect(ctx context.Context, f *Frame) error {
	if ch.client() != nil {
		return ch.fail(f, "already_connected", "Already connected", "a second "+f.Command+" on one connection")
	}
	ver, ok := negotiate(f)
	if !ok {
		return ch.fail(f, "unsupported_version", "Supported protocol versions are "+supportedVersions, "accept-version has no version this server speaks")
	}
	cx, cy, ok := parseHeartBeat(f.Get(hdrHeartBeat))
	if !ok {
		return ch.fail(f, "malformed_frame", "Bad heart-beat header", "heart-beat must be two integers, cx,cy")
	}
	ci := ch.l.NewClientInfo(ch.conn)
	ci.ClientID = randomClientID()
	ci.Username = f.Get(hdrLogin)
	if pw, ok := f.Lookup(hdrPasscode); ok {
		ci.Password = []byte(pw)
	}
	ci.Packet = make(map[string]string, len(f.Headers)+1)
	ci.Packet["command"] = f.Command
	for _, h := range f.Headers {
		k := "headers." + h.Key
		if _, dup := ci.Packet[k]; !dup {
			ci.Packet[k] = h.Value
		}
	}
	actx, cancel := context.WithTimeout(ctx, authTimeout)
	err := ch.l.Authenticate(actx, ci)
	cancel()
	// The CONNECT headers served the templates; the passcode among them
	// need not live as long as the client.
	ci.Packet = nil
	if err != nil {
		return ch.fail(f, "auth_failed", "Login failed", "not authorized")
	}
	var expiry time.Duration
	if !ch.l.Gateway().Config().ClientinfoOverride.ClientID.IsZero() {
		expiry = ch.cfg.SessionExpiryInterval.D()
	}
	cl, present, err := ch.l.Connect(ci, ch, gateway.ConnectOptions{
		CleanStart: expiry == 0, Expiry: expiry, Held: true,
		MaxInflight: ch.cfg.sessionInflight(), MaxQueueLen: ch.cfg.MaxMqueueLen,
	})
	if err != nil {
		return ch.fail(f, "connect_failed", "Connect failed", err.Error())
	}
	ch.idle.Stop()
	ch.cid.Store(&ci.ClientID)

	var sx, sy time.Duration
	if cy > 0 {
		sx = max(cy, minHeartbeat)
	}
	if cx > 0 {
		sy = max(cx, minHeartbeat)
	}
	ok2 := &Frame{Command: CmdConnected}
	ok2.Add(hdrVersion, ver.String())
	ok2.Add(hdrHeartBeat, strconv.FormatInt(sx.Milliseconds(), 10)+","+strconv.FormatInt(sy.Milliseconds(), 10))
	ok2.Add(hdrServer, "edgeway-stomp/"+ver.String())
	ok2.Add(hdrSession, ci.ClientID)

	ch.mu.Lock()
	ch.cl, ch.ver, ch.mountpoint = cl, ver, ci.Mountpoint
	if s := cl.Metrics(); s != nil {
		ch.cm = &clientMetrics{in: s.Counter(metrics.PacketsReceived), out: s.Counter(metrics.PacketsSent), set: s}
	}
	ch.enqueueLocked(outItem{f: ok2})
	if sy > 0 {
		ch.watchIncomingLocked(2 * sy)
	}
	if sx > 0 {
		ch.beatOutgoingLocked(sx / 2)
	}
	ch.mu.Unlock()
	ch.rd.SetVersion(ver)
	ch.logAt(slog.LevelDebug, "connected", "version", ver.String(), "session_present", present)
	cl.Resume()
	return nil
}

// watchIncomingLocked closes the connection when nothing at all arrives
// for d (twice the agreed client heart-beat).
func (ch *channel) watchIncomingLocked(d time.Duration) {
	last := ch.reads.Load()
	ch.hbIn = time.AfterFunc(d, func() {
		ch.mu.Lock()
		if ch.closed {
			ch.mu.Unlock()
			return
		}
		now := ch.reads.Load()
		if now != last {
			last = now
			ch.hbIn.Reset(d)
			ch.mu.Unlock()
			return
		}
		ch.mu.Unlock()
		// Closed outside the lock: closing a TLS connection may wait
		// for a write in progress, and deliveries must not.
		ch.hbTimedOut.Store(true)
		ch.m.count("errors.heartbeat_timeout")
		_ = ch.conn.Close()
	})
}

// beatOutgoingLocked sends an EOL whenever a check period passes with
// nothing written; checking at half the agreed interval keeps every gap
// within it.
func (ch *channel) beatOutgoingLocked(period time.Duration) {
	last := ch.writes.Load()
	ch.hbOut = time.AfterFunc(period, func() {
		ch.mu.Lock()
		defer ch.mu.Unlock()
		if ch.closed || ch.closing {
			return
		}
		if now := ch.writes.Load(); now == last && !ch.writing {
			ch.enqueueLocked(outItem{})
		}
		last = ch.writes.Load()
		ch.hbOut.Reset(period)
	})
}

// ---- SEND ----

func parseQoS(f *Frame) (byte, bool) {
	switch f.Get(hdrQoS) {
	case "", "0":
		return 0, true
	case "1":
		return 1, true
	case "2":
		return 2, true
	}
	return 0, false
}

// checkSend validates a SEND before it is published or buffered.
func (ch *channel) checkSend(f *Frame) (dest string, qos byte, err error) {
	dest = f.Get(hdrDestination)
	if dest == "" {
		return "", 0, ch.fail(f, "missing_header", "Missing destination", "SEND needs a destination header")
	}
	if err := broker.ValidTopicName(dest); err != nil {
		return "", 0, ch.fail(f, "bad_destination", "Invalid destination", err.Error())
	}
	qos, ok := parseQoS(f)
	if !ok {
		return "", 0, ch.fail(f, "bad_header", "Bad qos header", "qos must be 0, 1 or 2")
	}
	return dest, qos, nil
}

func (ch *channel) onSend(f *Frame) error {
	dest, qos, err := ch.checkSend(f)
	if err != nil {
		return err
	}
	if tx := f.Get(hdrTransaction); tx != "" {
		return ch.buffer(tx, f)
	}
	if err := ch.publish(f, dest, qos, f); err != nil {
		return err
	}
	ch.receipt(f)
	return nil
}

// publish hands one SEND to the broker. A failure is reported with an
// ERROR echoing errFrame's receipt (the COMMIT's, for a transaction),
// except that an unreceipted QoS 0 SEND outside a transaction, which the
// client cannot learn the fate of anyway, is only counted.
func (ch *channel) publish(f *Frame, dest string, qos byte, errFrame *Frame) error {
	cl := ch.client()
	err := cl.Publish(dest, f.Body, qos, false, carriedHeaders(f))
	switch {
	case err == nil:
		return nil
	case errors.Is(err, gateway.ErrDenied):
		return ch.fail(errFrame, "not_authorized", "Not authorized", "publish to "+dest+" denied")
	case errors.Is(err, gateway.ErrClosed):
		ch.reason = "kicked"
		return errStop
	}
	if _, receipt := f.Lookup(hdrReceipt); qos == 0 && !receipt && errFrame == f {
		ch.countError("publish_failed")
		return nil
	}
	return ch.fail(errFrame, "publish_failed", "Publish failed", err.Error())
}

// ---- SUBSCRIBE / UNSUBSCRIBE ----

func (ch *channel) onSubscribe(f *Frame) error {
	dest := f.Get(hdrDestination)
	if dest == "" {
		return ch.fail(f, "missing_header", "Missing destination", "SUBSCRIBE needs a destination header")
	}
	id, ok := f.Lookup(hdrID)
	if !ok {
		if ch.version() >= V11 {
			return ch.fail(f, "missing_header", "Missing id", "SUBSCRIBE needs an id header")
		}
		id = dest
	}
	mode, ok := parseAckMode(f.Get(hdrAck))
	if !ok {
		return ch.fail(f, "bad_header", "Bad ack header", "ack must be auto, client or client-individual")
	}
	if err := broker.ValidTopicFilter(dest); err != nil {
		return ch.fail(f, "bad_destination", "Invalid destination", err.Error())
	}
	ch.mu.Lock()
	_, inUse := ch.subs[id]
	_, dup := ch.byDest[dest]
	n := len(ch.subs)
	ch.mu.Unlock()
	switch {
	case inUse:
		return ch.fail(f, "subscription_in_use", "Subscription id in use", "id "+id)
	case dup:
		return ch.fail(f, "already_subscribed", "Already subscribed", "destination "+dest)
	case n >= maxSubscriptions:
		return ch.fail(f, "too_many_subscriptions", "Too many subscriptions", "at most "+strconv.Itoa(maxSubscriptions))
	}
	cl := ch.client()
	cl.Hold()
	if err := cl.Subscribe(dest, 1); err != nil {
		cl.Resume()
		if errors.Is(err, gateway.ErrDenied) {
			return ch.fail(f, "not_authorized", "Not authorized", "subscribe to "+dest+" denied")
		}
		if errors.Is(err, gateway.ErrClosed) {
			ch.reason = "kicked"
			return errStop
		}
		return ch.fail(f, "bad_destination", "Invalid destination", err.Error())
	}
	_, _, shared := broker.SplitShared(dest)
	sub := &subscription{id: id, dest: dest, mode: mode, shared: shared}
	ch.mu.Lock()
	if ch.subs == nil {
		ch.subs, ch.byDest = map[string]*subscription{}, map[string]*subscription{}
	}
	ch.subs[id] = sub
	ch.byDest[dest] = sub
	if r, ok := f.Lookup(hdrReceipt); ok {
		ch.enqueueLocked(outItem{f: receiptFrame(r)})
	}
	ch.adoptOrphansLocked(sub)
	ch.mu.Unlock()
	cl.Resume()
	return nil
}

func (ch *channel) onUnsubscribe(f *Frame) error {
	id, ok := f.Lookup(hdrID)
	ch.mu.Lock()
	sub := ch.subs[id]
	if !ok && ch.ver == V10 {
		sub = ch.byDest[f.Get(hdrDestination)]
	}
	ch.mu.Unlock()
	if !ok && sub == nil {
		return ch.fail(f, "missing_header", "Missing id", "UNSUBSCRIBE needs an id header")
	}
	if sub == nil {
		ch.countError("unknown_subscription")
		ch.receipt(f)
		return nil
	}
	cl := ch.client()
	if err := cl.Unsubscribe(sub.dest); errors.Is(err, gateway.ErrClosed) {
		ch.reason = "kicked"
		return errStop
	}
	ch.mu.Lock()
	acks := ch.removeSubLocked(sub)
	ch.mu.Unlock()
	for _, a := range acks {
		cl.Ack(a)
	}
	ch.receipt(f)
	return nil
}

func (ch *channel) version() Version {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.ver
}

// ---- ACK / NACK ----

// ackID is the id an ACK or NACK names: `id` (1.2) or `message-id`
// (1.0, 1.1); both are the MESSAGE's message-id here.
func ackID(f *Frame) (string, bool) {
	if v, ok := f.Lookup(hdrID); ok {
		return v, true
	}
	return f.Lookup(hdrMessageID)
}

func (ch *channel) onAck(f *Frame) error {
	if _, ok := ackID(f); !ok {
		return ch.fail(f, "missing_header", "Missing id", f.Command+" needs an id (1.2) or message-id header")
	}
	if tx := f.Get(hdrTransaction); tx != "" {
		return ch.buffer(tx, f)
	}
	ch.settle([]*Frame{f})
	ch.receipt(f)
	return nil
}

// settle applies ACK/NACK frames in order and acknowledges what they
// settled to the broker. Unknown ids are counted and ignored, as EMQX and
// most brokers do: an ACK racing a redelivery must not kill the client.
func (ch *channel) settle(fs []*Frame) {
	var brokerAcks []uint64
	ch.mu.Lock()
	for _, f := range fs {
		id, _ := ackID(f)
		n, err := strconv.ParseUint(id, 10, 64)
		ok := err == nil
		if ok {
			brokerAcks, ok = ch.settleLocked(n, f.Command == CmdNack, brokerAcks)
		}
		if !ok {
			ch.m.count("errors.unknown_ack")
		}
	}
	cl := ch.cl
	ch.mu.Unlock()
	for _, id := range brokerAcks {
		cl.Ack(id)
	}
}

// ---- writer ----

// enqueueLocked queues it for the writer, starting one if none runs.
func (ch *channel) enqueueLocked(it outItem) {
	if ch.closed || (ch.closing && it.f == nil) {
		return
	}
	ch.out = append(ch.out, it)
	switch {
	case it.f != nil:
		ch.ctrl++
	case it.d != nil && it.d.ID == 0:
		ch.queuedMsgs++
	}
	if !ch.writing {
		ch.writing = true
		ch.wg.Add(1)
		go ch.writeLoop()
	}
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 8<<10); return &b }}

// writeLoop writes what is queued until nothing is, then ends; after a
// closing frame it closes the connection.
func (ch *channel) writeLoop() {
	defer ch.wg.Done()
	bp := bufPool.Get().(*[]byte)
	buf := (*bp)[:0]
	var keys []string
	var acks []uint64
	defer func() {
		if cap(buf) <= 256<<10 {
			*bp = buf[:0]
			bufPool.Put(bp)
		}
	}()
	for {
		ch.mu.Lock()
		items := ch.out
		if len(items) == 0 || ch.closed {
			ch.writing = false
			closeNow := ch.closing && len(items) == 0
			ch.cond.Broadcast()
			ch.mu.Unlock()
			if closeNow {
				_ = ch.conn.Close()
			}
			return
		}
		ch.out, ch.spare = ch.spare[:0], nil
		ch.queuedMsgs, ch.ctrl = 0, 0
		ver, cl, cm := ch.ver, ch.cl, ch.cm
		ch.cond.Broadcast()
		ch.mu.Unlock()

		var err error
		acks = acks[:0]
		for i := range items {
			it := &items[i]
			switch {
			case it.f != nil:
				buf = AppendFrame(buf, it.f, ver)
				if c, ok := ch.m.cmdOut[it.f.Command]; ok {
					inc(c)
				}
			case it.d != nil:
				buf, keys = appendMessage(buf, it, ver, keys)
				inc(ch.m.cmdOut[CmdMessage])
				if it.brokerAck != 0 {
					acks = append(acks, it.brokerAck)
				}
			default:
				buf = append(buf, '\n')
				inc(ch.m.hbOut)
			}
			if it.f != nil || it.d != nil {
				inc(ch.m.out)
				if cm != nil {
					cm.out.Inc()
				}
			}
			if len(buf) >= writeBatch || i == len(items)-1 {
				if err == nil {
					_, err = ch.conn.Write(buf)
					ch.writes.Add(1)
				}
				buf = buf[:0]
			}
		}
		clear(items)
		ch.mu.Lock()
		ch.spare = items[:0]
		if err != nil {
			ch.closing = true
		}
		ch.mu.Unlock()
		if err != nil {
			_ = ch.conn.Close()
			ch.mu.Lock()
			ch.writing = false
			ch.cond.Broadcast()
			ch.mu.Unlock()
			return
		}
		for _, id := range acks {
			cl.Ack(id)
		}
	}
}

// Kick implements gateway.Handler: the framework is ending the client
// (takeover, kick, listener or gateway stop, auth expiry).
func (ch *channel) Kick(reason string) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closing || ch.closed {
		return
	}
	e := &Frame{Command: CmdError, Headers: []Header{{hdrMessage, "Connection closed by the gateway (" + reason + ")"}}}
	ch.enqueueLocked(outItem{f: e})
	ch.closing = true
	ch.m.count("connections.kicked")
}

// shutdown ends the connection after the read loop: the last frame goes
// out (within closeGrace), timers stop, and the client leaves the
// gateway, which makes the broker redeliver what it left unacknowledged.
func (ch *channel) shutdown() {
	ch.idle.Stop()
	ch.mu.Lock()
	ch.closing = true
	if ch.hbIn != nil {
		ch.hbIn.Stop()
	}
	if ch.hbOut != nil {
		ch.hbOut.Stop()
	}
	for _, tx := range ch.txs {
		tx.timer.Stop()
	}
	writing := ch.writing
	ch.mu.Unlock()
	if writing {
		t := time.AfterFunc(closeGrace, func() { _ = ch.conn.Close() })
		ch.wg.Wait()
		t.Stop()
	}
	ch.mu.Lock()
	ch.closed = true
	keys := ch.leftSharedLocked()
	cl := ch.cl
	ch.cond.Broadcast()
	ch.mu.Unlock()
	_ = ch.conn.Close()
	ch.wg.Wait()
	ch.p.redo.add(keys)
	if cl != nil {
		if ch.reason == "" {
			ch.reason = "closed"
		}
		cl.Close(ch.reason)
	}
	ch.logAt(slog.LevelDebug, "connection closed", "reason", ch.reason)
}
