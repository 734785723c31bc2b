package uplink

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/edgeway/edgeway/store"
)

// memQueue is an in-memory store.Queue for tests: the store is a seam
// here, the thing under test is the uplink. It keeps the contract of
// store.Store (seqs in order, max_bytes with the three on_full policies,
// Notify coalesced) and records every Delete so tests can check when a
// message went.
type memQueue struct {
	mu         sync.Mutex
	msgs       []*store.Message // by seq; deleted entries are nil
	head       int              // msgs[:head] are all nil
	live       int
	bytes      int64
	seq        uint64
	maxBytes   int64
	onFull     store.OnFull
	notify     chan struct{}
	stats      store.Stats
	deleted    []uint64 // every seq deleted, in order
	failRead   error    // injected into Read while set
	failDelete error    // injected into Delete while set
}

func newMemQueue() *memQueue {
	return &memQueue{notify: make(chan struct{}, 1), onFull: store.DropOldest, maxBytes: 1 << 40}
}

func (q *memQueue) Append(_ context.Context, msgs ...*store.Message) error {
	q.mu.Lock()
	for _, m := range msgs {
		cp := *m
		cp.ID = fmt.Sprintf("mem-%d", q.seq+1)
		sz := cp.Size()
		if q.bytes+sz > q.maxBytes {
			switch q.onFull {
			case store.Block:
				q.mu.Unlock()
				return store.ErrFull
			case store.DropNew:
				q.stats.DroppedFull++
				continue
			case store.DropOldest:
				for q.bytes+sz > q.maxBytes && q.live > 0 {
					q.dropOldestLocked()
					q.stats.DroppedFull++
				}
			}
		}
		q.seq++
		if cp.Time.IsZero() {
			cp.Time = time.Now()
		}
		cp.Seq = q.seq
		m.Seq, m.ID, m.Time = cp.Seq, cp.ID, cp.Time
		q.msgs = append(q.msgs, &cp)
		q.live++
		q.bytes += sz
		q.stats.Appended++
	}
	q.mu.Unlock()
	select {
	case q.notify <- struct{}{}:
	default:
	}
	return nil
}

func (q *memQueue) dropOldestLocked() {
	q.advanceLocked()
	if q.head < len(q.msgs) {
		q.bytes -= q.msgs[q.head].Size()
		q.msgs[q.head] = nil
		q.live--
	}
	q.advanceLocked()
}

// advanceLocked moves head past deleted messages and compacts.
func (q *memQueue) advanceLocked() {
	for q.head < len(q.msgs) && q.msgs[q.head] == nil {
		q.head++
	}
	if q.head > 1024 && q.head > len(q.msgs)/2 {
		n := copy(q.msgs, q.msgs[q.head:])
		clear(q.msgs[n:])
		q.msgs = q.msgs[:n]
		q.head = 0
	}
}

func (q *memQueue) Read(after uint64, max int) ([]*store.Message, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.failRead != nil {
		return nil, q.failRead
	}
	i := q.head + sort.Search(len(q.msgs)-q.head, func(i int) bool { return q.seqAt(q.head+i) > after })
	var out []*store.Message
	for ; i < len(q.msgs) && len(out) < max; i++ {
		if m := q.msgs[i]; m != nil && m.Seq > after {
			cp := *m
			out = append(out, &cp)
		}
	}
	return out, nil
}

// seqAt finds a seq for a deleted slot, for the binary search: the next
// live message's, or past the end.
func (q *memQueue) seqAt(i int) uint64 {
	for ; i < len(q.msgs); i++ {
		if q.msgs[i] != nil {
			return q.msgs[i].Seq
		}
	}
	return ^uint64(0)
}

func (q *memQueue) Delete(seqs ...uint64) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.failDelete != nil {
		return q.failDelete
	}
	for _, s := range seqs {
		i := q.head + sort.Search(len(q.msgs)-q.head, func(i int) bool { return q.seqAt(q.head+i) >= s })
		for i < len(q.msgs) && q.msgs[i] == nil {
			i++
		}
		if i < len(q.msgs) && q.msgs[i] != nil && q.msgs[i].Seq == s {
			q.bytes -= q.msgs[i].Size()
			q.msgs[i] = nil
			q.live--
			q.stats.Deleted++
			q.deleted = append(q.deleted, s)
		}
	}
	q.advanceLocked()
	return nil
}

func (q *memQueue) Notify() <-chan struct{} { return q.notify }

func (q *memQueue) Stats() store.Stats {
	q.mu.Lock()
	defer q.mu.Unlock()
	st := q.stats
	st.Messages, st.Bytes = int64(q.live), q.bytes
	for _, m := range q.msgs[q.head:] {
		if m != nil {
			st.Oldest = m.Time
			break
		}
	}
	return st
}

// has reports whether seq is still queued.
func (q *memQueue) has(seq uint64) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, m := range q.msgs {
		if m != nil && m.Seq == seq {
			return true
		}
	}
	return false
}

func (q *memQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.live
}

var errInjected = errors.New("injected")

func (q *memQueue) inject(read, del error) {
	q.mu.Lock()
	q.failRead, q.failDelete = read, del
	q.mu.Unlock()
}
