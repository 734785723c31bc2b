package uplink

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// run is the connection loop: connect, serve until the connection is
// lost, wait the backoff, again, until ctx ends.
func (u *Uplink) run(ctx context.Context) {
	defer close(u.runDone)
	if u.s.tls.InsecureSkipVerify && u.s.secure {
		u.log.Warn("tls.insecure_skip_verify is on: the cloud broker's certificate is not checked")
	}
	failures := 0
	first := true
	for {
		if !first {
			d := backoff(failures, u.s.backoffInitial, u.s.backoffMax, u.s.backoffJitter, u.rand())
			t := time.NewTimer(d)
			select {
			case <-ctx.Done():
				t.Stop()
				return
			case <-t.C:
			}
		}
		first = false
		u.setState(StateConnecting)
		u.attempts.Add(1)
		c, present, err := u.connect(ctx)
		if err != nil {
			u.setState(StateDisconnected)
			if ctx.Err() != nil {
				return
			}
			u.setError(fmt.Errorf("uplink %s: connect: %w", u.s.server, err))
			failures++
			continue
		}
		up := time.Now()
		u.stMu.Lock()
		u.lastLog = "" // the next failure is news again
		u.stMu.Unlock()
		u.connects.Add(1)
		u.cur.Store(c)
		u.setState(StateConnected)
		u.log.Info("connected", "clientid", u.s.clientID, "session_present", present,
			"keepalive", u.ka.current(), "resend", len(c.prev))
		err = c.serve(ctx)
		u.prev, u.prevOther = c.unacked(), c.otherUnacked()
		if ctx.Err() == nil {
			u.judge(c, err)
		}
		u.cur.Store(nil)
		u.inflight.Store(0)
		u.activeSubs.Store(0)
		u.setState(StateDisconnected)
		if ctx.Err() != nil && err == nil {
			u.log.Info("disconnected", "unacknowledged", len(u.prev))
			return
		}
		u.setError(fmt.Errorf("uplink %s: connection lost: %w", u.s.server, err))
		var ke *keepaliveError
		if errors.As(err, &ke) && ke.idle {
			u.ka.idleDied()
			u.log.Info("keepalive", "interval", u.ka.current(), "reason", "idle connection lost")
		}
		if time.Since(up) >= u.ka.current() {
			failures = 0
		} else {
			failures++
		}
		if ctx.Err() != nil {
			return
		}
	}
}
