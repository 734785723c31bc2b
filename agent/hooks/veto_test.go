package hooks_test

import (
	"sync"
	"testing"

	"github.com/edgeway/edgeway/agent/hooks"
)

func TestVetoOrderByPriority(t *testing.T) {
	b := hooks.New(hooks.Options{})
	var calls []string
	authz := func(name string, d hooks.Decision) hooks.AuthorizeFunc {
		return func(c hooks.Client, action, topic string) hooks.Decision {
			calls = append(calls, name)
			return d
		}
	}
	b.OnAuthorize(0, authz("a0", hooks.Continue))
	b.OnAuthorize(10, authz("b10", hooks.Continue))
	removeC := b.OnAuthorize(0, authz("c0", hooks.Continue))
	b.OnAuthorize(10, authz("d10", hooks.Continue))
	b.OnAuthorize(-5, authz("e-5", hooks.Continue))

	c := hooks.Client{ClientID: "c1"}
	if d := b.RunAuthorize(c, "publish", "t"); d != hooks.Continue {
		t.Errorf("all Continue: got %v", d)
	}
	if want := []string{"b10", "d10", "a0", "c0", "e-5"}; !equal(calls, want) {
		t.Errorf("order %q, want %q", calls, want)
	}

	// First non-Continue decision wins; later handlers are not asked.
	calls = nil
	removeDeny := b.OnAuthorize(5, authz("deny5", hooks.Deny))
	b.OnAuthorize(1, authz("allow1", hooks.Allow))
	if d := b.RunAuthorize(c, "subscribe", "t/#"); d != hooks.Deny {
		t.Errorf("got %v, want deny", d)
	}
	if want := []string{"b10", "d10", "deny5"}; !equal(calls, want) {
		t.Errorf("order %q, want %q", calls, want)
	}

	calls = nil
	removeDeny()
	removeDeny() // idempotent
	removeC()
	if d := b.RunAuthorize(c, "subscribe", "t/#"); d != hooks.Allow {
		t.Errorf("got %v, want allow", d)
	}
	if want := []string{"b10", "d10", "allow1"}; !equal(calls, want) {
		t.Errorf("order %q, want %q", calls, want)
	}
}

func TestAuthenticateChain(t *testing.T) {
	b := hooks.New(hooks.Options{})
	if d := b.RunAuthenticate(hooks.Client{}, []byte("pw")); d != hooks.Continue {
		t.Fatalf("no handler: %v", d)
	}
	var order []string
	remove1 := b.OnAuthenticate(1, func(c hooks.Client, pw []byte) hooks.Decision {
		order = append(order, "users")
		if c.Username == "alice" && string(pw) == "secret" {
			return hooks.Allow
		}
		return hooks.Continue
	})
	b.OnAuthenticate(0, func(c hooks.Client, pw []byte) hooks.Decision {
		order = append(order, "default")
		return hooks.Deny
	})
	if d := b.RunAuthenticate(hooks.Client{Username: "alice"}, []byte("secret")); d != hooks.Allow {
		t.Errorf("alice: %v", d)
	}
	if d := b.RunAuthenticate(hooks.Client{Username: "bob"}, []byte("x")); d != hooks.Deny {
		t.Errorf("bob: %v", d)
	}
	if want := []string{"users", "users", "default"}; !equal(order, want) {
		t.Errorf("order %q, want %q", order, want)
	}
	remove1()
	if d := b.RunAuthenticate(hooks.Client{Username: "alice"}, []byte("secret")); d != hooks.Deny {
		t.Errorf("alice after remove: %v", d)
	}
}

func TestPublishChain(t *testing.T) {
	b := hooks.New(hooks.Options{})
	if !b.RunPublish(hooks.Client{}, "t", nil, 0) {
		t.Fatal("no handler: false")
	}
	var order []string
	b.OnPublish(0, func(c hooks.Client, topic string, payload []byte, qos byte) bool {
		order = append(order, "size")
		return len(payload) <= 4
	})
	removeQoS := b.OnPublish(3, func(c hooks.Client, topic string, payload []byte, qos byte) bool {
		order = append(order, "qos")
		return qos < 2
	})
	if !b.RunPublish(hooks.Client{}, "t", []byte("abc"), 1) {
		t.Error("small qos1 vetoed")
	}
	if b.RunPublish(hooks.Client{}, "t", []byte("abc"), 2) {
		t.Error("qos2 passed")
	}
	if b.RunPublish(hooks.Client{}, "t", []byte("abcdef"), 0) {
		t.Error("large passed")
	}
	if want := []string{"qos", "size", "qos", "qos", "size"}; !equal(order, want) {
		t.Errorf("order %q, want %q", order, want)
	}
	removeQoS()
	if !b.RunPublish(hooks.Client{}, "t", []byte("abc"), 2) {
		t.Error("qos2 vetoed after remove")
	}
}

func TestVetoRegistrationConcurrentWithRun(t *testing.T) {
	b := hooks.New(hooks.Options{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			b.RunAuthorize(hooks.Client{}, "publish", "t")
			b.RunAuthenticate(hooks.Client{}, nil)
			b.RunPublish(hooks.Client{}, "t", nil, 0)
		}
	})
	for i := range 200 {
		r1 := b.OnAuthorize(i%3, func(hooks.Client, string, string) hooks.Decision { return hooks.Continue })
		r2 := b.OnAuthenticate(i%3, func(hooks.Client, []byte) hooks.Decision { return hooks.Continue })
		r3 := b.OnPublish(i%3, func(hooks.Client, string, []byte, byte) bool { return true })
		if i%2 == 0 {
			r1()
			r2()
			r3()
		}
	}
	close(stop)
	wg.Wait()
}

func TestRunDoesNotAllocate(t *testing.T) {
	b := hooks.New(hooks.Options{})
	c := hooks.Client{Gateway: "coap", ClientID: "c1"}
	pw := []byte("pw")
	check := func(when string) {
		t.Helper()
		if n := testing.AllocsPerRun(1000, func() { b.RunAuthenticate(c, pw) }); n != 0 {
			t.Errorf("RunAuthenticate %s: %v allocs", when, n)
		}
		if n := testing.AllocsPerRun(1000, func() { b.RunAuthorize(c, "publish", "a/b") }); n != 0 {
			t.Errorf("RunAuthorize %s: %v allocs", when, n)
		}
		if n := testing.AllocsPerRun(1000, func() { b.RunPublish(c, "a/b", pw, 1) }); n != 0 {
			t.Errorf("RunPublish %s: %v allocs", when, n)
		}
	}
	check("with no handler")
	r1 := b.OnAuthenticate(0, func(hooks.Client, []byte) hooks.Decision { return hooks.Continue })
	r2 := b.OnAuthorize(0, func(hooks.Client, string, string) hooks.Decision { return hooks.Continue })
	r3 := b.OnPublish(0, func(hooks.Client, string, []byte, byte) bool { return true })
	check("with a handler")
	r1()
	r2()
	r3()
	check("after removing every handler")
}

func TestDecisionString(t *testing.T) {
	for d, want := range map[hooks.Decision]string{hooks.Continue: "continue", hooks.Allow: "allow", hooks.Deny: "deny", 7: "decision(7)"} {
		if got := d.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", int(d), got, want)
		}
	}
}

func BenchmarkRunAuthorizeNoHandler(b *testing.B) {
	bus := hooks.New(hooks.Options{})
	c := hooks.Client{ClientID: "c1"}
	b.ReportAllocs()
	for b.Loop() {
		bus.RunAuthorize(c, "publish", "a/b")
	}
}
