// Package coap is edgeway's CoAP gateway (RFC 7252, Observe RFC 7641,
// Block-wise RFC 7959) over udp and dtls listeners, compatible with EMQX's
// CoAP gateway: /ps/{topic} publishes and observes, /mqtt/connection opens
// token-protected connections that survive NAT rebinding and new DTLS
// sessions.
//
// codec.go is the strict message codec, endpoint.go the per-peer exchange
// layer (dedup, CON retransmission, ACK/RST matching), channel.go the
// request handlers, session.go a client's observe relations and
// notification queues, api.go the request-to-device API. README.md
// documents the config, URIs, query keys and metrics.
package coap

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"sync"
	"sync/atomic"

	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/agent/metrics"
)

func init() {
	gateway.Register(gateway.Kind{
		Name:        "coap",
		Description: "CoAP (RFC 7252, 7641, 7959) pub/sub over udp and dtls",
		Transports:  []string{"udp", "dtls"},
		NewConfig:   func() any { return DefaultConfig() },
		New:         newProto,
	})
}

// instances maps a *gateway.Gateway to its proto for the API.
var instances sync.Map

// proto is one [gateway.coap] instance.
type proto struct {
	gw   *gateway.Gateway
	spec atomic.Pointer[Config]
	mid  atomic.Uint32 // message IDs of everything this instance sends

	asmBytes atomic.Int64 // bytes held in partial Block1 bodies

	mu       sync.Mutex
	sessions map[string]*session // connection mode, by clientid

	byClient sync.Map // *gateway.Client → *session, for the API

	pendMu  sync.Mutex
	pending map[uint16]*outCON // CONs sent, waiting for ACK/RST, by MID
}

func newProto(gw *gateway.Gateway) (gateway.Protocol, error) {
	p := &proto{gw: gw, sessions: map[string]*session{}, pending: map[uint16]*outCON{}}
	spec, _ := gw.Spec().(*Config)
	if spec == nil {
		spec = DefaultConfig()
	}
	p.spec.Store(spec)
	var b [2]byte
	_, _ = rand.Read(b[:])
	p.mid.Store(uint32(b[0])<<8 | uint32(b[1]))
	instances.Store(gw, p)
	return p, nil
}

// Update implements gateway.Protocol: settings apply to the next request
// or notification.
func (p *proto) Update(spec any) error {
	if s, ok := spec.(*Config); ok {
		p.spec.Store(s)
	}
	return nil
}

// Stop implements gateway.Stopper.
func (p *proto) Stop(context.Context) error {
	instances.Delete(p.gw)
	p.pendMu.Lock()
	for mid, o := range p.pending {
		o.timer.Stop()
		delete(p.pending, mid)
	}
	p.pendMu.Unlock()
	return nil
}

func (p *proto) nextMID() uint16 { return uint16(p.mid.Add(1)) }

// Serve implements gateway.Protocol: one endpoint per accepted Conn (a
// udp peer or a dtls session).
func (p *proto) Serve(ctx context.Context, l *gateway.Listener) error {
	m := newListenerMetrics(p.gw.Metrics(), l.Metrics())
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
		ep := newEndpoint(p, l, c, m)
		wg.Add(1)
		go func() {
			defer wg.Done()
			ep.serve(ctx)
		}()
	}
}

// listenerMetrics are the counters bumped on the gateway's and the
// listener's sets.
type listenerMetrics struct {
	sets [2]*metrics.Set
	in   [2]*metrics.Counter
	out  [2]*metrics.Counter
}

func newListenerMetrics(gw, l *metrics.Set) *listenerMetrics {
	m := &listenerMetrics{sets: [2]*metrics.Set{gw, l}}
	m.in = [2]*metrics.Counter{gw.Counter(metrics.PacketsReceived), l.Counter(metrics.PacketsReceived)}
	m.out = [2]*metrics.Counter{gw.Counter(metrics.PacketsSent), l.Counter(metrics.PacketsSent)}
	return m
}

func inc(p [2]*metrics.Counter) {
	p[0].Inc()
	p[1].Inc()
}

// count bumps a counter that is not on the hot path.
func (m *listenerMetrics) count(name string) {
	m.sets[0].Counter(name).Inc()
	m.sets[1].Counter(name).Inc()
}

// randomToken is a connection token: 128 bits from crypto/rand, hex.
func randomToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "coap-" + hex.EncodeToString(b[:])
}
