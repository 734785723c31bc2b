package lwm2m

import (
	"bytes"
	"context"
	"errors"
	"github.com/edgeway/edgeway/agent/broker"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/udp/coder"
)

const links = `</lwm2m>;rt="oma.lwm2m",</lwm2m/1/0>,</lwm2m/3/0>,</lwm2m/3303/0>`

func TestRegisterUpdateDeregister(t *testing.T) {
	e := newEnv(t, conf("", ""))
	up := e.observe("lwm2m/ep1/up/#")
	d := newDevice(t, "ep1")
	d.dial(e.addr("lwm2m:udp:default"))
	if c := d.register(links, "lt=60", "lwm2m=1.1", "b=U"); c != codes.Created {
		t.Fatalf("register: %v", c)
	}
	if len(d.loc) < len("/rd/x") || d.loc[:4] != "/rd/" {
		t.Fatalf("location %q", d.loc)
	}
	reg := up.next(t)
	if reg.Msg.Topic != "lwm2m/ep1/up/resp" {
		t.Fatalf("register event on %s", reg.Msg.Topic)
	}
	golden(t, "register", jsonOf(t, reg.Msg.Payload))
	c, ok := e.gw().Client("ep1")
	if !ok {
		t.Fatal("no client ep1")
	}
	if v, _ := c.Info().Lookup("endpoint_name"); v != "ep1" {
		t.Fatalf("endpoint_name field %q", v)
	}
	if c.Info().Mountpoint != "lwm2m/ep1/" {
		t.Fatalf("mountpoint %q", c.Info().Mountpoint)
	}

	if c := d.update("</3/0>,</5/0>", "lt=120"); c != codes.Changed {
		t.Fatalf("update: %v", c)
	}
	u := up.next(t)
	if u.Msg.Topic != "lwm2m/ep1/up/update" {
		t.Fatalf("update event on %s", u.Msg.Topic)
	}
	golden(t, "update", jsonOf(t, u.Msg.Payload))

	if c := d.deregister(); c != codes.Deleted {
		t.Fatalf("deregister: %v", c)
	}
	eventually(t, "client gone", func() bool { _, ok := e.gw().Client("ep1"); return !ok })
	if c := d.update(""); c != codes.NotFound {
		t.Fatalf("update after deregister: %v", c)
	}
}

func TestRegisterRefused(t *testing.T) {
	e := newEnv(t, conf(`lifetime_min = "10s"`+"\n"+`lifetime_max = "1h"`, ""))
	for _, tc := range []struct {
		name string
		qs   []string
		want codes.Code
	}{
		{"lifetime below lifetime_min", []string{"lt=5"}, codes.BadRequest},
		{"lifetime above lifetime_max", []string{"lt=3601"}, codes.BadRequest},
		{"lifetime not a number", []string{"lt=ten"}, codes.BadRequest},
		{"unsupported version", []string{"lwm2m=1.3"}, codes.PreconditionFailed},
		{"at lifetime_min", []string{"lt=10"}, codes.Created},
		{"1.0 with no lt takes lifetime_max", []string{"lwm2m=1.0"}, codes.Created},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := newDevice(t, "refused")
			d.dial(e.addr("lwm2m:udp:default"))
			if c := d.register(links, tc.qs...); c != tc.want {
				t.Fatalf("register %v: %v, want %v", tc.qs, c, tc.want)
			}
			if tc.want == codes.Created {
				if c := d.update("", "lt=2"); c != codes.BadRequest {
					t.Fatalf("update below lifetime_min: %v", c)
				}
				_ = d.deregister()
			}
		})
	}
	d := newDevice(t, "")
	d.dial(e.addr("lwm2m:udp:default"))
	d.ep = ""
	if c := d.register(links); c != codes.BadRequest {
		t.Fatalf("register without ep: %v", c)
	}
	if e.counter("lwm2m.register.refused") != 5 {
		t.Fatalf("refused counter %v", e.counter("lwm2m.register.refused"))
	}
}

