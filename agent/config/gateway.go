package config

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Gateways is the [gateway] table: one instance per kind.
type Gateways map[string]*Gateway

// Names returns the configured kinds, sorted.
func (g Gateways) Names() []string { return sortedKeys(g) }

// Gateway is [gateway.<kind>]: the keys every kind shares (named as in
// EMQX 5) plus the kind's own settings in Spec.
type Gateway struct {
	Kind string `toml:"-"`

	Enable             bool               `toml:"enable"`
	EnableStats        bool               `toml:"enable_stats"`
	IdleTimeout        Duration           `toml:"idle_timeout"`
	Mountpoint         Template           `toml:"mountpoint"`
	ClientinfoOverride ClientinfoOverride `toml:"clientinfo_override"`
	Authentication     Authns             `toml:"authentication"`

	// Listeners sorted by ID.
	Listeners []*Listener `toml:"-"`
	// Spec is the kind's own settings (a pointer from KindSchema.NewSpec), or nil.
	Spec any `toml:"-"`
}

// ClientinfoOverride rewrites identity fields from templates after a
// client's ClientInfo is built. Empty templates leave the field alone.
type ClientinfoOverride struct {
	ClientID Template `toml:"clientid"`
	Username Template `toml:"username"`
	Password Template `toml:"password"`
}

// Listener is [gateway.<kind>.listeners.<type>.<name>].
type Listener struct {
	Kind      string `toml:"-"`
	Type      string `toml:"-"` // as written ("ssl")
	Transport string `toml:"-"` // canonical ("tls")
	Name      string `toml:"-"`

	Enable         bool         `toml:"enable"`
	Bind           string       `toml:"bind"`
	MaxConnections Limit        `toml:"max_connections"`
	MaxConnRate    Limit        `toml:"max_conn_rate"`
	Mountpoint     *Template    `toml:"mountpoint"` // nil: the gateway's
	EnableAuthn    bool         `toml:"enable_authn"`
	AccessRules    []AccessRule `toml:"access_rules"`
	// Authentication overrides the gateway's chain when set (even to []).
	Authentication Authns `toml:"authentication"`

	// Spec is the listener type's settings (from ListenerSchema.NewSpec).
	Spec any `toml:"-"`
	// KindSpec is the kind's extra listener settings, or nil.
	KindSpec any `toml:"-"`
}

// ID is "{kind}:{type}:{name}", the listener id of EMQX's API.
func (l *Listener) ID() string { return l.Kind + ":" + l.Type + ":" + l.Name }

// Authns is an authenticator chain, written as an array of tables
// ([[...authentication]]) or, as EMQX writes it, a single table.
type Authns struct {
	Set   bool // present in the file (an explicit [] is a set, empty chain)
	Chain []*Authn
}

// Authn is one authenticator of a chain.
type Authn struct {
	Type   string `toml:"type"`
	Enable bool   `toml:"enable"`
	// Spec is the type's settings (from AuthnSchema.NewSpec).
	Spec any `toml:"-"`
}

func (a *Authns) decodeConfig(d *decoder, path string, v any) {
	a.Set = true
	a.Chain = nil
	var items []map[string]any
	switch x := v.(type) {
	case map[string]any:
		d.decodeAuthn(path, x, a)
		return
	case []map[string]any:
		items = x
	case []any:
		for i, it := range x {
			m, ok := it.(map[string]any)
			if !ok {
				d.errorf(path+"["+strconv.Itoa(i)+"]", "expected a table, got %s", describe(it))
				continue
			}
			items = append(items, m)
		}
	default:
		d.errorf(path, "expected an array of tables, got %s", describe(v))
		return
	}
	for i, m := range items {
		d.decodeAuthn(path+"["+strconv.Itoa(i)+"]", m, a)
	}
}

func (d *decoder) decodeAuthn(path string, m map[string]any, a *Authns) {
	t, ok := m["type"].(string)
	if !ok {
		d.errorf(join(path, "type"), "missing authenticator type (one of %s)", authnNames())
		return
	}
	s, ok := authnSchema(t)
	if !ok {
		d.errorf(join(path, "type"), "unknown authenticator type %q (one of %s)", t, authnNames())
		return
	}
	an := &Authn{Type: t, Enable: true}
	var spec any
	if s.NewSpec != nil {
		spec = s.NewSpec()
	}
	d.decodeTable(path, m, an, spec)
	an.Spec = spec
	a.Chain = append(a.Chain, an)
}

