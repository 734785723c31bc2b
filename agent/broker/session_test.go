package broker

import (
	"errors"
	"fmt"
	"math/rand"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestQoSDelivery(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	s, r := open(t, b, "sub", false, SessionOptions{})
	for q := byte(0); q <= 2; q++ {
		subscribe(t, s, fmt.Sprint("t/", q), q)
	}
	var want []string
	for pq := byte(0); pq <= 2; pq++ {
		for sq := byte(0); sq <= 2; sq++ {
			if n := publish(t, b, fmt.Sprint("t/", sq), pq, fmt.Sprintf("%d%d", pq, sq)); n != 1 {
				t.Fatalf("publish matched %d sessions, want 1", n)
			}
			want = append(want, fmt.Sprintf("%d%d", pq, sq))
		}
	}
	got := r.take()
	wantPayloads(t, "deliveries", got, want...)
	var lastID uint64
	inflight := 0
	for _, d := range got {
		pq, sq := d.Msg.Payload[0]-'0', d.Msg.Payload[1]-'0'
		if d.QoS != min(pq, sq) {
			t.Errorf("pub qos %d sub qos %d: delivered at %d", pq, sq, d.QoS)
		}
		if d.Filter != fmt.Sprint("t/", sq) || d.Group != "" || d.Dup || d.Retained {
			t.Errorf("delivery %+v: wrong filter or flags", d)
		}
		if d.QoS == 0 {
			if d.ID != 0 {
				t.Errorf("QoS 0 delivery has ID %d", d.ID)
			}
			continue
		}
		inflight++
		if d.ID <= lastID {
			t.Errorf("delivery IDs not increasing: %d after %d", d.ID, lastID)
		}
		lastID = d.ID
	}
	if st := s.Stats(); st.Inflight != inflight || st.Delivered != 9 || st.Queued != 0 {
		t.Fatalf("stats %+v, want %d inflight, 9 delivered", st, inflight)
	}
	for _, d := range got {
		s.Ack(d.ID)
	}
	if st := s.Stats(); st.Inflight != 0 {
		t.Fatalf("after acking everything: %+v", st)
	}
	if st := b.Stats(); st.Published != 9 || st.Delivered != 9 || st.Subscriptions != 3 || st.Sessions != 1 || st.Attached != 1 {
		t.Fatalf("broker stats %+v", st)
	}
}

func TestMessageIDAndTime(t *testing.T) {
	clk := newFakeClock()
	b := New(Options{Clock: clk})
	defer b.Close()
	_, r := open(t, b, "sub", false, SessionOptions{})
	r.s.Subscribe("#", 0)
	m1 := &Message{Topic: "a"}
	m2 := &Message{Topic: "a"}
	preset := &Message{Topic: "a", ID: 1 << 40, Time: time.Unix(5, 0)}
	for _, m := range []*Message{m1, m2, preset} {
		if _, err := b.Publish(m); err != nil {
			t.Fatal(err)
		}
	}
	if m1.ID == 0 || m2.ID <= m1.ID || preset.ID != 1<<40 {
		t.Fatalf("IDs %d, %d, %d", m1.ID, m2.ID, preset.ID)
	}
	if !m1.Time.Equal(clk.Now()) || !preset.Time.Equal(time.Unix(5, 0)) {
		t.Fatalf("times %v, %v", m1.Time, preset.Time)
	}
	if got := r.take(); len(got) != 3 || got[0].Msg != m1 || got[2].Msg != preset {
		t.Fatalf("deliveries %+v do not share the published messages", got)
	}
}

func TestOverlappingSubscriptionsDeliverOnce(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	s, r := open(t, b, "sub", false, SessionOptions{})
	subscribe(t, s, "a/+", 0)
	subscribe(t, s, "a/#", 2)
	subscribe(t, s, "a/b", 1)
	subscribe(t, s, "+/b", 1)
	if n := publish(t, b, "a/b", 2, "x"); n != 1 {
		t.Fatalf("matched %d, want 1", n)
	}
	got := r.take()
	if len(got) != 1 || got[0].QoS != 2 || got[0].Filter != "a/#" {
		t.Fatalf("got %+v, want one QoS 2 delivery via a/#", got)
	}
	publish(t, b, "a/b", 1, "y")
	if got := r.take(); len(got) != 1 || got[0].QoS != 1 {
		t.Fatalf("got %+v, want one QoS 1 delivery", got)
	}
	publish(t, b, "a/c", 2, "z") // a/+ (0) and a/# (2)
	if got := r.take(); len(got) != 1 || got[0].QoS != 2 || got[0].Filter != "a/#" {
		t.Fatalf("got %+v, want one QoS 2 delivery via a/#", got)
	}
}

// TestOverlappingMany pushes one publish past the small-slice dedup into
// the map-based one.
func TestOverlappingMany(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	topic := []string{"a", "b", "c", "d", "e"}
	var filters []string
	for mask := 0; mask < 32; mask++ {
		l := slices.Clone(topic)
		for i := range l {
			if mask&(1<<i) != 0 {
				l[i] = "+"
			}
		}
		filters = append(filters, strings.Join(l, "/"))
	}
	filters = append(filters, "#", "a/#", "a/b/#", "+/b/#", "a/b/c/d/e/#")
	var recs []*recorder
	var sess []*Session
	for i := 0; i < 3; i++ {
		s, r := open(t, b, fmt.Sprint("s", i), false, SessionOptions{})
		for j, f := range filters {
			q := byte(0)
			if j == 17+i { // a different, single filter grants QoS 2
				q = 2
			}
			subscribe(t, s, f, q)
		}
		recs = append(recs, r)
		sess = append(sess, s)
	}
	if n := publish(t, b, "a/b/c/d/e", 2, "x"); n != 3 {
		t.Fatalf("matched %d, want 3", n)
	}
	for i, r := range recs {
		got := r.take()
		if len(got) != 1 || got[0].QoS != 2 || got[0].Filter != filters[17+i] {
			t.Fatalf("session %d got %+v, want one QoS 2 delivery via %q", i, got, filters[17+i])
		}
	}
	_ = sess
}

// TestBrokerDeliversOnceProperty checks, for random overlapping
// subscriptions, that each session gets a message exactly when one of its
// filters matches, once, at the highest granted QoS.
func TestBrokerDeliversOnceProperty(t *testing.T) {
	r := rand.New(rand.NewSource(propertySeed(t)))
	b := New(Options{})
	defer b.Close()
	type sub struct {
		s    *Session
		rec  *recorder
		subs map[string]byte
	}
	var all []sub
	for i := 0; i < 20; i++ {
		s, rec := open(t, b, fmt.Sprint("s", i), true, SessionOptions{})
		subs := map[string]byte{}
		for j := 0; j < 1+r.Intn(12); j++ {
			f, q := randFilter(r), byte(r.Intn(3))
			subscribe(t, s, f, q)
			subs[f] = q
		}
		all = append(all, sub{s, rec, subs})
	}
	for i := 0; i < 2000; i++ {
		topic, pq := randTopic(r), byte(r.Intn(3))
		n := publish(t, b, topic, pq, topic)
		matched := 0
		for _, x := range all {
			want := -1
			for f, sq := range x.subs {
				if Match(f, topic) {
					want = max(want, int(min(pq, sq)))
				}
			}
			got := x.rec.take()
			if want < 0 {
				if len(got) != 0 {
					t.Fatalf("topic %q: session %s got %d deliveries, subscribed to %v", topic, x.s.ID(), len(got), x.subs)
				}
				continue
			}
			matched++
			if len(got) != 1 || int(got[0].QoS) != want || !Match(got[0].Filter, topic) || x.subs[got[0].Filter] < got[0].QoS {
				t.Fatalf("topic %q qos %d: session %s (subs %v) got %+v, want one delivery at QoS %d", topic, pq, x.s.ID(), x.subs, got, want)
			}
		}
		if n != matched {
			t.Fatalf("topic %q: Publish reported %d sessions, want %d", topic, n, matched)
		}
	}
}

func TestInflightWindow(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	s, r := open(t, b, "sub", false, SessionOptions{MaxInflight: 2})
	subscribe(t, s, "t", 2)
	for i := 1; i <= 5; i++ {
		publish(t, b, "t", 1, fmt.Sprint("p", i))
	}
	publish(t, b, "t", 0, "p6") // FIFO: waits behind p3..p5
	got := r.take()
	wantPayloads(t, "first window", got, "p1", "p2")
	if st := s.Stats(); st.Inflight != 2 || st.Queued != 4 {
		t.Fatalf("stats %+v, want 2 inflight, 4 queued", st)
	}
	s.Ack(got[0].ID)
	next := r.take()
	wantPayloads(t, "after ack p1", next, "p3")
	s.Ack(got[0].ID) // repeated ack: ignored
	s.Ack(12345)     // unknown: ignored
	wantPayloads(t, "after bogus acks", r.take())
	s.Ack(got[1].ID)
	wantPayloads(t, "after ack p2", r.take(), "p4")
	s.Ack(next[0].ID)
	rest := r.take()
	wantPayloads(t, "after ack p3", rest, "p5", "p6")
	if st := s.Stats(); st.Inflight != 2 || st.Queued != 0 || st.Delivered != 6 {
		t.Fatalf("stats %+v, want 2 inflight (p4, p5), nothing queued", st)
	}
}

func TestQueueOverflow(t *testing.T) {
	for _, tc := range []struct {
		policy   DropPolicy
		survive  []string
		dropped  []string
		queueLen int
	}{
		{DropOldest, []string{"m3", "m4", "m5"}, []string{"sub m1 queue_full", "sub m2 queue_full"}, 3},
		{DropNew, []string{"m1", "m2", "m3"}, []string{"sub m4 queue_full", "sub m5 queue_full"}, 3},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			var log dropLog
			b := New(Options{DropPolicy: tc.policy, OnDrop: log.onDrop, MaxQueueLen: 100})
			defer b.Close()
			s, _ := open(t, b, "sub", false, SessionOptions{MaxQueueLen: tc.queueLen, Expiry: time.Hour})
			subscribe(t, s, "t", 1)
			s.Detach()
			for i := 1; i <= 5; i++ {
				publish(t, b, "t", 1, fmt.Sprint("m", i))
			}
			if got := log.take(); !slices.Equal(got, tc.dropped) {
				t.Fatalf("OnDrop calls %q, want %q", got, tc.dropped)
			}
			if st := s.Stats(); st.Dropped != 2 || st.Queued != 3 {
				t.Fatalf("session stats %+v, want 2 dropped, 3 queued", st)
			}
			if st := b.Stats(); st.Dropped != 2 {
				t.Fatalf("broker stats %+v, want 2 dropped", st)
			}
			r2 := &recorder{}
			b.OpenSession("sub", r2, false, SessionOptions{MaxQueueLen: tc.queueLen})
			wantPayloads(t, "after reattach", r2.take(), tc.survive...)
		})
	}
}

