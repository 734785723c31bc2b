package mqttsn

import (
	"bytes"
	"encoding/hex"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// codecCases is the byte-level table shared by encode and decode. The
// wire columns are written from the MQTT-SN 1.2 specification by hand.
var codecCases = []struct {
	name string
	m    Message
	wire string
}{
	{"advertise", Message{Type: TypeAdvertise, GwID: 1, Duration: 900}, "05 00 01 0384"},
	{"searchgw", Message{Type: TypeSearchGW, Radius: 1}, "03 01 01"},
	{"gwinfo from gateway", Message{Type: TypeGWInfo, GwID: 7}, "03 02 07"},
	{"gwinfo from client", Message{Type: TypeGWInfo, GwID: 7, Data: []byte{10, 0, 0, 1}}, "07 02 07 0a000001"},
	{"connect clean", Message{Type: TypeConnect, Flags: FlagCleanSession, ProtocolID: 1, Duration: 30, ClientID: "dev1"}, "0a 04 04 01 001e 64657631"},
	{"connect will persistent", Message{Type: TypeConnect, Flags: FlagWill, ProtocolID: 1, Duration: 65535, ClientID: "d"}, "07 04 08 01 ffff 64"},
	{"connect empty clientid", Message{Type: TypeConnect, Flags: FlagCleanSession, ProtocolID: 1, Duration: 10}, "06 04 04 01 000a"},
	{"connack accepted", Message{Type: TypeConnack, ReturnCode: RCAccepted}, "03 05 00"},
	{"connack not authorized", Message{Type: TypeConnack, ReturnCode: RCNotAuthorized}, "03 05 80"},
	{"willtopicreq", Message{Type: TypeWillTopicReq}, "02 06"},
	{"willtopic qos1 retain", Message{Type: TypeWillTopic, Flags: 0x20 | FlagRetain, TopicName: "w/t"}, "06 07 30 772f74"},
	{"willtopic empty", Message{Type: TypeWillTopic, NoFlags: true}, "02 07"},
	{"willmsgreq", Message{Type: TypeWillMsgReq}, "02 08"},
	{"willmsg", Message{Type: TypeWillMsg, Data: []byte("bye")}, "05 09 627965"},
	{"willmsg empty", Message{Type: TypeWillMsg}, "02 09"},
	{"register from client", Message{Type: TypeRegister, MsgID: 1, TopicName: "a/b"}, "09 0a 0000 0001 612f62"},
	{"register from gateway", Message{Type: TypeRegister, TopicID: 0x0102, MsgID: 0xbeef, TopicName: "t"}, "07 0a 0102 beef 74"},
	{"regack", Message{Type: TypeRegack, TopicID: 1, MsgID: 1, ReturnCode: RCAccepted}, "07 0b 0001 0001 00"},
	{"regack exceed limitation", Message{Type: TypeRegack, MsgID: 9, ReturnCode: RCExceedLimitation}, "07 0b 0000 0009 83"},
	{"publish qos0 normal", Message{Type: TypePublish, TopicID: 1, Data: []byte("hi")}, "09 0c 00 0001 0000 6869"},
	{"publish qos1 predefined", Message{Type: TypePublish, Flags: 0x20 | TopicPredefined, TopicID: 2000, MsgID: 5, Data: []byte{1}}, "08 0c 21 07d0 0005 01"},
	{"publish qos2 short dup retain", Message{Type: TypePublish, Flags: FlagDup | 0x40 | FlagRetain | TopicShort, TopicID: 0x6162, MsgID: 0xffff}, "07 0c d2 6162 ffff"},
	{"publish qos-1 predefined", Message{Type: TypePublish, Flags: 0x60 | TopicPredefined, TopicID: 65535, Data: []byte("x")}, "08 0c 61 ffff 0000 78"},
	{"puback", Message{Type: TypePuback, TopicID: 1, MsgID: 5, ReturnCode: RCAccepted}, "07 0d 0001 0005 00"},
	{"puback invalid topic id", Message{Type: TypePuback, TopicID: 7, MsgID: 0, ReturnCode: RCInvalidTopicID}, "07 0d 0007 0000 02"},
	{"pubcomp", Message{Type: TypePubcomp, MsgID: 0x1234}, "04 0e 1234"},
	{"pubrec", Message{Type: TypePubrec, MsgID: 1}, "04 0f 0001"},
	{"pubrel", Message{Type: TypePubrel, MsgID: 2}, "04 10 0002"},
	{"subscribe name qos1", Message{Type: TypeSubscribe, Flags: 0x20, MsgID: 1, TopicName: "s/1"}, "08 12 20 0001 732f31"},
	{"subscribe wildcard", Message{Type: TypeSubscribe, Flags: 0x40, MsgID: 2, TopicName: "s/#"}, "08 12 40 0002 732f23"},
	{"subscribe predefined", Message{Type: TypeSubscribe, Flags: TopicPredefined, MsgID: 3, TopicID: 1025}, "07 12 01 0003 0401"},
	{"subscribe short dup", Message{Type: TypeSubscribe, Flags: FlagDup | TopicShort, MsgID: 4, TopicID: 0x7a7a}, "07 12 82 0004 7a7a"},
	{"suback", Message{Type: TypeSuback, Flags: 0x20, TopicID: 1, MsgID: 1, ReturnCode: RCAccepted}, "08 13 20 0001 0001 00"},
	{"suback not authorized", Message{Type: TypeSuback, MsgID: 1, ReturnCode: RCNotAuthorized}, "08 13 00 0000 0001 80"},
	{"unsubscribe name", Message{Type: TypeUnsubscribe, MsgID: 1, TopicName: "s/1"}, "08 14 00 0001 732f31"},
	{"unsubscribe predefined", Message{Type: TypeUnsubscribe, Flags: TopicPredefined, MsgID: 2, TopicID: 9}, "07 14 01 0002 0009"},
	{"unsuback", Message{Type: TypeUnsuback, MsgID: 1}, "04 15 0001"},
	{"pingreq", Message{Type: TypePingreq}, "02 16"},
	{"pingreq clientid", Message{Type: TypePingreq, ClientID: "dev1"}, "06 16 64657631"},
	{"pingresp", Message{Type: TypePingresp}, "02 17"},
	{"disconnect", Message{Type: TypeDisconnect}, "02 18"},
	{"disconnect sleep", Message{Type: TypeDisconnect, HasDuration: true, Duration: 60}, "04 18 003c"},
	{"willtopicupd", Message{Type: TypeWillTopicUpd, Flags: 0x40, TopicName: "w"}, "04 1a 40 77"},
	{"willtopicupd empty", Message{Type: TypeWillTopicUpd, NoFlags: true}, "02 1a"},
	{"willtopicresp", Message{Type: TypeWillTopicResp, ReturnCode: RCAccepted}, "03 1b 00"},
	{"willmsgupd", Message{Type: TypeWillMsgUpd, Data: []byte("gone")}, "06 1c 676f6e65"},
	{"willmsgresp", Message{Type: TypeWillMsgResp, ReturnCode: RCNotSupported}, "03 1d 03"},
	// 253 payload octets make 260 with a 1-octet header: the 3-octet one, 262.
	{"publish 3-octet length", Message{Type: TypePublish, TopicID: 1, Data: bytes.Repeat([]byte{0xab}, 253)}, "01 0106 0c 00 0001 0000 " + strings.Repeat("ab", 253)},
	// 248 make 255: the largest message with a 1-octet header.
	{"publish 255 octets", Message{Type: TypePublish, TopicID: 1, Data: bytes.Repeat([]byte{0xcd}, 248)}, "ff 0c 00 0001 0000 " + strings.Repeat("cd", 248)},
}

func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		tb.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func TestCodecEncode(t *testing.T) {
	for _, c := range codecCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := c.m.Append(nil)
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, c.wire); !bytes.Equal(got, want) {
				t.Errorf("encode\n got  % x\n want % x", got, want)
			}
			if n, _ := c.m.Len(); n != len(got) {
				t.Errorf("Len %d, encoded %d", n, len(got))
			}
		})
	}
}

