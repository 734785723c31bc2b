package mqttsn_test

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/gateway"
	sn "github.com/edgeway/edgeway/protocols/mqttsn/mqttsntest"
)

// drain reads n PUBLISHes in order, acknowledging QoS 1 ones, and checks
// their payloads are payload(from)…payload(from+n-1).
func drain(t *testing.T, d *sn.Device, from, n int, dup bool) {
	t.Helper()
	for i := from; i < from+n; i++ {
		p := d.Expect(sn.PUBLISH)
		if string(p.Payload()) != payload(i) {
			t.Fatalf("message %d: got %q (%s)", i, p.Payload(), p)
		}
		if dup && p.Flags()&sn.Dup == 0 {
			t.Fatalf("message %d not flagged DUP", i)
		}
		if p.QoS() == 1 {
			d.Send(sn.PubackMsg(p.TopicID(), p.MsgID(), 0))
		}
	}
}

func TestSleepingClientGets100BufferedInOrder(t *testing.T) {
	e := newEnv(t, section(`mqueue_len = 200`))
	cloud := e.cloud()
	d := e.device()
	d.Connect("sleepy", true, 60)
	d.Subscribe(sn.QoS1, 1, "s/in")
	d.Send(sn.SleepMsg(60))
	d.Expect(sn.DISCONNECT)
	for i := range 100 {
		cloud.Publish("s/in", payload(i), byte(i%2), false) // QoS 0 and 1 mixed
	}
	e.waitFor("buffered", func() bool { return e.session("sleepy").Stats().Queued == 100 })
	d.Send(sn.PingreqMsg("sleepy"))
	drain(t, d, 0, 100, false)
	d.Expect(sn.PINGRESP) // only once everything went out and was acked
	if g := e.counter("clients.asleep"); g != 1 {
		t.Fatalf("clients.asleep %v after PINGRESP", g)
	}
	// Asleep again: the next message waits for the next poll.
	cloud.Publish("s/in", payload(100), 1, false)
	e.waitFor("buffered", func() bool { return e.session("sleepy").Stats().Queued == 1 })
	d.Send(sn.PingreqMsg("sleepy"))
	drain(t, d, 100, 1, false)
	d.Expect(sn.PINGRESP)
	// CONNECT from asleep makes it active again.
	d.Connect("sleepy", false, 60)
	cloud.Publish("s/in", payload(101), 0, false)
	drain(t, d, 101, 1, false)
}

func TestSleepBufferBoundedByMqueueLen(t *testing.T) {
	e := newEnv(t, section(`mqueue_len = 10`))
	cloud := e.cloud()
	d := e.device()
	d.Connect("tiny", true, 60)
	d.Subscribe(sn.QoS1, 1, "s/q")
	d.Send(sn.SleepMsg(60))
	d.Expect(sn.DISCONNECT)
	for i := range 15 {
		cloud.Publish("s/q", payload(i), 1, false)
	}
	d.Send(sn.PingreqMsg("tiny"))
	drain(t, d, 5, 10, false) // the oldest five went
	d.Expect(sn.PINGRESP)
	if n := e.counter("delivery.dropped.queue_full"); n != 5 {
		t.Fatalf("queue_full drops %v, want 5", n)
	}
}

func TestSleepExpiryIsLost(t *testing.T) {
	e := newEnv(t, section())
	cloud := e.cloud("will/#")
	d := e.device()
	d.Send(sn.ConnectMsg("nap", sn.Clean|sn.Will, 60))
	d.Expect(sn.WILLTOPICREQ)
	d.Send(sn.WillTopicMsg(0, "will/nap"))
	d.Expect(sn.WILLMSGREQ)
	d.Send(sn.WillMsgMsg("overslept"))
	d.Expect(sn.CONNACK)
	d.Send(sn.SleepMsg(1))
	d.Expect(sn.DISCONNECT)
	cloud.Expect("will/nap", "overslept") // 1.5 s without a poll
	e.waitFor("session gone", func() bool { return !e.connected("nap") })
	d.Send(sn.PingreqMsg("nap"))
	d.Expect(sn.DISCONNECT)
}

