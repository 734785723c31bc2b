package broker

import (
	"flag"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"testing"
	"time"
)

var seedFlag = flag.Int64("broker.seed", 0, "seed for the broker property tests (0: time-based)")

// propertySeed returns the seed for a property test and makes sure it is
// printed if the test fails, so the failure can be replayed with
// -broker.seed.
func propertySeed(t *testing.T) int64 {
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("seed %d (replay with -broker.seed=%d)", seed, seed)
		}
	})
	return seed
}

// The small alphabets make matches frequent and cover the corner cases:
// empty levels, '$' first levels, and wildcards next to them.
var (
	topicLevels  = []string{"a", "b", "c", ""}
	filterLevels = []string{"a", "b", "c", "", "+", "+"}
	dollarFirst  = []string{"$SYS", "$x"}
)

func randTopic(r *rand.Rand) string {
	n := 1 + r.Intn(4)
	levels := make([]string, n)
	for i := range levels {
		levels[i] = topicLevels[r.Intn(len(topicLevels))]
	}
	if r.Intn(6) == 0 {
		levels[0] = dollarFirst[r.Intn(len(dollarFirst))]
	}
	if n == 1 && levels[0] == "" {
		return "/" // a lone empty level is the empty, invalid, topic
	}
	return strings.Join(levels, "/")
}

func randFilter(r *rand.Rand) string {
	if r.Intn(40) == 0 {
		return "#"
	}
	n := 1 + r.Intn(4)
	levels := make([]string, n)
	for i := range levels {
		levels[i] = filterLevels[r.Intn(len(filterLevels))]
	}
	if r.Intn(8) == 0 {
		levels[0] = dollarFirst[r.Intn(len(dollarFirst))]
	}
	if r.Intn(4) == 0 {
		levels = append(levels, "#")
	}
	if len(levels) == 1 && levels[0] == "" {
		return "/"
	}
	return strings.Join(levels, "/")
}

type propSub struct {
	c      *core
	filter string // inner filter
	group  string
}

// TestTrieProperty inserts thousands of random subscriptions and checks
// the trie's matches against brute force over Match, before and after
// random unsubscribes.
func TestTrieProperty(t *testing.T) {
	r := rand.New(rand.NewSource(propertySeed(t)))
	cores := make([]*core, 60)
	for i := range cores {
		cores[i] = &core{id: fmt.Sprint("s", i)}
		cores[i].attached.Store(i%3 != 0)
	}
	var tr trie
	subs := map[propSub]bool{}
	groups := []string{"g1", "g2"}
	for len(subs) < 4000 {
		s := propSub{c: cores[r.Intn(len(cores))], filter: randFilter(r)}
		if r.Intn(10) == 0 {
			s.group = groups[r.Intn(len(groups))]
		}
		if err := ValidTopicFilter(s.filter); err != nil {
			t.Fatalf("generator made invalid filter %q: %v", s.filter, err)
		}
		added, _ := tr.insert(s.filter, s.group, s.c, byte(r.Intn(3)))
		if added == subs[s] { // new exactly when absent
			t.Fatalf("insert %+v reported added=%v, already present=%v", s, added, subs[s])
		}
		subs[s] = true
	}
	check := func(phase string) {
		t.Helper()
		if tr.count != len(subs) {
			t.Fatalf("%s: trie counts %d subscriptions, want %d", phase, tr.count, len(subs))
		}
		for i := 0; i < 3000; i++ {
			topic := randTopic(r)
			checkTopic(t, phase, &tr, subs, topic)
		}
	}
	check("after insert")

	all := make([]propSub, 0, len(subs))
	for s := range subs {
		all = append(all, s)
	}
	slices.SortFunc(all, func(x, y propSub) int { // map order would break replay
		return strings.Compare(x.c.id+"\x00"+x.group+"\x00"+x.filter, y.c.id+"\x00"+y.group+"\x00"+y.filter)
	})
	r.Shuffle(len(all), func(i, j int) { all[i], all[j] = all[j], all[i] })
	for _, s := range all[:len(all)*2/3] {
		if ok, _ := tr.remove(s.filter, s.group, s.c); !ok {
			t.Fatalf("remove %+v: not found", s)
		}
		delete(subs, s)
	}
	if ok, _ := tr.remove("a/never/subscribed", "", cores[0]); ok {
		t.Fatal("remove of an absent subscription reported success")
	}
	check("after unsubscribe")

	for _, s := range all[len(all)*2/3:] {
		tr.remove(s.filter, s.group, s.c)
		delete(subs, s)
	}
	if tr.count != 0 || !tr.root.empty() {
		t.Fatalf("trie not empty after removing everything: count %d, root %+v", tr.count, tr.root)
	}
}

