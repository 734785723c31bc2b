package coap_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/udp/coder"

	"github.com/edgeway/edgeway/protocols/coap"
)

// codecCases is the one table of byte-level cases: those with a Message
// encode to exactly their bytes and decode back; those with an error are
// what Decode must refuse.
var codecCases = []struct {
	name string
	hex  string
	msg  *coap.Message
	err  error
}{
	{"empty ack", "60000001", &coap.Message{Type: coap.ACK, MID: 1}, nil},
	{"rst", "70001234", &coap.Message{Type: coap.RST, MID: 0x1234}, nil},
	{"get with token and path", "4201abcd7470b270730161", &coap.Message{Type: coap.CON, Code: 1, MID: 0xabcd, Token: []byte("tp"),
		Options: []coap.Option{{ID: 11, Value: []byte("ps")}, {ID: 11, Value: []byte("a")}}}, nil},
	{"post with query and payload", "5102000778b2707346633d64657631ff6869", &coap.Message{Type: coap.NON, Code: 2, MID: 7, Token: []byte("x"),
		Options: []coap.Option{{ID: 11, Value: []byte("ps")}, {ID: 15, Value: []byte("c=dev1")}}, Payload: []byte("hi")}, nil},
	{"observe 0 then extended delta 13", "410100016160d10903", &coap.Message{Type: coap.CON, Code: 1, MID: 1, Token: []byte("a"),
		Options: []coap.Option{{ID: 6}, {ID: 28, Value: []byte{3}}}}, nil},
	{"extended delta 13 (No-Response 258)", "40020001d1f500", &coap.Message{Type: coap.CON, Code: 2, MID: 1,
		Options: []coap.Option{{ID: 258, Value: []byte{0}}}}, nil},
	{"extended delta 14, unknown elective 270 kept", "40020001e00001", &coap.Message{Type: coap.CON, Code: 2, MID: 1,
		Options: []coap.Option{{ID: 270}}}, nil},
	{"extended delta truncated", "40020001e000", nil, coap.ErrTruncated},
	{"extended length 13", "40010001bd02" + strings.Repeat("61", 15), &coap.Message{Type: coap.CON, Code: 1, MID: 1,
		Options: []coap.Option{{ID: 11, Value: []byte(strings.Repeat("a", 15))}}}, nil},
	{"short", "4001", nil, coap.ErrShort},
	{"version 2", "80010001", nil, coap.ErrVersion},
	{"tkl 9", "49010001", nil, coap.ErrTKL},
	{"token truncated", "44010001aabb", nil, coap.ErrTruncated},
	{"option value truncated", "40010001b37073", nil, coap.ErrTruncated},
	{"delta nibble 15", "40010001f0", nil, coap.ErrOptionFormat},
	{"length nibble 15", "40010001bf", nil, coap.ErrOptionFormat},
	{"payload marker without payload", "40020001ff", nil, coap.ErrEmptyPayload},
	{"empty message with token", "41000001aa", nil, coap.ErrEmptyNotRaw},
	{"empty message with payload", "40000001ff01", nil, coap.ErrEmptyNotRaw},
	{"unknown critical option 9", "4001000190", nil, coap.ErrBadOption},
	{"duplicate critical Uri-Host", "4001000131610161", nil, coap.ErrBadOption},
	{"If-None-Match with a value", "400100015101", nil, coap.ErrBadOption},
}

func TestCodecTable(t *testing.T) {
	for _, c := range codecCases {
		t.Run(c.name, func(t *testing.T) {
			b, err := hex.DecodeString(c.hex)
			if err != nil {
				t.Fatal(err)
			}
			var m coap.Message
			err = coap.Decode(b, &m)
			if c.err != nil {
				if !errors.Is(err, c.err) {
					t.Fatalf("Decode error %v, want %v", err, c.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			norm := func(x *coap.Message) coap.Message {
				y := *x
				if len(y.Options) == 0 {
					y.Options = nil
				}
				for i := range y.Options {
					if len(y.Options[i].Value) == 0 {
						y.Options[i].Value = nil
					}
				}
				return y
			}
			if got, want := norm(&m), norm(c.msg); !reflect.DeepEqual(got, want) {
				t.Fatalf("decoded %+v, want %+v", got, want)
			}
			if enc := coap.Append(nil, c.msg); !bytes.Equal(enc, b) {
				t.Fatalf("encoded %x, want %s", enc, c.hex)
			}
			// go-coap's own decoder agrees on what it can represent
			gm := message.Message{Options: make(message.Options, 0, 16)}
			if _, err := coder.DefaultCoder.Decode(b, &gm); err != nil {
				t.Fatalf("go-coap rejects %s: %v", c.hex, err)
			}
			if int(gm.Code) != int(c.msg.Code) || uint16(gm.MessageID) != c.msg.MID || !bytes.Equal(gm.Payload, c.msg.Payload) {
				t.Fatalf("go-coap decodes %+v", gm)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	for _, c := range codecCases {
		b, _ := hex.DecodeString(c.hex)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		var m coap.Message
		if err := coap.Decode(b, &m); err != nil {
			return
		}
		// what decodes re-encodes to the same bytes (the encoding is canonical
		// except for over-long extended fields, which Decode accepts)
		var again coap.Message
		enc := coap.Append(nil, &m)
		if err := coap.Decode(enc, &again); err != nil {
			t.Fatalf("re-encoded %x does not decode: %v", enc, err)
		}
		if !bytes.Equal(coap.Append(nil, &again), enc) {
			t.Fatalf("encoding not stable for %x", b)
		}
	})
}
