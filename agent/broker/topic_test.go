package broker

import (
	"errors"
	"strings"
	"testing"
)

// nameCases and filterCases seed the fuzz targets too.
var nameCases = []struct {
	name string
	want error // nil, or the exact cause
}{
	{"a", nil},
	{"a/b/c", nil},
	{"/", nil},
	{"/a", nil},
	{"a/", nil},
	{"a//b", nil},
	{"//", nil},
	{"$SYS/broker/load", nil},
	{"$share/g/a", nil}, // a topic like any other when published
	{"température/ü", nil},
	{" ", nil},
	{"", errNameEmpty},
	{"a/+", errNameWildcard},
	{"a/#", errNameWildcard},
	{"+", errNameWildcard},
	{"#", errNameWildcard},
	{"a+b", errNameWildcard},
	{"a\x00b", errNameNUL},
	{"a\xffb", errNameUTF8},
	{"\xed\xa0\x80", errNameUTF8}, // an encoded UTF-16 surrogate
	{"a\tb", errNameControl},
	{"a\x7f", errNameControl},
	{"a\u0085", errNameControl},
	{"a\ufdd0", errNameControl},
	{"a\uffff", errNameControl},
	{"a\U0001fffe", errNameControl},
	{"a\u00a0b", nil},
	{strings.Repeat("a", MaxTopicLen), nil},
	{strings.Repeat("a", MaxTopicLen+1), errNameTooLong},
}

var filterCases = []struct {
	filter string
	want   error
}{
	{"a", nil},
	{"a/b", nil},
	{"#", nil},
	{"+", nil},
	{"+/+", nil},
	{"a/#", nil},
	{"a/+/c", nil},
	{"+/#", nil},
	{"/", nil},
	{"/#", nil},
	{"a//b", nil},
	{"a/+/", nil},
	{"$SYS/#", nil},
	{"$share/g/a/#", nil},
	{"$share/g/#", nil},
	{"$share/g//", nil},
	{"$share", nil}, // no slash: a plain one-level filter
	{"", errFilterEmpty},
	{"a/#/b", errFilterHashNotLast},
	{"#/", errFilterHashNotLast},
	{"a#", errFilterHashNotAlone},
	{"a/b#", errFilterHashNotAlone},
	{"##", errFilterHashNotAlone},
	{"a+", errFilterPlusNotAlone},
	{"a/+b/c", errFilterPlusNotAlone},
	{"++", errFilterPlusNotAlone},
	{"a\x00", errFilterNUL},
	{"\xc3", errFilterUTF8},
	{"$share/", errShareNoFilter},
	{"$share/g", errShareNoFilter},
	{"$share/g/", errShareNoFilter},
	{"$share//a", errShareEmptyGroup},
	{"$share/+/a", errShareGroupWildcard},
	{"$share/g#/a", errShareGroupWildcard},
	{"$share/g/a#", errFilterHashNotAlone},
	{strings.Repeat("+/", MaxTopicLen/2) + "#", nil},
	{strings.Repeat("a", MaxTopicLen+1), errFilterTooLong},
}

var matchCases = []struct {
	filter, topic string
	want          bool
}{
	{"a", "a", true},
	{"a", "b", false},
	{"a", "a/b", false},
	{"a/b", "a", false},
	{"#", "a", true},
	{"#", "a/b/c", true},
	{"#", "/", true},
	{"a/#", "a", true}, // '#' includes the parent level
	{"a/#", "a/", true},
	{"a/#", "a/b/c", true},
	{"a/#", "ab", false},
	{"a/#", "b/a", false},
	{"a/b/#", "a", false},
	{"+", "a", true},
	{"+", "a/b", false},
	{"+", "/", false},
	{"+/+", "/", true},
	{"+/+", "a/b", true},
	{"+/+", "a", false},
	{"+/+", "a/b/c", false},
	{"/+", "/a", true},
	{"/+", "a", false},
	{"a/+", "a", false},
	{"a/+", "a/", true}, // '+' matches an empty level
	{"a/+/c", "a/b/c", true},
	{"a/+/c", "a//c", true},
	{"a/+/c", "a/b/d", false},
	{"+/#", "a", true},
	{"a//b", "a//b", true},
	{"a//b", "a/b", false},
	{"a/", "a", false},
	{"a", "a/", false},
	// MQTT 3.1.1 §4.7.2: '$' topics are not matched by a leading wildcard.
	{"#", "$SYS", false},
	{"#", "$SYS/uptime", false},
	{"+/uptime", "$SYS/uptime", false},
	{"+", "$SYS", false},
	{"$SYS/#", "$SYS", true},
	{"$SYS/#", "$SYS/uptime", true},
	{"$SYS/+", "$SYS/uptime", true},
	{"a/#", "a/$b", true}, // only the first level is special
	{"a/+", "a/$b", true},
}

func TestValidTopicName(t *testing.T) {
	for _, tc := range nameCases {
		got := ValidTopicName(tc.name)
		if got != tc.want {
			t.Errorf("ValidTopicName(%.40q) = %v, want %v", tc.name, got, tc.want)
		}
		if got != nil && !errors.Is(got, ErrInvalidTopicName) {
			t.Errorf("ValidTopicName(%.40q) = %v, does not wrap ErrInvalidTopicName", tc.name, got)
		}
	}
}

func TestValidTopicFilter(t *testing.T) {
	for _, tc := range filterCases {
		got := ValidTopicFilter(tc.filter)
		if got != tc.want {
			t.Errorf("ValidTopicFilter(%.40q) = %v, want %v", tc.filter, got, tc.want)
		}
		if got != nil && !errors.Is(got, ErrInvalidTopicFilter) {
			t.Errorf("ValidTopicFilter(%.40q) = %v, does not wrap ErrInvalidTopicFilter", tc.filter, got)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range matchCases {
		if err := ValidTopicFilter(tc.filter); err != nil {
			t.Fatalf("bad case: filter %q: %v", tc.filter, err)
		}
		if err := ValidTopicName(tc.topic); err != nil {
			t.Fatalf("bad case: topic %q: %v", tc.topic, err)
		}
		if got := Match(tc.filter, tc.topic); got != tc.want {
			t.Errorf("Match(%q, %q) = %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
		if got := trieMatches(tc.filter, tc.topic); got != tc.want {
			t.Errorf("trie: %q on %q = %v, want %v", tc.filter, tc.topic, got, tc.want)
		}
	}
}

func TestSplitShared(t *testing.T) {
	for _, tc := range []struct {
		in, group, inner string
		ok               bool
	}{
		{"$share/g/a/b", "g", "a/b", true},
		{"$share/g//", "g", "/", true},
		{"$share/g", "", "", false},
		{"a/b", "", "", false},
		{"$sharex/g/a", "", "", false},
	} {
		g, in, ok := SplitShared(tc.in)
		if g != tc.group || in != tc.inner || ok != tc.ok {
			t.Errorf("SplitShared(%q) = %q, %q, %v; want %q, %q, %v", tc.in, g, in, ok, tc.group, tc.inner, tc.ok)
		}
	}
}

// trieMatches runs one filter and one topic through a fresh trie.
func trieMatches(filter, topic string) bool {
	var tr trie
	c := &core{id: "x"}
	tr.insert(filter, "", c, 1)
	hits := tr.match(topic, nil)
	if len(hits) > 1 {
		panic("trie: one subscription matched twice")
	}
	return len(hits) == 1 && hits[0].c == c && hits[0].filter == filter
}
