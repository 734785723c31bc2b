package benchkit

import (
	"bytes"
	"context"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

// The seeds that are meant to be valid are, so that mutants start close
// to what the decoders accept.
func TestFloodSeeds(t *testing.T) {
	for i, b := range LwM2MSeeds[:4] {
		m := pool.NewMessage(context.Background())
		if _, err := m.UnmarshalWithDecoder(coder.DefaultCoder, b); err != nil {
			t.Errorf("lwm2m seed %d: %v", i, err)
		}
	}
	for i, b := range JT808Seeds[:10] {
		if _, ok := jtUnescape(nil, b[1:len(b)-1]); !ok {
			t.Errorf("jt808 seed %d: bad check code", i)
		}
	}
	for i, b := range GBT32960Seeds {
		var x byte
		for _, c := range b[2:] {
			x ^= c
		}
		if x != 0 || int(b[22])<<8|int(b[23]) != len(b)-25 {
			t.Errorf("gbt32960 seed %d: bad BCC or length", i)
		}
	}
}

// Repaired mutants pass the framing checks: the JT/T 808 XOR code, the
// GB/T 32960 BCC, and carry the terminal's own phone or VIN.
func TestFloodRepair(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	phone := []byte{0, 0, 0, 0, 0, 0x42}
	for range 2000 {
		b := jtRepair(r, Mutate(r, pick(r, JT808Seeds)), phone)
		if len(b) < 3 || b[0] != 0x7e || b[len(b)-1] != 0x7e || bytes.IndexByte(b[1:len(b)-1], 0x7e) >= 0 {
			continue // left as is: not a frame any more
		}
		u, ok := jtUnescape(nil, b[1:len(b)-1])
		if !ok && len(u) >= 13 {
			t.Fatalf("repaired frame % x fails its check code", b)
		}
		if ok && u[2]&0x40 == 0 && !bytes.Equal(u[4:10], phone) {
			t.Fatalf("repaired frame % x keeps another phone", b)
		}
	}
	vin := []byte(gbtVIN(floodDev))
	for range 2000 {
		b := gbtRepair(r, Mutate(r, pick(r, GBT32960Seeds)), vin)
		if len(b) < 25 || string(b[:2]) != "##" {
			continue
		}
		var x byte
		for _, c := range b[2:] {
			x ^= c
		}
		if x != 0 || !bytes.Equal(b[4:21], vin) {
			t.Fatalf("repaired frame % x: BCC or VIN wrong", b)
		}
	}
}

// Flood paces a udp target to its rate and stops with its context.
func TestFloodRate(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	st, wait := Flood(ctx, []FloodTarget{{Proto: "coap", Addr: pc.LocalAddr().String(), Frames: CoAPSeeds, Rate: 2000}})
	time.Sleep(500 * time.Millisecond)
	cancel()
	wait()
	if n := st["coap"].Frames.Load(); n < 500 || n > 1300 {
		t.Fatalf("%d datagrams in 0.5 s at 2000/s", n)
	}
}
