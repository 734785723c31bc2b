package coap_test

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/message/pool"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/protocols/coap"
)

func TestPublish(t *testing.T) {
	e := newEnv(t, conf(""))
	s := e.subscribe("t/#", 2)
	c := dial(t, e.udp())

	// go-coap sends CON: publish_qos = coap maps it to QoS 1
	expectCode(t, post(t, c, "/ps/t/a", "hello", "c=dev1", "u=alice", "p=pw"), codes.Changed)
	d := s.next(t)
	if d.Msg.Topic != "t/a" || string(d.Msg.Payload) != "hello" || d.Msg.QoS != 1 || d.Msg.ClientID != "dev1" {
		t.Fatalf("got %+v", d.Msg)
	}
	// explicit qos and retain, long names; expiry becomes a header
	expectCode(t, post(t, c, "/ps/t/b", "x", "clientid=dev1", "qos=0", "retain=true", "expiry=60"), codes.Changed)
	d = s.next(t)
	if d.Msg.QoS != 0 || !d.Msg.Retain || d.Msg.Headers["Message-Expiry-Interval"] != "60" {
		t.Fatalf("got %+v", d.Msg)
	}
	// NON → QoS 0
	r := dialRaw(t, e.udp())
	m := r.req(coap.NON, 2, "tk", "/ps/t/non", "c=dev2")
	m.Payload = []byte("n")
	resp := r.roundTrip(m)
	if resp.Type != coap.NON || resp.Code != code(2, 4) || string(resp.Token) != "tk" {
		t.Fatalf("NON response %+v", resp)
	}
	if d = s.next(t); d.Msg.QoS != 0 || d.Msg.Topic != "t/non" {
		t.Fatalf("got %+v", d.Msg)
	}
	// PUT publishes too; DELETE is not allowed
	r2, err := c.Put(ctx(t), "/ps/t/put", message.TextPlain, bytes.NewReader([]byte("p")), query("c=dev1")...)
	if err != nil {
		t.Fatal(err)
	}
	expectCode(t, r2, codes.Changed)
	s.next(t)
	r3, err := c.Delete(ctx(t), "/ps/t/put")
	if err != nil {
		t.Fatal(err)
	}
	expectCode(t, r3, codes.MethodNotAllowed)
	// connectionless clients live with their peer and are reused
	if n := e.gw().ClientCount(); n != 2 {
		t.Fatalf("%d clients, want dev1 and dev2", n)
	}
}

func TestPublishQoSFromConfig(t *testing.T) {
	e := newEnv(t, conf(`publish_qos = "qos2"`))
	s := e.subscribe("q", 2)
	c := dial(t, e.udp())
	expectCode(t, post(t, c, "/ps/q", "x"), codes.Changed)
	if d := s.next(t); d.Msg.QoS != 2 {
		t.Fatalf("qos %d", d.Msg.QoS)
	}
	expectCode(t, post(t, c, "/ps/q", "x", "q=1"), codes.Changed)
	if d := s.next(t); d.Msg.QoS != 1 {
		t.Fatalf("qos %d, want the explicit 1", d.Msg.QoS)
	}
}

func TestMountpoint(t *testing.T) {
	e := newEnv(t, conf(`mountpoint = "coap/${clientid}/"`))
	s := e.subscribe("coap/dev9/#", 0)
	c := dial(t, e.udp())
	expectCode(t, post(t, c, "/ps/up", "x", "c=dev9"), codes.Changed)
	if d := s.next(t); d.Msg.Topic != "coap/dev9/up" {
		t.Fatalf("topic %s", d.Msg.Topic)
	}
	col := newCollector()
	obs, err := c.Observe(ctx(t), "/ps/down", col.fn, query("c=dev9")...)
	if err != nil {
		t.Fatal(err)
	}
	defer obs.Cancel(ctx(t))
	e.publish("coap/dev9/down", "cmd", 0)
	if got := col.next(t); got != "cmd" {
		t.Fatalf("got %q", got)
	}
}

