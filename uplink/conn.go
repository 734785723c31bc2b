package uplink

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/store"
)

// What a packet id in flight stands for.
type flightKind uint8

const (
	kindPublish flightKind = iota // a stored message
	kindStatus                    // the retained online/offline status
	kindSubscribe
	kindUnsubscribe
)

type flight struct {
	seq     uint64
	kind    flightKind
	filters []string // local filters of a SUBSCRIBE or UNSUBSCRIBE
}

// resend is a PUBLISH left unacknowledged by a connection: the next one
// sends it again with DUP set and, when free, the same packet id.
type resend struct {
	seq uint64
	pid uint16
}

// inbound is what the reader hands the loop.
type inbound struct {
	acks      []uint16 // PUBACKs received
	pubacks   []uint16 // cloud QoS 1 PUBLISHes delivered locally, to acknowledge
	pong      bool
	subacks   []suback
	unsubacks []uint16
}

type suback struct {
	pid   uint16
	codes []byte
}

func (b *inbound) empty() bool {
	return len(b.acks) == 0 && len(b.pubacks) == 0 && !b.pong && len(b.subacks) == 0 && len(b.unsubacks) == 0
}

func (b *inbound) size() int { return len(b.acks) + len(b.pubacks) + len(b.subacks) + len(b.unsubacks) }

func (b *inbound) reset() {
	b.acks, b.pubacks, b.unsubacks = b.acks[:0], b.pubacks[:0], b.unsubacks[:0]
	clear(b.subacks)
	b.subacks = b.subacks[:0]
	b.pong = false
}

// keepaliveError is a connection given up for silence.
type keepaliveError struct {
	idle bool // the link had been idle: the NAT may have dropped the mapping
	msg  string
}

func (e *keepaliveError) Error() string { return e.msg }

// conn is one MQTT connection: the loop (serve, in the run goroutine)
// owns the writer and all session state; the reader goroutine decodes
// packets, delivers cloud messages locally, and passes acknowledgements
// to the loop through an inbox it never blocks on, so a loop stuck in a
// write cannot stop the reading that would unstick it.
type conn struct {
	u   *Uplink
	nc  net.Conn
	br  *bufio.Reader
	bw  *bufio.Writer
	buf []byte // packet header scratch
	env []byte // envelope scratch
	adv time.Duration

	// Reader → loop.
	boxMu      sync.Mutex
	box        *inbound
	wake       chan struct{}
	spare      *inbound
	lastRead   atomic.Int64 // mono ns of the last packet read
	readFailed chan struct{}
	readErr    error // set before readFailed is closed
	readerDone chan struct{}

	// Loop state.
	werr      error
	lastWrite int64
	pingAt    int64 // 0 when no PINGREQ is outstanding
	pingIdle  bool
	inflight  map[uint16]flight
	pubs      int // kindPublish entries in inflight
	statusOut int // kindStatus entries in inflight
	nextPID   uint16
	pending   []*store.Message
	cursor    uint64
	caughtUp  bool
	paused    bool
	timer     *time.Timer
	timerC    <-chan time.Time
	prev      []resend
	prevIdx   int
	reserved  map[uint16]bool // packet ids left unacknowledged by the previous connection
	toDelete  []uint64
	active    map[string]bool // local filters subscribed upstream (or being)
	subAcked  map[string]bool // ... and acknowledged
	bucket    tokenBucket
	stopping  bool
	probe     uint64 // a suspected poison message this connection sends alone (quarantine.go), or 0
	probeSent bool
}

