package stomp_test

import (
	"fmt"
	"slices"
	"sort"
	"testing"

	gostomp "github.com/go-stomp/stomp/v3"
	stompframe "github.com/go-stomp/stomp/v3/frame"
)

// inflight is the broker's count of unacknowledged deliveries of the
// client with this session (clientid).
func (e *env) inflight(id string) int {
	e.t.Helper()
	c, ok := e.gw().Client(id)
	if !ok {
		e.t.Fatalf("no client %s", id)
	}
	return c.Session().Inflight
}

func TestAckClientIndividualNack(t *testing.T) {
	e := newEnv(t, conf(""))
	c := e.dial(gostomp.ConnOpt.AcceptVersion(gostomp.V12))
	sub, err := c.Subscribe("jobs/ci", gostomp.AckClientIndividual)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send("jobs/ci", "", []byte("probe"), gostomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	probe := recv(t, sub)
	if probe.Header.Get("ack") == "" {
		t.Fatalf("no ack header: %v", probe.Header)
	}
	if err := c.Ack(probe); err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		e.publish("jobs/ci", fmt.Sprint("m", i), 1)
	}
	m0, m1, m2 := recv(t, sub), recv(t, sub), recv(t, sub)
	if string(m0.Body) != "m0" || string(m1.Body) != "m1" || string(m2.Body) != "m2" {
		t.Fatalf("got %q %q %q", m0.Body, m1.Body, m2.Body)
	}
	if _, ok := m1.Header.Contains("redelivered"); ok {
		t.Fatal("first delivery marked redelivered")
	}
	// NACK the middle one: it comes back, marked, and the others stay
	// unacknowledged in the broker.
	if err := c.Nack(m1); err != nil {
		t.Fatal(err)
	}
	again := recv(t, sub)
	if string(again.Body) != "m1" || again.Header.Get("redelivered") != "true" {
		t.Fatalf("redelivery %q %v", again.Body, again.Header)
	}
	for _, m := range []*gostomp.Message{m0, m2, again} {
		if err := c.Ack(m); err != nil {
			t.Fatal(err)
		}
	}
	// A QoS 0 message is held for its ACK too, within the connection.
	e.publish("jobs/ci", "q0", 0)
	q0 := recv(t, sub)
	if err := c.Nack(q0); err != nil {
		t.Fatal(err)
	}
	if m := recv(t, sub); string(m.Body) != "q0" || m.Header.Get("redelivered") != "true" {
		t.Fatalf("QoS 0 redelivery %q %v", m.Body, m.Header)
	}
	if err := c.Send("jobs/other", "", nil, gostomp.SendOpt.Receipt); err != nil { // ACKs before it are processed
		t.Fatal(err)
	}
	for _, cl := range e.gw().Clients() {
		if n := cl.Session().Inflight; n != 0 {
			t.Fatalf("broker inflight %d after every ACK", n)
		}
	}
	if got := e.counter("gateway/stomp", "messages.nacked"); got != 2 {
		t.Fatalf("messages.nacked = %v", got)
	}
}

func TestAckClientCumulative(t *testing.T) {
	e := newEnv(t, conf(""))
	r := e.raw()
	id := r.connect("accept-version:1.1").Header.Get("session")
	r.frame("SUBSCRIBE", "", "id:s", "destination:jobs/cum", "ack:client", "receipt:s")
	r.until("s")
	for i := range 4 {
		e.publish("jobs/cum", fmt.Sprint("m", i), 1)
	}
	fs := r.barrier("b")
	if len(fs) != 4 {
		t.Fatalf("got %v", bodies(fs))
	}
	if e.inflight(id) != 4 {
		t.Fatalf("inflight %d", e.inflight(id))
	}
	// 1.1: ACK names message-id and subscription; client mode covers
	// every earlier message.
	r.frame("ACK", "", "subscription:s", "message-id:"+fs[2].Header.Get("message-id"), "receipt:a")
	r.until("a")
	if n := e.inflight(id); n != 1 {
		t.Fatalf("inflight %d after a cumulative ACK of 3", n)
	}
	// NACK in client mode is cumulative too.
	r.frame("NACK", "", "subscription:s", "message-id:"+fs[3].Header.Get("message-id"), "receipt:n")
	again := r.until("n")
	if len(again) != 1 || string(again[0].Body) != "m3" || again[0].Header.Get("redelivered") != "true" {
		t.Fatalf("after NACK: %v", again)
	}
	// An ACK for something not outstanding is ignored and counted.
	r.frame("ACK", "", "subscription:s", "message-id:"+fs[0].Header.Get("message-id"), "receipt:old")
	r.until("old")
	if e.counter("gateway/stomp", "errors.unknown_ack") != 1 {
		t.Fatal("unknown ack not counted")
	}
}

