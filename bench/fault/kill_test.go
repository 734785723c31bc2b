package fault

import (
	"context"
	"testing"
	"time"
)

// TestKillNineLoop: 50 MQTT-SN devices stream QoS 1 while the agent is
// SIGKILLed and restarted on the same data directory again and again.
// Every publish a device saw PUBACKed must reach the cloud.
func TestKillNineLoop(t *testing.T) {
	r := newRig(t, nil, nil)
	ctx := context.Background()
	l := r.load(ctx, "mqttsn", 50, n(10.0, 5.0))
	kills := n(20, 3)
	for i := 0; i < kills; i++ {
		waitAcked(t, l, 100, 30*time.Second) // traffic flows before each kill
		r.agent.Kill()
		time.Sleep(n[time.Duration](200, 100) * time.Millisecond)
		if err := r.agent.Start(); err != nil {
			t.Fatalf("restart %d: %v", i+1, err)
		}
	}
	waitAcked(t, l, 100, 30*time.Second)
	l.Stop()
	t.Logf("%d kills; %d publishes sent, %d acknowledged, %d redials", kills, l.Sent.Load(), l.Acked.Load(), l.Dials.Load())
	r.expectAllArrived(l, 60*time.Second)
}

// TestBrokerRestartLoop: MQTT-SN and STOMP devices stream QoS 1 while the
// cloud broker is stopped and started; nothing acknowledged is lost.
func TestBrokerRestartLoop(t *testing.T) {
	r := newRig(t, nil, nil)
	ctx := context.Background()
	sn := r.load(ctx, "mqttsn", 20, 10)
	st := r.load(ctx, "stomp", 10, 10)
	restarts := n(5, 2)
	for i := 0; i < restarts; i++ {
		waitAcked(t, sn, 100, 30*time.Second)
		r.mosq.Stop()
		waitAcked(t, sn, 100, 30*time.Second) // the agent keeps accepting into its store
		if err := r.mosq.Start(); err != nil {
			t.Fatal(err)
		}
	}
	waitAcked(t, st, 50, 30*time.Second)
	sn.Stop()
	st.Stop()
	r.expectAllArrived(sn, 60*time.Second)
	r.expectAllArrived(st, 60*time.Second)
	if r.agent.Exited() {
		t.Fatal("the agent exited")
	}
}