// connect dials and completes CONNECT/CONNACK within connect_timeout.
func (u *Uplink) connect(ctx context.Context) (*conn, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, u.s.connectTimeout)
	defer cancel()
	nc, err := u.dial(ctx)
	if err != nil {
		return nil, false, err
	}
	dl, _ := ctx.Deadline()
	nc.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { nc.SetDeadline(time.Unix(1, 0)) })

	adv := u.ka.advertised()
	cp := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	cp.ProtocolName, cp.ProtocolVersion = "MQTT", 4
	cp.CleanSession = u.s.cleanSession
	cp.Keepalive = uint16(adv / time.Second)
	cp.ClientIdentifier = u.s.clientID
	if u.s.statusTopic != "" {
		cp.WillFlag, cp.WillQos, cp.WillRetain = true, 1, true
		cp.WillTopic, cp.WillMessage = u.s.statusTopic, []byte("offline")
	}
	if u.s.username != "" || len(u.s.password) > 0 {
		cp.UsernameFlag, cp.Username = true, u.s.username // a password needs the flag
	}
	if len(u.s.password) > 0 {
		cp.PasswordFlag, cp.Password = true, u.s.password
	}
	bw := bufio.NewWriterSize(nc, 32<<10)
	br := bufio.NewReaderSize(nc, 32<<10)
	fail := func(err error) (*conn, bool, error) {
		stop()
		err = tlsAlert(nc, err)
		nc.Close()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			err = fmt.Errorf("%w (connect_timeout %s)", err, u.s.connectTimeout)
		}
		return nil, false, err
	}
	if err := cp.Write(bw); err != nil {
		return fail(fmt.Errorf("send CONNECT: %w", err))
	}
	if err := bw.Flush(); err != nil {
		return fail(fmt.Errorf("send CONNECT: %w", err))
	}
	f, err := readFrame(br)
	if err != nil {
		return fail(fmt.Errorf("waiting for CONNACK: %w", err))
	}
	ca, ok := f.pk.(*packets.ConnackPacket)
	if !ok {
		return fail(fmt.Errorf("protocol error: %s instead of CONNACK", packets.PacketNames[f.kind]))
	}
	if ca.ReturnCode != packets.Accepted {
		msg, ok := packets.ConnackReturnCodes[ca.ReturnCode]
		if !ok {
			msg = fmt.Sprintf("CONNACK return code %d", ca.ReturnCode)
		}
		return fail(fmt.Errorf("refused by the server: %s", msg))
	}
	if !stop() {
		nc.Close()
		return nil, false, ctx.Err()
	}
	nc.SetDeadline(time.Time{})
	now := u.mono()
	c := &conn{
		u: u, nc: nc, br: br, bw: bw, adv: adv,
		box: new(inbound), spare: new(inbound), wake: make(chan struct{}, 1),
		readFailed: make(chan struct{}), readerDone: make(chan struct{}),
		lastWrite: now,
		inflight:  make(map[uint16]flight, u.s.maxInflight+8),
		active:    map[string]bool{}, subAcked: map[string]bool{},
		prev: u.prev, reserved: make(map[uint16]bool, len(u.prev)+len(u.prevOther)),
		probe: u.probeSeq(),
	}
	for _, r := range u.prev {
		c.reserved[r.pid] = true
	}
	for _, pid := range u.prevOther {
		c.reserved[pid] = true
	}
	c.lastRead.Store(now)
	if u.s.drainRate > 0 {
		c.bucket.init(u.s.drainRate, now)
	}
	return c, ca.SessionPresent, nil
}

