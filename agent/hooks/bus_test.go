package hooks_test

import (
	"bytes"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/hooks"
)

// recorder collects what a consumer was given.
type recorder struct {
	mu     sync.Mutex
	events []hooks.Event
}

func (r *recorder) fn(e hooks.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
}

func (r *recorder) got() []hooks.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]hooks.Event(nil), r.events...)
}

func summary(es []hooks.Event) []string {
	var s []string
	for _, e := range es {
		s = append(s, string(e.Name)+" "+e.Topic)
	}
	return s
}

func equal(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestSubscribeReceivesOnlyItsNamesInOrder(t *testing.T) {
	b := hooks.New(hooks.Options{})
	defer b.Close()

	var conn, all recorder
	cancelConn := b.Subscribe("conn", []hooks.Name{hooks.ClientConnected, hooks.MessageDropped, hooks.ClientConnected}, 64, conn.fn)
	cancelAll := b.Subscribe("all", nil, 64, all.fn)

	at := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	emitted := []hooks.Event{
		{Name: hooks.ClientConnected, Topic: "1", Time: at},
		{Name: hooks.MessagePublish, Topic: "2"},
		{Name: hooks.MessageDropped, Topic: "3", Reason: "queue_full"},
		{Name: hooks.SessionSubscribed, Topic: "4"},
		{Name: "mqttsn.sleep", Topic: "5"},
		{Name: hooks.ClientConnected, Topic: "6"},
	}
	before := time.Now()
	for _, e := range emitted {
		b.Emit(e)
	}
	// cancel hands over what is queued and waits, so afterwards the
	// recorders are complete.
	cancelConn()
	cancelAll()

	want := []string{"client.connected 1", "message.dropped 3", "client.connected 6"}
	if got := summary(conn.got()); !equal(got, want) {
		t.Errorf("conn consumer got %q, want %q", got, want)
	}
	wantAll := summary(emitted)
	if got := summary(all.got()); !equal(got, wantAll) {
		t.Errorf("all consumer got %q, want %q", got, wantAll)
	}

	got := conn.got()
	if !got[0].Time.Equal(at) {
		t.Errorf("time given by producer changed to %v", got[0].Time)
	}
	if got[1].Time.Before(before) {
		t.Errorf("zero time not filled in: %v", got[1].Time)
	}
	if got[1].Reason != "queue_full" {
		t.Errorf("reason = %q", got[1].Reason)
	}
}

func TestEnabled(t *testing.T) {
	b := hooks.New(hooks.Options{})
	defer b.Close()
	for _, n := range hooks.All {
		if b.Enabled(n) {
			t.Fatalf("Enabled(%s) with no consumer", n)
		}
	}
	cancel := b.Subscribe("x", []hooks.Name{hooks.MessageAcked}, 1, func(hooks.Event) {})
	if !b.Enabled(hooks.MessageAcked) {
		t.Error("Enabled(message.acked) false with a consumer")
	}
	if b.Enabled(hooks.MessageDelivered) {
		t.Error("Enabled(message.delivered) true with a consumer of message.acked only")
	}
	cancelAll := b.Subscribe("y", nil, 1, func(hooks.Event) {})
	if !b.Enabled("anything.at.all") {
		t.Error("Enabled false with a consumer of all names")
	}
	cancelAll()
	cancel()
	if b.Enabled(hooks.MessageAcked) {
		t.Error("Enabled true after cancel")
	}
}

func TestSlowConsumerDropsAndNeverBlocksEmit(t *testing.T) {
	const buffer, extra = 4, 3
	var logBuf bytes.Buffer // written by the consumer goroutine only
	b := hooks.New(hooks.Options{Logger: slog.New(slog.NewTextHandler(&logBuf, nil))})
	defer b.Close()

	started := make(chan struct{})
	release := make(chan struct{})
	var blocked atomic.Bool
	var slow recorder
	cancelSlow := b.Subscribe("slow", []hooks.Name{hooks.MessageDelivered}, buffer, func(e hooks.Event) {
		if e.Topic == "0" {
			blocked.Store(true)
			close(started)
			<-release
			blocked.Store(false)
		}
		slow.fn(e)
	})
	var fast recorder
	cancelFast := b.Subscribe("fast", []hooks.Name{hooks.MessageDelivered}, 64, fast.fn)

	emit := func(i int) { b.Emit(hooks.Event{Name: hooks.MessageDelivered, Topic: strconv.Itoa(i)}) }
	emit(0)
	<-started // the slow consumer holds event 0, its queue is empty
	for i := 1; i <= buffer+extra; i++ {
		emit(i)
	}
	// Every Emit returned while the consumer is still stuck in event 0.
	if !blocked.Load() {
		t.Fatal("consumer no longer blocked")
	}
	if d := b.Dropped(); d["slow"] != extra || d["fast"] != 0 {
		t.Errorf("Dropped() = %v, want slow:%d fast:0", d, extra)
	}
	close(release)
	cancelSlow()
	cancelFast()

	var want []string
	for i := 0; i <= buffer; i++ {
		want = append(want, "message.delivered "+strconv.Itoa(i))
	}
	if got := summary(slow.got()); !equal(got, want) {
		t.Errorf("slow consumer got %q, want %q", got, want)
	}
	if n := len(fast.got()); n != 1+buffer+extra {
		t.Errorf("fast consumer got %d events, want %d", n, 1+buffer+extra)
	}
	if log := logBuf.String(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, "consumer=slow dropped=3") {
		t.Errorf("drops not logged; log: %s", log)
	}
	// Counts survive cancel.
	if d := b.Dropped(); d["slow"] != extra {
		t.Errorf("after cancel Dropped() = %v", d)
	}
}

func TestCloseIsIdempotent(t *testing.T) {
	b := hooks.New(hooks.Options{})
	var r1, r2 recorder
	cancel1 := b.Subscribe("one", nil, 8, r1.fn)
	b.Subscribe("two", []hooks.Name{hooks.ClientDisconnected}, 8, r2.fn)
	b.Emit(hooks.Event{Name: hooks.ClientDisconnected, Reason: "keepalive_timeout"})

	b.Close()
	if len(r1.got()) != 1 || len(r2.got()) != 1 {
		t.Fatalf("Close did not hand over queued events: %d, %d", len(r1.got()), len(r2.got()))
	}
	b.Close()
	cancel1() // after Close: harmless

	b.Emit(hooks.Event{Name: hooks.ClientDisconnected})
	var called atomic.Bool
	cancel3 := b.Subscribe("late", nil, 8, func(hooks.Event) { called.Store(true) })
	b.Emit(hooks.Event{Name: hooks.ClientDisconnected})
	cancel3()
	if called.Load() || b.Enabled(hooks.ClientDisconnected) {
		t.Error("Subscribe after Close registered a consumer")
	}
	if len(r1.got()) != 1 || len(r2.got()) != 1 {
		t.Error("consumer called after Close")
	}
}

func TestConcurrentEmitSubscribeCancel(t *testing.T) {
	b := hooks.New(hooks.Options{})
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				b.Emit(hooks.Event{Name: hooks.All[i%len(hooks.All)]})
			}
		})
	}
	var n atomic.Int64
	for i := range 50 {
		cancel := b.Subscribe("c", hooks.All[i%3:i%3+2], 2, func(hooks.Event) { n.Add(1) })
		b.Enabled(hooks.ClientConnected)
		_ = b.Dropped()
		cancel()
	}
	close(stop)
	wg.Wait()
	b.Close()
}