func TestAckWindow(t *testing.T) {
	e := newEnv(t, conf("max_inflight = 2"))
	r := e.raw()
	r.connect("accept-version:1.2")
	r.frame("SUBSCRIBE", "", "id:w", "destination:win/#", "ack:client-individual", "receipt:s")
	r.frame("SUBSCRIBE", "", "id:free", "destination:free", "receipt:s2")
	r.until("s")
	r.until("s2")
	for i := range 5 {
		e.publish("win/a", fmt.Sprint("m", i), 1)
	}
	e.publish("free", "not held back", 0)
	fs := r.barrier("b1")
	if got := bodies(fs); !slices.Equal(got, []string{"m0", "m1", "not held back"}) {
		t.Fatalf("with a window of 2: %v", got)
	}
	// Each ACK opens one slot.
	r.frame("ACK", "", "id:"+fs[0].Header.Get("ack"))
	if got := bodies(r.barrier("b2")); !slices.Equal(got, []string{"m2"}) {
		t.Fatalf("after one ACK: %v", got)
	}
	r.frame("NACK", "", "id:"+fs[1].Header.Get("ack"))
	got := r.barrier("b3")
	if len(got) != 1 || string(got[0].Body) != "m1" || got[0].Header.Get("redelivered") != "true" {
		t.Fatalf("after NACK: %v", got)
	}
}

// TestRedeliveryToSharedMember: a member of a shared subscription drops
// its connection with messages unacknowledged; the other member gets
// them, marked redelivered.
func TestRedeliveryToSharedMember(t *testing.T) {
	e := newEnv(t, conf(""))
	a, b := e.raw(), e.raw()
	a.connect("accept-version:1.2")
	b.connect("accept-version:1.2")
	for _, r := range []*raw{a, b} {
		r.frame("SUBSCRIBE", "", "id:g", "destination:$share/workers/jobs/#", "ack:client-individual", "receipt:s")
		r.until("s")
	}
	for i := range 6 {
		e.publish("jobs/x", fmt.Sprint("j", i), 1)
	}
	gotA, gotB := a.barrier("a1"), b.barrier("b1")
	if len(gotA) != 3 || len(gotB) != 3 {
		t.Fatalf("round robin: a %v b %v", bodies(gotA), bodies(gotB))
	}
	// b acknowledges what it has; a acknowledges one and goes.
	for _, f := range gotB {
		b.frame("ACK", "", "id:"+f.Header.Get("ack"))
	}
	a.frame("ACK", "", "id:"+gotA[0].Header.Get("ack"), "receipt:acked")
	a.until("acked")
	a.c.Close()
	var moved []*stompframe.Frame
	for len(moved) < 2 {
		f := b.read()
		if f.Command != "MESSAGE" {
			t.Fatalf("got %s", f.Command)
		}
		moved = append(moved, f)
	}
	want := bodies(gotA[1:])
	got := bodies(moved)
	sort.Strings(want)
	sort.Strings(got)
	if !slices.Equal(got, want) {
		t.Fatalf("b got %v, want a's unacknowledged %v", got, want)
	}
	for _, f := range moved {
		if f.Header.Get("redelivered") != "true" {
			t.Fatalf("moved message not marked: %v", headers(f))
		}
		b.frame("ACK", "", "id:"+f.Header.Get("ack"))
	}
	if fs := b.barrier("b2"); len(fs) != 0 {
		t.Fatalf("duplicates: %v", bodies(fs))
	}
	// A NACK on a shared subscription redelivers to this member.
	e.publish("jobs/y", "nacked", 1)
	f := b.read()
	b.frame("NACK", "", "id:"+f.Header.Get("ack"))
	if f2 := b.read(); string(f2.Body) != "nacked" || f2.Header.Get("redelivered") != "true" {
		t.Fatalf("after NACK: %q %v", f2.Body, headers(f2))
	}
}