// tlsAlert looks for the reason a TLS server gave for closing the
// connection right after the handshake. With TLS 1.3 the client's
// handshake ends before the server has checked the client certificate, so
// a refused certificate shows first as a reset when CONNECT is written;
// the server's alert ("certificate required", "unknown certificate
// authority") is usually still there to read.
func tlsAlert(nc net.Conn, err error) error {
	tc, ok := nc.(*tls.Conn)
	if !ok || strings.Contains(err.Error(), "tls: ") {
		return err
	}
	tc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	var b [1]byte
	if _, rerr := tc.Read(b[:]); rerr != nil && strings.Contains(rerr.Error(), "tls: ") {
		return fmt.Errorf("%w (after: %v)", rerr, err)
	}
	return err
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// serve runs the connection until it fails or ctx ends (then it says
// goodbye: offline status, DISCONNECT). The returned error says why the
// connection was lost; it is nil after a clean stop.
func (c *conn) serve(ctx context.Context) error {
	go c.readLoop()
	defer func() {
		c.nc.Close()
		<-c.readerDone
		if c.timer != nil {
			c.timer.Stop()
		}
	}()
	notify := c.u.q.Notify()
	c.syncSubs()
	if c.u.s.statusTopic != "" {
		c.sendStatus([]byte("online"))
	}
	tick := time.NewTicker(min(max(c.u.ka.current()/20, 20*time.Millisecond), 500*time.Millisecond))
	defer tick.Stop()
	for {
		c.fill()
		if err := c.flush(); err != nil {
			return c.failure(err)
		}
		select {
		case <-c.wake:
			c.handle(c.takeInbox())
		case <-notify:
			c.caughtUp = false
		case <-c.u.subs.changed:
			c.syncSubs()
		case m := <-c.u.live:
			c.writeLive(m.Topic, m.Payload, m.Retain)
		case <-tick.C:
			if err := c.keepalive(); err != nil {
				return err
			}
		case <-c.timerC:
			c.timerC, c.paused = nil, false
		case <-c.readFailed:
			return c.failure(nil)
		case <-ctx.Done():
			c.shutdown()
			return nil
		}
	}
}

// failure turns what ended the connection into the error to report,
// preferring what the reader saw to the write error it caused.
func (c *conn) failure(werr error) error {
	if werr != nil {
		select {
		case <-c.readFailed:
		case <-time.After(10 * time.Millisecond):
			return fmt.Errorf("write: %w", werr)
		}
	}
	err := c.readErr
	if isTimeout(err) {
		k := c.u.ka.current()
		return &keepaliveError{idle: c.pingAt != 0 && c.pingIdle,
			msg: fmt.Sprintf("nothing received for %s (1.5 × keepalive): connection half-open", k*3/2)}
	}
	return fmt.Errorf("read: %w", err)
}

// fill publishes queued messages while the window has room.
func (c *conn) fill() {
	s := c.u.s
	for !c.stopping && !c.paused && c.pubs < s.maxInflight && len(c.inflight) < 65535 {
		if c.probe != 0 && c.pubs > 0 {
			return // the suspect goes alone; see quarantine.go
		}
		if len(c.pending) == 0 {
			if c.caughtUp {
				return
			}
			if c.pubs == 0 {
				// Everything sent was acknowledged and deleted: read from
				// the oldest, so a message that became visible in the store
				// after a younger one is not skipped.
				c.cursor = 0
			}
			msgs, err := c.u.q.Read(c.cursor, max(readBatch, s.maxInflight))
			if err != nil {
				c.u.setError(fmt.Errorf("uplink %s: store read: %w", s.server, err))
				c.pause(time.Second)
				return
			}
			if len(msgs) == 0 {
				c.caughtUp = true
				return
			}
			c.pending = msgs
		}
		if s.drainRate > 0 {
			if wait := c.bucket.take(c.u.mono()); wait > 0 {
				c.pause(wait)
				return
			}
		}
		m := c.pending[0]
		c.pending[0] = nil
		c.pending = c.pending[1:]
		c.cursor = m.Seq
		if c.probe != 0 {
			if m.Seq == c.probe {
				c.probeSent = true
			} else { // the suspect left the queue (expired, dropped)
				c.probe, c.u.suspect = 0, suspicion{}
			}
		}
		c.publish(m)
	}
}

// pause stops reading the queue for d.
func (c *conn) pause(d time.Duration) {
	c.paused = true
	if c.timer == nil {
		c.timer = time.NewTimer(d)
	} else {
		c.timer.Reset(d)
	}
	c.timerC = c.timer.C
}

// publish writes one stored message as a QoS 1 PUBLISH.
func (c *conn) publish(m *store.Message) {
	s := c.u.s
	prefix := s.prefix
	if m.Gateway == eventsGateway {
		prefix = ""
	}
	payload := m.Payload
	if s.envelope {
		c.env = appendEnvelope(c.env[:0], m, c.u.agentID)
		payload = c.env
	}
	pid, dup := c.resendPID(m.Seq)
	if pid == 0 {
		pid = c.allocPID()
	}
	var err error
	c.buf, err = appendPublishHeader(c.buf[:0], prefix, m.Topic, len(payload), 1, m.Retain, dup, pid)
	if err != nil {
		// It can never be sent; keeping it would block the queue forever.
		c.u.log.Error("message cannot be sent upstream, dropped", "seq", m.Seq, "topic", m.Topic, "error", err)
		c.u.drop(1)
		if derr := c.u.q.Delete(m.Seq); derr != nil {
			c.u.setError(fmt.Errorf("uplink %s: store delete: %w", s.server, derr))
		}
		return
	}
	c.inflight[pid] = flight{seq: m.Seq, kind: kindPublish}
	c.pubs++
	c.write(c.buf)
	c.write(payload)
	c.u.sent.Add(1)
	c.u.met.sent.Inc()
	if dup {
		c.u.resent.Add(1)
	}
	if c.u.echo.enabled() && len(c.active) > 0 && c.mirrored(prefix, m.Topic) {
		c.u.echo.record(c.u.echo.key(prefix, m.Topic, payload), c.u.mono())
	}
}

// mirrored reports whether an upstream subscription of this connection
// matches prefix+topic, i.e. whether the message may come back down.
func (c *conn) mirrored(prefix, topic string) bool {
	if prefix != c.u.s.prefix {
		return false // presence events are not under topic_prefix
	}
	for f := range c.active {
		if broker.Match(f, topic) {
			return true
		}
	}
	return false
}

// writeLive writes a QoS 0 message that was not stored.
func (c *conn) writeLive(topic string, payload []byte, retain bool) {
	if c.u.s.envelope {
		c.env = appendEnvelope(c.env[:0], &store.Message{Topic: topic, Payload: payload, Time: c.u.now(), Retain: retain}, c.u.agentID)
		payload = c.env
	}
	var err error
	c.buf, err = appendPublishHeader(c.buf[:0], c.u.s.prefix, topic, len(payload), 0, retain, false, 0)
	if err != nil {
		c.u.drop(1)
		return
	}
	c.write(c.buf)
	c.write(payload)
	c.u.sent.Add(1)
	c.u.met.sent.Inc()
}

// resendPID reports whether seq was left unacknowledged by the previous
// connection, and the packet id it had there if that id is free.
func (c *conn) resendPID(seq uint64) (uint16, bool) {
	for c.prevIdx < len(c.prev) && c.prev[c.prevIdx].seq < seq {
		c.prevIdx++ // gone from the queue (dropped or expired)
	}
	if c.prevIdx >= len(c.prev) || c.prev[c.prevIdx].seq != seq {
		return 0, false
	}
	pid := c.prev[c.prevIdx].pid
	c.prevIdx++
	if _, used := c.inflight[pid]; used {
		pid = 0
	}
	return pid, true
}

// unacked lists, in order, the PUBLISHes this connection leaves to the
// next: those in flight and those it did not get to resend.
func (c *conn) unacked() []resend {
	out := slices.Clone(c.prev[c.prevIdx:])
	for pid, f := range c.inflight {
		if f.kind == kindPublish {
			out = append(out, resend{seq: f.seq, pid: pid})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].seq < out[j].seq })
	return out
}

