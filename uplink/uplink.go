// Package uplink is edgeway's bridge to the cloud MQTT broker. It is the
// local broker's Sink: every device message bound upstream (matching a
// forward filter) is appended to the durable store.Queue before the device
// is acknowledged, and a drain publishes the queue to the cloud and
// deletes each message only when its own PUBACK arrived on the connection
// it was sent on. The uplink also mirrors local subscriptions upstream
// (reference-counted) and brings cloud messages down into the local
// broker, keeps a retained online/offline status, reports device
// presence, and detects half-open connections behind NAT.
//
// The MQTT 3.1.1 session is driven by this package over its own
// connection, with paho's packets package for the encoding: a paho
// client's tokens can complete without a PUBACK around a reconnect, so
// they cannot decide what is deleted (see README.md).
//
// Wiring, by the agent:
//
//	u, err := uplink.New(cfg.Uplink, uplink.Deps{Queue: q, Broker: b, Hooks: bus, ...})
//	b.SetSink(u)                       // device publishes are stored first
//	manager := gateway.NewManager(gateway.ManagerOptions{Observer: u, ...})
//	u.Start(ctx)                       // before the gateways
//	...
//	u.Stop(ctx)                        // after the gateways
package uplink

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/hooks"
	"github.com/edgeway/edgeway/agent/metrics"
	"github.com/edgeway/edgeway/store"
)

// Dialer opens the network connection to the cloud broker; TLS and
// websockets are layered on what it returns. *net.Dialer implements it;
// tests put a proxy or a fault in between.
type Dialer interface {
	DialContext(ctx context.Context, network, address string) (net.Conn, error)
}

// Deps is what the uplink gets from the agent.
type Deps struct {
	// Queue is the durable store; required. The uplink is its only reader.
	Queue store.Queue
	// Broker receives cloud messages (published with SkipSink). Nil turns
	// the downlink off.
	Broker *broker.Broker
	// Hooks supplies client.connected / client.disconnected for the
	// presence events; nil turns them off.
	Hooks *hooks.Bus
	// Logger gets a "component"="uplink" attribute; nil discards.
	Logger *slog.Logger
	// AgentID is the rendered agent id, put in envelopes and events.
	AgentID string
	// Vars renders client_id, topic_prefix, status_topic and events_topic
	// (agent.id, board.serial …). Nil: only agent.id, from AgentID.
	Vars config.Vars
	// Metrics, if not nil, receives messages.sent / .acked / .dropped /
	// .received counters and the connections.count gauge.
	Metrics *metrics.Set
	// QuarantineDir receives messages the cloud broker refuses by closing
	// the connection (see quarantine_after); "" drops them, counted.
	QuarantineDir string
	// Dialer opens connections; nil uses a net.Dialer.
	Dialer Dialer
	// Now is the wall clock for timestamps and ages; nil uses time.Now.
	Now func() time.Time
	// Rand returns a number in [0, 1) for backoff jitter; nil uses
	// math/rand/v2.
	Rand func() float64
}

// State is the state of the cloud connection.
type State string

// Connection states.
const (
	StateDisconnected State = "disconnected"
	StateConnecting   State = "connecting"
	StateConnected    State = "connected"
)

