package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// logWriter sends a store's log to the test's log.
type logWriter struct {
	mu  sync.Mutex
	t   testing.TB
	buf bytes.Buffer // everything, for assertions
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func (w *logWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func testLogger(t testing.TB) (*slog.Logger, *logWriter) {
	w := &logWriter{t: t}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn})), w
}

// openT opens a store in dir (a fresh temporary one if empty) and closes
// it when the test ends.
func openT(t testing.TB, o Options) *Store {
	t.Helper()
	if o.Dir == "" {
		o.Dir = filepath.Join(t.TempDir(), "q")
	}
	if o.Logger == nil {
		o.Logger, _ = testLogger(t)
	}
	s, err := Open(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func testMsg(i int) *Message {
	return &Message{
		Topic:    fmt.Sprintf("sensors/%d/temp", i),
		Payload:  []byte(fmt.Sprintf(`{"i":%d,"v":21.5}`, i)),
		QoS:      1,
		Gateway:  "mqttsn",
		ClientID: fmt.Sprintf("dev-%d", i%7),
	}
}

func appendN(t testing.TB, s *Store, from, n int) []*Message {
	t.Helper()
	out := make([]*Message, n)
	for i := range out {
		out[i] = testMsg(from + i)
		if err := s.Append(context.Background(), out[i]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func readAll(t testing.TB, s *Store) []*Message {
	t.Helper()
	ms, err := s.Read(0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func seqs(ms []*Message) []uint64 {
	out := make([]uint64, len(ms))
	for i, m := range ms {
		out[i] = m.Seq
	}
	return out
}

func seqRange(from, to uint64) []uint64 {
	var out []uint64
	for i := from; i <= to; i++ {
		out = append(out, i)
	}
	return out
}

func sameMessage(t testing.TB, got, want *Message) {
	t.Helper()
	if got.Seq != want.Seq || got.ID != want.ID || got.Topic != want.Topic || !bytes.Equal(got.Payload, want.Payload) ||
		got.QoS != want.QoS || got.Retain != want.Retain || got.Gateway != want.Gateway ||
		got.ClientID != want.ClientID || !got.Time.Equal(want.Time) {
		t.Fatalf("stored %+v\n  want %+v", got, want)
	}
}

func sizes(ms []*Message) (n int64) {
	for _, m := range ms {
		n += m.Size()
	}
	return n
}

func TestAppendReadDelete(t *testing.T) {
	for _, mode := range []SyncMode{SyncAlways, SyncBatch, SyncNone} {
		t.Run(string(mode), func(t *testing.T) {
			s := openT(t, Options{Sync: mode})
			in := appendN(t, s, 0, 10)
			batch := []*Message{testMsg(10), testMsg(11), testMsg(12)}
			batch[1].Retain, batch[2].QoS = true, 0
			if err := s.Append(context.Background(), batch...); err != nil {
				t.Fatal(err)
			}
			in = append(in, batch...)
			got := readAll(t, s)
			if want := seqRange(1, 13); !slices.Equal(seqs(got), want) {
				t.Fatalf("seqs %v, want %v", seqs(got), want)
			}
			for i := range in {
				if in[i].ID != s.Epoch()+"-"+fmt.Sprint(in[i].Seq) {
					t.Fatalf("id %q", in[i].ID)
				}
				sameMessage(t, got[i], in[i])
			}
			st := s.Stats()
			if st.Messages != 13 || st.Bytes != sizes(in) || st.Appended != 13 || !st.Oldest.Equal(in[0].Time) {
				t.Fatalf("stats %+v, want 13 messages of %d bytes", st, sizes(in))
			}

			if err := s.Delete(1, 5, 13, 99, 5); err != nil {
				t.Fatal(err)
			}
			got = readAll(t, s)
			want := []uint64{2, 3, 4, 6, 7, 8, 9, 10, 11, 12}
			if !slices.Equal(seqs(got), want) {
				t.Fatalf("after delete: %v, want %v", seqs(got), want)
			}
			left := slices.DeleteFunc(slices.Clone(in), func(m *Message) bool { return m.Seq == 1 || m.Seq == 5 || m.Seq == 13 })
			st = s.Stats()
			if st.Messages != 10 || st.Bytes != sizes(left) || st.Deleted != 3 {
				t.Fatalf("stats %+v, want 10 messages of %d bytes, 3 deleted", st, sizes(left))
			}
			settle(s) // let the committer write the deletes
			if st := s.Stats(); !st.Oldest.Equal(in[1].Time) {
				t.Fatalf("oldest %v, want %v", st.Oldest, in[1].Time)
			}
		})
	}
}

func TestReadWindows(t *testing.T) {
	s := openT(t, Options{})
	appendN(t, s, 0, 20)
	if err := s.Delete(4, 5, 6, 15); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		after uint64
		max   int
		want  []uint64
	}{
		{0, 5, []uint64{1, 2, 3, 7, 8}},
		{3, 2, []uint64{7, 8}},
		{5, 3, []uint64{7, 8, 9}},
		{13, 10, []uint64{14, 16, 17, 18, 19, 20}},
		{20, 10, nil},
		{1000, 10, nil},
		{0, 0, nil},
		{^uint64(0), 10, nil},
	} {
		got, err := s.Read(tc.after, tc.max)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(seqs(got), tc.want) {
			t.Errorf("Read(%d, %d) = %v, want %v", tc.after, tc.max, seqs(got), tc.want)
		}
	}
}

func TestSeqAcrossReopen(t *testing.T) {
	for _, tc := range []struct {
		name   string
		delete []uint64
		want   []uint64 // stored after reopening and appending 3
	}{
		{"keep all", nil, []uint64{1, 2, 3, 4, 5, 6, 7, 8}},
		{"delete the tail", []uint64{4, 5}, []uint64{1, 2, 3, 6, 7, 8}},
		{"delete everything", []uint64{1, 2, 3, 4, 5}, []uint64{6, 7, 8}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "q")
			s := openT(t, Options{Dir: dir})
			in := appendN(t, s, 0, 5)
			if err := s.Delete(tc.delete...); err != nil {
				t.Fatal(err)
			}
			epoch := s.Epoch()
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			if err := s.Close(); err != nil { // idempotent
				t.Fatal(err)
			}

			s = openT(t, Options{Dir: dir})
			if s.Epoch() != epoch {
				t.Fatalf("epoch %s after reopening, was %s", s.Epoch(), epoch)
			}
			kept := slices.DeleteFunc(slices.Clone(in), func(m *Message) bool { return slices.Contains(tc.delete, m.Seq) })
			st := s.Stats()
			if st.Messages != int64(len(kept)) || st.Bytes != sizes(kept) {
				t.Fatalf("reopened stats %+v, want %d messages of %d bytes", st, len(kept), sizes(kept))
			}
			if len(kept) > 0 && !st.Oldest.Equal(kept[0].Time) {
				t.Fatalf("oldest %v, want %v", st.Oldest, kept[0].Time)
			}
			more := appendN(t, s, 5, 3)
			got := readAll(t, s)
			if !slices.Equal(seqs(got), tc.want) {
				t.Fatalf("seqs %v, want %v", seqs(got), tc.want)
			}
			all := append(kept, more...)
			for i := range all {
				sameMessage(t, got[i], all[i])
			}
		})
	}
}

func TestConcurrentAppendersGroupCommit(t *testing.T) {
	const writers, each = 50, 200
	s := openT(t, Options{Sync: SyncBatch})
	var wg sync.WaitGroup
	got := make([][]uint64, writers)
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				m := testMsg(w*each + i)
				if err := s.Append(context.Background(), m); err != nil {
					errs <- err
					return
				}
				got[w] = append(got[w], m.Seq)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := make(map[uint64]bool)
	for w := range got {
		if !slices.IsSorted(got[w]) {
			t.Fatalf("writer %d got seqs out of order", w)
		}
		for _, q := range got[w] {
			if seen[q] {
				t.Fatalf("seq %d assigned twice", q)
			}
			seen[q] = true
		}
	}
	stored := readAll(t, s)
	if len(stored) != writers*each || len(seen) != writers*each {
		t.Fatalf("stored %d, assigned %d, want %d", len(stored), len(seen), writers*each)
	}
	for _, m := range stored {
		if !seen[m.Seq] {
			t.Fatalf("stored seq %d was never returned", m.Seq)
		}
	}
	st := s.Stats()
	t.Logf("%d appends, %d syncs: %.1f messages per sync", st.Appended, st.Syncs, float64(st.Appended)/float64(st.Syncs))
	if st.Appended != writers*each || st.Syncs == 0 || st.Syncs > st.Appended/5 {
		t.Fatalf("appended %d with %d syncs: no group commit", st.Appended, st.Syncs)
	}
}

func TestSyncCounts(t *testing.T) {
	for _, tc := range []struct {
		mode SyncMode
		want uint64
	}{
		{SyncAlways, 4}, // one per Append call, however many messages
		{SyncBatch, 4},  // nothing concurrent to group with
		{SyncNone, 0},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			s := openT(t, Options{Sync: tc.mode})
			appendN(t, s, 0, 3)
			if err := s.Append(context.Background(), testMsg(3), testMsg(4)); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(1, 2); err != nil { // deletes are never synced on their own
				t.Fatal(err)
			}
			settle(s)
			if st := s.Stats(); st.Syncs != tc.want || st.Appended != 5 {
				t.Fatalf("syncs %d appended %d, want %d and 5", st.Syncs, st.Appended, tc.want)
			}
		})
	}
}

func TestOnFull(t *testing.T) {
	// Every testMsg(i) with i < 10 has the same Size while seqs have one
	// digit; MaxBytes fits exactly four of them.
	one := testMsg(0)
	one.ID = "0123456789abcdef-1"
	size := one.Size()
	type dropped struct {
		topic  string
		seq    uint64
		reason string
	}
	for _, tc := range []struct {
		policy  OnFull
		batch   bool // append the last three in one call
		want    []uint64
		drops   []dropped
		err     error
		errFrom int // the Append of message errFrom and later fail
	}{
		{policy: DropOldest, want: []uint64{4, 5, 6, 7}, drops: []dropped{
			{"sensors/0/temp", 1, DropReasonFull}, {"sensors/1/temp", 2, DropReasonFull}, {"sensors/2/temp", 3, DropReasonFull}}},
		{policy: DropOldest, batch: true, want: []uint64{4, 5, 6, 7}, drops: []dropped{
			{"sensors/0/temp", 1, DropReasonFull}, {"sensors/1/temp", 2, DropReasonFull}, {"sensors/2/temp", 3, DropReasonFull}}},
		{policy: DropNew, want: []uint64{1, 2, 3, 4}, drops: []dropped{
			{"sensors/4/temp", 0, DropReasonFull}, {"sensors/5/temp", 0, DropReasonFull}, {"sensors/6/temp", 0, DropReasonFull}}},
		{policy: DropNew, batch: true, want: []uint64{1, 2, 3, 4}, drops: []dropped{
			{"sensors/4/temp", 0, DropReasonFull}, {"sensors/5/temp", 0, DropReasonFull}, {"sensors/6/temp", 0, DropReasonFull}}},
		{policy: Block, want: []uint64{1, 2, 3, 4}, err: ErrFull, errFrom: 4},
		{policy: Block, batch: true, want: []uint64{1, 2, 3, 4}, err: ErrFull, errFrom: 4},
	} {
		t.Run(fmt.Sprintf("%s batch=%v", tc.policy, tc.batch), func(t *testing.T) {
			var mu sync.Mutex
			var drops []dropped
			s := openT(t, Options{OnFull: tc.policy, MaxBytes: 4 * size, OnDrop: func(m *Message, reason string) {
				mu.Lock()
				drops = append(drops, dropped{m.Topic, m.Seq, reason})
				mu.Unlock()
			}})
			var in []*Message
			var errs []error
			for i := range 4 {
				in = append(in, testMsg(i))
				errs = append(errs, s.Append(context.Background(), in[i]))
			}
			if tc.batch {
				last := []*Message{testMsg(4), testMsg(5), testMsg(6)}
				err := s.Append(context.Background(), last...)
				in = append(in, last...)
				errs = append(errs, err, err, err)
			} else {
				for i := 4; i < 7; i++ {
					in = append(in, testMsg(i))
					errs = append(errs, s.Append(context.Background(), in[i]))
				}
			}
			for i, err := range errs {
				want := error(nil)
				if tc.err != nil && i >= tc.errFrom {
					want = tc.err
				}
				if !errors.Is(err, want) || (want == nil && err != nil) {
					t.Fatalf("append %d: %v, want %v", i, err, want)
				}
			}
			got := readAll(t, s)
			if !slices.Equal(seqs(got), tc.want) {
				t.Fatalf("survivors %v, want %v", seqs(got), tc.want)
			}
			settle(s)
			mu.Lock()
			defer mu.Unlock()
			if !slices.Equal(drops, tc.drops) {
				t.Fatalf("OnDrop got %v, want %v", drops, tc.drops)
			}
			st := s.Stats()
			if st.DroppedFull != uint64(len(tc.drops)) || st.Messages != 4 || st.Bytes != sizes(got) || st.Bytes > 4*size {
				t.Fatalf("stats %+v: want %d dropped, 4 messages of %d bytes", st, len(tc.drops), sizes(got))
			}
			if tc.policy == DropNew {
				for _, m := range in[4:] {
					if m.Seq != 0 || m.ID != "" {
						t.Fatalf("dropped message got seq %d id %q", m.Seq, m.ID)
					}
				}
			}
			if !st.Oldest.Equal(got[0].Time) {
				t.Fatalf("oldest %v, want %v", st.Oldest, got[0].Time)
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	s := openT(t, Options{MaxBytes: 1 << 20})
	big := &Message{Topic: "t", Payload: make([]byte, 1<<20)}
	if err := s.Append(context.Background(), testMsg(0), big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("append: %v, want ErrTooLarge", err)
	}
	if got := readAll(t, s); len(got) != 0 {
		t.Fatalf("stored %v", seqs(got))
	}
}

// fakeClock is the clock seam.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestMaxAge(t *testing.T) {
	clock := &fakeClock{t: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)}
	var mu sync.Mutex
	var expired []string
	s := openT(t, Options{MaxAge: time.Hour, Now: clock.Now, OnDrop: func(m *Message, reason string) {
		mu.Lock()
		expired = append(expired, fmt.Sprintf("%d %s %s", m.Seq, m.Topic, reason))
		mu.Unlock()
	}})
	appendN(t, s, 0, 3) // 12:00
	clock.Add(30 * time.Minute)
	appendN(t, s, 3, 2) // 12:30
	clock.Add(20 * time.Minute)
	appendN(t, s, 5, 1) // 12:50

	for _, tc := range []struct {
		advance time.Duration
		want    []uint64
		expired uint64
	}{
		{0, []uint64{1, 2, 3, 4, 5, 6}, 0},                   // 12:50
		{10*time.Minute + time.Second, []uint64{4, 5, 6}, 3}, // 13:00:01
		{29 * time.Minute, []uint64{4, 5, 6}, 3},             // 13:29:01
		{time.Minute, []uint64{6}, 5},                        // 13:30:01
		{time.Hour, nil, 6},
	} {
		clock.Add(tc.advance)
		s.do(s.sweep)
		got := readAll(t, s)
		if !slices.Equal(seqs(got), tc.want) {
			t.Fatalf("at %s: stored %v, want %v", clock.Now().Format(time.TimeOnly), seqs(got), tc.want)
		}
		st := s.Stats()
		if st.Expired != tc.expired || st.Messages != int64(len(tc.want)) || st.Bytes != sizes(got) {
			t.Fatalf("at %s: stats %+v, want %d expired", clock.Now().Format(time.TimeOnly), st, tc.expired)
		}
		if len(got) > 0 && !st.Oldest.Equal(got[0].Time) {
			t.Fatalf("oldest %v, want %v", st.Oldest, got[0].Time)
		}
	}
	mu.Lock()
	want := []string{"1 sensors/0/temp expired", "2 sensors/1/temp expired", "3 sensors/2/temp expired",
		"4 sensors/3/temp expired", "5 sensors/4/temp expired", "6 sensors/5/temp expired"}
	if !slices.Equal(expired, want) {
		t.Fatalf("OnDrop: %q, want %q", expired, want)
	}
	mu.Unlock()

	// A device that booted without a clock stamps 1970: NTP setting the
	// clock later must not expire that backlog.
	clock.mu.Lock()
	clock.t = time.Unix(100, 0)
	clock.mu.Unlock()
	appendN(t, s, 6, 2)
	clock.mu.Lock()
	clock.t = time.Date(2025, 6, 2, 0, 0, 0, 0, time.UTC)
	clock.mu.Unlock()
	s.do(s.sweep)
	if got := readAll(t, s); !slices.Equal(seqs(got), []uint64{7, 8}) {
		t.Fatalf("clockless messages: stored %v, want [7 8]", seqs(got))
	}
}

func TestNotify(t *testing.T) {
	s := openT(t, Options{})
	select {
	case <-s.Notify():
		t.Fatal("notified before any append")
	default:
	}
	appendN(t, s, 0, 3)
	select {
	case <-s.Notify():
	default:
		t.Fatal("no notification after appends")
	}
	select {
	case <-s.Notify():
		t.Fatal("notifications are not coalesced")
	default:
	}
}

func TestAppendContext(t *testing.T) {
	s := openT(t, Options{})
	// Hold the committer so that the append waits in the queue.
	hold, held := make(chan struct{}), make(chan struct{})
	go s.do(func() { close(held); <-hold })
	<-held
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan error)
	m := testMsg(0)
	go func() { res <- s.Append(ctx, m) }()
	for {
		s.mu.Lock()
		n := len(s.queue)
		s.mu.Unlock()
		if n == 1 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-res; !errors.Is(err, context.Canceled) {
		t.Fatalf("append: %v, want context.Canceled", err)
	}
	close(hold)
	appendN(t, s, 1, 1)
	if got := readAll(t, s); !slices.Equal(seqs(got), []uint64{1}) || got[0].Topic != "sensors/1/temp" {
		t.Fatalf("stored %v: the cancelled append was written", seqs(got))
	}
}

func TestClosed(t *testing.T) {
	s := openT(t, Options{})
	appendN(t, s, 0, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(context.Background(), testMsg(1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("append: %v", err)
	}
	if _, err := s.Read(0, 1); !errors.Is(err, ErrClosed) {
		t.Fatalf("read: %v", err)
	}
	if err := s.Delete(1); !errors.Is(err, ErrClosed) {
		t.Fatalf("delete: %v", err)
	}
	if st := s.Stats(); st.Messages != 1 || st.DiskBytes == 0 {
		t.Fatalf("stats after close: %+v", st)
	}
}

// TestConcurrentReadDelete drains while appenders append, as the uplink
// does: every message is read exactly once (no resend needed) and the
// store ends empty with consistent accounting.
func TestConcurrentReadDelete(t *testing.T) {
	const writers, each = 8, 500
	s := openT(t, Options{})
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if err := s.Append(context.Background(), testMsg(w*each+i)); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	seen := make(map[uint64]bool)
	var after uint64
	for finished := false; ; {
		select {
		case <-done:
			finished = true
		case <-s.Notify():
		case <-time.After(10 * time.Millisecond):
		}
		for {
			ms, err := s.Read(after, 64)
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) == 0 {
				break
			}
			for _, m := range ms {
				if seen[m.Seq] {
					t.Fatalf("seq %d read twice", m.Seq)
				}
				seen[m.Seq] = true
				after = m.Seq
				if err := s.Delete(m.Seq); err != nil {
					t.Fatal(err)
				}
			}
		}
		if finished && len(seen) == writers*each {
			break
		}
		if finished {
			if ms, _ := s.Read(after, 1); len(ms) == 0 {
				t.Fatalf("read %d of %d", len(seen), writers*each)
			}
		}
	}
	settle(s)
	if st := s.Stats(); st.Messages != 0 || st.Bytes != 0 || st.Deleted != writers*each || !st.Oldest.IsZero() {
		t.Fatalf("stats after draining: %+v", st)
	}
	if got := readAll(t, s); len(got) != 0 {
		t.Fatalf("left %v", seqs(got))
	}
}

func TestValueLogGC(t *testing.T) {
	// Messages above ValueThreshold live in the value log; once they are
	// deleted (and compaction has noticed), GC reclaims their files.
	dir := filepath.Join(t.TempDir(), "q")
	o := Options{Dir: dir, ValueLogFileSize: 1 << 20, MemTableSize: 1 << 20}
	s := openT(t, o)
	payload := bytes.Repeat([]byte("x"), 8<<10)
	var all []uint64
	for i := range 400 {
		m := &Message{Topic: fmt.Sprintf("big/%d", i), Payload: payload}
		if err := s.Append(context.Background(), m); err != nil {
			t.Fatal(err)
		}
		all = append(all, m.Seq)
	}
	// Each Close flushes the memtable into a level-0 table: three of them
	// make compaction drop the deleted entries and count the garbage.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, o)
	if err := s.Delete(all[:380]...); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, o)
	appendN(t, s, 0, 1)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	vlogs := func() int {
		m, _ := filepath.Glob(filepath.Join(dir, "*.vlog"))
		return len(m)
	}
	before := vlogs()

	s = openT(t, o)
	var files int
	var err error
	s.do(func() {
		// Compaction is what tells the value log its entries are garbage.
		if err = s.db.Flatten(1); err != nil {
			return
		}
		files, err = s.gc()
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("value-log GC collected %d files; %d value-log files before, %d after", files, before, vlogs())
	if files == 0 || vlogs() >= before {
		t.Fatalf("GC collected %d files, %d value-log files left of %d", files, vlogs(), before)
	}
	got := readAll(t, s)
	if !slices.Equal(seqs(got)[:20], all[380:]) || len(got) != 21 {
		t.Fatalf("after GC: %v", seqs(got))
	}
	for _, m := range got[:20] {
		if !bytes.Equal(m.Payload, payload) {
			t.Fatalf("seq %d payload damaged by GC", m.Seq)
		}
	}
	if st := s.Stats(); st.Messages != 21 || st.Bytes != sizes(got) {
		t.Fatalf("stats %+v", st)
	}
}

func TestOptions(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		o   Options
		err string
	}{
		{Options{}, "store: no directory"},
		{Options{Dir: dir, OnFull: "drop_newest"}, `store: on_full: unknown policy "drop_newest"`},
		{Options{Dir: dir, Sync: "sometimes"}, `store: sync: unknown mode "sometimes"`},
		{Options{Dir: dir, ValueThreshold: 1 << 20}, "store: value threshold 1048576 above 1024"},
		{Options{Dir: dir, MemTableSize: 1 << 19}, "store: memtable size 524288 below 1MB"},
		{Options{Dir: dir, ValueLogFileSize: 1 << 30}, "store: value log file size 1073741824 outside [1MB, 1GB)"},
	} {
		_, err := Open(tc.o)
		if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
			t.Errorf("Open(%+v): %v, want %q", tc.o, err, tc.err)
		}
	}
}

func TestDiskBytes(t *testing.T) {
	s := openT(t, Options{})
	appendN(t, s, 0, 100)
	if st := s.Stats(); st.DiskBytes <= 0 {
		t.Fatalf("disk bytes %d", st.DiskBytes)
	}
	if _, err := os.Stat(s.opts.Dir); err != nil {
		t.Fatal(err)
	}
}

// settle has the committer write everything queued, deletes included.
func settle(s *Store) {
	s.do(func() {
		for s.round() {
		}
	})
}

// An Append larger than badger's transaction limit is written in parts,
// each synced before the next, and returns once all are durable.
func TestAppendLargerThanATransaction(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	s := openT(t, Options{Dir: dir})
	var in []*Message
	payload := bytes.Repeat([]byte("v"), 500)
	for i := range 2000 { // about 1MB: three times badger's limit for 2MB memtables
		in = append(in, &Message{Topic: fmt.Sprintf("chunk/%d", i), Payload: payload})
	}
	if err := s.Append(context.Background(), in...); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if st.Syncs < 2 || st.Appended != 2000 {
		t.Fatalf("stats %+v: want 2000 appended in several synced parts", st)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, Options{Dir: dir})
	got := readAll(t, s)
	if len(got) != len(in) {
		t.Fatalf("stored %d of %d", len(got), len(in))
	}
	for i := range in {
		sameMessage(t, got[i], in[i])
	}
}

// A drained store gives its disk space back at the next GC tick, without
// compaction rewriting what was deleted; seqs carry on.
func TestReclaimDrainedStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	s := openT(t, Options{Dir: dir, Sync: SyncNone})
	fill(t, s, 50_000, 500)
	all := readAll(t, s)
	if err := s.Delete(seqs(all)...); err != nil {
		t.Fatal(err)
	}
	settle(s)
	before := diskUsage(dir)
	s.do(s.reclaim)
	after := diskUsage(dir)
	t.Logf("drained store: %d KB on disk, %d KB after reclaim", before>>10, after>>10)
	if after > before/2 {
		t.Fatalf("%d bytes on disk after reclaim, %d before", after, before)
	}
	more := appendN(t, s, 0, 2)
	if more[0].Seq != 50_001 {
		t.Fatalf("seq %d after reclaim, want 50001", more[0].Seq)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, Options{Dir: dir})
	if got := readAll(t, s); !slices.Equal(seqs(got), []uint64{50_001, 50_002}) {
		t.Fatalf("after reopening: %v", seqs(got))
	}
	// A store that is not empty is left alone.
	before = diskUsage(dir)
	s.do(s.reclaim)
	if got := readAll(t, s); len(got) != 2 {
		t.Fatalf("reclaim of a non-empty store: %v", seqs(got))
	}
}

// The sentinel reclaim writes is ignored if a crash leaves it behind.
func TestReclaimSentinelIgnored(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	s := openT(t, Options{Dir: dir})
	appendN(t, s, 0, 3)
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(msgKey(0), nil) }); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	log, w := testLogger(t)
	s = openT(t, Options{Dir: dir, Logger: log})
	if got := readAll(t, s); !slices.Equal(seqs(got), []uint64{1, 2, 3}) || s.Stats().Messages != 3 {
		t.Fatalf("stored %v, stats %+v", seqs(got), s.Stats())
	}
	if strings.Contains(w.String(), "level=ERROR") {
		t.Fatalf("the sentinel was reported: %s", w.String())
	}
}

// TestAppendNoWait: QoS 0 appends queue without waiting for the sync, keep
// their order with waited appends, and a Block refusal is counted.
func TestAppendNoWait(t *testing.T) {
	s, err := Open(Options{Dir: t.TempDir(), MaxBytes: 1 << 20, OnFull: Block})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i := 0; i < 10; i++ {
		if err := s.AppendNoWait(&Message{Topic: "t", Payload: []byte{byte(i)}}); err != nil {
			t.Fatal(err)
		}
	}
	// A waited append after them commits them too (FIFO).
	if err := s.Append(context.Background(), &Message{Topic: "t", Payload: []byte{10}}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Read(0, 100)
	if err != nil || len(got) != 11 {
		t.Fatalf("read %d, %v", len(got), err)
	}
	for i, m := range got {
		if m.Payload[0] != byte(i) {
			t.Fatalf("message %d has payload %d", i, m.Payload[0])
		}
	}
	big := make([]byte, 600<<10)
	if err := s.Append(context.Background(), &Message{Topic: "t", Payload: big}); err != nil {
		t.Fatal(err)
	}
	if err := s.AppendNoWait(&Message{Topic: "t", Payload: big}); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(context.Background(), &Message{Topic: "t", Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.DroppedFull != 1 || st.Messages != 13 {
		t.Fatalf("stats %+v", st)
	}
}

// AppendNoWait never queues more than MaxNoWaitBytes for the disk: with
// the committer held up, what does not fit is dropped, counted and passed
// to OnDrop, and what fit is written once the committer runs again.
func TestAppendNoWaitOverload(t *testing.T) {
	var dropped atomic.Int64
	s, err := Open(Options{Dir: t.TempDir(), OnDrop: func(m *Message, reason string) {
		if reason == DropReasonOverload && m.Topic == "t" {
			dropped.Add(1)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	release, held := make(chan struct{}), make(chan struct{})
	go s.do(func() { close(held); <-release })
	<-held
	payload := make([]byte, 1<<20)
	const sent = 10
	for range sent {
		if err := s.AppendNoWait(&Message{Topic: "t", Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	fit := int(MaxNoWaitBytes / (1 << 20)) // a little less than this, with the overhead
	if st := s.Stats(); st.DroppedOverload == 0 || st.DroppedOverload >= sent || int(dropped.Load()) != int(st.DroppedOverload) {
		t.Fatalf("dropped %d (OnDrop saw %d), want some of %d", st.DroppedOverload, dropped.Load(), sent)
	}
	close(release)
	if err := s.Append(context.Background(), &Message{Topic: "u", Payload: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	st := s.Stats()
	if kept := sent - int(st.DroppedOverload); st.Messages != int64(kept+1) || kept > fit || kept < fit-1 {
		t.Fatalf("%d messages stored, %d dropped; want about %d of the big ones kept", st.Messages, st.DroppedOverload, fit)
	}
	// Room again: the queue was taken.
	if err := s.AppendNoWait(&Message{Topic: "t", Payload: payload}); err != nil {
		t.Fatal(err)
	}
	if err := s.Append(context.Background(), &Message{Topic: "u", Payload: []byte("y")}); err != nil {
		t.Fatal(err)
	}
	if s.Stats().DroppedOverload != st.DroppedOverload {
		t.Fatal("dropped with an empty queue")
	}
}
