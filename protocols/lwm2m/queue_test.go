package lwm2m

import (
	"context"
	"net"
	"testing"
	"time"

	piondtls "github.com/pion/dtls/v3"
	coapdtls "github.com/plgd-dev/go-coap/v3/dtls"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/options"

	"github.com/edgeway/edgeway/agent/config"
)

// Queue mode: commands for a sleeping device wait until it is heard from,
// those whose mheaders.ttl ran out are dropped and counted.
func TestQueueMode(t *testing.T) {
	for _, tc := range []struct {
		name string
		qs   []string
	}{
		{"lwm2m 1.0 binding UQ", []string{"lwm2m=1.0", "b=UQ"}},
		{"lwm2m 1.1 Q parameter", []string{"lwm2m=1.1", "b=U", "Q"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const window = 200 * time.Millisecond
			e := newEnv(t, conf(`qmode_time_window = "200ms"`, ""))
			up := e.observe("lwm2m/q/up/#")
			d := newDevice(t, "q")
			d.dial(e.addr("lwm2m:udp:default"))
			d.set("/3/0/0", 0, []byte("Edge"))
			if c := d.register("</3/0>", append([]string{"lt=300"}, tc.qs...)...); c != codes.Created {
				t.Fatalf("register: %v", c)
			}
			up.next(t)
			time.Sleep(window + 100*time.Millisecond) // the device sleeps

			e.publish("lwm2m/q/dn", `{"reqID":"q1","msgType":"read","data":{"path":"/3/0/0"},"mheaders":{"ttl":0.05}}`)
			e.publish("lwm2m/q/dn", `{"reqID":"q2","msgType":"read","data":{"path":"/3/0/0"}}`)
			eventually(t, "commands queued", func() bool { return e.counter("lwm2m.downlink.queued") == 2 })
			if len(d.reqs) != 0 || e.counter("lwm2m.downlink.sent") != 0 {
				t.Fatal("a command went to a sleeping device")
			}
			time.Sleep(100 * time.Millisecond) // q1's ttl runs out

			if c := d.update(""); c != codes.Changed { // the device wakes up
				t.Fatalf("update: %v", c)
			}
			if m := up.nextJSON(t); m["msgType"] != "update" {
				t.Fatalf("got %v", m)
			}
			if r := d.nextReq(); r.path != "/3/0/0" {
				t.Fatalf("device got %+v", r)
			}
			m := up.nextJSON(t)
			if m["reqID"] != "q2" || m["data"].(map[string]any)["code"] != "2.05" {
				t.Fatalf("reply %v", m)
			}
			if e.counter("lwm2m.downlink.dropped.ttl") != 1 || e.counter("lwm2m.downlink.sent") != 1 {
				t.Fatalf("dropped %v sent %v", e.counter("lwm2m.downlink.dropped.ttl"), e.counter("lwm2m.downlink.sent"))
			}
		})
	}
}

func TestQueueBound(t *testing.T) {
	e := newEnv(t, conf(`max_mqueue_len = 2`+"\n"+`qmode_time_window = "0s"`, ""))
	up := e.observe("lwm2m/qb/up/#")
	d := newDevice(t, "qb")
	d.dial(e.addr("lwm2m:udp:default"))
	if c := d.register("</3/0>", "lt=300", "b=UQ"); c != codes.Created {
		t.Fatalf("register: %v", c)
	}
	up.next(t)
	for _, id := range []string{"1", "2", "3"} {
		e.publish("lwm2m/qb/dn", `{"reqID":"`+id+`","msgType":"read","data":{"path":"/3/0/0"}}`)
	}
	m := up.nextJSON(t)
	if m["reqID"] != "3" || m["msgType"] != "coap_timeout" {
		t.Fatalf("overflow reply %v", m)
	}
	if e.counter("lwm2m.downlink.dropped.queue_full") != 1 {
		t.Fatal("overflow not counted")
	}
}

