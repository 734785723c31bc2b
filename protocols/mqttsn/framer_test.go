package mqttsn

import (
	"bytes"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite testdata golden files")

func TestCRC16CheckValue(t *testing.T) {
	// The catalogue check value of CRC-16/CCITT-FALSE (CRC-16/IBM-3740).
	if got := crc16([]byte("123456789")); got != 0x29B1 {
		t.Fatalf("crc16(123456789) = %#04x, want 0x29b1", got)
	}
}

type slipFrame struct {
	node byte
	msg  []byte
}

func collectSLIP(r *slipReader, chunks ...[]byte) []slipFrame {
	var out []slipFrame
	for _, c := range chunks {
		r.feed(c, func(node byte, msg []byte) {
			out = append(out, slipFrame{node, append([]byte(nil), msg...)})
		})
	}
	return out
}

func TestSLIPRoundTripAndEscapes(t *testing.T) {
	// A message full of the octets SLIP must escape.
	msg := []byte{0x08, TypePublish, 0x00, slipEnd, slipEsc, 0x00, 0x00, slipEscEnd}
	frame := AppendSLIPFrame(nil, slipEnd, msg) // even the node address is escaped
	if bytes.Count(frame, []byte{slipEnd}) != 2 {
		t.Fatalf("END inside the frame: % x", frame)
	}
	var r slipReader
	got := collectSLIP(&r, frame)
	if len(got) != 1 || got[0].node != slipEnd || !bytes.Equal(got[0].msg, msg) {
		t.Fatalf("got %+v", got)
	}
	// Byte by byte, as a UART delivers it.
	var r2 slipReader
	var chunks [][]byte
	for i := range frame {
		chunks = append(chunks, frame[i:i+1])
	}
	if got := collectSLIP(&r2, chunks...); len(got) != 1 || !bytes.Equal(got[0].msg, msg) {
		t.Fatalf("byte-wise: %+v", got)
	}
}

func TestSLIPResyncAfterNoise(t *testing.T) {
	a := AppendSLIPFrame(nil, 1, []byte{0x02, TypePingreq})
	b := AppendSLIPFrame(nil, 2, []byte{0x03, TypeSearchGW, 0x00})
	corrupt := AppendSLIPFrame(nil, 3, []byte{0x02, TypePingreq})
	corrupt[2] ^= 0x40 // a flipped bit: the CRC catches it
	stream := bytes.Join([][]byte{
		[]byte("\x00\xffgarbage"), a,
		{slipEsc, 0x11}, // a bad escape between frames
		corrupt,
		bytes.Repeat([]byte{0x55}, maxSerialFrame+10), // a runaway
		{slipEnd, slipEnd, slipEnd},                   // idle line
		b,
	}, nil)
	var r slipReader
	got := collectSLIP(&r, stream)
	if len(got) != 2 || got[0].node != 1 || got[1].node != 2 {
		t.Fatalf("frames %+v", got)
	}
	// The garbage before the first frame is long enough to be judged by
	// its CRC; the flipped bit is the other bad CRC.
	if r.stats.badCRC != 2 || r.stats.tooLarge != 1 || r.stats.frames != 2 || r.stats.noise == 0 {
		t.Fatalf("stats %+v", r.stats)
	}
}

func TestLengthFraming(t *testing.T) {
	var msgs [][]byte
	for _, c := range codecCases {
		msgs = append(msgs, unhex(t, c.wire))
	}
	for _, c := range encapCases {
		msgs = append(msgs, unhex(t, c.wire))
	}
	stream := bytes.Join(msgs, nil)
	for _, chunk := range []int{1, 3, 7, 64, len(stream)} {
		r := lengthReader{gap: time.Second}
		var got [][]byte
		now := time.Now()
		for i := 0; i < len(stream); i += chunk {
			r.feed(stream[i:min(i+chunk, len(stream))], now, func(m []byte) { got = append(got, append([]byte(nil), m...)) })
		}
		if len(got) != len(msgs) {
			t.Fatalf("chunk %d: %d messages, want %d", chunk, len(got), len(msgs))
		}
		for i := range got {
			if !bytes.Equal(got[i], msgs[i]) {
				t.Fatalf("chunk %d: message %d\n got  % x\n want % x", chunk, i, got[i], msgs[i])
			}
		}
		if r.stats.noise != 0 {
			t.Fatalf("chunk %d: noise %d in a clean stream", chunk, r.stats.noise)
		}
	}
}

func TestLengthFramingResync(t *testing.T) {
	ping := []byte{0x02, TypePingreq}
	now := time.Now()
	var got int
	emit := func([]byte) { got++ }
	r := lengthReader{gap: 100 * time.Millisecond}
	// Impossible lengths and unknown types are skipped one octet at a time.
	r.feed(append([]byte{0x00, 0x01, 0x00, 0x02, 0x02, 0xff, 0xff, 0x03, 0x03, 0x00, 0x00, 0x00}, ping...), now, emit)
	if got != 1 {
		t.Fatalf("after junk: %d messages", got)
	}
	// A message cut short and followed by silence is dropped.
	r.feed([]byte{0x0a, TypeConnect, 0x04}, now, emit)
	r.feed(ping, now.Add(time.Second), emit)
	if got != 2 || r.stats.noise == 0 {
		t.Fatalf("after a stalled message: %d messages, noise %d", got, r.stats.noise)
	}
}

// The golden file shows firmware authors whole frames, byte for byte.
func TestSerialGolden(t *testing.T) {
	connect := unhex(t, "0a 04 04 01 001e 64657631")
	publish := unhex(t, "09 0c 20 0001 0005 c0db") // payload with both special octets
	enc, _ := AppendEncapsulated(nil, 0, []byte{0x00, 0x2a}, unhex(t, "02 16"))
	var b strings.Builder
	fmt.Fprintln(&b, "# MQTT-SN serial frames, hex. slip: END esc(node msg crc16-hi crc16-lo) END.")
	fmt.Fprintln(&b, "# CRC-16/CCITT-FALSE over node and message. length: the message as is.")
	line := func(name string, frame []byte) { fmt.Fprintf(&b, "%-42s %s\n", name+":", hex.EncodeToString(frame)) }
	line("slip node 3 CONNECT dev1", AppendSLIPFrame(nil, 3, connect))
	line("slip node 3 PUBLISH qos1 payload c0db", AppendSLIPFrame(nil, 3, publish))
	line("slip node 9 encapsulated PINGREQ node 002a", AppendSLIPFrame(nil, 9, enc))
	line("slip broadcast ADVERTISE gw 1 900s", AppendSLIPFrame(nil, broadcastNode, unhex(t, "05 00 01 0384")))
	line("length CONNECT dev1", connect)
	line("length encapsulated PINGREQ node 002a", enc)
	path := filepath.Join("testdata", "serial_frames.golden")
	if *update {
		if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if b.String() != string(want) {
		t.Errorf("serial frames changed:\n%s\nwant:\n%s", b.String(), want)
	}
}

// FuzzSerialFramer: arbitrary line input never panics either framer, a
// good slip frame survives any noise around it, and length framing
// delivers back-to-back messages whatever the chunking.
func FuzzSerialFramer(f *testing.F) {
	f.Add([]byte("noise"), []byte{0x02, TypePingreq}, byte(3), uint8(1))
	f.Add([]byte{slipEnd, slipEsc}, unhex(f, "09 0c 20 0001 0005 c0db"), byte(slipEnd), uint8(2))
	f.Add([]byte{}, unhex(f, "05 fe 00 aabb 02 16"), byte(255), uint8(5))
	f.Fuzz(func(t *testing.T, noise, msg []byte, node byte, chunk uint8) {
		if len(msg) > 1000 {
			return
		}
		step := int(chunk%16) + 1
		feedSLIP := func(r *slipReader, b []byte) []slipFrame {
			var out []slipFrame
			for i := 0; i < len(b); i += step {
				out = append(out, collectSLIP(r, b[i:min(i+step, len(b))])...)
			}
			return out
		}
		// Robustness on raw input, and every frame out has a good CRC.
		var r0 slipReader
		for _, fr := range feedSLIP(&r0, noise) {
			if len(fr.msg) < 2 {
				t.Fatalf("runt frame out: %+v", fr)
			}
		}
		l0 := lengthReader{gap: time.Second}
		l0.feed(noise, time.Now(), func(m []byte) {
			if _, _, err := FrameLen(m); err != nil && !Encapsulated(m) {
				t.Fatalf("length framer emitted % x: %v", m, err)
			}
		})
		// Survival: noise, then a frame, then noise.
		if len(msg) >= 2 {
			frame := AppendSLIPFrame(nil, node, msg)
			var r slipReader
			stream := append(append(append([]byte(nil), noise...), frame...), noise...)
			found := false
			for _, fr := range feedSLIP(&r, stream) {
				if fr.node == node && bytes.Equal(fr.msg, msg) {
					found = true
				}
			}
			if !found {
				t.Fatalf("frame % x lost in noise % x", frame, noise)
			}
		}
		// Length framing: a valid message repeated, chunked.
		if m, err := Decode(msg); err == nil && len(msg) <= maxSerialFrame {
			enc, _ := m.Append(nil)
			stream := bytes.Repeat(enc, 3)
			r := lengthReader{gap: time.Second}
			n := 0
			for i := 0; i < len(stream); i += step {
				r.feed(stream[i:min(i+step, len(stream))], time.Now(), func(b []byte) {
					if !bytes.Equal(b, enc) {
						t.Fatalf("length framing gave % x, want % x", b, enc)
					}
					n++
				})
			}
			if n != 3 {
				t.Fatalf("length framing: %d of 3 messages", n)
			}
		}
	})
}
