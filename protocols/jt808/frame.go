package jt808

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Frame-level errors; the channel counts them by kind.
var (
	ErrChecksum  = errors.New("jt808: bad checksum")
	ErrShort     = errors.New("jt808: frame too short")
	ErrLength    = errors.New("jt808: body length does not match header")
	ErrEscape    = errors.New("jt808: bad escape")
	ErrTooLong   = errors.New("jt808: frame longer than frame.max_length")
	ErrShortBody = errors.New("jt808: body too short")
	ErrBadPhone  = errors.New("jt808: phone is not BCD")
)

const (
	flagByte   = 0x7e
	escapeByte = 0x7d

	propLenMask  = 0x03ff
	propEncShift = 10
	propFrag     = 1 << 13
	propVer2019  = 1 << 14

	// MaxBodyLen is what the header's 10-bit length can say.
	MaxBodyLen = 0x3ff
)

// Header is a JT/T 808 message header. Version 2019 frames carry
// ProtoVer and a 20-digit phone; 2013 frames a 12-digit one.
type Header struct {
	MsgID     uint16
	Encrypt   uint8
	Len       int
	V2019     bool
	ProtoVer  uint8
	Phone     string // BCD digits, 12 or 20
	MsgSN     uint16
	FragTotal uint16 // 0: not fragmented
	FragSN    uint16
}

// Deframer splits a byte stream into unescaped frames (without the 0x7e
// delimiters). It keeps its state across reads, including a 0x7d that
// ends one read and is completed by the next.
type Deframer struct {
	max     int
	buf     []byte
	inFrame bool
	esc     bool
	bad     error // set while skipping the rest of a bad frame
	// Garbage counts bytes skipped before a frame's first 0x7e.
	Garbage int
}

// NewDeframer returns a Deframer that refuses frames longer than max
// escaped bytes between delimiters (0: no limit).
func NewDeframer(max int) *Deframer { return &Deframer{max: max} }

// Feed consumes p and calls emit with each complete frame, or with a nil
// frame and an error for a frame that had to be dropped. The frame slice
// is only valid during the call.
func (d *Deframer) Feed(p []byte, emit func(frame []byte, err error)) {
	for _, c := range p {
		if !d.inFrame {
			if c == flagByte {
				d.inFrame = true
				d.buf = d.buf[:0]
				d.esc, d.bad = false, nil
			} else {
				d.Garbage++
			}
			continue
		}
		if c == flagByte {
			switch {
			case d.bad != nil:
				emit(nil, d.bad)
			case d.esc:
				emit(nil, ErrEscape)
			case len(d.buf) > 0:
				emit(d.buf, nil)
			}
			// The closing 0x7e may also open the next frame, as some
			// terminals share one delimiter between frames.
			d.buf = d.buf[:0]
			d.esc, d.bad = false, nil
			continue
		}
		if d.bad != nil {
			continue
		}
		if d.max > 0 && len(d.buf) >= d.max {
			d.bad = ErrTooLong
			d.buf = d.buf[:0]
			continue
		}
		if d.esc {
			d.esc = false
			switch c {
			case 0x01:
				d.buf = append(d.buf, escapeByte)
			case 0x02:
				d.buf = append(d.buf, flagByte)
			default:
				d.bad = ErrEscape
			}
			continue
		}
		if c == escapeByte {
			d.esc = true
			continue
		}
		d.buf = append(d.buf, c)
	}
}

