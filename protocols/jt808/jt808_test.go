package jt808_test

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/gateway"
)

var update = flag.Bool("update", false, "rewrite golden files")

const (
	phone13 = "000123456789"
	phone19 = "00000000000123456789"
)

func TestRegisterAndAuthAnonymous(t *testing.T) {
	e := newEnv(t, conf("", ""))
	tm := e.terminal(phone13)

	// Nothing but registration and authentication before authentication.
	tm.send(0x0002, nil)
	res, code := tm.register()
	if res != 0 || len(code) < 8 {
		t.Fatalf("register: result %d, code %q", res, code)
	}
	if r := tm.auth("wrong"); r != 1 {
		t.Fatalf("auth with a wrong code: result %d", r)
	}
	if r := tm.auth(code); r != 0 {
		t.Fatalf("auth: result %d", r)
	}
	c, ok := e.gw().Client(phone13)
	if !ok {
		t.Fatal("no client for the phone")
	}
	if c.Info().Fields["phone"] != phone13 || c.Info().Fields["manufacturer"] != "examp" || c.Info().Fields["terminal_id"] != "123456" {
		t.Fatalf("client fields %v", c.Info().Fields)
	}
	if _, ok := c.Subscriptions()["jt808/"+phone13+"/"+phone13+"/dn"]; !ok {
		t.Fatalf("subscriptions %v", c.Subscriptions())
	}
	sn := tm.send(0x0002, nil)
	ack := tm.expectAck(sn, 0x0002, 0)
	// Platform msg_sn counts from 0: 0x8100, two 0x8001, this one.
	if ack.sn != 3 {
		t.Fatalf("platform msg_sn %d, want 3", ack.sn)
	}
	if e.counter("frames.unauthenticated") != 1 {
		t.Fatalf("unauthenticated frames %v", e.counter("frames.unauthenticated"))
	}

	// The code is bound to the phone: another phone cannot use it.
	other := e.terminal("000999999999")
	if r := other.auth(code); r != 1 {
		t.Fatalf("another phone with the code: result %d", r)
	}
	// Deregistration is answered, then the connection closes.
	sn = tm.send(0x0003, nil)
	tm.expectAck(sn, 0x0003, 0)
	tm.expectClosed()
	eventually(t, "client gone", func() bool { _, ok := e.gw().Client(phone13); return !ok })
}

func TestLocationGolden(t *testing.T) {
	e := newEnv(t, conf("", ""))
	obs := e.observe("jt808/+/+/up")
	for _, c := range []struct{ name, phone string }{{"location_2013", phone13}, {"location_2019", phone19}} {
		// Both editions on one listener at once.
		tm := e.terminal(c.phone)
		tm.login()
		tm.sn = 0x7e7d // a msg_sn that needs escaping
		sn := tm.send(0x0200, locationBody())
		tm.expectAck(sn, 0x0200, 0)
		d := obs.Next(t)
		if want := "jt808/" + c.phone + "/" + c.phone + "/up"; d.Msg.Topic != want || d.Msg.QoS != 1 {
			t.Fatalf("topic %s qos %d, want %s", d.Msg.Topic, d.Msg.QoS, want)
		}
		golden(t, c.name, d.Msg.Payload)
	}
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".json")
	if *update {
		var v any
		_ = json.Unmarshal(got, &v)
		b, _ := json.MarshalIndent(v, "", "  ")
		if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	jsonEqual(t, got, string(want))
}

