package agent

import (
	"context"
	"fmt"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
)

// When the store cannot be opened at start (a full filesystem, a
// directory another process holds, permissions fixed later), the agent
// does not give up until someone restarts it: gateways start, the
// broker's sink refuses every device publish (nothing is acknowledged
// that the cloud would never get: devices send again), and a retry loop
// opens the store and starts the uplink as soon as it can.

// storeDown is the broker's sink while there is no store.
type storeDown struct{ err error }

func (s storeDown) Accept(*broker.Message) error { return s.err }

// Store retry backoff: first retry after storeRetryMin, doubling to
// storeRetryMax.
var (
	storeRetryMin = 2 * time.Second
	storeRetryMax = time.Minute
)

// awaitStore installs the refusing sink and starts the retry loop. Called
// with a.mu held.
func (a *Agent) awaitStore(ctx context.Context, err error) {
	a.broker.SetSink(storeDown{fmt.Errorf("agent: no store: %w", err)})
	a.log.Error("store not available: refusing device messages and retrying", "error", err)
	base := context.WithoutCancel(ctx) // what the uplink will run under
	loop, cancel := context.WithCancel(base)
	done := make(chan struct{})
	a.storeRetry = func() { cancel(); <-done }
	go func() {
		defer close(done)
		wait := storeRetryMin
		for {
			select {
			case <-loop.Done():
				return
			case <-time.After(wait):
			}
			wait = min(2*wait, storeRetryMax)
			if loop.Err() != nil || a.retryStore(base) {
				return
			}
		}
	}()
}

// retryStore tries once; true when the loop is over (opened, stopped, or a
// reload opened it first).
func (a *Agent) retryStore(ctx context.Context) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.stopped {
		return true
	}
	if a.store != nil {
		return true
	}
	if !uplinkWanted(a.cfg.Uplink) {
		a.broker.SetSink(nil) // a reload turned the uplink off: local only
		return true
	}
	if err := a.startSinks(ctx); err != nil {
		if a.store != nil {
			// The store opened but the uplink did not start: the refusing
			// sink stays; a reload with a working [uplink] replaces it.
			a.log.Error("store opened, uplink not started", "error", err)
			return true
		}
		a.log.Warn("store still not available", "error", err)
		return false
	}
	a.log.Info("store opened: uplink started, device messages taken again")
	return true
}
