package uplink

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/edgeway/edgeway/store"
)

// With the real badger store: messages accepted during an outage survive
// a restart of the agent's pieces (uplink stopped, store closed and
// reopened); PUBLISHes left unacknowledged at the stop go again after it;
// each carries the store's id in its envelope.
func TestRealStoreAcrossRestart(t *testing.T) {
	forBrokers(t, func(t *testing.T, c cloud) {
		const n = 3000
		dir := filepath.Join(t.TempDir(), "queue")
		// sync = "none": a clean Close writes everything, and the test
		// is not about fsync (the store's own crash test is).
		st := openStore(t, dir, store.Options{Sync: store.SyncNone})
		p := startProxy(t, c.Addr())
		p.Down()
		cfg := testConfig("mqtt://" + p.Addr())
		cfg.Envelope = "json"
		r := newRig(t, cfg, st)
		for i := 0; i < n; i++ {
			if err := r.publish("dev/1/data", strconv.Itoa(i), 1); err != nil {
				t.Fatal(err)
			}
		}
		// The cloud gets the first ones but its PUBACKs are lost.
		sub := subscribe(t, c.Addr(), "site/gw1/dev/1/data")
		p.dropAcks.Store(true)
		p.Up()
		sub.waitFor(t, 20*time.Second, "a first window", func(g []received) bool { return len(g) >= 64 })
		stopCtx, cancel := context.WithTimeout(context.Background(), time.Second)
		r.u.Stop(stopCtx)
		cancel()
		if got := st.Stats().Messages; got != n {
			t.Fatalf("%d messages in the store after the stop, want %d (nothing was acknowledged)", got, n)
		}
		st.Close()

		st = openStore(t, dir, store.Options{Sync: store.SyncNone})
		if got := st.Stats().Messages; got != n {
			t.Fatalf("%d messages after reopening, want %d", got, n)
		}
		p.dropAcks.Store(false)
		r2 := newRig(t, cfg, st)
		r2.waitConnected(1)
		got := sub.waitFor(t, 30*time.Second, "all messages", func(g []received) bool {
			seen := map[string]bool{}
			for _, m := range g {
				var e struct{ Payload string }
				json.Unmarshal([]byte(m.payload), &e)
				seen[e.Payload] = true
			}
			return len(seen) >= n
		})
		eventually(t, 10*time.Second, "an empty store", func() bool { return st.Stats().Messages == 0 })

		// Payloads in order (resends allowed); ids unique per message and
		// equal on a resend, which is what the cloud de-duplicates on.
		ids := map[string]string{}
		var plain []received
		for _, m := range got {
			var e struct {
				ID, Payload, Agent, ClientID string
			}
			if err := json.Unmarshal([]byte(m.payload), &e); err != nil {
				t.Fatalf("envelope %q: %v", m.payload, err)
			}
			if e.ID == "" || e.Agent != "gw1" || e.ClientID != "dev1" {
				t.Fatalf("envelope %s", m.payload)
			}
			if prev, ok := ids[e.Payload]; ok && prev != e.ID {
				t.Fatalf("message %s sent with ids %s and %s", e.Payload, prev, e.ID)
			}
			ids[e.Payload] = e.ID
			plain = append(plain, received{payload: e.Payload})
		}
		distinct := map[string]bool{}
		for _, id := range ids {
			distinct[id] = true
		}
		if len(distinct) != n {
			t.Errorf("%d distinct ids for %d messages", len(distinct), n)
		}
		t.Logf("%d deliveries, %d duplicates, across %d connections", len(got), checkSequence(t, plain, n), p.Conns())
	})
}

// Each on_full policy of the real store, through Accept and the drain:
// block refuses with store.ErrFull, drop_new keeps the first, drop_oldest
// the last, drops are counted in Status.
func TestRealStoreOnFull(t *testing.T) {
	c := startMochi(t, nil)
	for _, policy := range []store.OnFull{store.Block, store.DropNew, store.DropOldest} {
		t.Run(string(policy), func(t *testing.T) {
			const n = 200
			st := openStore(t, filepath.Join(t.TempDir(), "q"), store.Options{MaxBytes: 4096, OnFull: policy})
			p := startProxy(t, c.Addr())
			p.Down()
			r := newRig(t, testConfig("mqtt://"+p.Addr()), st)
			refused := 0
			for i := 0; i < n; i++ {
				err := r.publish("dev/1/data", strconv.Itoa(i), 1)
				switch {
				case err == nil:
				case errors.Is(err, store.ErrFull) && policy == store.Block:
					refused++
				default:
					t.Fatalf("publish %d: %v", i, err)
				}
			}
			kept := int(st.Stats().Messages)
			dropped := int(r.u.Status().Dropped)
			if kept == 0 || kept == n || kept+refused+dropped != n {
				t.Fatalf("kept %d refused %d dropped %d of %d", kept, refused, dropped, n)
			}
			if policy == store.Block && dropped != 0 || policy != store.Block && refused != 0 {
				t.Fatalf("%s: refused %d dropped %d", policy, refused, dropped)
			}
			sub := subscribe(t, c.Addr(), "site/gw1/dev/1/data")
			p.Up()
			got := sub.waitFor(t, 10*time.Second, "what was kept", func(g []received) bool { return len(g) >= kept })
			first := 0
			if policy == store.DropOldest {
				first = n - kept
			}
			for i, m := range got[:kept] {
				if m.payload != strconv.Itoa(first+i) {
					t.Fatalf("%s: message %d is %s, want %d", policy, i, m.payload, first+i)
				}
			}
			t.Logf("%s: kept %d, refused %d, dropped %d", policy, kept, refused, dropped)
		})
	}
}

func openStore(t testing.TB, dir string, o store.Options) *store.Store {
	t.Helper()
	o.Dir = dir
	o.Logger = slog.New(slog.DiscardHandler)
	o.GCInterval = -1
	s, err := store.Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !strings.Contains(err.Error(), "closed") {
			t.Errorf("store close: %v", err)
		}
	})
	return s
}
