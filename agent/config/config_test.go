package config

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type testSpec struct {
	GatewayID int    `toml:"gateway_id"`
	Mode      string `toml:"mode"`
}

func (s *testSpec) Validate() error {
	if s.Mode != "a" && s.Mode != "b" {
		return Field("mode", "must be a or b, got %q", s.Mode)
	}
	return nil
}

type sockSpec struct {
	Recbuf  ByteSize `toml:"recbuf"`
	Nodelay bool     `toml:"nodelay"`
}

type serialSpec struct {
	Device string `toml:"device"`
	Baud   int    `toml:"baud"`
}

func (s *serialSpec) Validate() error {
	if s.Device == "" {
		return Field("device", "must be set")
	}
	return nil
}

type userSpec struct {
	Users []struct {
		Username string `toml:"username"`
		Password Secret `toml:"password"`
	} `toml:"users"`
}

func TestMain(m *testing.M) {
	RegisterListener(ListenerSchema{Name: "tcp", NewSpec: func() any { return &sockSpec{} }})
	RegisterListener(ListenerSchema{Name: "tls", Aliases: []string{"ssl"}, NewSpec: func() any { return &sockSpec{} }})
	RegisterListener(ListenerSchema{Name: "udp", NewSpec: func() any { return &sockSpec{} }})
	RegisterListener(ListenerSchema{Name: "serial", NewSpec: func() any { return &serialSpec{Baud: 9600} }})
	RegisterAuthn(AuthnSchema{Name: "anonymous"})
	RegisterAuthn(AuthnSchema{Name: "built_in", NewSpec: func() any { return &userSpec{} }})
	RegisterKind(KindSchema{Name: "alpha", ListenerTypes: []string{"udp", "serial"}, NewSpec: func() any { return &testSpec{Mode: "a"} }})
	RegisterKind(KindSchema{Name: "beta", ListenerTypes: []string{"tcp", "tls"}, DefaultMountpoint: "beta/${clientid}/"})
	os.Exit(m.Run())
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		name string
		toml string
		want []string // every line expected, in order
	}{
		{"ok empty", ``, nil},
		{"syntax", "[agent\nid=1", []string{"t.toml:2: syntax: "}},
		{"unknown top key", "colour = 1", []string{"t.toml:1: colour: unknown key"}},
		{"unknown nested key", "[agent]\nid = \"x\"\nlog_lvl = \"debug\"", []string{"t.toml:3: agent.log_lvl: unknown key"}},
		{"bad duration", "[agent]\nshutdown_timeout = \"10 parsecs\"", []string{`t.toml:2: agent.shutdown_timeout: bad duration "10 parsecs" (want a number with a unit: ms, s, m, h, d)`}},
		{"duration not a string", "[agent]\nshutdown_timeout = 10", []string{`t.toml:2: agent.shutdown_timeout: expected a duration string such as "30s", got integer 10`}},
		{"bad size", "[uplink.store]\nmax_bytes = \"12 parsecs\"", []string{`t.toml:2: uplink.store.max_bytes: bad size "12 parsecs" (want a number with a unit: B, KB, MB, GB)`}},
		{"size below minimum", "[uplink.store]\nmax_bytes = \"64KB\"", []string{`t.toml:2: uplink.store.max_bytes: 64KB is below the 1MB minimum`}},
		{"min_free below minimum", "[uplink.store]\nmin_free = \"1MB\"", []string{`t.toml:2: uplink.store.min_free: 1MB is below the 4MB minimum (a memtable flush needs room)`}},
		{"bad enum", "[agent]\nsecurity_profile = \"lax\"", []string{`t.toml:2: agent.security_profile: must be "hardened" or "legacy", got "lax"`}},
		{"bad placeholder", "[gateway.alpha]\nmountpoint = \"x/${clinetid}/\"", []string{`t.toml:2: gateway.alpha.mountpoint: unknown placeholder ${clinetid} (known: `}},
		{"client placeholder in agent template", "[uplink]\nclient_id = \"gw-${clientid}\"", []string{`t.toml:2: uplink.client_id: unknown placeholder ${clientid} (known: agent.id, board.model, board.profile, board.serial, hostname) in "gw-${clientid}"`}},
		{"unterminated placeholder", "[gateway.alpha]\nmountpoint = \"x/${clientid\"", []string{`t.toml:2: gateway.alpha.mountpoint: unterminated placeholder in "x/${clientid"`}},
		{"client_attrs ok", "[gateway.alpha]\nmountpoint = \"${client_attrs.site}/${clientid}/\"", nil},
		{"unknown kind", "[gateway.gamma]\nenable = true", []string{`t.toml:1: gateway.gamma: unknown gateway kind "gamma" (available: alpha, beta)`}},
		{"kind validates own section", "[gateway.alpha]\nmode = \"c\"", []string{`t.toml:2: gateway.alpha.mode: must be a or b, got "c"`}},
		{"kind key wrong type", "[gateway.alpha]\ngateway_id = \"one\"", []string{`t.toml:2: gateway.alpha.gateway_id: expected an integer, got string "one"`}},
		{"unknown gateway key", "[gateway.alpha]\nmount_point = \"x\"", []string{`t.toml:2: gateway.alpha.mount_point: unknown key`}},
		{"listener type not allowed", "[gateway.beta.listeners.udp.default]\nbind = \"1884\"", []string{`t.toml:1: gateway.beta.listeners.udp: listener type "udp" is not available for gateway beta (allowed: tcp, tls)`}},
		{"unknown listener type", "[gateway.beta.listeners.quic.default]\nbind = \"1884\"", []string{`t.toml:1: gateway.beta.listeners.quic: listener type "quic" is not available for gateway beta (allowed: tcp, tls)`}},
		{"ssl alias", "[gateway.beta.listeners.ssl.default]\nbind = \"0.0.0.0:61614\"", nil},
		{"unknown listener key", "[gateway.alpha.listeners.udp.default]\nbind = \"1884\"\nmax_conection = 5", []string{`t.toml:3: gateway.alpha.listeners.udp.default.max_conection: unknown key`}},
		{"listener type spec validates", "[gateway.alpha.listeners.serial.bus]\nbaud = 115200", []string{`t.toml:1: gateway.alpha.listeners.serial.bus.device: must be set`}},
		{"bad bind", "[gateway.alpha.listeners.udp.default]\nbind = \"localhost\"", []string{`t.toml:2: gateway.alpha.listeners.udp.default.bind: bad address "localhost" (want host:port)`}},
		{"max_connections infinity", "[gateway.alpha.listeners.udp.default]\nbind = \"1884\"\nmax_connections = \"infinity\"", nil},
		{"max_connections bad", "[gateway.alpha.listeners.udp.default]\nbind = \"1884\"\nmax_connections = \"lots\"", []string{`t.toml:3: gateway.alpha.listeners.udp.default.max_connections: expected a non-negative integer or "infinity", got string "lots"`}},
		{"bad access rule", "[gateway.alpha.listeners.udp.default]\nbind = \"1884\"\naccess_rules = [\"allow 10.0.0.0/8\", \"permit all\"]", []string{`t.toml:3: gateway.alpha.listeners.udp.default.access_rules[1]: bad access rule "permit all" (want "allow|deny <ip>|<cidr>|all")`}},
		{"authn missing type", "[[gateway.alpha.authentication]]\nenable = true", []string{`t.toml:1: gateway.alpha.authentication[0].type: missing authenticator type (one of anonymous, built_in)`}},
		{"authn unknown type", "[[gateway.alpha.authentication]]\ntype = \"ldap\"", []string{`t.toml:2: gateway.alpha.authentication[0].type: unknown authenticator type "ldap" (one of anonymous, built_in)`}},
		{"authn unknown key in second", "[[gateway.alpha.authentication]]\ntype = \"anonymous\"\n[[gateway.alpha.authentication]]\ntype = \"built_in\"\nuserz = []", []string{`t.toml:5: gateway.alpha.authentication[1].userz: unknown key`}},
		{"listener authn", "[gateway.alpha.listeners.udp.default]\nbind = \"1884\"\n[[gateway.alpha.listeners.udp.default.authentication]]\ntype = \"anonymous\"\nfoo = 1", []string{`t.toml:5: gateway.alpha.listeners.udp.default.authentication[0].foo: unknown key`}},
		{"acl bad", "[[authorization.rules]]\npermission = \"maybe\"\naction = \"publish\"\ntopics = [\"a/#/b\"]", []string{
			`t.toml:2: authorization.rules[0].permission: must be "allow" or "deny", got "maybe"`,
			`t.toml:4: authorization.rules[0].topics[0]: bad topic filter "a/#/b": '#' must be the whole last level`,
		}},
		{"acl bad regexp", "[[authorization.rules]]\npermission = \"allow\"\naction = \"all\"\ntopics = [\"a\"]\nclientid = \"re:dev-(\"", []string{`t.toml:5: authorization.rules[0].clientid: bad regexp "dev-(": error parsing regexp: missing closing ): ` + "`dev-(`"}},
		{"uplink server", "[uplink]\nserver = \"http://x:1\"", []string{`t.toml:2: uplink.server: unsupported scheme "http" (mqtt, mqtts, ws, wss)`}},
		{"quarantine after one close", "[uplink]\nquarantine_after = 1", []string{`t.toml:2: uplink.quarantine_after: must be 0 (off) or 2..100, got 1`}},
		{"all errors reported", "[agent]\nsecurity_profile = \"x\"\nbogus = 1\n[gateway.alpha]\nmode = \"z\"\n[gateway.alpha.listeners.udp.u1]\nbind = \"nope\"\n[api]\nlisten = \"bad\"", []string{
			`t.toml:2: agent.security_profile: must be "hardened" or "legacy", got "x"`,
			`t.toml:3: agent.bogus: unknown key`,
			`t.toml:5: gateway.alpha.mode: must be a or b, got "z"`,
			`t.toml:7: gateway.alpha.listeners.udp.u1.bind: bad address "nope" (want host:port)`,
			`t.toml:9: api.listen: bad address "bad" (want host:port)`,
		}},
		{"quoted keys", "[gateway.alpha.listeners.udp.\"my listener\"]\nbind = \"1884\"\n\"weird key\" = 1", []string{`t.toml:3: gateway.alpha.listeners.udp.my listener.weird key: unknown key`}},
		{"inline table", "[gateway]\nalpha = { mode = \"q\" }", []string{`t.toml:2: gateway.alpha.mode: must be a or b, got "q"`}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.toml), "t.toml")
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected error:\n%v", err)
				}
				return
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("want Errors, got %v", err)
			}
			if len(es) != len(c.want) {
				t.Fatalf("got %d errors, want %d:\n%v", len(es), len(c.want), err)
			}
			for i, w := range c.want {
				if !strings.HasPrefix(es[i].Error(), w) {
					t.Errorf("error %d:\n got %s\nwant %s", i, es[i].Error(), w)
				}
			}
		})
	}
}

