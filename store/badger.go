package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/dgraph-io/badger/v4/table"
	"github.com/dgraph-io/ristretto/v2/z"
	"golang.org/x/sys/unix"
)

// badgerOptions are badger's options for a small device. Badger's defaults
// assume a server: 64MB memtables × 5, 1GB value-log files (mapped at
// twice their size, which fails on 32-bit ARM), a 256MB block cache and
// Snappy. README.md has the reasoning and the measurements.
func badgerOptions(o *Options, log *slog.Logger) badger.Options {
	bo := badger.DefaultOptions(o.Dir)
	bo.TableSizeMultiplier = 1 // see WithBaseTableSize below
	return bo.
		WithLogger(badgerLogger{log}).
		WithSyncWrites(false). // the committer calls db.Sync once per group
		WithDetectConflicts(false).
		WithNumVersionsToKeep(1).
		WithMetricsEnabled(false).
		WithCompression(options.None).
		WithMemTableSize(o.MemTableSize).
		WithNumMemtables(o.NumMemtables).
		// A table builder allocates 2×BaseTableSize up front, from
		// ristretto's z.Allocator. On 32-bit that allocator corrupts what
		// it hands out once it needs a second buffer ((bufIdx+1)<<32
		// overflows an int: ristretto v2.2.0 z/allocator.go:290), and the
		// tables it builds fail their checksums or crash the reader. A
		// builder needs up to ~1.45× the table's size for values under
		// 1KB (a 4KB block allocated for three 1KB entries) but up to 3×
		// for larger ones. So: tables of one memtable (a level-0 table is
		// at most ~1.15 memtables) at every level, and only values under
		// 1KB in tables (ValueThreshold): at most ~1.7×BaseTableSize.
		WithBaseTableSize(o.MemTableSize).
		WithBaseLevelSize(4 * o.MemTableSize).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(6).
		WithNumCompactors(2).
		WithValueThreshold(o.ValueThreshold).
		WithValueLogFileSize(o.ValueLogFileSize).
		WithValueLogMaxEntries(uint32(o.ValueLogFileSize / 256)).
		// No caches. Tables are uncompressed and mapped: a block is read
		// in place, and an unencrypted table's index points into the
		// mapping (badger uses the index cache only for encrypted ones).
		// A FIFO reads each block about once: a 2MB block cache measured
		// a 3% hit ratio, and badger logged a warning about it every
		// minute.
		WithBlockCacheSize(0).
		WithIndexCacheSize(0).
		WithChecksumVerificationMode(options.OnBlockRead). // whole tables: verifyTables, at open
		WithNumGoroutines(1)
}

// openDB opens badger, turning a panic inside badger.Open into an error.
func openDB(o *Options, log *slog.Logger) (db *badger.DB, err error) {
	if err := verifyTables(o.Dir); err != nil {
		return nil, err
	}
	defer func() {
		if r := recover(); r != nil {
			db, err = nil, fmt.Errorf("badger panicked while opening: %v", r)
		}
	}()
	return badger.Open(badgerOptions(o, log))
}

// verifyTables opens every table in dir as badger will, checksums
// included, on this goroutine. Badger opens them on goroutines of its own,
// where a garbled table panics and takes the process down: a crash loop.
func verifyTables(dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.sst"))
	if err != nil {
		return err
	}
	for _, f := range files {
		if err := verifyTable(f); err != nil {
			return fmt.Errorf("table %s: %w", filepath.Base(f), err)
		}
	}
	return nil
}

func verifyTable(path string) (err error) {
	mf, err := z.OpenMmapFile(path, os.O_RDONLY, 0)
	if err != nil {
		return err
	}
	defer mf.Close(-1) // not Table.DecrRef, which deletes the file
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("unreadable: %v", r)
		}
	}()
	_, err = table.OpenTable(mf, table.Options{
		ReadOnly:    true,
		ChkMode:     options.OnTableRead,
		BlockSize:   4 << 10,
		Compression: options.None,
	})
	return err
}

// environmental reports whether a failure to open is about the
// environment rather than the data: moving the directory aside would not
// help, and would hide a healthy store.
func environmental(err error) bool {
	for _, e := range []error{syscall.EACCES, syscall.EPERM, syscall.EROFS, syscall.ENOSPC,
		syscall.EDQUOT, syscall.ENOMEM, syscall.EMFILE, syscall.ENFILE, syscall.EAGAIN} {
		if errors.Is(err, e) {
			return true
		}
	}
	// Badger flattens the errors it wraps into strings.
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"directory lock", "permission denied", "read-only file system",
		"no space left", "disk quota", "cannot allocate memory", "too many open files",
		"resource temporarily unavailable"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// moveAside renames dir to dir.corrupt-<UTC time> and returns the new name.
func moveAside(dir string, now time.Time) (string, error) {
	base := filepath.Clean(dir) + ".corrupt-" + now.UTC().Format("20060102T150405Z")
	to := base
	for i := 1; ; i++ {
		if _, err := os.Lstat(to); errors.Is(err, fs.ErrNotExist) {
			break
		}
		to = fmt.Sprintf("%s.%d", base, i)
	}
	if err := os.Rename(dir, to); err != nil {
		return "", err
	}
	return to, nil
}

// diskUsage is the space the files in dir take on disk. Badger's db.Size
// needs MetricsEnabled (global expvar counters on every operation) and is
// refreshed only once a minute; it also counts preallocated sparse files at
// their apparent size.
func diskUsage(dir string) int64 {
	// Stats calls this once a second for the status page's whole life:
	// names and fstatat, not ReadDir and Info, which made twice the
	// garbage (2.5KB a call), kept by an idle agent's heap until the next
	// GC (issue 11, idle RSS).
	d, err := os.Open(dir)
	if err != nil {
		return 0
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return 0
	}
	fd := int(d.Fd())
	var n int64
	var st unix.Stat_t
	for _, name := range names {
		if unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW) != nil || st.Mode&unix.S_IFMT != unix.S_IFREG {
			continue
		}
		n += int64(st.Blocks) * 512
	}
	return n
}

// badgerLogger sends badger's log to slog. Badger logs routine work (every
// compaction, every replay) at Info: that is Debug here, and its Debug is
// below Debug.
type badgerLogger struct{ l *slog.Logger }

const levelTrace = slog.LevelDebug - 4

func (b badgerLogger) Errorf(f string, a ...any)   { b.log(slog.LevelError, f, a) }
func (b badgerLogger) Warningf(f string, a ...any) { b.log(slog.LevelWarn, f, a) }
func (b badgerLogger) Infof(f string, a ...any)    { b.log(slog.LevelDebug, f, a) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.log(levelTrace, f, a) }

func (b badgerLogger) log(level slog.Level, f string, a []any) {
	ctx := context.Background()
	if !b.l.Enabled(ctx, level) {
		return
	}
	b.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(f, a...)), "component", "badger")
}
