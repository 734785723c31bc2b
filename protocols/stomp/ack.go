package stomp

import (
	"slices"

	"github.com/edgeway/edgeway/agent/gateway"
)

// ackMode is a SUBSCRIBE's `ack` header.
type ackMode uint8

const (
	ackAuto ackMode = iota
	ackClient
	ackClientIndividual
)

func parseAckMode(s string) (ackMode, bool) {
	switch s {
	case "", "auto":
		return ackAuto, true
	case "client":
		return ackClient, true
	case "client-individual":
		return ackClientIndividual, true
	}
	return 0, false
}

// subscription is one SUBSCRIBE. Every subscription is a QoS 1 broker
// subscription: a QoS 1/2 message stays unacknowledged in the broker until
// the STOMP client ACKs it (client modes) or it has been written to the
// socket (auto), so whatever is outstanding when the connection ends is
// redelivered by the broker.
type subscription struct {
	id, dest string // dest as the client wrote it ($share/… included)
	mode     ackMode
	shared   bool
	// unacked holds the MESSAGEs sent and awaiting ACK/NACK, in send
	// order (client mode acknowledges cumulatively).
	unacked []*pending
	// parked holds messages waiting for the window (max_inflight).
	parked []*pending
	qos0   int // QoS 0 messages in parked (bounded per connection by max_mqueue_len)
}

// pending is one message on its way to, or held by, a STOMP client.
type pending struct {
	d           gateway.Delivery // never modified: the writer reads it unlocked
	msgID       uint64           // message-id and ack id; 0 until sent
	redelivered bool
}

// deliveryDest is the key deliveries are matched to subscriptions with: the
// filter as subscribed, mountpoint removed.
func deliveryDest(d *gateway.Delivery) string {
	if d.Group != "" {
		return "$share/" + d.Group + "/" + d.Filter
	}
	return d.Filter
}

// Deliver implements gateway.Handler. It runs in whichever goroutine
// drains the broker session, so it only files the message and leaves the
// writing to the channel's writer.
func (ch *channel) Deliver(d gateway.Delivery) {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.closed || ch.closing {
		// QoS 1/2 stays unacknowledged in the broker, which redelivers it.
		return
	}
	p := &pending{d: d, redelivered: d.Dup}
	if d.Group != "" && !p.redelivered {
		p.redelivered = ch.p.redo.take(ch.redoKey(&d))
	}
	dest := deliveryDest(&d)
	sub := ch.byDest[dest]
	if sub == nil {
		if d.ID != 0 {
			// A resumed session's message before the client subscribed
			// again, or one racing an UNSUBSCRIBE of a shared
			// subscription: kept for a SUBSCRIBE to the same destination.
			ch.orphan(dest, p)
			return
		}
		ch.drop("no_subid")
		return
	}
	ch.offerLocked(sub, p)
}

func (ch *channel) redoKey(d *gateway.Delivery) redoKey {
	return redoKey{msg: d.Msg.ID, group: d.Group, filter: gateway.Mount(ch.mountpoint, d.Filter)}
}

// offerLocked sends p now if sub's window has room, or parks it.
func (ch *channel) offerLocked(sub *subscription, p *pending) {
	if sub.mode == ackAuto {
		if p.d.ID == 0 && ch.queuedMsgs >= ch.cfg.MaxMqueueLen {
			ch.drop("queue_full")
			return
		}
		ch.nextID++
		p.msgID = ch.nextID
		ch.enqueueLocked(outItem{d: &p.d, subID: sub.id, msgID: p.msgID, redelivered: p.redelivered, brokerAck: p.d.ID})
		return
	}
	if len(sub.parked) == 0 && len(sub.unacked) < ch.cfg.MaxInflight {
		ch.sendLocked(sub, p)
		return
	}
	if p.d.ID == 0 {
		if ch.parked0 >= ch.cfg.MaxMqueueLen {
			ch.drop("queue_full")
			return
		}
		sub.qos0++
		ch.parked0++
	}
	sub.parked = append(sub.parked, p)
}