func TestParseValues(t *testing.T) {
	src := `
[agent]
id = "gw-${board.serial}"
data_dir = "/tmp/x"
security_profile = "legacy"
shutdown_timeout = "2d"

[uplink]
server = "mqtts://iot.example.com:8883"
keepalive = "auto"

[uplink.store]
max_bytes = "256MB"
max_age = "168h"

[gateway.alpha]
gateway_id = 7
mountpoint = "alpha/${clientid}/"
idle_timeout = "5s"
clientinfo_override = { clientid = "${username}-x" }

[[gateway.alpha.authentication]]
type = "anonymous"

[gateway.alpha.listeners.udp.default]
bind = "0.0.0.0:1884"
recbuf = "64KB"
max_conn_rate = 50
access_rules = ["deny 10.1.1.1", "allow 10.0.0.0/8", "deny all"]

[gateway.alpha.listeners.serial.rs485]
device = "/dev/ttyAMA0"
mountpoint = "bus/"
authentication = []

[gateway.beta.listeners.ssl.s]
bind = "61614"
`
	c, err := Parse([]byte(src), "t.toml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Agent.ID.Render(MapVars{"board.serial": "S1"}) != "gw-S1" {
		t.Errorf("agent id %q", c.Agent.ID.Render(MapVars{"board.serial": "S1"}))
	}
	if c.Agent.ShutdownTimeout.D() != 48*time.Hour {
		t.Errorf("shutdown_timeout %v", c.Agent.ShutdownTimeout)
	}
	if c.Uplink.Store.MaxBytes != 256<<20 || c.Uplink.Store.MaxAge.D() != 168*time.Hour {
		t.Errorf("store %+v", c.Uplink.Store)
	}
	if c.Uplink.Store.Sync != "batch" || c.Uplink.MaxInflight != 64 {
		t.Errorf("defaults lost: %+v", c.Uplink)
	}
	a := c.Gateways["alpha"]
	if a == nil || a.Spec.(*testSpec).GatewayID != 7 || a.Spec.(*testSpec).Mode != "a" {
		t.Fatalf("alpha %+v", a)
	}
	if a.IdleTimeout.D() != 5*time.Second || !a.Enable || !a.EnableStats {
		t.Errorf("alpha common %+v", a)
	}
	if got := a.ClientinfoOverride.ClientID.Render(MapVars{"username": "u"}); got != "u-x" {
		t.Errorf("override %q", got)
	}
	if len(a.Authentication.Chain) != 1 || a.Authentication.Chain[0].Type != "anonymous" {
		t.Errorf("authn %+v", a.Authentication)
	}
	if len(a.Listeners) != 2 {
		t.Fatalf("listeners %d", len(a.Listeners))
	}
	ser, udp := a.Listeners[0], a.Listeners[1]
	if ser.ID() != "alpha:serial:rs485" || udp.ID() != "alpha:udp:default" {
		t.Fatalf("ids %s %s", ser.ID(), udp.ID())
	}
	if udp.Spec.(*sockSpec).Recbuf != 64<<10 || udp.MaxConnRate != 50 || udp.MaxConnections != 1024 {
		t.Errorf("udp %+v %+v", udp, udp.Spec)
	}
	if len(udp.AccessRules) != 3 || udp.AccessRules[1].String() != "allow 10.0.0.0/8" {
		t.Errorf("rules %v", udp.AccessRules)
	}
	if got := a.EffectiveMountpoint(ser).String(); got != "bus/" {
		t.Errorf("serial mountpoint %q", got)
	}
	if got := a.EffectiveMountpoint(udp).String(); got != "alpha/${clientid}/" {
		t.Errorf("udp mountpoint %q", got)
	}
	if len(a.EffectiveAuthn(ser)) != 0 || !ser.Authentication.Set {
		t.Errorf("serial authn should be explicitly empty")
	}
	if len(a.EffectiveAuthn(udp)) != 1 {
		t.Errorf("udp authn should inherit")
	}
	b := c.Gateways["beta"]
	if b.Mountpoint.String() != "beta/${clientid}/" {
		t.Errorf("default mountpoint %q", b.Mountpoint)
	}
	if b.Listeners[0].ID() != "beta:ssl:s" || b.Listeners[0].Transport != "tls" {
		t.Errorf("ssl listener %s %s", b.Listeners[0].ID(), b.Listeners[0].Transport)
	}
}

