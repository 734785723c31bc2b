package auth

import (
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/gateway"
)

// ACL is the [authorization] rule list as a gateway.Authorizer: rules are
// tried in order, the first that matches decides, and no_match decides
// when none does.
//
// A rule matches when every matcher it sets matches: clientid and username
// (exact, or "re:<regexp>", unanchored as in EMQX: write ^…$), ipaddress
// (an IP or CIDR containing the client's peer address; a client without
// one, on a serial line, never matches), gateway (the kind name), action
// ("all" is both) and at least one of its topics.
//
// Topics are MQTT filters, or "eq <topic>" for a literal comparison with
// no wildcard meaning. They may use client placeholders (${clientid},
// ${username}, …), rendered per request. A placeholder that is undefined
// or empty for the client, or whose value contains '/', '+' or '#', makes
// that topic not match: "${username}/#" never becomes "/#" or "#/#", and
// no identity can widen its rule or step into another's subtree.
//
// A publish matches a topic filter when broker.Match does. A subscription
// (its inner filter, for $share/group/…) matches an allow rule only when
// the rule's filter covers it: every topic the subscription can receive is
// one the rule names ("a/#" and "a/+/c" cover "a/+/c", "a/b/c" does not).
// It matches a deny rule as soon as the two filters overlap: "deny a/b/c"
// refuses a subscription to "a/+/c", because MQTT cannot grant it minus
// a/b/c. A rule filter written as $share/group/… applies only to shared
// subscriptions of that group.
//
// Superusers are not handled here: the framework lets them through before
// it asks the Authorizer.
//
// An ACL is immutable and safe for concurrent use; a reload builds a new
// one. Rules without placeholders are checked without allocating.
type ACL struct {
	rules   []aclRule
	noMatch bool
}

type aclRule struct {
	allow    bool
	pub, sub bool
	clientID strMatcher
	username strMatcher
	hasIP    bool
	prefix   netip.Prefix
	gateway  string
	topics   []aclTopic
}

type strMatcher struct {
	set   bool
	exact string
	re    *regexp.Regexp
}

type aclTopic struct {
	eq     bool
	shared bool   // a filter written as $share/group/filter
	group  string // of a shared filter
	filter string // the literal (eq), the filter, or a shared filter's inner filter
	parts  []tplPart
}

// tplPart is a literal run or a placeholder name of a topic template.
type tplPart struct {
	lit, ref string
}

