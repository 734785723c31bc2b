package broker

import (
	"slices"
	"sync"
	"testing"
)

// TestOnFilter: the callback fires when a filter gains its first or loses
// its last subscriber, whatever removed it (unsubscribe, close, discard),
// and HasSubscribers tells the truth at every step.
func TestOnFilter(t *testing.T) {
	var mu sync.Mutex
	var events []string
	b := New(Options{OnFilter: func(f string) {
		mu.Lock()
		events = append(events, f)
		mu.Unlock()
	}})
	defer b.Close()
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		e := events
		events = nil
		return e
	}
	s1, _ := open(t, b, "s1", false, SessionOptions{})
	s2, _ := open(t, b, "s2", false, SessionOptions{Expiry: -1})

	mustSub := func(s *Session, f string) {
		if _, err := s.Subscribe(f, 1); err != nil {
			t.Fatal(err)
		}
	}
	mustSub(s1, "a/+")
	if got := take(); !slices.Equal(got, []string{"a/+"}) {
		t.Fatalf("first subscriber: %v", got)
	}
	mustSub(s1, "a/+") // re-subscribe: same subscription, no event
	mustSub(s2, "$share/g/a/+")
	if got := take(); len(got) != 0 {
		t.Fatalf("second subscriber fired %v", got)
	}
	if !b.HasSubscribers("a/+") || b.HasSubscribers("a/b") {
		t.Fatal("HasSubscribers wrong")
	}
	if got := b.Filters(); !slices.Equal(got, []string{"a/+"}) {
		t.Fatalf("Filters %v", got)
	}
	if err := s1.Unsubscribe("a/+"); err != nil {
		t.Fatal(err)
	}
	if !b.HasSubscribers("a/+") {
		t.Fatal("shared member still there")
	}
	take()
	s2.Detach() // persistent: keeps its subscription
	if !b.HasSubscribers("a/+") {
		t.Fatal("detached persistent session lost its subscription")
	}
	s2c, _ := b.Session("s2")
	s2c.Close()
	if b.HasSubscribers("a/+") {
		t.Fatal("closed session still subscribed")
	}
	if got := take(); !slices.Contains(got, "a/+") {
		t.Fatalf("close did not report the filter: %v", got)
	}
	mustSub(s1, "x/#")
	take()
	// A clean start discards the old session and its subscriptions.
	r := &recorder{}
	b.OpenSession("s1", r, true, SessionOptions{})
	if b.HasSubscribers("x/#") {
		t.Fatal("discarded session still subscribed")
	}
	if got := take(); !slices.Contains(got, "x/#") {
		t.Fatalf("discard did not report the filter: %v", got)
	}
}
