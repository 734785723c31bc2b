package mqttsn_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	sn "github.com/edgeway/edgeway/protocols/mqttsn/mqttsntest"
)

func TestConnectPublishQoS0to2(t *testing.T) {
	e := newEnv(t, section())
	cloud := e.cloud("#")
	d := e.device()
	d.Connect("dev1", true, 30)
	tid := d.Register(1, "up/temp")

	d.Send(sn.PublishMsg(sn.QoS0, tid, 0, []byte("q0")))
	cloud.Expect("up/temp", "q0")

	d.Send(sn.PublishMsg(sn.QoS1, tid, 7, []byte("q1")))
	if p := d.Expect(sn.PUBACK); p.MsgID() != 7 || p.RC() != 0 || p.TopicID() != tid {
		t.Fatalf("PUBACK %s", p)
	}
	if m := cloud.Expect("up/temp", "q1"); m.QoS != 1 || m.ClientID != "dev1" {
		t.Fatalf("qos %d clientid %q", m.QoS, m.ClientID)
	}

	d.Send(sn.PublishMsg(sn.QoS2, tid, 8, []byte("q2")))
	if p := d.Expect(sn.PUBREC); p.MsgID() != 8 {
		t.Fatalf("PUBREC %s", p)
	}
	cloud.Expect("up/temp", "q2")
	d.Send(sn.PubrelMsg(8))
	if p := d.Expect(sn.PUBCOMP); p.MsgID() != 8 {
		t.Fatalf("PUBCOMP %s", p)
	}

	// An unknown topic id is refused, whatever the QoS.
	d.Send(sn.PublishMsg(sn.QoS0, 999, 0, []byte("x")))
	if p := d.Expect(sn.PUBACK); p.RC() != 0x02 || p.TopicID() != 999 {
		t.Fatalf("unknown topic id: %s", p)
	}
	if n := cloud.Pending(); n != 0 {
		t.Fatalf("%d extra messages reached the cloud", n)
	}
}

// QoS 2 exactly once, device to cloud: a repeated PUBLISH before PUBREL
// is acknowledged again but not published again.
func TestQoS2ExactlyOnceUplink(t *testing.T) {
	e := newEnv(t, section())
	cloud := e.cloud("#")
	d := e.device()
	d.Connect("dev2", true, 30)
	tid := d.Register(1, "x/y")
	for range 3 {
		d.Send(sn.PublishMsg(sn.QoS2, tid, 42, []byte("once")))
		d.Expect(sn.PUBREC)
	}
	d.Send(sn.PubrelMsg(42))
	d.Expect(sn.PUBCOMP)
	d.Send(sn.PubrelMsg(42)) // a repeated PUBREL is completed again
	d.Expect(sn.PUBCOMP)
	// The same id is free again afterwards: a new message.
	d.Send(sn.PublishMsg(sn.QoS2, tid, 42, []byte("twice")))
	d.Expect(sn.PUBREC)
	cloud.Expect("x/y", "once")
	cloud.Expect("x/y", "twice")
	if n := cloud.Pending(); n != 0 {
		t.Fatalf("%d duplicates reached the cloud", n)
	}
}

