package lwm2m

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// TLVKind is the identifier type of an OMA TLV entry (bits 7-6).
type TLVKind uint8

// TLV identifier types.
const (
	TLVObjectInstance   TLVKind = 0
	TLVResourceInstance TLVKind = 1
	TLVMultipleResource TLVKind = 2
	TLVResource         TLVKind = 3
)

// TLV is one OMA LwM2M TLV entry. Object instances and multiple resources
// carry Children; the other kinds carry Value.
type TLV struct {
	Kind     TLVKind
	ID       uint16
	Value    []byte
	Children []TLV
}

var errTLVTruncated = errors.New("lwm2m/tlv: truncated")

// maxTLVDepth: object instance > multiple resource > resource instance.
const maxTLVDepth = 3

// DecodeTLV parses a TLV payload. Values alias b.
func DecodeTLV(b []byte) ([]TLV, error) { return decodeTLV(b, 0) }

func decodeTLV(b []byte, depth int) ([]TLV, error) {
	if depth >= maxTLVDepth {
		return nil, errors.New("lwm2m/tlv: nested too deep")
	}
	var out []TLV
	for len(b) > 0 {
		typ := b[0]
		b = b[1:]
		t := TLV{Kind: TLVKind(typ >> 6)}
		if typ&0x20 != 0 {
			if len(b) < 2 {
				return nil, errTLVTruncated
			}
			t.ID = binary.BigEndian.Uint16(b)
			b = b[2:]
		} else {
			if len(b) < 1 {
				return nil, errTLVTruncated
			}
			t.ID = uint16(b[0])
			b = b[1:]
		}
		var n int
		switch lt := (typ >> 3) & 3; lt {
		case 0:
			n = int(typ & 7)
		default:
			if len(b) < int(lt) {
				return nil, errTLVTruncated
			}
			for i := 0; i < int(lt); i++ {
				n = n<<8 | int(b[i])
			}
			b = b[lt:]
		}
		if len(b) < n {
			return nil, fmt.Errorf("lwm2m/tlv: value of id %d needs %d bytes, %d left", t.ID, n, len(b))
		}
		v := b[:n:n]
		b = b[n:]
		switch t.Kind {
		case TLVObjectInstance, TLVMultipleResource:
			ch, err := decodeTLV(v, depth+1)
			if err != nil {
				return nil, err
			}
			if t.Kind == TLVMultipleResource {
				for _, c := range ch {
					if c.Kind != TLVResourceInstance {
						return nil, fmt.Errorf("lwm2m/tlv: multiple resource %d holds a non resource instance", t.ID)
					}
				}
			}
			t.Children = ch
			if t.Children == nil {
				t.Children = []TLV{}
			}
		default:
			t.Value = v
		}
		out = append(out, t)
	}
	return out, nil
}

// AppendTLV appends the encoding of ts to dst.
func AppendTLV(dst []byte, ts []TLV) []byte {
	for _, t := range ts {
		v := t.Value
		if t.Kind == TLVObjectInstance || t.Kind == TLVMultipleResource {
			v = AppendTLV(nil, t.Children)
		}
		typ := byte(t.Kind) << 6
		if t.ID > 255 {
			typ |= 0x20
		}
		n := len(v)
		switch {
		case n < 8:
			typ |= byte(n)
		case n < 1<<8:
			typ |= 1 << 3
		case n < 1<<16:
			typ |= 2 << 3
		default:
			typ |= 3 << 3
		}
		dst = append(dst, typ)
		if t.ID > 255 {
			dst = binary.BigEndian.AppendUint16(dst, t.ID)
		} else {
			dst = append(dst, byte(t.ID))
		}
		switch {
		case n < 8:
		case n < 1<<8:
			dst = append(dst, byte(n))
		case n < 1<<16:
			dst = binary.BigEndian.AppendUint16(dst, uint16(n))
		default:
			dst = append(dst, byte(n>>16), byte(n>>8), byte(n))
		}
		dst = append(dst, v...)
	}
	return dst
}

// tlvInt encodes an integer in the fewest of 1, 2, 4 or 8 bytes.
func tlvInt(v int64) []byte {
	switch {
	case v >= math.MinInt8 && v <= math.MaxInt8:
		return []byte{byte(v)}
	case v >= math.MinInt16 && v <= math.MaxInt16:
		return binary.BigEndian.AppendUint16(nil, uint16(v))
	case v >= math.MinInt32 && v <= math.MaxInt32:
		return binary.BigEndian.AppendUint32(nil, uint32(v))
	}
	return binary.BigEndian.AppendUint64(nil, uint64(v))
}

func tlvToInt(b []byte) (int64, error) {
	switch len(b) {
	case 1:
		return int64(int8(b[0])), nil
	case 2:
		return int64(int16(binary.BigEndian.Uint16(b))), nil
	case 4:
		return int64(int32(binary.BigEndian.Uint32(b))), nil
	case 8:
		return int64(binary.BigEndian.Uint64(b)), nil
	}
	return 0, fmt.Errorf("lwm2m/tlv: integer of %d bytes", len(b))
}

func tlvFloat(v float64) []byte {
	if float64(float32(v)) == v {
		return binary.BigEndian.AppendUint32(nil, math.Float32bits(float32(v)))
	}
	return binary.BigEndian.AppendUint64(nil, math.Float64bits(v))
}

func tlvToFloat(b []byte) (float64, error) {
	switch len(b) {
	case 4:
		return float64(math.Float32frombits(binary.BigEndian.Uint32(b))), nil
	case 8:
		return math.Float64frombits(binary.BigEndian.Uint64(b)), nil
	}
	return 0, fmt.Errorf("lwm2m/tlv: float of %d bytes", len(b))
}
