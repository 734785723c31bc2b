package store

import (
	"crypto/rand"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// garble overwrites the first file matching pattern in dir with n random
// bytes (up to the end if n is 0) from offset on, keeping its size.
func garble(t *testing.T, dir, pattern string, offset, n int64) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, pattern))
	if len(files) == 0 {
		t.Fatalf("no %s in %s", pattern, dir)
	}
	slices.Sort(files)
	f, err := os.OpenFile(files[0], os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	if n == 0 {
		n = fi.Size() - offset
	}
	if n <= 0 || offset+n > fi.Size() {
		t.Fatalf("%s has %d bytes", files[0], fi.Size())
	}
	junk := make([]byte, n)
	rand.Read(junk)
	if _, err := f.WriteAt(junk, offset); err != nil {
		t.Fatal(err)
	}
	return filepath.Base(files[0])
}

func TestCorruptStoreMovedAside(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, dir string) string
	}{
		{"garbage manifest", func(t *testing.T, dir string) string { return garble(t, dir, "MANIFEST", 0, 0) }},
		{"garbage table", func(t *testing.T, dir string) string { return garble(t, dir, "*.sst", 0, 0) }},
		{"bytes of a table block", func(t *testing.T, dir string) string { return garble(t, dir, "*.sst", 200, 8) }},
		{"garbage value log header", func(t *testing.T, dir string) string { return garble(t, dir, "*.vlog", 0, 0) }},
		{"garbage key registry", func(t *testing.T, dir string) string { return garble(t, dir, "KEYREGISTRY", 0, 0) }},
		{"bad epoch", func(t *testing.T, dir string) string {
			// With the store's options: badger's defaults map 2GB of value
			// log, which a 32-bit process often cannot.
			o := Options{Dir: dir}
			if err := o.setDefaults(); err != nil {
				t.Fatal(err)
			}
			db, err := badger.Open(badgerOptions(&o, slog.New(slog.DiscardHandler)))
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			if err := db.Update(func(txn *badger.Txn) error { return txn.Set(keyEpoch, []byte("not hex!")) }); err != nil {
				t.Fatal(err)
			}
			return "meta"
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			dir := filepath.Join(root, "q")
			s := openT(t, Options{Dir: dir})
			appendN(t, s, 0, 50)
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			what := tc.damage(t, dir)

			log, w := testLogger(t)
			s = openT(t, Options{Dir: dir, Logger: log})
			st := s.Stats()
			if st.Recovered != 1 || st.Messages != 0 {
				t.Fatalf("after damaging %s: stats %+v, want 1 recovered and an empty store", what, st)
			}
			if !strings.Contains(w.String(), "level=ERROR") || !strings.Contains(w.String(), "moved aside") {
				t.Fatalf("no error log about moving it aside: %s", w.String())
			}
			aside, _ := filepath.Glob(filepath.Join(root, "q.corrupt-*"))
			if len(aside) != 1 {
				t.Fatalf("moved aside to %v", aside)
			}
			if _, err := os.Stat(filepath.Join(aside[0], "MANIFEST")); err != nil {
				t.Fatalf("the damaged store was not kept: %v", err)
			}
			// The fresh store works, and starts over.
			in := appendN(t, s, 0, 3)
			if got := readAll(t, s); !slices.Equal(seqs(got), []uint64{1, 2, 3}) || got[0].ID != in[0].ID {
				t.Fatalf("fresh store holds %v", seqs(got))
			}
		})
	}
}

// A store that is merely in use, or unreadable for reasons of the
// environment, is not corrupt: it must be left where it is.
func TestLockedStoreNotMovedAside(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "q")
	s := openT(t, Options{Dir: dir})
	appendN(t, s, 0, 5)
	_, err := Open(Options{Dir: dir, Logger: s.log})
	if err == nil || !strings.Contains(err.Error(), "lock") {
		t.Fatalf("second open: %v, want a lock error", err)
	}
	if aside, _ := filepath.Glob(filepath.Join(root, "q.corrupt-*")); len(aside) != 0 {
		t.Fatalf("a store in use was moved aside to %v", aside)
	}
	if got := readAll(t, s); len(got) != 5 {
		t.Fatalf("store holds %d messages", len(got))
	}
}