func TestHTTPRegistry(t *testing.T) {
	var regCalls, authCalls atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		_ = json.NewDecoder(r.Body).Decode(&req)
		switch r.URL.Path {
		case "/jt808/registry":
			// Fails twice, then registers; the body is the register JSON plus phone.
			if regCalls.Add(1) <= 2 {
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			if req["phone"] != phone13 || req["manufacture"] != "examp" || req["license_number"] != "ujvl239" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			fmt.Fprint(w, `{"code":0,"authcode":"abc123"}`)
		case "/jt808/auth":
			authCalls.Add(1)
			if req["code"] == "abc123" && req["phone"] == phone13 {
				w.WriteHeader(http.StatusOK)
				return
			}
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer srv.Close()
	e := newEnv(t, conf("", fmt.Sprintf(`allow_anonymous = false
registry = "%s/jt808/registry"
authentication = "%s/jt808/auth"
retry_interval = "10ms"`, srv.URL, srv.URL)))
	tm := e.terminal(phone13)
	res, code := tm.register()
	if res != 0 || code != "abc123" || regCalls.Load() != 3 {
		t.Fatalf("register: result %d code %q after %d calls", res, code, regCalls.Load())
	}
	if r := tm.auth("nope"); r != 1 {
		t.Fatalf("wrong code: %d", r)
	}
	if r := tm.auth("abc123"); r != 0 {
		t.Fatalf("auth: %d", r)
	}
	// The wrong code never reached the service: it is not the phone's.
	if authCalls.Load() != 1 {
		t.Fatalf("auth calls %d", authCalls.Load())
	}
}

func TestFraming(t *testing.T) {
	e := newEnv(t, conf("frame.max_length = 64", ""))
	obs := e.observe("jt808/+/+/up")
	tm := e.terminal(phone13)
	tm.write([]byte("garbage before the first frame"))
	tm.login()

	// Transparent data full of 0x7e and 0x7d, written a byte at a time.
	f, sn := tm.frame(0x0900, h("41 7e7d7e 7d01 7d02"))
	for _, b := range f {
		tm.write([]byte{b})
		time.Sleep(100 * time.Microsecond)
	}
	tm.expectAck(sn, 0x0900, 0)
	d := obs.Next(t)
	jsonEqual(t, d.Msg.Payload, `{"header":{"msg_id":2304,"encrypt":0,"len":8,"phone":"`+phone13+`","msg_sn":`+fmt.Sprint(sn)+`},
		"body":{"type":65,"data":"fn1+fQF9Ag=="}}`)

	// A bad checksum is counted and dropped; so is an over-long frame.
	bad, _ := tm.frame(0x0002, nil)
	bad[len(bad)-2] ^= 0x55
	tm.write(bad)
	long, _ := tm.frame(0x0900, make([]byte, 100))
	tm.write(long)
	sn = tm.send(0x0002, nil)
	tm.expectAck(sn, 0x0002, 0)
	if e.counter("frames.bad_checksum") != 1 || e.counter("frames.too_long") != 1 {
		t.Fatalf("bad_checksum %v too_long %v", e.counter("frames.bad_checksum"), e.counter("frames.too_long"))
	}
	if e.counter("frames.garbage_bytes") != float64(len("garbage before the first frame")) {
		t.Fatalf("garbage bytes %v", e.counter("frames.garbage_bytes"))
	}
}

func TestSubPackages(t *testing.T) {
	e := newEnv(t, conf(`frame.reassembly_timeout = "200ms"`, ""))
	obs := e.observe("jt808/+/+/up")
	tm := e.terminal(phone13)
	tm.login()

	// A 0x0900 in three packages, sent out of order.
	parts := [][]byte{h("41 0102"), h("0304"), h("05")}
	first := tm.sn
	tm.sn += 3
	order := []int{1, 0, 2}
	for i, k := range order {
		tm.write(tm.encode(0x0900, first+uint16(k), phone13, parts[k], 3, uint16(k+1)))
		if i < 2 {
			tm.expectAck(first+uint16(k), 0x0900, 0)
		}
	}
	tm.expectAck(first+2, 0x0900, 0)
	d := obs.Next(t)
	jsonEqual(t, d.Msg.Payload, `{"header":{"msg_id":2304,"encrypt":0,"len":6,"phone":"`+phone13+`","msg_sn":`+fmt.Sprint(first)+`},
		"body":{"type":65,"data":"AQIDBAU="}}`)

	// An incomplete message: the gateway asks for the rest (0x8003), then gives up.
	first = tm.sn
	tm.sn += 2
	tm.write(tm.encode(0x0900, first, phone13, h("41 01"), 2, 1))
	tm.expectAck(first, 0x0900, 0)
	m := tm.expect(0x8003)
	if want := binary.BigEndian.AppendUint16(nil, first); string(m.body) != string(append(want, h("01 0002")...)) {
		t.Fatalf("0x8003 body % x", m.body)
	}
	eventually(t, "reassembly timeout", func() bool { return e.counter("frames.reassembly_timeout") == 1 })
	// The next publish is this heartbeat, not the incomplete message.
	sn := tm.send(0x0002, nil)
	tm.expectAck(sn, 0x0002, 0)
	if d := obs.Next(t); !strings.Contains(string(d.Msg.Payload), `"msg_id":2,`) {
		t.Fatalf("published an incomplete message: %s", d.Msg.Payload)
	}
}

func TestDownlinkRetransmissionAndAck(t *testing.T) {
	e := newEnv(t, conf(`retry_interval = "100ms"
max_retry_times = 2`, ""))
	tm := e.terminal(phone13)
	tm.login()
	dn := "jt808/" + phone13 + "/" + phone13 + "/dn"
	e.publish(dn, `{"header":{"msg_id":33536},"body":{"flag":15,"text":"who are you"}}`)
	m := tm.expect(0x8300)
	if string(m.body) != "\x0fwho are you" {
		t.Fatalf("0x8300 body %q", m.body)
	}
	again := tm.expect(0x8300)
	if again.sn != m.sn || string(again.body) != string(m.body) {
		t.Fatalf("retransmission differs: %d %q", again.sn, again.body)
	}
	// The terminal's general response settles it.
	tm.send(0x0001, append(binary.BigEndian.AppendUint16(nil, m.sn), 0x83, 0x00, 0))
	eventually(t, "acked", func() bool { return e.counter("messages.acked") == 1 })
	retx := e.counter("messages.retransmitted")

	// A custom msg_sn, answered by its specific reply (0x0201 for 0x8201).
	e.publish(dn, `{"header":{"msg_id":33281,"msg_sn":4321},"body":{}}`)
	m = tm.expect(0x8201)
	if m.sn != 4321 {
		t.Fatalf("custom msg_sn %d", m.sn)
	}
	tm.send(0x0201, append(binary.BigEndian.AppendUint16(nil, 4321), h("00000000 00000000 00000001 00000002 0003 0004 0005 260101120000")...))
	eventually(t, "acked", func() bool { return e.counter("messages.acked") == 2 })

	// Unanswered: sent 1 + max_retry_times, then dropped and counted.
	e.publish(dn, `{"header":{"msg_id":33028},"body":{}}`)
	for i := 0; i < 3; i++ {
		tm.expect(0x8104)
	}
	eventually(t, "retries exhausted", func() bool { return e.counter("delivery.dropped.retry_exhausted") == 1 })
	if got := e.counter("messages.retransmitted") - retx; got != 2 {
		t.Fatalf("retransmitted %v", got)
	}
	// Invalid downlinks are dropped and counted.
	e.publish(dn, `{"header":{},"body":{}}`)
	e.publish(dn, `{"header":{"msg_id":33536},"body":{"flag":1}}`)
	eventually(t, "invalid counted", func() bool { return e.counter("delivery.dropped.invalid") == 2 })
}

func TestDownlinkQueueBound(t *testing.T) {
	e := newEnv(t, conf(`max_inflight = 1
message_queue_len = 2
retry_interval = "10s"`, ""))
	tm := e.terminal(phone19)
	tm.login()
	dn := "jt808/" + phone19 + "/" + phone19 + "/dn"
	for i := 0; i < 5; i++ {
		e.publish(dn, fmt.Sprintf(`{"header":{"msg_id":33282},"body":{"period":%d,"expiry":60}}`, i))
	}
	eventually(t, "queue overflow counted", func() bool { return e.counter("delivery.dropped.queue_full") == 2 })
	for i := 0; i < 3; i++ {
		m := tm.expect(0x8202)
		if !m.v19 || binary.BigEndian.Uint16(m.body) != uint16(i) {
			t.Fatalf("downlink %d: v19 %v body % x", i, m.v19, m.body)
		}
		tm.send(0x0001, append(binary.BigEndian.AppendUint16(nil, m.sn), 0x82, 0x02, 0))
	}
}

func TestGBK(t *testing.T) {
	e := newEnv(t, conf(`frame.string_encoding = "gbk"`, ""))
	obs := e.observe("jt808/+/+/up")
	tm := e.terminal(phone13)
	tm.login()
	// Query-params reply with a GBK string parameter (0x0013 server address): 中心.
	tm.send(0x0104, h("0001 01 00000013 04 d6d0d0c4"))
	d := obs.Next(t)
	if !strings.Contains(string(d.Msg.Payload), `"value":"中心"`) {
		t.Fatalf("payload %s", d.Msg.Payload)
	}
	e.publish("jt808/"+phone13+"/"+phone13+"/dn", `{"header":{"msg_id":33536},"body":{"flag":1,"text":"你好"}}`)
	if m := tm.expect(0x8300); string(m.body) != string(h("01 c4e3bac3")) {
		t.Fatalf("0x8300 body % x", m.body)
	}
}

func TestOtherPhoneRejected(t *testing.T) {
	e := newEnv(t, conf("", ""))
	obs := e.observe("jt808/+/+/up")
	tm := e.terminal(phone13)
	tm.login()
	tm.write(tm.encode(0x0200, 99, "000999999999", locationBody(), 0, 0))
	sn := tm.send(0x0301, []byte{7})
	tm.expectAck(sn, 0x0301, 0)
	d := obs.Next(t)
	if !strings.Contains(string(d.Msg.Payload), `"msg_id":769`) {
		t.Fatalf("published %s", d.Msg.Payload)
	}
	if e.counter("frames.phone_mismatch") != 1 {
		t.Fatalf("phone_mismatch %v", e.counter("frames.phone_mismatch"))
	}
}

func TestUnknownAndTimeQuery(t *testing.T) {
	e := newEnv(t, conf("", ""))
	obs := e.observe("jt808/+/+/up")
	tm := e.terminal(phone19)
	tm.login()
	sn := tm.send(0x0F01, h("0102"))
	d := obs.Next(t)
	jsonEqual(t, d.Msg.Payload, `{"header":{"msg_id":3841,"encrypt":0,"len":2,"phone":"`+phone19+`","msg_sn":`+fmt.Sprint(sn)+`,"proto_ver":1},
		"body":{"unknown_id":true,"data":"AQI="}}`)
	tm.send(0x0004, nil)
	m := tm.expect(0x8004)
	now := time.Now().UTC()
	got, err := time.Parse("060102150405", fmt.Sprintf("%x", m.body))
	if err != nil || got.Sub(now).Abs() > time.Minute {
		t.Fatalf("0x8004 time % x (%v), now %v", m.body, err, now)
	}
}

func TestKeepalive(t *testing.T) {
	e := newEnv(t, conf(`proto.keepalive = "1s"`, ""))
	tm := e.terminal(phone13)
	tm.login()
	tm.expectClosed()
	eventually(t, "keepalive counted", func() bool { return e.counter("connections.keepalive_timeout") == 1 })
}

func TestDownlinkSubPackages(t *testing.T) {
	e := newEnv(t, conf(`retry_interval = "10s"`, ""))
	tm := e.terminal(phone13)
	tm.login()
	fw := strings.Repeat("\xa5", 1500)
	e.publish("jt808/"+phone13+"/"+phone13+"/dn", `{"header":{"msg_id":33032},"body":{"type":0,"manufacturer":"MANUF","version":"1.1","firmware":"`+
		base64.StdEncoding.EncodeToString([]byte(fw))+`"}}`)
	a, b := tm.expect(0x8108), tm.expect(0x8108)
	if a.fragTotal != 2 || a.fragSN != 1 || b.fragTotal != 2 || b.fragSN != 2 || b.sn != a.sn+1 || len(a.body) != 1023 {
		t.Fatalf("packages %d/%d sn %d (%d bytes), %d/%d sn %d", a.fragSN, a.fragTotal, a.sn, len(a.body), b.fragSN, b.fragTotal, b.sn)
	}
	whole := append(append([]byte(nil), a.body...), b.body...)
	if want := append(h("00 4d414e5546 03 312e31 000005dc"), fw...); string(whole) != string(want) {
		t.Fatalf("reassembled body differs")
	}
	tm.send(0x0001, append(binary.BigEndian.AppendUint16(nil, a.sn), 0x81, 0x08, 0))
	tm.send(0x0001, append(binary.BigEndian.AppendUint16(nil, b.sn), 0x81, 0x08, 0))
	eventually(t, "acked", func() bool { return e.counter("messages.acked") == 1 })
}

func TestUnsupportedFramesClose(t *testing.T) {
	e := newEnv(t, conf(`frame.parse_unknown_message = false
proto.ignore_unsupported_frames = false`, ""))
	tm := e.terminal(phone13)
	tm.login()
	tm.send(0x0F01, h("0102"))
	tm.expectClosed()
	if e.counter("frames.unsupported") != 1 {
		t.Fatalf("unsupported %v", e.counter("frames.unsupported"))
	}
}

func TestTakeover(t *testing.T) {
	e := newEnv(t, conf("", ""))
	old := e.terminal(phone13)
	res, code := old.register()
	if res != 0 || old.auth(code) != 0 {
		t.Fatal("login")
	}
	// The same phone on a new connection (a terminal after a NAT
	// timeout) takes over; the old connection is closed.
	tm := e.terminal(phone13)
	if r := tm.auth(code); r != 0 {
		t.Fatalf("auth: %d", r)
	}
	old.expectClosed()
	sn := tm.send(0x0002, nil)
	tm.expectAck(sn, 0x0002, 0)
}

func TestFrameworkAuthAndMountpoint(t *testing.T) {
	// The hardened profile with no authenticator denies the terminal
	// even though its auth code is right.
	e := newEnv(t, strings.Replace(conf("", ""), "[[gateway.jt808.authentication]]\ntype = \"anonymous\"\n", "", 1))
	tm := e.terminal(phone13)
	res, code := tm.register()
	if res != 0 {
		t.Fatal("register")
	}
	if r := tm.auth(code); r != 1 {
		t.Fatalf("hardened, no authenticator: result %d", r)
	}

	// A mountpoint is put in front of up_topic and dn_topic.
	e = newEnv(t, conf(`mountpoint = "fleet/${phone}/"`, ""))
	obs := e.observe("fleet/#")
	tm = e.terminal(phone13)
	tm.login()
	sn := tm.send(0x0301, []byte{1})
	tm.expectAck(sn, 0x0301, 0)
	if d := obs.Next(t); d.Msg.Topic != "fleet/"+phone13+"/jt808/"+phone13+"/"+phone13+"/up" {
		t.Fatalf("topic %s", d.Msg.Topic)
	}
	e.publish("fleet/"+phone13+"/jt808/"+phone13+"/"+phone13+"/dn", `{"header":{"msg_id":33028},"body":{}}`)
	tm.expect(0x8104)
}

func TestAuthorization(t *testing.T) {
	// Publishing location reports is denied, the rest allowed.
	e := newEnv(t, conf("", ""), gateway.AuthorizerFunc(func(ci *gateway.ClientInfo, a gateway.Action, topic string) bool {
		return ci.Fields["phone"] != phone19 || a != gateway.ActionPublish
	}))
	obs := e.observe("jt808/#")
	tm := e.terminal(phone19)
	tm.login()
	// Denied: dropped by policy and answered 0, so the terminal does not
	// send it again and again.
	sn := tm.send(0x0200, locationBody())
	tm.expectAck(sn, 0x0200, 0)
	if e.counter("delivery.dropped.not_authorized") != 1 {
		t.Fatalf("not_authorized %v", e.counter("delivery.dropped.not_authorized"))
	}
	// Downlinks still flow: the subscription is allowed. The observer
	// sees this downlink first: the denied report never reached the broker.
	dn := "jt808/" + phone19 + "/" + phone19 + "/dn"
	e.publish(dn, `{"header":{"msg_id":33028},"body":{}}`)
	tm.expect(0x8104)
	if d := obs.Next(t); d.Msg.Topic != dn {
		t.Fatalf("denied publish arrived: %s", d.Msg.Topic)
	}
}
