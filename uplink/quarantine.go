package uplink

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/edgeway/edgeway/store"
)

// A poison message is one the cloud broker answers by closing the
// connection (a topic or size it refuses, an ACL that disconnects). The
// queue is strictly ordered and the message is resent first after every
// reconnect, so without a rule it blocks everything behind it forever.
//
// The rule: a connection the broker closed (EOF, reset: not a keepalive
// timeout, not a failed dial) while publishes were unacknowledged is a
// strike against the oldest of them. When the same message collects
// quarantine_after-1 strikes, the next connection sends it alone (a
// window of one) before anything else; a PUBACK clears it, one more
// closed connection with it alone in flight moves it out of the queue
// into the quarantine file, and the queue moves on. A flaky link cannot
// quarantine a message the broker would take: the broker has to close
// the connection every time, the last time with nothing else to blame.

// QuarantineFile is the file quarantined messages are appended to, under
// Deps.QuarantineDir.
const QuarantineFile = "uplink.jsonl"

// quarantined is one line of the quarantine file: the stored message
// (payload base64) and why it was set aside.
type quarantined struct {
	At       time.Time `json:"at"`
	Reason   string    `json:"reason"`
	Strikes  int       `json:"strikes"`
	Seq      uint64    `json:"seq"`
	ID       string    `json:"id"`
	Topic    string    `json:"topic"`
	Payload  []byte    `json:"payload"`
	QoS      byte      `json:"qos"`
	Retain   bool      `json:"retain,omitempty"`
	Gateway  string    `json:"gateway,omitempty"`
	ClientID string    `json:"clientid,omitempty"`
	Time     time.Time `json:"time"`
}

// suspicion is the run goroutine's record of the message under suspicion.
type suspicion struct {
	seq     uint64
	strikes int
}

// peerClosed reports whether err is the broker closing the connection
// rather than silence or a local failure.
func peerClosed(err error) bool {
	var ke *keepaliveError
	if errors.As(err, &ke) {
		return false
	}
	// Not net.ErrClosed: that is this side closing the socket.
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// probeSeq is the message the next connection must send alone, or 0.
func (u *Uplink) probeSeq() uint64 {
	if u.s.quarantineAfter > 0 && u.suspect.strikes >= u.s.quarantineAfter-1 {
		return u.suspect.seq
	}
	return 0
}

// judge runs after a connection ended with err; c.probe says whether that
// connection sent the suspect alone, and u.prev is what it left
// unacknowledged.
func (u *Uplink) judge(c *conn, err error) {
	if u.s.quarantineAfter == 0 {
		return
	}
	if !peerClosed(err) || len(u.prev) == 0 {
		u.suspect = suspicion{}
		return
	}
	oldest := u.prev[0].seq
	if oldest != u.suspect.seq {
		u.suspect = suspicion{seq: oldest, strikes: 1}
		return
	}
	u.suspect.strikes++
	if u.suspect.strikes < u.s.quarantineAfter || !c.probeSent || c.probe != oldest {
		if u.suspect.strikes >= u.s.quarantineAfter {
			u.suspect.strikes = u.s.quarantineAfter - 1 // not yet tried alone
		}
		return
	}
	u.quarantine(oldest, err)
}

// quarantine moves message seq from the queue into the quarantine file.
// If the file cannot take it (no directory, full, write error) the
// message is dropped and counted: it has proven it cannot be delivered,
// and keeping it would stop every other message.
func (u *Uplink) quarantine(seq uint64, cause error) {
	strikes := u.suspect.strikes
	u.suspect = suspicion{}
	msgs, err := u.q.Read(seq-1, 1)
	if err != nil || len(msgs) == 0 || msgs[0].Seq != seq {
		return // acknowledged, dropped or expired meanwhile
	}
	m := msgs[0]
	reason := fmt.Sprintf("the broker closed the connection %d times in a row with this message unacknowledged, the last time sent alone: %v", strikes, cause)
	werr := u.writeQuarantine(m, reason, strikes)
	if derr := u.q.Delete(seq); derr != nil {
		u.setError(fmt.Errorf("uplink %s: store delete of a quarantined message: %w", u.s.server, derr))
		return
	}
	for i, r := range u.prev {
		if r.seq == seq {
			u.prev = append(u.prev[:i:i], u.prev[i+1:]...)
			break
		}
	}
	if werr != nil {
		u.drop(1)
		u.log.Error("message refused by the cloud broker and not quarantined: dropped",
			"seq", seq, "id", m.ID, "topic", m.Topic, "bytes", len(m.Payload), "error", werr)
		return
	}
	u.quarantinedN.Add(1)
	u.met.quarantined.Inc()
	u.log.Error("message refused by the cloud broker: moved to quarantine",
		"seq", seq, "id", m.ID, "topic", m.Topic, "bytes", len(m.Payload),
		"file", filepath.Join(u.qdir, QuarantineFile), "strikes", strikes)
}

func (u *Uplink) writeQuarantine(m *store.Message, reason string, strikes int) error {
	if u.qdir == "" {
		return errors.New("no quarantine directory")
	}
	line, err := json.Marshal(quarantined{At: u.now().UTC(), Reason: reason, Strikes: strikes, Seq: m.Seq, ID: m.ID,
		Topic: m.Topic, Payload: m.Payload, QoS: m.QoS, Retain: m.Retain, Gateway: m.Gateway, ClientID: m.ClientID, Time: m.Time})
	if err != nil {
		return err
	}
	line = append(line, '\n')
	if err := os.MkdirAll(u.qdir, 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(u.qdir, QuarantineFile), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer f.Close()
	if st, err := f.Stat(); err != nil {
		return err
	} else if st.Size()+int64(len(line)) > u.s.quarantineMax {
		return fmt.Errorf("quarantine file full (%d bytes, quarantine_max_bytes %d)", st.Size(), u.s.quarantineMax)
	}
	if _, err := f.Write(line); err != nil {
		return err
	}
	return f.Sync()
}
