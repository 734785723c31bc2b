// Package gbt32960 is edgeway's GB/T 32960 gateway: electric-vehicle
// terminals (GB/T 32960.3-2016 "##" and 2025 "$$" frames, told apart per
// frame) over tcp and tls listeners. A terminal's vehicle
// login authenticates it with its VIN as clientid and username; its
// reports are published as EMQX's JSON under the mountpoint
// (default gbt32960/${clientid}/) on upstream/…, and JSON commands
// published to dnstream become parameter query, setting and terminal
// control frames, retransmitted until the terminal answers.
//
// frame.go is the framing (start mark, BCC, limits), message.go,
// v2025.go and params.go the data units and their JSON, channel.go the per-connection
// state machine. README.md documents config, topics and formats.
package gbt32960

import (
	"context"
	"sync"
	"sync/atomic"

	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/agent/metrics"
)

func init() {
	gateway.Register(gateway.Kind{
		Name:              "gbt32960",
		Description:       "GB/T 32960 electric vehicle terminals over tcp and tls",
		Transports:        []string{"tcp", "tls"},
		DefaultMountpoint: DefaultMountpoint,
		NewConfig:         func() any { return DefaultConfig() },
		New:               newProto,
	})
}

// proto is one [gateway.gbt32960] instance.
type proto struct {
	gw   *gateway.Gateway
	spec atomic.Pointer[Config]
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

// Update implements gateway.Protocol: settings apply to connections
// accepted from now on.
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

// Commands counted by name: packets.<name>.received.
var upKinds = [...]struct {
	cmd  byte
	name string
}{
	{CmdVehicleLogin, "vlogin"},
	{CmdRealtime, "info"},
	{CmdReissue, "reinfo"},
	{CmdVehicleLogout, "vlogout"},
	{CmdPlatformLogin, "plogin"},
	{CmdPlatformLogout, "plogout"},
	{CmdHeartbeat, "heartbeat"},
	{CmdTimeCalibrate, "time_calibration"},
}

const (
	topicResponse    = "upstream/response"
	topicTransparent = "upstream/transparent"
	topicDown        = "dnstream"
)

// listenerMetrics are counters on the gateway's and the listener's sets.
type listenerMetrics struct {
	sets     [2]*metrics.Set
	in, out  [2]*metrics.Counter
	byCmd    [256][2]*metrics.Counter
	response [2]*metrics.Counter
	other    [2]*metrics.Counter
}

func newListenerMetrics(gw, l *metrics.Set) *listenerMetrics {
	m := &listenerMetrics{sets: [2]*metrics.Set{gw, l}}
	m.in = m.pair(metrics.PacketsReceived)
	m.out = m.pair(metrics.PacketsSent)
	for _, k := range upKinds {
		m.byCmd[k.cmd] = m.pair("packets." + k.name + ".received")
	}
	m.response = m.pair("packets.response.received")
	m.other = m.pair("packets.transparent.received")
	return m
}

func (m *listenerMetrics) pair(name string) [2]*metrics.Counter {
	return [2]*metrics.Counter{m.sets[0].Counter(name), m.sets[1].Counter(name)}
}

func inc(p [2]*metrics.Counter) {
	p[0].Inc()
	p[1].Inc()
}

// count bumps a counter off the hot path (errors, drops).
func (m *listenerMetrics) count(name string, n uint64) {
	for _, s := range m.sets {
		s.Counter(name).Add(n)
	}
}