func TestSourcePortChangeActive(t *testing.T) {
	e := newEnv(t, section())
	up := e.cloud("up/#")
	cloud := e.cloud()
	d := e.device()
	d.Connect("nat1", true, 60)
	sa := d.Subscribe(sn.QoS1, 1, "n/1")
	tid := d.Register(2, "up/n1")

	l, _ := e.gateway().Listener("mqttsn:udp:default")
	d.NewPort() // the NAT mapping changed
	d.Send(sn.PingreqMsg("nat1"))
	d.Expect(sn.PINGRESP)
	// The udp transport moved the session's Conn to the new address
	// (Rebinder.TakeOver): one Conn, not two.
	e.waitFor("one conn", func() bool { return l.ConnCount() == 1 })
	cloud.Publish("n/1", "to-new-port", 1, false)
	p := d.Expect(sn.PUBLISH)
	if p.TopicID() != sa.TopicID() || string(p.Payload()) != "to-new-port" {
		t.Fatalf("PUBLISH %s", p)
	}
	d.Send(sn.PubackMsg(p.TopicID(), p.MsgID(), 0))
	d.Send(sn.PublishMsg(sn.QoS1, tid, 3, []byte("from-new-port")))
	d.Expect(sn.PUBACK)
	up.Expect("up/n1", "from-new-port")

	// CONNECT from yet another port keeps a persistent session.
	d.NewPort()
	d.Connect("nat1", false, 60)
	d.NewPort()
	d.Send(sn.ConnectMsg("nat1", 0, 60))
	d.Expect(sn.CONNACK)
	cloud.Publish("n/1", "still-subscribed", 0, false)
	if p := d.Expect(sn.PUBLISH); string(p.Payload()) != "still-subscribed" {
		t.Fatalf("PUBLISH %s", p)
	}
	if n := e.counter("clients.rebound"); n < 3 {
		t.Fatalf("clients.rebound %v", n)
	}
	if n := e.gateway().ClientCount(); n != 1 {
		t.Fatalf("%d clients", n)
	}
}

func TestSourcePortChangeAsleep(t *testing.T) {
	e := newEnv(t, section())
	cloud := e.cloud()
	d := e.device()
	d.Connect("nat2", true, 60)
	d.Subscribe(sn.QoS1, 1, "n/2")
	d.Send(sn.SleepMsg(60))
	d.Expect(sn.DISCONNECT)
	for i := range 3 {
		cloud.Publish("n/2", payload(i), 1, false)
	}
	d.NewPort()
	d.Send(sn.PingreqMsg("nat2"))
	drain(t, d, 0, 3, false)
	d.Expect(sn.PINGRESP)
}

func TestSourcePortChangeAwake(t *testing.T) {
	e := newEnv(t, section(`retry_interval = "30s"`))
	cloud := e.cloud()
	d := e.device()
	d.Connect("nat3", true, 60)
	d.Subscribe(sn.QoS1, 1, "n/3")
	d.Send(sn.SleepMsg(60))
	d.Expect(sn.DISCONNECT)
	cloud.Publish("n/3", payload(0), 1, false)
	cloud.Publish("n/3", payload(1), 1, false)
	d.Send(sn.PingreqMsg("nat3"))
	first := d.Expect(sn.PUBLISH) // awake, flushing; not acknowledged
	if string(first.Payload()) != payload(0) {
		t.Fatalf("PUBLISH %s", first)
	}
	d.NewPort() // the NAT changes mid-flush
	d.Send(sn.PingreqMsg("nat3"))
	drain(t, d, 0, 2, true) // what was unacknowledged comes again, DUP
	d.Expect(sn.PINGRESP)
}