func checkTopic(t *testing.T, phase string, tr *trie, subs map[propSub]bool, topic string) {
	t.Helper()
	type key struct {
		c      *core
		filter string
	}
	want := map[key]bool{}
	wantGroups := map[[2]string]bool{} // group, filter
	for s := range subs {
		if !Match(s.filter, topic) {
			continue
		}
		if s.group == "" {
			want[key{s.c, s.filter}] = true
		} else {
			wantGroups[[2]string{s.group, s.filter}] = true
		}
	}
	got := map[key]bool{}
	gotGroups := map[[2]string]bool{}
	for _, h := range tr.match(topic, nil) {
		if h.group != "" {
			g := [2]string{h.group, h.filter}
			if gotGroups[g] {
				t.Fatalf("%s: topic %q: group %v matched twice", phase, topic, g)
			}
			gotGroups[g] = true
			if !subs[propSub{c: h.c, filter: h.filter, group: h.group}] {
				t.Fatalf("%s: topic %q: group %v delivered to non-member %s", phase, topic, g, h.c.id)
			}
			continue
		}
		k := key{h.c, h.filter}
		if got[k] {
			t.Fatalf("%s: topic %q: %s/%q matched twice", phase, topic, h.c.id, h.filter)
		}
		got[k] = true
		if !want[k] {
			t.Fatalf("%s: topic %q: trie matched %s/%q, Match says no", phase, topic, h.c.id, h.filter)
		}
	}
	for k := range want {
		if !got[k] {
			t.Fatalf("%s: topic %q: trie missed %s/%q", phase, topic, k.c.id, k.filter)
		}
	}
	for g := range wantGroups {
		if !gotGroups[g] {
			t.Fatalf("%s: topic %q: trie missed shared group %v", phase, topic, g)
		}
	}
	if len(gotGroups) != len(wantGroups) {
		t.Fatalf("%s: topic %q: shared groups got %v want %v", phase, topic, gotGroups, wantGroups)
	}
}

// TestTriePrune checks that unsubscribing leaves no empty levels behind.
func TestTriePrune(t *testing.T) {
	var tr trie
	c := &core{id: "c"}
	filters := []string{"a/b/c", "a/+/c", "a/#", "+/+", "#", "/", "a//b", "$SYS/#"}
	for _, f := range filters {
		tr.insert(f, "", c, 0)
	}
	tr.insert("a/b", "grp", c, 1)
	for _, f := range filters {
		if ok, _ := tr.remove(f, "", c); !ok {
			t.Fatalf("remove %q failed", f)
		}
	}
	if ok, _ := tr.remove("a/b", "other", c); ok {
		t.Fatal("removed a member of a group it never joined")
	}
	if ok, last := tr.remove("a/b", "grp", c); !ok || !last {
		t.Fatal("remove shared failed")
	}
	if !tr.root.empty() || tr.count != 0 {
		t.Fatalf("trie not pruned: children %v plus %v hash %v count %d", tr.root.children, tr.root.plus, tr.root.hash, tr.count)
	}
}
