package benchkit

import (
	"encoding/binary"
	"time"
)

// HeaderLen is the size of the stamp every payload starts with: a magic,
// the device index, the sequence number and the send time.
const HeaderLen = 2 + 4 + 8 + 8

const magic0, magic1 = 'e', 'b'

// Stamp writes the header into p (len(p) ≥ HeaderLen); the rest of p is
// padding the caller filled once.
func Stamp(p []byte, dev uint32, seq uint64, now time.Time) {
	p[0], p[1] = magic0, magic1
	binary.BigEndian.PutUint32(p[2:], dev)
	binary.BigEndian.PutUint64(p[6:], seq)
	binary.BigEndian.PutUint64(p[14:], uint64(now.UnixNano()))
}

// Unstamp reads a header; ok is false for payloads the bench did not send.
func Unstamp(p []byte) (dev uint32, seq uint64, sent time.Time, ok bool) {
	if len(p) < HeaderLen || p[0] != magic0 || p[1] != magic1 {
		return 0, 0, time.Time{}, false
	}
	return binary.BigEndian.Uint32(p[2:]), binary.BigEndian.Uint64(p[6:]),
		time.Unix(0, int64(binary.BigEndian.Uint64(p[14:]))), true
}

// NewPayload returns a payload buffer of size bytes (at least HeaderLen).
func NewPayload(size int) []byte {
	p := make([]byte, max(size, HeaderLen))
	for i := HeaderLen; i < len(p); i++ {
		p[i] = 'a' + byte(i%26)
	}
	return p
}

// Key identifies one message across the run.
type Key struct {
	Dev uint32
	Seq uint64
}
