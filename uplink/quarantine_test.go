package uplink

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/store"
)

// A message the cloud broker refuses by closing the connection (here a
// real mosquitto with max_packet_size, which disconnects a client sending
// a larger packet) does not block the queue: after quarantine_after
// closed connections, the last with it alone in flight, it is moved to
// the quarantine file with its payload, and every other message arrives
// in order.
func TestPoisonMessageQuarantined(t *testing.T) {
	m := startMosquitto(t, "max_packet_size 2000")
	qdir := filepath.Join(t.TempDir(), "quarantine")
	st := openStore(t, filepath.Join(t.TempDir(), "queue"), store.Options{Sync: store.SyncNone})
	cfg := testConfig("mqtt://" + m.Addr())
	sub := subscribe(t, m.Addr(), "site/gw1/dev/#")
	r := newRigQuarantine(t, cfg, st, qdir)
	poison := strings.Repeat("P", 5000)
	for i := range 20 {
		if i == 7 {
			if err := r.publish("dev/1/big", poison, 1); err != nil {
				t.Fatal(err)
			}
		}
		if err := r.publish("dev/1/data", strconv.Itoa(i), 1); err != nil {
			t.Fatal(err)
		}
	}
	got := sub.waitFor(t, 30*time.Second, "the 20 good messages", complete(20))
	var good []received
	for _, x := range got {
		if x.topic != "site/gw1/dev/1/data" {
			t.Fatalf("the refused message arrived on %s", x.topic)
		}
		good = append(good, x)
	}
	checkSequence(t, good, 20)
	eventually(t, 10*time.Second, "an empty queue", func() bool { return st.Stats().Messages == 0 })
	s := r.u.Status()
	if s.Quarantined != 1 {
		t.Fatalf("status quarantined %d, want 1", s.Quarantined)
	}
	if s.Connects < 3 {
		t.Fatalf("%d connections: the message was quarantined before the broker refused it %d times", s.Connects, 3)
	}
	f, err := os.Open(filepath.Join(qdir, QuarantineFile))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var lines []quarantined
	for sc.Scan() {
		var q quarantined
		if err := json.Unmarshal(sc.Bytes(), &q); err != nil {
			t.Fatalf("quarantine line %q: %v", sc.Bytes(), err)
		}
		lines = append(lines, q)
	}
	if len(lines) != 1 {
		t.Fatalf("%d quarantined lines, want 1", len(lines))
	}
	q := lines[0]
	if q.Topic != "dev/1/big" || string(q.Payload) != poison || q.QoS != 1 || q.ClientID != "dev1" || q.ID == "" || q.Strikes != 3 {
		t.Fatalf("quarantined %+v", q)
	}
	if !strings.Contains(q.Reason, "sent alone") {
		t.Fatalf("reason %q", q.Reason)
	}
}

// With quarantine_after = 0 the rule is off: the refused message stays
// first in the queue (the old behaviour, for users who want a stuck queue
// rather than a message set aside).
func TestPoisonQuarantineOff(t *testing.T) {
	m := startMosquitto(t, "max_packet_size 2000")
	st := openStore(t, filepath.Join(t.TempDir(), "queue"), store.Options{Sync: store.SyncNone})
	cfg := testConfig("mqtt://" + m.Addr())
	cfg.QuarantineAfter = 0
	r := newRigQuarantine(t, cfg, st, filepath.Join(t.TempDir(), "quarantine"))
	if err := r.publish("dev/1/big", strings.Repeat("P", 5000), 1); err != nil {
		t.Fatal(err)
	}
	if err := r.publish("dev/1/data", "after", 1); err != nil {
		t.Fatal(err)
	}
	eventually(t, 20*time.Second, "five refused connections", func() bool { return r.u.Status().Connects >= 5 })
	if s := r.u.Status(); s.Quarantined != 0 || st.Stats().Messages != 2 {
		t.Fatalf("quarantined %d, %d queued; want 0 and 2", s.Quarantined, st.Stats().Messages)
	}
}

// The strike rules without a broker: only a connection the peer closed
// counts, the strikes must be against the same oldest message, and the
// last one must have been sent alone.
func TestJudge(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "queue"), store.Options{Sync: store.SyncNone})
	u, err := New(testConfig("mqtt://127.0.0.1:1"), Deps{Queue: st, QuarantineDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Append(t.Context(), &store.Message{Topic: "a", Payload: []byte("1"), QoS: 1}); err != nil {
		t.Fatal(err)
	}
	msgs, _ := st.Read(0, 1)
	seq := msgs[0].Seq
	eof := fmt.Errorf("read: %w", io.EOF)
	reset := fmt.Errorf("write: %w", syscall.ECONNRESET)
	silent := &keepaliveError{msg: "nothing received"}
	steps := []struct {
		err       error
		probeSent bool
		strikes   int
		probe     bool
	}{
		{eof, false, 1, false},
		{silent, false, 0, false}, // silence is no evidence
		{eof, false, 1, false},
		{reset, false, 2, true}, // the next connection sends it alone
		{eof, false, 2, true},   // that connection never got to send it: no verdict
		{errors.New("read: connection timed out"), false, 0, false},
		{eof, false, 1, false},
		{eof, false, 2, true},
		{eof, true, 0, false}, // sent alone and refused again: quarantined
	}
	for i, s := range steps {
		u.prev = []resend{{seq: seq, pid: 1}}
		c := &conn{u: u, probe: u.probeSeq(), probeSent: s.probeSent}
		u.judge(c, s.err)
		if u.suspect.strikes != s.strikes || (u.probeSeq() != 0) != s.probe {
			t.Fatalf("step %d (%v): strikes %d probe %d, want %d %v", i, s.err, u.suspect.strikes, u.probeSeq(), s.strikes, s.probe)
		}
		if i < len(steps)-1 && (u.Status().Quarantined != 0 || st.Stats().Messages != 1) {
			t.Fatalf("step %d: quarantined early", i)
		}
	}
	if u.Status().Quarantined != 1 || st.Stats().Messages != 0 || len(u.prev) != 0 {
		t.Fatalf("after the verdict: quarantined %d, %d queued, prev %v", u.Status().Quarantined, st.Stats().Messages, u.prev)
	}
}

// newRigQuarantine is newRig with a quarantine directory.
func newRigQuarantine(t *testing.T, cfg config.Uplink, q store.Queue, dir string) *rig {
	t.Helper()
	return newRigDeps(t, cfg, q, func(d *Deps) { d.QuarantineDir = dir })
}
