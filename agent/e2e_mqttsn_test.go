//go:build linux

package agent

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/pion/dtls/v3"

	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/internal/cloudtest"
	"github.com/edgeway/edgeway/internal/gwtest"
	"github.com/edgeway/edgeway/internal/pty"
	sn "github.com/edgeway/edgeway/protocols/mqttsn/mqttsntest"
	"github.com/edgeway/edgeway/protocols/stomp/stomptest"
)

// The MQTT-SN end-to-end tests: devices (the independent encoder of
// mqttsntest) on real UDP, DTLS and pty sockets; the agent in process;
// its uplink to a real MQTT broker; and a paho client there as the cloud
// application. Every assertion is on what the cloud application received
// or what came back down to the device.
//
// The mountpoint carries the clientid, so the cloud topic says which
// client published: device topic "t" of client "c" is "site/e2e/sn/c/t"
// at the cloud.

const snE2EConfig = `
[agent]
id = "e2e"
data_dir = "DATA"
security_profile = "legacy"
[api]
listen = ""
[uplink]
server = "mqtt://CLOUD"
topic_prefix = "site/${agent.id}/"
[gateway.mqttsn]
mountpoint = "sn/${clientid}/"
predefined = [{ id = 40000, topic = "pre/big" }, { id = 7, topic = "pre/small" }]
[gateway.mqttsn.listeners.udp.default]
bind = "127.0.0.1:0"
[gateway.mqttsn.listeners.dtls.default]
bind = "127.0.0.1:0"
psk = [{ identity = "dev1", key = "secret-of-dev1" }]
`

// snCloud starts the cloud broker: Debian's mosquitto when it is
// installed (CI installs it, and cloudtest fails the test under CI when it
// is missing), else mochi-mqtt in process, as startE2E uses, so the tests
// never skip.
func snCloud(t *testing.T) string {
	t.Helper()
	_, statErr := os.Stat("/usr/sbin/mosquitto")
	_, pathErr := exec.LookPath("mosquitto")
	if statErr == nil || pathErr == nil || os.Getenv("CI") != "" {
		return cloudtest.StartMosquitto(t, "127.0.0.1:0").Addr
	}
	return cloudtest.Start(t, "127.0.0.1:0").Addr
}

type snE2E struct {
	t   *testing.T
	a   *Agent
	app *pahoPeer
}

// startSNE2E runs an agent with snE2EConfig (and extra TOML appended)
// whose uplink is connected to a fresh cloud broker, and the cloud
// application on that broker.
func startSNE2E(t *testing.T, extra string) *snE2E {
	t.Helper()
	cloud := snCloud(t)
	a, _ := runE2EAgent(t, snE2EConfig+extra, cloud, t.TempDir())
	return &snE2E{t: t, a: a, app: newPahoPeer(t, cloud)}
}

func (e *snE2E) gw() *gateway.Gateway {
	g, ok := e.a.Gateways().Get("mqttsn")
	if !ok {
		e.t.Fatal("mqttsn not running")
	}
	return g
}

func (e *snE2E) addr(listener string) string {
	e.t.Helper()
	l, ok := e.gw().Listener("mqttsn:" + listener)
	if !ok {
		e.t.Fatalf("listener %s not running", listener)
	}
	return l.Addr()
}

func (e *snE2E) device() *sn.Device { return sn.DialUDP(e.t, e.addr("udp:default")) }

func (e *snE2E) metric(name string) float64 { return e.gw().Metrics().Snapshot()[name] }

// subscribe subscribes the cloud application to filter (at the cloud).
func (e *snE2E) subscribe(filter string) <-chan stomptest.Message {
	e.t.Helper()
	ch, err := e.app.Subscribe(filter)
	if err != nil {
		e.t.Fatal(err)
	}
	return ch
}

// publish is the cloud application publishing at QoS 1.
func (e *snE2E) publish(topic, payload string) {
	e.t.Helper()
	if err := e.app.Publish(topic, []byte(payload)); err != nil {
		e.t.Fatal(err)
	}
}