func TestCodecDecode(t *testing.T) {
	for _, c := range codecCases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decode(unhex(t, c.wire))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, c.m) {
				t.Errorf("decode\n got  %+v\n want %+v", *got, c.m)
			}
		})
	}
}

// Decoders must also take what encoders do not produce.
func TestCodecDecodeOnly(t *testing.T) {
	cases := []struct {
		name string
		wire string
		want Message
	}{
		{"3-octet header on a short message", "01 0004 18", Message{Type: TypeDisconnect}},
		{"3-octet header publish", "01 0009 0c 00 0001 0000", Message{Type: TypePublish, TopicID: 1}},
		{"reserved topic id type in subscribe keeps the name", "05 12 03 0001", Message{Type: TypeSubscribe, Flags: 3, MsgID: 1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := Decode(unhex(t, c.wire))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(*got, c.want) {
				t.Errorf("got %+v, want %+v", *got, c.want)
			}
		})
	}
}

func TestCodecDecodeErrors(t *testing.T) {
	cases := []struct {
		name string
		wire string
		want error
	}{
		{"empty", "", ErrShort},
		{"length zero", "00", ErrLength},
		{"length one", "01", ErrShort},
		{"3-octet header cut", "01 00", ErrShort},
		{"3-octet length below 4", "01 0003 18", ErrLength},
		{"header longer than datagram", "05 05 00", ErrLength},
		{"header shorter than datagram", "02 16 00", ErrLength},
		{"reserved type 0x03", "02 03", ErrType},
		{"reserved type 0x11", "02 11", ErrType},
		{"connack without code", "02 05", ErrMalformed},
		{"connect too short", "05 04 04 01 00", ErrMalformed},
		{"advertise too long", "06 00 01 0384 00", ErrMalformed},
		{"disconnect with 1 octet", "03 18 00", ErrMalformed},
		{"puback too short", "06 0d 0001 0001", ErrMalformed},
		{"subscribe predefined without id", "05 12 01 0001", ErrMalformed},
		{"subscribe short with 3 octets", "08 12 02 0001 616263", ErrMalformed},
		{"publish without msgid", "06 0c 00 0001 00", ErrMalformed},
		{"pingresp with body", "03 17 00", ErrMalformed},
		{"encapsulated where plain expected", "05 fe 00 0102 ", ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Decode(unhex(t, c.wire))
			if !errors.Is(err, c.want) {
				t.Fatalf("error %v, want %v", err, c.want)
			}
		})
	}
}

