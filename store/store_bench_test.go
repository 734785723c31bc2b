package store

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

var payload100 = []byte(strings.Repeat("p", 100))

func benchMsg(i int) *Message {
	return &Message{
		Topic:    "sensors/" + strconv.Itoa(i%1000) + "/temp",
		Payload:  payload100,
		QoS:      1,
		Gateway:  "mqttsn",
		ClientID: "dev-" + strconv.Itoa(i%1000),
	}
}

func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func openB(tb testing.TB, o Options) *Store {
	tb.Helper()
	if o.Dir == "" {
		o.Dir = filepath.Join(tb.TempDir(), "q")
	}
	if o.Logger == nil {
		o.Logger = quietLogger()
	}
	if o.MaxBytes == 0 {
		o.MaxBytes = 4 << 30 // never full
	}

	s, err := Open(o)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// writtenBytes is what this process has caused to be written to storage
// (/proc/self/io write_bytes): for badger's mapped log, a page counts
// each time it is dirtied again after a sync — the SD-card wear.
func writtenBytes() int64 {
	b, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "write_bytes: "); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			return n
		}
	}
	return 0
}

// benchAppend: durable QoS 1 ingest, one message per Append, from
// concurrent publishers.
func benchAppend(b *testing.B, mode SyncMode, writers int) {
	s := openB(b, Options{Sync: mode})
	var next atomic.Int64
	var wg sync.WaitGroup
	w0 := writtenBytes()
	b.ResetTimer()
	for range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1))
				if i > b.N {
					return
				}
				if err := s.Append(context.Background(), benchMsg(i)); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	st := s.Stats()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(writtenBytes()-w0)/float64(b.N), "written-B/msg")
	if st.Syncs > 0 {
		b.ReportMetric(float64(st.Appended)/float64(st.Syncs), "msgs/sync")
	}
}

func BenchmarkAppendBatchSync(b *testing.B) { benchAppend(b, SyncBatch, 64) }
func BenchmarkAppendAlways(b *testing.B)    { benchAppend(b, SyncAlways, 64) }
func BenchmarkAppendNone(b *testing.B)      { benchAppend(b, SyncNone, 64) }

// One publisher at a time: nothing to group, every Append is a sync.
func BenchmarkAppendBatchSync1(b *testing.B) { benchAppend(b, SyncBatch, 1) }
func BenchmarkAppendNone1(b *testing.B)      { benchAppend(b, SyncNone, 1) }

// BenchmarkBadgerRawBatch is the upper bound: the same encoded values
// written straight into badger (same options) by one writer, with a
// WriteBatch and one Sync per 64 messages.
func BenchmarkBadgerRawBatch(b *testing.B) {
	o := Options{Dir: filepath.Join(b.TempDir(), "raw"), Logger: quietLogger()}
	if err := o.setDefaults(); err != nil {
		b.Fatal(err)
	}
	db, err := badger.Open(badgerOptions(&o, o.Logger))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	w0 := writtenBytes()
	b.ResetTimer()
	wb := db.NewWriteBatch()
	flush := func() {
		if err := wb.Flush(); err != nil {
			b.Fatal(err)
		}
		if err := db.Sync(); err != nil {
			b.Fatal(err)
		}
		wb = db.NewWriteBatch()
	}
	for i := 1; i <= b.N; i++ {
		m := benchMsg(i)
		m.Time = time.Now()
		v, err := appendValue(nil, m)
		if err != nil {
			b.Fatal(err)
		}
		if err := wb.Set(msgKey(uint64(i)), v); err != nil {
			b.Fatal(err)
		}
		if i%64 == 0 {
			flush()
		}
	}
	flush()
	b.StopTimer()
	wb.Cancel()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	b.ReportMetric(float64(writtenBytes()-w0)/float64(b.N), "written-B/msg")
}

// BenchmarkDiskPerMessage: bytes on disk per stored message after
// 100 000 messages with 100-byte payloads, live and after Close (which
// flushes the memtable into a table).
func BenchmarkDiskPerMessage(b *testing.B) {
	if testing.Short() {
		b.Skip("heavy")
	}
	const n = 100_000
	for range b.N {
		dir := filepath.Join(b.TempDir(), "q")
		s := openB(b, Options{Dir: dir})
		fill(b, s, n, 100)
		st := s.Stats()
		live := diskUsage(dir)
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
		closed := diskUsage(dir)
		b.ReportMetric(float64(st.Bytes)/n, "size/msg")
		b.ReportMetric(float64(live)/n, "disk-open/msg")
		b.ReportMetric(float64(closed)/n, "disk-closed/msg")
	}
}

