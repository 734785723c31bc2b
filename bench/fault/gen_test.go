package fault

import (
	"context"
	"testing"
	"time"

	"github.com/edgeway/edgeway/bench/benchkit"
)

// TestGenerators: every registered generator gets QoS 1 messages through
// (the gateway, or the broker for "direct") to the cloud subscriber, so a
// benchmark never measures a generator that silently sends nothing.
func TestGenerators(t *testing.T) {
	r := newRig(t, nil, nil)
	for _, proto := range benchkit.Protocols() {
		t.Run(proto, func(t *testing.T) {
			if proto != "direct" && r.env.Addrs[proto] == "" {
				t.Skipf("the rig runs no %s gateway", proto)
			}
			l := r.load(context.Background(), proto, 3, 0)
			waitAcked(t, l, 60, 30*time.Second)
			l.Stop()
			r.expectAllArrived(l, 30*time.Second)
		})
	}
}