// allocPID returns a free packet id. Ids the previous connection left
// unacknowledged are avoided, so that even a broker that wrongly sent a
// stale PUBACK on this connection could only acknowledge the message that
// had that id (resent with it), never another one.
func (c *conn) allocPID() uint16 {
	avoid := len(c.inflight)+len(c.reserved) < 65535
	for {
		c.nextPID++
		if c.nextPID == 0 {
			c.nextPID = 1
		}
		if _, used := c.inflight[c.nextPID]; !used && !(avoid && c.reserved[c.nextPID]) {
			return c.nextPID
		}
	}
}

// otherUnacked lists the ids of unacknowledged packets that are not
// stored messages (status, SUBSCRIBE, UNSUBSCRIBE).
func (c *conn) otherUnacked() []uint16 {
	var out []uint16
	for pid, f := range c.inflight {
		if f.kind != kindPublish {
			out = append(out, pid)
		}
	}
	return out
}

func (c *conn) sendStatus(payload []byte) {
	if len(c.inflight) >= 65535 {
		return
	}
	pid := c.allocPID()
	var err error
	c.buf, err = appendPublishHeader(c.buf[:0], "", c.u.s.statusTopic, len(payload), 1, true, false, pid)
	if err != nil {
		return
	}
	c.inflight[pid] = flight{kind: kindStatus}
	c.statusOut++
	c.write(c.buf)
	c.write(payload)
}

