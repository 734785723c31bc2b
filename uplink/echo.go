package uplink

import (
	"hash/maphash"
	"sync"
	"time"
)

// echoCapacity bounds the cache; past it the oldest entries go first.
const echoCapacity = 16384

// echoCache remembers messages sent upstream on topics the uplink is also
// subscribed to upstream, so that their copies coming back down are not
// delivered to local clients a second time. An entry is a hash of the
// upstream topic and payload with a count (a resend records it again) and
// lives for the echo window. With envelope = "json" the payload holds the
// message id, so only the uplink's own message can match; with raw
// payloads a cloud message equal in topic and payload to one just sent is
// taken for an echo too (see README.md).
type echoCache struct {
	window time.Duration
	seed   maphash.Seed

	mu sync.Mutex
	// Per key, the entries in fifo are live (count) or already taken
	// (taken); takes and expiries both go oldest first.
	count map[uint64]int
	taken map[uint64]int
	fifo  []echoEntry // in recording order, for expiry
	head  int
}

type echoEntry struct {
	key     uint64
	expires int64 // monotonic ns
}

func newEchoCache(window time.Duration) *echoCache {
	return &echoCache{window: window, seed: maphash.MakeSeed(), count: map[uint64]int{}, taken: map[uint64]int{}}
}

func (e *echoCache) enabled() bool { return e.window > 0 }

// key hashes prefix+topic and payload; the split of the topic does not
// change the hash.
func (e *echoCache) key(prefix, topic string, payload []byte) uint64 {
	var h maphash.Hash
	h.SetSeed(e.seed)
	h.WriteString(prefix)
	h.WriteString(topic)
	h.WriteByte(0) // topics hold no NUL
	h.Write(payload)
	return h.Sum64()
}

func (e *echoCache) record(key uint64, now int64) {
	e.mu.Lock()
	e.expireLocked(now)
	if len(e.fifo)-e.head >= echoCapacity {
		e.popLocked()
	}
	e.count[key]++
	e.fifo = append(e.fifo, echoEntry{key, now + int64(e.window)})
	e.mu.Unlock()
}

// take reports whether key is a recorded echo, and consumes one count.
func (e *echoCache) take(key uint64, now int64) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.expireLocked(now)
	if e.count[key] == 0 {
		return false
	}
	dec(e.count, key)
	e.taken[key]++
	return true
}

func dec(m map[uint64]int, key uint64) {
	if n := m[key]; n > 1 {
		m[key] = n - 1
	} else {
		delete(m, key)
	}
}

// popLocked removes the oldest entry.
func (e *echoCache) popLocked() {
	k := e.fifo[e.head].key
	if e.taken[k] > 0 {
		dec(e.taken, k)
	} else {
		dec(e.count, k)
	}
	e.head++
}

// expireLocked drops entries past their time.
func (e *echoCache) expireLocked(now int64) {
	for e.head < len(e.fifo) && e.fifo[e.head].expires <= now {
		e.popLocked()
	}
	if e.head > 1024 && e.head*2 > len(e.fifo) {
		e.fifo = append(e.fifo[:0], e.fifo[e.head:]...)
		e.head = 0
	}
}
