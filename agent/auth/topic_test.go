package auth

import (
	"strings"
	"testing"

	"github.com/edgeway/edgeway/agent/broker"
)

// coverCases is shared by the table test and the fuzz seeds.
var coverCases = []struct {
	rule, filter     string
	covers, overlaps bool
}{
	{"a/#", "a/+/c", true, true},
	{"a/+/c", "a/+/c", true, true},
	{"a/b/c", "a/+/c", false, true},
	{"a/#", "a", true, true},
	{"a/#", "a/#", true, true},
	{"a/+", "a", false, false},
	{"a/+", "a/", true, true},
	{"a/+", "a/#", false, true},
	{"#", "#", true, true},
	{"#", "a/b/#", true, true},
	{"+/#", "#", false, true},
	{"+", "+", true, true},
	{"+", "a/b", false, false},
	{"a/b", "a/b/c", false, false},
	{"a/b/c", "a/b", false, false},
	{"a/+/#", "a/#", false, true},
	{"a//b", "a/+/b", false, true},
	{"a/+/b", "a//b", true, true},
	{"#", "$SYS/x", false, false},
	{"+/x", "$SYS/x", false, false},
	{"$SYS/#", "$SYS/+/x", true, true},
	{"$SYS/#", "#", false, false},
	{"$SYS/#", "+/x", false, false},
	{"x/y", "x/y", true, true},
	{"", "", true, true},
}

func TestCoversAndOverlaps(t *testing.T) {
	for _, c := range coverCases {
		if got := covers(c.rule, c.filter); got != c.covers {
			t.Errorf("covers(%q, %q) = %v; want %v", c.rule, c.filter, got, c.covers)
		}
		if got := overlaps(c.rule, c.filter); got != c.overlaps {
			t.Errorf("overlaps(%q, %q) = %v; want %v", c.rule, c.filter, got, c.overlaps)
		}
		if got := overlaps(c.filter, c.rule); got != c.overlaps {
			t.Errorf("overlaps(%q, %q) = %v; want %v (symmetry)", c.filter, c.rule, got, c.overlaps)
		}
	}
}

// instance is a topic matched by a valid filter f: each '+' and '#'
// becomes the level "x".
func instance(f string) string {
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if l == "+" || l == "#" {
			levels[i] = "x"
		}
	}
	return strings.Join(levels, "/")
}

func FuzzACLCovers(f *testing.F) {
	for _, c := range coverCases {
		f.Add(c.rule, c.filter)
	}
	f.Fuzz(func(t *testing.T, rule, filter string) {
		c := covers(rule, filter)
		o := overlaps(rule, filter)
		if rule == filter && !c {
			t.Fatalf("covers(%q, itself) = false", rule)
		}
		if o != overlaps(filter, rule) {
			t.Fatalf("overlaps(%q, %q) is not symmetric", rule, filter)
		}
		if !strings.ContainsAny(filter, "+#") {
			if m := broker.Match(rule, filter); c != m {
				t.Fatalf("covers(%q, %q) = %v but broker.Match = %v", rule, filter, c, m)
			}
		}
		if broker.ValidTopicFilter(rule) != nil || broker.ValidTopicFilter(filter) != nil ||
			strings.HasPrefix(rule, broker.SharePrefix) || strings.HasPrefix(filter, broker.SharePrefix) {
			return
		}
		// For valid filters: a topic of filter is matched by every rule
		// that covers filter, and shows that the two overlap.
		topic := instance(filter)
		if broker.ValidTopicName(topic) != nil || !broker.Match(filter, topic) {
			return
		}
		if c && !broker.Match(rule, topic) {
			t.Fatalf("covers(%q, %q) but rule does not match %q", rule, filter, topic)
		}
		if broker.Match(rule, topic) && !o {
			t.Fatalf("overlaps(%q, %q) = false but both match %q", rule, filter, topic)
		}
		if c && !o {
			t.Fatalf("covers(%q, %q) without overlapping", rule, filter)
		}
	})
}
