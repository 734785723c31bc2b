package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"time"
)

// Keys. A message key is prefixMsg + the 8-byte big-endian Seq, so that
// badger's key order is FIFO order. Meta keys live under their own prefix.
const (
	prefixMsg  = 'q'
	prefixMeta = 'm'
	keyLen     = 9
)

var (
	keyEpoch = []byte{prefixMeta, 'e', 'p', 'o', 'c', 'h'}
	keyHWM   = []byte{prefixMeta, 'h', 'w', 'm'} // highest Seq ever assigned
)

func msgKey(seq uint64) []byte {
	k := make([]byte, keyLen)
	k[0] = prefixMsg
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

func putKey(k []byte, seq uint64) {
	k[0] = prefixMsg
	binary.BigEndian.PutUint64(k[1:], seq)
}

func seqOf(k []byte) (uint64, bool) {
	if len(k) != keyLen || k[0] != prefixMsg {
		return 0, false
	}
	return binary.BigEndian.Uint64(k[1:]), true
}

// Value layout, version 1 (all integers big-endian):
//
//	off len
//	0   1   version = 1
//	1   1   flags: bits 0-1 QoS (0..2), bit 2 retain, bit 3 time present,
//	        bits 4-7 zero
//	2   8   receive time, int64 Unix nanoseconds (0 when absent)
//	10  2   len(Topic)
//	12  1   len(Gateway)
//	13  2   len(ClientID)
//	15  …   Topic, Gateway, ClientID, then Payload up to the end
//
// Seq and ID are not stored: Seq is the key and ID is the store epoch plus
// Seq. Fixed-width lengths make Message.Size a function of the value's
// length and Seq alone, so accounting needs no decode.
const (
	codecV1     = 1
	headerLen   = 15
	flagQoS     = 0x03
	flagRetain  = 0x04
	flagTime    = 0x08
	flagUnknown = 0xf0

	maxTopic    = 1<<16 - 1
	maxGateway  = 1<<8 - 1
	maxClientID = 1<<16 - 1
)

var (
	minTime = time.Unix(0, -1<<63)
	maxTime = time.Unix(0, 1<<63-1)
)

// errCorrupt marks a value that does not decode.
var errCorrupt = errors.New("store: corrupt value")

// encodedLen is the length of m's encoded value.
func encodedLen(m *Message) int {
	return headerLen + len(m.Topic) + len(m.Gateway) + len(m.ClientID) + len(m.Payload)
}

// appendValue appends m's encoded value to dst.
func appendValue(dst []byte, m *Message) ([]byte, error) {
	switch {
	case m.QoS > 2:
		return dst, fmt.Errorf("store: qos %d out of range", m.QoS)
	case len(m.Topic) > maxTopic:
		return dst, fmt.Errorf("store: topic of %d bytes is longer than %d", len(m.Topic), maxTopic)
	case len(m.Gateway) > maxGateway:
		return dst, fmt.Errorf("store: gateway of %d bytes is longer than %d", len(m.Gateway), maxGateway)
	case len(m.ClientID) > maxClientID:
		return dst, fmt.Errorf("store: clientid of %d bytes is longer than %d", len(m.ClientID), maxClientID)
	}
	flags := m.QoS
	if m.Retain {
		flags |= flagRetain
	}
	var ns int64
	if !m.Time.IsZero() {
		if m.Time.Before(minTime) || m.Time.After(maxTime) {
			return dst, fmt.Errorf("store: time %s out of range", m.Time)
		}
		flags |= flagTime
		ns = m.Time.UnixNano()
	}
	dst = append(dst, codecV1, flags)
	dst = binary.BigEndian.AppendUint64(dst, uint64(ns))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.Topic)))
	dst = append(dst, byte(len(m.Gateway)))
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(m.ClientID)))
	dst = append(dst, m.Topic...)
	dst = append(dst, m.Gateway...)
	dst = append(dst, m.ClientID...)
	dst = append(dst, m.Payload...)
	return dst, nil
}

// checkHeader validates v's header and returns the lengths of topic,
// gateway and clientid.
func checkHeader(v []byte) (tl, gl, cl int, err error) {
	if len(v) < headerLen {
		return 0, 0, 0, fmt.Errorf("%w: %d bytes, shorter than the %d-byte header", errCorrupt, len(v), headerLen)
	}
	if v[0] != codecV1 {
		return 0, 0, 0, fmt.Errorf("%w: unknown version %d", errCorrupt, v[0])
	}
	flags := v[1]
	if flags&flagUnknown != 0 || flags&flagQoS == 3 {
		return 0, 0, 0, fmt.Errorf("%w: bad flags %#02x", errCorrupt, flags)
	}
	if flags&flagTime == 0 && binary.BigEndian.Uint64(v[2:]) != 0 {
		return 0, 0, 0, fmt.Errorf("%w: time without its flag", errCorrupt)
	}
	tl = int(binary.BigEndian.Uint16(v[10:]))
	gl = int(v[12])
	cl = int(binary.BigEndian.Uint16(v[13:]))
	if headerLen+tl+gl+cl > len(v) {
		return 0, 0, 0, fmt.Errorf("%w: field lengths %d+%d+%d overrun %d bytes", errCorrupt, tl, gl, cl, len(v))
	}
	return tl, gl, cl, nil
}

// decodeValue decodes v into m, copying everything it keeps (v may be
// badger's memory). It sets neither Seq nor ID.
func decodeValue(v []byte, m *Message) error {
	tl, gl, cl, err := checkHeader(v)
	if err != nil {
		return err
	}
	flags := v[1]
	m.QoS = flags & flagQoS
	m.Retain = flags&flagRetain != 0
	m.Time = time.Time{}
	if flags&flagTime != 0 {
		m.Time = time.Unix(0, int64(binary.BigEndian.Uint64(v[2:])))
	}
	// One allocation for the three strings.
	strs := string(v[headerLen : headerLen+tl+gl+cl])
	m.Topic = strs[:tl]
	m.Gateway = strs[tl : tl+gl]
	m.ClientID = strs[tl+gl:]
	if p := v[headerLen+tl+gl+cl:]; len(p) > 0 {
		m.Payload = append([]byte(nil), p...)
	} else {
		m.Payload = nil
	}
	return nil
}

// valueTime is the receive time in v as Unix nanoseconds, 0 if absent.
// v must have passed checkHeader.
func valueTime(v []byte) int64 {
	if v[1]&flagTime == 0 {
		return 0
	}
	return int64(binary.BigEndian.Uint64(v[2:]))
}

func nsTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}

// idLen is len(Message.ID) for seq in a store with the given epoch length.
func idLen(epochLen int, seq uint64) int {
	n := 1
	for seq >= 10 {
		seq /= 10
		n++
	}
	return epochLen + 1 + n
}

// msgSize is Message.Size of the message stored as a value of length vlen
// under seq.
func msgSize(vlen, epochLen int, seq uint64) int64 {
	return int64(vlen-headerLen+idLen(epochLen, seq)) + 32
}

func makeID(epoch string, seq uint64) string {
	b := make([]byte, 0, len(epoch)+21)
	b = append(b, epoch...)
	b = append(b, '-')
	b = strconv.AppendUint(b, seq, 10)
	return string(b)
}
