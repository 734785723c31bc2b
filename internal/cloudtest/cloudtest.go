// Package cloudtest runs a real MQTT broker on loopback — mochi-mqtt in
// process, or Debian's mosquitto as a child — for tests that need "the cloud": the uplink, fleet pushes, the
// kill -9 test.
package cloudtest

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
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

// Mosquitto is Debian's mosquitto run as a child process on loopback.
type Mosquitto struct {
	Addr string
	cmd  *exec.Cmd
	rec  paho.Client
	mu   sync.Mutex
	got  map[string][][]byte
}

// MosquittoPath finds the mosquitto binary. Under CI a missing mosquitto
// fails the test (CI installs it); elsewhere the test is skipped.
func MosquittoPath(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/bin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p
	}
	if os.Getenv("CI") != "" {
		t.Fatal("mosquitto not installed (CI installs Debian's mosquitto)")
	}
	t.Skip("mosquitto not installed")
	return ""
}

// StartMosquitto runs mosquitto on addr (host:port; "127.0.0.1:0" picks a port).
func StartMosquitto(t testing.TB, addr string) *Mosquitto {
	t.Helper()
	bin := MosquittoPath(t)
	if strings.HasSuffix(addr, ":0") {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		addr = ln.Addr().String()
		ln.Close()
	}
	host, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()
	conf := filepath.Join(dir, "mosquitto.conf")
	body := fmt.Sprintf("listener %s %s\nallow_anonymous true\npersistence false\nmax_queued_messages 100000\n", port, host)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	m := &Mosquitto{Addr: addr, got: map[string][][]byte{}}
	m.cmd = exec.Command(bin, "-c", conf)
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mosquitto did not listen on %s", addr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return m
}

// Stop ends mosquitto.
func (m *Mosquitto) Stop() {
	if m.rec != nil {
		m.rec.Disconnect(100)
	}
	if m.cmd != nil && m.cmd.Process != nil {
		_ = m.cmd.Process.Kill()
		_ = m.cmd.Wait()
		m.cmd = nil
	}
}

// Record subscribes a plain paho client to filter (QoS 1) and keeps what arrives.
func (m *Mosquitto) Record(t testing.TB, filter string) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + m.Addr).SetClientID("cloudtest-recorder").SetCleanSession(true)
	m.rec = paho.NewClient(o)
	if tok := m.rec.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("recorder connect: %v", tok.Error())
	}
	tok := m.rec.Subscribe(filter, 1, func(_ paho.Client, msg paho.Message) {
		m.mu.Lock()
		m.got[msg.Topic()] = append(m.got[msg.Topic()], append([]byte(nil), msg.Payload()...))
		m.mu.Unlock()
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("recorder subscribe: %v", tok.Error())
	}
}

// Each calls fn for every recorded topic and payload.
func (m *Mosquitto) Each(fn func(topic string, payload []byte)) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for t, ps := range m.got {
		for _, p := range ps {
			fn(t, p)
		}
	}
}