// TestQueueShrinkOnResume: a session resumed with a smaller bound sheds
// the excess by the drop policy, reported like any overflow.
func TestQueueShrinkOnResume(t *testing.T) {
	for _, tc := range []struct {
		policy  DropPolicy
		survive []string
		dropped []string
	}{
		{DropOldest, []string{"m3", "m4"}, []string{"sub m1 queue_full", "sub m2 queue_full"}},
		{DropNew, []string{"m1", "m2"}, []string{"sub m4 queue_full", "sub m3 queue_full"}},
	} {
		t.Run(tc.policy.String(), func(t *testing.T) {
			var log dropLog
			b := New(Options{OnDrop: log.onDrop, DropPolicy: tc.policy})
			defer b.Close()
			s, _ := open(t, b, "sub", false, SessionOptions{Expiry: time.Hour})
			subscribe(t, s, "t", 0)
			s.Detach()
			for i := 1; i <= 4; i++ {
				publish(t, b, "t", 0, fmt.Sprint("m", i))
			}
			r := &recorder{}
			b.OpenSession("sub", r, false, SessionOptions{MaxQueueLen: 2})
			wantPayloads(t, "delivered", r.take(), tc.survive...)
			if got := log.take(); !slices.Equal(got, tc.dropped) {
				t.Fatalf("drops %q, want %q", got, tc.dropped)
			}
			if st := s.Stats(); st.Dropped != 2 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

func TestDetachReattachRedelivers(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	s, r := open(t, b, "sub", false, SessionOptions{Expiry: time.Hour})
	subscribe(t, s, "t", 2)
	publish(t, b, "t", 1, "m1")
	publish(t, b, "t", 2, "m2")
	publish(t, b, "t", 0, "m3")
	first := r.take()
	wantPayloads(t, "before detach", first, "m1", "m2", "m3")
	s.Detach()
	s.Detach() // idempotent
	publish(t, b, "t", 1, "m4")
	publish(t, b, "t", 0, "m5") // QoS 0 queues while detached too
	if len(r.take()) != 0 {
		t.Fatal("delivered to a detached session")
	}
	if st := s.Stats(); st.Attached || st.Queued != 2 || st.Inflight != 2 {
		t.Fatalf("detached stats %+v", st)
	}

	r2 := &recorder{}
	s2, present := b.OpenSession("sub", r2, false, SessionOptions{Expiry: time.Hour})
	if !present {
		t.Fatal("resumed session not present")
	}
	got := r2.take()
	wantPayloads(t, "after reattach", got, "m1", "m2", "m4", "m5")
	for i, want := range []struct {
		id  uint64
		dup bool
		qos byte
	}{{first[0].ID, true, 1}, {first[1].ID, true, 2}, {first[1].ID + 1, false, 1}, {0, false, 0}} {
		if got[i].ID != want.id || got[i].Dup != want.dup || got[i].QoS != want.qos {
			t.Errorf("delivery %d: %+v, want id %d dup %v qos %d", i, got[i], want.id, want.dup, want.qos)
		}
	}
	if subs := s2.Subscriptions(); len(subs) != 1 || subs["t"] != 2 {
		t.Fatalf("subscriptions after resume: %v", subs)
	}
	s.Ack(got[0].ID) // the old handle is inert after reattach
	if st := s2.Stats(); st.Inflight != 3 || st.Redelivered != 2 {
		t.Fatalf("stats %+v: want 3 inflight, 2 redelivered", st)
	}
	for _, d := range got {
		s2.Ack(d.ID)
	}
	if st := s2.Stats(); st.Inflight != 0 {
		t.Fatalf("stats after acks %+v", st)
	}
}

// TestRedeliveryThenWindow: redelivered inflight fills the window before
// queued messages flow, and acks keep the order.
func TestRedeliveryThenWindow(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	s, r := open(t, b, "sub", false, SessionOptions{Expiry: time.Hour, MaxInflight: 2})
	subscribe(t, s, "t", 1)
	for i := 1; i <= 4; i++ {
		publish(t, b, "t", 1, fmt.Sprint("m", i))
	}
	wantPayloads(t, "window", r.take(), "m1", "m2")
	s.Detach()
	r2 := &recorder{}
	s2, _ := b.OpenSession("sub", r2, false, SessionOptions{Expiry: time.Hour, MaxInflight: 2})
	got := r2.take()
	wantPayloads(t, "redelivered", got, "m1", "m2")
	s2.Ack(got[1].ID) // out of order ack frees one slot
	wantPayloads(t, "after ack", r2.take(), "m3")
	s2.Ack(got[0].ID)
	wantPayloads(t, "after ack", r2.take(), "m4")
}

func TestCleanStartDiscards(t *testing.T) {
	var log dropLog
	b := New(Options{OnDrop: log.onDrop})
	defer b.Close()
	s, r := open(t, b, "sub", false, SessionOptions{Expiry: time.Hour})
	subscribe(t, s, "t", 1)
	publish(t, b, "t", 1, "m1") // inflight
	s.Detach()
	publish(t, b, "t", 1, "m2") // queued
	r.take()

	r2 := &recorder{}
	s2, present := b.OpenSession("sub", r2, true, SessionOptions{})
	if present {
		t.Fatal("clean start reported a present session")
	}
	if subs := s2.Subscriptions(); len(subs) != 0 {
		t.Fatalf("clean session has subscriptions %v", subs)
	}
	wantPayloads(t, "clean session", r2.take())
	if got := log.take(); !slices.Equal(got, []string{"sub m1 session_discarded", "sub m2 session_discarded"}) {
		t.Fatalf("drops %q", got)
	}
	if n := publish(t, b, "t", 1, "m3"); n != 0 {
		t.Fatalf("publish matched %d after clean start", n)
	}
	if got := log.take(); !slices.Equal(got, []string{" m3 no_subscribers"}) {
		t.Fatalf("drops %q", got)
	}
	if st := b.Stats(); st.NoSubscribers != 1 || st.Dropped != 2 || st.Subscriptions != 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := s.Subscribe("t", 0); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("Subscribe on a discarded session: %v", err)
	}
}

func TestTakeoverKicksOldDeliverer(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	s1, r1 := open(t, b, "sub", false, SessionOptions{Expiry: time.Hour})
	subscribe(t, s1, "t", 1)
	publish(t, b, "t", 1, "m1")
	wantPayloads(t, "old", r1.take(), "m1")

	r2 := &recorder{}
	s2, present := b.OpenSession("sub", r2, false, SessionOptions{Expiry: time.Hour})
	if !present {
		t.Fatal("takeover: session not present")
	}
	if k := r1.kicked(); !slices.Equal(k, []string{KickTakeover}) {
		t.Fatalf("old deliverer kicks %q", k)
	}
	got := r2.take()
	if len(got) != 1 || !got[0].Dup || string(got[0].Msg.Payload) != "m1" {
		t.Fatalf("new deliverer got %+v, want m1 with Dup", got)
	}
	// The kicked channel cleans up through its stale handle: no effect.
	s1.Detach()
	s1.Close()
	if _, err := s1.Subscribe("x", 0); !errors.Is(err, ErrTakenOver) {
		t.Fatalf("stale Subscribe: %v", err)
	}
	if err := s1.Unsubscribe("t"); !errors.Is(err, ErrTakenOver) {
		t.Fatalf("stale Unsubscribe: %v", err)
	}
	if st := s2.Stats(); !st.Attached || st.Subscriptions != 1 {
		t.Fatalf("stale handle disturbed the new attachment: %+v", st)
	}
	publish(t, b, "t", 0, "m2")
	wantPayloads(t, "old after takeover", r1.take())
	wantPayloads(t, "new after takeover", r2.take(), "m2")
	if len(r2.kicked()) != 0 {
		t.Fatal("new deliverer kicked")
	}

	// An administrative handle acts on whoever is attached, and kicks.
	admin, ok := b.Session("sub")
	if !ok {
		t.Fatal("Session: not found")
	}
	admin.Close()
	if k := r2.kicked(); !slices.Equal(k, []string{KickClosed}) {
		t.Fatalf("admin close kicks %q", k)
	}
	if _, ok := b.Session("sub"); ok {
		t.Fatal("session survives admin Close")
	}
}

func TestRetained(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	publish1 := func(topic string, qos byte, payload string) {
		t.Helper()
		if _, err := b.Publish(&Message{Topic: topic, QoS: qos, Payload: []byte(payload), Retain: true}); err != nil {
			t.Fatal(err)
		}
	}
	publish1("r/1", 1, "one")
	publish1("r/2", 0, "two")
	publish1("r/1", 2, "uno") // replaces "one", and is now the newest
	publish1("$SYS/r", 1, "sys")
	if st := b.Stats(); st.Retained != 3 || st.NoSubscribers != 0 {
		t.Fatalf("stats %+v, want 3 retained and no no_subscribers drops", st)
	}

	s, r := open(t, b, "sub", false, SessionOptions{})
	n, err := s.Subscribe("r/+", 1)
	if err != nil || n != 2 {
		t.Fatalf("Subscribe: %d, %v; want 2 retained", n, err)
	}
	got := r.take()
	wantPayloads(t, "retained on subscribe", got, "two", "uno")
	if got[0].QoS != 0 || got[1].QoS != 1 || !got[0].Retained || !got[1].Retained || !got[1].Msg.Retain {
		t.Fatalf("retained deliveries %+v", got)
	}

	// A live retained publish reaches existing subscribers without the
	// Retained delivery flag.
	publish1("r/3", 1, "three")
	got = r.take()
	if len(got) != 1 || got[0].Retained || !got[0].Msg.Retain {
		t.Fatalf("live retained publish delivered as %+v", got)
	}

	// Empty payload clears, and is still forwarded.
	publish1("r/1", 1, "")
	wantPayloads(t, "clear forwarded", r.take(), "")
	if _, ok := b.Retained("r/1"); ok {
		t.Fatal("r/1 still retained after clear")
	}
	if m, ok := b.Retained("r/2"); !ok || string(m.Payload) != "two" {
		t.Fatalf("Retained(r/2) = %v, %v", m, ok)
	}

	s2, r2 := open(t, b, "sub2", false, SessionOptions{})
	if n, _ := s2.Subscribe("r/1", 2); n != 0 {
		t.Fatalf("cleared topic still delivered %d retained", n)
	}
	if n, _ := s2.Subscribe("#", 2); n != 2 { // r/2, r/3; not $SYS/r
		t.Fatalf("'#' got %d retained, want 2", n)
	}
	wantPayloads(t, "'#' retained", r2.take(), "two", "three")
	if n, _ := s2.Subscribe("$share/g/r/#", 2); n != 0 {
		t.Fatalf("shared subscription got %d retained", n)
	}
	wantPayloads(t, "shared", r2.take())
	if n, _ := s2.Subscribe("$SYS/#", 0); n != 1 {
		t.Fatalf("$SYS/# got %d retained", n)
	}
	wantPayloads(t, "$SYS retained", r2.take(), "sys")
}

// TestHoldResume: a channel can send CONNACK/SUBACK before deliveries.
func TestHoldResume(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	b.Publish(&Message{Topic: "r", Payload: []byte("kept"), Retain: true})
	s, r := open(t, b, "sub", false, SessionOptions{Held: true})
	subscribe(t, s, "t", 0)
	publish(t, b, "t", 0, "m1")
	wantPayloads(t, "held", r.take())
	s.Resume()
	wantPayloads(t, "resumed", r.take(), "m1")

	s.Hold()
	subscribe(t, s, "r", 0) // retained waits for the SUBACK
	wantPayloads(t, "held subscribe", r.take())
	s.Resume()
	wantPayloads(t, "after resume", r.take(), "kept")
}

func TestSharedRoundRobin(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	var recs []*recorder
	for i := 0; i < 3; i++ {
		s, r := open(t, b, fmt.Sprint("m", i), true, SessionOptions{})
		subscribe(t, s, "$share/g/t/#", 1)
		recs = append(recs, r)
	}
	plain, pr := open(t, b, "plain", false, SessionOptions{})
	subscribe(t, plain, "t/#", 0)
	for i := 0; i < 9; i++ {
		if n := publish(t, b, "t/x", 1, fmt.Sprint(i)); n != 2 {
			t.Fatalf("matched %d, want 2 (the group and the plain subscriber)", n)
		}
	}
	for i, r := range recs {
		got := r.take()
		wantPayloads(t, fmt.Sprint("member ", i), got, fmt.Sprint(i), fmt.Sprint(i+3), fmt.Sprint(i+6))
		for _, d := range got {
			if d.Filter != "t/#" || d.Group != "g" || d.QoS != 1 {
				t.Fatalf("shared delivery %+v", d)
			}
		}
	}
	wantPayloads(t, "plain", pr.take(), "0", "1", "2", "3", "4", "5", "6", "7", "8")
	if subs := recs[0].s.Subscriptions(); subs["$share/g/t/#"] != 1 || len(subs) != 1 {
		t.Fatalf("Subscriptions %v", subs)
	}
	if err := recs[0].s.Unsubscribe("$share/g/t/#"); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 4; i++ {
		publish(t, b, "t/x", 1, fmt.Sprint("u", i))
	}
	if got := len(recs[0].take()); got != 0 {
		t.Fatalf("unsubscribed member got %d", got)
	}
	if a, c := len(recs[1].take()), len(recs[2].take()); a != 2 || c != 2 {
		t.Fatalf("remaining members got %d and %d, want 2 each", a, c)
	}
}

// TestSharedRedispatch: what a member leaves unacknowledged goes to
// another member; detached members are skipped.
func TestSharedRedispatch(t *testing.T) {
	var log dropLog
	b := New(Options{OnDrop: log.onDrop})
	defer b.Close()
	sa, ra := open(t, b, "a", false, SessionOptions{Expiry: time.Hour})
	sb, rb := open(t, b, "b", false, SessionOptions{Expiry: time.Hour})
	subscribe(t, sa, "$share/g/t", 1)
	subscribe(t, sb, "$share/g/t", 2)
	publish(t, b, "t", 2, "m0")
	publish(t, b, "t", 2, "m1")
	wantPayloads(t, "a", ra.take(), "m0")
	wantPayloads(t, "b", rb.take(), "m1")

	sa.Detach()
	got := rb.take()
	if len(got) != 1 || string(got[0].Msg.Payload) != "m0" || got[0].Dup || got[0].QoS != 2 || got[0].Group != "g" {
		t.Fatalf("b got %+v, want m0 handed over at QoS 2", got)
	}
	if st := sa.Stats(); st.Inflight != 0 || st.Queued != 0 {
		t.Fatalf("detached member kept %+v", st)
	}
	publish(t, b, "t", 1, "m2")
	publish(t, b, "t", 1, "m3")
	rest := rb.take()
	wantPayloads(t, "b while a is away", rest, "m2", "m3")
	for _, d := range append(got, rest...) {
		sb.Ack(d.ID)
	}
	sb.Ack(1) // m1, b's first delivery
	if st := sb.Stats(); st.Inflight != 0 {
		t.Fatalf("b still has %d inflight", st.Inflight)
	}

	// With nobody attached the message waits in a member's queue.
	sb.Detach()
	publish(t, b, "t", 1, "m4")
	if qa, qb := sa.Stats().Queued, sb.Stats().Queued; qa+qb != 1 {
		t.Fatalf("queued %d + %d, want 1", qa, qb)
	}
	// Closing the member that holds it hands it to the other, even
	// though that one is detached too.
	holder, other := sa, sb
	if sb.Stats().Queued == 1 {
		holder, other = sb, sa
	}
	holder.Close()
	if st := other.Stats(); st.Queued != 1 {
		t.Fatalf("closed member's message not moved: %+v", st)
	}
	r := &recorder{}
	b.OpenSession(other.ID(), r, false, SessionOptions{})
	wantPayloads(t, "reattached member", r.take(), "m4")
	if d := log.take(); len(d) != 0 {
		t.Fatalf("shared messages dropped: %q", d)
	}
}

func TestSinkError(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	errFull := errors.New("uplink: store full")
	var seen []*Message
	b.SetSink(sinkFunc(func(m *Message) error {
		seen = append(seen, m)
		if string(m.Payload) == "bad" {
			return errFull
		}
		return nil
	}))
	s, r := open(t, b, "sub", false, SessionOptions{})
	subscribe(t, s, "t", 1)

	n, err := b.Publish(&Message{Topic: "t", Payload: []byte("bad"), Retain: true})
	if err != errFull || n != 0 {
		t.Fatalf("Publish = %d, %v; want the sink's error unchanged", n, err)
	}
	wantPayloads(t, "after rejected publish", r.take())
	if _, ok := b.Retained("t"); ok {
		t.Fatal("rejected message was retained")
	}
	if st := b.Stats(); st.Published != 0 {
		t.Fatalf("rejected message counted as published: %+v", st)
	}

	publish(t, b, "t", 1, "good")
	wantPayloads(t, "accepted", r.take(), "good")
	if len(seen) != 2 || seen[1].ID == 0 || seen[1].Time.IsZero() {
		t.Fatalf("sink saw %+v, want 2 messages with ID and Time set", seen)
	}

	n, err = b.PublishWith(&Message{Topic: "t", Payload: []byte("bad")}, PublishOptions{SkipSink: true})
	if err != nil || n != 1 || len(seen) != 2 {
		t.Fatalf("SkipSink publish: %d, %v; sink saw %d", n, err, len(seen))
	}
	wantPayloads(t, "from the sink side", r.take(), "bad")

	b.SetSink(nil)
	publish(t, b, "t", 1, "bad")
	wantPayloads(t, "no sink", r.take(), "bad")
}

type sinkFunc func(*Message) error

func (f sinkFunc) Accept(m *Message) error { return f(m) }

func TestSessionExpiry(t *testing.T) {
	var log dropLog
	clk := newFakeClock()
	b := New(Options{Clock: clk, OnDrop: log.onDrop})
	defer b.Close()
	s, _ := open(t, b, "sub", false, SessionOptions{Expiry: time.Minute})
	subscribe(t, s, "t", 1)
	s.Detach()
	publish(t, b, "t", 1, "m1")

	clk.Advance(59 * time.Second)
	if _, ok := b.Session("sub"); !ok {
		t.Fatal("session expired early")
	}
	clk.Advance(time.Second)
	if _, ok := b.Session("sub"); ok {
		t.Fatal("session not removed at expiry")
	}
	if got := log.take(); !slices.Equal(got, []string{"sub m1 expired"}) {
		t.Fatalf("drops %q", got)
	}
	if st := b.Stats(); st.Sessions != 0 || st.Subscriptions != 0 {
		t.Fatalf("stats after expiry %+v", st)
	}
	if n := publish(t, b, "t", 1, "m2"); n != 0 {
		t.Fatalf("expired session still matched")
	}
	if _, err := s.Subscribe("t", 0); !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("Subscribe on expired session: %v", err)
	}

	// Reattaching in time cancels the expiry; a later detach starts a
	// fresh one.
	s, _ = open(t, b, "sub2", false, SessionOptions{Expiry: time.Minute})
	subscribe(t, s, "t", 1)
	s.Detach()
	clk.Advance(30 * time.Second)
	s2, r2 := open(t, b, "sub2", false, SessionOptions{Expiry: time.Minute})
	clk.Advance(5 * time.Minute)
	if _, ok := b.Session("sub2"); !ok {
		t.Fatal("reattached session expired")
	}
	publish(t, b, "t", 0, "m3")
	wantPayloads(t, "reattached", r2.take(), "m3")
	s2.Detach()
	clk.Advance(time.Minute)
	if _, ok := b.Session("sub2"); ok {
		t.Fatal("second detach did not expire")
	}

	// Negative expiry: kept until closed.
	s3, _ := open(t, b, "sub3", false, SessionOptions{Expiry: -1})
	s3.Detach()
	clk.Advance(1000 * time.Hour)
	if _, ok := b.Session("sub3"); !ok {
		t.Fatal("session with negative expiry expired")
	}
	if clk.pending() != 0 {
		t.Fatalf("%d timers pending", clk.pending())
	}
}

func TestZeroExpiryClosesOnDetach(t *testing.T) {
	var log dropLog
	b := New(Options{OnDrop: log.onDrop})
	defer b.Close()
	s, r := open(t, b, "sub", false, SessionOptions{})
	subscribe(t, s, "t", 1)
	publish(t, b, "t", 1, "m1")
	r.take()
	s.Detach()
	if _, ok := b.Session("sub"); ok {
		t.Fatal("session with zero expiry survived Detach")
	}
	if got := log.take(); !slices.Equal(got, []string{"sub m1 session_closed"}) {
		t.Fatalf("drops %q", got)
	}
	if len(r.kicked()) != 0 {
		t.Fatal("a channel detaching itself was kicked")
	}
}

func TestUnsubscribe(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	s, r := open(t, b, "sub", false, SessionOptions{})
	subscribe(t, s, "a/+", 1)
	subscribe(t, s, "a/+", 2) // re-subscribe updates QoS, not count
	if st := b.Stats(); st.Subscriptions != 1 {
		t.Fatalf("re-subscribe counted twice: %+v", st)
	}
	if err := s.Unsubscribe("a/b"); !errors.Is(err, ErrNoSubscription) {
		t.Fatalf("Unsubscribe absent: %v", err)
	}
	if err := s.Unsubscribe("a/#/b"); !errors.Is(err, ErrInvalidTopicFilter) {
		t.Fatalf("Unsubscribe invalid: %v", err)
	}
	publish(t, b, "a/x", 2, "m1")
	if got := r.take(); len(got) != 1 || got[0].QoS != 2 {
		t.Fatalf("got %+v", got)
	}
	if err := s.Unsubscribe("a/+"); err != nil {
		t.Fatal(err)
	}
	publish(t, b, "a/x", 2, "m2")
	wantPayloads(t, "after unsubscribe", r.take())
	if st := b.Stats(); st.Subscriptions != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestInvalidInput(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	s, _ := open(t, b, "sub", false, SessionOptions{})
	if _, err := b.Publish(&Message{Topic: "a/+"}); !errors.Is(err, ErrInvalidTopicName) {
		t.Errorf("wildcard publish: %v", err)
	}
	if _, err := b.Publish(&Message{Topic: "a", QoS: 3}); !errors.Is(err, ErrInvalidQoS) {
		t.Errorf("QoS 3 publish: %v", err)
	}
	if _, err := b.Publish(nil); err == nil {
		t.Error("nil publish accepted")
	}
	if _, err := s.Subscribe("a/#/b", 0); !errors.Is(err, ErrInvalidTopicFilter) {
		t.Errorf("bad filter: %v", err)
	}
	if _, err := s.Subscribe("a", 3); !errors.Is(err, ErrInvalidQoS) {
		t.Errorf("QoS 3 subscribe: %v", err)
	}
	if st := b.Stats(); st.Published != 0 || st.Subscriptions != 0 {
		t.Errorf("invalid input left traces: %+v", st)
	}
}

func TestBrokerClose(t *testing.T) {
	var log dropLog
	clk := newFakeClock()
	b := New(Options{Clock: clk, OnDrop: log.onDrop})
	s1, r1 := open(t, b, "attached", false, SessionOptions{MaxInflight: 1})
	subscribe(t, s1, "t", 1)
	s2, _ := open(t, b, "away", false, SessionOptions{Expiry: time.Hour})
	subscribe(t, s2, "t", 0)
	s2.Detach()
	publish(t, b, "t", 1, "m1") // inflight at attached, queued at away
	publish(t, b, "t", 1, "m2") // queued at both
	if clk.pending() != 1 {
		t.Fatalf("%d expiry timers pending, want 1", clk.pending())
	}
	b.Close()
	b.Close()
	if clk.pending() != 0 {
		t.Fatal("Close left an expiry timer running")
	}
	if k := r1.kicked(); !slices.Equal(k, []string{KickBrokerClosed}) {
		t.Fatalf("kicks %q", k)
	}
	got := log.take()
	slices.Sort(got)
	want := []string{"attached m1 broker_closed", "attached m2 broker_closed", "away m1 broker_closed", "away m2 broker_closed"}
	if !slices.Equal(got, want) {
		t.Fatalf("drops %q, want %q", got, want)
	}
	if _, err := b.Publish(&Message{Topic: "t"}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}
	s3, present := b.OpenSession("new", &recorder{}, false, SessionOptions{})
	if _, err := s3.Subscribe("t", 0); present || !errors.Is(err, ErrSessionClosed) {
		t.Fatalf("OpenSession after Close: present %v, Subscribe %v", present, err)
	}
	if st := b.Stats(); st.Sessions != 0 || st.Retained != 0 {
		t.Fatalf("stats after Close %+v", st)
	}
}

// callbackDeliverer calls back into its session from inside Deliver.
type callbackDeliverer struct {
	recorder
	onDeliver func(d Delivery)
}

func (c *callbackDeliverer) Deliver(d Delivery) {
	c.recorder.Deliver(d)
	c.onDeliver(d)
}

func TestDeliverCallsBack(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	cd := &callbackDeliverer{}
	var s *Session
	cd.onDeliver = func(d Delivery) {
		switch string(d.Msg.Payload) {
		case "subscribe":
			if _, err := s.Subscribe("u", 0); err != nil {
				t.Errorf("Subscribe inside Deliver: %v", err)
			}
		case "publish":
			if _, err := b.Publish(&Message{Topic: "u", Payload: []byte("echo")}); err != nil {
				t.Errorf("Publish inside Deliver: %v", err)
			}
		case "detach":
			s.Detach()
		}
	}
	s, _ = b.OpenSession("sub", cd, false, SessionOptions{Expiry: time.Hour})
	subscribe(t, s, "t", 0)
	b.Publish(&Message{Topic: "t", Payload: []byte("subscribe")})
	b.Publish(&Message{Topic: "t", Payload: []byte("publish")})
	b.Publish(&Message{Topic: "t", Payload: []byte("detach")})
	b.Publish(&Message{Topic: "t", Payload: []byte("queued")})
	wantPayloads(t, "deliveries", cd.take(), "subscribe", "publish", "echo", "detach")
	if st := s.Stats(); st.Attached || st.Queued != 1 {
		t.Fatalf("stats %+v, want detached with 1 queued", st)
	}
}

type panicker struct{ recorder }

func (p *panicker) Deliver(d Delivery) {
	if string(d.Msg.Payload) == "boom" {
		panic("boom")
	}
	p.recorder.Deliver(d)
}

// TestDeliverPanic: a panicking Deliverer does not wedge its session.
func TestDeliverPanic(t *testing.T) {
	b := New(Options{})
	defer b.Close()
	p := &panicker{}
	s, _ := b.OpenSession("sub", p, false, SessionOptions{})
	subscribe(t, s, "t", 0)
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("panic swallowed")
			}
		}()
		b.Publish(&Message{Topic: "t", Payload: []byte("boom")})
	}()
	publish(t, b, "t", 0, "after")
	wantPayloads(t, "after panic", p.take(), "after")
}