func TestDTLSPSK(t *testing.T) {
	e := newEnv(t, conf("", `
[gateway.lwm2m.listeners.dtls.default]
bind = "127.0.0.1:0"
psk = [{ identity = "dtls-ep", key = "secret-key" }, { identity = "other", key = "k2" }]
`))
	addr := e.addr("lwm2m:dtls:default")
	up := e.observe("lwm2m/dtls-ep/up/#")
	d := newDevice(t, "dtls-ep")
	d.dialDTLS(addr, "dtls-ep", "secret-key")
	if c := d.register("</3/0>", "lt=60"); c != codes.Created {
		t.Fatalf("register: %v", c)
	}
	if m := up.nextJSON(t); m["msgType"] != "register" {
		t.Fatalf("got %v", m)
	}
	d.set("/3/0/0", 0, []byte("Edge"))
	e.publish("lwm2m/dtls-ep/dn", `{"reqID":"d1","msgType":"read","data":{"path":"/3/0/0"}}`)
	d.nextReq()
	if m := up.nextJSON(t); m["data"].(map[string]any)["code"] != "2.05" {
		t.Fatalf("reply %v", m)
	}

	// A key for another identity does not open this endpoint.
	o := newDevice(t, "dtls-ep")
	o.dialDTLS(addr, "other", "k2")
	if c := o.register("</3/0>", "lt=60"); c != codes.Forbidden {
		t.Fatalf("register under another identity: %v", c)
	}
}

// A dtls device that lost its session does a new handshake from a new port
// and sends an Update: the registration moves to the new session.
func TestDTLSNewSessionUpdate(t *testing.T) {
	e := newEnv(t, conf("", `
[gateway.lwm2m.listeners.dtls.default]
bind = "127.0.0.1:0"
psk = [{ identity = "mover", key = "k" }]
`))
	addr := e.addr("lwm2m:dtls:default")
	up := e.observe("lwm2m/mover/up/#")
	d := newDevice(t, "mover")
	d.dialDTLS(addr, "mover", "k")
	if c := d.register("</3/0>", "lt=60"); c != codes.Created {
		t.Fatalf("register: %v", c)
	}
	up.next(t)
	_ = d.cc.Close()
	d.dialDTLS(addr, "mover", "k")
	if c := d.update(""); c != codes.Changed {
		t.Fatalf("update from the new session: %v", c)
	}
	up.next(t)
	d.set("/3/0/0", 0, []byte("Edge"))
	e.publish("lwm2m/mover/dn", `{"reqID":"m","msgType":"read","data":{"path":"/3/0/0"}}`)
	d.nextReq()
	if m := up.nextJSON(t); m["reqID"] != "m" || m["data"].(map[string]any)["code"] != "2.05" {
		t.Fatalf("reply %v", m)
	}
}

func TestUpdatePublishCondition(t *testing.T) {
	e := newEnv(t, conf(`update_msg_publish_condition = "contains_object_list"`, ""))
	up := e.observe("lwm2m/pc/up/#")
	d := newDevice(t, "pc")
	d.dial(e.addr("lwm2m:udp:default"))
	if c := d.register("</3/0>", "lt=60"); c != codes.Created {
		t.Fatalf("register: %v", c)
	}
	up.next(t)
	if c := d.update("", "lt=30"); c != codes.Changed {
		t.Fatalf("update: %v", c)
	}
	if c := d.update("</3/0>,</4/0>"); c != codes.Changed {
		t.Fatalf("update: %v", c)
	}
	m := up.nextJSON(t) // the first update published nothing
	data := m["data"].(map[string]any)
	if m["msgType"] != "update" || data["lt"] != float64(30) || len(data["objectList"].([]any)) != 2 {
		t.Fatalf("got %v", m)
	}
}

// Removing one listener leaves the registrations of the other alone.
func TestListenerRemoved(t *testing.T) {
	dtls := `
[gateway.lwm2m.listeners.dtls.default]
bind = "127.0.0.1:0"
psk = [{ identity = "x", key = "k" }]
`
	e := newEnv(t, conf("", dtls))
	up := e.observe("lwm2m/stay/up/#")
	d := newDevice(t, "stay")
	addr := e.addr("lwm2m:udp:default")
	d.dial(addr)
	if c := d.register("</3/0>", "lt=60"); c != codes.Created {
		t.Fatalf("register: %v", c)
	}
	up.next(t)
	c, err := config.Parse([]byte(conf("", "")), "test.toml")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := e.m.Apply(ctx, c.Gateways); err != nil {
		t.Fatalf("apply: %v", err)
	}
	if _, ok := e.gw().Listener("lwm2m:dtls:default"); ok {
		t.Fatal("dtls listener still there")
	}
	if c := d.update(""); c != codes.Changed {
		t.Fatalf("update after the dtls listener went: %v", c)
	}
	if m := up.nextJSON(t); m["msgType"] != "update" {
		t.Fatalf("got %v", m)
	}
}

