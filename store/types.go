// Package store is edgeway's durable FIFO of messages bound for the cloud,
// on badger. The uplink is its only reader: it reads a window from the
// oldest message not yet acknowledged, publishes it, and deletes each
// message only when the cloud broker has acknowledged it. A device's QoS
// 1/2 publish is acknowledged only after Append has returned, so with
// sync = "always" or "batch" nothing acknowledged is lost to a crash or a
// power cut.
package store

import (
	"context"
	"errors"
	"time"
)

// Message is one stored message.
type Message struct {
	// Seq is assigned by Append: strictly increasing, never reused, also
	// across restarts.
	Seq uint64
	// ID is unique across stores and restarts ("<store epoch>-<seq>"): it is
	// sent upstream so the cloud can drop duplicates of an at-least-once
	// delivery.
	ID       string
	Topic    string
	Payload  []byte
	QoS      byte
	Retain   bool
	Gateway  string // origin gateway kind
	ClientID string // origin client id
	Time     time.Time
}

// Size is what the message counts against max_bytes.
func (m *Message) Size() int64 {
	return int64(len(m.Topic)+len(m.Payload)+len(m.Gateway)+len(m.ClientID)+len(m.ID)) + 32
}

// OnFull is the policy when max_bytes is reached.
type OnFull string

// Policies for a full store.
const (
	// DropOldest deletes the oldest messages to make room (counted).
	DropOldest OnFull = "drop_oldest"
	// DropNew accepts the new message without storing it (counted).
	DropNew OnFull = "drop_new"
	// Block refuses the new message with ErrFull, so the protocol can tell
	// the device to retry (MQTT-SN congestion, CoAP 5.03…).
	Block OnFull = "block"
)

// SyncMode is when appends reach the disk.
type SyncMode string

// Sync modes.
const (
	// SyncAlways syncs every append before it returns: safest, slowest,
	// most SD-card wear.
	SyncAlways SyncMode = "always"
	// SyncBatch groups concurrent appends into one write and one sync
	// (group commit); each append still returns only after its sync.
	SyncBatch SyncMode = "batch"
	// SyncNone leaves syncing to the OS: a power cut can lose the last
	// seconds of acknowledged messages.
	SyncNone SyncMode = "none"
)

// Drop reasons passed to Options.OnDrop.
const (
	DropReasonFull    = "store_full"
	DropReasonExpired = "expired"
	// DropReasonOverload is a QoS 0 message (AppendNoWait) that arrived
	// while MaxNoWaitBytes were already waiting for the disk.
	DropReasonOverload = "overload"
	// DropReasonDiskFull is a QoS 0 message refused because the filesystem
	// had less than MinFreeBytes free.
	DropReasonDiskFull = "disk_full"
)

// MaxNoWaitBytes bounds the messages AppendNoWait has queued and the
// committer has not yet taken. QoS 0 devices sending faster than the disk
// writes would otherwise grow the heap without bound, and a heap past the
// agent's memory limit spends its CPU in the garbage collector, starving
// the uplink's drain with it (measured: a STOMP client at 40 000 QoS 0
// frames/s held the drain to 2 000/s).
const MaxNoWaitBytes = 4 << 20

// Errors callers branch on.
var (
	// ErrFull is returned by Append under the Block policy.
	ErrFull = errors.New("store: full")
	// ErrDiskFull is returned (wrapped, with the figures) by Append while
	// the filesystem has less than Options.MinFreeBytes free, and by Open
	// below a quarter of that.
	ErrDiskFull = errors.New("store: disk full")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("store: closed")
)

// Stats is a snapshot of the store.
type Stats struct {
	Messages    int64     `json:"messages"`
	Bytes       int64     `json:"bytes"`
	Oldest      time.Time `json:"oldest,omitzero"` // receive time of the oldest message
	Appended    uint64    `json:"appended"`
	Deleted     uint64    `json:"deleted"`
	DroppedFull uint64    `json:"dropped_full"`
	// DroppedOverload counts QoS 0 messages dropped at AppendNoWait
	// (MaxNoWaitBytes).
	DroppedOverload uint64 `json:"dropped_overload"`
	Expired         uint64 `json:"expired"`
	Syncs           uint64 `json:"syncs"`
	// Recovered counts stores found corrupt at open and moved aside.
	Recovered uint64 `json:"recovered"`
	DiskBytes int64  `json:"disk_bytes"` // LSM + value log on disk
	// DiskFree is the filesystem's free space at the last write (bytes an
	// unprivileged user may use; 0 until the first write).
	DiskFree int64 `json:"disk_free"`
	// RejectedDiskFull counts appends refused with ErrDiskFull (nothing
	// acknowledged: the device sends again), DroppedDiskFull the QoS 0
	// messages dropped for the same reason.
	RejectedDiskFull uint64 `json:"rejected_disk_full"`
	DroppedDiskFull  uint64 `json:"dropped_disk_full"`
}

// Queue is what the uplink needs from the store; *Store implements it and
// tests may supply their own.
type Queue interface {
	// Append stores messages durably (per the sync mode) and assigns Seq and
	// ID. It returns ErrFull under the Block policy.
	Append(ctx context.Context, msgs ...*Message) error
	// Read returns up to max messages with Seq > after, oldest first.
	Read(after uint64, max int) ([]*Message, error)
	// Delete removes acknowledged messages; unknown seqs are ignored.
	Delete(seqs ...uint64) error
	// Notify returns a channel that receives (without blocking the store,
	// coalesced) after each Append.
	Notify() <-chan struct{}
	// Stats is a snapshot.
	Stats() Stats
}