// ParseFrame checks the checksum of an unescaped frame and splits it into
// header and body (the body aliases raw).
func ParseFrame(raw []byte) (Header, []byte, error) {
	var h Header
	if len(raw) < 13 {
		return h, nil, ErrShort
	}
	var x byte
	for _, c := range raw[:len(raw)-1] {
		x ^= c
	}
	if x != raw[len(raw)-1] {
		return h, nil, ErrChecksum
	}
	raw = raw[:len(raw)-1]
	h.MsgID = binary.BigEndian.Uint16(raw)
	props := binary.BigEndian.Uint16(raw[2:])
	h.Len = int(props & propLenMask)
	h.Encrypt = uint8(props>>propEncShift) & 7
	h.V2019 = props&propVer2019 != 0
	p := raw[4:]
	plen := 6
	if h.V2019 {
		plen = 10
		if len(p) < 1 {
			return h, nil, ErrShort
		}
		h.ProtoVer = p[0]
		p = p[1:]
	}
	if len(p) < plen+2 {
		return h, nil, ErrShort
	}
	phone, ok := bcdString(p[:plen])
	if !ok {
		return h, nil, ErrBadPhone
	}
	h.Phone = phone
	h.MsgSN = binary.BigEndian.Uint16(p[plen:])
	p = p[plen+2:]
	if props&propFrag != 0 {
		if len(p) < 4 {
			return h, nil, ErrShort
		}
		h.FragTotal = binary.BigEndian.Uint16(p)
		h.FragSN = binary.BigEndian.Uint16(p[2:])
		p = p[4:]
		if h.FragTotal == 0 || h.FragSN == 0 || h.FragSN > h.FragTotal {
			return h, nil, fmt.Errorf("%w: fragment %d of %d", ErrLength, h.FragSN, h.FragTotal)
		}
	}
	if len(p) != h.Len {
		return h, nil, fmt.Errorf("%w: header says %d, got %d", ErrLength, h.Len, len(p))
	}
	return h, p, nil
}

// AppendFrame appends a complete escaped frame (delimiters included) for
// h and body; h.Len is taken from body.
func AppendFrame(dst []byte, h *Header, body []byte) ([]byte, error) {
	if len(body) > MaxBodyLen {
		return dst, fmt.Errorf("jt808: body of %d bytes needs sub-packages", len(body))
	}
	var hb [21]byte
	props := uint16(len(body)) | uint16(h.Encrypt&7)<<propEncShift
	if h.V2019 {
		props |= propVer2019
	}
	if h.FragTotal > 0 {
		props |= propFrag
	}
	binary.BigEndian.PutUint16(hb[0:], h.MsgID)
	binary.BigEndian.PutUint16(hb[2:], props)
	n := 4
	plen := 6
	if h.V2019 {
		hb[n] = h.ProtoVer
		n++
		plen = 10
	}
	if err := putBCD(hb[n:n+plen], h.Phone); err != nil {
		return dst, err
	}
	n += plen
	binary.BigEndian.PutUint16(hb[n:], h.MsgSN)
	n += 2
	if h.FragTotal > 0 {
		binary.BigEndian.PutUint16(hb[n:], h.FragTotal)
		binary.BigEndian.PutUint16(hb[n+2:], h.FragSN)
		n += 4
	}
	var x byte
	dst = append(dst, flagByte)
	for _, part := range [2][]byte{hb[:n], body} {
		for _, c := range part {
			x ^= c
			dst = appendEscaped(dst, c)
		}
	}
	dst = appendEscaped(dst, x)
	return append(dst, flagByte), nil
}

func appendEscaped(dst []byte, c byte) []byte {
	switch c {
	case flagByte:
		return append(dst, escapeByte, 0x02)
	case escapeByte:
		return append(dst, escapeByte, 0x01)
	}
	return append(dst, c)
}

func bcdString(b []byte) (string, bool) {
	out := make([]byte, 2*len(b))
	for i, c := range b {
		hi, lo := c>>4, c&0xf
		if hi > 9 || lo > 9 {
			return "", false
		}
		out[2*i], out[2*i+1] = '0'+hi, '0'+lo
	}
	return string(out), true
}

// putBCD writes digits right-aligned into dst, left-padded with zeros.
func putBCD(dst []byte, digits string) error {
	if len(digits) > 2*len(dst) {
		return fmt.Errorf("jt808: %q is longer than BCD[%d]", digits, len(dst))
	}
	pad := 2*len(dst) - len(digits)
	for i := range dst {
		dst[i] = 0
	}
	for i := 0; i < len(digits); i++ {
		c := digits[i]
		if c < '0' || c > '9' {
			return fmt.Errorf("jt808: %q is not decimal digits", digits)
		}
		pos := pad + i
		if pos%2 == 0 {
			dst[pos/2] |= (c - '0') << 4
		} else {
			dst[pos/2] |= c - '0'
		}
	}
	return nil
}
