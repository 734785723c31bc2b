package api

import (
	"bytes"
	"fmt"
	"reflect"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"

	"github.com/edgeway/edgeway/agent/config"
)

// Every change the API makes to the configuration is an edit of the
// running config's text, applied through agent.ApplyTOML like a pushed
// file: same parser, same validation, same atomic write and history. An
// edit is computed on the decoded tree (the intended result) and then
// written as a small change to the text (one table or one key replaced),
// so that the comments and layout of a hand-written file survive an API
// call. If the small change does not decode to exactly the intended tree,
// the whole tree is encoded instead (comments are then lost, and the file
// says so in its first line).

// masked is what secrets look like in API answers and in GET /config; a
// value sent back unchanged as masked keeps the secret in force.
const masked = "******"

const rewrittenNote = "# Rewritten by the edgeway API from its parsed form: comments and layout were not kept.\n"

func decodeTree(text []byte) (map[string]any, error) {
	var m map[string]any
	if _, err := toml.Decode(string(text), &m); err != nil {
		return nil, err
	}
	if m == nil {
		m = map[string]any{}
	}
	return m, nil
}

func encodeTree(m map[string]any) []byte {
	var b bytes.Buffer
	e := toml.NewEncoder(&b)
	e.Indent = ""
	if err := e.Encode(m); err != nil {
		// Only values decoded from TOML or JSON are in the tree.
		panic(fmt.Sprintf("api: encode config tree: %v", err))
	}
	return b.Bytes()
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []map[string]any:
		s := make([]map[string]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e).(map[string]any)
		}
		return s
	case []any:
		s := make([]any, len(x))
		for i, e := range x {
			s[i] = deepCopy(e)
		}
		return s
	}
	return v
}

// lookup follows a path of string keys and int indices.
func lookup(v any, path []any) (any, bool) {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				return nil, false
			}
			if v, ok = m[k]; !ok {
				return nil, false
			}
		case int:
			switch s := v.(type) {
			case map[string]any:
				// A single table where an API answer shows a one-element
				// list (an authenticator written as one table).
				if k != 0 {
					return nil, false
				}
			case []map[string]any:
				if k < 0 || k >= len(s) {
					return nil, false
				}
				v = s[k]
			case []any:
				if k < 0 || k >= len(s) {
					return nil, false
				}
				v = s[k]
			default:
				return nil, false
			}
		}
	}
	return v, true
}

// table returns the table at path, creating missing tables when create is
// set. It fails if something on the way is not a table.
func table(root map[string]any, path []string, create bool) (map[string]any, bool) {
	m := root
	for _, k := range path {
		next, ok := m[k]
		if !ok {
			if !create {
				return nil, false
			}
			n := map[string]any{}
			m[k] = n
			m = n
			continue
		}
		if m, ok = next.(map[string]any); !ok {
			return nil, false
		}
	}
	return m, true
}

// setTable sets (or with v == nil deletes) the value at path in root.
func setTable(root map[string]any, path []string, v any) bool {
	parent, ok := table(root, path[:len(path)-1], v != nil)
	if !ok {
		return v == nil
	}
	if v == nil {
		delete(parent, path[len(path)-1])
		// Tables left empty by the removal go too, as they would from
		// the text.
		for i := len(path) - 1; i > 0 && len(parent) == 0; i-- {
			up, _ := table(root, path[:i-1], false)
			delete(up, path[i-1])
			parent = up
		}
		return true
	}
	parent[path[len(path)-1]] = v
	return true
}

// textEdit tries to turn the running text into the intended one.
type textEdit func(text string) (string, bool)

// applyEdits returns the first edit whose result decodes to want, or want
// encoded whole.
func applyEdits(text []byte, want map[string]any, edits ...textEdit) []byte {
	for _, e := range edits {
		out, ok := e(string(text))
		if !ok {
			continue
		}
		if got, err := decodeTree([]byte(out)); err == nil && reflect.DeepEqual(got, want) {
			return []byte(out)
		}
	}
	return append([]byte(rewrittenNote), encodeTree(want)...)
}