func TestObserveWildcard(t *testing.T) {
	e := newEnv(t, conf(""))
	c := dial(t, e.udp())
	col := newCollector()
	obs, err := c.Observe(ctx(t), "/ps/sensors/%2B/temp", col.fn, query("c=obs1")...)
	if err != nil {
		t.Fatal(err)
	}
	eventually(t, "subscription", func() bool { return e.b.HasSubscribers("sensors/+/temp") })
	e.publish("sensors/a/temp", "21", 0)
	e.publish("sensors/b/temp", "22", 1)
	e.publish("sensors/b/hum", "no", 0)
	if a, b := col.next(t), col.next(t); a != "21" || b != "22" {
		t.Fatalf("got %q %q", a, b)
	}
	if err := obs.Cancel(ctx(t)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "unsubscribed", func() bool { return !e.b.HasSubscribers("sensors/+/temp") })

	// %23 is '#'
	col2 := newCollector()
	if _, err := c.Observe(ctx(t), "/ps/all/%23", col2.fn); err != nil {
		t.Fatal(err)
	}
	eventually(t, "subscription", func() bool { return e.b.HasSubscribers("all/#") })
	e.publish("all/x/y", "deep", 0)
	if got := col2.next(t); got != "deep" {
		t.Fatalf("got %q", got)
	}
}

func TestObserveRSTCancels(t *testing.T) {
	e := newEnv(t, conf(`notify_type = "non"`))
	r := dialRaw(t, e.udp())
	m := r.req(coap.CON, 1, "ob", "/ps/rst", "c=r1")
	m.Options = append([]coap.Option{{ID: 6}}, m.Options...) // Observe=0 sorts before Uri-Path
	resp := r.roundTrip(m)
	if resp.Code != code(2, 5) {
		t.Fatalf("register: %+v", resp)
	}
	e.publish("rst", "1", 0)
	n := r.recv()
	if n.Type != coap.NON || string(n.Payload) != "1" || string(n.Token) != "ob" {
		t.Fatalf("notification %+v", n)
	}
	r.send(&coap.Message{Type: coap.RST, MID: n.MID})
	eventually(t, "unsubscribed", func() bool { return !e.b.HasSubscribers("rst") })
}

func TestCONNotifyQueueDropsOldest(t *testing.T) {
	e := newEnv(t, conf(`notify_type = "con"
notify_queue_len = 3
ack_timeout = "30s"`))
	r := dialRaw(t, e.udp())
	m := r.req(coap.CON, 1, "q1", "/ps/queue", "c=slow")
	m.Options = append([]coap.Option{{ID: 6}}, m.Options...)
	if resp := r.roundTrip(m); resp.Code != code(2, 5) {
		t.Fatalf("register: %+v", resp)
	}
	for i := 1; i <= 10; i++ {
		e.publish("queue", string(rune('0'+i%10)), 0)
	}
	// one in flight (1), 2..7 dropped for 8, 9, 10
	var got []string
	for range 4 {
		n := r.recv()
		if n.Type != coap.CON {
			t.Fatalf("want CON, got %+v", n)
		}
		got = append(got, string(n.Payload))
		r.ack(n)
	}
	if strings.Join(got, "") != "1890" {
		t.Fatalf("notifications %q, want 1 8 9 0", got)
	}
	if n := e.counter("delivery.dropped.queue_full"); n != 6 {
		t.Fatalf("queue_full %v, want 6", n)
	}
}

func TestCONNotifySlowAckRetransmits(t *testing.T) {
	e := newEnv(t, conf(`notify_type = "qos"
ack_timeout = "50ms"`))
	r := dialRaw(t, e.udp())
	m := r.req(coap.CON, 1, "q1", "/ps/slow", "c=slow")
	m.Options = append([]coap.Option{{ID: 6}}, m.Options...)
	if resp := r.roundTrip(m); resp.Code != code(2, 5) {
		t.Fatalf("register: %+v", resp)
	}
	e.publish("slow", "a", 1)
	first := r.recv()
	again := r.recv() // not acknowledged: the same message comes again
	if first.Type != coap.CON || again.MID != first.MID || string(again.Payload) != "a" {
		t.Fatalf("first %+v again %+v", first, again)
	}
	r.ack(again)
	e.publish("slow", "b", 0) // QoS 0 → NON under notify_type = qos
	for {
		n := r.recv()
		if n.MID == first.MID {
			continue // a retransmission in flight when the ACK went
		}
		if n.Type != coap.NON || string(n.Payload) != "b" {
			t.Fatalf("got %+v", n)
		}
		break
	}
	if e.counter("packets.retransmitted") < 1 {
		t.Fatal("retransmission not counted")
	}
}