// QoS 2 exactly once, cloud to device: the gateway repeats PUBLISH until
// PUBREC, then PUBREL until PUBCOMP, and acknowledges the broker once.
func TestQoS2ExactlyOnceDownlink(t *testing.T) {
	e := newEnv(t, section(`retry_interval = "200ms"`))
	cloud := e.cloud()
	d := e.device()
	d.Connect("dev3", true, 30)
	sa := d.Subscribe(sn.QoS2, 1, "down/q2")
	if sa.RC() != 0 || sa.QoS() != 2 || sa.TopicID() == 0 {
		t.Fatalf("SUBACK %s", sa)
	}
	cloud.Publish("down/q2", "exact", 2, false)
	p := d.Expect(sn.PUBLISH)
	if p.QoS() != 2 || p.TopicID() != sa.TopicID() || string(p.Payload()) != "exact" || p.Flags()&sn.Dup != 0 {
		t.Fatalf("PUBLISH %s", p)
	}
	// Not acknowledged: it comes again, flagged DUP, same message id.
	p2 := d.Expect(sn.PUBLISH)
	if p2.MsgID() != p.MsgID() || p2.Flags()&sn.Dup == 0 {
		t.Fatalf("retransmission %s", p2)
	}
	d.Send(sn.PubrecMsg(p.MsgID()))
	if r := d.Expect(sn.PUBREL); r.MsgID() != p.MsgID() {
		t.Fatalf("PUBREL %s", r)
	}
	if r := d.Expect(sn.PUBREL); r.MsgID() != p.MsgID() { // repeated until PUBCOMP
		t.Fatalf("PUBREL again %s", r)
	}
	d.Send(sn.PubcompMsg(p.MsgID()))
	e.waitFor("the broker ack", func() bool { return e.session("dev3").Stats().Inflight == 0 })
	// Retransmissions stop: at most one PUBREL already on its way.
	for n := 0; ; n++ {
		p, err := d.TryRecv(3 * 200 * time.Millisecond)
		if err != nil {
			break
		}
		if p.Type != sn.PUBREL || n > 0 {
			t.Fatalf("after PUBCOMP: %s", p)
		}
	}
}

func TestSubscribeNormalTopicQoS1(t *testing.T) {
	e := newEnv(t, section())
	cloud := e.cloud()
	d := e.device()
	d.Connect("dev4", true, 30)
	sa := d.Subscribe(sn.QoS1, 5, "cmd/led")
	if sa.RC() != 0 || sa.TopicID() == 0 || sa.QoS() != 1 {
		t.Fatalf("SUBACK %s", sa)
	}
	for i := range 5 {
		cloud.Publish("cmd/led", payload(i), 1, false)
	}
	for i := range 5 {
		p := d.Expect(sn.PUBLISH)
		if p.TopicID() != sa.TopicID() || p.Flags()&3 != sn.Normal || string(p.Payload()) != payload(i) || p.QoS() != 1 {
			t.Fatalf("PUBLISH %d: %s", i, p)
		}
		d.Send(sn.PubackMsg(p.TopicID(), p.MsgID(), 0))
	}
	e.waitFor("acks", func() bool { return e.session("dev4").Stats().Inflight == 0 })

	// Retained messages come after the SUBACK.
	cloud.Publish("cmd/mode", "auto", 0, true)
	d.Send(sn.SubscribeMsg(sn.QoS0, 6, "cmd/mode"))
	sa2 := d.Expect(sn.SUBACK)
	p := d.Expect(sn.PUBLISH)
	if p.TopicID() != sa2.TopicID() || p.Flags()&sn.Retain == 0 || string(p.Payload()) != "auto" {
		t.Fatalf("retained %s", p)
	}

	d.Send(sn.UnsubscribeMsg(0, 7, "cmd/led"))
	d.Expect(sn.UNSUBACK)
	cloud.Publish("cmd/led", "after", 1, false)
	expectNothing(t, d, 300*time.Millisecond)
}