// A new client on an address an old session used does not inherit it,
// and the old client gets its session back from wherever it returns.
func TestAddressReusedByAnotherClient(t *testing.T) {
	e := newEnv(t, section())
	cloud := e.cloud()
	d := e.device()
	d.Connect("alice", false, 60)
	sa := d.Subscribe(sn.QoS1, 1, "for/alice")
	d.Connect("bob", true, 60) // same address, another device
	cloud.Publish("for/alice", "secret", 1, false)
	d.Send(sn.PingreqMsg(""))
	d.Expect(sn.PINGRESP) // bob's, and nothing of alice's before it
	expectNothing(t, d, 300*time.Millisecond)
	if subs := e.session("bob").Subscriptions(); len(subs) != 0 {
		t.Fatalf("bob inherited %v", subs)
	}
	alice := e.device()
	alice.Send(sn.ConnectMsg("alice", 0, 60))
	alice.Expect(sn.CONNACK)
	p := alice.Expect(sn.PUBLISH)
	if p.TopicID() != sa.TopicID() || string(p.Payload()) != "secret" {
		t.Fatalf("PUBLISH %s", p)
	}
}

func TestAddressReusedWhileAsleep(t *testing.T) {
	e := newEnv(t, section())
	cloud := e.cloud()
	d := e.device()
	d.Connect("carol", true, 60)
	d.Subscribe(sn.QoS1, 1, "for/carol")
	d.Send(sn.SleepMsg(60))
	d.Expect(sn.DISCONNECT)
	d.Connect("dave", true, 60) // carol's address, another device
	cloud.Publish("for/carol", "wait", 1, false)
	d.Send(sn.PingreqMsg("")) // dave's ping, not carol's wake-up
	d.Expect(sn.PINGRESP)
	c := e.device()
	c.Send(sn.PingreqMsg("carol"))
	if p := c.Expect(sn.PUBLISH); string(p.Payload()) != "wait" {
		t.Fatalf("PUBLISH %s", p)
	}
}

func TestCleanSessionFalseResume(t *testing.T) {
	e := newEnv(t, section())
	cloud := e.cloud()
	d := e.device()
	d.Connect("keep", false, 60)
	sa := d.Subscribe(sn.QoS1, 1, "k/1")
	d.Send(sn.DisconnectMsg())
	d.Expect(sn.DISCONNECT)
	for i := range 3 {
		cloud.Publish("k/1", payload(i), 1, false)
	}
	d.NewPort()
	d.Connect("keep", false, 60)
	for i := range 3 {
		p := d.Expect(sn.PUBLISH)
		if p.TopicID() != sa.TopicID() || string(p.Payload()) != payload(i) {
			t.Fatalf("PUBLISH %d %s", i, p)
		}
		d.Send(sn.PubackMsg(p.TopicID(), p.MsgID(), 0))
	}
	// A clean start discards it.
	d.Connect("keep", true, 60)
	if subs := e.session("keep").Subscriptions(); len(subs) != 0 {
		t.Fatalf("subscriptions after clean start: %v", subs)
	}
}

// Unacknowledged deliveries of a persistent session come again after a
// reconnect, with their message ids.
func TestResumeRedeliversUnacked(t *testing.T) {
	e := newEnv(t, section(`retry_interval = "30s"`))
	cloud := e.cloud()
	d := e.device()
	d.Connect("redo", false, 60)
	d.Subscribe(sn.QoS2, 1, "r/2")
	cloud.Publish("r/2", "q2", 2, false)
	p := d.Expect(sn.PUBLISH)
	d.Send(sn.PubrecMsg(p.MsgID()))
	d.Expect(sn.PUBREL)
	d.NewPort() // gone before PUBCOMP
	d.Connect("redo", false, 60)
	r := d.Expect(sn.PUBREL) // the exchange resumes where it stopped
	if r.MsgID() != p.MsgID() {
		t.Fatalf("PUBREL %s after PUBLISH %s", r, p)
	}
	d.Send(sn.PubcompMsg(r.MsgID()))
	e.waitFor("ack", func() bool { return e.session("redo").Stats().Inflight == 0 })
}