func TestNilBus(t *testing.T) {
	var b *hooks.Bus
	b.Emit(hooks.Event{Name: hooks.ClientConnected})
	if b.Enabled(hooks.ClientConnected) {
		t.Error("nil Bus enabled")
	}
	if d := b.RunAuthenticate(hooks.Client{}, nil); d != hooks.Continue {
		t.Errorf("RunAuthenticate = %v", d)
	}
	if d := b.RunAuthorize(hooks.Client{}, "publish", "t"); d != hooks.Continue {
		t.Errorf("RunAuthorize = %v", d)
	}
	if !b.RunPublish(hooks.Client{}, "t", nil, 0) {
		t.Error("RunPublish = false")
	}
	if len(b.Dropped()) != 0 {
		t.Error("Dropped not empty")
	}
	b.Close()
}

func TestEmitDoesNotAllocate(t *testing.T) {
	b := hooks.New(hooks.Options{})
	defer b.Close()
	e := hooks.Event{
		Name:    hooks.MessagePublish,
		Client:  hooks.Client{Gateway: "mqttsn", ClientID: "c1"},
		Topic:   "a/b",
		Payload: []byte("hello"),
	}
	if n := testing.AllocsPerRun(1000, func() { b.Emit(e) }); n != 0 {
		t.Errorf("Emit with no consumer: %v allocs", n)
	}
	if n := testing.AllocsPerRun(1000, func() { _ = b.Enabled(e.Name) }); n != 0 {
		t.Errorf("Enabled with no consumer: %v allocs", n)
	}
	cancel := b.Subscribe("other", []hooks.Name{hooks.ClientConnected}, 1, func(hooks.Event) {})
	defer cancel()
	if n := testing.AllocsPerRun(1000, func() { b.Emit(e) }); n != 0 {
		t.Errorf("Emit with a consumer of another name: %v allocs", n)
	}
}

func BenchmarkEmitNoSubscriber(b *testing.B) {
	bus := hooks.New(hooks.Options{})
	defer bus.Close()
	e := hooks.Event{Name: hooks.MessagePublish, Client: hooks.Client{ClientID: "c1"}, Topic: "a/b", Payload: []byte("x")}
	b.ReportAllocs()
	for b.Loop() {
		bus.Emit(e)
	}
}

func BenchmarkEmitOtherNameSubscribed(b *testing.B) {
	bus := hooks.New(hooks.Options{})
	defer bus.Close()
	bus.Subscribe("presence", []hooks.Name{hooks.ClientConnected, hooks.ClientDisconnected}, 0, func(hooks.Event) {})
	e := hooks.Event{Name: hooks.MessagePublish, Client: hooks.Client{ClientID: "c1"}, Topic: "a/b", Payload: []byte("x")}
	b.ReportAllocs()
	for b.Loop() {
		bus.Emit(e)
	}
}

func BenchmarkEmitOneSubscriber(b *testing.B) {
	bus := hooks.New(hooks.Options{})
	var n atomic.Uint64
	bus.Subscribe("count", []hooks.Name{hooks.MessagePublish}, 0, func(hooks.Event) { n.Add(1) })
	e := hooks.Event{Name: hooks.MessagePublish, Client: hooks.Client{ClientID: "c1"}, Topic: "a/b", Payload: []byte("x"), Time: time.Now()}
	b.ReportAllocs()
	for b.Loop() {
		bus.Emit(e)
	}
	b.StopTimer()
	bus.Close()
	b.ReportMetric(float64(bus.Dropped()["count"])/float64(b.N), "dropped/op")
}
