package benchkit

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

// FloodTarget is one gateway under a malformed flood.
type FloodTarget struct {
	// Proto is the generator name of the gateway's protocol: mqttsn,
	// coap, lwm2m (udp); stomp, jt808, gbt32960 (tcp).
	Proto string
	Addr  string
	// Frames are seeds and fuzz-corpus entries; each is mutated (Mutate)
	// before it is sent.
	Frames [][]byte
	// Content (lwm2m only) are Send bodies (SenML CBOR or JSON), mutated
	// and sent in CON POST /dp from registered endpoints.
	Content [][]byte
	// Rate caps frames per second (0 = as fast as the workers go).
	Rate int
}

// FloodStats is what a flood did to one gateway.
type FloodStats struct {
	Frames  atomic.Int64 // datagrams or frames written
	Conns   atomic.Int64 // tcp connections (and lwm2m registrations) made
	Refused atomic.Int64 // lwm2m Sends answered 4.xx (content refused)
	Changed atomic.Int64 // lwm2m Sends answered 2.04 (mutant still decoded)
}

// Flood sends mutated frames to every target until ctx ends, and waits
// for its workers once ctx ends (call the returned wait). UDP gateways
// get datagrams from four sockets. STOMP gets connections that send a bad
// frame, after a CONNECT or not, and read until the server closes. JT/T
// 808 and GB/T 32960 get two kinds of connection: anonymous ones that
// write a few frames and close, and terminals logged in as the bench
// generator does (a registered, authenticated phone; a logged-in VIN)
// that stream frames rewritten to their own phone or VIN with the check
// code recomputed for two thirds of them, so the bytes get past the
// framing into the message decoders. LwM2M gets raw datagrams and
// registered endpoints sending mutated Send bodies. Devices of the
// logged-in kinds are numbered from 3 000 000 000 up, out of the way of
// any load's.
func Flood(ctx context.Context, targets []FloodTarget) (stats map[string]*FloodStats, wait func()) {
	stats = map[string]*FloodStats{}
	var wg sync.WaitGroup
	for ti, t := range targets {
		st := &FloodStats{}
		stats[t.Proto] = st
		if t.Addr == "" || len(t.Frames) == 0 {
			continue
		}
		workers := 4
		go1 := func(f func(w int, r *rand.Rand, p *pacer)) {
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					f(w, rand.New(rand.NewPCG(uint64(ti), uint64(w))), newPacer(t.Rate, workers))
				}()
			}
		}
		switch t.Proto {
		case "mqttsn", "coap":
			go1(func(_ int, r *rand.Rand, p *pacer) { floodUDP(ctx, t, st, r, p) })
		case "lwm2m":
			go1(func(w int, r *rand.Rand, p *pacer) {
				if w%2 == 0 || len(t.Content) == 0 {
					floodUDP(ctx, t, st, r, p)
				} else {
					floodLwM2MSend(ctx, t, st, r, p, floodDev+uint32(w))
				}
			})
		case "stomp":
			go1(func(_ int, r *rand.Rand, p *pacer) { floodSTOMP(ctx, t, st, r, p) })
		case "jt808", "gbt32960":
			go1(func(w int, r *rand.Rand, p *pacer) {
				if w%2 == 0 {
					floodTCP(ctx, t, st, r, p)
				} else {
					floodLoggedIn(ctx, t, st, r, p, floodDev+uint32(w))
				}
			})
		}
	}
	return stats, wg.Wait
}

// floodDev numbers the flood's own terminals and endpoints.
const floodDev = 3_000_000_000

// pacer spaces one worker's frames to its share of a rate, catching up
// at most 100 ms when it falls behind.
type pacer struct {
	per  time.Duration
	next time.Time
}

func newPacer(rate, workers int) *pacer {
	if rate <= 0 {
		return &pacer{}
	}
	return &pacer{per: time.Second * time.Duration(workers) / time.Duration(rate), next: time.Now()}
}

// wait returns false once ctx ends.
func (p *pacer) wait(ctx context.Context) bool {
	if p.per == 0 {
		return ctx.Err() == nil
	}
	now := time.Now()
	if lag := now.Sub(p.next); lag > 100*time.Millisecond {
		p.next = now.Add(-100 * time.Millisecond)
	}
	p.next = p.next.Add(p.per)
	if d := p.next.Sub(now); d > time.Millisecond {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return false
		}
	}
	return ctx.Err() == nil
}

