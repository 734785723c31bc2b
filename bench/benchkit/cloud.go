package benchkit

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// seqSet is a growable bitset of sequence numbers.
type seqSet []uint64

func (s *seqSet) add(n uint64) (fresh bool) {
	w := int(n / 64)
	for len(*s) <= w {
		*s = append(*s, 0)
	}
	bit := uint64(1) << (n % 64)
	fresh = (*s)[w]&bit == 0
	(*s)[w] |= bit
	return fresh
}

func (s seqSet) has(n uint64) bool {
	w := int(n / 64)
	return w < len(s) && s[w]&(1<<(n%64)) != 0
}

// Ledger records message keys per device; safe for concurrent use.
type Ledger struct {
	mu   sync.Mutex
	devs map[uint32]*seqSet
	per  map[uint32]int64 // distinct keys per device
	dups map[uint32]int64 // repeated Adds per device
	n    int64
}

// Add records k and reports whether it was new.
func (l *Ledger) Add(k Key) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.devs == nil {
		l.devs, l.per, l.dups = map[uint32]*seqSet{}, map[uint32]int64{}, map[uint32]int64{}
	}
	s := l.devs[k.Dev]
	if s == nil {
		s = new(seqSet)
		l.devs[k.Dev] = s
	}
	if s.add(k.Seq) {
		l.n++
		l.per[k.Dev]++
		return true
	}
	l.dups[k.Dev]++
	return false
}

// CountRange returns the distinct keys and the repeated Adds of devices
// first…first+n-1: one phase's figures, whatever else is arriving.
func (l *Ledger) CountRange(first, n uint32) (distinct, dups int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for d := first; d < first+n; d++ {
		distinct += l.per[d]
		dups += l.dups[d]
	}
	return distinct, dups
}

// Has reports whether k was recorded.
func (l *Ledger) Has(k Key) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.devs[k.Dev]
	return s != nil && s.has(k.Seq)
}

// Len is the number of distinct keys.
func (l *Ledger) Len() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

// Missing lists keys in l that are not in other (at most limit of them,
// all counted).
func (l *Ledger) Missing(other *Ledger, limit int) (n int64, some []Key) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if other != l {
		other.mu.Lock() // always l before other: nothing calls other.Missing(l) concurrently
		defer other.mu.Unlock()
	}
	for dev, s := range l.devs {
		o := other.devs[dev]
		for w, word := range *s {
			var ow uint64
			if o != nil && w < len(*o) {
				ow = (*o)[w]
			}
			if word&^ow == 0 {
				continue
			}
			for b := 0; b < 64; b++ {
				if word&^ow&(1<<b) != 0 {
					k := Key{dev, uint64(w*64 + b)}
					n++
					if len(some) < limit {
						some = append(some, k)
					}
				}
			}
		}
	}
	return n, some
}

// Subscriber is the cloud side: a durable MQTT session on the broker that
// counts every bench message arriving, its latency and duplicates.
type Subscriber struct {
	client    paho.Client
	Seen      Ledger
	delivered atomic.Int64 // distinct
	dups      atomic.Int64
	foreign   atomic.Int64
	mu        sync.Mutex
	hist      *Hist
	// Latencies are recorded for devices first…first+n-1 only (n = 0: all),
	// so stragglers of an earlier phase do not colour this one's.
	first, n uint32
}

// SetPhase restricts latency recording to devices first…first+n-1 and
// starts a new histogram.
func (s *Subscriber) SetPhase(first, n uint32) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.first, s.n, s.hist = first, n, new(Hist)
}

// Subscribe connects to broker (host:port) as clientID with a persistent
// session and subscribes to filter at QoS 1, also after every reconnect.
func Subscribe(broker, clientID, filter string) (*Subscriber, error) {
	s := &Subscriber{hist: new(Hist)}
	o := paho.NewClientOptions().AddBroker("tcp://" + broker).SetClientID(clientID).
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(100 * time.Millisecond).SetMaxReconnectInterval(300 * time.Millisecond).
		SetKeepAlive(5 * time.Second).SetOrderMatters(false)
	o.SetOnConnectHandler(func(c paho.Client) {
		c.Subscribe(filter, 1, s.onMessage)
	})
	s.client = paho.NewClient(o)
	t := s.client.Connect()
	if !t.WaitTimeout(10*time.Second) || t.Error() != nil {
		return nil, fmt.Errorf("benchkit: subscriber connect %s: %v", broker, t.Error())
	}
	// The subscription is made in the connect handler; wait for it once.
	st := s.client.Subscribe(filter, 1, s.onMessage)
	if !st.WaitTimeout(10*time.Second) || st.Error() != nil {
		return nil, fmt.Errorf("benchkit: subscribe %s: %v", filter, st.Error())
	}
	return s, nil
}

func (s *Subscriber) onMessage(_ paho.Client, m paho.Message) {
	now := time.Now()
	// Gateways that translate into JSON carry the payload in a field.
	p, ok := decodePayload(m.Topic(), m.Payload())
	var dev uint32
	var seq uint64
	var sent time.Time
	if ok {
		dev, seq, sent, ok = Unstamp(p)
	}
	if !ok {
		s.foreign.Add(1)
		return
	}
	if !s.Seen.Add(Key{dev, seq}) {
		s.dups.Add(1)
		return
	}
	s.delivered.Add(1)
	s.mu.Lock()
	if s.n == 0 || (dev >= s.first && dev-s.first < s.n) {
		s.hist.Record(now.Sub(sent))
	}
	s.mu.Unlock()
}

// Delivered counts distinct bench messages received.
func (s *Subscriber) Delivered() int64 { return s.delivered.Load() }

// Foreign counts messages that carried no bench payload (registrations,
// updates, anything else under the filter).
func (s *Subscriber) Foreign() int64 { return s.foreign.Load() }

// Duplicates counts bench messages received again.
func (s *Subscriber) Duplicates() int64 { return s.dups.Load() }

// TakeHist returns the latencies recorded since the last call and starts
// a new histogram.
func (s *Subscriber) TakeHist() *Hist {
	s.mu.Lock()
	defer s.mu.Unlock()
	h := s.hist
	s.hist = new(Hist)
	return h
}

// Close disconnects.
func (s *Subscriber) Close() { s.client.Disconnect(200) }

// WaitFor waits until every key of acked arrived or within passed; it
// returns how many are still missing. stall ends the wait early once
// nothing new arrived for that long (0 = never).
func (s *Subscriber) WaitFor(acked *Ledger, within, stall time.Duration) int64 {
	deadline := time.Now().Add(within)
	last, lastChange := s.Delivered(), time.Now()
	for {
		n, _ := acked.Missing(&s.Seen, 0)
		if n == 0 || time.Now().After(deadline) {
			return n
		}
		if d := s.Delivered(); d != last {
			last, lastChange = d, time.Now()
		} else if stall > 0 && time.Since(lastChange) > stall {
			return n
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Clone copies the ledger.
func (l *Ledger) Clone() *Ledger {
	l.mu.Lock()
	defer l.mu.Unlock()
	c := &Ledger{devs: make(map[uint32]*seqSet, len(l.devs)), per: map[uint32]int64{}, dups: map[uint32]int64{}, n: l.n}
	for d, v := range l.per {
		c.per[d] = v
	}
	for d, s := range l.devs {
		cp := append(seqSet(nil), (*s)...)
		c.devs[d] = &cp
	}
	return c
}

// Connected reports whether the subscriber's connection is up now.
func (s *Subscriber) Connected() bool { return s.client.IsConnectionOpen() }
