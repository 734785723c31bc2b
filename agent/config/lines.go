package config

import (
	"strconv"
	"strings"
)

// keyLines maps dotted key paths ("gateway.mqttsn.listeners.udp.default.bind",
// "gateway.mqttsn.authentication[0].type") to the line that defines them, so
// errors can say file:line. The TOML parser does not expose positions; a
// light scan of table headers and "key =" lines finds nearly all of them and
// falls back to the nearest enclosing table.
func keyLines(src string) map[string]int {
	lines := map[string]int{}
	var table []string
	arrays := map[string]int{}
	inMulti := ""
	for n, line := range strings.Split(src, "\n") {
		ln := n + 1
		if inMulti != "" {
			if strings.Count(line, inMulti)%2 == 1 {
				inMulti = ""
			}
			continue
		}
		s := strings.TrimSpace(line)
		if s == "" || s[0] == '#' {
			continue
		}
		if strings.HasPrefix(s, "[[") {
			end := strings.Index(s, "]]")
			if end < 0 {
				continue
			}
			keys := splitKey(s[2:end])
			base := joinPath(keys)
			idx := arrays[base]
			arrays[base] = idx + 1
			p := base + "[" + strconv.Itoa(idx) + "]"
			table = []string{p}
			setLine(lines, p, ln)
			// Reset counters of arrays nested in an earlier element.
			for k := range arrays {
				if strings.HasPrefix(k, p) && k != base {
					delete(arrays, k)
				}
			}
			continue
		}
		if s[0] == '[' {
			end := strings.LastIndexByte(s, ']')
			if end < 0 {
				continue
			}
			p := joinPath(splitKey(s[1:end]))
			p = indexArrays(p, arrays)
			table = []string{p}
			setLine(lines, p, ln)
			continue
		}
		eq := keyEnd(s)
		if eq < 0 {
			continue
		}
		keys := splitKey(s[:eq])
		if len(keys) == 0 {
			continue
		}
		prefix := ""
		if len(table) > 0 {
			prefix = table[0] + "."
		}
		full := prefix
		for i, k := range keys {
			if i > 0 {
				full += "."
			}
			full += k
			setLine(lines, full, ln)
		}
		v := strings.TrimSpace(s[eq+1:])
		for _, q := range []string{`"""`, `'''`} {
			if strings.HasPrefix(v, q) && strings.Count(v, q)%2 == 1 {
				inMulti = q
			}
		}
	}
	return lines
}

// indexArrays turns "a.b.c" into "a.b[2].c" when a.b is an array of tables
// whose latest element is index 2, because "[a.b.c]" then belongs to it.
func indexArrays(p string, arrays map[string]int) string {
	parts := strings.Split(p, ".")
	out := ""
	for i, part := range parts {
		if i > 0 {
			out += "."
		}
		out += part
		if n, ok := arrays[out]; ok && i < len(parts)-1 {
			out += "[" + strconv.Itoa(n-1) + "]"
		}
	}
	return out
}

func setLine(m map[string]int, k string, ln int) {
	if _, ok := m[k]; !ok {
		m[k] = ln
	}
}

func joinPath(keys []string) string { return strings.Join(keys, ".") }

// keyEnd finds the '=' that ends the key part of a key/value line, skipping
// quoted keys.
func keyEnd(s string) int {
	var q byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			}
		case c == '"' || c == '\'':
			q = c
		case c == '=':
			return i
		}
	}
	return -1
}

// splitKey splits a dotted TOML key, removing quotes and spaces.
func splitKey(s string) []string {
	var out []string
	var cur strings.Builder
	var q byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case q != 0:
			if c == q {
				q = 0
			} else {
				cur.WriteByte(c)
			}
		case c == '"' || c == '\'':
			q = c
		case c == '.':
			out = append(out, strings.TrimSpace(cur.String()))
			cur.Reset()
		case c == ' ' || c == '\t':
		default:
			cur.WriteByte(c)
		}
	}
	out = append(out, strings.TrimSpace(cur.String()))
	return out
}

// lineOf finds the line of a key, or of its nearest enclosing key, or of
// the first key inside it (a table named only through its sub-tables).
func lineOf(lines map[string]int, path string) int {
	if ln, ok := lines[path]; ok {
		return ln
	}
	first := 0
	for k, ln := range lines {
		if strings.HasPrefix(k, path) && len(k) > len(path) && (k[len(path)] == '.' || k[len(path)] == '[') && (first == 0 || ln < first) {
			first = ln
		}
	}
	if first > 0 {
		return first
	}
	for p := path; p != ""; {
		if ln, ok := lines[p]; ok {
			return ln
		}
		i := strings.LastIndexAny(p, ".[")
		if i < 0 {
			break
		}
		p = p[:i]
	}
	return 0
}
