package coap

import (
	"cmp"
	"encoding/binary"
	"errors"
	"slices"
	"strings"
)

// The codec is edgeway's own, strict where go-coap's decoder is lenient on
// purpose: go-coap skips options of illegal length, cannot tell a payload
// marker with no payload from no payload, and does not report duplicate
// critical options, all of which EMQX answers (RST, 4.02) and so do we.

// Message types (RFC 7252 §3).
const (
	CON uint8 = 0
	NON uint8 = 1
	ACK uint8 = 2
	RST uint8 = 3
)

// Codes used here, as class<<5|detail.
const (
	codeEmpty    uint8 = 0
	codeGET      uint8 = 1
	codePOST     uint8 = 2
	codePUT      uint8 = 3
	codeDELETE   uint8 = 4
	codeCreated  uint8 = 2<<5 | 1
	codeDeleted  uint8 = 2<<5 | 2
	codeValid    uint8 = 2<<5 | 3
	codeChanged  uint8 = 2<<5 | 4
	codeContent  uint8 = 2<<5 | 5
	codeContinue uint8 = 2<<5 | 31
	codeBadReq   uint8 = 4<<5 | 0
	codeUnauth   uint8 = 4<<5 | 1
	codeBadOpt   uint8 = 4<<5 | 2
	codeNotFound uint8 = 4<<5 | 4
	codeNotAllow uint8 = 4<<5 | 5
	codeIncompl  uint8 = 4<<5 | 8
	codeTooLarge uint8 = 4<<5 | 13
	codeInternal uint8 = 5<<5 | 0
	codeUnavail  uint8 = 5<<5 | 3
)

// Option numbers used here (RFC 7252, 7641, 7959).
const (
	optIfMatch       uint16 = 1
	optURIHost       uint16 = 3
	optETag          uint16 = 4
	optIfNoneMatch   uint16 = 5
	optObserve       uint16 = 6
	optURIPort       uint16 = 7
	optLocationPath  uint16 = 8
	optURIPath       uint16 = 11
	optContentFormat uint16 = 12
	optMaxAge        uint16 = 14
	optURIQuery      uint16 = 15
	optAccept        uint16 = 17
	optLocationQuery uint16 = 20
	optBlock2        uint16 = 23
	optBlock1        uint16 = 27
	optSize2         uint16 = 28
	optProxyURI      uint16 = 35
	optProxyScheme   uint16 = 39
	optSize1         uint16 = 60
	optNoResponse    uint16 = 258
)

// optDef is what the codec knows of an option: its length range and
// whether it may repeat.
type optDef struct {
	min, max   int
	repeatable bool
}

var optDefs = map[uint16]optDef{
	optIfMatch: {0, 8, true}, optURIHost: {1, 255, false}, optETag: {1, 8, true},
	optIfNoneMatch: {0, 0, false}, optObserve: {0, 3, false}, optURIPort: {0, 2, false},
	optLocationPath: {0, 255, true}, optURIPath: {0, 255, true}, optContentFormat: {0, 2, false},
	optMaxAge: {0, 4, false}, optURIQuery: {0, 255, true}, optAccept: {0, 2, false},
	optLocationQuery: {0, 255, true}, optBlock2: {0, 3, false}, optBlock1: {0, 3, false},
	optSize2: {0, 4, false}, optProxyURI: {1, 1034, false}, optProxyScheme: {1, 255, false},
	optSize1: {0, 4, false}, optNoResponse: {0, 1, false},
}

func critical(id uint16) bool { return id&1 == 1 }

// Option is one option as on the wire.
type Option struct {
	ID    uint16
	Value []byte
}

// Message is a decoded CoAP message. Slices point into the datagram.
type Message struct {
	Type    uint8
	Code    uint8
	MID     uint16
	Token   []byte
	Options []Option // in wire order (ascending ID)
	Payload []byte
}

// Decode errors. The channel maps each to the reply RFC 7252 and EMQX give.
var (
	ErrShort        = errors.New("coap: message shorter than 4 bytes")
	ErrVersion      = errors.New("coap: unknown version")
	ErrTKL          = errors.New("coap: token length over 8")
	ErrTruncated    = errors.New("coap: truncated token or option")
	ErrOptionFormat = errors.New("coap: reserved option delta or length nibble 15")
	ErrEmptyPayload = errors.New("coap: payload marker with no payload")
	ErrEmptyNotRaw  = errors.New("coap: empty message with token, options or payload")
	ErrBadOption    = errors.New("coap: bad critical option")
)

// Decode parses one datagram. It returns the partly decoded message with
// an error, so the caller can still answer its message ID and token: m.MID
// and m.Type are valid after any error but ErrShort/ErrVersion, m.Token
// after any error but those and ErrTKL. ErrBadOption is reported only
// after the whole message parsed (options of illegal length are kept so
// the channel can answer 4.02 for a critical one).
func Decode(b []byte, m *Message) error {
	*m = Message{Options: m.Options[:0]}
	if len(b) < 4 {
		return ErrShort
	}
	if b[0]>>6 != 1 {
		return ErrVersion
	}
	m.Type = (b[0] >> 4) & 3
	tkl := int(b[0] & 0xf)
	m.Code = b[1]
	m.MID = binary.BigEndian.Uint16(b[2:4])
	if tkl > 8 {
		return ErrTKL
	}
	b = b[4:]
	if len(b) < tkl {
		return ErrTruncated
	}
	if tkl > 0 {
		m.Token = b[:tkl]
	}
	b = b[tkl:]
	if m.Code == codeEmpty && (tkl > 0 || len(b) > 0) {
		return ErrEmptyNotRaw
	}
	var id uint16
	bad := false
	for len(b) > 0 {
		if b[0] == 0xff {
			if len(b) == 1 {
				return ErrEmptyPayload
			}
			m.Payload = b[1:]
			break
		}
		delta, length := int(b[0]>>4), int(b[0]&0xf)
		b = b[1:]
		var ok bool
		if delta, b, ok = extend(delta, b); !ok {
			return ErrOptionFormat
		}
		if length, b, ok = extend(length, b); !ok {
			return ErrOptionFormat
		}
		if delta < 0 || length < 0 {
			return ErrTruncated
		}
		if int(id)+delta > 0xffff {
			return ErrOptionFormat
		}
		id += uint16(delta)
		if len(b) < length {
			return ErrTruncated
		}
		v := b[:length]
		b = b[length:]
		if critical(id) {
			def, known := optDefs[id]
			if !known || length < def.min || length > def.max {
				bad = true
			} else if !def.repeatable && len(m.Options) > 0 && m.Options[len(m.Options)-1].ID == id {
				bad = true
			}
		}
		m.Options = append(m.Options, Option{ID: id, Value: v})
	}
	if bad {
		return ErrBadOption
	}
	return nil
}

