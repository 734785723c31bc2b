package stomp

import (
	"log/slog"
	"strconv"
	"time"

	"github.com/edgeway/edgeway/agent/gateway"
)

// transaction buffers the SEND, ACK and NACK frames sent inside it until
// COMMIT. COMMIT checks every buffered frame first and applies them only
// if all pass, so a commit is applied whole or not at all.
type transaction struct {
	frames []*Frame
	bytes  int
	timer  *time.Timer
}

// authorizer is what COMMIT uses to check every SEND of a transaction
// before publishing any: a *gateway.Client that can answer "may I publish
// here?" without publishing. Without it the check happens as each SEND is
// published, and a denial part-way through leaves the earlier ones out.
type authorizer interface {
	Authorize(action gateway.Action, topic string) bool
}

func (ch *channel) onBegin(f *Frame) error {
	id := f.Get(hdrTransaction)
	if id == "" {
		return ch.fail(f, "missing_header", "Missing transaction", "BEGIN needs a transaction header")
	}
	ch.mu.Lock()
	_, dup := ch.txs[id]
	n := len(ch.txs)
	if !dup && n < maxTransactions {
		if ch.txs == nil {
			ch.txs = map[string]*transaction{}
		}
		tx := &transaction{}
		tx.timer = time.AfterFunc(ch.cfg.TransactionTimeout.D(), func() { ch.expire(id, tx) })
		ch.txs[id] = tx
	}
	ch.mu.Unlock()
	switch {
	case dup:
		return ch.fail(f, "transaction_in_use", "Transaction already started", "transaction "+id)
	case n >= maxTransactions:
		return ch.fail(f, "too_many_transactions", "Too many transactions", "at most "+strconv.Itoa(maxTransactions)+" open at once")
	}
	ch.receipt(f)
	return nil
}

// expire discards a transaction left open past transaction_timeout.
func (ch *channel) expire(id string, tx *transaction) {
	ch.mu.Lock()
	if ch.txs[id] != tx {
		ch.mu.Unlock()
		return
	}
	delete(ch.txs, id)
	ch.txBytes -= tx.bytes
	ch.mu.Unlock()
	ch.m.count("transactions.expired")
	ch.logAt(slog.LevelDebug, "transaction expired", "transaction", id)
}

// take removes and returns an open transaction.
func (ch *channel) take(id string) *transaction {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	tx := ch.txs[id]
	if tx != nil {
		delete(ch.txs, id)
		ch.txBytes -= tx.bytes
		tx.timer.Stop()
	}
	return tx
}

// buffer adds a SEND, ACK or NACK to transaction id (already validated).
func (ch *channel) buffer(id string, f *Frame) error {
	ch.mu.Lock()
	tx := ch.txs[id]
	full := tx != nil && (len(tx.frames) >= maxTxFrames || ch.txBytes+len(f.Body) > maxTxBufferedSize)
	if tx != nil && !full {
		tx.frames = append(tx.frames, f.Clone())
		tx.bytes += len(f.Body)
		ch.txBytes += len(f.Body)
	}
	ch.mu.Unlock()
	switch {
	case tx == nil:
		return ch.fail(f, "unknown_transaction", "Transaction "+id+" not found", "no open transaction "+id+" (never begun, committed, aborted or expired)")
	case full:
		return ch.fail(f, "transaction_too_large", "Transaction too large", "at most "+strconv.Itoa(maxTxFrames)+" frames and "+strconv.Itoa(maxTxBufferedSize)+" buffered bytes")
	}
	ch.receipt(f)
	return nil
}

func (ch *channel) onAbort(f *Frame) error {
	id := f.Get(hdrTransaction)
	if id == "" {
		return ch.fail(f, "missing_header", "Missing transaction", "ABORT needs a transaction header")
	}
	if ch.take(id) == nil {
		return ch.fail(f, "unknown_transaction", "Transaction "+id+" not found", "no open transaction "+id)
	}
	ch.m.count("transactions.aborted")
	ch.receipt(f)
	return nil
}

func (ch *channel) onCommit(f *Frame) error {
	id := f.Get(hdrTransaction)
	if id == "" {
		return ch.fail(f, "missing_header", "Missing transaction", "COMMIT needs a transaction header")
	}
	tx := ch.take(id)
	if tx == nil {
		return ch.fail(f, "unknown_transaction", "Transaction "+id+" not found", "no open transaction "+id)
	}
	cl := ch.client()
	// Check everything first: SENDs were validated when buffered; what
	// can still refuse them is authorization.
	if az, ok := any(cl).(authorizer); ok {
		for _, bf := range tx.frames {
			if bf.Command != CmdSend {
				continue
			}
			if dest := bf.Get(hdrDestination); !az.Authorize(gateway.ActionPublish, dest) {
				ch.m.count("transactions.failed")
				return ch.fail(f, "not_authorized", "Not authorized", "transaction "+id+" not applied: publish to "+dest+" denied")
			}
		}
	}
	// Apply in order. ACK/NACK runs are settled together so the broker
	// acknowledgements leave under one lock.
	var acks []*Frame
	for i, bf := range tx.frames {
		if bf.Command != CmdSend {
			acks = append(acks, bf)
			continue
		}
		if len(acks) > 0 {
			ch.settle(acks)
			acks = acks[:0]
		}
		qos, _ := parseQoS(bf)
		if err := ch.publish(bf, bf.Get(hdrDestination), qos, f); err != nil {
			ch.m.count("transactions.failed")
			ch.logAt(slog.LevelWarn, "transaction applied in part", "transaction", id, "applied", i, "of", len(tx.frames))
			return err
		}
	}
	if len(acks) > 0 {
		ch.settle(acks)
	}
	ch.m.count("transactions.committed")
	ch.receipt(f)
	return nil
}
