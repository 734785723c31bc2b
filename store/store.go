package store

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/skl"
)

// Defaults, sized for a Raspberry Pi class device.
const (
	DefaultMaxBytes         = 256 << 20
	DefaultGCInterval       = 5 * time.Minute
	DefaultMemTableSize     = 2 << 20
	DefaultNumMemtables     = 2
	DefaultValueLogFileSize = 16 << 20
)

// maxIssued bounds Store.issued: above any uplink's max_inflight.
const maxIssued = 1 << 16

// maxValueThreshold bounds the values kept in badger's tables; see
// badgerOptions.
const maxValueThreshold = 1 << 10

// ErrTooLarge is returned by Append for a message that could never be
// stored: larger than MaxBytes, or than half a value-log file.
var ErrTooLarge = errors.New("store: message too large")

// Options configure a Store. Zero fields take the defaults noted.
type Options struct {
	// Dir is badger's directory. Required.
	Dir string
	// MaxBytes bounds the sum of Message.Size of the stored messages.
	// Default 256MB.
	MaxBytes int64
	// MaxAge, when positive, deletes messages received longer ago than
	// this, in a sweep every min(MaxAge/10, 1m) (at least 1s apart); each
	// is counted and passed to OnDrop with DropReasonExpired. Messages
	// stamped before 2020 never expire: that is a device that booted
	// without a real-time clock, and NTP must not expire its backlog.
	MaxAge time.Duration
	// OnFull is the policy when an Append would exceed MaxBytes. Default
	// DropOldest.
	OnFull OnFull
	// Sync is when appends reach the disk. Default SyncBatch.
	Sync SyncMode
	// GCInterval is the period of badger's value-log GC. Default 5m;
	// negative disables it.
	GCInterval time.Duration
	// Logger defaults to slog.Default().
	Logger *slog.Logger
	// OnDrop, if set, is called for every message dropped by OnFull or
	// MaxAge, from the store's goroutine (for AppendNoWait's overload drops,
	// from its caller's) and without the store's locks held; it
	// must not block and must not call back into the store's Append.
	OnDrop func(m *Message, reason string)
	// Now is the clock; default time.Now.
	Now func() time.Time
	// MinFreeBytes is the free space the filesystem holding Dir must keep:
	// below it Append returns ErrDiskFull (AppendNoWait drops, counted as
	// DropReasonDiskFull), below a quarter of it deletes wait and Open
	// fails. Badger writes through sparse mapped files, and a write the
	// full filesystem cannot place kills the process (SIGBUS); see
	// diskfree.go. Default 8×MemTableSize + 2×ValueLogFileSize (48MB);
	// negative disables the check.
	MinFreeBytes int64

	diskFree func(dir string) (int64, bool) // tests; default diskFree

	// Badger tuning for small devices; see README.md.

	// MemTableSize is the size of one memtable (and of its write-ahead
	// log, mapped at twice this); also the size of every table. Default
	// 2MB: badger's table builders and memtables dominate its heap.
	MemTableSize int64
	// NumMemtables is how many memtables may wait to be flushed. Default 2.
	NumMemtables int
	// ValueThreshold: encoded messages at least this long go to badger's
	// value log, shorter ones live in the LSM tree. Default and maximum
	// 1KB: see badgerOptions for why larger values in tables are unsafe
	// on 32-bit.
	ValueThreshold int64
	// ValueLogFileSize is the size of one value-log file (mapped at twice
	// this). Default 16MB.
	ValueLogFileSize int64
}

