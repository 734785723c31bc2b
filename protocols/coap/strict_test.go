package coap_test

import (
	"encoding/hex"
	"testing"

	"github.com/edgeway/edgeway/protocols/coap"
)

// TestRFC7252Strictness sends malformed and unusual datagrams and checks
// the exact answer, as EMQX's t_invalid_* cases do.
func TestRFC7252Strictness(t *testing.T) {
	e := newEnv(t, conf(""))
	cases := []struct {
		name     string
		hex      string
		wantType uint8
		wantCode uint8
		none     bool
	}{
		{"bad TKL gets RST", "490101aa", coap.RST, 0, false},
		{"unknown version is ignored", "800101aa", 0, 0, true},
		{"ping gets RST", "400001ab", coap.RST, 0, false},
		{"empty payload marker gets RST", "420201ac7474b27073ff", coap.RST, 0, false},
		{"unknown critical option gets 4.02", "420101ad74749170", coap.ACK, code(4, 2), false},
		{"duplicate critical option gets 4.02", "420101ae747431610161", coap.ACK, code(4, 2), false},
		{"If-None-Match with a value gets 4.02", "420101af74745101", coap.ACK, code(4, 2), false},
		{"unknown method gets 4.05", "420701b07474b27073", coap.ACK, code(4, 5), false},
		{"unknown path gets 4.04", "420201b17474b3666f6f", coap.ACK, code(4, 4), false},
		{"invalid block SZX gets 4.00", "420201b27474b270730161d1030f", coap.ACK, code(4, 0), false},
		{"reserved class on NON is ignored", "5220 01b37474b27073", 0, 0, true},
		{"reserved class on CON gets RST", "422001b47474b27073", coap.RST, 0, false},
		{"empty NON is ignored", "500001b5", 0, 0, true},
	}
	r := dialRaw(t, e.udp())
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b, err := hex.DecodeString(stripSpaces(c.hex))
			if err != nil {
				t.Fatal(err)
			}
			r.sendBytes(b)
			// a probe after each case: its answer is the first datagram when
			// the case itself is ignored
			probe := r.req(coap.CON, 9, "pr", "/ps/x") // 0.09 is not a method
			r.send(probe)
			got := r.recv()
			if c.none {
				if got.MID != probe.MID {
					t.Fatalf("got %+v, want no answer", got)
				}
				return
			}
			if got.MID != uint16(b[2])<<8|uint16(b[3]) || got.Type != c.wantType || got.Code != c.wantCode {
				t.Fatalf("got type %d code %d.%02d mid %x, want type %d code %d.%02d", got.Type, got.Code>>5, got.Code&31, got.MID, c.wantType, c.wantCode>>5, c.wantCode&31)
			}
			if p := r.recv(); p.MID != probe.MID || p.Code != code(4, 5) {
				t.Fatalf("probe answer %+v", p)
			}
		})
	}
}

func stripSpaces(s string) string {
	out := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != ' ' {
			out = append(out, s[i])
		}
	}
	return string(out)
}

// TestDuplicateMID: a retransmitted CON is answered from the cache and
// published once.
func TestDuplicateMID(t *testing.T) {
	e := newEnv(t, conf(""))
	s := e.subscribe("dup", 0)
	r := dialRaw(t, e.udp())
	m := r.req(coap.CON, 2, "d1", "/ps/dup", "c=dupdev")
	m.Payload = []byte("once")
	first := r.roundTrip(m)
	second := r.roundTrip(m)
	if first.Code != code(2, 4) || second.MID != first.MID || second.Code != first.Code || string(second.Token) != "d1" {
		t.Fatalf("first %+v second %+v", first, second)
	}
	s.next(t)
	m2 := r.req(coap.CON, 2, "d2", "/ps/dup", "c=dupdev")
	m2.Payload = []byte("next")
	r.roundTrip(m2)
	if d := s.next(t); string(d.Msg.Payload) != "next" {
		t.Fatalf("duplicate was published twice: got %q", d.Msg.Payload)
	}
	if e.counter("packets.duplicate") != 1 {
		t.Fatalf("duplicates %v", e.counter("packets.duplicate"))
	}
}
