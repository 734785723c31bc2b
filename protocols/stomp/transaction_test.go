package stomp_test

import (
	"strings"
	"testing"

	gostomp "github.com/go-stomp/stomp/v3"

	"github.com/edgeway/edgeway/agent/gateway"
)

func TestTransactionCommit(t *testing.T) {
	e := newEnv(t, conf(""))
	obs := e.observe("tx/#", 0)
	c := e.dial()
	tx, err := c.BeginWithError()
	if err != nil {
		t.Fatal(err)
	}
	for _, body := range []string{"a", "b", "c"} {
		if err := tx.Send("tx/"+body, "text/plain", []byte(body), gostomp.SendOpt.Receipt); err != nil {
			t.Fatal(err)
		}
	}
	// Every SEND was received (its RECEIPT came back) and none published.
	if n := e.b.Stats().Published; n != 0 {
		t.Fatalf("%d published before COMMIT", n)
	}
	if err := tx.CommitWithReceipt(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for range 3 {
		got = append(got, string(obs.next(t).Msg.Payload))
	}
	if strings.Join(got, "") != "abc" {
		t.Fatalf("committed %v", got)
	}
	if e.counter("gateway/stomp", "transactions.committed") != 1 {
		t.Fatal("commit not counted")
	}
}

func TestTransactionAbort(t *testing.T) {
	e := newEnv(t, conf(""))
	c := e.dial()
	tx := c.Begin()
	if err := tx.Send("tx/x", "", []byte("no"), gostomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	if err := tx.AbortWithReceipt(); err != nil {
		t.Fatal(err)
	}
	if err := c.Send("tx/after", "", []byte("yes"), gostomp.SendOpt.Receipt); err != nil {
		t.Fatal(err)
	}
	if n := e.b.Stats().Published; n != 1 {
		t.Fatalf("published %d, want only the SEND after ABORT", n)
	}
	// The aborted transaction is gone.
	r := e.raw()
	r.connect("accept-version:1.2")
	r.frame("BEGIN", "", "transaction:t")
	r.frame("ABORT", "", "transaction:t", "receipt:a")
	r.until("a")
	r.frame("COMMIT", "", "transaction:t", "receipt:c")
	if f := r.expectError("Transaction t not found"); f.Header.Get("receipt-id") != "c" {
		t.Fatalf("ERROR %v", headers(f))
	}
}

// TestTransactionAcks: ACKs inside a transaction take effect at COMMIT,
// and an ABORT leaves the messages unacknowledged.
func TestTransactionAcks(t *testing.T) {
	e := newEnv(t, conf(""))
	r := e.raw()
	id := r.connect("accept-version:1.2").Header.Get("session")
	r.frame("SUBSCRIBE", "", "id:1", "destination:txa", "ack:client-individual", "receipt:s")
	r.until("s")
	e.publish("txa", "m1", 1)
	e.publish("txa", "m2", 1)
	fs := r.barrier("b")
	a1, a2 := "id:"+fs[0].Header.Get("ack"), "id:"+fs[1].Header.Get("ack")

	r.frame("BEGIN", "", "transaction:t1")
	r.frame("ACK", "", a1, "transaction:t1")
	r.frame("ABORT", "", "transaction:t1", "receipt:ab")
	r.until("ab")
	if n := e.inflight(id); n != 2 {
		t.Fatalf("inflight %d after an aborted ACK", n)
	}
	r.frame("BEGIN", "", "transaction:t2")
	r.frame("ACK", "", a1, "transaction:t2")
	r.frame("NACK", "", a2, "transaction:t2", "receipt:n")
	if got := r.until("n"); len(got) != 0 {
		t.Fatalf("NACK applied before COMMIT: %v", bodies(got))
	}
	if n := e.inflight(id); n != 2 {
		t.Fatalf("inflight %d before COMMIT", n)
	}
	r.frame("SEND", "sent in t2", "destination:txa/other", "transaction:t2")
	r.frame("COMMIT", "", "transaction:t2", "receipt:c")
	got := r.until("c")
	if len(got) != 1 || string(got[0].Body) != "m2" || got[0].Header.Get("redelivered") != "true" {
		t.Fatalf("after COMMIT: %v", bodies(got))
	}
	if n := e.inflight(id); n != 1 {
		t.Fatalf("inflight %d after COMMIT (m2 is out again)", n)
	}
}

func TestTransactionExpiry(t *testing.T) {
	e := newEnv(t, conf(`transaction_timeout = "200ms"`))
	r := e.raw()
	r.connect("accept-version:1.2")
	r.frame("BEGIN", "", "transaction:slow")
	r.frame("SEND", "late", "destination:tx/late", "transaction:slow", "receipt:s")
	r.until("s")
	eventually(t, "transaction expiry", func() bool { return e.counter("gateway/stomp", "transactions.expired") == 1 })
	r.frame("COMMIT", "", "transaction:slow")
	r.expectError("Transaction slow not found")
	if n := e.b.Stats().Published; n != 0 {
		t.Fatalf("expired transaction published %d", n)
	}
}

func TestTransactionErrors(t *testing.T) {
	e := newEnv(t, conf(""))
	for _, tc := range []struct {
		name    string
		frames  [][]string
		message string
	}{
		{"unknown transaction", [][]string{{"SEND", "destination:a", "transaction:nope"}}, "Transaction nope not found"},
		{"begin twice", [][]string{{"BEGIN", "transaction:t"}, {"BEGIN", "transaction:t"}}, "Transaction already started"},
		{"begin without id", [][]string{{"BEGIN"}}, "Missing transaction"},
		{"bad SEND inside", [][]string{{"BEGIN", "transaction:t"}, {"SEND", "destination:a/#", "transaction:t"}}, "Invalid destination"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.raw()
			r.connect("accept-version:1.2")
			for _, f := range tc.frames {
				r.frame(f[0], "", f[1:]...)
			}
			r.expectError(tc.message)
		})
	}
	if n := e.b.Stats().Published; n != 0 {
		t.Fatalf("published %d", n)
	}
}

// TestTransactionAtomic: a COMMIT whose SENDs are not all authorized
// publishes none of them. It needs *gateway.Client to answer
// authorization questions without publishing (Client.Authorize).
func TestTransactionAtomic(t *testing.T) {
	var c any = (*gateway.Client)(nil)
	if _, ok := c.(interface {
		Authorize(gateway.Action, string) bool
	}); !ok {
		t.Skip("agent/gateway: *Client has no Authorize(Action, topic) bool yet; COMMIT cannot check before applying")
	}
	deny := gateway.AuthorizerFunc(func(_ *gateway.ClientInfo, _ gateway.Action, topic string) bool {
		return !strings.HasPrefix(topic, "forbidden/")
	})
	e := newEnv(t, conf(""), withAuthorizer(deny))
	r := e.raw()
	r.connect("accept-version:1.2")
	r.frame("BEGIN", "", "transaction:t")
	r.frame("SEND", "ok", "destination:allowed/1", "transaction:t")
	r.frame("SEND", "no", "destination:forbidden/1", "transaction:t")
	r.frame("SEND", "ok", "destination:allowed/2", "transaction:t")
	r.frame("COMMIT", "", "transaction:t", "receipt:c")
	if f := r.expectError("Not authorized"); f.Header.Get("receipt-id") != "c" {
		t.Fatalf("ERROR %v", headers(f))
	}
	if n := e.b.Stats().Published; n != 0 {
		t.Fatalf("a refused COMMIT published %d", n)
	}
}