// upstream waits until the cloud acknowledged n mirrored subscriptions,
// so that what the cloud application publishes next is routed to the agent.
func (e *snE2E) upstream(n int) {
	e.t.Helper()
	gwtest.Eventually(e.t, fmt.Sprintf("%d upstream subscriptions", n), func() bool {
		return e.a.Uplink().Status().Subscriptions >= n
	})
}

// queued waits until clientid's broker session holds n deliveries (an
// asleep client's).
func (e *snE2E) queued(clientid string, n int) {
	e.t.Helper()
	gwtest.Eventually(e.t, fmt.Sprintf("%d queued for %s", n, clientid), func() bool {
		c, ok := e.gw().Client(clientid)
		return ok && c.Session().Queued == n
	})
}

// expectCloud reads the next message the cloud application got and checks it.
func expectCloud(t *testing.T, ch <-chan stomptest.Message, topic, payload string) {
	t.Helper()
	select {
	case m := <-ch:
		if m.Topic != topic || string(m.Payload) != payload {
			t.Fatalf("cloud got %s %q, want %s %q", m.Topic, m.Payload, topic, payload)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("cloud did not receive %s %q", topic, payload)
	}
}

// expectPublish reads a PUBLISH from the device's gateway, acknowledges it
// if QoS 1, and checks topic id and payload.
func expectPublish(t *testing.T, d *sn.Device, topicID uint16, payload string) sn.Packet {
	t.Helper()
	p := d.Expect(sn.PUBLISH)
	if p.TopicID() != topicID || string(p.Payload()) != payload {
		t.Fatalf("device got PUBLISH topic %d %q, want %d %q", p.TopicID(), p.Payload(), topicID, payload)
	}
	if p.QoS() == 1 {
		d.Send(sn.PubackMsg(p.TopicID(), p.MsgID(), 0))
	}
	return p
}

// publishQoS1 publishes from the device and checks PUBACK accepted.
func publishQoS1(t *testing.T, d *sn.Device, flags byte, topicID, msgID uint16, payload string) {
	t.Helper()
	d.Send(sn.PublishMsg(sn.QoS1|flags, topicID, msgID, []byte(payload)))
	if p := d.Expect(sn.PUBACK); p.RC() != 0 || p.MsgID() != msgID {
		t.Fatalf("PUBACK %s", p)
	}
}

// connectWithWill runs CONNECT and the will handshake.
func connectWithWill(t *testing.T, d *sn.Device, clientid string, keepalive uint16, topic, msg string) {
	t.Helper()
	d.Send(sn.ConnectMsg(clientid, sn.Clean|sn.Will, keepalive))
	d.Expect(sn.WILLTOPICREQ)
	d.Send(sn.WillTopicMsg(sn.QoS1, topic))
	d.Expect(sn.WILLMSGREQ)
	d.Send(sn.WillMsgMsg(msg))
	if p := d.Expect(sn.CONNACK); p.RC() != 0 {
		t.Fatalf("CONNACK %s", p)
	}
}

// A sleeping client gets the 100 messages the cloud application published
// while it slept, in order, when it wakes with PINGREQ; then PINGRESP.
func TestE2EMQTTSNSleepingClientBuffered(t *testing.T) {
	e := startSNE2E(t, "")
	d := e.device()
	d.Connect("sleeper", true, 60)
	sub := d.Subscribe(sn.QoS1, 1, "cmd/sleep")
	if sub.RC() != 0 || sub.TopicID() == 0 {
		t.Fatalf("SUBACK %s", sub)
	}
	e.upstream(1)
	d.Send(sn.SleepMsg(60))
	d.Expect(sn.DISCONNECT)
	gwtest.Eventually(t, "asleep", func() bool { return e.metric("clients.asleep") == 1 })

	const n = 100
	for i := range n {
		e.publish("site/e2e/sn/sleeper/cmd/sleep", fmt.Sprintf("m%03d", i))
	}
	e.queued("sleeper", n)
	if p, err := d.TryRecv(50 * time.Millisecond); err == nil {
		t.Fatalf("an asleep client was sent %s", p)
	}

	d.Send(sn.PingreqMsg("sleeper"))
	got := 0
	for {
		p := d.Recv()
		if p.Type == sn.PINGRESP {
			break
		}
		if p.Type != sn.PUBLISH || p.QoS() != 1 || p.TopicID() != sub.TopicID() {
			t.Fatalf("message %d: %s", got, p)
		}
		if want := fmt.Sprintf("m%03d", got); string(p.Payload()) != want {
			t.Fatalf("message %d: %q, want %q", got, p.Payload(), want)
		}
		d.Send(sn.PubackMsg(p.TopicID(), p.MsgID(), 0))
		got++
	}
	if got != n {
		t.Fatalf("PINGRESP after %d of %d messages", got, n)
	}
	e.queued("sleeper", 0)
	if s := e.metric("clients.wake"); s != 1 {
		t.Fatalf("clients.wake = %v", s)
	}
}

// A QoS 2 PUBLISH repeated with DUP before PUBREL reaches the cloud once.
func TestE2EMQTTSNQoS2ExactlyOnce(t *testing.T) {
	e := startSNE2E(t, "")
	up := e.subscribe("site/e2e/sn/#")
	d := e.device()
	d.Connect("q2", true, 60)
	tid := d.Register(1, "exact")
	d.Send(sn.PublishMsg(sn.QoS2, tid, 7, []byte("once")))
	if p := d.Expect(sn.PUBREC); p.MsgID() != 7 {
		t.Fatalf("PUBREC %s", p)
	}
	for range 3 { // the device missed PUBREC, as it might over a lossy link
		d.Send(sn.PublishMsg(sn.QoS2|sn.Dup, tid, 7, []byte("once")))
		if p := d.Expect(sn.PUBREC); p.MsgID() != 7 {
			t.Fatalf("PUBREC %s", p)
		}
	}
	d.Send(sn.PubrelMsg(7))
	if p := d.Expect(sn.PUBCOMP); p.MsgID() != 7 {
		t.Fatalf("PUBCOMP %s", p)
	}
	// A marker after it: the uplink keeps order, so a second "once" would
	// arrive before the marker.
	publishQoS1(t, d, 0, tid, 8, "marker")
	expectCloud(t, up, "site/e2e/sn/q2/exact", "once")
	expectCloud(t, up, "site/e2e/sn/q2/exact", "marker")
}

// The will goes to the cloud when the keepalive expires, not on a clean
// DISCONNECT.
func TestE2EMQTTSNWillKeepalive(t *testing.T) {
	e := startSNE2E(t, "")
	up := e.subscribe("site/e2e/sn/#")

	clean := e.device()
	connectWithWill(t, clean, "polite", 60, "will/polite", "polite-gone")
	clean.Send(sn.DisconnectMsg())
	clean.Expect(sn.DISCONNECT)
	gwtest.Eventually(t, "polite gone", func() bool { _, ok := e.gw().Client("polite"); return !ok })
	// The same client again, publishing on its will topic: had the will
	// been published on DISCONNECT, it would be at the cloud first.
	clean.Connect("polite", true, 60)
	tid := clean.Register(1, "will/polite")
	publishQoS1(t, clean, 0, tid, 2, "marker")
	expectCloud(t, up, "site/e2e/sn/polite/will/polite", "marker")

	silent := e.device()
	connectWithWill(t, silent, "silent", 1, "will/silent", "silent-gone")
	// Silent for 1.5 × 1 s: DISCONNECT to the device, will to the cloud.
	silent.Expect(sn.DISCONNECT)
	expectCloud(t, up, "site/e2e/sn/silent/will/silent", "silent-gone")
	if w := e.metric("messages.will.published"); w != 1 {
		t.Fatalf("messages.will.published = %v", w)
	}
	if l := e.metric("clients.lost"); l != 1 {
		t.Fatalf("clients.lost = %v", l)
	}
}

// A client kicked through the framework (the API's DELETE
// /gateways/mqttsn/clients/{clientid} calls Client.Kick("kicked")) is sent
// DISCONNECT and its will is not published. EMQX's MQTT-SN channel does
// the same: handle_call(kick) only runs ensure_disconnected and shuts
// down; its will is published only on sock_closed while connected, which
// keepalive timeout and retry exhaustion lead to, not a kick.
func TestE2EMQTTSNKickNoWill(t *testing.T) {
	e := startSNE2E(t, "")
	up := e.subscribe("site/e2e/sn/#")
	d := e.device()
	connectWithWill(t, d, "kickme", 60, "will/kick", "kicked-gone")
	c, ok := e.gw().Client("kickme")
	if !ok {
		t.Fatal("kickme not connected")
	}
	c.Kick("kicked")
	d.Expect(sn.DISCONNECT)
	gwtest.Eventually(t, "kickme gone", func() bool { _, ok := e.gw().Client("kickme"); return !ok })

	d.Connect("kickme", true, 60)
	tid := d.Register(1, "will/kick")
	publishQoS1(t, d, 0, tid, 2, "marker")
	expectCloud(t, up, "site/e2e/sn/kickme/will/kick", "marker")
	if w := e.metric("messages.will.published"); w != 0 {
		t.Fatalf("messages.will.published = %v", w)
	}
}

// Predefined topic id 40000 (above EMQX's 1024) both ways.
func TestE2EMQTTSNPredefinedHighID(t *testing.T) {
	e := startSNE2E(t, "")
	up := e.subscribe("site/e2e/sn/#")
	d := e.device()
	d.Connect("pre", true, 60)
	publishQoS1(t, d, sn.Predefined, 40000, 1, "up-40000")
	expectCloud(t, up, "site/e2e/sn/pre/pre/big", "up-40000")

	d.Send(sn.SubscribeIDMsg(sn.QoS1|sn.Predefined, 2, 40000))
	if p := d.Expect(sn.SUBACK); p.RC() != 0 || p.TopicID() != 40000 {
		t.Fatalf("SUBACK %s", p)
	}
	e.upstream(1)
	e.publish("site/e2e/sn/pre/pre/big", "down-40000")
	p := expectPublish(t, d, 40000, "down-40000")
	if p.Flags()&0x03 != sn.Predefined {
		t.Fatalf("topic id type %d, want predefined", p.Flags()&0x03)
	}
}

// QoS -1 publishes from a peer that never connected reach the cloud, by
// predefined id and by short name, under the connectionless client's
// mountpoint.
func TestE2EMQTTSNQoSMinus1(t *testing.T) {
	e := startSNE2E(t, "")
	up := e.subscribe("site/e2e/sn/#")
	d := e.device()
	d.Send(sn.PublishMsg(sn.QoSMinus1|sn.Predefined, 40000, 0, []byte("neg-pre")))
	d.Send(sn.PublishMsg(sn.QoSMinus1|sn.ShortTopic, sn.Short("ab"), 0, []byte("neg-short")))
	client := "qos3-" + d.LocalAddr()
	expectCloud(t, up, "site/e2e/sn/"+client+"/pre/big", "neg-pre")
	expectCloud(t, up, "site/e2e/sn/"+client+"/ab", "neg-short")
	if n := e.metric("messages.qos3.received"); n != 2 {
		t.Fatalf("messages.qos3.received = %v", n)
	}
}

// A device that changes source port while active, asleep and awake keeps
// its session (topic ids, subscription, unacknowledged messages) and
// traffic to and from the cloud keeps flowing.
func TestE2EMQTTSNSourcePortChange(t *testing.T) {
	e := startSNE2E(t, "")
	up := e.subscribe("site/e2e/sn/roamer/up")
	const cmd = "site/e2e/sn/roamer/cmd"
	d := e.device()
	d.Connect("roamer", true, 60)
	tid := d.Register(1, "up")
	sub := d.Subscribe(sn.QoS1, 2, "cmd")
	if sub.RC() != 0 {
		t.Fatalf("SUBACK %s", sub)
	}
	e.upstream(1)

	// Active.
	d.NewPort()
	d.Send(sn.PingreqMsg("roamer"))
	d.Expect(sn.PINGRESP)
	publishQoS1(t, d, 0, tid, 10, "active-up")
	expectCloud(t, up, "site/e2e/sn/roamer/up", "active-up")
	e.publish(cmd, "active-down")
	expectPublish(t, d, sub.TopicID(), "active-down")

	// Asleep: the cloud's message waits; PINGREQ from the new port
	// collects it.
	d.Send(sn.SleepMsg(60))
	d.Expect(sn.DISCONNECT)
	d.NewPort()
	e.publish(cmd, "asleep-down")
	e.queued("roamer", 1)
	d.Send(sn.PingreqMsg("roamer"))
	expectPublish(t, d, sub.TopicID(), "asleep-down")
	d.Expect(sn.PINGRESP)
	publishQoS1(t, d, 0, tid, 11, "asleep-up") // asleep clients may publish
	expectCloud(t, up, "site/e2e/sn/roamer/up", "asleep-up")

	// Awake: the flush has started and the first message is not
	// acknowledged when the device moves; the PINGREQ from the new port
	// gets everything unacknowledged again, in order.
	e.publish(cmd, "awake-down-1")
	e.publish(cmd, "awake-down-2")
	e.queued("roamer", 2)
	d.Send(sn.PingreqMsg("roamer"))
	if p := d.Expect(sn.PUBLISH); string(p.Payload()) != "awake-down-1" {
		t.Fatalf("first flushed %q", p.Payload())
	}
	d.NewPort()
	d.Send(sn.PingreqMsg("roamer"))
	var got []string
	for {
		p := d.Recv()
		if p.Type == sn.PINGRESP {
			break
		}
		if p.Type != sn.PUBLISH || p.TopicID() != sub.TopicID() {
			t.Fatalf("got %s", p)
		}
		if len(got) == 0 && (string(p.Payload()) != "awake-down-1" || p.Flags()&sn.Dup == 0) {
			t.Fatalf("first after the move: %q dup %v, want awake-down-1 again with DUP", p.Payload(), p.Flags()&sn.Dup != 0)
		}
		if s := string(p.Payload()); len(got) == 0 || got[len(got)-1] != s {
			got = append(got, s)
		} else if p.Flags()&sn.Dup == 0 {
			t.Fatalf("%q repeated without DUP", s)
		}
		d.Send(sn.PubackMsg(p.TopicID(), p.MsgID(), 0))
	}
	if strings.Join(got, ",") != "awake-down-1,awake-down-2" {
		t.Fatalf("after the move the device got %q", got)
	}
	publishQoS1(t, d, 0, tid, 12, "awake-up")
	expectCloud(t, up, "site/e2e/sn/roamer/up", "awake-up")

	if r := e.metric("clients.rebound"); r < 3 {
		t.Fatalf("clients.rebound = %v, want 3 moves", r)
	}
	if c := e.gw().ClientCount(); c != 1 {
		t.Fatalf("%d clients", c)
	}
}

// serialLine plays the devices on the master side of a pty whose slave is
// the agent's serial listener.
type serialLine struct {
	t      *testing.T
	master *os.File
	dec    sn.SLIPDecoder
	queue  []serialFrame
}

type serialFrame struct {
	node byte
	p    sn.Packet
}

func (s *serialLine) write(b []byte) {
	s.t.Helper()
	if _, err := s.master.Write(b); err != nil {
		s.t.Fatal(err)
	}
}

// send frames msg for the wireless node wnid behind the forwarder at node.
func (s *serialLine) send(node byte, wnid, msg []byte) {
	s.t.Helper()
	s.write(sn.SLIPFrame(node, sn.Encapsulate(wnid, msg)))
}

func (s *serialLine) recv() serialFrame {
	s.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	buf := make([]byte, 4096)
	for len(s.queue) == 0 {
		_ = s.master.SetReadDeadline(deadline)
		n, err := s.master.Read(buf)
		if err != nil {
			s.t.Fatalf("serial read: %v", err)
		}
		nodes, msgs, err := s.dec.Feed(buf[:n])
		if err != nil {
			s.t.Fatalf("gateway sent a bad frame: %v", err)
		}
		for i := range msgs {
			p, err := sn.Parse(msgs[i])
			if err != nil {
				s.t.Fatal(err)
			}
			s.queue = append(s.queue, serialFrame{nodes[i], p})
		}
	}
	f := s.queue[0]
	s.queue = s.queue[1:]
	return f
}

func (s *serialLine) expect(node byte, wnid []byte, typ byte) sn.Packet {
	s.t.Helper()
	f := s.recv()
	if f.node != node || !bytes.Equal(f.p.Node, wnid) || f.p.Type != typ {
		s.t.Fatalf("got node %d wnid %x %s, want node %d wnid %x type 0x%02x", f.node, f.p.Node, f.p, node, wnid, typ)
	}
	return f.p
}

// Two radio nodes behind one forwarder on a SLIP line with noise between
// frames are two clients at the cloud, and a cloud message goes back down
// to the right node only.
func TestE2EMQTTSNSerialForwarder(t *testing.T) {
	master, path, err := pty.Open()
	if err != nil {
		t.Fatalf("pty: %v", err)
	}
	t.Cleanup(func() { master.Close() })
	e := startSNE2E(t, fmt.Sprintf("[gateway.mqttsn.listeners.serial.line]\ndevice = %q\nbaud = 115200\nframing = \"slip\"\n", path))
	l, ok := e.gw().Listener("mqttsn:serial:line")
	if !ok {
		t.Fatal("serial listener not running")
	}
	// Bytes written before the port is configured would be lost.
	gwtest.Eventually(t, "port open", func() bool { return l.Metrics().Snapshot()["serial.connected"] == 1 })
	up := e.subscribe("site/e2e/sn/#")
	s := &serialLine{t: t, master: master}
	const fwd = 9
	nodes := [][]byte{{0x00, 0x01}, {0x00, 0x02}}

	s.write([]byte("\x00\x13 boot noise \xff"))
	for i, w := range nodes {
		s.send(fwd, w, sn.ConnectMsg(fmt.Sprintf("radio-%d", i+1), sn.Clean, 60))
		s.write([]byte{0xC0, 0x55, 0xAA, 0x42, 0x99, 0x01, 0xC0}) // a frame with a bad CRC
		s.expect(fwd, w, sn.CONNACK)
	}
	tids := make([]uint16, len(nodes))
	for i, w := range nodes {
		s.send(fwd, w, sn.RegisterMsg(1, "temp"))
		tids[i] = s.expect(fwd, w, sn.REGACK).TopicID()
		s.write([]byte{0xDB, 0x07, 'z'}) // a stray escape and noise
		s.send(fwd, w, sn.PublishMsg(sn.QoS1, tids[i], 2, []byte(fmt.Sprintf("t%d", i+1))))
		if p := s.expect(fwd, w, sn.PUBACK); p.RC() != 0 {
			t.Fatalf("PUBACK %s", p)
		}
		expectCloud(t, up, fmt.Sprintf("site/e2e/sn/radio-%d/temp", i+1), fmt.Sprintf("t%d", i+1))
		s.send(fwd, w, sn.SubscribeMsg(sn.QoS0, 3, "cmd"))
		if p := s.expect(fwd, w, sn.SUBACK); p.RC() != 0 {
			t.Fatalf("SUBACK %s", p)
		}
	}
	if c := e.gw().ClientCount(); c != 2 {
		t.Fatalf("%d clients", c)
	}
	e.upstream(2)
	e.publish("site/e2e/sn/radio-2/cmd", "for-2")
	if p := s.expect(fwd, nodes[1], sn.PUBLISH); string(p.Payload()) != "for-2" {
		t.Fatalf("PUBLISH %s", p)
	}
	e.publish("site/e2e/sn/radio-1/cmd", "for-1")
	if p := s.expect(fwd, nodes[0], sn.PUBLISH); string(p.Payload()) != "for-1" {
		t.Fatalf("PUBLISH %s", p)
	}
	ls := l.Metrics().Snapshot()
	if ls["frames.bad_crc"] < 2 || ls["frames.noise_octets"] < 1 {
		t.Fatalf("listener counters %v", ls)
	}
}

// A DTLS (pion) client publishes to and receives from the cloud.
func TestE2EMQTTSNDTLS(t *testing.T) {
	e := startSNE2E(t, "")
	up := e.subscribe("site/e2e/sn/#")
	ua, err := net.ResolveUDPAddr("udp", e.addr("dtls:default"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := dtls.DialWithOptions("udp", ua,
		dtls.WithPSK(func([]byte) ([]byte, error) { return []byte("secret-of-dev1"), nil }),
		dtls.WithPSKIdentityHint([]byte("dev1")),
		dtls.WithCipherSuites(dtls.TLS_PSK_WITH_AES_128_CCM_8))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.HandshakeContext(ctx); err != nil {
		t.Fatalf("dtls handshake: %v", err)
	}
	d := sn.NewDevice(t, c)
	d.Connect("secure", true, 60)
	tid := d.Register(1, "sealed")
	for i := range 5 {
		publishQoS1(t, d, 0, tid, uint16(2+i), fmt.Sprintf("s%d", i))
	}
	for i := range 5 {
		expectCloud(t, up, "site/e2e/sn/secure/sealed", fmt.Sprintf("s%d", i))
	}
	sub := d.Subscribe(sn.QoS1, 10, "cmd/#")
	if sub.RC() != 0 {
		t.Fatalf("SUBACK %s", sub)
	}
	e.upstream(1)
	e.publish("site/e2e/sn/secure/cmd/open", "sesame")
	reg := d.Expect(sn.REGISTER)
	if reg.TopicName() != "cmd/open" {
		t.Fatalf("REGISTER %q", reg.TopicName())
	}
	d.Send(sn.RegackMsg(reg.TopicID(), reg.MsgID(), 0))
	expectPublish(t, d, reg.TopicID(), "sesame")
}

// udpDrops reads the kernel's drop count of the UDP socket bound to addr
// (the last column of /proc/net/udp): datagrams the socket's receive
// buffer had no room for.
func udpDrops(t *testing.T, addr string) int64 {
	t.Helper()
	ua, err := net.ResolveUDPAddr("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("0100007F:%04X", ua.Port)
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 12 && f[1] == want {
			var n int64
			fmt.Sscan(f[len(f)-1], &n)
			return n
		}
	}
	t.Fatalf("socket %s not in /proc/net/udp", want)
	return 0
}

// A one-device QoS 0 burst, as BenchmarkE2EMosquitto sends it (64
// datagrams back to back, then 1 ms), overloads the one goroutine that
// handles a peer's datagrams. What does not reach the cloud must be counted:
// by the udp listener (datagrams.dropped: the peer's recv_queue was full),
// or by the kernel (the socket's receive buffer). Everything the gateway
// accepted reaches the cloud: nothing is lost behind it.
func TestE2EMQTTSNQoS0BurstAccounted(t *testing.T) {
	e := startSNE2E(t, "")
	var got atomic.Int64
	tok := e.app.c.Subscribe("site/e2e/sn/burst/t", 1, func(_ paho.Client, m paho.Message) {
		if len(m.Payload()) == 64 {
			got.Add(1)
		}
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	d := e.device()
	d.Connect("burst", true, 600)
	tid := d.Register(1, "t")
	payload := []byte(strings.Repeat("x", 64))
	addr := e.addr("udp:default")
	l, _ := e.gw().Listener("mqttsn:udp:default")
	kernel0 := udpDrops(t, addr)
	const n = 5000
	for i := range n {
		d.Send(sn.PublishMsg(sn.QoS0, tid, 0, payload))
		if i%64 == 63 {
			time.Sleep(time.Millisecond)
		}
	}
	var dropped, kernel int64
	accounted := func() bool {
		dropped = int64(l.Metrics().Snapshot()["datagrams.dropped"])
		kernel = udpDrops(t, addr) - kernel0
		return got.Load()+dropped+kernel == n
	}
	for deadline := time.Now().Add(30 * time.Second); !accounted(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("sent %d: cloud got %d, listener dropped %d, kernel dropped %d", n, got.Load(), dropped, kernel)
		}
	}
	t.Logf("sent %d: cloud got %d, listener datagrams.dropped %d, kernel drops %d", n, got.Load(), dropped, kernel)
	if acc := int64(e.metric("messages.received")); acc != got.Load() {
		t.Fatalf("gateway accepted %d, cloud got %d", acc, got.Load())
	}
	if st := e.a.Uplink().Status(); st.Dropped != 0 {
		t.Fatalf("uplink dropped %d", st.Dropped)
	}
}