// TestConcurrentPublishersOrder: several publishers at once; every
// subscriber sees each publisher's messages complete and in order,
// whether it acks inside Deliver, from another goroutine, or uses QoS 0.
func TestConcurrentPublishersOrder(t *testing.T) {
	const publishers, perPublisher = 4, 1500
	b := New(Options{MaxQueueLen: publishers * perPublisher})
	defer b.Close()

	sync1, syncRec := open(t, b, "sync", true, SessionOptions{})
	subscribe(t, sync1, "p/+", 1)
	q0, q0Rec := open(t, b, "qos0", false, SessionOptions{})
	subscribe(t, q0, "p/#", 0)
	syncRec.yield, q0Rec.yield = true, true

	ids := make(chan uint64, 2*DefaultMaxInflight) // inflight bounds what can be pending
	asyncRec := &asyncDeliverer{ids: ids}
	async, _ := b.OpenSession("async", asyncRec, false, SessionOptions{})
	subscribe(t, async, "p/+", 2)
	stop := make(chan struct{})
	var ackers sync.WaitGroup
	ackers.Add(1)
	go func() {
		defer ackers.Done()
		for {
			select {
			case id := <-ids:
				async.Ack(id)
			case <-stop:
				return
			}
		}
	}()

	var pubs sync.WaitGroup
	for p := 0; p < publishers; p++ {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			topic := fmt.Sprint("p/", p)
			for i := 0; i < perPublisher; i++ {
				m := &Message{Topic: topic, QoS: 1, ClientID: fmt.Sprint(p), Payload: []byte(fmt.Sprint(i))}
				if _, err := b.Publish(m); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	pubs.Wait()
	close(stop)
	ackers.Wait()
	// Only this goroutine is left: finish the acks it did not get to;
	// deliveries they release arrive synchronously on ids.
	for done := false; !done; {
		select {
		case id := <-ids:
			async.Ack(id)
		default:
			done = true
		}
	}

	for name, got := range map[string][]Delivery{"sync": syncRec.take(), "qos0": q0Rec.take(), "async": asyncRec.take()} {
		next := make([]int, publishers)
		for _, d := range got {
			p := int(d.Msg.ClientID[0] - '0')
			if want := fmt.Sprint(next[p]); string(d.Msg.Payload) != want {
				t.Fatalf("%s: publisher %d: got %s, want %s", name, p, d.Msg.Payload, want)
			}
			next[p]++
		}
		for p, n := range next {
			if n != perPublisher {
				t.Fatalf("%s: publisher %d: %d of %d messages arrived", name, p, n, perPublisher)
			}
		}
	}
	for _, s := range []*Session{sync1, q0, async} {
		if st := s.Stats(); st.Inflight != 0 || st.Queued != 0 || st.Dropped != 0 {
			t.Fatalf("%s: stats %+v", s.ID(), st)
		}
	}
}

// asyncDeliverer hands QoS 1/2 delivery ids to another goroutine to ack.
type asyncDeliverer struct {
	recorder
	ids chan uint64
}

func (a *asyncDeliverer) Deliver(d Delivery) {
	a.recorder.Deliver(d)
	if d.ID != 0 {
		a.ids <- d.ID
	}
}

// TestConcurrentChurn runs publishes, subscribes, acks, detaches and
// takeovers at once; it is for the race detector, and checks the books
// balance afterwards.
func TestConcurrentChurn(t *testing.T) {
	var dropped sync.Map
	b := New(Options{MaxQueueLen: 50, OnDrop: func(id string, m *Message, reason string) { dropped.Store(reason, true) }})
	defer b.Close()
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewSource(int64(w)))
			for i := 0; i < 400; i++ {
				id := fmt.Sprint("s", r.Intn(6))
				rec := &recorder{autoAck: r.Intn(2) == 0}
				rec.mu.Lock()
				s, _ := b.OpenSession(id, rec, r.Intn(5) == 0, SessionOptions{Expiry: time.Duration(r.Intn(2)) * time.Hour, Held: true})
				rec.s = s
				rec.mu.Unlock()
				s.Resume()
				s.Subscribe(randFilter(r), byte(r.Intn(3)))
				if r.Intn(3) == 0 {
					s.Subscribe("$share/g/"+randFilter(r), 1)
				}
				for j := 0; j < 5; j++ {
					b.Publish(&Message{Topic: randTopic(r), QoS: byte(r.Intn(3)), Retain: r.Intn(10) == 0, Payload: []byte("x")})
				}
				for _, d := range rec.take() {
					s.Ack(d.ID)
				}
				switch r.Intn(3) {
				case 0:
					s.Detach()
				case 1:
					s.Close()
				}
			}
		}()
	}
	wg.Wait()
	b.Close()
	if st := b.Stats(); st.Sessions != 0 || st.Subscriptions != 0 {
		t.Fatalf("stats after Close %+v", st)
	}
}
