// Package jt808 is edgeway's JT/T 808 gateway: vehicle terminals of the
// 2013 and 2019 editions (detected per frame, mixed on one listener) over
// tcp and tls, registered and authenticated anonymously or through an
// HTTP registry, their messages published as EMQX's {header, body} JSON
// and JSON downlinks sent back with retransmission until the terminal
// answers.
//
// frame.go is the framing (delimiters, escaping, checksum, header),
// codec.go and messages.go the body layouts of every message id, auth.go
// the registry, channel.go the per-connection state machine. README.md
// documents the config, topics and JSON.
package jt808

import (
	"context"
	"net/http"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/agent/metrics"
)

func init() {
	gateway.Register(gateway.Kind{
		Name:        "jt808",
		Description: "JT/T 808-2013/2019 vehicle terminals over tcp and tls",
		Transports:  []string{"tcp", "tls"},
		NewConfig:   func() any { return DefaultConfig() },
		New:         newProto,
	})
}

// proto is one [gateway.jt808] instance.
type proto struct {
	gw   *gateway.Gateway
	spec atomic.Pointer[Config]
	regs registry

	loadOnce sync.Once
	loadErr  error
}

func newProto(gw *gateway.Gateway) (gateway.Protocol, error) {
	p := &proto{gw: gw}
	spec, _ := gw.Spec().(*Config)
	if spec == nil {
		spec = DefaultConfig()
	}
	p.spec.Store(spec)
	p.regs.path = p.registrationsFile(spec)
	return p, nil
}

// registrationsFile is where registrations are kept: the configured file,
// else registrations.json in the gateway's data directory, else nowhere
// (memory only, when the agent runs without a data_dir).
func (p *proto) registrationsFile(spec *Config) string {
	if f := spec.Proto.Auth.RegistrationsFile; f != "" {
		return f
	}
	if d := p.gw.DataDir(); d != "" {
		return filepath.Join(d, "registrations.json")
	}
	return ""
}

// Update implements gateway.Protocol: settings apply to connections
// accepted from now on; another registrations file needs a restart.
func (p *proto) Update(spec any) error {
	if s, ok := spec.(*Config); ok {
		if p.registrationsFile(s) != p.regs.path {
			return gateway.ErrRestartRequired
		}
		p.spec.Store(s)
	}
	return nil
}

func (p *proto) authClient(cfg *Config) *authClient {
	return &authClient{hc: &http.Client{Timeout: cfg.Proto.Auth.Timeout.D()}, retries: cfg.Proto.Auth.Retries,
		backoff: cfg.Proto.Auth.RetryInterval.D()}
}

// Serve implements gateway.Protocol.
func (p *proto) Serve(ctx context.Context, l *gateway.Listener) error {
	p.loadOnce.Do(func() { p.loadErr = p.regs.load(p.gw.Logger()) })
	if p.loadErr != nil {
		return p.loadErr
	}
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

// listenerMetrics are the hot counters of a gateway's and a listener's
// sets, looked up once per listener.
type listenerMetrics struct {
	sets    [2]*metrics.Set
	in, out [2]*metrics.Counter
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

// count bumps a counter that is not on the hot path (errors, drops).
func (m *listenerMetrics) count(name string) {
	m.sets[0].Counter(name).Inc()
	m.sets[1].Counter(name).Inc()
}