func TestLifetimeExpiry(t *testing.T) {
	e := newEnv(t, conf("", ""))
	d := newDevice(t, "short")
	d.dial(e.addr("lwm2m:udp:default"))
	if c := d.register(links, "lt=1"); c != codes.Created {
		t.Fatalf("register: %v", c)
	}
	start := time.Now()
	eventually(t, "expiry", func() bool { _, ok := e.gw().Client("short"); return !ok })
	if time.Since(start) < 900*time.Millisecond {
		t.Fatalf("expired after %v, lifetime 1s", time.Since(start))
	}
	if e.counter("lwm2m.lifetime_expired") != 1 {
		t.Fatal("expiry not counted")
	}
	if c := d.update(""); c != codes.NotFound {
		t.Fatalf("update after expiry: %v", c)
	}
}

// A device whose NAT mapping changed sends its Update from a new port:
// the registration moves, and commands reach the new port.
func TestNATRebinding(t *testing.T) {
	e := newEnv(t, conf("", ""))
	up := e.observe("lwm2m/nat/up/#")
	d := newDevice(t, "nat")
	addr := e.addr("lwm2m:udp:default")
	d.dial(addr)
	if c := d.register("</3/0>", "lt=60"); c != codes.Created {
		t.Fatalf("register: %v", c)
	}
	up.next(t) // register
	first := d.cc.LocalAddr().String()
	_ = d.cc.Close()

	d.dial(addr) // a new socket: a new source port
	if d.cc.LocalAddr().String() == first {
		t.Fatal("same source port")
	}
	if c := d.update(""); c != codes.Changed {
		t.Fatalf("update from the new port: %v", c)
	}
	if m := up.nextJSON(t); m["msgType"] != "update" {
		t.Fatalf("got %v", m)
	}
	if e.counter("lwm2m.register") != 1 || e.counter("lwm2m.rebind") != 1 {
		t.Fatalf("register %v rebind %v", e.counter("lwm2m.register"), e.counter("lwm2m.rebind"))
	}
	d.set("/3/0/0", 0, []byte("edgeway"))
	e.publish("lwm2m/nat/dn", `{"reqID":7,"msgType":"read","data":{"path":"/3/0/0"}}`)
	if r := d.nextReq(); r.path != "/3/0/0" {
		t.Fatalf("device got %+v", r)
	}
	m := up.nextJSON(t)
	if m["reqID"] != float64(7) || m["data"].(map[string]any)["code"] != "2.05" {
		t.Fatalf("reply %v", m)
	}
	if n := e.gw().ClientCount(); n != 1 {
		t.Fatalf("%d clients", n)
	}
}

// A notification from a new port moves the registration too: the next
// command goes to that port.
func TestNotifyFromNewPort(t *testing.T) {
	e, d, up := registered(t, "")
	d.set("/3303/0/5700", 0, []byte("21.5"))
	e.publish("lwm2m/cmd/dn", `{"reqID":"o1","msgType":"observe","data":{"path":"/3303/0/5700"}}`)
	d.nextReq()
	up.next(t)
	d.mu.Lock()
	tok := d.obsTok
	d.mu.Unlock()

	addr, _ := net.ResolveUDPAddr("udp", e.addr("lwm2m:udp:default"))
	raw, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	n := &message.Message{Type: message.Confirmable, Code: codes.Content, MessageID: 4242, Token: tok, Payload: []byte("30")}
	n.Options = message.Options{{ID: message.Observe, Value: []byte{9}}}
	b, _ := encode(n)
	if _, err := raw.Write(b); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 512)
	_ = raw.SetReadDeadline(time.Now().Add(wait))
	k, err := raw.Read(buf)
	if err != nil || k < 4 || buf[0]>>4&3 != byte(message.Acknowledgement) {
		t.Fatalf("no ACK for the notification: % x %v", buf[:k], err)
	}
	if m := up.nextJSON(t); m["msgType"] != "notify" || m["seqNum"] != float64(9) {
		t.Fatalf("got %v", m)
	}
	e.publish("lwm2m/cmd/dn", `{"reqID":"r1","msgType":"read","data":{"path":"/3/0/0"}}`)
	k, err = raw.Read(buf)
	if err != nil {
		t.Fatalf("command did not reach the new port: %v", err)
	}
	var req message.Message
	req.Options = make(message.Options, 0, 8)
	if _, err := coder.DefaultCoder.Decode(buf[:k], &req); err != nil || req.Code != codes.GET {
		t.Fatalf("new port got %v %v", req, err)
	}
	if p, _ := req.Options.Path(); p != "/3/0/0" {
		t.Fatalf("new port got a request for %s", p)
	}
}

