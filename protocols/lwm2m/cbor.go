package lwm2m

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// A small CBOR (RFC 8949) codec, enough for SenML CBOR (RFC 8428 §6):
// unsigned and negative integers, byte and text strings, arrays, maps,
// floats of 16, 32 and 64 bits, true, false and null. Indefinite lengths
// and tags are refused. Decoded values are int64, float64, []byte,
// string, []any, map[any]any (keys int64 or string), bool and nil.

var errCBORTruncated = errors.New("lwm2m/cbor: truncated")

const cborMaxDepth = 8

func cborDecode(b []byte) (any, error) {
	v, rest, err := cborItem(b, 0)
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("lwm2m/cbor: %d bytes after the item", len(rest))
	}
	return v, nil
}

func cborHead(b []byte) (major byte, arg uint64, rest []byte, err error) {
	if len(b) < 1 {
		return 0, 0, nil, errCBORTruncated
	}
	major, ai := b[0]>>5, b[0]&0x1f
	b = b[1:]
	switch {
	case ai < 24:
		return major, uint64(ai), b, nil
	case ai <= 27:
		n := 1 << (ai - 24)
		if len(b) < n {
			return 0, 0, nil, errCBORTruncated
		}
		for i := 0; i < n; i++ {
			arg = arg<<8 | uint64(b[i])
		}
		return major, arg, b[n:], nil
	}
	return 0, 0, nil, fmt.Errorf("lwm2m/cbor: unsupported additional info %d", ai)
}

func cborItem(b []byte, depth int) (any, []byte, error) {
	if depth > cborMaxDepth {
		return nil, nil, errors.New("lwm2m/cbor: nested too deep")
	}
	if len(b) > 0 && b[0]>>5 == 7 {
		return cborSimple(b)
	}
	major, arg, b, err := cborHead(b)
	if err != nil {
		return nil, nil, err
	}
	switch major {
	case 0:
		if arg > math.MaxInt64 {
			return nil, nil, errors.New("lwm2m/cbor: integer overflow")
		}
		return int64(arg), b, nil
	case 1:
		if arg > math.MaxInt64 {
			return nil, nil, errors.New("lwm2m/cbor: integer overflow")
		}
		return -1 - int64(arg), b, nil
	case 2, 3:
		if arg > uint64(len(b)) {
			return nil, nil, errCBORTruncated
		}
		s := b[:arg]
		if major == 2 {
			return append([]byte{}, s...), b[arg:], nil
		}
		return string(s), b[arg:], nil
	case 4:
		if arg > uint64(len(b)) { // every item takes at least a byte
			return nil, nil, errCBORTruncated
		}
		out := make([]any, 0, arg)
		for i := uint64(0); i < arg; i++ {
			var v any
			if v, b, err = cborItem(b, depth+1); err != nil {
				return nil, nil, err
			}
			out = append(out, v)
		}
		return out, b, nil
	case 5:
		if arg > uint64(len(b))/2 {
			return nil, nil, errCBORTruncated
		}
		out := make(map[any]any, arg)
		for i := uint64(0); i < arg; i++ {
			var k, v any
			if k, b, err = cborItem(b, depth+1); err != nil {
				return nil, nil, err
			}
			switch k.(type) {
			case int64, string:
			default:
				return nil, nil, fmt.Errorf("lwm2m/cbor: map key of type %T", k)
			}
			if v, b, err = cborItem(b, depth+1); err != nil {
				return nil, nil, err
			}
			out[k] = v
		}
		return out, b, nil
	}
	return nil, nil, fmt.Errorf("lwm2m/cbor: unsupported major type %d", major)
}

func cborSimple(b []byte) (any, []byte, error) {
	ai := b[0] & 0x1f
	b = b[1:]
	switch ai {
	case 20:
		return false, b, nil
	case 21:
		return true, b, nil
	case 22:
		return nil, b, nil
	case 25:
		if len(b) < 2 {
			return nil, nil, errCBORTruncated
		}
		return halfToFloat(binary.BigEndian.Uint16(b)), b[2:], nil
	case 26:
		if len(b) < 4 {
			return nil, nil, errCBORTruncated
		}
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), b[4:], nil
	case 27:
		if len(b) < 8 {
			return nil, nil, errCBORTruncated
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b)), b[8:], nil
	}
	return nil, nil, fmt.Errorf("lwm2m/cbor: unsupported simple value %d", ai)
}

func halfToFloat(h uint16) float64 {
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	var v float64
	switch exp {
	case 0:
		v = math.Ldexp(mant, -24)
	case 31:
		if mant == 0 {
			v = math.Inf(1)
		} else {
			v = math.NaN()
		}
	default:
		v = math.Ldexp(mant+1024, exp-25)
	}
	if h&0x8000 != 0 {
		return -v
	}
	return v
}

func cborAppendHead(dst []byte, major byte, arg uint64) []byte {
	m := major << 5
	switch {
	case arg < 24:
		return append(dst, m|byte(arg))
	case arg <= math.MaxUint8:
		return append(dst, m|24, byte(arg))
	case arg <= math.MaxUint16:
		return binary.BigEndian.AppendUint16(append(dst, m|25), uint16(arg))
	case arg <= math.MaxUint32:
		return binary.BigEndian.AppendUint32(append(dst, m|26), uint32(arg))
	}
	return binary.BigEndian.AppendUint64(append(dst, m|27), arg)
}

// cborAppend encodes the value types cborDecode produces (and int, float32).
// Map keys are written in the order given by keys when v is a cborMap.
func cborAppend(dst []byte, v any) []byte {
	switch t := v.(type) {
	case nil:
		return append(dst, 0xf6)
	case bool:
		if t {
			return append(dst, 0xf5)
		}
		return append(dst, 0xf4)
	case int:
		return cborAppend(dst, int64(t))
	case int64:
		if t >= 0 {
			return cborAppendHead(dst, 0, uint64(t))
		}
		return cborAppendHead(dst, 1, uint64(-1-t))
	case float64:
		if f := float32(t); float64(f) == t {
			return binary.BigEndian.AppendUint32(append(dst, 0xfa), math.Float32bits(f))
		}
		return binary.BigEndian.AppendUint64(append(dst, 0xfb), math.Float64bits(t))
	case []byte:
		return append(cborAppendHead(dst, 2, uint64(len(t))), t...)
	case string:
		return append(cborAppendHead(dst, 3, uint64(len(t))), t...)
	case []any:
		dst = cborAppendHead(dst, 4, uint64(len(t)))
		for _, e := range t {
			dst = cborAppend(dst, e)
		}
		return dst
	case cborMap:
		dst = cborAppendHead(dst, 5, uint64(len(t)))
		for _, kv := range t {
			dst = cborAppend(cborAppend(dst, kv.k), kv.v)
		}
		return dst
	}
	panic(fmt.Sprintf("lwm2m/cbor: cannot encode %T", v))
}

// cborMap is an ordered map for encoding.
type cborMap []cborKV

type cborKV struct{ k, v any }