func pick(r *rand.Rand, frames [][]byte) []byte { return frames[r.IntN(len(frames))] }

func floodUDP(ctx context.Context, t FloodTarget, st *FloodStats, r *rand.Rand, p *pacer) {
	c, err := net.Dial("udp", t.Addr)
	if err != nil {
		return
	}
	defer c.Close()
	// Answers (RST, 4.xx, DISCONNECT) are read and dropped, so the
	// socket's queue does not fill.
	go func() { _, _ = io.Copy(io.Discard, c) }()
	for p.wait(ctx) {
		_, _ = c.Write(Mutate(r, pick(r, t.Frames)))
		st.Frames.Add(1)
	}
}

func floodSTOMP(ctx context.Context, t FloodTarget, st *FloodStats, r *rand.Rand, p *pacer) {
	for p.wait(ctx) {
		c, err := net.DialTimeout("tcp", t.Addr, time.Second)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		st.Conns.Add(1)
		stop := context.AfterFunc(ctx, func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		w := bufio.NewWriter(c)
		if r.IntN(3) > 0 {
			w.WriteString("CONNECT\naccept-version:1.2\nhost:x\n\n\x00")
		}
		w.Write(Mutate(r, pick(r, t.Frames)))
		if r.IntN(2) == 0 {
			w.WriteString("\x00\n") // ends a frame the mutation cut short
		}
		_ = w.Flush()
		st.Frames.Add(1)
		// EOF: the server answers what it has and closes, rather than
		// wait for the rest of a truncated frame.
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, c)
		stop()
		c.Close()
	}
}

// floodTCP writes up to 8 frames on a fresh anonymous connection, half
// of them with repaired check codes, then half-closes and reads what the
// gateway says until it closes.
func floodTCP(ctx context.Context, t FloodTarget, st *FloodStats, r *rand.Rand, p *pacer) {
	for ctx.Err() == nil {
		c, err := net.DialTimeout("tcp", t.Addr, time.Second)
		if err != nil {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		st.Conns.Add(1)
		stop := context.AfterFunc(ctx, func() { c.Close() })
		_ = c.SetDeadline(time.Now().Add(2 * time.Second))
		for range r.IntN(8) + 1 {
			if !p.wait(ctx) {
				break
			}
			if _, err := c.Write(floodFrame(t.Proto, r, pick(r, t.Frames), nil)); err != nil {
				break
			}
			st.Frames.Add(1)
		}
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
		}
		_, _ = io.Copy(io.Discard, c)
		stop()
		c.Close()
	}
}

// floodLoggedIn logs a terminal in as the generator does and streams
// frames on its connection until the gateway closes it, then again.
func floodLoggedIn(ctx context.Context, t FloodTarget, st *FloodStats, r *rand.Rand, p *pacer, dev uint32) {
	var (
		g  Generator
		id []byte
	)
	switch t.Proto {
	case "jt808":
		g = &jt808Gen{Target{Addr: t.Addr, QoS: 0}.withDefaults()} // QoS 0: answers drained
		ph := jtPhone(dev)
		id = make([]byte, 6)
		for i := range id {
			id[i] = (ph[2*i]-'0')<<4 | (ph[2*i+1] - '0')
		}
	case "gbt32960":
		g = &gbtGen{Target{Addr: t.Addr}.withDefaults()}
		id = []byte(gbtVIN(dev))
	}
	for ctx.Err() == nil {
		d, err := g.Dial(ctx, dev)
		if err != nil {
			if sleepCtx(ctx, 50*time.Millisecond) != nil {
				return
			}
			continue
		}
		st.Conns.Add(1)
		var c net.Conn
		switch d := d.(type) {
		case *jtDevice:
			c = d.c
		case *gbtDevice:
			c = d.c
			go func() { _, _ = io.Copy(io.Discard, c) }()
		}
		for p.wait(ctx) {
			_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write(floodFrame(t.Proto, r, pick(r, t.Frames), id)); err != nil {
				break
			}
			st.Frames.Add(1)
		}
		c.Close()
		d.Close()
	}
}