func TestLoadFileError(t *testing.T) {
	p := filepath.Join(t.TempDir(), "e.toml")
	if err := os.WriteFile(p, []byte("[agent]\nbad = 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(p)
	if err == nil || err.Error() != p+":2: agent.bad: unknown key" {
		t.Fatalf("got %v", err)
	}
	_, err = Load(filepath.Join(t.TempDir(), "missing.toml"))
	if err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("got %v", err)
	}
}

func TestAccessRules(t *testing.T) {
	for _, c := range []struct {
		rule, addr string
		match      bool
	}{
		{"allow all", "1.2.3.4", true},
		{"deny 10.0.0.0/8", "10.9.9.9", true},
		{"deny 10.0.0.0/8", "11.0.0.1", false},
		{"allow 192.168.1.7", "192.168.1.7", true},
		{"allow 192.168.1.7", "::ffff:192.168.1.7", true},
		{"allow ::1", "::1", true},
		{"allow fd00::/8", "fd12::1", true},
	} {
		r, err := ParseAccessRule(c.rule)
		if err != nil {
			t.Fatal(err)
		}
		if got := r.Matches(mustAddr(c.addr)); got != c.match {
			t.Errorf("%s vs %s: %v", c.rule, c.addr, got)
		}
	}
}

func TestUnits(t *testing.T) {
	for in, want := range map[string]ByteSize{"512B": 512, "1KB": 1024, "256KB": 256 << 10, "1MB": 1 << 20, "2GB": 2 << 30, "1.5MB": 3 << 19, "64": 64, "1kib": 1024} {
		got, err := ParseByteSize(in)
		if err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "MB", "-1KB", "1TB", "one"} {
		if _, err := ParseByteSize(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for in, want := range map[string]time.Duration{"30s": 30 * time.Second, "5m": 5 * time.Minute, "1h30m": 90 * time.Minute, "250ms": 250 * time.Millisecond, "1d": 24 * time.Hour} {
		got, err := ParseDuration(in)
		if err != nil || got != want {
			t.Errorf("%s: %v %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "30", "-5s", "1y"} {
		if _, err := ParseDuration(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	if ByteSize(256<<20).String() != "256MB" || ByteSize(1000).String() != "1000B" {
		t.Error("ByteSize.String")
	}
	if Secret("pw").String() == "pw" || fmt.Sprint(Secret("pw")) == "pw" {
		t.Error("secret leaks")
	}
}

func TestTemplateRender(t *testing.T) {
	tp, err := ParseTemplate("m/${clientid}/${username}/${client_attrs.site}/", false)
	if err != nil {
		t.Fatal(err)
	}
	got := tp.Render(MapVars{"clientid": "c1", "client_attrs.site": "s"})
	if got != "m/c1/${username}/s/" {
		t.Errorf("got %q", got)
	}
	if r := tp.Refs(); len(r) != 3 || r[2] != "client_attrs.site" {
		t.Errorf("refs %v", r)
	}
	lit := MustTemplate("plain/")
	if lit.HasPlaceholders() || lit.Render(nil) != "plain/" {
		t.Error("literal")
	}
	if _, err := ParseTemplate("${client_attrs.}", false); err == nil {
		t.Error("empty attr accepted")
	}
	if _, err := ParseTemplate("${}", false); err == nil {
		t.Error("empty placeholder accepted")
	}
}

// FuzzTemplate: parsing never panics, and rendering a parsed template with
// every reference defined leaves no placeholder of a known name behind.
func FuzzTemplate(f *testing.F) {
	for _, s := range []string{"", "a/${clientid}/", "${", "${}", "$${clientid}}", "${client_attrs.x}${username}", "${packet.headers.login}", "x${agent.id"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := ParseTemplate(s, false)
		if err != nil {
			return
		}
		if tp.String() != s {
			t.Fatalf("raw %q != %q", tp.String(), s)
		}
		vars := MapVars{}
		for _, r := range tp.Refs() {
			vars[r] = "V"
		}
		out := tp.Render(vars)
		for _, r := range tp.Refs() {
			if strings.Contains(out, "${"+r+"}") && !strings.Contains(strings.ReplaceAll(s, "${"+r+"}", ""), "${"+r+"}") {
				t.Fatalf("%q rendered to %q keeps ${%s}", s, out, r)
			}
		}
		if len(tp.Refs()) == 0 && out != s {
			t.Fatalf("literal %q rendered to %q", s, out)
		}
	})
}

// FuzzParse: arbitrary TOML never panics the decoder, and a failure always
// comes as Errors with at least one entry.
func FuzzParse(f *testing.F) {
	f.Add("[agent]\nid = \"x\"\n")
	f.Add("[gateway.alpha.listeners.udp.default]\nbind = \"1884\"\n")
	f.Add("[[gateway.alpha.authentication]]\ntype = \"built_in\"\nusers = [{username = \"a\", password = \"b\"}]\n")
	f.Add("gateway = 3")
	f.Add("[gateway.beta]\nlisteners = 1")
	f.Fuzz(func(t *testing.T, s string) {
		c, err := Parse([]byte(s), "f.toml")
		if err != nil {
			var es Errors
			if !errors.As(err, &es) || len(es) == 0 {
				t.Fatalf("error of wrong shape: %v", err)
			}
			return
		}
		if c == nil {
			t.Fatal("nil config without error")
		}
	})
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
