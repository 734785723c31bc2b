package fault

import (
	"context"
	"testing"
	"time"

	"github.com/edgeway/edgeway/bench/benchkit"
)

// TestBlackholedUplink: the cloud link stops forwarding without closing
// (a dead route). The agent must notice by its keepalive, keep accepting
// into the store, reconnect when the link heals, and lose nothing.
func TestBlackholedUplink(t *testing.T) {
	var px *benchkit.Proxy
	r := newRig(t, func(c *benchkit.AgentConfig) {
		c.Extra = "" // keepalive "5s" from the generated config: noticed within 7.5s
	}, func(broker string) string {
		var err error
		if px, err = benchkit.NewProxy(broker); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(px.Close)
		return px.Addr
	})
	l := r.load(context.Background(), "mqttsn", 20, 10)
	waitAcked(t, l, 200, 30*time.Second)
	px.Blackhole(true)
	before := r.sub.Delivered()
	// Devices keep being acknowledged while nothing reaches the cloud.
	waitAcked(t, l, 300, 30*time.Second)
	time.Sleep(n(8*time.Second, 3*time.Second))
	if got := r.sub.Delivered() - before; got > 2*64 { // at most what was in flight when the hole opened
		t.Errorf("%d messages arrived through a black hole", got)
	}
	accepted := px.Accepted.Load()
	px.Blackhole(false)
	waitAcked(t, l, 200, 30*time.Second)
	l.Stop()
	r.expectAllArrived(l, 60*time.Second)
	if px.Accepted.Load() <= accepted {
		t.Errorf("the agent never reconnected after the black hole")
	}
}

// TestStoreFull: with the broker down the store fills to max_bytes. With
// block the device is refused (PUBACK 0x01) and everything it saw
// acknowledged still arrives. drop_new and drop_oldest acknowledge and
// then drop (store/types.go documents it: counted, never silent), so
// every acknowledged message either arrives or is counted as dropped.
func TestStoreFull(t *testing.T) {
	for _, policy := range []string{"block", "drop_new", "drop_oldest"} {
		t.Run(policy, func(t *testing.T) {
			r := newRig(t, func(c *benchkit.AgentConfig) {
				c.StoreMaxBytes, c.OnFull = "1MB", policy
			}, nil)
			r.mosq.Stop()
			g, err := r.env.Generator("mqttsn", benchkit.Options{QoS: 1, Timeout: 2 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			// 1 KB payloads: 3000 of them are about three times the store.
			l := benchkit.StartLoad(context.Background(), g, benchkit.LoadOptions{Clients: 10, Payload: 1024, MaxMessages: 300, FirstDev: r.env.Devs(10)})
			t.Cleanup(l.Stop)
			deadline := time.Now().Add(60 * time.Second)
			for l.Sent.Load() < 3000 && time.Now().Before(deadline) && !(policy == "block" && l.Failed.Load() >= 100) {
				time.Sleep(50 * time.Millisecond)
			}
			time.Sleep(500 * time.Millisecond)
			l.Stop()
			up, _ := r.status()["uplink"].(map[string]any)
			dropped, _ := up["dropped"].(float64)
			t.Logf("%s: sent %d, acknowledged %d, refused %d; uplink reports %v dropped, queue %v messages / %v bytes",
				policy, l.Sent.Load(), l.Acked.Load(), l.Failed.Load(), dropped, up["queue_messages"], up["queue_bytes"])
			if err := r.mosq.Start(); err != nil {
				t.Fatal(err)
			}
			switch policy {
			case "block":
				if l.Failed.Load() == 0 {
					t.Errorf("no publish was refused: the store never filled")
				}
				r.expectAllArrived(l, 60*time.Second)
			default:
				if dropped == 0 {
					t.Errorf("nothing counted as dropped: the store never filled")
				}
				left := r.sub.WaitFor(&l.AckedKeys, 30*time.Second, 10*time.Second)
				if float64(left) > dropped {
					up, _ := r.status()["uplink"].(map[string]any)
					t.Errorf("%d acknowledged messages missing but only %v counted as dropped; uplink now: %v", left, dropped, up)
				}
				t.Logf("%d acknowledged messages missing, %v counted as dropped", left, dropped)
			}
		})
	}
}