// A wildcard subscription has no topic id: the gateway REGISTERs each
// topic before its first PUBLISH, and what arrives meanwhile waits.
func TestWildcardRegisterThenPublish(t *testing.T) {
	e := newEnv(t, section())
	cloud := e.cloud()
	d := e.device()
	d.Connect("dev5", true, 30)
	if sa := d.Subscribe(sn.QoS1, 1, "w/#"); sa.RC() != 0 || sa.TopicID() != 0 {
		t.Fatalf("SUBACK %s", sa)
	}
	cloud.Publish("w/a", "a1", 1, false)
	cloud.Publish("w/a", "a2", 0, false)
	cloud.Publish("w/b", "b1", 1, false)
	reg := d.Expect(sn.REGISTER)
	if reg.TopicName() != "w/a" || reg.TopicID() == 0 {
		t.Fatalf("REGISTER %s", reg)
	}
	// Nothing is published before the REGACK.
	expectNothing(t, d, 200*time.Millisecond)
	d.Send(sn.RegackMsg(reg.TopicID(), reg.MsgID(), 0))
	want := []string{"a1", "a2"}
	for _, w := range want {
		p := d.Expect(sn.PUBLISH)
		if p.TopicID() != reg.TopicID() || string(p.Payload()) != w {
			t.Fatalf("PUBLISH %s, want %s", p, w)
		}
		if p.QoS() == 1 {
			d.Send(sn.PubackMsg(p.TopicID(), p.MsgID(), 0))
		}
	}
	reg2 := d.Expect(sn.REGISTER)
	if reg2.TopicName() != "w/b" || reg2.TopicID() == reg.TopicID() {
		t.Fatalf("second REGISTER %s", reg2)
	}
	d.Send(sn.RegackMsg(reg2.TopicID(), reg2.MsgID(), 0))
	p := d.Expect(sn.PUBLISH)
	if p.TopicID() != reg2.TopicID() || string(p.Payload()) != "b1" {
		t.Fatalf("PUBLISH %s", p)
	}
	d.Send(sn.PubackMsg(p.TopicID(), p.MsgID(), 0))
	// A known topic needs no second REGISTER.
	cloud.Publish("w/a", "a3", 0, false)
	if p := d.Expect(sn.PUBLISH); p.TopicID() != reg.TopicID() {
		t.Fatalf("PUBLISH %s", p)
	}
}

// A device that never answers REGISTER: retried, then its topic is
// skipped and counted, and other topics flow.
func TestRegisterRetriesThenSkips(t *testing.T) {
	e := newEnv(t, section(`retry_interval = "100ms"`, `max_retry = 2`))
	cloud := e.cloud()
	d := e.device()
	d.Connect("dev6", true, 60)
	d.Subscribe(sn.QoS1, 1, "r/#")
	cloud.Publish("r/ignored", "lost", 1, false)
	cloud.Publish("r/ok", "fine", 1, false)
	var first sn.Packet
	for i := range 3 { // the first REGISTER and two retries
		reg := d.Expect(sn.REGISTER)
		if reg.TopicName() != "r/ignored" {
			t.Fatalf("REGISTER %d: %s", i, reg)
		}
		if i == 0 {
			first = reg
		} else if reg.MsgID() != first.MsgID() || reg.TopicID() != first.TopicID() {
			t.Fatalf("retry %s differs from %s", reg, first)
		}
	}
	reg := d.Expect(sn.REGISTER)
	if reg.TopicName() != "r/ok" {
		t.Fatalf("after giving up: %s", reg)
	}
	d.Send(sn.RegackMsg(reg.TopicID(), reg.MsgID(), 0))
	if p := d.Expect(sn.PUBLISH); string(p.Payload()) != "fine" {
		t.Fatalf("PUBLISH %s", p)
	}
	if e.counter("register.failed") != 1 || e.counter("delivery.dropped.rejected") != 1 {
		t.Fatalf("register.failed %v, dropped %v", e.counter("register.failed"), e.counter("delivery.dropped.rejected"))
	}
}

// PUBACK "invalid topic id": the device lost the id, so the gateway
// registers the topic again and sends the message again.
func TestPubackInvalidTopicIDReregisters(t *testing.T) {
	e := newEnv(t, section())
	cloud := e.cloud()
	d := e.device()
	d.Connect("dev7", true, 60)
	d.Subscribe(sn.QoS1, 1, "inv/#")
	cloud.Publish("inv/t", "v", 1, false)
	reg := d.Expect(sn.REGISTER)
	d.Send(sn.RegackMsg(reg.TopicID(), reg.MsgID(), 0))
	p := d.Expect(sn.PUBLISH)
	d.Send(sn.PubackMsg(p.TopicID(), p.MsgID(), 0x02))
	reg2 := d.Expect(sn.REGISTER)
	if reg2.TopicName() != "inv/t" {
		t.Fatalf("re-REGISTER %s", reg2)
	}
	d.Send(sn.RegackMsg(reg2.TopicID(), reg2.MsgID(), 0))
	p2 := d.Expect(sn.PUBLISH)
	if p2.TopicID() != reg2.TopicID() || string(p2.Payload()) != "v" {
		t.Fatalf("PUBLISH again %s", p2)
	}
	d.Send(sn.PubackMsg(p2.TopicID(), p2.MsgID(), 0))
	e.waitFor("ack", func() bool { return e.session("dev7").Stats().Inflight == 0 })
}

