package lwm2m

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode/utf8"
)

// CoAP content formats LwM2M uses.
const (
	cfText       = 0
	cfLinkFormat = 40
	cfOpaque     = 42
	cfCBOR       = 60
	cfSenMLJSON  = 110
	cfSenMLCBOR  = 112
	cfTLVOld     = 1542
	cfJSONOld    = 1543
	cfTLV        = 11542
	cfOMAJSON    = 11543
)

// decodeContent turns a response payload into a read's "content": a list
// of {path, value} for data formats, a list of link strings for
// link-format.
func decodeContent(cf int, payload []byte, req path, db objectDB) (any, error) {
	switch cf {
	case cfLinkFormat:
		out := []string{}
		for _, l := range strings.Split(string(payload), ",") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
		return out, nil
	case cfText:
		if !utf8.Valid(payload) {
			return nil, errors.New("lwm2m: text/plain value is not UTF-8")
		}
		v, err := textValue(db, req, string(payload))
		if err != nil {
			return nil, err
		}
		return []item{{Path: req.String(), Value: v}}, nil
	case cfOpaque:
		return []item{{Path: req.String(), Value: base64.StdEncoding.EncodeToString(payload)}}, nil
	case cfTLV, cfTLVOld:
		ts, err := DecodeTLV(payload)
		if err != nil {
			return nil, err
		}
		out := []item{}
		for _, t := range ts {
			if out, err = tlvItems(out, db, req, nil, t); err != nil {
				return nil, err
			}
		}
		return out, nil
	case cfOMAJSON, cfJSONOld:
		return decodeOMAJSON(payload)
	case cfSenMLJSON:
		rs, err := DecodeSenMLJSON(payload)
		if err != nil {
			return nil, err
		}
		return resolveSenML(rs)
	case cfSenMLCBOR:
		rs, err := DecodeSenMLCBOR(payload)
		if err != nil {
			return nil, err
		}
		return resolveSenML(rs)
	case cfCBOR:
		v, err := cborDecode(payload)
		if err != nil {
			return nil, err
		}
		if b, ok := v.([]byte); ok {
			v = base64.StdEncoding.EncodeToString(b)
		}
		switch v.(type) {
		case []any, map[any]any:
			return nil, errors.New("lwm2m: application/cbor holds a single value")
		}
		return []item{{Path: req.String(), Value: v}}, nil
	}
	return nil, fmt.Errorf("lwm2m: unsupported content format %d", cf)
}

// tlvItems flattens one TLV entry. parent is the path of the enclosing
// entry, nil at the top, where the request path gives the prefix.
func tlvItems(out []item, db objectDB, req, parent path, t TLV) ([]item, error) {
	base := parent
	if base == nil {
		want := map[TLVKind]int{TLVObjectInstance: 1, TLVResource: 2, TLVMultipleResource: 2, TLVResourceInstance: 3}[t.Kind]
		if len(req) < want {
			return nil, fmt.Errorf("lwm2m/tlv: entry kind %d does not fit request path %s", t.Kind, req)
		}
		base = req[:want]
	}
	p := append(append(path{}, base...), t.ID)
	switch t.Kind {
	case TLVObjectInstance, TLVMultipleResource:
		var err error
		for _, c := range t.Children {
			if t.Kind == TLVObjectInstance && c.Kind != TLVResource && c.Kind != TLVMultipleResource {
				return nil, errors.New("lwm2m/tlv: object instance holds a resource instance")
			}
			if out, err = tlvItems(out, db, req, p, c); err != nil {
				return nil, err
			}
		}
		return out, nil
	}
	if len(p) < 3 {
		return nil, fmt.Errorf("lwm2m/tlv: value at %s", p)
	}
	v, err := tlvValue(db.typeOf(p[0], p[2]), t.Value)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return append(out, item{Path: p.String(), Value: v}), nil
}

func tlvValue(typ string, b []byte) (any, error) {
	switch typ {
	case typeInteger, typeTime:
		return tlvToInt(b)
	case typeUint:
		if len(b) == 0 || len(b) > 8 {
			return nil, fmt.Errorf("lwm2m/tlv: unsigned integer of %d bytes", len(b))
		}
		var u uint64
		for _, c := range b {
			u = u<<8 | uint64(c)
		}
		return u, nil
	case typeFloat:
		return tlvToFloat(b)
	case typeBoolean:
		if len(b) != 1 || b[0] > 1 {
			return nil, errors.New("lwm2m/tlv: bad boolean")
		}
		return b[0] == 1, nil
	case typeObjlnk:
		if len(b) != 4 {
			return nil, errors.New("lwm2m/tlv: object link needs 4 bytes")
		}
		return fmt.Sprintf("%d:%d", binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])), nil
	case typeOpaque:
		return base64.StdEncoding.EncodeToString(b), nil
	case typeString, typeCorelnk:
		return string(b), nil
	}
	// No definition: text if it reads as text, else base64.
	if utf8.Valid(b) {
		return string(b), nil
	}
	return base64.StdEncoding.EncodeToString(b), nil
}

