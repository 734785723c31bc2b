package gbt32960

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/transports"
)

// channel is one terminal connection: the reader goroutine parses and
// handles frames and owns the connection; a writer goroutine exists only
// while there is something to send, so an idle vehicle costs one
// goroutine.
type channel struct {
	p    *proto
	l    *gateway.Listener
	conn transports.Conn
	cfg  *Config
	m    *listenerMetrics
	log  *slog.Logger
	rd   *Reader
	idle *gateway.IdleWatch

	// Reader goroutine only.
	reason  string
	skipped uint64
	jbuf    []byte

	mu       sync.Mutex
	vin      string // set once at login; read by Deliver
	edition  int
	cl       *gateway.Client
	out      [][]byte
	spare    [][]byte
	writing  bool
	closed   bool
	queue    [][]byte // downlink frames behind the one in flight
	inflight *pending
	retry    *time.Timer
	wg       sync.WaitGroup // the writer
}

// pending is the downlink command waiting for the terminal's answer,
// matched by command id as the protocol has no sequence number.
type pending struct {
	cmd   byte
	frame []byte
	left  int
}

func newChannel(p *proto, l *gateway.Listener, c transports.Conn, m *listenerMetrics, log *slog.Logger) *channel {
	cfg := p.spec.Load()
	return &channel{p: p, l: l, conn: c, cfg: cfg, m: m, log: log, rd: NewReader(c, cfg.maxData())}
}

func (ch *channel) serve(ctx context.Context) {
	ch.idle = ch.l.Gateway().WatchIdle(ch.conn)
	ch.readLoop(ctx)
	ch.shutdown()
}

func (ch *channel) readLoop(ctx context.Context) {
	var f Frame
	for {
		err := ch.rd.Next(&f)
		if d := ch.rd.Skipped - ch.skipped; d > 0 {
			ch.skipped = ch.rd.Skipped
			ch.m.count("frame.garbage_bytes", d)
		}
		if err != nil {
			ch.readFailed(err)
			return
		}
		inc(ch.m.in)
		if err := ch.handle(ctx, &f); err != nil {
			return
		}
	}
}

func (ch *channel) readFailed(err error) {
	switch {
	case errors.Is(err, ErrChecksum):
		// EMQX closes the connection on a frame that fails its check.
		ch.m.count("frame.check_error", 1)
		ch.reason = "frame_check_error"
	case errors.Is(err, ErrTooLarge):
		ch.m.count("frame.too_large", 1)
		ch.reason = "frame_too_large"
	case errors.Is(err, io.EOF):
		ch.reason = "closed"
	case errors.Is(err, io.ErrUnexpectedEOF):
		ch.reason = "closed_mid_frame"
	default:
		if ch.reason == "" {
			ch.reason = "sock_error"
		}
	}
	if ch.reason != "closed" && ch.reason != "sock_error" {
		ch.logAt(slog.LevelInfo, "closing connection", "reason", ch.reason, "error", err)
	}
}

var errStop = errors.New("gbt32960: connection ends")

func (ch *channel) client() *gateway.Client {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	return ch.cl
}

// handle dispatches one frame; an error ends the connection.
func (ch *channel) handle(ctx context.Context, f *Frame) error {
	if c := ch.m.byCmd[f.Cmd]; c[0] != nil {
		inc(c)
	}
	cl := ch.client()
	if cl == nil {
		if f.Cmd != CmdVehicleLogin || f.Ack != AckCommand {
			// EMQX: anything before a vehicle login is a protocol error.
			ch.m.count("frame.before_login", 1)
			ch.reason = "protocol_error"
			return errStop
		}
		return ch.login(ctx, f)
	}
	if f.VIN != ch.vin {
		// A terminal speaks for one vehicle; a frame for another VIN on an
		// authenticated connection is not published under this one's topics.
		ch.m.count("frame.vin_mismatch", 1)
		ch.logAt(slog.LevelWarn, "frame for another VIN ignored", "vin", f.VIN, "cmd", f.Cmd)
		return nil
	}
	if f.Ack != AckCommand {
		if isDownlinkCmd(f.Cmd) {
			inc(ch.m.response)
			ch.answered(f.Cmd)
			ch.publish(cl, topicResponse, f)
		} else {
			ch.m.count("frame.unexpected_response", 1)
		}
		return nil
	}
	switch f.Cmd {
	case CmdVehicleLogin:
		// A repeated login of the same vehicle: publish and answer again.
		ch.publish(cl, "upstream/vlogin", f)
		ch.ack(f, AckSuccess)
	case CmdRealtime:
		ch.publish(cl, "upstream/info", f)
	case CmdReissue:
		ch.publish(cl, "upstream/reinfo", f)
	case CmdVehicleLogout:
		ch.publish(cl, "upstream/vlogout", f)
		ch.ack(f, AckSuccess)
	case CmdPlatformLogin:
		ch.publish(cl, "upstream/plogin", f)
	case CmdPlatformLogout:
		ch.publish(cl, "upstream/plogout", f)
	case CmdHeartbeat, CmdTimeCalibrate:
		ch.ack(f, AckSuccess)
	default:
		inc(ch.m.other)
		ch.publish(cl, topicTransparent, f)
	}
	return nil
}

