package uplink

import (
	"sync/atomic"
	"time"
)

// keepalive is the ping interval in force. Fixed, it is the configured
// value. With keepalive = "auto" it adapts to the NAT in front of the box
// (see README.md, "Keepalive"):
//
//   - a connection that died of a missing PINGRESP after an idle interval
//     (the NAT forgot the idle mapping) halves the interval and lowers a
//     ceiling to 90 % of the interval that failed;
//   - every autoGrowAfter answered idle pings in a row lengthen it by 10 %
//     (at least 1 s), up to the ceiling and to what the connection
//     advertised in its CONNECT;
//   - always within [15 s, 300 s].
//
// Only the run goroutine changes it; the reader and Status read current.
type keepalive struct {
	auto    bool
	k       atomic.Int64 // current interval
	ceiling time.Duration
	streak  int
}

// autoGrowAfter is how many answered idle pings in a row lengthen an
// automatic keepalive.
const autoGrowAfter = 10

func (ka *keepalive) init(k time.Duration, auto bool) {
	ka.auto = auto
	ka.k.Store(int64(k))
	ka.ceiling = autoKeepaliveMax
}

func (ka *keepalive) current() time.Duration { return time.Duration(ka.k.Load()) }

// advertised is the keepalive put in CONNECT: the server declares us gone
// after 1.5 times it. With auto it leaves room to lengthen the interval
// during the connection.
func (ka *keepalive) advertised() time.Duration {
	k := ka.current()
	if ka.auto {
		k = min(2*k, autoKeepaliveMax)
	}
	return k
}

// idleAnswered records a PINGRESP to a ping sent after an idle interval
// on a connection that advertised adv.
func (ka *keepalive) idleAnswered(adv time.Duration) {
	if !ka.auto {
		return
	}
	ka.streak++
	if ka.streak < autoGrowAfter {
		return
	}
	ka.streak = 0
	k := ka.current()
	next := k + max(k/10, time.Second)
	next = min(next, ka.ceiling, adv, autoKeepaliveMax)
	if next > k {
		ka.k.Store(int64(next))
	}
}

// idleDied records a connection lost to a ping unanswered after an idle
// interval.
func (ka *keepalive) idleDied() {
	if !ka.auto {
		return
	}
	k := ka.current()
	ka.streak = 0
	ka.ceiling = max(k*9/10, autoKeepaliveMin)
	ka.k.Store(int64(max(k/2, autoKeepaliveMin)))
}

// backoff is the wait before connection attempt number failures+1 after
// failures attempts in a row that failed (or connections that did not
// last a keepalive interval). After a connection that held, the first
// attempt waits only a random share of jitter × initial, so a fleet does
// not come back all at once; then initial, doubling up to max, each
// spread by ± jitter.
func backoff(failures int, initial, maxWait time.Duration, jitter, rnd float64) time.Duration {
	if failures <= 0 {
		return time.Duration(jitter * rnd * float64(initial))
	}
	d := initial
	for i := 1; i < failures && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	spread := jitter * float64(d) * (2*rnd - 1)
	return max(time.Duration(float64(d)+spread), 0)
}