func (o *Options) setDefaults() error {
	if o.Dir == "" {
		return errors.New("store: no directory")
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = DefaultMaxBytes
	}
	switch o.OnFull {
	case "":
		o.OnFull = DropOldest
	case DropOldest, DropNew, Block:
	default:
		return fmt.Errorf("store: on_full: unknown policy %q", o.OnFull)
	}
	switch o.Sync {
	case "":
		o.Sync = SyncBatch
	case SyncAlways, SyncBatch, SyncNone:
	default:
		return fmt.Errorf("store: sync: unknown mode %q", o.Sync)
	}
	if o.GCInterval == 0 {
		o.GCInterval = DefaultGCInterval
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MemTableSize == 0 {
		o.MemTableSize = DefaultMemTableSize
	}
	if o.NumMemtables <= 0 {
		o.NumMemtables = DefaultNumMemtables
	}
	if o.MemTableSize < 1<<20 {
		return fmt.Errorf("store: memtable size %d below 1MB", o.MemTableSize)
	}
	if o.ValueThreshold <= 0 {
		o.ValueThreshold = maxValueThreshold
	}
	if o.ValueThreshold > maxValueThreshold {
		return fmt.Errorf("store: value threshold %d above %d", o.ValueThreshold, maxValueThreshold)
	}
	if o.ValueLogFileSize == 0 {
		o.ValueLogFileSize = DefaultValueLogFileSize
	}
	if o.MinFreeBytes == 0 {
		o.MinFreeBytes = minFreeDefault(o)
	}
	if o.diskFree == nil {
		o.diskFree = diskFree
	}
	// Options badger would refuse must not look like a corrupt store.
	if o.ValueLogFileSize < 1<<20 || o.ValueLogFileSize >= 1<<30 {
		return fmt.Errorf("store: value log file size %d outside [1MB, 1GB)", o.ValueLogFileSize)
	}
	return nil
}

// Store is the durable FIFO on badger. It implements Queue. All writes to
// badger go through one goroutine, the committer, which groups concurrent
// Appends into one write and one sync; see README.md.
type Store struct {
	opts  Options
	log   *slog.Logger
	db    *badger.DB
	epoch string

	// Round limits, well inside badger's per-transaction limits.
	roundBytes int64
	roundCount int

	kick   chan struct{} // wakes the committer
	notify chan struct{} // Notify
	ctl    chan func()   // runs a function on the committer
	stop   chan struct{}
	done   chan struct{}

	closeOnce sync.Once
	closeErr  error

	// snap is held shared by Read and Delete for as long as they use a
	// badger snapshot, and exclusively by the committer to forget deletes
	// it has written: a snapshot older than a delete must still see the
	// seq as pending.
	snap sync.RWMutex

	mu     sync.Mutex
	closed bool
	queue  []*appendReq
	// noWaitBytes is the total of the AppendNoWait requests in queue.
	noWaitBytes int64
	delQueue    []uint64            // deleted, not yet written to badger
	pending     map[uint64]struct{} // deleted, possibly still visible in a snapshot
	written     []uint64            // in pending and written to badger
	// issued holds the sizes of messages Read has handed out, so that
	// their Delete needs no lookup in badger (most of a drain's cost
	// otherwise). Bounded: the uplink's in-flight window.
	issued     map[uint64]int64
	issuedPeak int
	head       uint64 // no live message has a lower seq
	headTime   time.Time
	count      int64
	bytes      int64
	st         Stats
	diskAt     time.Time

	// Owned by the committer.
	next    uint64 // next seq to assign
	entries []entry
	victims []uint64
	drops   []drop
	failing bool // the last round's write failed: do not spin on it
	diskLow bool // under mu: free space below MinFreeBytes at the last check
}

// appendReq is one Append call waiting for the committer. The committer
// never touches the caller's Messages: Append may give up on its context
// while the committer is writing.
type appendReq struct {
	vals  [][]byte
	base  []int64 // Message.Size without the ID
	seqs  []uint64
	total int64
	state uint8
	err   error
	done  chan struct{}
	// noWait: nobody waits on done (AppendNoWait).
	noWait bool
}

const (
	reqQueued = iota
	reqTaken
	reqCanceled
)

// Open opens (or creates) the store in opts.Dir. A store badger cannot
// open, or whose metadata does not decode, is moved aside to
// <dir>.corrupt-<UTC time> with an error log, and a fresh one is opened.
func Open(opts Options) (*Store, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	s := &Store{
		opts:    opts,
		log:     opts.Logger,
		kick:    make(chan struct{}, 1),
		notify:  make(chan struct{}, 1),
		ctl:     make(chan func()),
		stop:    make(chan struct{}),
		done:    make(chan struct{}),
		pending: make(map[uint64]struct{}),
		issued:  make(map[uint64]int64),
	}
	// Badger refuses a transaction of 15% of a memtable, or of as many
	// entries as maximal skiplist nodes fit in that.
	batch := opts.MemTableSize * 15 / 100
	s.roundBytes = batch / 2
	s.roundCount = min(4096, int(batch/int64(skl.MaxNodeSize))/2)

	// Opening writes (a fresh memtable's header, flushes of replayed
	// ones): on a full filesystem that is a SIGBUS, not an error.
	if free, ok := s.opts.diskFree(opts.Dir); ok && s.opts.MinFreeBytes > 0 && free < s.opts.MinFreeBytes/4 {
		return nil, fmt.Errorf("store: open %s: %w", opts.Dir, diskFullError(free, s.opts.MinFreeBytes/4, opts.Dir))
	}
	for attempt := 0; ; attempt++ {
		db, err := openDB(&s.opts, s.log)
		if err == nil {
			s.db = db
			if err = s.load(); err == nil {
				break
			}
			_ = db.Close()
			s.db = nil
		}
		if attempt > 0 || environmental(err) {
			return nil, fmt.Errorf("store: open %s: %w", opts.Dir, err)
		}
		to, merr := moveAside(opts.Dir, s.opts.Now())
		if merr != nil {
			return nil, fmt.Errorf("store: open %s: %w (and moving it aside failed: %v)", opts.Dir, err, merr)
		}
		s.log.Error("store is corrupt or unreadable: moved aside, starting with an empty store",
			"dir", opts.Dir, "moved_to", to, "error", err)
		s.st.Recovered++
	}
	go s.run()
	return s, nil
}

// load reads the meta keys and rebuilds the accounting by one pass over
// the keys.
func (s *Store) load() error {
	s.epoch, s.count, s.bytes, s.head, s.headTime = "", 0, 0, 0, time.Time{}
	var hwm uint64
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(keyEpoch)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			err = item.Value(func(v []byte) error {
				if len(v) != 16 {
					return fmt.Errorf("store: bad epoch %q", v)
				}
				if _, err := hex.DecodeString(string(v)); err != nil {
					return fmt.Errorf("store: bad epoch %q", v)
				}
				s.epoch = string(v)
				return nil
			})
			if err != nil {
				return err
			}
		}
		item, err = txn.Get(keyHWM)
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
		case err != nil:
			return err
		default:
			err = item.Value(func(v []byte) error {
				if len(v) != 8 {
					return fmt.Errorf("store: bad high-water mark %x", v)
				}
				hwm = binary.BigEndian.Uint64(v)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if s.epoch == "" {
		var b [8]byte
		if _, err := rand.Read(b[:]); err != nil {
			return err
		}
		s.epoch = hex.EncodeToString(b[:])
		if err := s.db.Update(func(txn *badger.Txn) error {
			return txn.Set(keyEpoch, []byte(s.epoch))
		}); err != nil {
			return err
		}
		if err := s.db.Sync(); err != nil {
			return err
		}
	}

	// One pass: values in the LSM tree come with the block already read,
	// so this reads no more than the keys' blocks.
	var bad []uint64
	var last uint64
	first, sentinel := true, false
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixMsg}})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			seq, ok := seqOf(item.Key())
			if !ok {
				continue
			}
			if seq == 0 { // reclaim's sentinel: a crash came before its drop
				sentinel = true
				continue
			}
			last = seq
			err := item.Value(func(v []byte) error {
				if _, _, _, err := checkHeader(v); err != nil {
					return err
				}
				if first {
					s.head, s.headTime, first = seq, nsTime(valueTime(v)), false
				}
				s.count++
				s.bytes += msgSize(len(v), len(s.epoch), seq)
				return nil
			})
			if errors.Is(err, errCorrupt) {
				bad = append(bad, seq)
				continue
			}
			if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.next = max(last, hwm) + 1
	if first {
		s.head = s.next
	}
	if len(bad) > 0 {
		s.log.Error("store: deleting messages that do not decode", "dir", s.opts.Dir, "count", len(bad))
	}
	if sentinel {
		bad = append(bad, 0)
	}
	if len(bad) > 0 {
		wb := s.db.NewWriteBatch()
		for _, seq := range bad {
			if err := wb.Delete(msgKey(seq)); err != nil {
				wb.Cancel()
				return err
			}
		}
		if err := wb.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// Append implements Queue. It encodes on the caller's goroutine, then
// waits for the committer to write (and, per Options.Sync, sync) it. It
// assigns Seq and ID, and sets a zero Time to now. A message dropped by
// the DropNew policy (or evicted by DropOldest before it was written) is
// left with Seq 0; Append still returns nil for it.
//
// If ctx ends while the messages wait for the committer, Append returns
// ctx's error and nothing is stored. If it ends while they are being
// written, Append returns ctx's error without knowing the outcome: they
// may be stored (a duplicate if the device resends, never a loss).
func (s *Store) Append(ctx context.Context, msgs ...*Message) error {
	return s.append(ctx, false, msgs)
}

// AppendNoWait queues messages for the next group commit and returns
// without waiting for it: for messages nobody was promised durability for
// (QoS 0), so a device is not held up by the disk. Order with other
// appends is kept. Seq and ID are not filled in; a refusal under the Block
// policy is counted (Stats.DroppedFull) and passed to OnDrop, and so is a
// message arriving while MaxNoWaitBytes are already queued
// (Stats.DroppedOverload, DropReasonOverload; OnDrop then runs in the
// caller's goroutine).
func (s *Store) AppendNoWait(msgs ...*Message) error {
	return s.append(context.Background(), true, msgs)
}

func (s *Store) append(ctx context.Context, noWait bool, msgs []*Message) error {
	if len(msgs) == 0 {
		return nil
	}
	r := &appendReq{
		vals: make([][]byte, len(msgs)),
		base: make([]int64, len(msgs)),
		seqs: make([]uint64, len(msgs)),
		done: make(chan struct{}),
	}
	n := 0
	for _, m := range msgs {
		if m == nil {
			return errors.New("store: nil message")
		}
		n += encodedLen(m)
	}
	buf := make([]byte, 0, n)
	var now time.Time
	for i, m := range msgs {
		if m.Time.IsZero() {
			if now.IsZero() {
				now = s.opts.Now()
			}
			m.Time = now
		}
		start := len(buf)
		var err error
		if buf, err = appendValue(buf, m); err != nil {
			return err
		}
		r.vals[i] = buf[start:len(buf):len(buf)]
		r.base[i] = int64(len(buf)-start-headerLen) + 32
		if r.base[i]+int64(len(s.epoch)+21) > s.opts.MaxBytes || int64(len(r.vals[i])) > s.opts.ValueLogFileSize/2 {
			return fmt.Errorf("%w: %d bytes (max_bytes %d)", ErrTooLarge, m.Size(), s.opts.MaxBytes)
		}
		r.total += r.base[i]
	}

	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	r.noWait = noWait
	if noWait {
		if s.noWaitBytes+r.total > MaxNoWaitBytes {
			s.st.DroppedOverload += uint64(len(msgs))
			s.mu.Unlock()
			if s.opts.OnDrop != nil {
				for _, m := range msgs {
					s.opts.OnDrop(m, DropReasonOverload)
				}
			}
			return nil
		}
		s.noWaitBytes += r.total
	}
	s.queue = append(s.queue, r)
	s.mu.Unlock()
	s.wake()
	if noWait {
		return nil
	}

	select {
	case <-r.done:
	case <-ctx.Done():
		s.mu.Lock()
		if r.state == reqQueued {
			r.state = reqCanceled
		}
		s.mu.Unlock()
		return ctx.Err()
	}
	if r.err != nil {
		return r.err
	}
	for i, m := range msgs {
		m.Seq, m.ID = r.seqs[i], ""
		if m.Seq != 0 {
			m.ID = makeID(s.epoch, m.Seq)
		}
	}
	return nil
}

func (s *Store) wake() {
	select {
	case s.kick <- struct{}{}:
	default:
	}
}

// Read implements Queue. It starts at the lowest live seq (tracked in
// memory) when after is below it, so tombstones left by deletes at the
// head are not walked again, and reads the values of the messages it
// returns only.
func (s *Store) Read(after uint64, max int) ([]*Message, error) {
	if max <= 0 {
		return nil, nil
	}
	s.snap.RLock()
	defer s.snap.RUnlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	if after == ^uint64(0) {
		s.mu.Unlock()
		return nil, nil
	}
	start := after + 1
	if start < s.head {
		start = s.head
	}
	// Step over the deleted messages in front of start in memory, rather
	// than through the iterator one badger entry at a time.
	for len(s.pending) > 0 {
		if _, gone := s.pending[start]; !gone {
			break
		}
		start++
	}
	hasPending := len(s.pending) > 0
	s.mu.Unlock()

	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte{prefixMsg}})
	defer it.Close()
	var out []*Message
	var sizes []int64
	var key [keyLen]byte
	putKey(key[:], start)
	for it.Seek(key[:]); it.Valid() && len(out) < max; it.Next() {
		item := it.Item()
		seq, ok := seqOf(item.Key())
		if !ok {
			continue
		}
		if hasPending && s.isPending(seq) {
			continue
		}
		m := &Message{Seq: seq}
		var vlen int
		err := item.Value(func(v []byte) error { vlen = len(v); return decodeValue(v, m) })
		if errors.Is(err, errCorrupt) {
			// Handing it out would stall the uplink on it forever.
			s.log.Error("store: dropping a message that does not decode", "seq", seq, "error", err)
			s.dropCorrupt(seq, msgSize(vlen, len(s.epoch), seq))
			continue
		}
		if err != nil {
			return out, fmt.Errorf("store: read %d: %w", seq, err)
		}
		m.ID = makeID(s.epoch, seq)
		out = append(out, m)
		sizes = append(sizes, msgSize(vlen, len(s.epoch), seq))
	}
	s.mu.Lock()
	for i, m := range out {
		if len(s.issued) >= maxIssued {
			break
		}
		if _, gone := s.pending[m.Seq]; !gone {
			s.issued[m.Seq] = sizes[i]
		}
	}
	if n := len(s.issued); n > s.issuedPeak {
		s.issuedPeak = n
	}
	s.mu.Unlock()
	return out, nil
}

