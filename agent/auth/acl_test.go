package auth

import (
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/gateway"
)

const (
	pub = gateway.ActionPublish
	sub = gateway.ActionSubscribe
)

func allow(action string, topics ...string) config.ACLRule {
	return config.ACLRule{Permission: "allow", Action: action, Topics: topics}
}

func deny(action string, topics ...string) config.ACLRule {
	return config.ACLRule{Permission: "deny", Action: action, Topics: topics}
}

func with(r config.ACLRule, f func(*config.ACLRule)) config.ACLRule { f(&r); return r }

type aclCheck struct {
	ci     *gateway.ClientInfo
	action gateway.Action
	topic  string
	want   bool
}

func who(clientid, username, peer, gw string) *gateway.ClientInfo {
	ci := &gateway.ClientInfo{ClientID: clientid, Username: username, Gateway: gw}
	if peer != "" {
		ci.Peer = netip.MustParseAddrPort(peer)
	}
	return ci
}

func TestACL(t *testing.T) {
	anyone := who("c0", "u0", "203.0.113.9:4000", "mqttsn")
	for _, set := range []struct {
		name    string
		noMatch string
		rules   []config.ACLRule
		checks  []aclCheck
	}{
		{
			name: "first match wins, no_match deny", noMatch: "deny",
			rules: []config.ACLRule{deny("publish", "a/secret"), allow("all", "a/#"), allow("publish", "a/secret")},
			checks: []aclCheck{
				{anyone, pub, "a/secret", false},
				{anyone, pub, "a/open", true},
				{anyone, sub, "a/secret", true}, // the deny is for publish only
				{anyone, pub, "b", false},
				{anyone, sub, "b/#", false},
			},
		},
		{
			name: "no_match allow", noMatch: "allow",
			rules: []config.ACLRule{deny("all", "a/#")},
			checks: []aclCheck{
				{anyone, pub, "a/x", false},
				{anyone, sub, "a/x", false},
				{anyone, pub, "b", true},
				{nil, pub, "b", true},
			},
		},
		{
			name: "actions", noMatch: "deny",
			rules: []config.ACLRule{allow("publish", "p/#"), allow("subscribe", "s/#"), allow("all", "both/#")},
			checks: []aclCheck{
				{anyone, pub, "p/1", true},
				{anyone, sub, "p/1", false},
				{anyone, sub, "s/1", true},
				{anyone, pub, "s/1", false},
				{anyone, pub, "both/1", true},
				{anyone, sub, "both/1", true},
				{anyone, gateway.Action("retain"), "both/1", false},
			},
		},
		{
			name: "clientid, username, ipaddress, gateway", noMatch: "deny",
			rules: []config.ACLRule{
				with(allow("publish", "m/#"), func(r *config.ACLRule) { r.ClientID = "meter-1" }),
				with(allow("publish", "s/#"), func(r *config.ACLRule) { r.ClientID = "re:^sensor-[0-9]+$" }),
				with(allow("publish", "ops/#"), func(r *config.ACLRule) { r.Username = "ops" }),
				with(allow("publish", "adm/#"), func(r *config.ACLRule) { r.Username = "re:^adm" }),
				with(allow("all", "lan/#"), func(r *config.ACLRule) { r.IPAddress = "10.0.0.0/8" }),
				with(allow("all", "host/#"), func(r *config.ACLRule) { r.IPAddress = "192.0.2.7" }),
				with(allow("all", "v6/#"), func(r *config.ACLRule) { r.IPAddress = "2001:db8::/32" }),
				with(allow("publish", "stomp/#"), func(r *config.ACLRule) { r.Gateway = "stomp" }),
				with(allow("publish", "both/#"), func(r *config.ACLRule) { r.ClientID, r.Username = "c1", "u1" }),
			},
			checks: []aclCheck{
				{who("meter-1", "", "", ""), pub, "m/1", true},
				{who("meter-10", "", "", ""), pub, "m/1", false},
				{who("Meter-1", "", "", ""), pub, "m/1", false},
				{who("sensor-42", "", "", ""), pub, "s/t", true},
				{who("sensor-42x", "", "", ""), pub, "s/t", false},
				{who("c", "ops", "", ""), pub, "ops/x", true},
				{who("c", "ops2", "", ""), pub, "ops/x", false},
				{who("c", "admin", "", ""), pub, "adm/x", true},
				{who("c", "sysadm", "", ""), pub, "adm/x", false},
				{who("c", "", "10.1.2.3:5000", ""), sub, "lan/x", true},
				{who("c", "", "[::ffff:10.1.2.3]:5000", ""), pub, "lan/x", true},
				{who("c", "", "11.1.2.3:5000", ""), pub, "lan/x", false},
				{who("c", "", "", ""), pub, "lan/x", false}, // serial: no peer address
				{who("c", "", "192.0.2.7:1", ""), pub, "host/x", true},
				{who("c", "", "192.0.2.8:1", ""), pub, "host/x", false},
				{who("c", "", "[2001:db8::5]:1", ""), pub, "v6/x", true},
				{who("c", "", "[2001:db9::5]:1", ""), pub, "v6/x", false},
				{who("c", "", "", "stomp"), pub, "stomp/x", true},
				{who("c", "", "", "coap"), pub, "stomp/x", false},
				{who("c1", "u1", "", ""), pub, "both/x", true},
				{who("c1", "u2", "", ""), pub, "both/x", false},
				{who("c2", "u1", "", ""), pub, "both/x", false},
			},
		},
		{
			name: "placeholders", noMatch: "deny",
			rules: []config.ACLRule{
				allow("all", "${clientid}/#"),
				allow("publish", "users/${username}/+/data"),
				allow("subscribe", "cmd/${username}"),
				allow("publish", "gw/${gateway}/${clientid}"),
			},
			checks: []aclCheck{
				{who("c1", "", "", ""), pub, "c1/x", true},
				{who("c1", "", "", ""), sub, "c1/#", true},
				{who("c1", "", "", ""), pub, "c2/x", false},
				{who("c1", "", "", ""), sub, "#", false},
				{who("c1", "bob", "", ""), pub, "users/bob/7/data", true},
				{who("c1", "bob", "", ""), pub, "users/eve/7/data", false},
				{who("c1", "bob", "", ""), sub, "cmd/bob", true},
				{who("c1", "", "", "mqttsn"), pub, "gw/mqttsn/c1", true},
				{who("c1", "", "", ""), pub, "gw//c1", false},
				// Undefined username: never "/#"-like, never literal.
				{who("c1", "", "", ""), pub, "users//7/data", false},
				{who("c1", "", "", ""), pub, "users/${username}/7/data", false},
				{who("c1", "", "", ""), sub, "cmd/", false},
				{who("c1", "", "", ""), sub, "cmd/${username}", false},
				// Identities that would widen or move the rule.
				{who("c1", "+", "", ""), pub, "users/eve/7/data", false},
				{who("c1", "#", "", ""), sub, "cmd/#", false},
				{who("#", "", "", ""), pub, "anything/at/all", false},
				{who("+", "", "", ""), pub, "other/x", false},
				{who("a/b", "", "", ""), pub, "a/b/x", false},
			},
		},
		{
			name: "placeholder in a deny rule", noMatch: "allow",
			rules: []config.ACLRule{deny("publish", "${username}/#")},
			checks: []aclCheck{
				{who("c", "bob", "", ""), pub, "bob/x", false},
				{who("c", "bob", "", ""), pub, "eve/x", true},
				{who("c", "", "", ""), pub, "/x", true},
			},
		},
		{
			name: "eq is literal", noMatch: "deny",
			rules: []config.ACLRule{
				deny("subscribe", "eq #"),
				allow("all", "eq t/+"),
				allow("subscribe", "eq ${clientid}/#"),
				allow("subscribe", "x/#"),
			},
			checks: []aclCheck{
				{anyone, sub, "#", false},
				{anyone, sub, "x/#", true},
				{anyone, sub, "t/+", true},
				{anyone, sub, "$share/g/t/+", true},
				{anyone, sub, "t/a", false},
				{anyone, pub, "t/a", false},
				{anyone, pub, "t/+", true},
				{who("c9", "", "", ""), sub, "c9/#", true},
				{who("c9", "", "", ""), sub, "c9/x", false},
			},
		},
		{
			name: "subscribe coverage", noMatch: "deny",
			rules: []config.ACLRule{
				allow("subscribe", "a/#"),
				allow("subscribe", "b/+/c"),
				allow("subscribe", "c/d/e"),
				allow("subscribe", "$share/g1/s/#"),
			},
			checks: []aclCheck{
				{anyone, sub, "a/+/c", true},
				{anyone, sub, "a/#", true},
				{anyone, sub, "a", true},
				{anyone, sub, "b/+/c", true},
				{anyone, sub, "b/x/c", true},
				{anyone, sub, "b/#", false},
				{anyone, sub, "b/+/+", false},
				{anyone, sub, "b/x/c/d", false},
				{anyone, sub, "c/d/e", true},
				{anyone, sub, "c/+/e", false},
				{anyone, sub, "c/d/#", false},
				{anyone, sub, "#", false},
				{anyone, sub, "+/+/c", false},
				{anyone, sub, "$share/grp/a/+/c", true},
				{anyone, sub, "$share/grp/b/#", false},
				{anyone, sub, "$share/g1/s/x", true},
				{anyone, sub, "$share/g2/s/x", false},
				{anyone, sub, "s/x", false},
				{anyone, pub, "s/x", false},
				{anyone, pub, "a/b", false}, // the rules are subscribe-only
			},
		},
		{
			name: "deny rules refuse overlapping subscriptions", noMatch: "deny",
			rules: []config.ACLRule{
				deny("subscribe", "a/b/c", "$SYS/#"),
				allow("subscribe", "a/#", "#", "$SYS/uptime"),
			},
			checks: []aclCheck{
				{anyone, sub, "a/b/c", false},
				{anyone, sub, "a/+/c", false},
				{anyone, sub, "a/#", false},
				{anyone, sub, "$share/g/a/+/c", false},
				{anyone, sub, "a/x/c", true},
				{anyone, sub, "a/b/d", true},
				{anyone, sub, "#", false}, // it would receive a/b/c
				{anyone, sub, "+/uptime", true},
				{anyone, sub, "$SYS/uptime", false},
			},
		},
		{
			name: "$ topics stay out of wildcard overlap", noMatch: "deny",
			rules: []config.ACLRule{deny("subscribe", "$SYS/#"), allow("subscribe", "#")},
			checks: []aclCheck{
				{anyone, sub, "#", true}, // '#' does not reach $SYS topics
				{anyone, sub, "+/#", true},
				{anyone, sub, "$SYS/x", false},
			},
		},
	} {
		t.Run(set.name, func(t *testing.T) {
			acl, err := NewACL(config.Authorization{NoMatch: set.noMatch, Rules: set.rules})
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range set.checks {
				if got := acl.Authorize(c.ci, c.action, c.topic); got != c.want {
					id := "<nil>"
					if c.ci != nil {
						id = fmt.Sprintf("clientid=%q username=%q peer=%v gateway=%q", c.ci.ClientID, c.ci.Username, c.ci.Peer, c.ci.Gateway)
					}
					t.Errorf("%s %s %q = %v; want %v", id, c.action, c.topic, got, c.want)
				}
			}
		})
	}
}