func TestSubsResume(t *testing.T) {
	e := newEnv(t, section(`subs_resume = true`))
	cloud := e.cloud()
	d := e.device()
	d.Connect("resub", false, 60)
	sa := d.Subscribe(sn.QoS1, 1, "sr/1")
	d.Send(sn.DisconnectMsg())
	d.Expect(sn.DISCONNECT)
	cloud.Publish("sr/1", "queued", 1, false)
	d.Connect("resub", false, 60)
	reg := d.Expect(sn.REGISTER) // the device is told its ids again first
	if reg.TopicName() != "sr/1" || reg.TopicID() != sa.TopicID() {
		t.Fatalf("REGISTER %s", reg)
	}
	d.Send(sn.RegackMsg(reg.TopicID(), reg.MsgID(), 0))
	if p := d.Expect(sn.PUBLISH); string(p.Payload()) != "queued" || p.TopicID() != sa.TopicID() {
		t.Fatalf("PUBLISH %s", p)
	}
}

func TestSessionExpiry(t *testing.T) {
	e := newEnv(t, section(`session_expiry = "300ms"`))
	d := e.device()
	d.Connect("brief", false, 60)
	d.Subscribe(sn.QoS1, 1, "b/1")
	d.Send(sn.DisconnectMsg())
	d.Expect(sn.DISCONNECT)
	e.waitFor("broker session gone", func() bool {
		_, ok := e.b.Session("mqttsn/brief")
		return !ok
	})
	d.Connect("brief", false, 60)
	if subs := e.session("brief").Subscriptions(); len(subs) != 0 {
		t.Fatalf("expired session came back: %v", subs)
	}
}

func TestAuthenticationDenied(t *testing.T) {
	// Hardened profile, no authenticator: nobody gets in.
	e := newEnv(t, section(`authentication = []`))
	d := e.device()
	d.Send(sn.ConnectMsg("intruder", sn.Clean, 60))
	if p := d.Expect(sn.CONNACK); p.RC() != 0x80 {
		t.Fatalf("CONNACK %s", p)
	}
	d.Send(sn.PingreqMsg(""))
	d.Expect(sn.DISCONNECT)
}

func TestAuthorization(t *testing.T) {
	deny := gateway.AuthorizerFunc(func(_ *gateway.ClientInfo, _ gateway.Action, topic string) bool {
		return !strings.HasPrefix(topic, "forbidden")
	})
	e := newEnv(t, section(), withAuthorizer(deny))
	cloud := e.cloud("#")
	d := e.device()
	d.Send(sn.ConnectMsg("az", sn.Clean|sn.Will, 1))
	d.Expect(sn.WILLTOPICREQ)
	d.Send(sn.WillTopicMsg(0, "forbidden/will"))
	d.Expect(sn.WILLMSGREQ)
	d.Send(sn.WillMsgMsg("no"))
	d.Expect(sn.CONNACK)
	tid := d.Register(1, "forbidden/t")
	d.Send(sn.PublishMsg(sn.QoS1, tid, 2, []byte("x")))
	if p := d.Expect(sn.PUBACK); p.RC() != 0x80 {
		t.Fatalf("PUBACK %s", p)
	}
	if p := d.Subscribe(sn.QoS0, 3, "forbidden/#"); p.RC() != 0x80 {
		t.Fatalf("SUBACK %s", p)
	}
	d.Expect(sn.DISCONNECT) // keepalive timeout; the will is denied too
	e.waitFor("will refused", func() bool { return e.counter("messages.will.failed") == 1 })
	cloud.Publish("allowed", "", 0, false)
	cloud.Expect("allowed", "") // nothing forbidden before it
}