func (s *Store) isPending(seq uint64) bool {
	s.mu.Lock()
	_, ok := s.pending[seq]
	s.mu.Unlock()
	return ok
}

func (s *Store) dropCorrupt(seq uint64, size int64) {
	s.mu.Lock()
	if _, ok := s.pending[seq]; !ok {
		s.markLocked(seq)
		s.delQueue = append(s.delQueue, seq)
		s.count--
		s.bytes -= size
	}
	s.mu.Unlock()
	s.wake()
}

// Delete implements Queue. The deletes are visible to Read and Stats when
// it returns, and written to badger by the committer's next round without
// a sync of their own: a delete lost to a power cut means one duplicate
// publish, never a lost message.
func (s *Store) Delete(seqs ...uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	s.snap.RLock()
	defer s.snap.RUnlock()
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return ErrClosed
	}
	head := s.head
	s.mu.Unlock()

	txn := s.db.NewTransaction(false)
	defer txn.Discard()
	var key [keyLen]byte
	marked := 0
	for _, seq := range seqs {
		if seq < head {
			continue
		}
		s.mu.Lock()
		_, gone := s.pending[seq]
		size, issued := s.issued[seq]
		if !gone && issued {
			s.markLocked(seq)
			s.delQueue = append(s.delQueue, seq)
			s.count--
			s.bytes -= size
			s.st.Deleted++
			marked++
		}
		s.mu.Unlock()
		if gone || issued {
			continue
		}
		putKey(key[:], seq)
		item, err := txn.Get(key[:])
		if errors.Is(err, badger.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return fmt.Errorf("store: delete %d: %w", seq, err)
		}
		size = msgSize(int(item.ValueSize()), len(s.epoch), seq)
		if item.ValueSize() >= s.opts.ValueThreshold {
			// In the value log, ValueSize is an estimate.
			if err := item.Value(func(v []byte) error {
				size = msgSize(len(v), len(s.epoch), seq)
				return nil
			}); err != nil {
				return fmt.Errorf("store: delete %d: %w", seq, err)
			}
		}
		s.mu.Lock()
		if _, ok := s.pending[seq]; !ok {
			s.markLocked(seq)
			s.delQueue = append(s.delQueue, seq)
			s.count--
			s.bytes -= size
			s.st.Deleted++
			marked++
		}
		s.mu.Unlock()
	}
	if marked > 0 {
		s.wake()
	}
	return nil
}