// TestACLFromConfig reads [authorization] through config.Parse.
func TestACLFromConfig(t *testing.T) {
	c, err := config.Parse([]byte(`
[authorization]
no_match = "deny"

[[authorization.rules]]
permission = "allow"
action = "all"
username = "re:^dev[0-9]+$"
topics = ["devices/${username}/#", "eq broadcast/#"]

[[authorization.rules]]
permission = "allow"
action = "subscribe"
ipaddress = "127.0.0.1"
topics = ["$SYS/#"]
`), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	acl, err := NewACL(c.Authorization)
	if err != nil {
		t.Fatal(err)
	}
	for _, ck := range []aclCheck{
		{who("c", "dev7", "", ""), pub, "devices/dev7/temp", true},
		{who("c", "dev7", "", ""), sub, "devices/dev7/#", true},
		{who("c", "dev7", "", ""), sub, "devices/+/#", false},
		{who("c", "dev7", "", ""), sub, "broadcast/#", true},
		{who("c", "dev7", "", ""), sub, "broadcast/x", false},
		{who("c", "ops", "", ""), pub, "devices/ops/temp", false},
		{who("c", "", "127.0.0.1:999", ""), sub, "$SYS/brokers/+", true},
		{who("c", "", "127.0.0.2:999", ""), sub, "$SYS/brokers/+", false},
	} {
		if got := acl.Authorize(ck.ci, ck.action, ck.topic); got != ck.want {
			t.Errorf("%s/%s %s %q = %v; want %v", ck.ci.Username, ck.ci.Peer, ck.action, ck.topic, got, ck.want)
		}
	}
}

func TestNewACLErrors(t *testing.T) {
	for _, c := range []struct {
		name string
		cfg  config.Authorization
		want string
	}{
		{"no_match", config.Authorization{NoMatch: "maybe"}, `authorization.no_match: must be "allow" or "deny", got "maybe"`},
		{"regexp", config.Authorization{Rules: []config.ACLRule{allow("all", "a"), with(allow("all", "a"), func(r *config.ACLRule) { r.ClientID = "re:(" })}},
			"authorization.rules[1].clientid: bad regexp: error parsing regexp: missing closing ): `(`"},
		{"username regexp", config.Authorization{Rules: []config.ACLRule{with(allow("all", "a"), func(r *config.ACLRule) { r.Username = "re:[z-a]" })}},
			"authorization.rules[0].username: bad regexp"},
		{"cidr", config.Authorization{Rules: []config.ACLRule{with(allow("all", "a"), func(r *config.ACLRule) { r.IPAddress = "10.0.0.0/33" })}},
			`authorization.rules[0].ipaddress: bad CIDR "10.0.0.0/33"`},
		{"ip", config.Authorization{Rules: []config.ACLRule{with(allow("all", "a"), func(r *config.ACLRule) { r.IPAddress = "10.0.0.256" })}},
			`authorization.rules[0].ipaddress: bad IP address "10.0.0.256"`},
		{"permission", config.Authorization{Rules: []config.ACLRule{{Permission: "maybe", Action: "all", Topics: []string{"a"}}}},
			`authorization.rules[0].permission: must be "allow" or "deny", got "maybe"`},
		{"action", config.Authorization{Rules: []config.ACLRule{{Permission: "allow", Action: "read", Topics: []string{"a"}}}},
			`authorization.rules[0].action: must be publish, subscribe or all, got "read"`},
		{"no topics", config.Authorization{Rules: []config.ACLRule{allow("all")}},
			`authorization.rules[0].topics: must list at least one topic filter`},
		{"bad filter", config.Authorization{Rules: []config.ACLRule{allow("all", "ok/#", "a/#/b")}},
			`authorization.rules[0].topics[1]: topic "a/#/b": broker: invalid topic filter: '#' must be the last level`},
		{"bad placeholder", config.Authorization{Rules: []config.ACLRule{allow("all", "${clinetid}/#")}},
			`authorization.rules[0].topics[0]: unknown placeholder ${clinetid}`},
		{"placeholder inside a level with a wildcard", config.Authorization{Rules: []config.ACLRule{allow("all", "a/${clientid}#")}},
			`authorization.rules[0].topics[0]: topic "a/${clientid}#"`},
		{"empty eq", config.Authorization{Rules: []config.ACLRule{allow("all", "eq ")}},
			`authorization.rules[0].topics[0]: empty topic after "eq "`},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewACL(c.cfg)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("NewACL error %v; want it to contain %q", err, c.want)
			}
		})
	}
}