func TestMountpoint(t *testing.T) {
	e := newEnv(t, section(`mountpoint = "sn/${clientid}/"`))
	cloud := e.cloud("sn/#")
	d := e.device()
	d.Connect("m1", true, 60)
	tid := d.Register(1, "temp")
	d.Send(sn.PublishMsg(sn.QoS0, tid, 0, []byte("21")))
	cloud.Expect("sn/m1/temp", "21")
	sa := d.Subscribe(sn.QoS0, 2, "cmd")
	cloud.Publish("sn/m1/cmd", "go", 0, false)
	if p := d.Expect(sn.PUBLISH); p.TopicID() != sa.TopicID() || string(p.Payload()) != "go" {
		t.Fatalf("PUBLISH %s", p)
	}
}

func TestKickSendsDisconnect(t *testing.T) {
	e := newEnv(t, section())
	d := e.device()
	d.Connect("kicked", true, 60)
	// A ping round trip, then a broker lock, order the test after
	// everything Listener.Connect wrote (see env.session).
	d.Send(sn.PingreqMsg(""))
	d.Expect(sn.PINGRESP)
	e.session("kicked").Stats()
	c, ok := e.gateway().Client("kicked")
	if !ok {
		t.Fatal("not connected")
	}
	c.Kick("kicked")
	d.Expect(sn.DISCONNECT)
	d.Send(sn.PingreqMsg(""))
	d.Expect(sn.DISCONNECT)
	d.Connect("kicked", true, 60) // and may come back
}

func TestReconnectWhileActive(t *testing.T) {
	e := newEnv(t, section())
	cloud := e.cloud()
	d := e.device()
	d.Connect("again", true, 60)
	d.Subscribe(sn.QoS0, 1, "a/1")
	d.Connect("again", true, 60) // the device restarted
	cloud.Publish("a/1", "x", 0, false)
	cloud.Publish("done", "", 0, false)
	d.Send(sn.PingreqMsg(""))
	d.Expect(sn.PINGRESP) // the clean start dropped the subscription
	if subs := e.session("again").Subscriptions(); len(subs) != 0 {
		t.Fatalf("subscriptions %v", subs)
	}
}

func TestAdvertise(t *testing.T) {
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	newEnv(t, section(`gateway_id = 9`, `broadcast = true`, `advertise_interval = "1s"`,
		fmt.Sprintf("broadcast_address = %q", pc.LocalAddr().String())))
	buf := make([]byte, 64)
	for range 2 { // at start, then every interval
		_ = pc.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, err := pc.ReadFromUDP(buf)
		if err != nil {
			t.Fatal(err)
		}
		p, err := sn.Parse(buf[:n])
		if err != nil || p.Type != sn.ADVERTISE || sn.Hex(p.Body) != "09 00 01" {
			t.Fatalf("ADVERTISE %s, %v", p, err)
		}
	}
}

// clientinfo_override renames the broker client; the device's own
// clientid still keys its MQTT-SN session (PINGREQ carries that one).
func TestClientinfoOverride(t *testing.T) {
	e := newEnv(t, section("[gateway.mqttsn.clientinfo_override]", `clientid = "gw${gateway_id}-${clientid}"`))
	cloud := e.cloud("#")
	d := e.device()
	d.Connect("dev", true, 60)
	d.Send(sn.PublishMsg(sn.QoS1|sn.ShortTopic, sn.Short("ov"), 1, []byte("x")))
	d.Expect(sn.PUBACK)
	if m := cloud.Expect("ov", "x"); m.ClientID != "gw1-dev" {
		t.Fatalf("published as %q", m.ClientID)
	}
	d.NewPort()
	d.Send(sn.PingreqMsg("dev"))
	d.Expect(sn.PINGRESP)
	if !e.connected("gw1-dev") || e.connected("dev") {
		t.Fatal("broker client not renamed")
	}
}