func TestConnectionMode(t *testing.T) {
	e := newEnv(t, conf(`connection_required = true`))
	s := e.subscribe("cm/#", 0)
	c := dial(t, e.udp())
	tok := connect(t, c, "cm1", "username=u1", "password=p")
	if b, err := hex.DecodeString(tok); err != nil || len(b) != 16 {
		t.Fatalf("token %q is not 128 random bits", tok)
	}
	if tok2 := connect(t, dial(t, e.udp()), "cm2"); tok2 == tok {
		t.Fatal("tokens repeat")
	}
	// every request needs clientid and token
	expectCode(t, post(t, c, "/ps/cm/x", "1"), codes.Unauthorized)
	expectCode(t, post(t, c, "/ps/cm/x", "1", "c=cm1"), codes.Unauthorized)
	expectCode(t, post(t, c, "/ps/cm/x", "1", "c=cm1", "t=00"+tok[2:]), codes.Unauthorized)
	expectCode(t, post(t, c, "/ps/cm/x", "1", "c=cm2", "t="+tok), codes.Unauthorized)
	expectCode(t, post(t, c, "/ps/cm/x", "ok", "c=cm1", "t="+tok), codes.Changed)
	if d := s.next(t); string(d.Msg.Payload) != "ok" || d.Msg.ClientID != "cm1" {
		t.Fatalf("got %+v", d.Msg)
	}
	r, err := c.Put(ctx(t), "/mqtt/connection", message.TextPlain, bytes.NewReader(nil), query("c=cm1", "t="+tok)...)
	if err != nil {
		t.Fatal(err)
	}
	expectCode(t, r, codes.Changed)
	if _, ok := e.gw().Client("cm1"); !ok {
		t.Fatal("client not registered")
	}
	r, err = c.Delete(ctx(t), "/mqtt/connection", query("c=cm1", "t="+tok)...)
	if err != nil {
		t.Fatal(err)
	}
	expectCode(t, r, codes.Deleted)
	if _, ok := e.gw().Client("cm1"); ok {
		t.Fatal("client still registered after DELETE")
	}
	expectCode(t, post(t, c, "/ps/cm/x", "1", "c=cm1", "t="+tok), codes.Unauthorized)
	// missing clientid
	expectCode(t, post(t, c, "/mqtt/connection", ""), codes.BadRequest)
}

func TestTokenTakeoverNewPort(t *testing.T) {
	e := newEnv(t, conf(`connection_required = true
notify_type = "non"`))
	a := dialRaw(t, e.udp())
	resp := a.roundTrip(a.req(coap.CON, 2, "c1", "/mqtt/connection", "c=nat1"))
	if resp.Code != code(2, 1) {
		t.Fatalf("connect %+v", resp)
	}
	tok := string(resp.Payload)
	m := a.req(coap.CON, 1, "ob", "/ps/nat", "c=nat1", "t="+tok)
	m.Options = append([]coap.Option{{ID: 6}}, m.Options...)
	if resp := a.roundTrip(m); resp.Code != code(2, 5) {
		t.Fatalf("observe %+v", resp)
	}
	e.publish("nat", "before", 0)
	if n := a.recv(); string(n.Payload) != "before" {
		t.Fatalf("got %+v", n)
	}
	// the NAT gave the device a new source port
	b := dialRaw(t, e.udp())
	if resp := b.roundTrip(b.req(coap.CON, 3, "hb", "/mqtt/connection", "c=nat1", "t="+tok)); resp.Code != code(2, 4) {
		t.Fatalf("heartbeat from new port %+v", resp)
	}
	e.publish("nat", "after", 0)
	n := b.recv()
	if string(n.Payload) != "after" || string(n.Token) != "ob" {
		t.Fatalf("got %+v", n)
	}
	if _, ok := a.tryRecv(100 * time.Millisecond); ok {
		t.Fatal("old address still gets notifications")
	}
	// a stranger with a wrong token takes nothing over
	x := dialRaw(t, e.udp())
	if resp := x.roundTrip(x.req(coap.CON, 3, "hb", "/mqtt/connection", "c=nat1", "t=ffff")); resp.Code != code(4, 1) {
		t.Fatalf("wrong token %+v", resp)
	}
	e.publish("nat", "still", 0)
	if n := b.recv(); string(n.Payload) != "still" {
		t.Fatalf("got %+v", n)
	}
	if e.counter("sessions.takenover") != 1 {
		t.Fatalf("takenover %v", e.counter("sessions.takenover"))
	}
}

