package config

import (
	"fmt"
	"sort"
	"strings"
)

// Placeholder roots. A template may use only these names; anything else is a
// config error, so a typo such as ${clinetid} is caught by `config check`
// instead of silently becoming a literal prefix on a fleet of boxes.
//
// Agent roots are known when the agent starts; client roots are known per
// client. Names ending in "." are prefixes: client_attrs.NAME, packet.NAME.
var (
	agentRoots  = []string{"agent.id", "board.serial", "board.model", "board.profile", "hostname"}
	clientRoots = []string{
		"clientid", "username", "password", "peerhost", "peerport", "protocol",
		"gateway", "listener", "endpoint_name", "phone", "node", "wireless_node_id", "cert_common_name",
		"cert_subject", "gateway_id", "client_attrs.", "packet.",
	}
)

// AgentRoots returns the placeholder names usable in agent-level templates.
func AgentRoots() []string { return append([]string(nil), agentRoots...) }

// ClientRoots returns the placeholder names usable in per-client templates
// (mountpoints, clientinfo_override, protocol topics), in addition to the agent roots.
func ClientRoots() []string { return append([]string(nil), clientRoots...) }

// Vars resolves placeholder names when a template is rendered.
type Vars interface {
	// Lookup returns the value of a name and whether it is defined.
	Lookup(name string) (string, bool)
}

// MapVars is a Vars backed by a map.
type MapVars map[string]string

// Lookup implements Vars.
func (m MapVars) Lookup(name string) (string, bool) { v, ok := m[name]; return v, ok }

// Template is a string with ${name} placeholders, checked when the config is
// read. The zero value is the empty template.
//
// Rendering follows EMQX: a placeholder whose value is undefined stays in the
// output literally, so two clients without a username never silently share
// an empty prefix with clients that have one.
type Template struct {
	raw   string
	parts []tplPart
	agent bool
}

type tplPart struct {
	lit string
	ref string // empty for a literal part
}

// ParseTemplate checks s and compiles it. With agentOnly set only agent
// roots are allowed (templates rendered once at start, such as uplink.client_id).
func ParseTemplate(s string, agentOnly bool) (Template, error) {
	t := Template{raw: s, agent: agentOnly}
	rest := s
	for rest != "" {
		i := strings.Index(rest, "${")
		if i < 0 {
			t.parts = append(t.parts, tplPart{lit: rest})
			break
		}
		if i > 0 {
			t.parts = append(t.parts, tplPart{lit: rest[:i]})
		}
		j := strings.IndexByte(rest[i+2:], '}')
		if j < 0 {
			return Template{}, fmt.Errorf("unterminated placeholder in %q", s)
		}
		name := rest[i+2 : i+2+j]
		if err := checkRoot(name, agentOnly); err != nil {
			return Template{}, fmt.Errorf("%w in %q", err, s)
		}
		t.parts = append(t.parts, tplPart{ref: name})
		rest = rest[i+2+j+1:]
	}
	return t, nil
}

// MustTemplate is ParseTemplate for defaults in code; it panics on error.
func MustTemplate(s string) Template {
	t, err := ParseTemplate(s, false)
	if err != nil {
		panic(err)
	}
	return t
}

func checkRoot(name string, agentOnly bool) error {
	if name == "" {
		return fmt.Errorf("empty placeholder ${}")
	}
	for _, r := range agentRoots {
		if name == r {
			return nil
		}
	}
	if !agentOnly {
		for _, r := range clientRoots {
			if name == r && !strings.HasSuffix(r, ".") {
				return nil
			}
			if strings.HasSuffix(r, ".") && strings.HasPrefix(name, r) && len(name) > len(r) && validAttrName(name[len(r):]) {
				return nil
			}
		}
	}
	known := append([]string(nil), agentRoots...)
	if !agentOnly {
		for _, r := range clientRoots {
			if strings.HasSuffix(r, ".") {
				r += "NAME"
			}
			known = append(known, r)
		}
	}
	sort.Strings(known)
	return fmt.Errorf("unknown placeholder ${%s} (known: %s)", name, strings.Join(known, ", "))
}

func validAttrName(s string) bool {
	for _, c := range s {
		if !(c == '_' || c == '-' || c == '.' || c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
			return false
		}
	}
	return true
}

// String returns the template as written.
func (t Template) String() string { return t.raw }

// IsZero reports whether the template is empty.
func (t Template) IsZero() bool { return t.raw == "" }

// HasPlaceholders reports whether rendering can give different results.
func (t Template) HasPlaceholders() bool {
	for _, p := range t.parts {
		if p.ref != "" {
			return true
		}
	}
	return false
}

// Refs returns the placeholder names used, in order.
func (t Template) Refs() []string {
	var r []string
	for _, p := range t.parts {
		if p.ref != "" {
			r = append(r, p.ref)
		}
	}
	return r
}

// Render expands the template. Undefined names stay literal (see Template).
func (t Template) Render(v Vars) string {
	if len(t.parts) == 1 && t.parts[0].ref == "" {
		return t.parts[0].lit
	}
	var b strings.Builder
	b.Grow(len(t.raw) + 16)
	for _, p := range t.parts {
		if p.ref == "" {
			b.WriteString(p.lit)
			continue
		}
		if v != nil {
			if val, ok := v.Lookup(p.ref); ok {
				b.WriteString(val)
				continue
			}
		}
		b.WriteString("${")
		b.WriteString(p.ref)
		b.WriteByte('}')
	}
	return b.String()
}

// MarshalText writes the template as written.
func (t Template) MarshalText() ([]byte, error) { return []byte(t.raw), nil }

// UnmarshalConfig implements Unmarshaler.
func (t *Template) UnmarshalConfig(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("expected a string, got %s", describe(v))
	}
	p, err := ParseTemplate(s, false)
	if err != nil {
		return err
	}
	*t = p
	return nil
}

// AgentTemplate is a Template limited to agent roots (agent.id, board.serial…),
// for values rendered once when the agent starts.
type AgentTemplate struct{ Template }

// UnmarshalConfig implements Unmarshaler.
func (t *AgentTemplate) UnmarshalConfig(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("expected a string, got %s", describe(v))
	}
	p, err := ParseTemplate(s, true)
	if err != nil {
		return err
	}
	t.Template = p
	return nil
}

// MustAgentTemplate is ParseTemplate(s, true) for defaults in code.
func MustAgentTemplate(s string) AgentTemplate {
	t, err := ParseTemplate(s, true)
	if err != nil {
		panic(err)
	}
	return AgentTemplate{t}
}
