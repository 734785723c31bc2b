package broker

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// maxSeedLen keeps the 64 KiB length-limit cases out of the fuzz corpus:
// the fuzzer spends its time minimising inputs that size, and the table
// tests cover the limit exactly.
const maxSeedLen = 1024

// discouraged is the oracle for hasDiscouraged, written rune by rune.
func discouraged(s string) bool {
	for _, r := range s {
		if r < 0x20 || (r >= 0x7f && r <= 0x9f) || (r >= 0xfdd0 && r <= 0xfdef) || r&0xfffe == 0xfffe {
			return true
		}
	}
	return false
}

func FuzzValidTopicName(f *testing.F) {
	for _, tc := range nameCases {
		if len(tc.name) <= maxSeedLen {
			f.Add(tc.name)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidTopicName(s)
		ok := s != "" && len(s) <= MaxTopicLen && utf8.ValidString(s) && !strings.ContainsAny(s, "+#\x00") && !discouraged(s)
		if (err == nil) != ok {
			t.Fatalf("ValidTopicName(%q) = %v, want ok=%v", s, err, ok)
		}
		if err != nil {
			return
		}
		// Every valid name is a valid filter, matching itself, unless
		// it spells a $share prefix.
		if !strings.HasPrefix(s, SharePrefix) {
			if ferr := ValidTopicFilter(s); ferr != nil {
				t.Fatalf("valid name %q is not a valid filter: %v", s, ferr)
			}
		}
		if !Match(s, s) {
			t.Fatalf("Match(%q, %q) = false", s, s)
		}
	})
}

func FuzzValidTopicFilter(f *testing.F) {
	for _, tc := range filterCases {
		if len(tc.filter) <= maxSeedLen {
			f.Add(tc.filter)
		}
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := ValidTopicFilter(s)
		if err != nil {
			return
		}
		if s == "" || len(s) > MaxTopicLen || !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 || discouraged(s) {
			t.Fatalf("ValidTopicFilter(%q) accepted a bad string", s)
		}
		inner := s
		if _, in, ok := SplitShared(s); ok {
			inner = in
		}
		levels := strings.Split(inner, "/")
		for i, l := range levels {
			if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
				t.Fatalf("ValidTopicFilter(%q) accepted a misplaced '#'", s)
			}
			if strings.Contains(l, "+") && l != "+" {
				t.Fatalf("ValidTopicFilter(%q) accepted a misplaced '+'", s)
			}
		}
		// A filter without wildcards is also a topic name it matches.
		if !strings.ContainsAny(inner, "+#") {
			if ValidTopicName(inner) != nil || !Match(inner, inner) {
				t.Fatalf("wildcard-free filter %q does not match itself", inner)
			}
		}
	})
}

func FuzzMatch(f *testing.F) {
	for _, tc := range matchCases {
		f.Add(tc.filter, tc.topic)
	}
	f.Fuzz(func(t *testing.T, filter, topic string) {
		got := Match(filter, topic) // must not panic on anything
		if ValidTopicFilter(filter) != nil || ValidTopicName(topic) != nil {
			return
		}
		if _, _, shared := SplitShared(filter); shared {
			return
		}
		if tr := trieMatches(filter, topic); tr != got {
			t.Fatalf("filter %q topic %q: trie %v, Match %v", filter, topic, tr, got)
		}
		if !strings.ContainsAny(filter, "+#") && got != (filter == topic) {
			t.Fatalf("literal filter %q topic %q: Match %v", filter, topic, got)
		}
	})
}
