package api

import (
	"strconv"
	"strings"
	"unicode/utf8"
)

// A light lexer for TOML text. It does not check the text (the agent's
// config parser does that); it finds where table headers, keys and string
// values are, so that API edits can change a config file the way a person
// would — one table or one key — and keep every comment and the order of
// everything else. Each edit is checked afterwards by decoding the result
// and comparing it with the intended tree; when the two differ the caller
// falls back to encoding the whole tree.

// header is a [table] or [[array.of.tables]] line.
type header struct {
	keys  []string // as written, quotes removed
	array bool
	line  int // index of its line
}

// entry is a key = value line directly in a table (not inside an inline
// table or array).
type entry struct {
	keys       []string // dotted key as written, quotes removed
	path       []any    // resolved: string keys and int indices of arrays of tables
	line       int      // line of the key
	start, end int      // byte offsets of the value
}

// strTok is a string literal anywhere in a value.
type strTok struct {
	start, end int    // byte offsets of the literal, quotes included
	value      string // decoded
	path       []any  // resolved path, nil inside inline arrays and tables
}

type tomlText struct {
	src       string
	lineStart []int // byte offset of each line
	headers   []header
	entries   []entry
	strs      []strTok
}

func lexTOML(src string) *tomlText {
	t := &tomlText{src: src, lineStart: []int{0}}
	for i := 0; i < len(src); i++ {
		if src[i] == '\n' {
			t.lineStart = append(t.lineStart, i+1)
		}
	}
	l := &lexer{t: t, s: src, arrays: map[string]int{}}
	l.run()
	return t
}

