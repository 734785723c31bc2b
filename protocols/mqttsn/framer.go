package mqttsn

import (
	"time"
)

// Serial framing. A serial line is a byte stream; MQTT-SN needs datagrams
// with an address. Two framings are offered (the README has the byte
// layout for firmware authors):
//
//	slip:   END | esc( node | MQTT-SN message | CRC-16 hi | CRC-16 lo ) | END
//	length: MQTT-SN message | MQTT-SN message | …   (its own length header)
//
// The CRC is CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection,
// no final xor) over node and message, sent high octet first.

// SLIP (RFC 1055) special octets.
const (
	slipEnd    = 0xC0
	slipEsc    = 0xDB
	slipEscEnd = 0xDC
	slipEscEsc = 0xDD
)

// Node addresses on a slip bus: 1..254 are nodes, 255 is broadcast.
const (
	minNode       = 1
	maxNode       = 254
	broadcastNode = 255
)

// maxSerialFrame bounds one frame's unescaped content; longer input is
// noise. It covers a 1024-octet message with encapsulation, node and CRC.
const maxSerialFrame = 1536

// framerStats counts what a framer threw away. The fields are plain
// integers: a framer belongs to one reader goroutine, which copies them to
// metrics.
type framerStats struct {
	frames   uint64 // good frames out
	badCRC   uint64 // slip frames whose CRC did not match
	noise    uint64 // octets discarded while looking for a frame
	tooLarge uint64 // frames longer than maxSerialFrame
}

// crc16 is CRC-16/CCITT-FALSE.
func crc16(b []byte) uint16 {
	crc := uint16(0xFFFF)
	for _, c := range b {
		crc ^= uint16(c) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// AppendSLIPFrame appends one slip frame carrying msg for (or from) node.
func AppendSLIPFrame(dst []byte, node byte, msg []byte) []byte {
	crc := crc16(append([]byte{node}, msg...))
	dst = append(dst, slipEnd)
	dst = slipEscape(dst, node)
	for _, c := range msg {
		dst = slipEscape(dst, c)
	}
	dst = slipEscape(dst, byte(crc>>8))
	dst = slipEscape(dst, byte(crc))
	return append(dst, slipEnd)
}

func slipEscape(dst []byte, c byte) []byte {
	switch c {
	case slipEnd:
		return append(dst, slipEsc, slipEscEnd)
	case slipEsc:
		return append(dst, slipEsc, slipEscEsc)
	}
	return append(dst, c)
}

// slipReader cuts a byte stream into slip frames. Whatever lies between
// two END octets is one candidate; a candidate that is too short, too
// long, badly escaped or fails its CRC is dropped and counted, and the
// next END starts afresh, so one burst of noise costs at most the frame
// it hit.
type slipReader struct {
	buf   []byte
	esc   bool
	skip  bool // the current candidate is already lost (overflow, bad escape)
	stats framerStats
}

// feed consumes p and calls emit for every good frame. msg aliases the
// reader's buffer and is valid only during the call.
func (r *slipReader) feed(p []byte, emit func(node byte, msg []byte)) {
	for _, c := range p {
		switch {
		case c == slipEnd:
			r.end(emit)
		case r.skip:
			r.stats.noise++
		case r.esc:
			r.esc = false
			switch c {
			case slipEscEnd:
				r.add(slipEnd)
			case slipEscEsc:
				r.add(slipEsc)
			default:
				r.stats.noise += uint64(len(r.buf)) + 2
				r.buf, r.skip = r.buf[:0], true
			}
		case c == slipEsc:
			r.esc = true
		default:
			r.add(c)
		}
	}
}

func (r *slipReader) add(c byte) {
	if len(r.buf) >= maxSerialFrame {
		r.stats.tooLarge++
		r.stats.noise += uint64(len(r.buf)) + 1
		r.buf, r.skip = r.buf[:0], true
		return
	}
	r.buf = append(r.buf, c)
}

func (r *slipReader) end(emit func(byte, []byte)) {
	b, skipped, esc := r.buf, r.skip, r.esc
	r.buf, r.skip, r.esc = r.buf[:0], false, false
	if esc {
		r.stats.noise += uint64(len(b)) + 1
		return
	}
	if skipped || len(b) == 0 { // END END is idle line, not an error
		return
	}
	if len(b) < 1+2+2 {
		r.stats.noise += uint64(len(b))
		return
	}
	n := len(b) - 2
	if crc16(b[:n]) != uint16(b[n])<<8|uint16(b[n+1]) {
		r.stats.badCRC++
		return
	}
	r.stats.frames++
	emit(b[0], b[1:n])
}

// lengthReader cuts a byte stream of back-to-back MQTT-SN messages using
// their own length headers (the framing of common serial bridges). It has
// no delimiter to resynchronise on, so it guesses: an impossible length or
// an unknown message type drops one octet and tries again, and a message
// left incomplete for longer than gap is discarded, since a sender does
// not pause inside a message.
type lengthReader struct {
	buf   []byte
	last  time.Time
	gap   time.Duration
	stats framerStats
}

// feed consumes p, received at now, and calls emit for every message
// (forwarder encapsulation included). msg aliases the reader's buffer.
func (r *lengthReader) feed(p []byte, now time.Time, emit func(msg []byte)) {
	if len(r.buf) > 0 && r.gap > 0 && now.Sub(r.last) > r.gap {
		r.stats.noise += uint64(len(r.buf))
		r.buf = r.buf[:0]
	}
	r.last = now
	r.buf = append(r.buf, p...)
	off := 0
	for off < len(r.buf) {
		n, ok := r.next(r.buf[off:])
		if n < 0 { // not a message start: drop one octet
			r.stats.noise++
			off++
			continue
		}
		if !ok {
			break
		}
		r.stats.frames++
		emit(r.buf[off : off+n])
		off += n
	}
	rest := copy(r.buf, r.buf[off:])
	r.buf = r.buf[:rest]
	if cap(r.buf) > 4*maxSerialFrame && rest < maxSerialFrame {
		r.buf = append([]byte(nil), r.buf...)
	}
}

// next reports the length of the message b starts with: n < 0 if b cannot
// start one, ok false if more octets are needed.
func (r *lengthReader) next(b []byte) (n int, ok bool) {
	if !Encapsulated(b) {
		return r.plain(b)
	}
	h := int(b[0])
	if h < 4 {
		return -1, false
	}
	if len(b) < h+2 {
		return 0, false
	}
	if Encapsulated(b[h:]) {
		return -1, false
	}
	in, ok := r.plain(b[h:])
	if in < 0 {
		return -1, false
	}
	if !ok {
		return 0, false
	}
	if h+in > maxSerialFrame {
		r.stats.tooLarge++
		return -1, false
	}
	return h + in, true
}

func (r *lengthReader) plain(b []byte) (n int, ok bool) {
	total, hdr, err := FrameLen(b)
	if err == ErrShort {
		return 0, false
	}
	if err != nil || total > maxSerialFrame {
		if err == nil {
			r.stats.tooLarge++
		}
		return -1, false
	}
	if len(b) <= hdr {
		return 0, false
	}
	if !knownType(b[hdr]) {
		return -1, false // early, before waiting for a length that is chance
	}
	if len(b) < total {
		return 0, false
	}
	// A length and a type can be chance; a whole well-formed message
	// rarely is.
	if checkBody(b[hdr], b[hdr+1:total]) != nil {
		return -1, false
	}
	return total, true
}

func knownType(t byte) bool { return int(t) < len(typeNames) && typeNames[t] != "" }
