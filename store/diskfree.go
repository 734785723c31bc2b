package store

import (
	"fmt"
	"path/filepath"
	"syscall"
)

// Badger writes its write-ahead logs, value logs and tables through
// mapped files that it first extends with ftruncate, which leaves them
// sparse. A store on a full filesystem does not get ENOSPC from such a
// write: the page fault cannot be served and the kernel kills the whole
// agent with SIGBUS (measured: a 24MB tmpfs filled by another file, then
// MQTT-SN publishes: the agent died in badger's logFile.writeEntry, 977
// acknowledged messages with it until a restart found room). And on
// restart badger writes a fresh memtable header at once, so a disk that is
// still full makes a crash loop. Other writers fill filesystems on
// gateways all the time: logs, a core dump, a firmware download.
//
// So the committer asks the filesystem before it writes: appends are
// refused with ErrDiskFull while less than MinFreeBytes are free (what
// badger's own flushes and compactions may still need is inside that
// margin), deletes — which let the drain go on — stop at a quarter of it,
// and Open refuses below a quarter too. Nothing is acknowledged that was
// not written, and the store takes messages again as soon as there is room.

// minFreeDefault: two flushed memtables plus a compaction of level 0 into
// level 1, and a value-log file rewritten by GC, with room to spare.
func minFreeDefault(o *Options) int64 { return 8*o.MemTableSize + 2*o.ValueLogFileSize }

// diskFree is what an unprivileged writer may still use on dir's
// filesystem; ok is false if that cannot be known.
// A directory not made yet is asked about through its nearest parent.
func diskFree(dir string) (free int64, ok bool) {
	var st syscall.Statfs_t
	for {
		err := syscall.Statfs(dir, &st)
		if err == nil {
			return int64(st.Bavail) * int64(st.Bsize), true
		}
		parent := filepath.Dir(dir)
		if err != syscall.ENOENT || parent == dir {
			return 0, false
		}
		dir = parent
	}
}

// checkDisk reads the free space (through Options.diskFree in tests) and
// returns the error appends get while it is below MinFreeBytes, or nil.
// It logs when the store enters and leaves that state.
func (s *Store) checkDisk() (free int64, err error) {
	if s.opts.MinFreeBytes < 0 {
		return -1, nil
	}
	free, ok := s.opts.diskFree(s.opts.Dir)
	if !ok {
		return -1, nil
	}
	s.mu.Lock()
	s.st.DiskFree = free
	was := s.diskLow
	s.diskLow = free < s.opts.MinFreeBytes
	s.mu.Unlock()
	switch {
	case s.diskLow && !was:
		s.log.Error("store: filesystem almost full: refusing new messages until there is room",
			"dir", s.opts.Dir, "free", free, "min_free", s.opts.MinFreeBytes)
	case !s.diskLow && was:
		s.log.Info("store: room on the filesystem again: taking messages", "free", free, "min_free", s.opts.MinFreeBytes)
	}
	if s.diskLow {
		return free, diskFullError(free, s.opts.MinFreeBytes, s.opts.Dir)
	}
	return free, nil
}

func diskFullError(free, min int64, dir string) error {
	return fmt.Errorf("%w: %d bytes free for %s, %d needed", ErrDiskFull, free, dir, min)
}

// refuse releases an append the disk has no room for: a waiting caller
// gets err; a QoS 0 message (AppendNoWait) is counted and reported dropped.
func (s *Store) refuse(r *appendReq, err error) {
	s.mu.Lock()
	if r.noWait {
		s.st.DroppedDiskFull += uint64(len(r.vals))
	} else {
		s.st.RejectedDiskFull += uint64(len(r.vals))
	}
	s.mu.Unlock()
	if r.noWait {
		for _, v := range r.vals {
			s.addDrop(v, 0, DropReasonDiskFull)
		}
	}
	r.err = err
}
