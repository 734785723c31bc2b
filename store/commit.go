package store

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"runtime"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The committer is the only goroutine that writes to badger: appends,
// deletes, evictions, expiry and value-log GC. That is what makes one
// db.Sync per group enough. Badger's Sync syncs the active memtable's
// write-ahead log; a memtable rotated out by another writer between our
// write and our sync would keep our entries unsynced until it is flushed.
// With one writer, a rotation can only happen before our write.

// entry is one message of a round.
type entry struct {
	r       *appendReq
	i       int
	seq     uint64
	size    int64
	dropped bool
}

type drop struct {
	m      *Message
	reason string
}

// noExpiryBefore: receive times before 2020 come from a device clock that
// has not been set yet (no RTC, no NTP so far); such messages never expire.
var noExpiryBefore = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano()

const (
	expireBatch = 4096
	forgetWait  = 1 << 14 // written deletes kept before forget waits for readers
	gcMaxFiles  = 16
)

func (s *Store) run() {
	defer close(s.done)
	var gcC, expC <-chan time.Time
	if s.opts.GCInterval > 0 {
		t := time.NewTicker(s.opts.GCInterval)
		defer t.Stop()
		gcC = t.C
	}
	if s.opts.MaxAge > 0 {
		t := time.NewTicker(sweepPeriod(s.opts.MaxAge))
		defer t.Stop()
		expC = t.C
	}
	for {
		select {
		case <-s.stop:
			for s.round() && !s.failing {
			}
			s.fireDrops()
			s.failQueued()
			return
		case <-s.kick:
			// Let publishers released by the last round queue again, so
			// that they join this group rather than the next one.
			runtime.Gosched()
			if s.round() && !s.failing {
				s.wake() // more queued: come back after the other cases had a chance
			}
		case <-expC:
			s.sweep()
		case <-gcC:
			s.reclaim()
			s.gc()
		case f := <-s.ctl:
			f()
		}
	}
}

func sweepPeriod(maxAge time.Duration) time.Duration {
	return min(max(maxAge/10, time.Second), time.Minute)
}

// failQueued releases Appends still queued when the committer stops
// (only after a failing write): they were not stored.
func (s *Store) failQueued() {
	s.mu.Lock()
	q := s.queue
	s.queue = nil
	s.mu.Unlock()
	for _, r := range q {
		if r.state == reqQueued {
			r.err = ErrClosed
			close(r.done)
		}
	}
}

// do runs f on the committer and waits for it.
func (s *Store) do(f func()) bool {
	done := make(chan struct{})
	select {
	case s.ctl <- func() { f(); close(done) }:
		<-done
		return true
	case <-s.done:
		return false
	}
}

// take moves what one round writes out of the queues.
func (s *Store) take() (reqs []*appendReq, dels []uint64, more bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var n int
	var size int64
	i := 0
	for ; i < len(s.queue); i++ {
		r := s.queue[i]
		if r.state == reqCanceled {
			s.queue[i] = nil
			continue
		}
		est := r.total + int64(len(r.vals))*(keyLen+12+32)
		if len(reqs) > 0 && (s.opts.Sync == SyncAlways || n+len(r.vals) > s.roundCount || size+est > s.roundBytes) {
			break
		}
		r.state = reqTaken
		if r.noWait {
			s.noWaitBytes -= r.total
		}
		reqs = append(reqs, r)
		n += len(r.vals)
		size += est
		s.queue[i] = nil
	}
	s.queue = s.queue[i:]
	if len(s.queue) == 0 {
		s.queue = s.queue[:0:0]
	}
	// Deletes are small and keep the head moving: a round full of appends
	// still writes up to half a round of them (the total stays below the
	// badger transaction limit, which is twice roundCount). With fewer,
	// a busy ingest let deleted-but-unwritten messages pile up in front of
	// the head, and every Read from the head walked them all (the uplink
	// drained at a tenth of its rate while QoS 0 devices were sending).
	k := min(len(s.delQueue), max(s.roundCount-n, s.roundCount/2, 64))
	if k > 0 {
		dels = make([]uint64, k)
		copy(dels, s.delQueue)
		s.delQueue = append(s.delQueue[:0], s.delQueue[k:]...)
	}
	return reqs, dels, len(s.queue) > 0 || len(s.delQueue) > 0
}