// NewACL compiles the rules. It checks them as config validation does and
// compiles "re:" patterns, so an error names the rule and key.
func NewACL(cfg config.Authorization) (*ACL, error) {
	a := &ACL{}
	switch cfg.NoMatch {
	case "", "allow":
		a.noMatch = true
	case "deny":
	default:
		return nil, fmt.Errorf("authorization.no_match: must be \"allow\" or \"deny\", got %q", cfg.NoMatch)
	}
	var errs []error
	for i, rc := range cfg.Rules {
		r, err := compileRule(rc)
		if err != nil {
			var fe *config.FieldError
			for _, e := range unjoin(err) {
				if errors.As(e, &fe) {
					errs = append(errs, fmt.Errorf("authorization.rules[%d].%s: %w", i, fe.Key, fe.Err))
				} else {
					errs = append(errs, fmt.Errorf("authorization.rules[%d]: %w", i, e))
				}
			}
			continue
		}
		a.rules = append(a.rules, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return a, nil
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func compileRule(rc config.ACLRule) (aclRule, error) {
	var errs []error
	r := aclRule{gateway: rc.Gateway}
	switch rc.Permission {
	case "allow":
		r.allow = true
	case "deny":
	default:
		errs = append(errs, config.Field("permission", "must be \"allow\" or \"deny\", got %q", rc.Permission))
	}
	switch rc.Action {
	case "publish":
		r.pub = true
	case "subscribe":
		r.sub = true
	case "all":
		r.pub, r.sub = true, true
	default:
		errs = append(errs, config.Field("action", "must be publish, subscribe or all, got %q", rc.Action))
	}
	var err error
	if r.clientID, err = compileMatcher(rc.ClientID); err != nil {
		errs = append(errs, config.Field("clientid", "%v", err))
	}
	if r.username, err = compileMatcher(rc.Username); err != nil {
		errs = append(errs, config.Field("username", "%v", err))
	}
	if rc.IPAddress != "" {
		r.hasIP = true
		if r.prefix, err = parsePrefix(rc.IPAddress); err != nil {
			errs = append(errs, config.Field("ipaddress", "%v", err))
		}
	}
	if len(rc.Topics) == 0 {
		errs = append(errs, config.Field("topics", "must list at least one topic filter"))
	}
	for i, t := range rc.Topics {
		at, err := compileTopic(t)
		if err != nil {
			errs = append(errs, config.Field(fmt.Sprintf("topics[%d]", i), "%v", err))
			continue
		}
		r.topics = append(r.topics, at)
	}
	return r, errors.Join(errs...)
}

func compileMatcher(s string) (strMatcher, error) {
	if s == "" {
		return strMatcher{}, nil
	}
	if p, ok := strings.CutPrefix(s, "re:"); ok {
		re, err := regexp.Compile(p)
		if err != nil {
			return strMatcher{}, fmt.Errorf("bad regexp: %v", err)
		}
		return strMatcher{set: true, re: re}, nil
	}
	return strMatcher{set: true, exact: s}, nil
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("bad CIDR %q", s)
		}
		if p.Addr().Is4In6() {
			// ::ffff:10.0.0.0/104 is 10.0.0.0/8 for an unmapped peer.
			if p.Bits() < 96 {
				return netip.Prefix{}, fmt.Errorf("bad CIDR %q", s)
			}
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return p.Masked(), nil
	}
	ip, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("bad IP address %q", s)
	}
	ip = ip.Unmap().WithZone("")
	return netip.PrefixFrom(ip, ip.BitLen()), nil
}

func compileTopic(s string) (aclTopic, error) {
	var t aclTopic
	f := s
	if lit, ok := strings.CutPrefix(s, "eq "); ok {
		t.eq, f = true, lit
		if f == "" {
			return t, errors.New("empty topic after \"eq \"")
		}
	}
	if _, err := config.ParseTemplate(f, false); err != nil {
		return t, err
	}
	parts := splitTemplate(f)
	probe := f
	if len(parts) > 1 || parts[0].ref != "" {
		t.parts = parts
		// Check the shape with a harmless value in each placeholder.
		var b strings.Builder
		for _, p := range parts {
			if p.ref != "" {
				b.WriteString("x")
			} else {
				b.WriteString(p.lit)
			}
		}
		probe = b.String()
	}
	if !t.eq {
		if err := broker.ValidTopicFilter(probe); err != nil {
			return t, fmt.Errorf("topic %q: %v", s, err)
		}
	}
	if t.parts == nil {
		t.filter = f
		if !t.eq {
			t.group, t.filter, t.shared = splitShared(f)
		}
	}
	return t, nil
}

// splitTemplate cuts an already checked template into literals and names.
func splitTemplate(s string) []tplPart {
	var parts []tplPart
	for s != "" {
		i := strings.Index(s, "${")
		j := -1
		if i >= 0 {
			j = strings.IndexByte(s[i:], '}')
		}
		if i < 0 || j < 0 {
			parts = append(parts, tplPart{lit: s})
			break
		}
		if i > 0 {
			parts = append(parts, tplPart{lit: s[:i]})
		}
		parts = append(parts, tplPart{ref: s[i+2 : i+j]})
		s = s[i+j+1:]
	}
	if len(parts) == 0 {
		parts = append(parts, tplPart{})
	}
	return parts
}

// splitShared is broker.SplitShared returning the filter itself when it
// is not shared.
func splitShared(f string) (group, inner string, shared bool) {
	if g, in, ok := broker.SplitShared(f); ok {
		return g, in, true
	}
	return "", f, false
}

// request is one Authorize call, split once for all rules.
type request struct {
	pub    bool
	topic  string
	shared bool
	group  string
	inner  string // the filter without $share/group/
}

var noClient gateway.ClientInfo

// Authorize implements gateway.Authorizer. Unknown actions are refused.
func (a *ACL) Authorize(ci *gateway.ClientInfo, action gateway.Action, topic string) bool {
	req := request{topic: topic}
	switch action {
	case gateway.ActionPublish:
		req.pub = true
	case gateway.ActionSubscribe:
		req.group, req.inner, req.shared = splitShared(topic)
	default:
		return false
	}
	if ci == nil {
		ci = &noClient
	}
	for i := range a.rules {
		r := &a.rules[i]
		if r.matches(ci, &req) {
			return r.allow
		}
	}
	return a.noMatch
}

func (r *aclRule) matches(ci *gateway.ClientInfo, req *request) bool {
	if req.pub && !r.pub || !req.pub && !r.sub {
		return false
	}
	if r.gateway != "" && r.gateway != ci.Gateway {
		return false
	}
	if !r.clientID.match(ci.ClientID) || !r.username.match(ci.Username) {
		return false
	}
	if r.hasIP && (!ci.Peer.IsValid() || !r.prefix.Contains(ci.Peer.Addr().Unmap().WithZone(""))) {
		return false
	}
	for i := range r.topics {
		if r.topics[i].matches(ci, req, r.allow) {
			return true
		}
	}
	return false
}

func (m *strMatcher) match(s string) bool {
	switch {
	case !m.set:
		return true
	case m.re != nil:
		return m.re.MatchString(s)
	}
	return s == m.exact
}

func (t *aclTopic) matches(ci *gateway.ClientInfo, req *request, allow bool) bool {
	filter, group, shared := t.filter, t.group, t.shared
	if t.parts != nil {
		s, ok := render(t.parts, ci)
		if !ok {
			return false
		}
		filter = s
		if !t.eq {
			group, filter, shared = splitShared(s)
		}
	}
	if t.eq {
		if req.pub {
			return req.topic == filter
		}
		return req.topic == filter || req.shared && req.inner == filter
	}
	if req.pub {
		return !shared && broker.Match(filter, req.topic)
	}
	if shared && (!req.shared || req.group != group) {
		return false
	}
	if allow {
		return covers(filter, req.inner)
	}
	return overlaps(filter, req.inner)
}

// render expands a topic template for one client; ok is false when a
// placeholder is undefined, empty, or would change the topic's levels.
func render(parts []tplPart, ci *gateway.ClientInfo) (string, bool) {
	n := 0
	for _, p := range parts {
		if p.ref == "" {
			n += len(p.lit)
			continue
		}
		v, ok := ci.Lookup(p.ref)
		if !ok || v == "" || strings.ContainsAny(v, "/+#") {
			return "", false
		}
		n += len(v)
	}
	var b strings.Builder
	b.Grow(n)
	for _, p := range parts {
		if p.ref == "" {
			b.WriteString(p.lit)
			continue
		}
		v, _ := ci.Lookup(p.ref)
		b.WriteString(v)
	}
	return b.String(), true
}