func lines(text string) []string { return strings.SplitAfter(text, "\n") }

func isComment(line string) bool { return strings.HasPrefix(strings.TrimSpace(line), "#") }
func isBlank(line string) bool   { return strings.TrimSpace(line) == "" }

func hasPrefix(keys, prefix []string) bool {
	if len(keys) < len(prefix) {
		return false
	}
	for i := range prefix {
		if keys[i] != prefix[i] {
			return false
		}
	}
	return true
}

func stringKeys(path []any) []string {
	var out []string
	for _, p := range path {
		if s, ok := p.(string); ok {
			out = append(out, s)
		}
	}
	return out
}

// block is a header with its lines, the comment lines right above it
// included.
type block struct {
	from, to int // line range [from, to)
	keys     []string
}

func blocks(t *tomlText, ls []string) []block {
	var out []block
	for i, h := range t.headers {
		from, min := h.line, 0
		if i > 0 {
			min = t.headers[i-1].line + 1
		}
		for from > min && isComment(ls[from-1]) {
			from--
		}
		if len(out) > 0 {
			out[len(out)-1].to = from
		}
		out = append(out, block{from: from, to: len(ls), keys: h.keys})
	}
	return out
}

// replaceTable replaces every table under path (a table, or an array of
// tables) with value, or removes them for a nil value.
func replaceTable(path []string, value any) textEdit {
	return func(text string) (string, bool) {
		t := lexTOML(text)
		ls := lines(text)
		bs := blocks(t, ls)
		// Keys of path written as dotted keys or inline tables of an
		// enclosing table cannot be replaced here.
		for _, e := range t.entries {
			full := stringKeys(e.path)
			if hasPrefix(full, path) || hasPrefix(path, full) {
				if !inRemoved(bs, t.lineOf(e.start), path) {
					return "", false
				}
			}
		}
		at := -1
		var keep []string
		pos := 0 // next line to copy
		for _, b := range bs {
			if !hasPrefix(b.keys, path) {
				continue
			}
			keep = append(keep, ls[pos:b.from]...)
			if at < 0 {
				at = len(keep)
			}
			pos = b.to
		}
		keep = append(keep, ls[pos:]...)
		if at < 0 {
			at = insertPoint(bs, path, len(ls))
		}
		if value == nil {
			return strings.Join(tidySeam(keep, at), ""), true
		}
		ins := encodeAt(path, value)
		return strings.Join(splice(keep, at, ins), ""), true
	}
}

func inRemoved(bs []block, line int, path []string) bool {
	for _, b := range bs {
		if line >= b.from && line < b.to {
			return hasPrefix(b.keys, path)
		}
	}
	return false
}

// insertPoint is after the last block of the closest enclosing table that
// has any, or the end of the text.
func insertPoint(bs []block, path []string, n int) int {
	for k := len(path) - 1; k >= 1; k-- {
		last := -1
		for _, b := range bs {
			if hasPrefix(b.keys, path[:k]) {
				last = b.to
			}
		}
		if last >= 0 {
			// Before the blank lines that end the block.
			return last
		}
	}
	return n
}

// splice inserts text at line index at, with one blank line around it.
func splice(ls []string, at int, text string) []string {
	if at > 0 && !strings.HasSuffix(ls[at-1], "\n") {
		ls[at-1] += "\n"
	}
	var mid []string
	if at > 0 && !isBlank(ls[at-1]) {
		mid = append(mid, "\n")
	}
	ins := lines(strings.TrimSuffix(text, "\n") + "\n")
	mid = append(mid, ins[:len(ins)-1]...) // SplitAfter leaves "" after the last newline
	if at < len(ls) && !isBlank(ls[at]) {
		mid = append(mid, "\n")
	}
	out := append([]string(nil), ls[:at]...)
	out = append(out, mid...)
	return append(out, ls[at:]...)
}

