package benchkit

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// LoadOptions describe one population of virtual devices.
type LoadOptions struct {
	Clients int
	// Rate is messages per second per client; 0 is open throttle: each
	// client sends as fast as its acknowledgements (QoS 1) or its socket
	// (QoS 0) allow.
	Rate    float64
	Payload int
	// FirstDev numbers the devices FirstDev…FirstDev+Clients-1, so that
	// several loads in one run have distinct keys.
	FirstDev uint32
	// Idle connects the devices and publishes nothing.
	Idle bool
	// MaxMessages stops each client after that many messages (0 = no limit).
	MaxMessages int
}

// Load runs a population of devices until Stop.
type Load struct {
	gen    Generator
	o      LoadOptions
	cancel context.CancelFunc
	wg     sync.WaitGroup
	start  time.Time

	Sent, Acked, Failed, Dials, DialErrors atomic.Int64
	connected                              atomic.Int64
	// AckedKeys holds every message the far end acknowledged (QoS 1) or
	// that was written (QoS 0).
	AckedKeys Ledger
}

// StartLoad dials every client (spread over ~1 s per 1000 clients) and
// starts publishing. A device whose publish fails is closed and dialled
// again, so loads survive agent restarts.
func StartLoad(ctx context.Context, g Generator, o LoadOptions) *Load {
	ctx, cancel := context.WithCancel(ctx)
	l := &Load{gen: g, o: o, cancel: cancel, start: time.Now()}
	for i := 0; i < o.Clients; i++ {
		l.wg.Add(1)
		go l.client(ctx, o.FirstDev+uint32(i), time.Duration(i)*time.Millisecond)
	}
	return l
}

// slot returns the send time before dev's next one. With a rate, device
// i of n sends at start + i/n of the interval, + k intervals: the load is
// spread evenly over each interval whenever the devices connect. (Anchored
// at each device's connect time, devices that a gateway lets in together
// — JT/T 808 registrations sharing one file write — would send in step,
// in bursts that measure queueing, not the gateway.)
func (l *Load) slot(dev uint32, interval time.Duration) time.Time {
	now := time.Now()
	if interval <= 0 {
		return now
	}
	off := time.Duration(int64(interval) * int64(dev-l.o.FirstDev) / int64(max(l.o.Clients, 1)))
	s := l.start.Add(off)
	if late := now.Sub(s); late > 0 {
		s = s.Add((late/interval + 1) * interval)
	}
	return s.Add(-interval) // the loop adds one interval before waiting
}

// Connected is how many devices are connected now.
func (l *Load) Connected() int64 { return l.connected.Load() }

// WaitConnected waits until n devices are connected or within passed.
func (l *Load) WaitConnected(n int, within time.Duration) bool {
	deadline := time.Now().Add(within)
	for l.connected.Load() < int64(n) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true
}

// Stop ends every client and waits for them.
func (l *Load) Stop() {
	l.cancel()
	l.wg.Wait()
}

func (l *Load) client(ctx context.Context, dev uint32, delay time.Duration) {
	defer l.wg.Done()
	select {
	case <-time.After(delay):
	case <-ctx.Done():
		return
	}
	p := NewPayload(l.o.Payload)
	var seq uint64
	var interval time.Duration
	if l.o.Rate > 0 {
		interval = time.Duration(float64(time.Second) / l.o.Rate)
	}
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		l.Dials.Add(1)
		d, err := l.gen.Dial(ctx, dev)
		if err != nil {
			l.DialErrors.Add(1)
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
			}
			backoff = min(2*backoff, time.Second)
			continue
		}
		backoff = 50 * time.Millisecond
		l.connected.Add(1)
		if l.o.Idle {
			<-ctx.Done()
			l.connected.Add(-1)
			_ = d.Close()
			return
		}
		next := l.slot(dev, interval)
		for ctx.Err() == nil {
			if l.o.MaxMessages > 0 && seq >= uint64(l.o.MaxMessages) {
				<-ctx.Done()
				break
			}
			if interval > 0 {
				next = next.Add(interval)
				if w := time.Until(next); w > 0 {
					select {
					case <-time.After(w):
					case <-ctx.Done():
					}
					if ctx.Err() != nil {
						break
					}
				} else if w < -time.Second {
					next = time.Now() // fell behind: do not burst to catch up
				}
			}
			Stamp(p, dev, seq, time.Now())
			l.Sent.Add(1)
			err = d.Publish(ctx, p)
			if err == nil {
				l.Acked.Add(1)
				l.AckedKeys.Add(Key{dev, seq})
			}
			seq++
			if err != nil {
				if ctx.Err() == nil { // not the stop interrupting a publish
					l.Failed.Add(1)
				}
				break // redial: the session may be gone

			}
		}
		l.connected.Add(-1)
		_ = d.Close()
	}
}
