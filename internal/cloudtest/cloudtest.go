// Package cloudtest runs a real MQTT broker (mochi-mqtt, in process) on
// loopback for tests that need "the cloud": the uplink, fleet pushes, the
// kill -9 test.
package cloudtest

import (
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	mochi "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/listeners"
	mpackets "github.com/mochi-mqtt/server/v2/packets"
)

// Cloud is a running broker.
type Cloud struct {
	Addr string
	srv  *mochi.Server
	mu   sync.Mutex
	got  map[string][][]byte
}

type allowAll struct{ mochi.HookBase }

func (h *allowAll) ID() string { return "allow-all" }
func (h *allowAll) Provides(b byte) bool {
	return b == mochi.OnConnectAuthenticate || b == mochi.OnACLCheck
}
func (h *allowAll) OnConnectAuthenticate(*mochi.Client, mpackets.Packet) bool { return true }
func (h *allowAll) OnACLCheck(*mochi.Client, string, bool) bool               { return true }

// Start runs a broker on addr ("127.0.0.1:0" for any port; a fixed
// address is retried for a while, as a restarted broker's port may linger).
// It records every message published on the filters given to Record.
func Start(t testing.TB, addr string) *Cloud {
	t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 50; i++ {
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	c := &Cloud{Addr: ln.Addr().String(), got: map[string][][]byte{}}
	c.srv = mochi.New(&mochi.Options{InlineClient: true, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := c.srv.AddHook(new(allowAll), nil); err != nil {
		t.Fatal(err)
	}
	if err := c.srv.AddListener(listeners.NewNet("t", ln)); err != nil {
		t.Fatal(err)
	}
	if err := c.srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// Stop closes the broker.
func (c *Cloud) Stop() { c.srv.Close() }

// Record keeps every payload published on filter, by topic.
func (c *Cloud) Record(t testing.TB, filter string) {
	t.Helper()
	err := c.srv.Subscribe(filter, 1, func(_ *mochi.Client, _ mpackets.Subscription, pk mpackets.Packet) {
		c.mu.Lock()
		c.got[pk.TopicName] = append(c.got[pk.TopicName], append([]byte(nil), pk.Payload...))
		c.mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// Received returns the payloads recorded on topic so far.
func (c *Cloud) Received(topic string) [][]byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([][]byte(nil), c.got[topic]...)
}

// Each calls fn for every recorded topic and payload.
func (c *Cloud) Each(fn func(topic string, payload []byte)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for t, ps := range c.got {
		for _, p := range ps {
			fn(t, p)
		}
	}
}

// Publish sends a message from the cloud side.
func (c *Cloud) Publish(t testing.TB, topic string, payload []byte, qos byte, retain bool) {
	t.Helper()
	if err := c.srv.Publish(topic, payload, retain, qos); err != nil {
		t.Fatal(err)
	}
}

// HasSubscriber reports whether some client (not the inline recorder)
// subscribed to exactly filter.
func (c *Cloud) HasSubscriber(filter string) bool {
	for _, cl := range c.srv.Clients.GetAll() {
		if cl.Net.Inline {
			continue
		}
		if _, ok := cl.State.Subscriptions.Get(filter); ok {
			return true
		}
	}
	return false
}