// tidySeam drops a doubled blank line where a block was removed.
func tidySeam(ls []string, at int) []string {
	if at > 0 && at < len(ls) && isBlank(ls[at-1]) && isBlank(ls[at]) {
		return append(ls[:at:at], ls[at+1:]...)
	}
	if at == len(ls) && at > 0 && isBlank(ls[at-1]) && ls[at-1] != "" {
		return ls[:at-1]
	}
	return ls
}

// encodeAt encodes value as the tables at path, without the empty headers
// of the tables that only enclose it.
func encodeAt(path []string, value any) string {
	if m, ok := value.(map[string]any); ok && len(m) == 0 {
		return "[" + joinKey(path) + "]\n"
	}
	wrap := value
	for i := len(path) - 1; i >= 0; i-- {
		wrap = map[string]any{path[i]: wrap}
	}
	enc := string(encodeTree(wrap.(map[string]any)))
	t := lexTOML(enc)
	ls := lines(enc)
	drop := map[int]bool{}
	for i, h := range t.headers {
		if h.array || i+1 >= len(t.headers) {
			continue
		}
		next := t.headers[i+1]
		empty := true
		for _, e := range t.entries {
			if e.line > h.line && e.line < next.line {
				empty = false
				break
			}
		}
		if empty && len(next.keys) > len(h.keys) && hasPrefix(next.keys, h.keys) {
			drop[h.line] = true
		}
	}
	var b strings.Builder
	for i, l := range ls {
		if drop[i] {
			continue
		}
		b.WriteString(l)
	}
	return strings.TrimLeft(b.String(), "\n")
}

func joinKey(path []string) string {
	q := make([]string, len(path))
	for i, k := range path {
		bare := k != ""
		for j := 0; j < len(k); j++ {
			if !isBare(k[j]) {
				bare = false
				break
			}
		}
		if bare {
			q[i] = k
		} else {
			q[i] = quoteBasic(k)
		}
	}
	return strings.Join(q, ".")
}

// setKey sets one key of the table at tablePath, where that table has a
// [header] of its own.
func setKey(tablePath []string, key string, value any) textEdit {
	return func(text string) (string, bool) {
		t := lexTOML(text)
		ls := lines(text)
		hdr := -1
		for _, h := range t.headers {
			if !h.array && len(h.keys) == len(tablePath) && hasPrefix(h.keys, tablePath) {
				if hdr >= 0 {
					return "", false
				}
				hdr = h.line
			}
		}
		if hdr < 0 {
			return "", false
		}
		kv := strings.TrimSuffix(string(encodeTree(map[string]any{key: value})), "\n") + "\n"
		for _, e := range t.entries {
			full := stringKeys(e.path)
			if len(full) == len(tablePath)+1 && hasPrefix(full, tablePath) && full[len(full)-1] == key && len(e.keys) == 1 {
				first, last := e.line, t.lineOf(max(e.end-1, e.start))
				indent := ls[first][:len(ls[first])-len(strings.TrimLeft(ls[first], " \t"))]
				out := append([]string(nil), ls[:first]...)
				out = append(out, indent+kv)
				return strings.Join(append(out, ls[last+1:]...), ""), true
			}
		}
		out := append([]string(nil), ls[:hdr+1]...)
		if !strings.HasSuffix(ls[hdr], "\n") {
			out[hdr] += "\n"
		}
		out = append(out, kv)
		return strings.Join(append(out, ls[hdr+1:]...), ""), true
	}
}

// secretValues collects the values of every config.Secret in a config.
func secretValues(v any) map[string]bool {
	out := map[string]bool{}
	walkSecrets(reflect.ValueOf(v), out, 0)
	return out
}

var secretType = reflect.TypeOf(config.Secret(""))