// syncSubs makes the upstream subscriptions of this connection match the
// local subscribers.
func (c *conn) syncSubs() {
	want := c.u.subs.snapshot()
	var add, remove []string
	for f := range want {
		if !c.active[f] {
			add = append(add, f)
		}
	}
	for f := range c.active {
		if !want[f] {
			remove = append(remove, f)
		}
	}
	sort.Strings(add)
	sort.Strings(remove)
	for chunk := range slices.Chunk(remove, 64) {
		if len(c.inflight) >= 65535 {
			break
		}
		p := packets.NewControlPacket(packets.Unsubscribe).(*packets.UnsubscribePacket)
		p.MessageID = c.allocPID()
		for _, f := range chunk {
			p.Topics = append(p.Topics, c.u.s.prefix+f)
			delete(c.active, f) // subAcked keeps it until the UNSUBACK
		}
		c.inflight[p.MessageID] = flight{kind: kindUnsubscribe, filters: chunk}
		c.writePacket(p)
	}
	for chunk := range slices.Chunk(add, 64) {
		if len(c.inflight) >= 65535 {
			break
		}
		p := packets.NewControlPacket(packets.Subscribe).(*packets.SubscribePacket)
		p.MessageID = c.allocPID()
		for _, f := range chunk {
			p.Topics = append(p.Topics, c.u.s.prefix+f)
			p.Qoss = append(p.Qoss, 1)
			c.active[f] = true
		}
		c.inflight[p.MessageID] = flight{kind: kindSubscribe, filters: chunk}
		c.writePacket(p)
	}
	c.u.activeSubs.Store(int64(len(c.subAcked)))
}

// takeInbox swaps the reader's inbox for the spare one.
func (c *conn) takeInbox() *inbound {
	c.spare.reset()
	c.boxMu.Lock()
	b := c.box
	c.box = c.spare
	c.boxMu.Unlock()
	c.spare = b
	return b
}