func TestCodecEncodeErrors(t *testing.T) {
	if _, err := (&Message{Type: 0x03}).Append(nil); !errors.Is(err, ErrType) {
		t.Errorf("reserved type: %v", err)
	}
	big := &Message{Type: TypePublish, Data: make([]byte, 65535)}
	if _, err := big.Append(nil); !errors.Is(err, ErrTooLarge) {
		t.Errorf("oversized publish: %v", err)
	}
}

var encapCases = []struct {
	name  string
	ctrl  byte
	node  string
	inner string
	wire  string
}{
	{"pingreq from node aabb", 0, "aabb", "02 16", "05 fe 00 aabb 02 16"},
	{"connect from 1-octet node, radius 3", 3, "07", "06 04 04 01 001e", "04 fe 03 07 06 04 04 01 001e"},
	{"publish with 3-octet header", 0, "0102030405060708", "01 0009 0c 00 0001 0000", "0b fe 00 0102030405060708 01 0009 0c 00 0001 0000"},
}

func TestEncapsulation(t *testing.T) {
	for _, c := range encapCases {
		t.Run(c.name, func(t *testing.T) {
			node, inner, wire := unhex(t, c.node), unhex(t, c.inner), unhex(t, c.wire)
			got, err := AppendEncapsulated(nil, c.ctrl, node, inner)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, wire) {
				t.Errorf("encode\n got  % x\n want % x", got, wire)
			}
			if !Encapsulated(wire) {
				t.Fatal("Encapsulated says no")
			}
			ctrl, n, in, err := Unwrap(wire)
			if err != nil {
				t.Fatal(err)
			}
			if ctrl != c.ctrl || !bytes.Equal(n, node) || !bytes.Equal(in, inner) {
				t.Errorf("decode ctrl %d node % x inner % x", ctrl, n, in)
			}
			if _, err := Decode(in); err != nil {
				t.Errorf("inner: %v", err)
			}
		})
	}
	bad := map[string]string{
		"no node id":      "03 fe 00 02 16",
		"header past end": "09 fe 00 0102",
		"no message":      "05 fe 00 0102",
		"nested":          "04 fe 00 01 04 fe 00 02 02 16",
	}
	for name, w := range bad {
		if _, _, _, err := Unwrap(unhex(t, w)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if _, err := AppendEncapsulated(nil, 0, nil, []byte{2, 0x16}); err == nil {
		t.Error("empty node id accepted")
	}
	if _, err := AppendEncapsulated(nil, 0, make([]byte, MaxNodeIDLen+1), []byte{2, 0x16}); err == nil {
		t.Error("253-octet node id accepted")
	}
}

func TestFlagAccessors(t *testing.T) {
	m := Message{Flags: FlagDup | 0x60 | FlagRetain | FlagWill | FlagCleanSession | TopicShort}
	if !m.Dup() || m.QoS() != -1 || !m.Retain() || !m.Will() || !m.CleanSession() || m.TopicIDType() != TopicShort {
		t.Errorf("accessors of %08b: dup %v qos %d retain %v will %v clean %v type %d", m.Flags, m.Dup(), m.QoS(), m.Retain(), m.Will(), m.CleanSession(), m.TopicIDType())
	}
	for q := int8(-1); q <= 2; q++ {
		if got := (&Message{Flags: QoSFlags(q)}).QoS(); got != q {
			t.Errorf("QoSFlags(%d) reads back as %d", q, got)
		}
	}
	if ShortTopic(ShortID("ab")) != "ab" {
		t.Error("short topic round trip")
	}
}

// FuzzDecode: no input panics the decoder, and whatever decodes encodes
// to something that decodes to the same message.
func FuzzDecode(f *testing.F) {
	for _, c := range codecCases {
		f.Add(unhex(f, c.wire))
	}
	for _, c := range encapCases {
		f.Add(unhex(f, c.wire))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		if Encapsulated(b) {
			_, node, inner, err := Unwrap(b)
			if err != nil {
				return
			}
			w, err := AppendEncapsulated(nil, 0, node, inner)
			if err != nil {
				t.Fatalf("unwrapped node % x does not wrap again: %v", node, err)
			}
			if _, n2, in2, err := Unwrap(w); err != nil || !bytes.Equal(n2, node) || !bytes.Equal(in2, inner) {
				t.Fatalf("re-wrap differs: %v", err)
			}
			b = inner
		}
		m, err := Decode(b)
		if err != nil {
			return
		}
		enc, err := m.Append(nil)
		if err != nil {
			t.Fatalf("decoded %+v does not encode: %v", m, err)
		}
		m2, err := Decode(enc)
		if err != nil {
			t.Fatalf("re-encoded % x does not decode: %v", enc, err)
		}
		if !reflect.DeepEqual(m, m2) {
			t.Fatalf("round trip\n %+v\n %+v", m, m2)
		}
		if len(b) <= 255 && b[0] != 0x01 && !bytes.Equal(enc, b) {
			t.Fatalf("1-octet header message re-encodes differently\n % x\n % x", b, enc)
		}
	})
}