func walkSecrets(v reflect.Value, out map[string]bool, depth int) {
	if depth > 32 || !v.IsValid() {
		return
	}
	if v.Type() == secretType {
		if s := v.String(); s != "" {
			out[s] = true
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			walkSecrets(v.Elem(), out, depth+1)
		}
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				walkSecrets(v.Field(i), out, depth+1)
			}
		}
	case reflect.Slice, reflect.Array:
		for i := 0; i < v.Len(); i++ {
			walkSecrets(v.Index(i), out, depth+1)
		}
	case reflect.Map:
		it := v.MapRange()
		for it.Next() {
			walkSecrets(it.Value(), out, depth+1)
		}
	}
}

// walkStrings calls fn for every string in a tree; fn may replace it.
func walkStrings(v any, path []any, fn func(path []any, s string) (string, bool)) any {
	switch x := v.(type) {
	case string:
		if r, ok := fn(path, x); ok {
			return r
		}
	case map[string]any:
		for k, e := range x {
			x[k] = walkStrings(e, append(path[:len(path):len(path)], k), fn)
		}
	case []map[string]any:
		for i, e := range x {
			x[i] = walkStrings(e, append(path[:len(path):len(path)], i), fn).(map[string]any)
		}
	case []any:
		for i, e := range x {
			x[i] = walkStrings(e, append(path[:len(path):len(path)], i), fn)
		}
	}
	return v
}

// maskText replaces every string literal whose value is a secret with
// "******", keeping the rest of the text as it is.
func maskText(text []byte, secrets map[string]bool) []byte {
	if len(secrets) == 0 {
		return text
	}
	t := lexTOML(string(text))
	var b bytes.Buffer
	pos := 0
	for _, s := range t.strs {
		if secrets[s.value] {
			b.WriteString(t.src[pos:s.start])
			b.WriteString(`"` + masked + `"`)
			pos = s.end
		}
	}
	b.WriteString(t.src[pos:])
	out := b.Bytes()
	tree, err := decodeTree(out)
	if err != nil {
		return []byte("# The running config could not be shown with its secrets masked.\n")
	}
	leak := false
	walkStrings(tree, nil, func(_ []any, s string) (string, bool) {
		if secrets[s] {
			leak = true
			return masked, true
		}
		return "", false
	})
	if leak {
		return append([]byte(rewrittenNote), encodeTree(tree)...)
	}
	return out
}

// restoreMasked puts back, in a config pushed to the API, the secrets that
// it carries as "******" where the running config (old) has a string at
// the same place. It returns the text to apply.
func restoreMasked(text []byte, old map[string]any) []byte {
	if !bytes.Contains(text, []byte(masked)) {
		return text
	}
	tree, err := decodeTree(text)
	if err != nil {
		return text // the parser reports the syntax error
	}
	n := 0
	walkStrings(tree, nil, func(p []any, s string) (string, bool) {
		if s != masked {
			return "", false
		}
		if o, ok := lookup(old, p); ok {
			if os, ok := o.(string); ok {
				n++
				return os, true
			}
		}
		return "", false
	})
	if n == 0 {
		return text
	}
	t := lexTOML(string(text))
	var b bytes.Buffer
	pos := 0
	for _, s := range t.strs {
		if s.value != masked || s.path == nil {
			continue
		}
		if o, ok := lookup(old, s.path); ok {
			if os, ok := o.(string); ok {
				b.WriteString(t.src[pos:s.start])
				b.WriteString(quoteBasic(os))
				pos = s.end
			}
		}
	}
	b.WriteString(t.src[pos:])
	out := b.Bytes()
	if got, err := decodeTree(out); err == nil && reflect.DeepEqual(got, tree) {
		return out
	}
	return append([]byte(rewrittenNote), encodeTree(tree)...)
}

// restoreMaskedTree does the same as restoreMasked on a tree (a section
// sent as JSON), in place.
func restoreMaskedTree(v any, old any) {
	walkStrings(v, nil, func(p []any, s string) (string, bool) {
		if s != masked {
			return "", false
		}
		if o, ok := lookup(old, p); ok {
			if os, ok := o.(string); ok {
				return os, true
			}
		}
		return "", false
	})
}

func sortedMapKeys(m map[string]any) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