// Notify implements Queue: the channel receives after each group of
// appends is written.
func (s *Store) Notify() <-chan struct{} { return s.notify }

// Stats implements Queue.
func (s *Store) Stats() Stats {
	now := time.Now()
	s.mu.Lock()
	due := !s.closed && now.Sub(s.diskAt) >= time.Second
	if due {
		s.diskAt = now
	}
	s.mu.Unlock()
	if due {
		// Some dozens of files: at most once a second, without the lock.
		d := diskUsage(s.opts.Dir)
		s.mu.Lock()
		s.st.DiskBytes = d
		s.mu.Unlock()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st
	st.Messages = s.count
	st.Bytes = s.bytes
	st.Oldest = s.headTime
	return st
}

// Epoch is the store's random identity, the first part of every ID.
func (s *Store) Epoch() string { return s.epoch }

// Close writes what is queued, stops the committer and closes badger. It
// is idempotent; Appends after it return ErrClosed.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.mu.Unlock()
		close(s.stop)
		<-s.done
		s.snap.Lock() // no Read or Delete is using badger any more
		defer s.snap.Unlock()
		s.mu.Lock()
		s.st.DiskBytes = diskUsage(s.opts.Dir)
		s.mu.Unlock()
		s.closeErr = s.db.Close()
		if s.closeErr == nil {
			s.mu.Lock()
			s.st.DiskBytes = diskUsage(s.opts.Dir)
			s.mu.Unlock()
		}
	})
	return s.closeErr
}