// round writes one group: the appends queued now (one under SyncAlways),
// the deletes queued now, and what retention evicts to make room; syncs
// once; releases the waiters. It reports whether anything is left queued.
func (s *Store) round() (more bool) {
	reqs, dels, more := s.take()
	if len(reqs) == 0 && len(dels) == 0 {
		s.forget()
		s.fireDrops()
		return false
	}
	free, diskErr := s.checkDisk()
	if len(dels) > 0 && free >= 0 && free < s.opts.MinFreeBytes/4 {
		// Too little room even for tombstones: they wait, in order, for
		// the next round that has room; not "more", or the committer
		// would spin on them.
		s.mu.Lock()
		s.delQueue = append(dels, s.delQueue...)
		more = len(s.queue) > 0 // queued appends are refused next round
		s.mu.Unlock()
		dels = nil
	}
	s.entries = s.entries[:0]
	s.victims = s.victims[:0]
	ev := evictor{s: s}
	var firstSeq uint64
	if len(reqs) > 0 {
		firstSeq = s.next
	}
	for _, r := range reqs {
		if diskErr != nil {
			s.refuse(r, diskErr)
			continue
		}
		s.place(r, &ev)
	}
	ev.close()

	// Write: the high-water mark first, deletes, then the messages. One
	// transaction unless badger's batch limit splits it; each part is then
	// synced before the next so that a memtable rotation between parts
	// cannot leave one unsynced.
	nSets := 0
	for _, e := range s.entries {
		if !e.dropped {
			nSets++
		}
	}
	keys := make([]byte, keyLen*(len(dels)+len(s.victims)+nSets))
	nextKey := func(seq uint64) []byte {
		k := keys[:keyLen:keyLen]
		keys = keys[keyLen:]
		putKey(k, seq)
		return k
	}
	var (
		txn                  = s.db.NewTransaction(true)
		addedDels, addedSets int
		doneDels, doneSets   int
		syncNeeded           = nSets > 0 && s.opts.Sync != SyncNone
		werr                 error
		allDels              = append(dels, s.victims...)
		committedAll         bool
	)
	add := func(f func(*badger.Txn) error) error {
		err := f(txn)
		if !errors.Is(err, badger.ErrTxnTooBig) {
			return err
		}
		if err := txn.Commit(); err != nil {
			return err
		}
		doneDels, doneSets = addedDels, addedSets
		if syncNeeded {
			if err := s.sync(); err != nil {
				return err
			}
		}
		txn = s.db.NewTransaction(true)
		return f(txn)
	}
	if nSets > 0 {
		hwm := binary.BigEndian.AppendUint64(nil, s.next-1)
		werr = add(func(t *badger.Txn) error { return t.Set(keyHWM, hwm) })
	}
	for _, seq := range allDels {
		if werr != nil {
			break
		}
		k := nextKey(seq)
		if werr = add(func(t *badger.Txn) error { return t.Delete(k) }); werr == nil {
			addedDels++
		}
	}
	for i := range s.entries {
		e := &s.entries[i]
		if werr != nil {
			break
		}
		if e.dropped {
			continue
		}
		k := nextKey(e.seq)
		v := e.r.vals[e.i]
		if werr = add(func(t *badger.Txn) error { return t.Set(k, v) }); werr == nil {
			addedSets++
		}
	}
	if werr == nil {
		if werr = txn.Commit(); werr == nil {
			doneDels, doneSets = addedDels, addedSets
			committedAll = true
		}
	} else {
		txn.Discard()
	}
	if committedAll && syncNeeded {
		werr = s.sync()
	}

	// Accounting: what was not committed is taken back.
	s.mu.Lock()
	s.st.Appended += uint64(doneSets)
	s.written = append(s.written, allDels[:doneDels]...)
	if doneDels < len(allDels) {
		s.delQueue = append(s.delQueue, allDels[doneDels:]...)
		more = true
	}
	j := 0
	for i := range s.entries {
		e := &s.entries[i]
		if e.dropped {
			continue
		}
		if j >= doneSets {
			s.count--
			s.bytes -= e.size
			e.r.seqs[e.i] = 0
			e.r.err = werr
		} else if werr != nil {
			// Committed, but the sync failed: not known to be durable.
			e.r.err = werr
		}
		j++
	}
	needHead := doneDels > 0 || (doneSets > 0 && s.head >= firstSeq)
	s.mu.Unlock()
	s.failing = werr != nil
	if werr != nil {
		s.log.Error("store: write failed", "error", werr, "messages", nSets, "deletes", len(allDels))
	}

	if needHead {
		s.refreshHead()
	}
	s.forget()
	s.fireDrops() // before the waiters: an Append returns after its drops are reported
	for _, r := range reqs {
		close(r.done)
	}
	if doneSets > 0 {
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
	return more
}

// place decides where each message of r goes under the OnFull policy and
// assigns seqs to those that will be written.
func (s *Store) place(r *appendReq, ev *evictor) {
	max := s.opts.MaxBytes
	elen := len(s.epoch)
	if s.opts.OnFull == Block {
		var need int64
		for i := range r.vals {
			need += r.base[i] + int64(idLen(elen, s.next+uint64(i)))
		}
		s.mu.Lock()
		full := s.bytes+need > max
		if full {
			if r.noWait {
				// Nobody waits to hear "full": count each as dropped.
				s.st.DroppedFull += uint64(len(r.vals))
				s.mu.Unlock()
				for _, v := range r.vals {
					s.addDrop(v, 0, DropReasonFull)
				}
				r.err = ErrFull
				return
			}
			s.mu.Unlock()
			r.err = ErrFull
			return
		}
		s.bytes += need
		s.count += int64(len(r.vals))
		s.mu.Unlock()
		for i := range r.vals {
			seq := s.next
			s.next++
			r.seqs[i] = seq
			s.entries = append(s.entries, entry{r: r, i: i, seq: seq, size: r.base[i] + int64(idLen(elen, seq))})
		}
		return
	}
	for i := range r.vals {
		size := r.base[i] + int64(idLen(elen, s.next))
		for {
			s.mu.Lock()
			fits := s.bytes+size <= max
			if fits {
				s.bytes += size
				s.count++
			}
			s.mu.Unlock()
			if fits {
				break
			}
			if s.opts.OnFull == DropNew || !ev.evictOne() {
				s.mu.Lock()
				s.st.DroppedFull++
				s.mu.Unlock()
				s.addDrop(r.vals[i], 0, DropReasonFull)
				size = -1
				break
			}
		}
		if size < 0 {
			continue
		}
		seq := s.next
		s.next++
		r.seqs[i] = seq
		s.entries = append(s.entries, entry{r: r, i: i, seq: seq, size: size})
	}
}

// evictor hands out the oldest messages for DropOldest: the stored ones
// from the head, then the ones placed earlier in this round.
type evictor struct {
	s   *Store
	txn *badger.Txn
	it  *badger.Iterator
	eof bool
	k   int // next entry of the round to consider
}

func (ev *evictor) evictOne() bool {
	s := ev.s
	if !ev.eof {
		if ev.it == nil {
			ev.txn = s.db.NewTransaction(false)
			ev.it = ev.txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixMsg}})
			s.mu.Lock()
			head := s.head
			s.mu.Unlock()
			ev.it.Seek(msgKey(head))
		}
		for ; ev.it.Valid(); ev.it.Next() {
			item := ev.it.Item()
			seq, ok := seqOf(item.Key())
			if !ok || s.isPending(seq) {
				continue
			}
			var m *Message
			var vlen int
			err := item.Value(func(v []byte) error {
				vlen = len(v)
				if s.opts.OnDrop == nil {
					return nil
				}
				m = &Message{Seq: seq, ID: makeID(s.epoch, seq)}
				return decodeValue(v, m)
			})
			if err != nil && !errors.Is(err, errCorrupt) {
				s.log.Error("store: reading the oldest message to drop it", "seq", seq, "error", err)
				continue
			}
			size := msgSize(vlen, len(s.epoch), seq)
			s.mu.Lock()
			_, gone := s.pending[seq]
			if !gone {
				s.markLocked(seq)
				s.count--
				s.bytes -= size
				s.st.DroppedFull++
			}
			s.mu.Unlock()
			ev.it.Next()
			if gone {
				return ev.evictOne()
			}
			s.victims = append(s.victims, seq)
			if m != nil && err == nil {
				s.drops = append(s.drops, drop{m, DropReasonFull})
			}
			return true
		}
		ev.eof = true
		ev.close()
	}
	for ; ev.k < len(s.entries); ev.k++ {
		e := &s.entries[ev.k]
		if e.dropped {
			continue
		}
		e.dropped = true
		e.r.seqs[e.i] = 0
		s.mu.Lock()
		s.count--
		s.bytes -= e.size
		s.st.DroppedFull++
		s.mu.Unlock()
		s.addDrop(e.r.vals[e.i], 0, DropReasonFull)
		ev.k++
		return true
	}
	return false
}