// With a DTLS Connection ID the session itself follows the device to a
// new address: no new handshake, no re-register, downlinks reach the new
// port.
func TestDTLSConnectionIDMove(t *testing.T) {
	e := newEnv(t, conf("", `
[gateway.lwm2m.listeners.dtls.default]
bind = "127.0.0.1:0"
psk = [{ identity = "cid-ep", key = "k" }]
`))
	raddr, err := net.ResolveUDPAddr("udp", e.addr("lwm2m:dtls:default"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := &piondtls.Config{
		PSK:                   func([]byte) ([]byte, error) { return []byte("k"), nil },
		PSKIdentityHint:       []byte("cid-ep"),
		CipherSuites:          []piondtls.CipherSuiteID{piondtls.TLS_PSK_WITH_AES_128_CCM_8},
		ConnectionIDGenerator: piondtls.OnlySendCIDGenerator(),
	}
	up := e.observe("lwm2m/cid-ep/up/#")
	d := newDevice(t, "cid-ep")
	sock1, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	pc1, err := piondtls.Client(sock1, raddr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	if err := pc1.HandshakeContext(ctx); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	d.cc = coapdtls.Client(pc1, options.WithMux(d.handler()))
	if c := d.register("</3/0>", "lt=60"); c != codes.Created {
		t.Fatalf("register: %v", c)
	}
	up.next(t)
	state, ok := pc1.ConnectionState()
	if !ok {
		t.Fatal("no dtls state")
	}
	_ = sock1.Close() // the NAT forgets the old mapping; no close_notify

	sock2, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	pc2, err := piondtls.Resume(&state, sock2, raddr, cfg)
	if err != nil {
		t.Fatalf("resume: %v", err)
	}
	d.cc = coapdtls.Client(pc2, options.WithMux(d.handler()))
	t.Cleanup(func() { _ = d.cc.Close() })
	if c := d.update(""); c != codes.Changed {
		t.Fatalf("update from the new address: %v", c)
	}
	up.next(t)
	d.set("/3/0/0", 0, []byte("Edge"))
	e.publish("lwm2m/cid-ep/dn", `{"reqID":"c","msgType":"read","data":{"path":"/3/0/0"}}`)
	d.nextReq()
	if m := up.nextJSON(t); m["reqID"] != "c" || m["data"].(map[string]any)["code"] != "2.05" {
		t.Fatalf("reply %v", m)
	}
	if n := e.counter("lwm2m.rebind"); n != 0 {
		t.Fatalf("%v rebinds: the CID session should have carried the move", n)
	}
}

// Knowing a dtls registration's location does not let a plain udp peer,
// or another PSK identity, update or de-register it.
func TestNoMoveToWeakerPeer(t *testing.T) {
	e := newEnv(t, conf("", `
[gateway.lwm2m.listeners.dtls.default]
bind = "127.0.0.1:0"
psk = [{ identity = "owner", key = "k1" }, { identity = "thief", key = "k2" }]
`))
	d := newDevice(t, "owner")
	d.dialDTLS(e.addr("lwm2m:dtls:default"), "owner", "k1")
	if c := d.register("</3/0>", "lt=60"); c != codes.Created {
		t.Fatalf("register: %v", c)
	}
	plain := newDevice(t, "owner")
	plain.dial(e.addr("lwm2m:udp:default"))
	plain.loc = d.loc
	if c := plain.update(""); c != codes.Forbidden {
		t.Fatalf("plain udp update: %v", c)
	}
	thief := newDevice(t, "owner")
	thief.dialDTLS(e.addr("lwm2m:dtls:default"), "thief", "k2")
	thief.loc = d.loc
	if c := thief.deregister(); c != codes.Forbidden {
		t.Fatalf("another identity's deregister: %v", c)
	}
	if c := d.update(""); c != codes.Changed {
		t.Fatalf("owner's update: %v", c)
	}
}