// TestRedeliveryOnReconnect: with a stable clientid and a session expiry,
// what a client left unacknowledged comes back when it reconnects and
// subscribes again, marked redelivered; what arrived meanwhile follows.
func TestRedeliveryOnReconnect(t *testing.T) {
	e := newEnv(t, `
[gateway.stomp]
session_expiry_interval = "1m"
[gateway.stomp.clientinfo_override]
clientid = "${packet.headers.client-id}"

[[gateway.stomp.authentication]]
type = "anonymous"

[gateway.stomp.listeners.tcp.default]
bind = "127.0.0.1:0"
`)
	r := e.raw()
	r.connect("accept-version:1.2", "client-id:dev1")
	r.frame("SUBSCRIBE", "", "id:1", "destination:cmd/dev1", "ack:client-individual", "receipt:s")
	r.until("s")
	for i := range 3 {
		e.publish("cmd/dev1", fmt.Sprint("c", i), 1)
	}
	fs := r.barrier("b")
	if len(fs) != 3 {
		t.Fatalf("got %v", bodies(fs))
	}
	r.frame("ACK", "", "id:"+fs[0].Header.Get("ack"), "receipt:a")
	r.until("a")
	r.c.Close()
	eventually(t, "client gone", func() bool { return e.gw().ClientCount() == 0 })
	e.publish("cmd/dev1", "while away", 1)

	r = e.raw()
	r.connect("accept-version:1.2", "client-id:dev1")
	r.frame("SUBSCRIBE", "", "id:again", "destination:cmd/dev1", "ack:client-individual", "receipt:s")
	var got []string
	var marks []string
	for _, f := range r.until("s") {
		got = append(got, string(f.Body))
		marks = append(marks, f.Header.Get("redelivered"))
		if f.Header.Get("subscription") != "again" {
			t.Fatalf("subscription %q", f.Header.Get("subscription"))
		}
	}
	for _, f := range r.barrier("b") {
		got = append(got, string(f.Body))
		marks = append(marks, f.Header.Get("redelivered"))
	}
	if !slices.Equal(got, []string{"c1", "c2", "while away"}) || !slices.Equal(marks, []string{"true", "true", ""}) {
		t.Fatalf("after reconnect: %v redelivered %v", got, marks)
	}
}

// TestNoRedeliveryWithoutStableID: without clientinfo_override the
// session ends with the connection (EMQX's behaviour); a plain
// subscription's unacknowledged messages are not kept.
func TestNoRedeliveryWithoutStableID(t *testing.T) {
	e := newEnv(t, conf(`session_expiry_interval = "1m"`))
	r := e.raw()
	r.connect("accept-version:1.2")
	r.frame("SUBSCRIBE", "", "id:1", "destination:cmd/x", "ack:client", "receipt:s")
	r.until("s")
	e.publish("cmd/x", "m", 1)
	if fs := r.barrier("b"); len(fs) != 1 {
		t.Fatalf("got %v", bodies(fs))
	}
	r.c.Close()
	eventually(t, "session gone", func() bool { return e.b.Stats().Sessions == 0 })
}

// TestAutoAckHoldsUntilWritten: an auto subscription acknowledges QoS 1
// deliveries to the broker once written, so nothing stays inflight.
func TestAutoAckHoldsUntilWritten(t *testing.T) {
	e := newEnv(t, conf(""))
	r := e.raw()
	id := r.connect("accept-version:1.2").Header.Get("session")
	r.frame("SUBSCRIBE", "", "id:1", "destination:auto", "receipt:s")
	r.until("s")
	for range 50 {
		e.publish("auto", "x", 1)
	}
	if fs := r.barrier("b"); len(fs) != 50 {
		t.Fatalf("got %d", len(fs))
	}
	eventually(t, "inflight drained", func() bool { return e.inflight(id) == 0 })
}

func TestUnsubscribeWithUnacked(t *testing.T) {
	e := newEnv(t, conf(""))
	r := e.raw()
	id := r.connect("accept-version:1.2").Header.Get("session")
	r.frame("SUBSCRIBE", "", "id:1", "destination:uu", "ack:client-individual", "receipt:s")
	r.until("s")
	e.publish("uu", "x", 1)
	r.barrier("b")
	r.frame("UNSUBSCRIBE", "", "id:1", "receipt:u")
	r.until("u")
	if n := e.inflight(id); n != 0 {
		t.Fatalf("inflight %d after UNSUBSCRIBE", n)
	}
	if e.counter("gateway/stomp", "delivery.dropped.unsubscribed") != 1 {
		t.Fatal("drop not counted")
	}
}