// Status is a snapshot for the API and the status page.
type Status struct {
	State     State     `json:"state"`
	Since     time.Time `json:"since"` // when State was entered
	Server    string    `json:"server"`
	ClientID  string    `json:"clientid"`
	LastError string    `json:"last_error,omitempty"`
	// LastErrorAt is when LastError happened.
	LastErrorAt time.Time `json:"last_error_at,omitzero"`
	// Keepalive is the ping interval in force (it moves with "auto").
	Keepalive config.Duration `json:"keepalive"`
	// PingRTT is the round trip of the last PINGREQ answered.
	PingRTT config.Duration `json:"ping_rtt"`

	QueueMessages int64           `json:"queue_messages"`
	QueueBytes    int64           `json:"queue_bytes"`
	OldestAge     config.Duration `json:"oldest_age"` // 0 when the queue is empty
	// DrainRate is messages acknowledged by the cloud per second, over
	// the last ten seconds.
	DrainRate float64 `json:"drain_rate"`

	Sent    uint64 `json:"sent"`    // PUBLISHes written, resends included
	Resent  uint64 `json:"resent"`  // of which resends (DUP) after a reconnect
	Acked   uint64 `json:"acked"`   // stored messages acknowledged and deleted
	Dropped uint64 `json:"dropped"` // store drops (full, expired) and the uplink's own
	// Inflight is the number of PUBLISHes awaiting their PUBACK.
	Inflight int `json:"inflight"`

	// Subscriptions counts upstream filters acknowledged by the cloud on
	// the current connection.
	Subscriptions  int    `json:"subscriptions"`
	Received       uint64 `json:"received"`        // cloud messages brought down
	EchoSuppressed uint64 `json:"echo_suppressed"` // own messages coming back, dropped

	ConnectAttempts uint64 `json:"connect_attempts"`
	Connects        uint64 `json:"connects"` // CONNACKs accepted
	// Quarantined counts messages moved out of the queue because the cloud
	// broker kept closing the connection on them (quarantine_after).
	Quarantined uint64 `json:"quarantined"`
	// DiskFree is the free space on the store's filesystem at its last
	// write; RejectedDiskFull counts messages refused because it was below
	// store.min_free (not acknowledged to the device).
	DiskFree         int64  `json:"disk_free,omitempty"`
	RejectedDiskFull uint64 `json:"rejected_disk_full"`
}

var _ broker.Sink = (*Uplink)(nil)

// Uplink is the cloud bridge. Create it with New.
type Uplink struct {
	s       *settings
	q       store.Queue
	b       *broker.Broker
	bus     *hooks.Bus
	log     *slog.Logger
	agentID string
	dialer  Dialer
	now     func() time.Time
	rand    func() float64
	epoch   time.Time // monotonic base of the nanosecond clocks below
	met     counters

	subs subscriptions
	echo *echoCache
	ka   keepalive
	live chan *broker.Message // QoS 0 not stored, for the connected session

	mu          sync.Mutex // lifecycle
	started     bool
	stopped     bool
	cancel      context.CancelFunc
	cancelHooks func()
	runDone     chan struct{}
	sampleDone  chan struct{}
	grace       atomic.Int64 // graceful-stop budget, set by Stop
	cur         atomic.Pointer[conn]
	prev        []resend  // unacknowledged PUBLISHes of the last connection; run goroutine only
	prevOther   []uint16  // and the ids of its other unacknowledged packets
	suspect     suspicion // a possible poison message; run goroutine only
	qdir        string    // quarantine directory ("" = none)

	stMu      sync.Mutex
	state     State
	since     time.Time
	lastErr   string
	lastErrAt time.Time
	lastLog   string // last error logged at warn level

	connected    atomic.Bool
	rtt          atomic.Int64
	inflight     atomic.Int64
	activeSubs   atomic.Int64
	sent         atomic.Uint64
	resent       atomic.Uint64
	acked        atomic.Uint64
	dropped      atomic.Uint64
	received     atomic.Uint64
	echoed       atomic.Uint64
	attempts     atomic.Uint64
	connects     atomic.Uint64
	quarantinedN atomic.Uint64
	rate         *metrics.Rate
}

// New checks cfg and builds an uplink. It does no I/O: certificates are
// read at each connection attempt, so a rotated certificate is picked up
// on the next reconnect.
func New(cfg config.Uplink, deps Deps) (*Uplink, error) {
	if deps.Queue == nil {
		return nil, errors.New("uplink: no queue")
	}
	vars := agentVarsWithID{vars: deps.Vars, id: deps.AgentID}
	s, err := resolve(cfg, vars)
	if err != nil {
		return nil, err
	}
	u := &Uplink{
		s:       s,
		q:       deps.Queue,
		b:       deps.Broker,
		bus:     deps.Hooks,
		log:     deps.Logger,
		agentID: deps.AgentID,
		dialer:  deps.Dialer,
		qdir:    deps.QuarantineDir,
		now:     deps.Now,
		rand:    deps.Rand,
		epoch:   time.Now(),
		met:     newCounters(deps.Metrics),
		echo:    newEchoCache(s.echoWindow),
		live:    make(chan *broker.Message, 1024),
		state:   StateDisconnected,
		rate:    metrics.NewRate(11),
	}
	if u.log == nil {
		u.log = slog.New(slog.DiscardHandler)
	}
	u.log = u.log.With("component", "uplink", "server", s.server)
	if u.dialer == nil {
		u.dialer = &net.Dialer{KeepAlive: -1} // our own keepalive detects dead peers
	}
	if u.now == nil {
		u.now = time.Now
	}
	if u.rand == nil {
		u.rand = rand.Float64
	}
	u.since = u.now()
	u.subs.init()
	u.ka.init(s.keepalive, s.autoKeepalive)
	return u, nil
}