func validVIN(v string) bool {
	if len(v) != vinLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x21 || c > 0x7E {
			return false
		}
	}
	return true
}

func (ch *channel) login(ctx context.Context, f *Frame) error {
	if !validVIN(f.VIN) {
		ch.m.count("frame.bad_vin", 1)
		ch.refuse(f)
		ch.reason = "bad_vin"
		return errStop
	}
	if _, err := AppendJSON(ch.jbuf[:0], f); err != nil {
		ch.m.count("frame.malformed", 1)
		ch.refuse(f)
		ch.reason = "malformed_login"
		return errStop
	}
	ci := ch.l.NewClientInfo(ch.conn)
	ci.ClientID, ci.Username = f.VIN, f.VIN
	ci.SetField("vin", f.VIN)
	actx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := ch.l.Authenticate(actx, ci)
	cancel()
	if err != nil {
		// EMQX closes silently; an error answer tells the terminal why.
		ch.logAt(slog.LevelWarn, "login denied", "clientid", f.VIN, "error", err)
		ch.refuse(f)
		ch.reason = "not_authorized"
		return errStop
	}
	ch.mu.Lock()
	ch.vin, ch.edition = f.VIN, f.Edition
	ch.mu.Unlock()
	ch.log = ch.log.With("clientid", f.VIN)
	cl, _, err := ch.l.Connect(ci, ch, gateway.ConnectOptions{CleanStart: true, Held: true})
	if err != nil {
		ch.refuse(f)
		ch.reason = "connect_failed"
		return errStop
	}
	ch.mu.Lock()
	ch.cl = cl
	ch.mu.Unlock()
	ch.idle.Stop()
	if err := cl.Subscribe(topicDown, 0); err != nil {
		ch.logAt(slog.LevelWarn, "downlink subscription refused", "error", err)
	}
	ch.publish(cl, "upstream/vlogin", f)
	ch.ack(f, AckSuccess)
	cl.Resume()
	return nil
}

// publish sends f's JSON at QoS 1, as EMQX does.
func (ch *channel) publish(cl *gateway.Client, topic string, f *Frame) {
	b, err := AppendJSON(ch.jbuf[:0], f)
	ch.jbuf = b[:0]
	if err != nil {
		ch.m.count("frame.malformed", 1)
		ch.logAt(slog.LevelInfo, "undecodable data unit dropped", "cmd", f.Cmd, "error", err)
		return
	}
	payload := make([]byte, len(b))
	copy(payload, b)
	if err := cl.Publish(topic, payload, 1, false, nil); err != nil {
		ch.logAt(slog.LevelWarn, "publish failed", "topic", topic, "error", err)
	}
}

// refuse answers a login with an error before the connection closes;
// no writer runs yet, so it is written here, bounded by a deadline.
func (ch *channel) refuse(f *Frame) {
	_ = ch.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	if _, err := ch.conn.Write(answer(f, AckError)); err == nil {
		inc(ch.m.out)
	}
}

// answer builds the response to a command frame as GB/T 32960.3 §6.3.2
// says: the response flag changed, the frame's time kept, the rest of the
// data unit removed. A time calibration is answered with the gateway's
// time, the point of asking. (EMQX sends its own time and keeps the rest.)
func answer(f *Frame, code byte) []byte {
	var data []byte
	switch {
	case f.Cmd == CmdTimeCalibrate:
		data = appendTime(make([]byte, 0, 6), time.Now())
	case len(f.Data) >= 6:
		data = f.Data[:6]
	}
	r := Frame{Edition: f.Edition, Cmd: f.Cmd, Ack: code, VIN: f.VIN, Encrypt: f.Encrypt, Data: data}
	return AppendFrame(make([]byte, 0, headerLen+len(data)+1), &r)
}

// ack queues the answer to a command frame.
func (ch *channel) ack(f *Frame, code byte) {
	b := answer(f, code)
	ch.mu.Lock()
	ch.sendLocked(b)
	ch.mu.Unlock()
}