// handle applies what the reader received.
func (c *conn) handle(b *inbound) {
	u := c.u
	for _, pid := range b.acks {
		f, ok := c.inflight[pid]
		if !ok {
			continue // not ours on this connection: never a reason to delete
		}
		switch f.kind {
		case kindPublish:
			delete(c.inflight, pid)
			c.pubs--
			c.toDelete = append(c.toDelete, f.seq)
			if f.seq == u.suspect.seq { // the broker took it: not poison
				c.probe, u.suspect = 0, suspicion{}
			}
		case kindStatus:
			delete(c.inflight, pid)
			c.statusOut--
		}
	}
	if n := len(c.toDelete); n > 0 {
		if err := u.q.Delete(c.toDelete...); err != nil {
			// They stay queued and go again later: duplicates, not loss.
			u.setError(fmt.Errorf("uplink %s: store delete: %w", u.s.server, err))
			c.pause(time.Second)
		} else {
			u.acked.Add(uint64(n))
			u.met.acked.Add(uint64(n))
		}
		c.toDelete = c.toDelete[:0]
		if c.pubs == 0 {
			c.caughtUp = false // one read from the oldest; see fill
		}
	}
	for _, pid := range b.pubacks {
		c.buf = appendPuback(c.buf[:0], pid)
		c.write(c.buf)
	}
	if b.pong && c.pingAt != 0 {
		u.rtt.Store(u.mono() - c.pingAt)
		if c.pingIdle {
			u.ka.idleAnswered(c.adv)
		}
		c.pingAt = 0
	}
	for _, sa := range b.subacks {
		f, ok := c.inflight[sa.pid]
		if !ok || f.kind != kindSubscribe {
			continue
		}
		delete(c.inflight, sa.pid)
		for i, filter := range f.filters {
			if i < len(sa.codes) && sa.codes[i] != 0x80 {
				c.subAcked[filter] = true // an UNSUBSCRIBE sent since will clear it
				continue
			}
			// Left in active: not asked again before the next connection.
			u.setError(fmt.Errorf("uplink %s: subscription to %q refused by the server", u.s.server, u.s.prefix+filter))
		}
	}
	for _, pid := range b.unsubacks {
		if f, ok := c.inflight[pid]; ok && f.kind == kindUnsubscribe {
			delete(c.inflight, pid)
			for _, filter := range f.filters {
				if !c.active[filter] {
					delete(c.subAcked, filter)
				}
			}
		}
	}
	u.inflight.Store(int64(c.pubs))
	u.activeSubs.Store(int64(len(c.subAcked)))
}

// keepalive runs on every tick. It sends a PINGREQ after a keepalive
// interval without traffic, or half of one when PUBACKs or SUBACKs are
// owed and nothing was read, and gives the connection up when the
// PINGRESP is later than ping_timeout or nothing at all was read for 1.5
// intervals (the reader's deadline enforces that too, even while the
// loop is stuck in a write).
func (c *conn) keepalive() error {
	now := c.u.mono()
	k := int64(c.u.ka.current())
	quiet := now - c.lastRead.Load()
	idle := c.pingAt != 0 && c.pingIdle
	if quiet >= k*3/2 {
		return &keepaliveError{idle: idle,
			msg: fmt.Sprintf("nothing received for %s (1.5 × keepalive): connection half-open", time.Duration(quiet).Round(time.Millisecond))}
	}
	if c.pingAt != 0 {
		if now-c.pingAt >= int64(c.u.s.pingTimeout) {
			return &keepaliveError{idle: idle,
				msg: fmt.Sprintf("no PINGRESP within ping_timeout %s: connection half-open", c.u.s.pingTimeout)}
		}
		return nil
	}
	due := k
	if len(c.inflight) > 0 {
		due = k / 2 // an answer is owed: ask sooner
	}
	if quiet >= due || now-c.lastWrite >= k {
		c.pingIdle = now-max(now-quiet, c.lastWrite) >= k*9/10
		c.pingAt = now
		c.write(pingreqBytes)
	}
	return nil
}

// shutdown says goodbye: the retained offline status, a short wait for
// outstanding PUBACKs (fewer duplicates next time), DISCONNECT.
func (c *conn) shutdown() {
	c.stopping = true
	grace := time.Duration(c.u.grace.Load())
	c.nc.SetWriteDeadline(time.Now().Add(grace))
	if c.u.s.statusTopic != "" {
		c.sendStatus([]byte("offline"))
	}
	if c.flush() != nil {
		return
	}
	t := time.NewTimer(grace)
	defer t.Stop()
	for c.pubs > 0 || c.statusOut > 0 {
		select {
		case <-c.wake:
			c.handle(c.takeInbox())
			if c.flush() != nil {
				return
			}
		case <-c.readFailed:
			return
		case <-t.C:
			c.u.log.Info("stopping with messages unacknowledged; they stay queued", "inflight", c.pubs)
			c.write(disconnectBytes)
			c.flush()
			return
		}
	}
	c.write(disconnectBytes)
	c.flush()
}

