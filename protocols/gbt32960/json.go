package gbt32960

import (
	"strconv"
	"unicode/utf8"
)

// jw appends JSON without reflection: the real-time report is the hot
// path, and its keys are written in sorted order, as EMQX's encoder emits
// them, so payloads compare byte for byte.
type jw struct {
	b     []byte
	comma bool
}

func (w *jw) sep() {
	if w.comma {
		w.b = append(w.b, ',')
	}
}

func (w *jw) obj() { w.sep(); w.b = append(w.b, '{'); w.comma = false }
func (w *jw) end() { w.b = append(w.b, '}'); w.comma = true }
func (w *jw) arr() { w.sep(); w.b = append(w.b, '['); w.comma = false }
func (w *jw) aend() {
	w.b = append(w.b, ']')
	w.comma = true
}

func (w *jw) key(k string) {
	w.sep()
	w.b = append(w.b, '"')
	w.b = append(w.b, k...)
	w.b = append(w.b, '"', ':')
	w.comma = false
}

func (w *jw) int(v int64) {
	w.sep()
	w.b = strconv.AppendInt(w.b, v, 10)
	w.comma = true
}

func (w *jw) ki(k string, v int64) { w.key(k); w.int(v) }

func (w *jw) ks(k string, v []byte) { w.key(k); w.str(v) }

// str writes b as a JSON string; invalid UTF-8 becomes U+FFFD.
func (w *jw) str(b []byte) {
	w.sep()
	w.b = append(w.b, '"')
	for i := 0; i < len(b); {
		c := b[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				w.b = append(w.b, '\\', c)
			case c < 0x20:
				w.b = append(w.b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&15])
			default:
				w.b = append(w.b, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && n == 1 {
			w.b = append(w.b, `\ufffd`...)
		} else {
			w.b = append(w.b, b[i:i+n]...)
		}
		i += n
	}
	w.b = append(w.b, '"')
	w.comma = true
}

const hexDigits = "0123456789ABCDEF"