// agentVarsWithID answers agent.id from the agent id when Vars does not.
type agentVarsWithID struct {
	vars config.Vars
	id   string
}

func (v agentVarsWithID) Lookup(name string) (string, bool) {
	if v.vars != nil {
		if s, ok := v.vars.Lookup(name); ok {
			return s, true
		}
	}
	if name == "agent.id" && v.id != "" {
		return v.id, true
	}
	return "", false
}

// Start starts the connection loop and returns at once; the uplink keeps
// trying to reach the cloud until Stop. ctx bounds Start only.
func (u *Uplink) Start(ctx context.Context) error {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.stopped {
		return errors.New("uplink: start after stop")
	}
	if u.started {
		return errors.New("uplink: already started")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	u.started = true
	runCtx, cancel := context.WithCancel(context.Background())
	u.cancel = cancel
	if u.bus != nil && u.s.eventsTopic != "" {
		u.cancelHooks = u.bus.Subscribe("uplink", []hooks.Name{hooks.ClientConnected, hooks.ClientDisconnected}, 0, u.onEvent)
	}
	u.runDone = make(chan struct{})
	u.sampleDone = make(chan struct{})
	go u.run(runCtx)
	go u.sample(runCtx)
	return nil
}

// Stop publishes the retained "offline" status if connected, waits a
// little for outstanding PUBACKs, disconnects cleanly and waits for every
// goroutine. Unacknowledged messages stay in the queue. If ctx ends first
// the connection is closed hard and ctx's error returned. Stop is
// idempotent and safe without Start. Accept keeps storing after Stop.
func (u *Uplink) Stop(ctx context.Context) error {
	u.mu.Lock()
	if u.stopped {
		u.mu.Unlock()
		return nil
	}
	u.stopped = true
	cancel, cancelHooks := u.cancel, u.cancelHooks
	u.mu.Unlock()
	if cancelHooks != nil {
		cancelHooks() // events already queued are stored first
	}
	if cancel == nil {
		return nil
	}
	grace := u.s.pingTimeout
	if dl, ok := ctx.Deadline(); ok {
		grace = min(grace, time.Until(dl)*3/4)
	}
	u.grace.Store(int64(max(grace, 0)))
	cancel()
	var err error
	select {
	case <-u.runDone:
	case <-ctx.Done():
		err = ctx.Err()
		if c := u.cur.Load(); c != nil {
			c.nc.Close()
		}
		<-u.runDone
	}
	<-u.sampleDone
	u.setState(StateDisconnected)
	return err
}

// Accept is the broker.Sink: a device message matching a forward filter
// is stored durably before Accept returns; one matching none stays local
// and Accept returns nil. The queue's error (store.ErrFull under the
// block policy) is returned wrapped, so the device is told to retry. With
// store_qos0 = false a QoS 0 message is handed to the live connection,
// or dropped (counted) when there is none.
func (u *Uplink) Accept(m *broker.Message) error {
	if !u.s.forwards(m.Topic) {
		return nil
	}
	if m.QoS == 0 && !u.s.storeQoS0 {
		if u.connected.Load() {
			select {
			case u.live <- m:
				return nil
			default:
			}
		}
		u.drop(1)
		return nil
	}
	sm := &store.Message{
		Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain,
		Gateway: m.Gateway, ClientID: m.ClientID, Time: m.Time,
	}
	// Nobody was promised durability for QoS 0: queue it for the next group
	// commit without holding the device up for the fsync.
	if m.QoS == 0 {
		if nw, ok := u.q.(interface{ AppendNoWait(...*store.Message) error }); ok {
			if err := nw.AppendNoWait(sm); err != nil {
				return fmt.Errorf("uplink: %w", err)
			}
			return nil
		}
	}
	if err := u.q.Append(context.Background(), sm); err != nil {
		return fmt.Errorf("uplink: %w", err)
	}
	return nil
}

// QueueDepth is QueueMessages: what the API's charts sample each second,
// without the JSON round trip of the whole status.
func (s Status) QueueDepth() int64 { return s.QueueMessages }

// Status returns a snapshot.
func (u *Uplink) Status() Status {
	qs := u.q.Stats()
	u.stMu.Lock()
	st := Status{
		State: u.state, Since: u.since, LastError: u.lastErr, LastErrorAt: u.lastErrAt,
	}
	u.stMu.Unlock()
	st.Server = u.s.server
	st.ClientID = u.s.clientID
	st.Keepalive = config.Duration(u.ka.current())
	st.PingRTT = config.Duration(u.rtt.Load())
	st.QueueMessages, st.QueueBytes = qs.Messages, qs.Bytes
	if qs.Messages > 0 && !qs.Oldest.IsZero() {
		st.OldestAge = config.Duration(max(u.now().Sub(qs.Oldest), 0))
	}
	st.DrainRate = u.rate.PerSecond()
	st.Sent, st.Resent, st.Acked = u.sent.Load(), u.resent.Load(), u.acked.Load()
	st.Dropped = u.dropped.Load() + qs.DroppedFull + qs.DroppedOverload + qs.DroppedDiskFull + qs.Expired
	st.DiskFree, st.RejectedDiskFull = qs.DiskFree, qs.RejectedDiskFull
	st.Inflight = int(u.inflight.Load())
	st.Subscriptions = int(u.activeSubs.Load())
	st.Received, st.EchoSuppressed = u.received.Load(), u.echoed.Load()
	st.ConnectAttempts, st.Connects = u.attempts.Load(), u.connects.Load()
	st.Quarantined = u.quarantinedN.Load()
	return st
}

func (u *Uplink) setState(s State) {
	u.stMu.Lock()
	if u.state != s {
		u.state, u.since = s, u.now()
	}
	u.stMu.Unlock()
	u.connected.Store(s == StateConnected)
	if s == StateConnected {
		u.met.conns.Set(1)
	} else {
		u.met.conns.Set(0)
	}
}

// setError records err for Status and logs it, at warn level when it
// differs from the last one logged so a long outage does not flood the log.
func (u *Uplink) setError(err error) {
	if err == nil {
		return
	}
	msg := err.Error()
	u.stMu.Lock()
	u.lastErr, u.lastErrAt = msg, u.now()
	repeat := u.lastLog == msg
	u.lastLog = msg
	u.stMu.Unlock()
	if repeat {
		u.log.Debug("uplink error", "error", msg)
	} else {
		u.log.Warn("uplink error", "error", msg)
	}
}

func (u *Uplink) drop(n uint64) {
	u.dropped.Add(n)
	u.met.dropped.Add(n)
}

// mono is a monotonic clock in nanoseconds since New.
func (u *Uplink) mono() int64 { return int64(time.Since(u.epoch)) }

// sample feeds the drain rate once a second.
func (u *Uplink) sample(ctx context.Context) {
	defer close(u.sampleDone)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	u.rate.Sample(time.Now(), u.acked.Load())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			u.rate.Sample(now, u.acked.Load())
		}
	}
}

// counters are the metrics the uplink increments; nil-safe.
type counters struct {
	sent, acked, dropped, received, quarantined *metrics.Counter
	conns                                       *metrics.Gauge
}

func newCounters(s *metrics.Set) counters {
	if s == nil {
		return counters{new(metrics.Counter), new(metrics.Counter), new(metrics.Counter), new(metrics.Counter), new(metrics.Counter), new(metrics.Gauge)}
	}
	return counters{
		sent: s.Counter(metrics.MessagesSent), acked: s.Counter(metrics.MessagesAcked),
		dropped: s.Counter(metrics.MessagesDropped), received: s.Counter(metrics.MessagesReceived),
		quarantined: s.Counter("messages.quarantined"),
		conns:       s.Gauge(metrics.ConnectionsCount),
	}
}