// AccessRule is one "allow|deny <ip>|<cidr>|all" entry; first match wins.
type AccessRule struct {
	Allow  bool
	Prefix netip.Prefix // invalid (zero) means "all"
	raw    string
}

// Matches reports whether the rule applies to addr.
func (r AccessRule) Matches(addr netip.Addr) bool {
	if !r.Prefix.IsValid() {
		return true
	}
	return r.Prefix.Contains(addr.Unmap())
}

// String returns the rule as written.
func (r AccessRule) String() string { return r.raw }

// MarshalText writes the rule as written.
func (r AccessRule) MarshalText() ([]byte, error) { return []byte(r.raw), nil }

// UnmarshalConfig implements Unmarshaler.
func (r *AccessRule) UnmarshalConfig(v any) error {
	s, ok := v.(string)
	if !ok {
		return fmt.Errorf("expected a rule string such as \"allow 10.0.0.0/8\", got %s", describe(v))
	}
	p, err := ParseAccessRule(s)
	if err != nil {
		return err
	}
	*r = p
	return nil
}

// ParseAccessRule parses "allow 192.168.1.0/24", "deny 10.0.0.1", "deny all".
func ParseAccessRule(s string) (AccessRule, error) {
	f := strings.Fields(s)
	if len(f) != 2 || (f[0] != "allow" && f[0] != "deny") {
		return AccessRule{}, fmt.Errorf("bad access rule %q (want \"allow|deny <ip>|<cidr>|all\")", s)
	}
	r := AccessRule{Allow: f[0] == "allow", raw: s}
	if f[1] == "all" {
		return r, nil
	}
	if strings.Contains(f[1], "/") {
		p, err := netip.ParsePrefix(f[1])
		if err != nil {
			return AccessRule{}, fmt.Errorf("bad access rule %q: %v", s, err)
		}
		r.Prefix = p.Masked()
		return r, nil
	}
	a, err := netip.ParseAddr(f[1])
	if err != nil {
		return AccessRule{}, fmt.Errorf("bad access rule %q: %v", s, err)
	}
	a = a.Unmap()
	r.Prefix = netip.PrefixFrom(a, a.BitLen())
	return r, nil
}

func (g *Gateways) decodeConfig(d *decoder, path string, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		d.errorf(path, "expected a table, got %s", describe(v))
		return
	}
	if *g == nil {
		*g = Gateways{}
	}
	for _, kind := range sortedKeys(m) {
		gp := join(path, kind)
		ks, ok := Kind(kind)
		if !ok {
			d.errorf(gp, "unknown gateway kind %q (available: %s)", kind, strings.Join(Kinds(), ", "))
			continue
		}
		gm, ok := m[kind].(map[string]any)
		if !ok {
			d.errorf(gp, "expected a table, got %s", describe(m[kind]))
			continue
		}
		gw := NewGateway(ks)
		common := map[string]any{}
		var lis any
		for k, v := range gm {
			if k == "listeners" {
				lis = v
				continue
			}
			common[k] = v
		}
		d.decodeTable(gp, common, gw, gw.Spec)
		if lis != nil {
			d.decodeListeners(join(gp, "listeners"), ks, gw, lis)
		}
		(*g)[kind] = gw
	}
}

// NewGateway returns a gateway section of kind ks with every default set.
func NewGateway(ks KindSchema) *Gateway {
	gw := &Gateway{
		Kind:        ks.Name,
		Enable:      true,
		EnableStats: true,
		IdleTimeout: Duration(30e9),
	}
	if ks.DefaultMountpoint != "" {
		gw.Mountpoint = MustTemplate(ks.DefaultMountpoint)
	}
	if ks.NewSpec != nil {
		gw.Spec = ks.NewSpec()
	}
	return gw
}

// NewListener returns a listener of the given type with every default set.
func NewListener(ks KindSchema, typ, name string) (*Listener, error) {
	ls, ok := listenerSchema(typ)
	if !ok || !contains(ks.ListenerTypes, ls.Name) {
		return nil, fmt.Errorf("listener type %q is not available for gateway %s (allowed: %s)", typ, ks.Name, strings.Join(ks.ListenerTypes, ", "))
	}
	l := &Listener{
		Kind: ks.Name, Type: typ, Transport: ls.Name, Name: name,
		Enable:         true,
		Bind:           ls.DefaultBind,
		MaxConnections: 1024,
		MaxConnRate:    1000,
		EnableAuthn:    true,
	}
	if b, ok := ks.DefaultBinds[ls.Name]; ok {
		l.Bind = b
	}
	if ls.NewSpec != nil {
		l.Spec = ls.NewSpec()
	}
	if ks.NewListenerSpec != nil {
		l.KindSpec = ks.NewListenerSpec(ls.Name)
	}
	return l, nil
}