// TestACLConcurrent authorizes from many goroutines; -race checks it.
func TestACLConcurrent(t *testing.T) {
	acl, err := NewACL(config.Authorization{NoMatch: "deny", Rules: benchRules()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	fails := make(chan string, 8)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ci := who(fmt.Sprint("dev-", g), "", "192.168.1.5:1000", "mqttsn")
			for i := 0; i < 500; i++ {
				if !acl.Authorize(ci, pub, ci.ClientID+"/up") || acl.Authorize(ci, pub, "other/up") {
					fails <- ci.ClientID
					return
				}
			}
		}()
	}
	wg.Wait()
	close(fails)
	for f := range fails {
		t.Errorf("wrong decision for %s", f)
	}
}

// TestACLStaticRulesDoNotAllocate: the promise made in the ACL doc.
func TestACLStaticRulesDoNotAllocate(t *testing.T) {
	acl, err := NewACL(config.Authorization{NoMatch: "deny", Rules: benchRules()[:19]})
	if err != nil {
		t.Fatal(err)
	}
	ci := who("dev-1", "dev1", "192.168.1.5:1000", "mqttsn")
	for _, c := range []struct {
		action gateway.Action
		topic  string
	}{{pub, "site/b7/meter/3/energy"}, {sub, "$share/g/site/+/meter/#"}, {pub, "nowhere"}} {
		if n := testing.AllocsPerRun(200, func() { acl.Authorize(ci, c.action, c.topic) }); n != 0 {
			t.Errorf("%s %q: %v allocations per check, want 0", c.action, c.topic, n)
		}
	}
}