// Predefined ids span 1..65535 (EMQX stops at 1024).
func TestPredefinedAbove1024(t *testing.T) {
	e := newEnv(t, section(`predefined = [{ id = 5000, topic = "pre/big" }, { id = 65535, topic = "pre/max" }]`))
	cloud := e.cloud("pre/#")
	d := e.device()
	d.Connect("dev8", true, 60)
	d.Send(sn.PublishMsg(sn.QoS1|sn.Predefined, 5000, 1, []byte("up")))
	if p := d.Expect(sn.PUBACK); p.RC() != 0 {
		t.Fatalf("PUBACK %s", p)
	}
	cloud.Expect("pre/big", "up")
	d.Send(sn.SubscribeIDMsg(sn.QoS1|sn.Predefined, 2, 65535))
	if sa := d.Expect(sn.SUBACK); sa.RC() != 0 || sa.TopicID() != 65535 {
		t.Fatalf("SUBACK %s", sa)
	}
	cloud.Publish("pre/max", "down", 1, false)
	p := d.Expect(sn.PUBLISH)
	if p.Flags()&3 != sn.Predefined || p.TopicID() != 65535 || string(p.Payload()) != "down" {
		t.Fatalf("PUBLISH %s", p)
	}
	d.Send(sn.SubscribeIDMsg(sn.Predefined, 3, 4999))
	if sa := d.Expect(sn.SUBACK); sa.RC() != 0x02 {
		t.Fatalf("unknown predefined id: %s", sa)
	}
}

func TestShortTopics(t *testing.T) {
	e := newEnv(t, section())
	cloud := e.cloud("#")
	d := e.device()
	d.Connect("dev9", true, 60)
	d.Send(sn.PublishMsg(sn.QoS0|sn.ShortTopic, sn.Short("ab"), 0, []byte("s")))
	cloud.Expect("ab", "s")
	d.Send(sn.SubscribeIDMsg(sn.QoS0|sn.ShortTopic, 1, sn.Short("cd")))
	if sa := d.Expect(sn.SUBACK); sa.RC() != 0 {
		t.Fatalf("SUBACK %s", sa)
	}
	cloud.Publish("cd", "t", 0, false)
	p := d.Expect(sn.PUBLISH)
	if p.Flags()&3 != sn.ShortTopic || p.TopicID() != sn.Short("cd") {
		t.Fatalf("PUBLISH %s", p)
	}
}

func TestQoSMinus1(t *testing.T) {
	e := newEnv(t, section(`predefined = [{ id = 3000, topic = "sensors/raw" }]`, `mountpoint = "sn/"`))
	cloud := e.cloud("#")
	d := e.device() // never connects
	d.Send(sn.PublishMsg(sn.QoSMinus1|sn.Predefined, 3000, 0, []byte("fire-and-forget")))
	m := cloud.Expect("sn/sensors/raw", "fire-and-forget") // mountpoint applies
	if m.QoS != 0 {
		t.Fatalf("qos %d", m.QoS)
	}
	d.Send(sn.PublishMsg(sn.QoSMinus1|sn.ShortTopic, sn.Short("zz"), 0, []byte("short")))
	cloud.Expect("sn/zz", "short")
	d.Send(sn.PublishMsg(sn.QoSMinus1|sn.Predefined, 3001, 0, []byte("?")))
	if p := d.Expect(sn.PUBACK); p.RC() != 0x02 {
		t.Fatalf("unknown predefined id: %s", p)
	}
	if n := e.counter("messages.qos3.received"); n != 3 {
		t.Fatalf("qos3 counter %v", n)
	}
}

func TestQoSMinus1Disabled(t *testing.T) {
	e := newEnv(t, section(`enable_qos3 = false`, `predefined = [{ id = 1, topic = "p" }]`))
	cloud := e.cloud("#")
	d := e.device()
	d.Send(sn.PublishMsg(sn.QoSMinus1|sn.Predefined, 1, 0, []byte("no")))
	if p := d.Expect(sn.PUBACK); p.RC() != 0x03 {
		t.Fatalf("PUBACK %s", p)
	}
	if cloud.Pending() != 0 {
		t.Fatal("published anyway")
	}
}

