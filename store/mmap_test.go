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
// badgerOptions: a table builder starts with one buffer of
// 2×BaseTableSize, and ristretto's allocator corrupts tables on 32-bit
// once it needs a second one. Write memtables full of small messages and
// of the largest values kept in the LSM tree, and check that every table
// stays well inside that buffer.
func TestTablesFitBuilderBuffer(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "q")
	s := openT(t, Options{Dir: dir, Sync: SyncNone})
	fill(t, s, 60_000, 500) // several memtables of small messages
	big := make([]byte, s.opts.ValueThreshold-headerLen-64)
	for i := range 40 {
		m := &Message{Topic: "big", Payload: big}
		if err := s.Append(t.Context(), m, benchMsg(i)); err != nil {
			t.Fatal(err)
		}
	}
	o := s.opts
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ssts, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(ssts) == 0 {
		t.Fatal("no tables")
	}
	limit := 3 * o.MemTableSize / 2 // three quarters of 2×BaseTableSize
	var largest int64
	for _, f := range ssts {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		largest = max(largest, fi.Size())
	}
	t.Logf("%d tables, largest %d KB, limit %d KB", len(ssts), largest>>10, limit>>10)
	if largest > limit {
		t.Fatalf("a table of %d bytes: the builder may outgrow its first buffer (%d)", largest, 2*o.MemTableSize)
	}
}