func (ev *evictor) close() {
	if ev.it != nil {
		ev.it.Close()
		ev.txn.Discard()
		ev.it, ev.txn = nil, nil
	}
}

// markLocked marks seq deleted. s.mu is held.
func (s *Store) markLocked(seq uint64) {
	s.pending[seq] = struct{}{}
	delete(s.issued, seq)
}

func (s *Store) addDrop(v []byte, seq uint64, reason string) {
	if s.opts.OnDrop == nil {
		return
	}
	m := &Message{Seq: seq}
	if err := decodeValue(v, m); err != nil {
		return
	}
	if seq != 0 {
		m.ID = makeID(s.epoch, seq)
	}
	s.drops = append(s.drops, drop{m, reason})
}

func (s *Store) fireDrops() {
	if len(s.drops) == 0 {
		return
	}
	for i, d := range s.drops {
		s.opts.OnDrop(d.m, d.reason)
		s.drops[i] = drop{}
	}
	s.drops = s.drops[:0]
}

func (s *Store) sync() error {
	err := s.db.Sync()
	s.mu.Lock()
	s.st.Syncs++
	s.mu.Unlock()
	return err
}

// forget drops written deletes from the pending set once no Read or
// Delete holds a snapshot that might predate them. It never waits: if one
// does, the next round tries again.
func (s *Store) forget() {
	s.mu.Lock()
	n := len(s.written)
	s.mu.Unlock()
	switch {
	case n == 0:
		return
	case n > forgetWait:
		s.snap.Lock()
	case !s.snap.TryLock():
		return
	}
	s.mu.Lock()
	for _, seq := range s.written {
		delete(s.pending, seq)
		delete(s.issued, seq) // recorded by a Read of an older snapshot
	}
	s.written = s.written[:0]
	if len(s.pending) == 0 && cap(s.written) > 4096 {
		// Maps never shrink: after a burst, start afresh.
		s.pending = make(map[uint64]struct{})
		s.written = nil
	}
	if len(s.issued) == 0 && s.issuedPeak > 4096 {
		s.issued = make(map[uint64]int64)
		s.issuedPeak = 0
	}
	s.mu.Unlock()
	s.snap.Unlock()
}