func TestHeartbeatExpiry(t *testing.T) {
	e := newEnv(t, conf(`heartbeat = "1s"`))
	c := dial(t, e.udp())
	tok := connect(t, c, "hb1")
	// heart-beating for twice the heartbeat keeps the connection
	for range 5 {
		r, err := c.Put(ctx(t), "/mqtt/connection", message.TextPlain, bytes.NewReader(nil), query("c=hb1", "t="+tok)...)
		if err != nil {
			t.Fatal(err)
		}
		expectCode(t, r, codes.Changed)
		time.Sleep(400 * time.Millisecond)
	}
	if _, ok := e.gw().Client("hb1"); !ok {
		t.Fatal("disconnected although heart-beating")
	}
	eventually(t, "heartbeat expiry", func() bool { _, ok := e.gw().Client("hb1"); return !ok })
	if e.counter("connections.heartbeat_timeout") != 1 {
		t.Fatal("expiry not counted")
	}
}

func TestBlockwisePublish64KB(t *testing.T) {
	e := newEnv(t, conf(""))
	s := e.subscribe("big", 0)
	c := dial(t, e.udp(), options.WithBlockwise(true, blockwise.SZX1024, 10*time.Second))
	payload := bytes.Repeat([]byte("0123456789abcdef"), 4096) // 64 KiB
	r, err := c.Post(ctx(t), "/ps/big", message.AppOctets, bytes.NewReader(payload), query("c=bw")...)
	if err != nil {
		t.Fatal(err)
	}
	expectCode(t, r, codes.Changed)
	if d := s.next(t); !bytes.Equal(d.Msg.Payload, payload) {
		t.Fatalf("payload of %d bytes arrived, want %d", len(d.Msg.Payload), len(payload))
	}
}

func TestBlockwiseLimits(t *testing.T) {
	e := newEnv(t, conf(`[gateway.coap.blockwise]
max_body_size = "2KB"`))
	c := dial(t, e.udp(), options.WithBlockwise(true, blockwise.SZX512, 10*time.Second))
	r, err := c.Post(ctx(t), "/ps/big", message.AppOctets, bytes.NewReader(make([]byte, 4096)))
	if err != nil {
		t.Fatal(err)
	}
	expectCode(t, r, codes.RequestEntityTooLarge)
}

func TestBlock2Notification(t *testing.T) {
	e := newEnv(t, conf(`notify_type = "non"
[gateway.coap.blockwise]
max_block_size = 256`))
	r := dialRaw(t, e.udp())
	m := r.req(coap.CON, 1, "b2", "/ps/fw", "c=b2")
	m.Options = append([]coap.Option{{ID: 6}}, m.Options...)
	if resp := r.roundTrip(m); resp.Code != code(2, 5) {
		t.Fatalf("register %+v", resp)
	}
	body := strings.Repeat("x", 600) + "END"
	e.publish("fw", body, 0)
	n := r.recv()
	got := string(n.Payload)
	if v, ok := n.Opt(23); !ok || v[0] != 0x0c { // num 0, more, szx 4 (256)
		t.Fatalf("first block %+v", n)
	}
	for num := byte(1); ; num++ {
		g := r.req(coap.CON, 1, "g2", "/ps/fw")
		g.Options = append(g.Options, coap.Option{ID: 23, Value: []byte{num<<4 | 4}})
		resp := r.roundTrip(g)
		if resp.Code != code(2, 5) {
			t.Fatalf("block %d: %+v", num, resp)
		}
		got += string(resp.Payload)
		if v, _ := resp.Opt(23); v[0]&8 == 0 {
			break
		}
	}
	if got != body {
		t.Fatalf("reassembled %d bytes, want %d", len(got), len(body))
	}
}

func TestHardenedNoAuthenticator(t *testing.T) {
	e := newEnv(t, `
[gateway.coap]
[gateway.coap.listeners.udp.default]
bind = "127.0.0.1:0"
`, withProfile(config.ProfileHardened))
	c := dial(t, e.udp())
	expectCode(t, post(t, c, "/ps/x", "1"), codes.Unauthorized)
	expectCode(t, post(t, c, "/mqtt/connection", "", "c=a"), codes.Unauthorized)
	_, err := c.Observe(ctx(t), "/ps/x", func(m *pool.Message) {})
	_ = err // go-coap reports the 4.01 as a failed observation or a response
	if e.b.HasSubscribers("x") {
		t.Fatal("unauthorized observe subscribed")
	}
}

