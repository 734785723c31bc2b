package jt808

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"
)

// maxRegistrations bounds the registrations kept, so that a flood of
// registrations with made-up phones cannot grow them without end.
const maxRegistrations = 1 << 17

// registry maps phones to their registrations. With a path it is also a
// JSON file, rewritten atomically (temp file, fsync, rename) before the
// 0x8100 that hands out a new or changed code goes out, so a terminal
// never holds a code the gateway forgets on restart. Concurrent
// registrations share one write.
type registry struct {
	path string // "": memory only

	mu  sync.Mutex
	m   map[string]*registration
	gen uint64 // bumped by every change worth writing

	flushMu sync.Mutex
	saved   uint64 // gen on disk; guarded by flushMu
}

func (r *registry) get(phone string) (*registration, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	reg, ok := r.m[phone]
	return reg, ok
}

// put records reg for phone and, with a file, writes it before it
// returns. A terminal registering again with nothing changed costs no
// write.
func (r *registry) put(phone string, reg *registration) error {
	r.mu.Lock()
	if r.m == nil {
		r.m = map[string]*registration{}
	}
	old, ok := r.m[phone]
	if ok && old.code == reg.code && old.manufacturer == reg.manufacturer && old.terminalID == reg.terminalID {
		old.at = reg.at
		r.mu.Unlock()
		return nil
	}
	if !ok && len(r.m) >= maxRegistrations {
		r.evictOldestLocked()
	}
	r.m[phone] = reg
	r.gen++
	r.mu.Unlock()
	return r.flush()
}

func (r *registry) evictOldestLocked() {
	var oldest string
	var t time.Time
	for p, e := range r.m {
		if oldest == "" || e.at.Before(t) {
			oldest, t = p, e.at
		}
	}
	delete(r.m, oldest)
}

// registryFile is the file's layout; phones are the keys.
type registryFile struct {
	Version       int                      `json:"version"`
	Registrations map[string]registryEntry `json:"registrations"`
}

type registryEntry struct {
	Code         string    `json:"code"`
	Manufacturer string    `json:"manufacturer,omitempty"`
	TerminalID   string    `json:"terminal_id,omitempty"`
	At           time.Time `json:"at"`
}

func (r *registry) flush() error {
	if r.path == "" {
		return nil
	}
	r.flushMu.Lock()
	defer r.flushMu.Unlock()
	r.mu.Lock()
	gen := r.gen
	if gen == r.saved {
		// Another registration's write already carried this change.
		r.mu.Unlock()
		return nil
	}
	f := registryFile{Version: 1, Registrations: make(map[string]registryEntry, len(r.m))}
	for p, e := range r.m {
		f.Registrations[p] = registryEntry{Code: e.code, Manufacturer: e.manufacturer, TerminalID: e.terminalID, At: e.at.UTC()}
	}
	r.mu.Unlock()
	b, err := json.Marshal(&f)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(r.path, b); err != nil {
		return fmt.Errorf("jt808/registry: %w", err)
	}
	r.saved = gen
	return nil
}

// load reads the file, if there is one. A file that is not a registry
// (truncated by hand, another program's) is moved aside to
// <path>.corrupt and the gateway starts empty: its terminals register
// again, as they do after an auth failure. Only an unreadable file is an
// error.
func (r *registry) load(log *slog.Logger) error {
	if r.path == "" {
		return nil
	}
	b, err := os.ReadFile(r.path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("jt808/registry: %w", err)
	}
	var f registryFile
	if err := json.Unmarshal(b, &f); err != nil || f.Version != 1 {
		if err == nil {
			err = fmt.Errorf("version %d", f.Version)
		}
		log.Warn("registrations file unusable, moved aside; terminals will register again",
			"file", r.path, "error", err)
		if err := os.Rename(r.path, r.path+".corrupt"); err != nil {
			return fmt.Errorf("jt808/registry: %w", err)
		}
		return nil
	}
	phones := make([]string, 0, len(f.Registrations))
	for p, e := range f.Registrations {
		if isPhone(p) && e.Code != "" {
			phones = append(phones, p)
		}
	}
	// Beyond the bound, the newest are kept.
	sort.Slice(phones, func(i, j int) bool {
		return f.Registrations[phones[i]].At.After(f.Registrations[phones[j]].At)
	})
	if len(phones) > maxRegistrations {
		phones = phones[:maxRegistrations]
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.m = make(map[string]*registration, len(phones))
	for _, p := range phones {
		e := f.Registrations[p]
		r.m[p] = &registration{code: e.Code, manufacturer: e.Manufacturer, terminalID: e.TerminalID, at: e.At}
	}
	return nil
}

// isPhone reports whether p is a phone as headers carry it: 12 or 20
// decimal digits.
func isPhone(p string) bool {
	if len(p) != 12 && len(p) != 20 {
		return false
	}
	for i := 0; i < len(p); i++ {
		if p[i] < '0' || p[i] > '9' {
			return false
		}
	}
	return true
}

// writeFileAtomic replaces path with b so that a crash leaves either the
// old file or the new one, never a part: a temp file in the same
// directory, fsynced, renamed over path, then the directory fsynced.
func writeFileAtomic(path string, b []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	_, err = tmp.Write(b)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		os.Remove(name)
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}