func (ch *channel) sendLocked(b []byte) {
	if ch.closed {
		return
	}
	ch.out = append(ch.out, b)
	if !ch.writing {
		ch.writing = true
		ch.wg.Add(1)
		go ch.writeLoop()
	}
}

func (ch *channel) writeLoop() {
	defer ch.wg.Done()
	for {
		ch.mu.Lock()
		batch := ch.out
		if len(batch) == 0 || ch.closed {
			ch.writing = false
			ch.mu.Unlock()
			return
		}
		// Two arrays take turns: the writer's batch and the one filling.
		ch.out, ch.spare = ch.spare[:0], nil
		ch.mu.Unlock()
		for _, b := range batch {
			if _, err := ch.conn.Write(b); err != nil {
				_ = ch.conn.Close()
				ch.mu.Lock()
				ch.writing = false
				ch.mu.Unlock()
				return
			}
			inc(ch.m.out)
		}
		clear(batch)
		ch.mu.Lock()
		ch.spare = batch[:0]
		ch.mu.Unlock()
	}
}

// Deliver implements gateway.Handler: a dnstream command becomes a frame
// queued behind the one in flight.
func (ch *channel) Deliver(d gateway.Delivery) {
	cmd, data, err := EncodeCommand(d.Payload, time.Now())
	if err != nil {
		ch.m.count("delivery.dropped.bad_command", 1)
		ch.logAt(slog.LevelWarn, "downlink command dropped", "error", err)
		return
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed {
		return
	}
	if len(ch.queue) >= ch.cfg.MessageQueueLen {
		ch.m.count("delivery.dropped.queue_full", 1)
		return
	}
	f := Frame{Edition: ch.edition, Cmd: cmd, Ack: AckCommand, VIN: ch.vin, Encrypt: EncryptNone, Data: data}
	ch.queue = append(ch.queue, AppendFrame(nil, &f))
	ch.dispatchLocked()
}

// dispatchLocked sends the next queued command when none is in flight.
func (ch *channel) dispatchLocked() {
	if ch.inflight != nil || len(ch.queue) == 0 || ch.closed {
		return
	}
	b := ch.queue[0]
	ch.queue[0] = nil
	ch.queue = ch.queue[1:]
	ch.inflight = &pending{cmd: b[2], frame: b, left: ch.cfg.MaxRetryTimes}
	ch.sendLocked(b)
	ch.m.count("messages.dnstream.sent", 1)
	if ch.retry == nil {
		ch.retry = time.AfterFunc(ch.cfg.RetryInterval.D(), ch.retransmit)
	} else {
		ch.retry.Reset(ch.cfg.RetryInterval.D())
	}
}

func (ch *channel) retransmit() {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	p := ch.inflight
	if p == nil || ch.closed {
		return
	}
	if p.left <= 0 {
		ch.m.count("delivery.dropped.max_retry", 1)
		ch.inflight = nil
		ch.dispatchLocked()
		return
	}
	p.left--
	ch.m.count("packets.retransmitted", 1)
	ch.sendLocked(p.frame)
	ch.retry.Reset(ch.cfg.RetryInterval.D())
}

// answered settles the in-flight command the terminal's reply matches.
func (ch *channel) answered(cmd byte) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.inflight == nil || ch.inflight.cmd != cmd {
		ch.m.count("packets.response.unexpected", 1)
		return
	}
	ch.inflight = nil
	ch.retry.Stop()
	ch.dispatchLocked()
}

// Kick implements gateway.Handler.
func (ch *channel) Kick(reason string) {
	ch.mu.Lock()
	ch.closed = true
	ch.mu.Unlock()
	ch.logAt(slog.LevelInfo, "kicked", "reason", reason)
	_ = ch.conn.Close()
}

func (ch *channel) shutdown() {
	ch.idle.Stop()
	ch.mu.Lock()
	ch.closed = true
	if ch.retry != nil {
		ch.retry.Stop()
	}
	queued := len(ch.queue)
	if ch.inflight != nil {
		queued++
	}
	ch.queue, ch.inflight = nil, nil
	cl := ch.cl
	ch.mu.Unlock()
	if queued > 0 {
		ch.m.count("delivery.dropped.disconnected", uint64(queued))
	}
	_ = ch.conn.Close()
	ch.wg.Wait()
	if cl != nil {
		reason := ch.reason
		if reason == "" {
			reason = "closed"
		}
		cl.Close(reason)
	}
}

func (ch *channel) logAt(level slog.Level, msg string, args ...any) {
	if ch.log.Enabled(context.Background(), level) {
		ch.log.Log(context.Background(), level, msg, args...)
	}
}