func TestBlockwiseDisabled(t *testing.T) {
	e := newEnv(t, conf(`[gateway.coap.blockwise]
enable = false`))
	r := dialRaw(t, e.udp())
	m := r.req(coap.CON, 2, "b1", "/ps/x")
	m.Options = append(m.Options, coap.Option{ID: 27, Value: []byte{0x0e}}) // num 0, more, 1024
	m.Payload = make([]byte, 1024)
	if resp := r.roundTrip(m); resp.Code != code(4, 2) {
		t.Fatalf("got %+v", resp)
	}
}

func TestObserveCancelDropsPending(t *testing.T) {
	e := newEnv(t, conf(`notify_type = "con"
ack_timeout = "30s"`))
	r := dialRaw(t, e.udp())
	m := r.req(coap.CON, 1, "oc", "/ps/pend", "c=pend")
	m.Options = append([]coap.Option{{ID: 6}}, m.Options...)
	if resp := r.roundTrip(m); resp.Code != code(2, 5) {
		t.Fatalf("register %+v", resp)
	}
	e.publish("pend", "1", 0)
	e.publish("pend", "2", 0)
	e.publish("pend", "3", 0)
	first := r.recv()
	if string(first.Payload) != "1" {
		t.Fatalf("got %+v", first)
	}
	// cancel with the same token while 2 and 3 wait behind 1
	c := r.req(coap.CON, 1, "oc", "/ps/pend", "c=pend")
	c.Options = append([]coap.Option{{ID: 6, Value: []byte{1}}}, c.Options...)
	if resp := r.roundTrip(c); resp.Code != code(2, 5) || resp.MID != c.MID {
		t.Fatalf("cancel %+v", resp)
	}
	eventually(t, "unsubscribed", func() bool { return !e.b.HasSubscribers("pend") })
	r.ack(first)
	e.publish("pend", "4", 0)
	// the probe's answer is the next datagram: nothing queued went out
	probe := r.req(coap.CON, 9, "pr", "/ps/x")
	if resp := r.roundTrip(probe); resp.MID != probe.MID {
		t.Fatalf("a dropped notification went out: %+v", resp)
	}
}

func TestDuplicateConnectionAndKick(t *testing.T) {
	e := newEnv(t, conf(""))
	c := dial(t, e.udp())
	tok1 := connect(t, c, "dup1")
	tok2 := connect(t, dial(t, e.udp()), "dup1")
	expectCode(t, post(t, c, "/ps/k", "x", "c=dup1", "t="+tok1), codes.Unauthorized)
	expectCode(t, post(t, c, "/ps/k", "x", "c=dup1", "t="+tok2), codes.Changed)
	if n := e.gw().ClientCount(); n != 1 {
		t.Fatalf("%d clients", n)
	}
	cl, ok := e.gw().Client("dup1")
	if !ok {
		t.Fatal("not connected")
	}
	cl.Kick("api")
	expectCode(t, post(t, c, "/ps/k", "x", "c=dup1", "t="+tok2), codes.Unauthorized)
	// DELETE without a connection
	r, err := c.Delete(ctx(t), "/mqtt/connection", query("c=dup1", "t="+tok2)...)
	if err != nil {
		t.Fatal(err)
	}
	expectCode(t, r, codes.Unauthorized)
}

func TestSubscribeQoS(t *testing.T) {
	for _, c := range []struct {
		conf  string
		query []string
		want  byte
	}{
		{`subscribe_qos = "coap"`, nil, 1}, // go-coap observes with CON
		{`subscribe_qos = "qos2"`, nil, 2},
		{`subscribe_qos = "qos2"`, []string{"q=0"}, 0},
	} {
		e := newEnv(t, conf(c.conf))
		cl := dial(t, e.udp())
		obs, err := cl.Observe(ctx(t), "/ps/sq", func(*pool.Message) {}, query(append([]string{"c=sq"}, c.query...)...)...)
		if err != nil {
			t.Fatal(err)
		}
		gc, ok := e.gw().Client("sq")
		if !ok {
			t.Fatal("no client")
		}
		if got := gc.Subscriptions()["sq"]; got != c.want {
			t.Errorf("%s %v: qos %d, want %d", c.conf, c.query, got, c.want)
		}
		_ = obs.Cancel(ctx(t))
	}
}