func (ch *channel) sendLocked(sub *subscription, p *pending) {
	ch.nextID++
	p.msgID = ch.nextID
	sub.unacked = append(sub.unacked, p)
	if ch.acks == nil {
		ch.acks = map[uint64]ackRef{}
	}
	ch.acks[p.msgID] = ackRef{sub: sub, p: p}
	ch.enqueueLocked(outItem{d: &p.d, subID: sub.id, msgID: p.msgID, ackHdr: true, redelivered: p.redelivered})
}

// refillLocked sends parked messages while sub's window has room.
func (ch *channel) refillLocked(sub *subscription) {
	n := 0
	for n < len(sub.parked) && len(sub.unacked) < ch.cfg.MaxInflight {
		p := sub.parked[n]
		if p.d.ID == 0 {
			sub.qos0--
			ch.parked0--
		}
		ch.sendLocked(sub, p)
		n++
	}
	if n > 0 {
		clear(sub.parked[:n])
		sub.parked = sub.parked[n:]
		if len(sub.parked) == 0 {
			sub.parked = nil
		}
	}
}

// ackRef finds a sent message by its ack id.
type ackRef struct {
	sub *subscription
	p   *pending
}

// settleLocked applies an ACK (nack false) or NACK to ack id: one message
// for client-individual, it and every earlier unacknowledged one of the
// subscription for client. ACKed QoS 1/2 messages are returned for the
// caller to acknowledge to the broker once the lock is released; NACKed
// ones go back to the front of the subscription's queue, marked
// redelivered. It reports false for an id that is not outstanding.
func (ch *channel) settleLocked(id uint64, nack bool, brokerAcks []uint64) ([]uint64, bool) {
	ref, ok := ch.acks[id]
	if !ok {
		return brokerAcks, false
	}
	sub := ref.sub
	i := slices.Index(sub.unacked, ref.p)
	if i < 0 {
		delete(ch.acks, id)
		return brokerAcks, false
	}
	var settled []*pending
	if sub.mode == ackClient {
		settled = slices.Clone(sub.unacked[:i+1])
		clear(sub.unacked[:i+1])
		sub.unacked = sub.unacked[i+1:]
	} else {
		settled = []*pending{ref.p}
		sub.unacked = slices.Delete(sub.unacked, i, i+1)
	}
	for _, p := range settled {
		delete(ch.acks, p.msgID)
	}
	if nack {
		ch.m.count("messages.nacked")
		for _, p := range settled {
			p.msgID = 0
			p.redelivered = true
			if p.d.ID == 0 {
				sub.qos0++
				ch.parked0++
			}
		}
		sub.parked = append(settled, sub.parked...)
	} else {
		for _, p := range settled {
			if p.d.ID != 0 {
				brokerAcks = append(brokerAcks, p.d.ID)
			}
		}
	}
	ch.refillLocked(sub)
	return brokerAcks, true
}

// removeSubLocked forgets sub after UNSUBSCRIBE. Its outstanding QoS 1/2
// messages of a shared subscription stay unacknowledged in the broker (as
// orphans, given back on a new SUBSCRIBE to the destination, else handed
// to another group member when the connection ends); those of a plain
// subscription are acknowledged away and counted as dropped, since nobody
// else would get them. The broker ids to acknowledge are returned.
func (ch *channel) removeSubLocked(sub *subscription) []uint64 {
	delete(ch.subs, sub.id)
	delete(ch.byDest, sub.dest)
	var acks []uint64
	for _, list := range [][]*pending{sub.unacked, sub.parked} {
		for _, p := range list {
			if p.msgID != 0 {
				delete(ch.acks, p.msgID)
			}
			switch {
			case p.d.ID == 0:
				ch.drop("unsubscribed")
			case sub.shared:
				if p.msgID != 0 {
					p.redelivered = true
				}
				p.msgID = 0
				ch.orphan(sub.dest, p)
			default:
				ch.drop("unsubscribed")
				acks = append(acks, p.d.ID)
			}
		}
	}
	ch.parked0 -= sub.qos0
	sub.unacked, sub.parked, sub.qos0 = nil, nil, 0
	return acks
}

