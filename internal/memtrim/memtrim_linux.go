package memtrim

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"syscall"
)

// ReleaseStartup unmaps the resident pages of the executable's read-only
// mappings; see the package comment.
func ReleaseStartup() (Result, error) {
	maps, err := exeMappings()
	if err != nil {
		return Result{}, err
	}
	// The addresses must be this process's: under an emulator (qemu-user)
	// /proc/self/smaps may describe the emulator instead.
	if !containsCode(maps, reflect.ValueOf(ReleaseStartup).Pointer()) {
		return Result{}, fmt.Errorf("memtrim: /proc/self/smaps does not map this code; nothing released")
	}
	var r Result
	for _, m := range maps {
		if !m.releasable() {
			r.Skipped++
			continue
		}
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, m.start, m.end-m.start, syscall.MADV_DONTNEED); e != 0 {
			return r, fmt.Errorf("memtrim: madvise %#x-%#x: %w", m.start, m.end, e)
		}
		r.Mappings++
		r.Bytes += m.rss
	}
	return r, nil
}

func containsCode(maps []mapping, pc uintptr) bool {
	for _, m := range maps {
		if m.exec && m.start <= pc && pc < m.end {
			return true
		}
	}
	return false
}

// exeMappings reads this process's read-only mappings of its executable.
func exeMappings() ([]mapping, error) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return nil, fmt.Errorf("memtrim: %w", err)
	}
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return nil, fmt.Errorf("memtrim: %w", err)
	}
	defer f.Close()
	return parseSmaps(f, exe)
}

type mapping struct {
	start, end        uintptr
	exec              bool
	rss, anon, locked int64 // bytes
}

// releasable: no page of it was ever written (a private copy would be
// replaced by the file's contents) and none is locked.
func (m mapping) releasable() bool { return m.anon == 0 && m.locked == 0 }

// parseSmaps returns the read-only, private mappings of the file exe (as
// /proc/self/exe names it: " (deleted)" once a package upgrade replaced
// the file, which changes nothing here: the mapping keeps the old inode).
func parseSmaps(r io.Reader, exe string) ([]mapping, error) {
	var out []mapping
	cur := -1
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := sc.Text()
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if !strings.HasSuffix(fields[0], ":") { // a mapping's header line
			cur = -1
			if len(fields) < 6 {
				continue // anonymous
			}
			perms, path := fields[1], strings.Join(fields[5:], " ")
			if path != exe || len(perms) != 4 || perms[1] != '-' || perms[3] != 'p' {
				continue
			}
			lo, hi, ok := strings.Cut(fields[0], "-")
			start, err1 := strconv.ParseUint(lo, 16, 64)
			end, err2 := strconv.ParseUint(hi, 16, 64)
			if !ok || err1 != nil || err2 != nil || end <= start {
				return nil, fmt.Errorf("memtrim: bad smaps line %q", line)
			}
			out = append(out, mapping{start: uintptr(start), end: uintptr(end), exec: perms[2] == 'x'})
			cur = len(out) - 1
			continue
		}
		if cur < 0 || len(fields) < 2 {
			continue
		}
		kb, err := strconv.ParseInt(fields[1], 10, 64)
		if err != nil {
			continue
		}
		switch fields[0] {
		case "Rss:":
			out[cur].rss = kb << 10
		case "Anonymous:":
			out[cur].anon = kb << 10
		case "Locked:":
			out[cur].locked = kb << 10
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("memtrim: reading smaps: %w", err)
	}
	return out, nil
}
