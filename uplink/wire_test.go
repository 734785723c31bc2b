package uplink

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// Byte-level PUBLISH cases, shared by the encoder test (our bytes) and
// the decoder test (paho's decoder and readFrame read them back).
var publishCases = []struct {
	name          string
	prefix, topic string
	payload       []byte
	qos           byte
	retain, dup   bool
	pid           uint16
	wire          []byte
}{
	{"qos1", "", "a/b", []byte("hi"), 1, false, false, 10,
		[]byte{0x32, 0x09, 0x00, 0x03, 'a', '/', 'b', 0x00, 0x0a, 'h', 'i'}},
	{"qos1 dup retain, prefix", "s/", "t", nil, 1, true, true, 0x0102,
		[]byte{0x3b, 0x07, 0x00, 0x03, 's', '/', 't', 0x01, 0x02}},
	{"qos0 no packet id", "", "t", []byte{0}, 0, false, false, 0,
		[]byte{0x30, 0x04, 0x00, 0x01, 't', 0x00}},
	{"two length bytes", "", "t", bytes.Repeat([]byte("x"), 200), 1, false, false, 1,
		append([]byte{0x32, 0xcd, 0x01, 0x00, 0x01, 't', 0x00, 0x01}, bytes.Repeat([]byte("x"), 200)...)},
}

func TestAppendPublishHeader(t *testing.T) {
	for _, tc := range publishCases {
		got, err := appendPublishHeader(nil, tc.prefix, tc.topic, len(tc.payload), tc.qos, tc.retain, tc.dup, tc.pid)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		got = append(got, tc.payload...)
		if !bytes.Equal(got, tc.wire) {
			t.Errorf("%s:\n got % x\nwant % x", tc.name, got, tc.wire)
		}
	}
	if _, err := appendPublishHeader(nil, "", strings.Repeat("t", 65536), 0, 1, false, false, 1); !errors.Is(err, errTopicLong) {
		t.Errorf("long topic: %v", err)
	}
	if _, err := appendPublishHeader(nil, "", "t", maxRemaining, 1, false, false, 1); !errors.Is(err, errTooLarge) {
		t.Errorf("large payload: %v", err)
	}
}

func TestReadFramePublish(t *testing.T) {
	for _, tc := range publishCases {
		f, err := readFrame(bufio.NewReader(bytes.NewReader(tc.wire)))
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		p, ok := f.pk.(*packets.PublishPacket)
		if !ok || f.kind != packets.Publish {
			t.Fatalf("%s: %T kind %d", tc.name, f.pk, f.kind)
		}
		want := tc.prefix + tc.topic
		if p.TopicName != want || p.Qos != tc.qos || p.Dup != tc.dup || p.Retain != tc.retain || p.MessageID != tc.pid || !bytes.Equal(p.Payload, tc.payload) && len(tc.payload) > 0 {
			t.Errorf("%s: decoded %v", tc.name, p)
		}
	}
}

func TestReadFrame(t *testing.T) {
	in := []byte{
		0x40, 0x02, 0x12, 0x34, // PUBACK 0x1234
		0xd0, 0x00, // PINGRESP
		0x90, 0x04, 0x00, 0x07, 0x01, 0x80, // SUBACK 7: granted 1, refused
		0xb0, 0x02, 0x00, 0x08, // UNSUBACK 8
	}
	br := bufio.NewReader(bytes.NewReader(in))
	f, err := readFrame(br)
	if err != nil || f.kind != packets.Puback || f.pid != 0x1234 || f.pk != nil {
		t.Fatalf("puback: %+v %v", f, err)
	}
	if f, err = readFrame(br); err != nil || f.kind != packets.Pingresp {
		t.Fatalf("pingresp: %+v %v", f, err)
	}
	f, err = readFrame(br)
	if sa, ok := f.pk.(*packets.SubackPacket); err != nil || !ok || sa.MessageID != 7 || !bytes.Equal(sa.ReturnCodes, []byte{1, 0x80}) {
		t.Fatalf("suback: %+v %v", f, err)
	}
	f, err = readFrame(br)
	if ua, ok := f.pk.(*packets.UnsubackPacket); err != nil || !ok || ua.MessageID != 8 {
		t.Fatalf("unsuback: %+v %v", f, err)
	}
	if _, err = readFrame(br); err != io.EOF {
		t.Fatalf("end: %v", err)
	}
	// A length above maxInbound is refused before anything is allocated.
	big := []byte{0x30, 0xff, 0xff, 0xff, 0x7f}
	if _, err := readFrame(bufio.NewReader(bytes.NewReader(big))); !errors.Is(err, errInboundBig) {
		t.Errorf("huge packet: %v", err)
	}
	bad := []byte{0x30, 0xff, 0xff, 0xff, 0xff, 0x01}
	if _, err := readFrame(bufio.NewReader(bytes.NewReader(bad))); !errors.Is(err, errBadLength) {
		t.Errorf("five length bytes: %v", err)
	}
}

// FuzzReadFrame: whatever a server sends, readFrame returns a packet or
// an error, never panics, and never reads past a bounded length.
func FuzzReadFrame(f *testing.F) {
	for _, tc := range publishCases {
		f.Add(tc.wire)
	}
	f.Add([]byte{0x40, 0x02, 0x00, 0x01})
	f.Add([]byte{0x90, 0x03, 0x00, 0x01, 0x01})
	f.Add([]byte{0x20, 0x02, 0x00, 0x00})
	f.Fuzz(func(t *testing.T, data []byte) {
		br := bufio.NewReader(bytes.NewReader(data))
		for i := 0; i < 16; i++ {
			if _, err := readFrame(br); err != nil {
				return
			}
		}
	})
}
