package uplink

import (
	"bufio"
	"errors"
	"fmt"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// maxRemaining is MQTT's largest remaining length (4 length bytes).
const maxRemaining = 268435455

// maxInbound bounds a packet from the server, so that a broken or hostile
// server cannot make a small box allocate 256 MB.
const maxInbound = 16 << 20

var (
	errTooLarge   = errors.New("packet too large for MQTT")
	errTopicLong  = errors.New("topic longer than 65535 bytes")
	errBadLength  = errors.New("malformed remaining length")
	errInboundBig = fmt.Errorf("packet from server above %d bytes", maxInbound)
)

// Fixed packets.
var (
	pingreqBytes    = []byte{packets.Pingreq << 4, 0}
	disconnectBytes = []byte{packets.Disconnect << 4, 0}
)

// appendPublishHeader appends everything of a PUBLISH but its payload:
// fixed header, topic (prefix+topic, written without concatenating) and,
// for QoS > 0, the packet id. The publish hot path uses it instead of
// paho's PublishPacket.Write, which copies the packet twice per call.
func appendPublishHeader(b []byte, prefix, topic string, payloadLen int, qos byte, retain, dup bool, pid uint16) ([]byte, error) {
	tl := len(prefix) + len(topic)
	if tl > 65535 {
		return b, errTopicLong
	}
	rl := 2 + tl + payloadLen
	if qos > 0 {
		rl += 2
	}
	if rl > maxRemaining || payloadLen < 0 {
		return b, errTooLarge
	}
	h := byte(packets.Publish<<4) | qos<<1
	if dup {
		h |= 0x08
	}
	if retain {
		h |= 0x01
	}
	b = append(b, h)
	b = appendLength(b, rl)
	b = append(b, byte(tl>>8), byte(tl))
	b = append(b, prefix...)
	b = append(b, topic...)
	if qos > 0 {
		b = append(b, byte(pid>>8), byte(pid))
	}
	return b, nil
}

func appendLength(b []byte, n int) []byte {
	for {
		d := byte(n % 128)
		n /= 128
		if n > 0 {
			d |= 0x80
		}
		b = append(b, d)
		if n == 0 {
			return b
		}
	}
}

func appendPuback(b []byte, pid uint16) []byte {
	return append(b, packets.Puback<<4, 2, byte(pid>>8), byte(pid))
}

// frame is one packet read from the server. PUBACKs, by far the most
// frequent, are decoded in place (kind and pid only); everything else
// goes through paho's decoder.
type frame struct {
	kind byte
	pid  uint16
	pk   packets.ControlPacket
}

// readFrame reads one packet.
func readFrame(br *bufio.Reader) (frame, error) {
	h, err := br.Peek(2)
	if err != nil {
		return frame{}, err
	}
	if h[0] == packets.Puback<<4 && h[1] == 2 {
		b, err := br.Peek(4)
		if err != nil {
			return frame{}, err
		}
		pid := uint16(b[2])<<8 | uint16(b[3])
		br.Discard(4)
		return frame{kind: packets.Puback, pid: pid}, nil
	}
	kind := h[0] >> 4
	// Check the length before paho allocates it.
	n, err := peekLength(br)
	if err != nil {
		return frame{}, err
	}
	if n > maxInbound {
		return frame{}, errInboundBig
	}
	pk, err := packets.ReadPacket(br)
	if err != nil {
		return frame{}, err
	}
	return frame{kind: kind, pk: pk}, nil
}

// peekLength decodes the remaining length that follows the first byte.
func peekLength(br *bufio.Reader) (int, error) {
	n, mul := 0, 1
	for i := 1; i <= 4; i++ {
		b, err := br.Peek(i + 1)
		if err != nil {
			return 0, err
		}
		d := b[i]
		n += int(d&0x7f) * mul
		if d&0x80 == 0 {
			return n, nil
		}
		mul *= 128
	}
	return 0, errBadLength
}
