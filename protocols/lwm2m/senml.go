package lwm2m

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
)

// SenML is one SenML record (RFC 8428) as LwM2M 1.1 uses it: the name is
// a path, resolved against the latest base name; exactly one value field
// is set. "vlo" is LwM2M's object link value.
type SenML struct {
	BaseName    string   `json:"bn,omitempty"`
	BaseTime    float64  `json:"bt,omitempty"`
	Name        string   `json:"n,omitempty"`
	Time        float64  `json:"t,omitempty"`
	Value       *float64 `json:"v,omitempty"`
	StringValue *string  `json:"vs,omitempty"`
	BoolValue   *bool    `json:"vb,omitempty"`
	DataValue   *string  `json:"vd,omitempty"` // base64url in JSON
	ObjLnk      *string  `json:"vlo,omitempty"`
}

// SenML CBOR labels (RFC 8428 §6).
const (
	senmlBaseName = -2
	senmlBaseTime = -3
	senmlName     = 0
	senmlValue    = 2
	senmlString   = 3
	senmlBool     = 4
	senmlTime     = 6
	senmlData     = 8
)

// item is one resolved value: what a read's "content" array holds.
type item struct {
	Path  string `json:"path"`
	Value any    `json:"value"`
}

// DecodeSenMLJSON parses application/senml+json.
func DecodeSenMLJSON(b []byte) ([]SenML, error) {
	var rs []SenML
	if err := json.Unmarshal(b, &rs); err != nil {
		return nil, fmt.Errorf("lwm2m/senml: %w", err)
	}
	return rs, nil
}

// DecodeSenMLCBOR parses application/senml+cbor.
func DecodeSenMLCBOR(b []byte) ([]SenML, error) {
	v, err := cborDecode(b)
	if err != nil {
		return nil, err
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, errors.New("lwm2m/senml: cbor pack is not an array")
	}
	out := make([]SenML, 0, len(arr))
	for _, e := range arr {
		m, ok := e.(map[any]any)
		if !ok {
			return nil, errors.New("lwm2m/senml: cbor record is not a map")
		}
		var r SenML
		for k, v := range m {
			if err := r.setCBOR(k, v); err != nil {
				return nil, err
			}
		}
		out = append(out, r)
	}
	return out, nil
}

func (r *SenML) setCBOR(k, v any) error {
	bad := func() error { return fmt.Errorf("lwm2m/senml: label %v has a %T", k, v) }
	num := func() (float64, bool) {
		switch t := v.(type) {
		case int64:
			return float64(t), true
		case float64:
			return t, true
		}
		return 0, false
	}
	switch k {
	case int64(senmlBaseName), int64(senmlName), int64(senmlString), "vlo":
		s, ok := v.(string)
		if !ok {
			return bad()
		}
		switch k {
		case int64(senmlBaseName):
			r.BaseName = s
		case int64(senmlName):
			r.Name = s
		case int64(senmlString):
			r.StringValue = &s
		default:
			r.ObjLnk = &s
		}
	case int64(senmlBaseTime), int64(senmlTime), int64(senmlValue):
		f, ok := num()
		if !ok {
			return bad()
		}
		switch k {
		case int64(senmlBaseTime):
			r.BaseTime = f
		case int64(senmlTime):
			r.Time = f
		default:
			r.Value = &f
		}
	case int64(senmlBool):
		b, ok := v.(bool)
		if !ok {
			return bad()
		}
		r.BoolValue = &b
	case int64(senmlData):
		b, ok := v.([]byte)
		if !ok {
			return bad()
		}
		s := base64.RawURLEncoding.EncodeToString(b)
		r.DataValue = &s
	}
	return nil // unknown labels are ignored, as RFC 8428 allows
}

// EncodeSenMLCBOR writes records as application/senml+cbor.
func EncodeSenMLCBOR(rs []SenML) ([]byte, error) {
	arr := make([]any, 0, len(rs))
	for _, r := range rs {
		var m cborMap
		if r.BaseName != "" {
			m = append(m, cborKV{int64(senmlBaseName), r.BaseName})
		}
		if r.BaseTime != 0 {
			m = append(m, cborKV{int64(senmlBaseTime), r.BaseTime})
		}
		if r.Name != "" {
			m = append(m, cborKV{int64(senmlName), r.Name})
		}
		if r.Time != 0 {
			m = append(m, cborKV{int64(senmlTime), r.Time})
		}
		switch {
		case r.Value != nil:
			if f := *r.Value; f == math.Trunc(f) && math.Abs(f) < 1<<53 {
				m = append(m, cborKV{int64(senmlValue), int64(f)})
			} else {
				m = append(m, cborKV{int64(senmlValue), f})
			}
		case r.StringValue != nil:
			m = append(m, cborKV{int64(senmlString), *r.StringValue})
		case r.BoolValue != nil:
			m = append(m, cborKV{int64(senmlBool), *r.BoolValue})
		case r.DataValue != nil:
			b, err := decodeB64(*r.DataValue)
			if err != nil {
				return nil, err
			}
			m = append(m, cborKV{int64(senmlData), b})
		case r.ObjLnk != nil:
			m = append(m, cborKV{"vlo", *r.ObjLnk})
		}
		arr = append(arr, m)
	}
	return cborAppend(nil, arr), nil
}

func decodeB64(s string) ([]byte, error) {
	s = strings.TrimRight(s, "=")
	if b, err := base64.RawURLEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return nil, fmt.Errorf("lwm2m/senml: bad base64 data value: %w", err)
	}
	return b, nil
}

// resolveSenML applies base names and turns records into content items.
// Opaque values are given as standard base64, as for the other formats.
func resolveSenML(rs []SenML) ([]item, error) {
	var bn string
	out := make([]item, 0, len(rs))
	for _, r := range rs {
		if r.BaseName != "" {
			bn = r.BaseName
		}
		name := bn + r.Name
		if name == "" {
			return nil, errors.New("lwm2m/senml: record without a name")
		}
		it := item{Path: name}
		switch {
		case r.Value != nil:
			it.Value = *r.Value
		case r.StringValue != nil:
			it.Value = *r.StringValue
		case r.BoolValue != nil:
			it.Value = *r.BoolValue
		case r.DataValue != nil:
			b, err := decodeB64(*r.DataValue)
			if err != nil {
				return nil, err
			}
			it.Value = base64.StdEncoding.EncodeToString(b)
		case r.ObjLnk != nil:
			it.Value = *r.ObjLnk
		default:
			continue // a base-only record
		}
		out = append(out, it)
	}
	return out, nil
}