// benchRules is 20 rules shaped like a real gateway's: identity-scoped
// rules that do not apply to the client under test, a few topic rules, and
// the per-client rule last.
func benchRules() []config.ACLRule {
	var rules []config.ACLRule
	for i := 0; i < 8; i++ {
		rules = append(rules, with(allow("all", fmt.Sprintf("fleet/%d/#", i)), func(r *config.ACLRule) { r.Username = fmt.Sprint("fleet", i) }))
	}
	rules = append(rules,
		with(allow("subscribe", "$SYS/#"), func(r *config.ACLRule) { r.IPAddress = "127.0.0.1" }),
		deny("subscribe", "$SYS/#", "eq #"),
		with(allow("all", "ops/#"), func(r *config.ACLRule) { r.ClientID = "re:^ops-" }),
		with(allow("publish", "stomp/#"), func(r *config.ACLRule) { r.Gateway = "stomp" }),
		deny("publish", "site/+/alarm/#"),
		allow("publish", "site/+/status"),
		allow("subscribe", "site/+/cmd/#"),
		with(allow("all", "lan/#"), func(r *config.ACLRule) { r.IPAddress = "10.0.0.0/8" }),
		deny("all", "secret/#", "private/+/key"),
		allow("publish", "site/+/meter/+/energy", "site/+/meter/+/power"),
		allow("subscribe", "site/+/meter/#"),
		allow("publish", "${clientid}/up"),
	)
	return rules
}

func BenchmarkACL(b *testing.B) {
	acl, err := NewACL(config.Authorization{NoMatch: "deny", Rules: benchRules()})
	if err != nil {
		b.Fatal(err)
	}
	ci := who("dev-1", "dev1", "192.168.1.5:1000", "mqttsn")
	for _, c := range []struct {
		name  string
		topic string
		want  bool
	}{
		{"static-match-rule19", "site/b7/meter/3/energy", true},
		{"placeholder-match-rule20", "dev-1/up", true},
		{"no-match", "nowhere/at/all", false},
	} {
		b.Run(c.name, func(b *testing.B) {
			if got := acl.Authorize(ci, pub, c.topic); got != c.want {
				b.Fatalf("Authorize(%q) = %v; want %v", c.topic, got, c.want)
			}
			b.ReportAllocs()
			for b.Loop() {
				acl.Authorize(ci, pub, c.topic)
			}
		})
	}
}
