package agent

import (
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeway/edgeway/internal/cloudtest"
	"github.com/edgeway/edgeway/internal/gwtest"
	"github.com/edgeway/edgeway/protocols/mqttsn/mqttsntest"
	"github.com/edgeway/edgeway/store"
	"github.com/edgeway/edgeway/uplink"
)

// TestStoreUnavailableAtStart: the queue directory is held by another
// process's store when the agent starts. The agent comes up anyway, its
// MQTT-SN gateway refuses publishes (no PUBACK with rc 0: nothing the
// cloud would never get is acknowledged), and once the other store lets
// go the agent opens the queue by itself, starts the uplink, and the
// device's messages reach the cloud broker.
func TestStoreUnavailableAtStart(t *testing.T) {
	defer func(a, b time.Duration) { storeRetryMin, storeRetryMax = a, b }(storeRetryMin, storeRetryMax)
	storeRetryMin, storeRetryMax = 50*time.Millisecond, 200*time.Millisecond

	cl := cloudtest.Start(t, "127.0.0.1:0")
	dir := t.TempDir()
	holder, err := store.Open(store.Options{Dir: filepath.Join(dir, "data", "queue")})
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close()

	// Start fails the test if the agent does not come up and wait.
	a, _ := startE2EAgent(t, e2eConfig, cl.Addr, dir)
	if a.Uplink() != nil {
		t.Fatal("uplink running without a store")
	}

	app := newPahoPeer(t, cl.Addr)
	up, err := app.Subscribe("site/e2e/sn/#")
	if err != nil {
		t.Fatal(err)
	}
	d := mqttsntest.DialUDP(t, listenerAddr(t, a, "mqttsn"))
	d.Connect("sensor1", true, 60)
	id := d.Register(1, "temp")
	d.Send(mqttsntest.PublishMsg(mqttsntest.QoS1, id, 10, []byte("refused")))
	if p := d.Expect(mqttsntest.PUBACK); p.RC() == 0 {
		t.Fatal("a publish was acknowledged while there is no store to keep it")
	}

	holder.Close()
	gwtest.Eventually(t, "uplink connected after the store opened", func() bool {
		u := a.Uplink()
		return u != nil && u.Status().State == uplink.StateConnected
	})
	for i := range 5 {
		d.Send(mqttsntest.PublishMsg(mqttsntest.QoS1, id, uint16(20+i), []byte(fmt.Sprint(i))))
		if p := d.Expect(mqttsntest.PUBACK); p.RC() != 0 {
			t.Fatalf("PUBACK rc %d after the store opened", p.RC())
		}
	}
	for i := range 5 {
		select {
		case m := <-up:
			if m.Topic != "site/e2e/sn/temp" || string(m.Payload) != fmt.Sprint(i) {
				t.Fatalf("cloud got %s %q, want site/e2e/sn/temp %d", m.Topic, m.Payload, i)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("cloud received %d of 5", i)
		}
	}
}
