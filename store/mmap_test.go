package store

import (
	"bufio"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// mappedBytes sums this process's mappings of files under dir, from
// /proc/self/maps (which qemu-user emulates for its guest).
func mappedBytes(t *testing.T, dir string) (total int64, files int) {
	t.Helper()
	f, err := os.Open("/proc/self/maps")
	if err != nil {
		t.Skip("no /proc/self/maps")
	}
	defer f.Close()
	dir, _ = filepath.EvalSymlinks(dir)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || !strings.HasPrefix(fields[5], dir+"/") {
			continue
		}
		lo, hi, _ := strings.Cut(fields[0], "-")
		a, _ := strconv.ParseUint(lo, 16, 64)
		b, _ := strconv.ParseUint(hi, 16, 64)
		total += int64(b - a)
		files++

	}
	return total, files
}

// TestAddressSpace: on 32-bit ARM the store lives in a 3GB address space
// with everything else, and badger maps all its files. Push four times
// MaxBytes through a DropOldest store and check that what badger maps
// stays within a budget that scales with MaxBytes, not with the traffic.
func TestAddressSpace(t *testing.T) {
	maxBytes := int64(64 << 20)
	switch {
	case raceEnabled:
		maxBytes = 4 << 20
	case testing.Short():
		maxBytes = 8 << 20
	}
	dir := filepath.Join(t.TempDir(), "q")
	s := openT(t, Options{Dir: dir, MaxBytes: maxBytes, Sync: SyncNone})
	per := benchMsg(0)
	per.ID = s.Epoch() + "-1000000"
	n := int(4 * maxBytes / per.Size())
	fill(t, s, n, 500)
	settle(s)
	st := s.Stats()
	mapped, files := mappedBytes(t, dir)
	o := s.opts
	budget := 3*maxBytes + 2*o.ValueLogFileSize + int64(o.NumMemtables+1)*2*o.MemTableSize
	t.Logf("%d messages through a %d MB store: %d kept (%d MB), %d dropped; badger maps %d files, %d MB (budget %d MB); disk %d MB",
		n, maxBytes>>20, st.Messages, st.Bytes>>20, st.DroppedFull, files, mapped>>20, budget>>20, st.DiskBytes>>20)
	if st.Bytes > maxBytes || st.DroppedFull == 0 {
		t.Fatalf("stats %+v", st)
	}
	if mapped == 0 || mapped > budget {
		t.Fatalf("badger maps %d bytes of its files, budget %d", mapped, budget)
	}
}

// TestTablesFitBuilderBuffer guards the 32-bit workaround in
// badgerOptions: a table builder has one buffer of 2×BaseTableSize, and on
// 32-bit ristretto's allocator corrupts the table once a builder needs a
// second one. Fill memtables with the messages that need the most builder
// memory per table byte — values just under ValueThreshold, three to a
// block — and with small ones; reopen (which verifies every table) and
// read everything back. On amd64 this checks the table sizes; under
// qemu-arm or GOARCH=386 it checks the tables themselves.
func TestTablesFitBuilderBuffer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	s := openT(t, Options{Dir: dir, Sync: SyncNone})
	o := s.opts
	var want []uint64
	for i := range 8000 {
		m := benchMsg(i)
		if i%2 == 0 { // an encoded value of 1000..1023 bytes
			vlen := int(o.ValueThreshold) - 1 - i%24
			m.Payload = make([]byte, vlen-headerLen-len(m.Topic)-len(m.Gateway)-len(m.ClientID))
		}
		if err := s.Append(t.Context(), m); err != nil {
			t.Fatal(err)
		}
		want = append(want, m.Seq)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	var largest int64
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	for _, f := range ssts {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		largest = max(largest, fi.Size())
	}
	t.Logf("%d tables, largest %d KB for %d KB memtables", len(ssts), largest>>10, o.MemTableSize>>10)
	if len(ssts) < 2 || largest > o.MemTableSize*6/5 {
		t.Fatalf("%d tables, largest %d bytes: the builder may outgrow its first buffer", len(ssts), largest)
	}

	s = openT(t, Options{Dir: dir})
	got := readAll(t, s)
	if st := s.Stats(); st.Recovered != 0 || len(got) != len(want) {
		t.Fatalf("reopened: %d of %d messages, stats %+v", len(got), len(want), st)
	}
	for i := range got {
		if got[i].Seq != want[i] {
			t.Fatalf("message %d has seq %d, want %d", i, got[i].Seq, want[i])
		}
	}
}
