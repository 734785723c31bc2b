package store

import (
	"bytes"
	"encoding/hex"
	"errors"
	"strings"
	"testing"
	"time"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", "\n", "", "\t", "").Replace(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// codecCases is shared by encode, decode and the fuzz seeds.
var codecCases = []struct {
	name string
	m    Message
	hex  string
}{
	{
		name: "empty",
		m:    Message{},
		hex:  "01 00 0000000000000000 0000 00 0000",
	},
	{
		name: "qos1 with time",
		m: Message{Topic: "a/b", Payload: []byte("hi"), QoS: 1, Gateway: "mqttsn", ClientID: "c1",
			Time: time.Unix(0, 0x0102030405060708)},
		hex: "01 09 0102030405060708 0003 06 0002 612f62 6d717474736e 6331 6869",
	},
	{
		name: "qos2 retain, empty payload",
		m:    Message{Topic: "t", QoS: 2, Retain: true, Time: time.Unix(0, 0)},
		hex:  "01 0e 0000000000000000 0001 00 0000 74",
	},
	{
		name: "qos0 retain without time",
		m:    Message{Topic: "x", Payload: []byte{0, 0xff}, Retain: true},
		hex:  "01 04 0000000000000000 0001 00 0000 78 00ff",
	},
	{
		name: "negative time",
		m:    Message{Topic: "old", Time: time.Unix(0, -1)},
		hex:  "01 08 ffffffffffffffff 0003 00 0000 6f6c64",
	},
}

func TestEncode(t *testing.T) {
	for _, tc := range codecCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := appendValue(nil, &tc.m)
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, tc.hex); !bytes.Equal(got, want) {
				t.Fatalf("encode\n got %x\nwant %x", got, want)
			}
			if len(got) != encodedLen(&tc.m) {
				t.Fatalf("encodedLen %d, encoded %d", encodedLen(&tc.m), len(got))
			}
			// Size follows from the value's length alone.
			m := tc.m
			m.ID = makeID("0123456789abcdef", 4242)
			if got, want := msgSize(len(got), 16, 4242), m.Size(); got != want {
				t.Fatalf("msgSize %d, Message.Size %d", got, want)
			}
		})
	}
}

func TestDecode(t *testing.T) {
	for _, tc := range codecCases {
		t.Run(tc.name, func(t *testing.T) {
			var m Message
			if err := decodeValue(unhex(t, tc.hex), &m); err != nil {
				t.Fatal(err)
			}
			want := tc.m
			if len(want.Payload) == 0 {
				want.Payload = nil
			}
			if !m.Time.Equal(want.Time) || m.Time.IsZero() != want.Time.IsZero() {
				t.Fatalf("time %v, want %v", m.Time, want.Time)
			}
			m.Time, want.Time = time.Time{}, time.Time{}
			if m.Topic != want.Topic || !bytes.Equal(m.Payload, want.Payload) || m.QoS != want.QoS ||
				m.Retain != want.Retain || m.Gateway != want.Gateway || m.ClientID != want.ClientID {
				t.Fatalf("decoded %+v, want %+v", m, want)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	for _, tc := range []struct {
		name, hex, err string
	}{
		{"nothing", "", "shorter than"},
		{"short header", "01 00 0000000000000000 0000 00 00", "shorter than"},
		{"version 0", "00 00 0000000000000000 0000 00 0000", "unknown version 0"},
		{"version 2", "02 00 0000000000000000 0000 00 0000", "unknown version 2"},
		{"qos 3", "01 03 0000000000000000 0000 00 0000", "bad flags"},
		{"unknown flag", "01 10 0000000000000000 0000 00 0000", "bad flags"},
		{"time without flag", "01 00 0000000000000001 0000 00 0000", "time without its flag"},
		{"topic overruns", "01 00 0000000000000000 0002 00 0000 61", "overrun"},
		{"gateway overruns", "01 00 0000000000000000 0000 01 0000", "overrun"},
		{"clientid overruns", "01 00 0000000000000000 0000 00 ffff 6161", "overrun"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var m Message
			err := decodeValue(unhex(t, tc.hex), &m)
			if !errors.Is(err, errCorrupt) || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want errCorrupt with %q", err, tc.err)
			}
		})
	}
}

func TestEncodeRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		m    Message
		err  string
	}{
		{"qos 3", Message{QoS: 3}, "qos 3"},
		{"long topic", Message{Topic: strings.Repeat("t", 1<<16)}, "topic of 65536 bytes"},
		{"long gateway", Message{Gateway: strings.Repeat("g", 256)}, "gateway of 256 bytes"},
		{"long clientid", Message{ClientID: strings.Repeat("c", 1<<16)}, "clientid of 65536 bytes"},
		{"time", Message{Time: time.Date(2300, 1, 1, 0, 0, 0, 0, time.UTC)}, "out of range"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := appendValue(nil, &tc.m)
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Fatalf("error %v, want %q", err, tc.err)
			}
		})
	}
}

func TestKeys(t *testing.T) {
	for _, seq := range []uint64{0, 1, 255, 256, 1 << 40, ^uint64(0)} {
		k := msgKey(seq)
		if got, ok := seqOf(k); !ok || got != seq {
			t.Fatalf("seqOf(msgKey(%d)) = %d, %v", seq, got, ok)
		}
	}
	if bytes.Compare(msgKey(255), msgKey(256)) >= 0 || bytes.Compare(msgKey(1<<40), msgKey(1<<40+1)) >= 0 {
		t.Fatal("keys do not sort in seq order")
	}
	if _, ok := seqOf(keyHWM); ok {
		t.Fatal("a meta key parses as a message key")
	}
	for _, seq := range []uint64{0, 9, 10, 99, 100, 12345678901234567890} {
		if got, want := idLen(16, seq), len(makeID("0123456789abcdef", seq)); got != want {
			t.Fatalf("idLen(%d) = %d, want %d", seq, got, want)
		}
	}
}

// FuzzDecode: decode never panics, and whatever it accepts re-encodes to
// the same bytes (the encoding is canonical).
func FuzzDecode(f *testing.F) {
	for _, tc := range codecCases {
		f.Add(unhex(f, tc.hex))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m Message
		if err := decodeValue(b, &m); err != nil {
			if !errors.Is(err, errCorrupt) {
				t.Fatalf("error %v is not errCorrupt", err)
			}
			return
		}
		again, err := appendValue(nil, &m)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encode\n got %x\nwant %x", again, b)
		}
	})
}
