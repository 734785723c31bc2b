//go:build linux

package memtrim

import (
	"crypto/sha256"
	"os"
	"strings"
	"testing"
)

const sampleSmaps = `00400000-00c02000 r-xp 00000000 08:01 1234                               /usr/bin/edgeway
Size:               8200 kB
Rss:                7300 kB
Anonymous:             0 kB
Locked:                0 kB
VmFlags: rd ex mr mw me
00c02000-01488000 r--p 00802000 08:01 1234                               /usr/bin/edgeway
Size:               8728 kB
Rss:                6804 kB
Anonymous:             0 kB
Locked:                0 kB
01488000-01514000 rw-p 01088000 08:01 1234                               /usr/bin/edgeway
Rss:                 368 kB
Anonymous:           120 kB
01514000-0355e000 rw-p 00000000 00:00 0 
Rss:                 112 kB
7f0000000000-7f0000010000 r--p 00000000 08:01 99                         /usr/lib/other
Rss:                  64 kB
Anonymous:             0 kB
7f0000100000-7f0000200000 r--p 00000000 08:01 1234                       /usr/bin/edgeway
Rss:                  40 kB
Anonymous:             8 kB
Locked:                0 kB
7f0000300000-7f0000400000 r--p 00000000 08:01 1234                       /usr/bin/edgeway
Rss:                  40 kB
Anonymous:             0 kB
Locked:                4 kB
`

func TestParseSmaps(t *testing.T) {
	got, err := parseSmaps(strings.NewReader(sampleSmaps), "/usr/bin/edgeway")
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{
		{start: 0x400000, end: 0xc02000, exec: true, rss: 7300 << 10},
		{start: 0xc02000, end: 0x1488000, rss: 6804 << 10},
		{start: 0x7f0000100000, end: 0x7f0000200000, rss: 40 << 10, anon: 8 << 10},
		{start: 0x7f0000300000, end: 0x7f0000400000, rss: 40 << 10, locked: 4 << 10},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d mappings %+v, want %d", len(got), got, len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	rel := []bool{true, true, false, false} // written (copy-on-write) and locked pages stay
	for i, m := range got {
		if m.releasable() != rel[i] {
			t.Errorf("mapping %d releasable = %v, want %v", i, m.releasable(), rel[i])
		}
	}
	if !containsCode(got, 0x400100) || containsCode(got, 0xc02100) || containsCode(got, 0x300000) {
		t.Error("containsCode: only the executable mapping holds code")
	}

	deleted := strings.ReplaceAll(sampleSmaps, "/usr/bin/edgeway", "/usr/bin/edgeway (deleted)")
	got, err = parseSmaps(strings.NewReader(deleted), "/usr/bin/edgeway (deleted)")
	if err != nil || len(got) != len(want) {
		t.Fatalf("a replaced binary: %d mappings, %v; want %d", len(got), err, len(want))
	}
	if _, err := parseSmaps(strings.NewReader("zzzz-0040 r-xp 0 0:0 1 /usr/bin/edgeway\n"), "/usr/bin/edgeway"); err == nil {
		t.Error("a bad address range parsed without error")
	}
}

// TestReleaseStartupKeepsContents releases this test binary's pages and
// checks that they went (Rss of the mappings fell) and that every byte
// reads back the same afterwards.
func TestReleaseStartupKeepsContents(t *testing.T) {
	before, err := exeMappings()
	if err != nil {
		t.Fatal(err)
	}
	mem, err := os.Open("/proc/self/mem")
	if err != nil {
		t.Fatal(err)
	}
	defer mem.Close()
	hash := func(m mapping) [32]byte {
		buf := make([]byte, m.end-m.start)
		if _, err := mem.ReadAt(buf, int64(m.start)); err != nil {
			t.Fatalf("reading %#x-%#x: %v", m.start, m.end, err)
		}
		return sha256.Sum256(buf)
	}
	var sums [][32]byte
	releasable := 0
	for _, m := range before {
		sums = append(sums, hash(m)) // also makes every page resident
		if m.releasable() {
			releasable++
		}
	}
	if releasable == 0 {
		t.Fatalf("no releasable mapping of the test binary in %+v", before)
	}
	resident := func() (n int64) {
		maps, err := exeMappings()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range maps {
			if m.releasable() {
				n += m.rss
			}
		}
		return n
	}
	full := resident()

	r, err := ReleaseStartup()
	if err != nil {
		t.Fatal(err)
	}
	after := resident()
	if r.Mappings != releasable || r.Skipped != len(before)-releasable {
		t.Errorf("released %d, skipped %d of %d mappings; want %d released", r.Mappings, r.Skipped, len(before), releasable)
	}
	if r.Bytes < full/2 {
		t.Errorf("released %d bytes; %d were resident just before", r.Bytes, full)
	}
	if after > full*3/4 {
		t.Errorf("resident after release %d bytes, before %d: the pages did not go", after, full)
	}
	t.Logf("released %d mappings, %d KiB; resident %d → %d KiB", r.Mappings, r.Bytes>>10, full>>10, after>>10)
	for i, m := range before {
		if hash(m) != sums[i] {
			t.Errorf("mapping %#x-%#x reads back different after the release", m.start, m.end)
		}
	}
}
