package mqttsn

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"strconv"
	"time"
)

// packetWriter is offered by packet listeners that can send to any
// address from their own socket, so ADVERTISE leaves from the port devices
// connect to.
type packetWriter interface {
	WriteTo(p []byte, addr net.Addr) (int, error)
}

func (p *proto) startAdvertiserLocked() {
	if p.advStop != nil || p.stopped || !p.cfg.Load().Broadcast {
		return
	}
	ctx, cancel := context.WithCancel(p.ctx)
	done := make(chan struct{})
	p.advStop, p.advDone = cancel, done
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		defer close(done)
		p.advertise(ctx)
	}()
}

// stopAdvertiserLocked cancels the advertiser; it does not wait, since
// the advertiser takes p.mu each round (Stop waits through p.wg).
func (p *proto) stopAdvertiserLocked() {
	if p.advStop != nil {
		p.advStop()
		p.advStop, p.advDone = nil, nil
	}
}

func (p *proto) restartAdvertiserLocked() {
	p.stopAdvertiserLocked()
	if len(p.udps) > 0 || len(p.buses) > 0 {
		p.startAdvertiserLocked()
	}
}

// advertise sends ADVERTISE at once and then every advertise_interval:
// to broadcast_address from every udp listener, and to the broadcast node
// of every serial bus.
func (p *proto) advertise(ctx context.Context) {
	cfg := p.cfg.Load()
	every := cfg.AdvertiseInterval.D()
	m := &Message{Type: TypeAdvertise, GwID: byte(cfg.GatewayID), Duration: uint16(every / time.Second)}
	msg, _ := m.Append(nil)
	var own *net.UDPConn
	defer func() {
		if own != nil {
			own.Close()
		}
	}()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		dst, err := net.ResolveUDPAddr("udp", cfg.BroadcastAddress)
		if err != nil {
			p.log.Warn("advertise: bad broadcast_address", "address", cfg.BroadcastAddress, "error", err)
		}
		p.mu.Lock()
		var writers []packetWriter
		needOwn := false
		for l := range p.udps {
			if w, ok := l.Transport().(packetWriter); ok {
				writers = append(writers, w)
			} else {
				needOwn = true
			}
		}
		buses := make([]*busLink, 0, len(p.buses))
		for b := range p.buses {
			buses = append(buses, b)
		}
		p.mu.Unlock()
		if dst != nil {
			for _, w := range writers {
				if _, err := w.WriteTo(msg, dst); err == nil {
					p.m.advertise.Inc()
				}
			}
			if needOwn {
				if own == nil {
					own, _ = net.ListenUDP("udp", nil)
				}
				if own != nil {
					if _, err := own.WriteTo(msg, dst); err == nil {
						p.m.advertise.Inc()
					} else {
						p.log.Debug("advertise failed", "address", dst, "error", err)
					}
				}
			}
		}
		for _, b := range buses {
			r := route{}
			if b.opts.Framing == FramingSLIP {
				r.node = broadcastNode
			}
			if b.send(r, msg) == nil {
				p.m.advertise.Inc()
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func randomClientID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "mqttsn-" + hex.EncodeToString(b[:])
}

func itoa(n int) string { return strconv.Itoa(n) }

func hexString(s string) string { return hex.EncodeToString([]byte(s)) }