func (d *decoder) decodeListeners(path string, ks KindSchema, gw *Gateway, v any) {
	types, ok := v.(map[string]any)
	if !ok {
		d.errorf(path, "expected a table, got %s", describe(v))
		return
	}
	for _, typ := range sortedKeys(types) {
		tp := join(path, typ)
		names, ok := types[typ].(map[string]any)
		if !ok {
			d.errorf(tp, "expected a table of named listeners, got %s", describe(types[typ]))
			continue
		}
		for _, name := range sortedKeys(names) {
			lp := join(tp, name)
			l, err := NewListener(ks, typ, name)
			if err != nil {
				d.errorf(tp, "%v", err)
				break
			}
			lm, ok := names[name].(map[string]any)
			if !ok {
				d.errorf(lp, "expected a table, got %s", describe(names[name]))
				continue
			}
			d.decodeTable(lp, lm, l, l.Spec, l.KindSpec)
			ls, _ := listenerSchema(typ)
			if ls.DefaultBind != "" || l.Bind != "" || ls.Name == "udp" || ls.Name == "tcp" || ls.Name == "tls" || ls.Name == "dtls" {
				if err := checkBind(l.Bind); err != nil {
					d.errorf(join(lp, "bind"), "%v", err)
				}
			}
			gw.Listeners = append(gw.Listeners, l)
		}
	}
	sort.Slice(gw.Listeners, func(i, j int) bool { return gw.Listeners[i].ID() < gw.Listeners[j].ID() })
}

// Listener finds a listener by id.
func (g *Gateway) Listener(id string) (*Listener, bool) {
	for _, l := range g.Listeners {
		if l.ID() == id {
			return l, true
		}
	}
	return nil, false
}

// EffectiveMountpoint is the listener's mountpoint, or the gateway's.
func (g *Gateway) EffectiveMountpoint(l *Listener) Template {
	if l != nil && l.Mountpoint != nil {
		return *l.Mountpoint
	}
	return g.Mountpoint
}

// EffectiveAuthn is the listener's chain when it sets one, else the gateway's.
func (g *Gateway) EffectiveAuthn(l *Listener) []*Authn {
	if l != nil && l.Authentication.Set {
		return l.Authentication.Chain
	}
	return g.Authentication.Chain
}

func contains(s []string, x string) bool {
	for _, y := range s {
		if y == x {
			return true
		}
	}
	return false
}

// checkBind accepts "port", ":port", "ip:port" and "[v6]:port".
func checkBind(s string) error {
	if s == "" {
		return errors.New("must not be empty (want ip:port or port)")
	}
	if _, err := strconv.ParseUint(s, 10, 16); err == nil {
		return nil
	}
	return checkHostPort(s)
}

func checkHostPort(s string) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("bad address %q (want host:port)", s)
	}
	if _, err := strconv.ParseUint(port, 10, 16); err != nil {
		return fmt.Errorf("bad port in %q", s)
	}
	if host != "" && strings.ContainsAny(host, " /") {
		return fmt.Errorf("bad host in %q", s)
	}
	return nil
}

func checkIPOrCIDR(s string) error {
	if strings.Contains(s, "/") {
		if _, err := netip.ParsePrefix(s); err != nil {
			return fmt.Errorf("bad CIDR %q", s)
		}
		return nil
	}
	if _, err := netip.ParseAddr(s); err != nil {
		return fmt.Errorf("bad IP address %q", s)
	}
	return nil
}

// checkFilter is MQTT topic-filter syntax, checked here so that config
// stays free of runtime packages.
func checkFilter(f string) error {
	if f == "" {
		return errors.New("empty topic filter")
	}
	if len(f) > 65535 || !utf8.ValidString(f) || strings.ContainsRune(f, 0) {
		return fmt.Errorf("bad topic filter %q", f)
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return fmt.Errorf("bad topic filter %q: '#' must be the whole last level", f)
		}
		if strings.Contains(l, "+") && l != "+" {
			return fmt.Errorf("bad topic filter %q: '+' must be a whole level", f)
		}
	}
	return nil
}