func (c *conn) write(p []byte) {
	if c.werr == nil {
		_, c.werr = c.bw.Write(p)
	}
}

func (c *conn) writePacket(p packets.ControlPacket) {
	if c.werr == nil {
		c.werr = p.Write(c.bw)
	}
}

func (c *conn) flush() error {
	c.u.inflight.Store(int64(c.pubs))
	if c.werr == nil && c.bw.Buffered() > 0 {
		c.werr = c.bw.Flush()
		c.lastWrite = c.u.mono()
	}
	return c.werr
}

// readLoop decodes packets until the connection fails. Cloud PUBLISHes
// are delivered to the local broker here; acknowledgements go to the loop
// in batches, one per burst of input.
func (c *conn) readLoop() {
	defer close(c.readerDone)
	u := c.u
	local := new(inbound)
	deadlineAt := u.mono()
	c.nc.SetReadDeadline(time.Now().Add(u.ka.current() * 3 / 2))
	fail := func(err error) {
		c.readErr = err
		close(c.readFailed)
		c.nc.Close() // unblocks a loop stuck writing to a dead peer
	}
	for {
		f, err := readFrame(c.br)
		if err != nil {
			fail(err)
			return
		}
		switch f.kind {
		case packets.Puback:
			local.acks = append(local.acks, f.pid)
		case packets.Pingresp:
			local.pong = true
		case packets.Publish:
			p := f.pk.(*packets.PublishPacket)
			if p.Qos > 1 {
				fail(fmt.Errorf("protocol error: QoS %d PUBLISH on a QoS 1 subscription", p.Qos))
				return
			}
			ack := true
			if u.b != nil {
				ack = u.deliver(p)
			} else {
				u.drop(1)
			}
			if ack && p.Qos == 1 {
				local.pubacks = append(local.pubacks, p.MessageID)
			}
		case packets.Suback:
			p := f.pk.(*packets.SubackPacket)
			local.subacks = append(local.subacks, suback{p.MessageID, p.ReturnCodes})
		case packets.Unsuback:
			local.unsubacks = append(local.unsubacks, f.pk.(*packets.UnsubackPacket).MessageID)
		default:
			fail(fmt.Errorf("protocol error: unexpected %s from the server", packets.PacketNames[f.kind]))
			return
		}
		if c.br.Buffered() > 0 && local.size() < 1024 {
			continue
		}
		now := u.mono()
		c.lastRead.Store(now)
		k := u.ka.current()
		if now-deadlineAt >= int64(k/8) {
			c.nc.SetReadDeadline(time.Now().Add(k * 3 / 2))
			deadlineAt = now
		}
		if local.empty() {
			continue
		}
		c.boxMu.Lock()
		b := c.box
		b.acks = append(b.acks, local.acks...)
		b.pubacks = append(b.pubacks, local.pubacks...)
		b.pong = b.pong || local.pong
		b.subacks = append(b.subacks, local.subacks...)
		b.unsubacks = append(b.unsubacks, local.unsubacks...)
		c.boxMu.Unlock()
		local.reset()
		select {
		case c.wake <- struct{}{}:
		default:
		}
	}
}

// tokenBucket paces the drain at drain_rate messages per second, with
// bursts of a tenth of a second.
type tokenBucket struct {
	rate, burst, tokens float64
	last                int64
}

func (t *tokenBucket) init(rate int, now int64) {
	t.rate = float64(rate)
	t.burst = max(1, t.rate/10)
	t.tokens, t.last = t.burst, now
}

// take spends a token, or says how long until one is there.
func (t *tokenBucket) take(now int64) time.Duration {
	t.tokens = min(t.burst, t.tokens+float64(now-t.last)/1e9*t.rate)
	t.last = now
	if t.tokens >= 1 {
		t.tokens--
		return 0
	}
	return time.Duration((1-t.tokens)/t.rate*1e9) + time.Millisecond
}