// refreshHead moves the head to the lowest live seq and caches its time.
func (s *Store) refreshHead() {
	s.mu.Lock()
	head := s.head
	s.mu.Unlock()
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixMsg}})
	defer it.Close()
	for it.Seek(msgKey(head)); it.Valid(); it.Next() {
		item := it.Item()
		seq, ok := seqOf(item.Key())
		if !ok || s.isPending(seq) {
			continue
		}
		var t int64
		_ = item.Value(func(v []byte) error {
			if _, _, _, err := checkHeader(v); err == nil {
				t = valueTime(v)
			}
			return nil
		})
		s.mu.Lock()
		s.head, s.headTime = seq, nsTime(t)
		s.mu.Unlock()
		return
	}
	s.mu.Lock()
	s.head, s.headTime = s.next, time.Time{}
	s.mu.Unlock()
}

// sweep deletes expired messages from the head, a batch per round.
func (s *Store) sweep() {
	for {
		more := s.expire(expireBatch)
		s.round()
		if !more {
			return
		}
	}
}

// expire marks up to limit expired messages from the head, stopping at
// the first one that is not expired.
func (s *Store) expire(limit int) (more bool) {
	if s.opts.MaxAge <= 0 {
		return false
	}
	cutoff := s.opts.Now().Add(-s.opts.MaxAge).UnixNano()
	s.mu.Lock()
	head := s.head
	s.mu.Unlock()
	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixMsg}})
	defer it.Close()
	n := 0
	for it.Seek(msgKey(head)); it.Valid(); it.Next() {
		item := it.Item()
		seq, ok := seqOf(item.Key())
		if !ok || s.isPending(seq) {
			continue
		}
		var t int64
		var vlen int
		var m *Message
		err := item.Value(func(v []byte) error {
			if _, _, _, err := checkHeader(v); err != nil {
				return err
			}
			vlen, t = len(v), valueTime(v)
			if s.opts.OnDrop != nil && t > noExpiryBefore && t <= cutoff {
				m = &Message{Seq: seq, ID: makeID(s.epoch, seq)}
				return decodeValue(v, m)
			}
			return nil
		})
		if err != nil || t <= noExpiryBefore || t > cutoff {
			return false
		}
		s.mu.Lock()
		if _, gone := s.pending[seq]; !gone {
			s.markLocked(seq)
			s.delQueue = append(s.delQueue, seq)
			s.count--
			s.bytes -= msgSize(vlen, len(s.epoch), seq)
			s.st.Expired++
			if m != nil {
				s.drops = append(s.drops, drop{m, DropReasonExpired})
			}
		}
		s.mu.Unlock()
		if n++; n >= limit {
			return true
		}
	}
	return false
}