// extend reads an extended delta or length; ok is false for nibble 15.
// A truncated extension returns -1.
func extend(n int, b []byte) (int, []byte, bool) {
	switch n {
	case 13:
		if len(b) < 1 {
			return -1, b, true
		}
		return int(b[0]) + 13, b[1:], true
	case 14:
		if len(b) < 2 {
			return -1, b, true
		}
		return int(binary.BigEndian.Uint16(b)) + 269, b[2:], true
	case 15:
		return 0, b, false
	}
	return n, b, true
}

// Append encodes m after dst. Options are written in ascending ID
// order, same IDs in the order given.
func Append(dst []byte, m *Message) []byte {
	opts := m.Options
	if !slices.IsSortedFunc(opts, byID) {
		opts = slices.Clone(opts)
		slices.SortStableFunc(opts, byID)
	}
	dst = append(dst, 1<<6|m.Type<<4|byte(len(m.Token)), m.Code, byte(m.MID>>8), byte(m.MID))
	dst = append(dst, m.Token...)
	var prev uint16
	for _, o := range opts {
		d, l := int(o.ID-prev), len(o.Value)
		prev = o.ID
		dn, dx := nibble(d)
		ln, lx := nibble(l)
		dst = append(dst, byte(dn<<4|ln))
		dst = appendExt(dst, dn, dx)
		dst = appendExt(dst, ln, lx)
		dst = append(dst, o.Value...)
	}
	if len(m.Payload) > 0 {
		dst = append(dst, 0xff)
		dst = append(dst, m.Payload...)
	}
	return dst
}

func byID(a, b Option) int { return cmp.Compare(a.ID, b.ID) }

func nibble(n int) (int, int) {
	switch {
	case n < 13:
		return n, 0
	case n < 269:
		return 13, n - 13
	default:
		return 14, n - 269
	}
}

func appendExt(dst []byte, n, x int) []byte {
	switch n {
	case 13:
		return append(dst, byte(x))
	case 14:
		return append(dst, byte(x>>8), byte(x))
	}
	return dst
}

// uintValue encodes v in the fewest bytes (0 is empty).
func uintValue(v uint32) []byte {
	switch {
	case v == 0:
		return nil
	case v < 1<<8:
		return []byte{byte(v)}
	case v < 1<<16:
		return []byte{byte(v >> 8), byte(v)}
	case v < 1<<24:
		return []byte{byte(v >> 16), byte(v >> 8), byte(v)}
	}
	return []byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

func decodeUint(b []byte) uint32 {
	var v uint32
	for _, c := range b {
		v = v<<8 | uint32(c)
	}
	return v
}

// Opt returns the first option id and whether there was one.
func (m *Message) Opt(id uint16) ([]byte, bool) {
	for _, o := range m.Options {
		if o.ID == id {
			return o.Value, true
		}
	}
	return nil, false
}

// Path is the Uri-Path segments joined with "/", each already decoded
// (CoAP carries them unescaped; a client that percent-encodes them, as
// EMQX documents for + and #, gets them decoded here).
func (m *Message) Path() []string {
	var segs []string
	for _, o := range m.Options {
		if o.ID == optURIPath {
			segs = append(segs, unescape(string(o.Value)))
		}
	}
	return segs
}

// Query is the Uri-Query options as key=value pairs.
func (m *Message) Query() map[string]string {
	var q map[string]string
	for _, o := range m.Options {
		if o.ID != optURIQuery {
			continue
		}
		if q == nil {
			q = map[string]string{}
		}
		k, v, _ := strings.Cut(string(o.Value), "=")
		q[unescape(k)] = unescape(v)
	}
	return q
}

func unescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if h, ok := unhex(s[i+1]); ok {
				if l, ok := unhex(s[i+2]); ok {
					b.WriteByte(h<<4 | l)
					i += 2
					continue
				}
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// block is a Block1/Block2 option value (RFC 7959 §2.2).
type block struct {
	num  uint32
	more bool
	szx  uint8
}

func (b block) size() int { return 1 << (b.szx + 4) }

func parseBlock(v []byte) (block, bool) {
	x := decodeUint(v)
	b := block{num: x >> 4, more: x&8 != 0, szx: uint8(x & 7)}
	return b, b.szx != 7
}

func (b block) value() []byte {
	x := b.num<<4 | uint32(b.szx)
	if b.more {
		x |= 8
	}
	return uintValue(x)
}

// szxFor is the SZX of a block size (a power of two, 16..1024).
func szxFor(size int) uint8 {
	var s uint8
	for 16<<s < size && s < 6 {
		s++
	}
	return s
}