// LwM2M 1.1 Send: SenML posted to /dp goes out on the notify topic.
func TestSend(t *testing.T) {
	e, d, up := registered(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	resp, err := d.cc.Post(ctx, "/dp", mtSenMLJSON, strings.NewReader(`[{"bn":"/3303/0/","n":"5700","v":19.5}]`))
	if err != nil || resp.Code() != codes.Changed {
		t.Fatalf("send: %v %v", resp, err)
	}
	n := up.next(t)
	if n.Msg.Topic != "lwm2m/cmd/up/notify" {
		t.Fatalf("send on %s", n.Msg.Topic)
	}
	golden(t, "send", jsonOf(t, n.Msg.Payload))
	if e.counter("lwm2m.send") != 1 {
		t.Fatal("send not counted")
	}

	// A stranger may not send.
	s := newDevice(t, "stranger")
	s.dial(e.addr("lwm2m:udp:default"))
	resp, err = s.cc.Post(ctx, "/dp", mtSenMLJSON, strings.NewReader(`[{"n":"/3/0/0","vs":"x"}]`))
	if err != nil || resp.Code() != codes.Unauthorized {
		t.Fatalf("stranger send: %v %v", resp, err)
	}
	// A registered peer's Send that does not decode: 4.00, counted.
	resp, err = d.cc.Post(ctx, "/dp", message.MediaType(112), bytes.NewReader([]byte{0x81, 0xff})) // SenML CBOR
	if err != nil || resp.Code() != codes.BadRequest {
		t.Fatalf("undecodable send: %v %v", resp, err)
	}
	if e.counter("lwm2m.send.rejected") != 2 || e.counter("lwm2m.send") != 1 {
		t.Fatalf("send.rejected %v, send %v; want 2 and 1", e.counter("lwm2m.send.rejected"), e.counter("lwm2m.send"))
	}
}

// refusingSink is a store that is full: every publish fails.
type refusingSink struct{}

func (refusingSink) Accept(*broker.Message) error { return errors.New("store full") }

// A Send the gateway could not queue is not acknowledged: the device gets
// 5.03 and keeps its data, instead of a 2.04 that lets it forget them.
func TestSendNotTakenIsNotAcknowledged(t *testing.T) {
	e, d, _ := registered(t, "")
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	e.b.SetSink(refusingSink{})
	resp, err := d.cc.Post(ctx, "/dp", mtSenMLJSON, strings.NewReader(`[{"bn":"/3303/0/","n":"5700","v":19.5}]`))
	if err != nil || resp.Code() != codes.ServiceUnavailable {
		t.Fatalf("send into a full store: %v %v, want 5.03", resp, err)
	}
	e.b.SetSink(nil)
	resp, err = d.cc.Post(ctx, "/dp", mtSenMLJSON, strings.NewReader(`[{"bn":"/3303/0/","n":"5700","v":19.5}]`))
	if err != nil || resp.Code() != codes.Changed {
		t.Fatalf("send once the store takes it again: %v %v", resp, err)
	}
}

// A second Register of a registered endpoint replaces the registration
// and keeps its queued commands.
func TestReregister(t *testing.T) {
	e := newEnv(t, conf(`qmode_time_window = "0s"`, ""))
	up := e.observe("lwm2m/rr/up/#")
	d := newDevice(t, "rr")
	d.dial(e.addr("lwm2m:udp:default"))
	d.set("/3/0/0", 0, []byte("Edge"))
	if c := d.register("</3/0>", "lt=60", "b=UQ"); c != codes.Created {
		t.Fatalf("register: %v", c)
	}
	up.next(t)
	first := d.loc
	e.publish("lwm2m/rr/dn", `{"reqID":"w","msgType":"read","data":{"path":"/3/0/0"}}`)
	eventually(t, "queued", func() bool { return e.counter("lwm2m.downlink.queued") == 1 })
	if c := d.register("</3/0>", "lt=60", "b=U"); c != codes.Created {
		t.Fatalf("re-register: %v", c)
	}
	if d.loc == first {
		t.Fatal("same location after re-register")
	}
	if m := up.nextJSON(t); m["msgType"] != "register" {
		t.Fatalf("got %v", m)
	}
	if r := d.nextReq(); r.path != "/3/0/0" {
		t.Fatalf("device got %+v", r)
	}
	if m := up.nextJSON(t); m["reqID"] != "w" {
		t.Fatalf("got %v", m)
	}
	if n := e.gw().ClientCount(); n != 1 {
		t.Fatalf("%d clients", n)
	}
	d.loc = first
	if c := d.update(""); c != codes.NotFound {
		t.Fatalf("update of the old location: %v", c)
	}
}

// Other register parameters are published with the registration, the
// password never; a China-Telecom PSM APN means queue mode.
func TestRegisterExtraParams(t *testing.T) {
	e := newEnv(t, conf(`qmode_time_window = "0s"`, ""))
	up := e.observe("lwm2m/xp/up/#")
	d := newDevice(t, "xp")
	d.dial(e.addr("lwm2m:udp:default"))
	if c := d.register("</3/0>", "lt=345", "lwm2m=1", "apn=psmA.eDRX0.ctnb", "imei=123", "cust_opt=shawn", "password=secret"); c != codes.Created {
		t.Fatalf("register: %v", c)
	}
	golden(t, "register_extra", jsonOf(t, up.next(t).Msg.Payload))
	c, ok := e.gw().Client("xp")
	if !ok || c.Info().Username != "123" {
		t.Fatalf("username from imei: %v", c)
	}
	e.publish("lwm2m/xp/dn", `{"reqID":"p","msgType":"read","data":{"path":"/3/0/0"}}`)
	eventually(t, "queued", func() bool { return e.counter("lwm2m.downlink.queued") == 1 })
	if e.counter("lwm2m.downlink.sent") != 0 {
		t.Fatal("sent to a PSM device that is asleep")
	}
}

// Garbage is counted and closes only the sender's peer.
func TestMalformedDatagram(t *testing.T) {
	e, d, up := registered(t, "")
	addr, _ := net.ResolveUDPAddr("udp", e.addr("lwm2m:udp:default"))
	raw, err := net.DialUDP("udp", nil, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	for _, g := range [][]byte{{0x00}, {0xFF, 0xFF, 0xFF, 0xFF, 0xFF}, []byte("GET / HTTP/1.0")} {
		if _, err := raw.Write(g); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "malformed counted", func() bool { return e.counter("lwm2m.packets.malformed") >= 1 })
	d.set("/3/0/0", 0, []byte("Edge"))
	e.publish("lwm2m/cmd/dn", `{"reqID":"ok","msgType":"read","data":{"path":"/3/0/0"}}`)
	d.nextReq()
	if m := up.nextJSON(t); m["reqID"] != "ok" {
		t.Fatalf("got %v", m)
	}
}