// floodFrame mutates seed and, two times in three, repairs what the
// framing checks: for JT/T 808 the escapes, the body length (half the
// time), the phone (when id is set) and the XOR code; for GB/T 32960
// the data length (half the time), the VIN (when id is set) and the BCC.
func floodFrame(proto string, r *rand.Rand, seed, id []byte) []byte {
	b := Mutate(r, seed)
	if r.IntN(3) == 0 {
		return b
	}
	switch proto {
	case "jt808":
		return jtRepair(r, b, id)
	case "gbt32960":
		return gbtRepair(r, b, id)
	}
	return b
}

func jtRepair(r *rand.Rand, b, phone []byte) []byte {
	i, j := bytes.IndexByte(b, 0x7e), bytes.LastIndexByte(b, 0x7e)
	if i < 0 || j-i < 2 {
		return b
	}
	var u []byte
	for k := i + 1; k < j; k++ {
		c := b[k]
		if c == 0x7d && k+1 < j && (b[k+1] == 1 || b[k+1] == 2) {
			k++
			c = 0x7c + b[k]
		}
		u = append(u, c)
	}
	if len(u) < 13 {
		return b
	}
	props := binary.BigEndian.Uint16(u[2:])
	hl, ph := 12, 4
	if props&(1<<14) != 0 {
		hl, ph = 17, 9 // 2019: version byte, BCD[10] phone (ours in its last 6)
	}
	if props&(1<<13) != 0 {
		hl += 4
	}
	if len(u) >= hl+1 { // else only the check code
		if phone != nil {
			copy(u[ph:ph+6], phone)
		}
		if r.IntN(2) == 0 {
			props = props&^0x3ff | uint16(len(u)-1-hl)&0x3ff
			binary.BigEndian.PutUint16(u[2:], props)
		}
	}
	var cs byte
	for _, c := range u[:len(u)-1] {
		cs ^= c
	}
	u[len(u)-1] = cs
	out := []byte{0x7e}
	for _, c := range u {
		switch c {
		case 0x7e:
			out = append(out, 0x7d, 0x02)
		case 0x7d:
			out = append(out, 0x7d, 0x01)
		default:
			out = append(out, c)
		}
	}
	return append(out, 0x7e)
}

func gbtRepair(r *rand.Rand, b, vin []byte) []byte {
	i := bytes.Index(b, []byte("##"))
	if i < 0 || len(b)-i < 25 {
		return b
	}
	f := b[i:]
	if vin != nil {
		copy(f[4:21], vin)
	}
	if r.IntN(2) == 0 {
		binary.BigEndian.PutUint16(f[22:], uint16(len(f)-25))
	}
	var x byte
	for _, c := range f[2 : len(f)-1] {
		x ^= c
	}
	f[len(f)-1] = x
	return f
}

// floodLwM2MSend registers endpoint dev and sends mutated Send bodies in
// CON POST /dp, alternating SenML CBOR and SenML JSON content formats;
// it counts the answers.
func floodLwM2MSend(ctx context.Context, t FloodTarget, st *FloodStats, r *rand.Rand, p *pacer, dev uint32) {
	g := &lwm2mGen{Target{Addr: t.Addr, Timeout: 2 * time.Second, KeepAlive: time.Hour}.withDefaults()}
	for ctx.Err() == nil {
		dv, err := g.Dial(ctx, dev)
		if err != nil {
			if sleepCtx(ctx, 50*time.Millisecond) != nil {
				return
			}
			continue
		}
		st.Conns.Add(1)
		d := dv.(*lwDevice)
		for p.wait(ctx) {
			cf := message.AppSenmlCbor
			if r.IntN(2) == 0 {
				cf = message.AppSenmlJSON
			}
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			resp, err := d.c.Post(rctx, "/dp", cf, bytes.NewReader(Mutate(r, pick(r, t.Content))))
			cancel()
			st.Frames.Add(1)
			if err != nil {
				break
			}
			switch c := resp.Code(); {
			case c == codes.Changed:
				st.Changed.Add(1)
			case c >= codes.BadRequest:
				st.Refused.Add(1)
			}
		}
		_ = d.c.Close()
	}
}