// reclaim hands the space of a drained store back at once. Deleted
// messages otherwise stay on disk, tombstones and all, until compaction
// has merged them level by level — rewriting them on the SD card on the
// way — and it only runs when more writes arrive. When the store is empty,
// badger's DropPrefix drops the message tables whole instead. Only the
// committer writes, so no message can arrive while it runs.
func (s *Store) reclaim() {
	empty := func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.count == 0 && len(s.queue) == 0
	}
	if !empty() {
		return
	}
	if tables, _ := filepath.Glob(filepath.Join(s.opts.Dir, "*.sst")); len(tables) < 2 {
		return // little to gain
	}
	if _, derr := s.checkDisk(); derr != nil {
		return // dropping the tables flushes the memtable first
	}
	for s.round() {
	}
	if !empty() {
		return
	}
	// DropPrefix does nothing unless a live key has the prefix: seq 0 is
	// never assigned; load ignores it should we crash before the drop.
	err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(msgKey(0), nil) })
	if err == nil {
		err = s.db.DropPrefix([]byte{prefixMsg})
	}
	if err != nil {
		s.log.Warn("store: dropping the tables of a drained store", "error", err)
		return
	}
	s.log.Debug("store: drained; message tables dropped")
}

// gc runs badger's value-log GC, one file per call, while it finds files
// worth rewriting, letting queued appends through between files.
func (s *Store) gc() (files int, err error) {
	// A rewrite writes a new value-log file before it frees the old one.
	if _, derr := s.checkDisk(); derr != nil {
		return 0, nil
	}
	for files < gcMaxFiles {
		err = s.db.RunValueLogGC(0.5)
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			return files, nil
		}
		if err != nil {
			s.log.Warn("store: value-log GC", "error", err)
			return files, err
		}
		files++
		// The rewrite moved live values without a sync; make them durable.
		if err = s.sync(); err != nil {
			return files, err
		}
		s.log.Debug("store: value-log file collected", "files", files)
		if s.round() {
			s.wake()
		}
	}
	return files, nil
}