// fill appends n benchMsgs in calls of batch messages, from 4 writers.
func fill(tb testing.TB, s *Store, n, batch int) {
	tb.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms := make([]*Message, 0, batch)
			for {
				start := int(next.Add(int64(batch))) - batch
				if start >= n {
					return
				}
				ms = ms[:0]
				for i := start; i < min(start+batch, n); i++ {
					ms = append(ms, benchMsg(i))
				}
				if err := s.Append(context.Background(), ms...); err != nil {
					tb.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}

// BenchmarkReadAfterHeadDeletes: Read(0, 100) — the uplink's resend after
// a reconnect — with 500 000 deleted messages' tombstones at the head.
// The store seeks to the lowest live seq; "seek-from-1-ns" is what a plain
// iterator seeking to the start pays to walk the tombstones.
func BenchmarkReadAfterHeadDeletes(b *testing.B) {
	if testing.Short() {
		b.Skip("heavy")
	}
	const deleted, kept = 500_000, 10_000
	s := openB(b, Options{Sync: SyncNone})
	fill(b, s, deleted+kept, 1000)
	for from := uint64(1); from <= deleted; from += 1000 {
		if err := s.Delete(seqRange(from, min(from+999, deleted))...); err != nil {
			b.Fatal(err)
		}
	}
	settle(s)
	start := time.Now()
	var walked time.Duration
	if err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixMsg}})
		defer it.Close()
		it.Seek(msgKey(1))
		if seq, _ := seqOf(it.Item().Key()); seq != deleted+1 {
			return fmt.Errorf("first live seq %d", seq)
		}
		walked = time.Since(start)
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		ms, err := s.Read(0, 100)
		if err != nil || len(ms) != 100 || ms[0].Seq != deleted+1 {
			b.Fatalf("read %d messages, err %v", len(ms), err)
		}
	}
	b.ReportMetric(float64(walked.Nanoseconds()), "seek-from-1-ns")
}

// BenchmarkOpenRebuild: Open of a store holding 1 000 000 messages, which
// verifies the tables and rebuilds count, bytes and head with one pass.
func BenchmarkOpenRebuild(b *testing.B) {
	if testing.Short() {
		b.Skip("heavy")
	}
	const n = 1_000_000
	dir := filepath.Join(b.TempDir(), "q")
	s := openB(b, Options{Dir: dir, Sync: SyncNone})
	fill(b, s, n, 1000)
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		s, err := Open(Options{Dir: dir, Logger: quietLogger()})
		if err != nil {
			b.Fatal(err)
		}
		if st := s.Stats(); st.Messages != n {
			b.Fatalf("rebuilt %d messages", st.Messages)
		}
		b.StopTimer()
		s.Close()
		b.StartTimer()
	}
}

// memStatus reads /proc/self/status: VmRSS, VmHWM (peak RSS) and the
// anonymous and file-backed parts of RSS (badger maps its files: those
// pages are page cache the kernel can reclaim), in bytes.
func memStatus() (rss, peak, anon, file int64) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			peak = n << 10
		case "RssAnon":
			anon = n << 10
		case "RssFile":
			file = n << 10
		}
	}
	return
}

// TestMemoryMillion: 1 000 000 messages pass through the store, appended
// as a backlog and then drained by Read+Delete as the uplink does. It
// logs RSS and heap; the heap must come back down.
func TestMemoryMillion(t *testing.T) {
	if testing.Short() || raceEnabled {
		t.Skip("heavy; measures memory, which the race detector inflates")
	}
	const n = 1_000_000
	runtime.GC()
	debug.FreeOSMemory()
	r0, _, _, _ := memStatus()
	s := openB(t, Options{MaxBytes: DefaultMaxBytes})
	var ms runtime.MemStats
	report := func(when string) uint64 {
		runtime.GC()
		runtime.ReadMemStats(&ms)
		cur, peak, anon, file := memStatus()
		st := s.Stats()
		t.Logf("%s: rss %d MB (anon %d, file %d; peak %d; %d before open), heap in use %d MB, go sys %d MB; store %d msgs %d MB, disk %d MB",
			when, cur>>20, anon>>20, file>>20, peak>>20, r0>>20, ms.HeapInuse>>20, ms.Sys>>20, st.Messages, st.Bytes>>20, st.DiskBytes>>20)
		return ms.HeapInuse
	}
	start := time.Now()
	fill(t, s, n, 100)
	t.Logf("appended %d in %v", n, time.Since(start))
	report("after 1M appended")

	start = time.Now()
	var after uint64
	for {
		batch, err := s.Read(after, 1000)
		if err != nil {
			t.Fatal(err)
		}
		if len(batch) == 0 {
			break
		}
		seqs := make([]uint64, len(batch))
		for i, m := range batch {
			seqs[i] = m.Seq
		}
		after = seqs[len(seqs)-1]
		if err := s.Delete(seqs...); err != nil {
			t.Fatal(err)
		}
	}
	settle(s)
	t.Logf("drained in %v", time.Since(start))
	heap := report("after drain")
	if st := s.Stats(); st.Messages != 0 || st.Bytes != 0 || st.Deleted != n {
		t.Fatalf("after drain: %+v", st)
	}
	// Nothing of the store's own grows with the messages that passed.
	s.do(s.forget)
	s.mu.Lock()
	left := len(s.pending) + len(s.issued) + len(s.delQueue) + len(s.written) + len(s.queue)
	s.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d entries left in the store's in-memory sets after draining", left)
	}
	// Most of the heap is badger's: memtables and the table builders of
	// running compactions (pooled, 2×MemTableSize each). A leak of even
	// 64 bytes per message would be 64MB.
	if heap > 128<<20 {
		t.Fatalf("heap in use %d MB after draining", heap>>20)
	}
}
