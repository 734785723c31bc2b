package jt808

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/text/encoding/simplifiedchinese"
)

// obj is a decoded body: keys in wire order, so the JSON reads like the
// standard's tables. Values are int64, string, obj or []any.
type obj []kv

type kv struct {
	k string
	v any
}

func (o obj) get(k string) (any, bool) {
	for _, e := range o {
		if e.k == k {
			return e.v, true
		}
	}
	return nil, false
}

// charset converts STRING fields between the wire and UTF-8 JSON.
type charset struct{ gbk bool }

func (c charset) decode(b []byte) string {
	if !c.gbk {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	s, err := simplifiedchinese.GBK.NewDecoder().Bytes(b)
	if err != nil {
		return strings.ToValidUTF8(string(b), "\uFFFD")
	}
	return string(s)
}

func (c charset) encode(s string) ([]byte, error) {
	if !c.gbk {
		return []byte(s), nil
	}
	b, err := simplifiedchinese.GBK.NewEncoder().Bytes([]byte(s))
	if err != nil {
		return nil, fmt.Errorf("jt808: %q has no GBK encoding: %w", s, err)
	}
	return b, nil
}

// ---- field specs ----

type fk uint8

const (
	fU8 fk = iota
	fU16
	fU32
	fBCD      // n bytes of BCD digits, a string
	fStrN     // n bytes, zero padded
	fStrEnd   // the rest of the body
	fStrL     // n-byte length, then the string; lenKey names the length
	fBytesEnd // the rest, base64
	fBytesN   // n bytes, base64
	fBytesL   // n-byte length, then bytes (base64)
	fList     // n-byte count (lenKey), then elements
	fListEnd  // elements until the body ends
	fLoc      // a location report body to the end
	fLocN     // a 28-byte location report
	fLocL16   // WORD length, then a location body
	fCustom
)

// when makes a field conditional on a bit of an earlier integer field.
type when struct {
	key string
	bit uint
}

type custom struct {
	dec func(d *decoder, o *obj) error
	enc func(e *encoder, m map[string]any) error
}

type field struct {
	key    string
	k      fk
	n      int
	lenKey string
	elem   []field
	ver    int // 0 both, 2013 or 2019
	opt    bool
	cond   *when
	c      *custom
}

func u8(k string) field          { return field{key: k, k: fU8} }
func u16(k string) field         { return field{key: k, k: fU16} }
func u32(k string) field         { return field{key: k, k: fU32} }
func bcd(k string, n int) field  { return field{key: k, k: fBCD, n: n} }
func strN(k string, n int) field { return field{key: k, k: fStrN, n: n} }
func strEnd(k string) field      { return field{key: k, k: fStrEnd} }
func strL(k, lenKey string, n int) field {
	return field{key: k, k: fStrL, n: n, lenKey: lenKey}
}
func bytesEnd(k string) field      { return field{key: k, k: fBytesEnd} }
func bytesN(k string, n int) field { return field{key: k, k: fBytesN, n: n} }
func bytesL(k, lenKey string, n int) field {
	return field{key: k, k: fBytesL, n: n, lenKey: lenKey}
}
func list(k, lenKey string, n int, elem ...field) field {
	return field{key: k, k: fList, n: n, lenKey: lenKey, elem: elem}
}
func listEnd(k string, elem ...field) field { return field{key: k, k: fListEnd, elem: elem} }
func v13(f field) field                     { f.ver = 2013; return f }
func v19(f field) field                     { f.ver = 2019; return f }
func opt(f field) field                     { f.opt = true; return f }
func iff(key string, bit uint, f field) field {
	f.cond = &when{key, bit}
	return f
}
func both(f2013, f2019 field) []field { return []field{v13(f2013), v19(f2019)} }

// ---- decoding ----

type decoder struct {
	b   []byte
	v19 bool
	cs  charset
}

func (d *decoder) need(n int) error {
	if len(d.b) < n {
		return fmt.Errorf("%w: need %d bytes, have %d", ErrShortBody, n, len(d.b))
	}
	return nil
}

func (d *decoder) uint(n int) (int64, error) {
	if err := d.need(n); err != nil {
		return 0, err
	}
	var v int64
	for _, c := range d.b[:n] {
		v = v<<8 | int64(c)
	}
	d.b = d.b[n:]
	return v, nil
}

func (d *decoder) take(n int) ([]byte, error) {
	if err := d.need(n); err != nil {
		return nil, err
	}
	p := d.b[:n]
	d.b = d.b[n:]
	return p, nil
}

func trimZero(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

func intOf(v any) (int64, bool) {
	switch x := v.(type) {
	case int64:
		return x, true
	case json.Number:
		n, err := x.Int64()
		return n, err == nil
	case float64:
		return int64(x), x == float64(int64(x))
	}
	return 0, false
}

func (d *decoder) fields(fs []field, o *obj) error {
	for i := range fs {
		f := &fs[i]
		if (f.ver == 2013 && d.v19) || (f.ver == 2019 && !d.v19) {
			continue
		}
		if f.cond != nil {
			v, _ := o.get(f.cond.key)
			n, _ := intOf(v)
			if n&(1<<f.cond.bit) == 0 {
				continue
			}
		}
		if f.opt && len(d.b) == 0 {
			return nil
		}
		if err := d.field(f, o); err != nil {
			if f.key != "" {
				return fmt.Errorf("%s: %w", f.key, err)
			}
			return err
		}
	}
	return nil
}

func (d *decoder) field(f *field, o *obj) error {
	var v any
	switch f.k {
	case fU8, fU16, fU32:
		n, err := d.uint(1 << (f.k - fU8))
		if err != nil {
			return err
		}
		v = n
	case fBCD:
		p, err := d.take(f.n)
		if err != nil {
			return err
		}
		s, ok := bcdString(p)
		if !ok {
			return fmt.Errorf("not BCD")
		}
		v = s
	case fStrN:
		p, err := d.take(f.n)
		if err != nil {
			return err
		}
		v = d.cs.decode(trimZero(p))
	case fStrEnd:
		v = d.cs.decode(trimZero(d.b))
		d.b = nil
	case fStrL, fBytesL:
		n, err := d.uint(f.n)
		if err != nil {
			return err
		}
		p, err := d.take(int(n))
		if err != nil {
			return err
		}
		if f.lenKey != "" {
			*o = append(*o, kv{f.lenKey, n})
		}
		if f.k == fStrL {
			v = d.cs.decode(trimZero(p))
		} else {
			v = base64.StdEncoding.EncodeToString(p)
		}
	case fBytesEnd:
		v = base64.StdEncoding.EncodeToString(d.b)
		d.b = nil
	case fBytesN:
		p, err := d.take(f.n)
		if err != nil {
			return err
		}
		v = base64.StdEncoding.EncodeToString(p)
	case fList, fListEnd:
		count := int64(-1)
		if f.k == fList {
			n, err := d.uint(f.n)
			if err != nil {
				return err
			}
			count = n
			if f.lenKey != "" {
				*o = append(*o, kv{f.lenKey, n})
			}
		}
		items := []any{}
		for i := int64(0); count < 0 || i < count; i++ {
			if count < 0 && len(d.b) == 0 {
				break
			}
			if count > 0 && len(d.b) == 0 {
				return fmt.Errorf("%w: %d of %d items", ErrShortBody, i, count)
			}
			var e obj
			if err := d.fields(f.elem, &e); err != nil {
				return err
			}
			if len(f.elem) == 1 && f.elem[0].key == "" {
				items = append(items, e[0].v)
			} else {
				items = append(items, e)
			}
		}
		v = items
	case fLoc:
		l, err := decodeLocation(d, d.b)
		if err != nil {
			return err
		}
		d.b = nil
		v = l
	case fLocN, fLocL16:
		n := 28
		if f.k == fLocL16 {
			m, err := d.uint(2)
			if err != nil {
				return err
			}
			n = int(m)
		}
		p, err := d.take(n)
		if err != nil {
			return err
		}
		l, err := decodeLocation(d, p)
		if err != nil {
			return err
		}
		v = l
	case fCustom:
		return f.c.dec(d, o)
	}
	*o = append(*o, kv{f.key, v})
	return nil
}

// ---- encoding ----

type encoder struct {
	b   []byte
	v19 bool
	cs  charset
}

func (e *encoder) putUint(n int, v int64) {
	for i := n - 1; i >= 0; i-- {
		e.b = append(e.b, byte(v>>(8*i)))
	}
}

func getInt(m map[string]any, k string) (int64, error) {
	v, ok := m[k]
	if !ok {
		return 0, fmt.Errorf("missing %q", k)
	}
	n, ok := intOf(v)
	if !ok {
		return 0, fmt.Errorf("%q must be an integer", k)
	}
	return n, nil
}

func getStr(m map[string]any, k string) (string, error) {
	v, ok := m[k]
	if !ok {
		return "", fmt.Errorf("missing %q", k)
	}
	s, ok := v.(string)
	if !ok {
		return "", fmt.Errorf("%q must be a string", k)
	}
	return s, nil
}

func getB64(m map[string]any, k string) ([]byte, error) {
	s, err := getStr(m, k)
	if err != nil {
		return nil, err
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("%q is not base64: %w", k, err)
	}
	return b, nil
}

func fits(v int64, n int) bool { return v >= 0 && (n >= 8 || v < int64(1)<<(8*n)) }

func (e *encoder) fields(fs []field, m map[string]any) error {
	for i := range fs {
		f := &fs[i]
		if (f.ver == 2013 && e.v19) || (f.ver == 2019 && !e.v19) {
			continue
		}
		if f.cond != nil {
			n, _ := intOf(m[f.cond.key])
			if n&(1<<f.cond.bit) == 0 {
				continue
			}
		}
		if f.opt {
			if _, ok := m[f.key]; !ok && f.k != fCustom {
				return nil
			}
		}
		if err := e.field(f, m); err != nil {
			if f.key != "" {
				return fmt.Errorf("%s: %w", f.key, err)
			}
			return err
		}
	}
	return nil
}

func (e *encoder) str(m map[string]any, k string) ([]byte, error) {
	s, err := getStr(m, k)
	if err != nil {
		return nil, err
	}
	return e.cs.encode(s)
}

func (e *encoder) field(f *field, m map[string]any) error {
	switch f.k {
	case fU8, fU16, fU32:
		n := 1 << (f.k - fU8)
		v, err := getInt(m, f.key)
		if err != nil {
			return err
		}
		if !fits(v, n) {
			return fmt.Errorf("%d does not fit %d bytes", v, n)
		}
		e.putUint(n, v)
	case fBCD:
		s, err := getStr(m, f.key)
		if err != nil {
			return err
		}
		p := make([]byte, f.n)
		if err := putBCD(p, s); err != nil {
			return err
		}
		e.b = append(e.b, p...)
	case fStrN:
		p, err := e.str(m, f.key)
		if err != nil {
			return err
		}
		if len(p) > f.n {
			return fmt.Errorf("longer than %d bytes", f.n)
		}
		e.b = append(e.b, p...)
		e.b = append(e.b, make([]byte, f.n-len(p))...)
	case fStrEnd:
		p, err := e.str(m, f.key)
		if err != nil {
			return err
		}
		e.b = append(e.b, p...)
	case fStrL, fBytesL:
		var p []byte
		var err error
		if f.k == fStrL {
			p, err = e.str(m, f.key)
		} else {
			p, err = getB64(m, f.key)
		}
		if err != nil {
			return err
		}
		if !fits(int64(len(p)), f.n) {
			return fmt.Errorf("too long")
		}
		e.putUint(f.n, int64(len(p)))
		e.b = append(e.b, p...)
	case fBytesEnd, fBytesN:
		p, err := getB64(m, f.key)
		if err != nil {
			return err
		}
		if f.k == fBytesN && len(p) != f.n {
			return fmt.Errorf("must be %d bytes, got %d", f.n, len(p))
		}
		e.b = append(e.b, p...)
	case fList, fListEnd:
		raw, ok := m[f.key]
		if !ok {
			return fmt.Errorf("missing %q", f.key)
		}
		items, ok := raw.([]any)
		if !ok {
			return fmt.Errorf("%q must be a list", f.key)
		}
		if f.k == fList {
			if !fits(int64(len(items)), f.n) {
				return fmt.Errorf("too many items")
			}
			e.putUint(f.n, int64(len(items)))
		}
		for i, it := range items {
			var em map[string]any
			if len(f.elem) == 1 && f.elem[0].key == "" {
				em = map[string]any{"": it}
			} else if em, ok = it.(map[string]any); !ok {
				return fmt.Errorf("item %d must be an object", i)
			}
			if err := e.fields(f.elem, em); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
	case fLoc, fLocN, fLocL16:
		lm, ok := m[f.key].(map[string]any)
		if !ok {
			return fmt.Errorf("%q must be an object", f.key)
		}
		if f.k == fLocL16 {
			at := len(e.b)
			e.b = append(e.b, 0, 0)
			if err := encodeLocation(e, lm); err != nil {
				return err
			}
			binary.BigEndian.PutUint16(e.b[at:], uint16(len(e.b)-at-2))
			return nil
		}
		at := len(e.b)
		if err := encodeLocation(e, lm); err != nil {
			return err
		}
		if f.k == fLocN && len(e.b)-at != 28 {
			return fmt.Errorf("must be the 28-byte basic location")
		}
	case fCustom:
		return f.c.enc(e, m)
	}
	return nil
}

// ---- JSON ----

func appendJSON(b []byte, v any) []byte {
	switch x := v.(type) {
	case int64:
		return strconv.AppendInt(b, x, 10)
	case bool:
		return strconv.AppendBool(b, x)
	case string:
		return appendJSONString(b, x)
	case obj:
		b = append(b, '{')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, e.k)
			b = append(b, ':')
			b = appendJSON(b, e.v)
		}
		return append(b, '}')
	case []any:
		b = append(b, '[')
		for i, e := range x {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, e)
		}
		return append(b, ']')
	}
	return append(b, "null"...)
}

const hexDigits = "0123456789abcdef"

func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b = append(b, '\\', c)
		case c < 0x20:
			b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
		default:
			b = append(b, c)
		}
	}
	return append(b, '"')
}

// headerObj is the JSON header EMQX publishes.
func headerObj(h *Header, bodyLen int) obj {
	o := obj{{"msg_id", int64(h.MsgID)}, {"encrypt", int64(h.Encrypt)}, {"len", int64(bodyLen)},
		{"phone", h.Phone}, {"msg_sn", int64(h.MsgSN)}}
	if h.V2019 {
		o = append(o, kv{"proto_ver", int64(h.ProtoVer)})
	}
	if h.FragTotal > 0 {
		o = append(o, kv{"frag_total", int64(h.FragTotal)}, kv{"frag_sn", int64(h.FragSN)})
	}
	return o
}