func (ch *channel) orphan(dest string, p *pending) {
	if ch.orphans == nil {
		ch.orphans = map[string][]*pending{}
	}
	ch.orphans[dest] = append(ch.orphans[dest], p)
}

// adoptOrphansLocked gives a new subscription the messages its
// destination left behind.
func (ch *channel) adoptOrphansLocked(sub *subscription) {
	ps := ch.orphans[sub.dest]
	if len(ps) == 0 {
		return
	}
	delete(ch.orphans, sub.dest)
	for _, p := range ps {
		ch.offerLocked(sub, p)
	}
}

// leftSharedLocked lists the shared-subscription messages this client
// received and did not acknowledge, for redeliveries to mark them when
// the broker hands them to another member.
func (ch *channel) leftSharedLocked() []redoKey {
	var keys []redoKey
	add := func(p *pending) {
		if p.d.ID != 0 && p.d.Group != "" && (p.msgID != 0 || p.redelivered) {
			keys = append(keys, ch.redoKey(&p.d))
		}
	}
	for _, sub := range ch.subs {
		for _, p := range sub.unacked {
			add(p)
		}
		for _, p := range sub.parked {
			add(p)
		}
	}
	for _, ps := range ch.orphans {
		for _, p := range ps {
			add(p)
		}
	}
	return keys
}

// reservedHeader reports headers of a SEND that are not carried to
// subscribers: they belong to the frame, or the MESSAGE sets its own.
func reservedHeader(k string) bool {
	switch k {
	case hdrDestination, hdrContentLength, hdrTransaction, hdrReceipt, hdrQoS,
		hdrMessageID, hdrSubscription, hdrAck, hdrRedelivered:
		return true
	}
	return false
}

// carriedHeaders are the SEND's custom headers (content-type included),
// first occurrence of each, for broker.Message.Headers; nil if none.
func carriedHeaders(f *Frame) map[string]string {
	var m map[string]string
	for _, h := range f.Headers {
		if reservedHeader(h.Key) {
			continue
		}
		if m == nil {
			m = make(map[string]string, 4)
		}
		if _, dup := m[h.Key]; !dup {
			m[h.Key] = h.Value
		}
	}
	return m
}

// appendMessage encodes a MESSAGE frame for it under version v.
func appendMessage(dst []byte, it *outItem, v Version, keys []string) ([]byte, []string) {
	d := it.d
	dst = append(dst, "MESSAGE\nsubscription:"...)
	dst = appendEscaped(dst, it.subID, v)
	dst = append(dst, "\nmessage-id:"...)
	dst = appendUint(dst, it.msgID)
	dst = append(dst, "\ndestination:"...)
	dst = appendEscaped(dst, d.Topic, v)
	if it.ackHdr {
		dst = append(dst, "\nack:"...)
		dst = appendUint(dst, it.msgID)
	}
	if it.redelivered {
		dst = append(dst, "\nredelivered:true"...)
	}
	dst = append(dst, '\n')
	if len(d.Headers) > 0 {
		keys = keys[:0]
		for k := range d.Headers {
			if !reservedHeader(k) && representable(Header{k, d.Headers[k]}, v) {
				keys = append(keys, k)
			}
		}
		slices.Sort(keys)
		for _, k := range keys {
			dst = appendEscaped(dst, k, v)
			dst = append(dst, ':')
			dst = appendEscaped(dst, d.Headers[k], v)
			dst = append(dst, '\n')
		}
	}
	dst = append(dst, "content-length:"...)
	dst = appendUint(dst, uint64(len(d.Payload)))
	dst = append(dst, "\n\n"...)
	dst = append(dst, d.Payload...)
	return append(dst, 0), keys
}
