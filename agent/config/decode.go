package config

import (
	"errors"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// Unmarshaler is implemented by config value types that parse themselves
// from the TOML value (string, int64, float64, bool, []any, map[string]any).
type Unmarshaler interface {
	UnmarshalConfig(v any) error
}

// Validator is implemented by config structs that check themselves after
// decoding. The returned error may join several errors; a *FieldError names
// the key it is about, relative to the struct's own table.
type Validator interface {
	Validate() error
}

// FieldError is a validation error about one key of a table.
type FieldError struct {
	Key string
	Err error
}

func (e *FieldError) Error() string { return e.Key + ": " + e.Err.Error() }
func (e *FieldError) Unwrap() error { return e.Err }

// Field returns a *FieldError for key with a formatted message.
func Field(key, format string, args ...any) error {
	return &FieldError{Key: key, Err: fmt.Errorf(format, args...)}
}

// Error is one problem in a config file.
type Error struct {
	File string
	Line int
	Key  string // full dotted key, empty for file-level errors
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Line))
		}
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every problem found in one config file, in file order.
type Errors []*Error

func (es Errors) Error() string {
	s := make([]string, len(es))
	for i, e := range es {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// decoder turns the generic TOML tree into typed structs, strictly: every key
// must land somewhere and every error is kept, not only the first.
type decoder struct {
	file  string
	lines map[string]int
	errs  Errors
}

func (d *decoder) errorf(path, format string, args ...any) {
	d.errs = append(d.errs, &Error{File: d.file, Line: lineOf(d.lines, path), Key: path, Msg: fmt.Sprintf(format, args...)})
}

func (d *decoder) addErr(path string, err error) {
	var multi interface{ Unwrap() []error }
	if errors.As(err, &multi) && !isField(err) {
		for _, e := range multi.Unwrap() {
			d.addErr(path, e)
		}
		return
	}
	var fe *FieldError
	if errors.As(err, &fe) {
		d.addErr(join(path, fe.Key), fe.Err)
		return
	}
	d.errorf(path, "%s", err.Error())
}

func isField(err error) bool {
	_, ok := err.(*FieldError)
	return ok
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	if strings.HasPrefix(key, "[") {
		return path + key
	}
	return path + "." + key
}

var (
	unmarshalerType = reflect.TypeOf((*Unmarshaler)(nil)).Elem()
	validatorType   = reflect.TypeOf((*Validator)(nil)).Elem()
	hookType        = reflect.TypeOf((*decodeHook)(nil)).Elem()
)

// decodeHook is for the config package's own types whose shape depends on
// registries (gateways, listeners, authenticators).
type decodeHook interface {
	decodeConfig(d *decoder, path string, v any)
}

// decodeTable fills targets (pointers to structs) from one table. Keys are
// offered to each target in turn; keys no target knows are errors.
func (d *decoder) decodeTable(path string, m map[string]any, targets ...any) {
	used := make(map[string]bool, len(m))
	for _, t := range targets {
		if t == nil {
			continue
		}
		rv := reflect.ValueOf(t)
		if rv.Kind() != reflect.Pointer || rv.Elem().Kind() != reflect.Struct {
			panic(fmt.Sprintf("config: decode target %T is not a pointer to struct", t))
		}
		d.fillStruct(path, m, rv.Elem(), used)
	}
	d.unknown(path, m, used)
	for _, t := range targets {
		if t != nil {
			d.validate(path, reflect.ValueOf(t))
		}
	}
}

func (d *decoder) unknown(path string, m map[string]any, used map[string]bool) {
	keys := make([]string, 0, len(m))
	for k := range m {
		if !used[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		d.errorf(join(path, k), "unknown key")
	}
}

type fieldInfo struct {
	index []int
}

var fieldCache sync.Map // reflect.Type → map[string]fieldInfo

func fieldsOf(t reflect.Type) map[string]fieldInfo {
	if f, ok := fieldCache.Load(t); ok {
		return f.(map[string]fieldInfo)
	}
	out := map[string]fieldInfo{}
	var walk func(t reflect.Type, prefix []int)
	walk = func(t reflect.Type, prefix []int) {
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			tag := f.Tag.Get("toml")
			name, _, _ := strings.Cut(tag, ",")
			if name == "-" {
				continue
			}
			idx := append(append([]int(nil), prefix...), i)
			if f.Anonymous && name == "" && f.Type.Kind() == reflect.Struct && !reflect.PointerTo(f.Type).Implements(unmarshalerType) {
				walk(f.Type, idx)
				continue
			}
			if !f.IsExported() {
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			out[name] = fieldInfo{index: idx}
		}
	}
	walk(t, nil)
	fieldCache.Store(t, out)
	return out
}

func (d *decoder) fillStruct(path string, m map[string]any, rv reflect.Value, used map[string]bool) {
	fields := fieldsOf(rv.Type())
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if used[k] {
			continue
		}
		fi, ok := fields[k]
		if !ok {
			continue
		}
		used[k] = true
		d.value(join(path, k), m[k], rv.FieldByIndex(fi.index))
	}
}

// value decodes v into rv (addressable), recording errors under path.
func (d *decoder) value(path string, v any, rv reflect.Value) {
	if rv.CanAddr() {
		p := rv.Addr()
		if p.Type().Implements(hookType) {
			p.Interface().(decodeHook).decodeConfig(d, path, v)
			return
		}
		if p.Type().Implements(unmarshalerType) {
			if err := p.Interface().(Unmarshaler).UnmarshalConfig(v); err != nil {
				d.addErr(path, err)
			}
			return
		}
	}
	switch rv.Kind() {
	case reflect.Pointer:
		nv := reflect.New(rv.Type().Elem())
		if !rv.IsNil() {
			nv.Elem().Set(rv.Elem())
		}
		d.value(path, v, nv.Elem())
		rv.Set(nv)
	case reflect.Struct:
		m, ok := v.(map[string]any)
		if !ok {
			d.errorf(path, "expected a table, got %s", describe(v))
			return
		}
		used := map[string]bool{}
		d.fillStruct(path, m, rv, used)
		d.unknown(path, m, used)
		d.validate(path, rv.Addr())
	case reflect.String:
		s, ok := v.(string)
		if !ok {
			d.errorf(path, "expected a string, got %s", describe(v))
			return
		}
		rv.SetString(s)
	case reflect.Bool:
		b, ok := v.(bool)
		if !ok {
			d.errorf(path, "expected true or false, got %s", describe(v))
			return
		}
		rv.SetBool(b)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		n, ok := v.(int64)
		if !ok {
			d.errorf(path, "expected an integer, got %s", describe(v))
			return
		}
		if rv.OverflowInt(n) {
			d.errorf(path, "integer %d out of range", n)
			return
		}
		rv.SetInt(n)
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		n, ok := v.(int64)
		if !ok {
			d.errorf(path, "expected an integer, got %s", describe(v))
			return
		}
		if n < 0 || rv.OverflowUint(uint64(n)) {
			d.errorf(path, "integer %d out of range (0..%d)", n, uint64(math.MaxUint64)>>(64-rv.Type().Bits()))
			return
		}
		rv.SetUint(uint64(n))
	case reflect.Float32, reflect.Float64:
		switch x := v.(type) {
		case float64:
			rv.SetFloat(x)
		case int64:
			rv.SetFloat(float64(x))
		default:
			d.errorf(path, "expected a number, got %s", describe(v))
		}
	case reflect.Slice:
		var items []any
		switch x := v.(type) {
		case []any:
			items = x
		case []map[string]any:
			for _, t := range x {
				items = append(items, t)
			}
		default:
			d.errorf(path, "expected an array, got %s", describe(v))
			return
		}
		s := reflect.MakeSlice(rv.Type(), len(items), len(items))
		for i, it := range items {
			d.value(path+"["+strconv.Itoa(i)+"]", it, s.Index(i))
		}
		rv.Set(s)
	case reflect.Map:
		m, ok := v.(map[string]any)
		if !ok {
			d.errorf(path, "expected a table, got %s", describe(v))
			return
		}
		if rv.Type().Key().Kind() != reflect.String {
			panic("config: map keys must be strings")
		}
		if rv.IsNil() {
			rv.Set(reflect.MakeMap(rv.Type()))
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ev := reflect.New(rv.Type().Elem()).Elem()
			if old := rv.MapIndex(reflect.ValueOf(k)); old.IsValid() {
				ev.Set(old)
			}
			d.value(join(path, k), m[k], ev)
			rv.SetMapIndex(reflect.ValueOf(k).Convert(rv.Type().Key()), ev)
		}
	case reflect.Interface:
		if rv.NumMethod() == 0 {
			rv.Set(reflect.ValueOf(v))
			return
		}
		d.errorf(path, "cannot decode into %s", rv.Type())
	default:
		d.errorf(path, "cannot decode into %s", rv.Type())
	}
}

func (d *decoder) validate(path string, p reflect.Value) {
	if p.Kind() == reflect.Pointer && p.Type().Implements(validatorType) && !p.IsNil() {
		if err := p.Interface().(Validator).Validate(); err != nil {
			d.addErr(path, err)
		}
	}
}
