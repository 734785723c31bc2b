// Package stomp is edgeway's STOMP gateway: STOMP 1.0, 1.1 and 1.2 clients
// over tcp and tls listeners, mapped onto the local broker. A destination
// is an MQTT topic (subscriptions take MQTT filters, shared ones
// included), and the ack modes client and client-individual hold messages
// until the client acknowledges them, redelivering what it NACKs or leaves
// unacknowledged when it goes.
//
// frame.go is the codec, channel.go the per-connection state machine,
// ack.go the subscriptions and their windows, transaction.go BEGIN/COMMIT.
// README.md documents the config, the metrics and the wire behaviour.
package stomp

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/agent/metrics"
)

func init() {
	gateway.Register(gateway.Kind{
		Name:         "stomp",
		Description:  "STOMP 1.0/1.1/1.2 over tcp and tls",
		Transports:   []string{"tcp", "tls"},
		DefaultBinds: map[string]string{"tcp": "61613", "tls": "61614"},
		NewConfig:    func() any { return DefaultConfig() },
		New:          newProto,
	})
}

// proto is one [gateway.stomp] instance.
type proto struct {
	gw   *gateway.Gateway
	spec atomic.Pointer[Config]
	redo redeliveries
}

func newProto(gw *gateway.Gateway) (gateway.Protocol, error) {
	p := &proto{gw: gw}
	spec, _ := gw.Spec().(*Config)
	if spec == nil {
		spec = DefaultConfig()
	}
	p.spec.Store(spec)
	return p, nil
}

// Update implements gateway.Protocol: every setting applies to
// connections accepted from now on; open ones keep what they started with.
func (p *proto) Update(spec any) error {
	if s, ok := spec.(*Config); ok {
		p.spec.Store(s)
	}
	return nil
}

// Serve implements gateway.Protocol.
func (p *proto) Serve(ctx context.Context, l *gateway.Listener) error {
	m := newListenerMetrics(p.gw.Metrics(), l.Metrics())
	log := l.Logger()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := l.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		ch := newChannel(p, l, c, m, log)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch.serve(ctx)
		}()
	}
}

// listenerMetrics are the counters a channel bumps on its gateway's and
// its listener's sets, looked up once per listener.
type listenerMetrics struct {
	sets   [2]*metrics.Set
	in     [2]*metrics.Counter
	out    [2]*metrics.Counter
	cmdIn  map[string][2]*metrics.Counter
	cmdOut map[string][2]*metrics.Counter
	hbIn   [2]*metrics.Counter
	hbOut  [2]*metrics.Counter
}

func newListenerMetrics(gw, l *metrics.Set) *listenerMetrics {
	m := &listenerMetrics{sets: [2]*metrics.Set{gw, l}, cmdIn: map[string][2]*metrics.Counter{}, cmdOut: map[string][2]*metrics.Counter{}}
	m.in = m.pair(metrics.PacketsReceived)
	m.out = m.pair(metrics.PacketsSent)
	m.hbIn = m.pair("packets.heartbeat.received")
	m.hbOut = m.pair("packets.heartbeat.sent")
	for _, c := range []string{CmdConnect, CmdStomp, CmdSend, CmdSubscribe, CmdUnsubscribe, CmdAck, CmdNack, CmdBegin, CmdCommit, CmdAbort, CmdDisconnect} {
		m.cmdIn[c] = m.pair("packets." + lower(c) + ".received")
	}
	for _, c := range []string{CmdConnected, CmdMessage, CmdReceipt, CmdError} {
		m.cmdOut[c] = m.pair("packets." + lower(c) + ".sent")
	}
	return m
}

func (m *listenerMetrics) pair(name string) [2]*metrics.Counter {
	return [2]*metrics.Counter{m.sets[0].Counter(name), m.sets[1].Counter(name)}
}

func inc(p [2]*metrics.Counter) {
	p[0].Inc()
	p[1].Inc()
}

// count bumps a counter that is not on the hot path (errors, drops).
func (m *listenerMetrics) count(name string) {
	m.sets[0].Counter(name).Inc()
	m.sets[1].Counter(name).Inc()
}

func lower(s string) string {
	b := []byte(s)
	for i, c := range b {
		if c >= 'A' && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// redeliveries remembers the shared-subscription messages a STOMP client
// left unacknowledged when it went: the broker hands them to another
// member of the group as fresh deliveries, and this is how the member
// that gets one knows to mark it `redelivered:true`.
type redeliveries struct {
	n  atomic.Int64 // entries; lets Deliver skip the lock when empty
	mu sync.Mutex
	m  map[redoKey]time.Time
}

type redoKey struct {
	msg           uint64
	group, filter string // mounted; the same message may match several groups
}

// redoRetention bounds how long a left message is remembered; one that
// has not reached another member by then went elsewhere (an MQTT client,
// or dropped) and needs no marking.
const (
	redoRetention = 10 * time.Minute
	redoMax       = 1 << 16
)

func (r *redeliveries) add(keys []redoKey) {
	if len(keys) == 0 {
		return
	}
	now := time.Now()
	r.mu.Lock()
	if r.m == nil {
		r.m = map[redoKey]time.Time{}
	}
	if len(r.m)+len(keys) > redoMax {
		for k, t := range r.m {
			if now.Sub(t) > redoRetention || len(r.m)+len(keys) > redoMax {
				delete(r.m, k)
			}
		}
	}
	for _, k := range keys {
		r.m[k] = now
	}
	r.n.Store(int64(len(r.m)))
	r.mu.Unlock()
}

// take reports (and forgets) whether k was left unacknowledged.
func (r *redeliveries) take(k redoKey) bool {
	if r.n.Load() == 0 {
		return false
	}
	r.mu.Lock()
	t, ok := r.m[k]
	if ok {
		delete(r.m, k)
		r.n.Store(int64(len(r.m)))
	}
	r.mu.Unlock()
	return ok && time.Since(t) <= redoRetention
}