func textValue(db objectDB, p path, s string) (any, error) {
	if len(p) < 3 {
		return s, nil
	}
	switch db.typeOf(p[0], p[2]) {
	case typeInteger, typeTime:
		return strconv.ParseInt(s, 10, 64)
	case typeUint:
		return strconv.ParseUint(s, 10, 64)
	case typeFloat:
		return strconv.ParseFloat(s, 64)
	case typeBoolean:
		switch s {
		case "1", "true":
			return true, nil
		case "0", "false":
			return false, nil
		}
		return nil, fmt.Errorf("lwm2m: bad boolean %q", s)
	}
	return s, nil
}

// omaJSON is application/vnd.oma.lwm2m+json (LwM2M 1.0 §6.4.4).
type omaJSON struct {
	BaseName string `json:"bn"`
	E        []struct {
		N  string   `json:"n"`
		V  *float64 `json:"v"`
		SV *string  `json:"sv"`
		BV *bool    `json:"bv"`
		OV *string  `json:"ov"`
	} `json:"e"`
}

func decodeOMAJSON(b []byte) ([]item, error) {
	var j omaJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return nil, fmt.Errorf("lwm2m/json: %w", err)
	}
	out := make([]item, 0, len(j.E))
	for _, e := range j.E {
		p := j.BaseName
		if e.N != "" {
			p = strings.TrimSuffix(p, "/") + "/" + strings.TrimPrefix(e.N, "/")
		}
		it := item{Path: p}
		switch {
		case e.V != nil:
			it.Value = *e.V
		case e.SV != nil:
			it.Value = *e.SV
		case e.BV != nil:
			it.Value = *e.BV
		case e.OV != nil:
			it.Value = *e.OV
		default:
			return nil, fmt.Errorf("lwm2m/json: entry %q has no value", e.N)
		}
		out = append(out, it)
	}
	return out, nil
}

// encodeValue turns a command's {type, value} into TLV value bytes.
// Opaque values are base64, or hex with "encoding": "hex".
func encodeValue(typ string, v any, encoding string) ([]byte, error) {
	str := func() string {
		switch t := v.(type) {
		case string:
			return t
		case json.Number:
			return t.String()
		case bool:
			return strconv.FormatBool(t)
		case float64:
			return strconv.FormatFloat(t, 'f', -1, 64)
		}
		return fmt.Sprint(v)
	}
	switch typ {
	case "Integer", "Time", "Unsigned Integer":
		n, err := strconv.ParseInt(str(), 10, 64)
		if err != nil {
			f, ferr := strconv.ParseFloat(str(), 64)
			if ferr != nil || f != math.Trunc(f) {
				return nil, fmt.Errorf("bad %s value %v", typ, v)
			}
			n = int64(f)
		}
		return tlvInt(n), nil
	case "Float":
		f, err := strconv.ParseFloat(str(), 64)
		if err != nil {
			return nil, fmt.Errorf("bad Float value %v", v)
		}
		return tlvFloat(f), nil
	case "Boolean":
		switch str() {
		case "true", "1":
			return []byte{1}, nil
		case "false", "0":
			return []byte{0}, nil
		}
		return nil, fmt.Errorf("bad Boolean value %v", v)
	case "String":
		return []byte(str()), nil
	case "Opaque":
		if encoding == "hex" {
			b, err := hex.DecodeString(str())
			if err != nil {
				return nil, fmt.Errorf("bad hex Opaque value: %w", err)
			}
			return b, nil
		}
		b, err := base64.StdEncoding.DecodeString(str())
		if err != nil {
			return nil, fmt.Errorf("bad base64 Opaque value: %w", err)
		}
		return b, nil
	case "Objlnk":
		a, b, ok := strings.Cut(str(), ":")
		x, e1 := strconv.ParseUint(a, 10, 16)
		y, e2 := strconv.ParseUint(b, 10, 16)
		if !ok || e1 != nil || e2 != nil {
			return nil, fmt.Errorf("bad Objlnk value %v", v)
		}
		return binary.BigEndian.AppendUint16(binary.BigEndian.AppendUint16(nil, uint16(x)), uint16(y)), nil
	}
	return nil, fmt.Errorf("unknown type %q", typ)
}