// A peer the gateway does not know gets DISCONNECT, so it reconnects at once.
func TestUnknownPeerGetsDisconnect(t *testing.T) {
	e := newEnv(t, section())
	d := e.device()
	d.Send(sn.PublishMsg(sn.QoS1, 1, 1, []byte("who?")))
	d.Expect(sn.DISCONNECT)
	d.Send(sn.PingreqMsg(""))
	d.Expect(sn.DISCONNECT)
	d.Send(sn.PingreqMsg("nobody"))
	d.Expect(sn.DISCONNECT)
	// SEARCHGW is answered without a session.
	d.Send(sn.SearchGWMsg(1))
	if p := d.Expect(sn.GWINFO); !bytes.Equal(p.Body, []byte{1}) {
		t.Fatalf("GWINFO %s", p)
	}
}

func TestWillHandshakeAndKeepaliveTimeout(t *testing.T) {
	e := newEnv(t, section())
	cloud := e.cloud("will/#")
	d := e.device()
	d.Send(sn.ConnectMsg("dying", sn.Clean|sn.Will, 2))
	d.Expect(sn.WILLTOPICREQ)
	d.Send(sn.WillTopicMsg(sn.QoS1|sn.Retain, "will/dying"))
	d.Expect(sn.WILLMSGREQ)
	d.Send(sn.WillMsgMsg("gone"))
	if p := d.Expect(sn.CONNACK); p.RC() != 0 {
		t.Fatalf("CONNACK %s", p)
	}
	start := time.Now()
	// Silence for 1.5 × keepalive (3 s): the gateway says DISCONNECT
	// and publishes the will; not after the keepalive alone.
	d.Expect(sn.DISCONNECT)
	m := cloud.Expect("will/dying", "gone")
	if el := time.Since(start); el < 2500*time.Millisecond {
		t.Fatalf("lost after %v, before 1.5 × keepalive", el)
	}
	if m.QoS != 1 || !m.Retain {
		t.Fatalf("will qos %d retain %v", m.QoS, m.Retain)
	}
	if e.counter("clients.lost") != 1 {
		t.Fatal("not counted")
	}
}

func TestNoWillOnCleanDisconnect(t *testing.T) {
	e := newEnv(t, section())
	cloud := e.cloud("will/#", "done")
	d := e.device()
	d.Send(sn.ConnectMsg("polite", sn.Clean|sn.Will, 1))
	d.Expect(sn.WILLTOPICREQ)
	d.Send(sn.WillTopicMsg(0, "will/polite"))
	d.Expect(sn.WILLMSGREQ)
	d.Send(sn.WillMsgMsg("gone"))
	d.Expect(sn.CONNACK)
	d.Send(sn.DisconnectMsg())
	d.Expect(sn.DISCONNECT)
	e.waitFor("client gone", func() bool { return !e.connected("polite") })
	time.Sleep(1600 * time.Millisecond) // past the keepalive: no will
	cloud.Publish("done", "", 0, false)
	cloud.Expect("done", "")
}