func (t *tomlText) lineOf(off int) int {
	lo, hi := 0, len(t.lineStart)-1
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if t.lineStart[mid] <= off {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	return lo
}

type lexer struct {
	t      *tomlText
	s      string
	pos    int
	table  []any // resolved path of the current table
	arrays map[string]int
}

func (l *lexer) run() {
	for l.pos < len(l.s) {
		l.skipBlank()
		if l.pos >= len(l.s) {
			return
		}
		switch c := l.s[l.pos]; {
		case c == '\n' || c == '\r':
			l.pos++
		case c == '#':
			l.skipLine()
		case c == '[':
			l.header()
			l.skipLine()
		default:
			l.keyValue()
			l.skipLine()
		}
	}
}

func (l *lexer) skipBlank() {
	for l.pos < len(l.s) && (l.s[l.pos] == ' ' || l.s[l.pos] == '\t') {
		l.pos++
	}
}

// skipWS skips blanks, newlines and comments (inside arrays).
func (l *lexer) skipWS() {
	for l.pos < len(l.s) {
		switch l.s[l.pos] {
		case ' ', '\t', '\r', '\n':
			l.pos++
		case '#':
			l.skipLine()
		default:
			return
		}
	}
}

func (l *lexer) skipLine() {
	i := strings.IndexByte(l.s[l.pos:], '\n')
	if i < 0 {
		l.pos = len(l.s)
		return
	}
	l.pos += i + 1
}

func (l *lexer) header() {
	line := l.t.lineOf(l.pos)
	array := strings.HasPrefix(l.s[l.pos:], "[[")
	if array {
		l.pos += 2
	} else {
		l.pos++
	}
	keys := l.key()
	if len(keys) == 0 {
		return
	}
	l.t.headers = append(l.t.headers, header{keys: keys, array: array, line: line})
	var res []any
	for i, k := range keys {
		res = append(res, k)
		id := pathID(res)
		if i < len(keys)-1 {
			if n := l.arrays[id]; n > 0 {
				res = append(res, n-1)
			}
			continue
		}
		if array {
			n := l.arrays[id]
			l.arrays[id] = n + 1
			res = append(res, n)
			// Arrays nested in an earlier element start again.
			prefix := pathID(res[:len(res)-1]) + "\x00"
			for k := range l.arrays {
				if strings.HasPrefix(k, prefix) && k != id {
					delete(l.arrays, k)
				}
			}
		}
	}
	l.table = res
}

func pathID(p []any) string {
	var b strings.Builder
	for i, e := range p {
		if i > 0 {
			b.WriteByte(0)
		}
		switch x := e.(type) {
		case string:
			b.WriteString(x)
		case int:
			b.WriteString("#" + strconv.Itoa(x))
		}
	}
	return b.String()
}

// key reads a dotted key up to '=' or ']' (not consumed).
func (l *lexer) key() []string {
	var keys []string
	for l.pos < len(l.s) {
		l.skipBlank()
		if l.pos >= len(l.s) {
			break
		}
		c := l.s[l.pos]
		switch {
		case c == '"' || c == '\'':
			v, ok := l.str(false)
			if !ok {
				return nil
			}
			keys = append(keys, v)
		case isBare(c):
			start := l.pos
			for l.pos < len(l.s) && isBare(l.s[l.pos]) {
				l.pos++
			}
			keys = append(keys, l.s[start:l.pos])
		default:
			return nil
		}
		l.skipBlank()
		if l.pos < len(l.s) && l.s[l.pos] == '.' {
			l.pos++
			continue
		}
		break
	}
	return keys
}

func isBare(c byte) bool {
	return c == '_' || c == '-' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

func (l *lexer) keyValue() {
	line := l.t.lineOf(l.pos)
	keys := l.key()
	l.skipBlank()
	if len(keys) == 0 || l.pos >= len(l.s) || l.s[l.pos] != '=' {
		return
	}
	l.pos++
	l.skipBlank()
	path := append(append([]any(nil), l.table...), toAny(keys)...)
	start := l.pos
	l.value(path)
	l.t.entries = append(l.t.entries, entry{keys: keys, path: path, line: line, start: start, end: l.pos})
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, x := range s {
		out[i] = x
	}
	return out
}

// value skips one value, recording its strings; path is nil inside
// inline arrays and tables.
func (l *lexer) value(path []any) {
	if l.pos >= len(l.s) {
		return
	}
	switch c := l.s[l.pos]; c {
	case '"', '\'':
		start := l.pos
		v, ok := l.str(true)
		if ok {
			l.t.strs = append(l.t.strs, strTok{start: start, end: l.pos, value: v, path: path})
		}
	case '[':
		l.pos++
		for l.pos < len(l.s) {
			l.skipWS()
			if l.pos >= len(l.s) || l.s[l.pos] == ']' {
				l.pos++
				return
			}
			if l.s[l.pos] == ',' {
				l.pos++
				continue
			}
			before := l.pos
			l.value(nil)
			if l.pos == before {
				l.pos++
			}
		}
	case '{':
		l.pos++
		for l.pos < len(l.s) {
			l.skipBlank()
			if l.pos >= len(l.s) || l.s[l.pos] == '}' || l.s[l.pos] == '\n' {
				l.pos++
				return
			}
			if l.s[l.pos] == ',' {
				l.pos++
				continue
			}
			before := l.pos
			if len(l.key()) > 0 {
				l.skipBlank()
				if l.pos < len(l.s) && l.s[l.pos] == '=' {
					l.pos++
					l.skipBlank()
					l.value(nil)
				}
			}
			if l.pos == before {
				l.pos++
			}
		}
	default:
		for l.pos < len(l.s) && !strings.ContainsRune(" \t\r\n#,]}", rune(l.s[l.pos])) {
			l.pos++
		}
	}
}

// str reads a string literal at l.pos; multi-line forms only where values
// may use them.
func (l *lexer) str(allowMulti bool) (string, bool) {
	s := l.s
	switch {
	case allowMulti && strings.HasPrefix(s[l.pos:], `"""`):
		i := l.pos + 3
		for i < len(s) {
			if s[i] == '\\' {
				i += 2
				continue
			}
			if strings.HasPrefix(s[i:], `"""`) {
				end := i
				for end+3 < len(s) && s[end+3] == '"' && end-i < 2 {
					end++
				}
				raw := s[l.pos+3 : end]
				l.pos = end + 3
				return unescapeBasic(strings.TrimPrefix(strings.TrimPrefix(raw, "\r"), "\n"), true), true
			}
			i++
		}
	case allowMulti && strings.HasPrefix(s[l.pos:], `'''`):
		i := strings.Index(s[l.pos+3:], `'''`)
		if i < 0 {
			break
		}
		end := l.pos + 3 + i
		for end+3 < len(s) && s[end+3] == '\'' && end-(l.pos+3+i) < 2 {
			end++
		}
		raw := s[l.pos+3 : end]
		l.pos = end + 3
		return strings.TrimPrefix(strings.TrimPrefix(raw, "\r"), "\n"), true
	case s[l.pos] == '"':
		for i := l.pos + 1; i < len(s) && s[i] != '\n'; i++ {
			if s[i] == '\\' {
				i++
				continue
			}
			if s[i] == '"' {
				raw := s[l.pos+1 : i]
				l.pos = i + 1
				return unescapeBasic(raw, false), true
			}
		}
	case s[l.pos] == '\'':
		i := strings.IndexAny(s[l.pos+1:], "'\n")
		if i < 0 || s[l.pos+1+i] != '\'' {
			break
		}
		raw := s[l.pos+1 : l.pos+1+i]
		l.pos += i + 2
		return raw, true
	}
	l.skipLine()
	return "", false
}

func unescapeBasic(raw string, multi bool) string {
	if !strings.ContainsRune(raw, '\\') {
		return raw
	}
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '\\' || i+1 >= len(raw) {
			b.WriteByte(c)
			continue
		}
		i++
		switch raw[i] {
		case 'b':
			b.WriteByte('\b')
		case 't':
			b.WriteByte('\t')
		case 'n':
			b.WriteByte('\n')
		case 'f':
			b.WriteByte('\f')
		case 'r':
			b.WriteByte('\r')
		case 'e':
			b.WriteByte(0x1b)
		case '"':
			b.WriteByte('"')
		case '\\':
			b.WriteByte('\\')
		case 'u', 'U':
			n := 4
			if raw[i] == 'U' {
				n = 8
			}
			if i+n < len(raw) {
				if r, err := strconv.ParseUint(raw[i+1:i+1+n], 16, 32); err == nil && utf8.ValidRune(rune(r)) {
					b.WriteRune(rune(r))
					i += n
					continue
				}
			}
			b.WriteByte('\\')
			b.WriteByte(raw[i])
		default:
			if multi && (raw[i] == '\n' || raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\r') {
				// line-ending backslash: trim whitespace and newlines
				for i < len(raw) && strings.ContainsRune(" \t\r\n", rune(raw[i])) {
					i++
				}
				i--
				continue
			}
			b.WriteByte('\\')
			b.WriteByte(raw[i])
		}
	}
	return b.String()
}

// quoteBasic writes s as a TOML basic string.
func quoteBasic(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch r {
		case '"':
			b.WriteString(`\"`)
		case '\\':
			b.WriteString(`\\`)
		case '\n':
			b.WriteString(`\n`)
		case '\t':
			b.WriteString(`\t`)
		case '\r':
			b.WriteString(`\r`)
		default:
			if r < 0x20 || r == 0x7f {
				b.WriteString(`\u` + strconv.FormatInt(int64(r)|0x10000, 16)[1:])
				continue
			}
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