func TestWillUpdates(t *testing.T) {
	e := newEnv(t, section())
	cloud := e.cloud("will/#")
	d := e.device()
	d.Send(sn.ConnectMsg("upd", sn.Clean|sn.Will, 1))
	d.Expect(sn.WILLTOPICREQ)
	d.Send(sn.WillTopicMsg(0, "will/old"))
	d.Expect(sn.WILLMSGREQ)
	d.Send(sn.WillMsgMsg("old"))
	d.Expect(sn.CONNACK)
	d.Send(sn.WillTopicUpdMsg(sn.QoS1, "will/new"))
	if p := d.Expect(sn.WILLTOPICRESP); p.RC() != 0 {
		t.Fatalf("WILLTOPICRESP %s", p)
	}
	d.Send(sn.WillMsgUpdMsg("new"))
	if p := d.Expect(sn.WILLMSGRESP); p.RC() != 0 {
		t.Fatalf("WILLMSGRESP %s", p)
	}
	d.Expect(sn.DISCONNECT) // keepalive timeout
	if m := cloud.Expect("will/new", "new"); m.QoS != 1 {
		t.Fatalf("qos %d", m.QoS)
	}

	// An empty WILLTOPICUPD deletes the will.
	d2 := e.device()
	d2.Send(sn.ConnectMsg("del", sn.Clean|sn.Will, 1))
	d2.Expect(sn.WILLTOPICREQ)
	d2.Send(sn.WillTopicMsg(0, "will/del"))
	d2.Expect(sn.WILLMSGREQ)
	d2.Send(sn.WillMsgMsg("x"))
	d2.Expect(sn.CONNACK)
	d2.Send(sn.WillTopicUpdMsg(0, ""))
	d2.Expect(sn.WILLTOPICRESP)
	d2.Expect(sn.DISCONNECT)
	e.waitFor("lost", func() bool { return e.counter("clients.lost") == 2 })
	if n := e.counter("messages.will.published"); n != 1 {
		t.Fatalf("wills published %v, want 1", n)
	}
	if cloud.Pending() != 0 {
		t.Fatal("deleted will published")
	}
}

// A peer that never connects is let go after idle_timeout.
func TestIdleTimeoutClosesStrangers(t *testing.T) {
	e := newEnv(t, section(`idle_timeout = "1s"`))
	l, _ := e.gateway().Listener("mqttsn:udp:default")
	d := e.device()
	d.Send(sn.SearchGWMsg(0))
	d.Expect(sn.GWINFO)
	c := e.device()
	c.Connect("settled", true, 60)
	e.waitFor("the stranger's conn closed", func() bool { return e.counter("connections.idle_timeout") == 1 })
	if n := l.ConnCount(); n != 1 {
		t.Fatalf("%d conns, want the connected client's only", n)
	}
	c.Send(sn.PingreqMsg(""))
	c.Expect(sn.PINGRESP)
}

// A forwarder on one UDP address serves two wireless nodes: each is its
// own client, and replies come back wrapped for the right node.
func TestUDPForwarderTwoNodes(t *testing.T) {
	e := newEnv(t, section())
	cloud := e.cloud("+")
	down := e.cloud()
	fwd := e.device()
	nodes := [][]byte{{0xA1, 0x01}, {0xA1, 0x02}}
	for i, n := range nodes {
		fwd.Node = n
		fwd.Send(sn.ConnectMsg(fmt.Sprintf("radio-%d", i), sn.Clean, 60))
		if p := fwd.Expect(sn.CONNACK); !bytes.Equal(p.Node, n) || p.RC() != 0 {
			t.Fatalf("CONNACK %s for node %x", p, p.Node)
		}
		fwd.Send(sn.SubscribeMsg(sn.QoS0, 1, fmt.Sprintf("down/%d", i)))
		fwd.Expect(sn.SUBACK)
	}
	for i, n := range nodes {
		fwd.Node = n
		fwd.Send(sn.PublishMsg(sn.QoS1|sn.ShortTopic, sn.Short(fmt.Sprintf("u%d", i)), 9, []byte("hi")))
		if p := fwd.Expect(sn.PUBACK); !bytes.Equal(p.Node, n) {
			t.Fatalf("PUBACK %s to node %x", p, p.Node)
		}
		if m := cloud.Next(); m.ClientID != fmt.Sprintf("radio-%d", i) || m.Topic != fmt.Sprintf("u%d", i) {
			t.Fatalf("cloud got %q from %q", m.Topic, m.ClientID)
		}
	}
	down.Publish("down/1", "for-node-2", 0, false)
	p := fwd.Expect(sn.PUBLISH)
	if !bytes.Equal(p.Node, nodes[1]) || string(p.Payload()) != "for-node-2" {
		t.Fatalf("PUBLISH %s to node %x", p, p.Node)
	}
	if n := e.gateway().ClientCount(); n != 2 {
		t.Fatalf("%d clients", n)
	}
}
