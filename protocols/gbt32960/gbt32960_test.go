package gbt32960_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/gateway"
)

const up = "gbt32960/" + vin + "/upstream/"

func expectTopic(t *testing.T, d broker.Delivery, topic string) {
	t.Helper()
	if d.Msg.Topic != topic {
		t.Fatalf("topic %q, want %q (payload %s)", d.Msg.Topic, topic, d.Msg.Payload)
	}
}

// checkTime: the gateway's answers carry its own clock (year since 2000).
func checkTime(t *testing.T, b []byte) {
	t.Helper()
	now := time.Now()
	if len(b) < 6 || int(b[0]) != now.Year()%100 || int(b[1]) != int(now.Month()) {
		t.Fatalf("answer time %v, now %v", b, now)
	}
}

func TestSession(t *testing.T) {
	e := newEnv(t, conf(""))
	obs := e.observe("gbt32960/#")
	v := e.dial()
	v.login()
	d := obs.Next(t)
	expectTopic(t, d, up+"vlogin")
	golden(t, "vlogin", d.Msg.Payload)
	if d.Msg.QoS != 1 {
		t.Fatalf("QoS %d, want 1 as EMQX", d.Msg.QoS)
	}

	// A real-time report with every 2016 information type, then the same
	// data reissued: no answer (as EMQX), JSON on info and reinfo.
	v.send(cmdFrame(0x02, allInfos))
	d = obs.Next(t)
	expectTopic(t, d, up+"info")
	golden(t, "info_all", d.Msg.Payload)
	v.send(cmdFrame(0x03, allInfos))
	d = obs.Next(t)
	expectTopic(t, d, up+"reinfo")
	golden(t, "reinfo_all", d.Msg.Payload)

	// Heartbeat and time calibration are answered at once.
	v.send(cmdFrame(0x07, nil))
	r := v.read()
	if r.cmd != 0x07 || r.ack != 0x01 || len(r.data) != 0 {
		t.Fatalf("heartbeat answer %+v", r)
	}
	v.send(cmdFrame(0x08, nil))
	r = v.read()
	if r.cmd != 0x08 || r.ack != 0x01 {
		t.Fatalf("time answer %+v", r)
	}
	checkTime(t, r.data)

	// Platform login and logout are forwarded.
	v.send(codecFrame(t, "plogin"))
	golden(t, "plogin", obs.Next(t).Msg.Payload)
	v.send(codecFrame(t, "plogout"))
	golden(t, "plogout", obs.Next(t).Msg.Payload)

	// Unknown commands go to transparent.
	v.send(codecFrame(t, "transparent"))
	d = obs.Next(t)
	expectTopic(t, d, up+"transparent")
	golden(t, "transparent", d.Msg.Payload)

	// Logout: published and answered.
	v.send(codecFrame(t, "vlogout"))
	d = obs.Next(t)
	expectTopic(t, d, up+"vlogout")
	golden(t, "vlogout", d.Msg.Payload)
	r = v.read()
	if r.cmd != 0x04 || r.ack != 0x01 || string(r.data) != string(infoTime) {
		t.Fatalf("logout answer %+v", r)
	}
	if n := e.counter("packets.info.received"); n != 1 {
		t.Fatalf("packets.info.received = %v", n)
	}
}

func codecFrame(t *testing.T, name string) []byte {
	t.Helper()
	for _, tc := range codecCases {
		if tc.name == name {
			return tc.frame.bytes()
		}
	}
	t.Fatalf("no codec case %s", name)
	return nil
}

func TestEdition2025Login(t *testing.T) {
	e := newEnv(t, conf(""))
	obs := e.observe("gbt32960/#")
	v := e.dial()
	v.send(codecFrame(t, "vlogin_2025"))
	r := v.read()
	if r.start != "$$" || r.cmd != 0x01 || r.ack != 0x01 {
		t.Fatalf("2025 login answer %+v", r)
	}
	golden(t, "vlogin_2025", obs.Next(t).Msg.Payload)
	v.send(wireFrame{start: "$$", cmd: 0x07, ack: 0xFE, vin: vin}.bytes())
	if r := v.read(); r.start != "$$" || r.cmd != 0x07 {
		t.Fatalf("2025 heartbeat answer %+v", r)
	}
	v.send(codecFrame(t, "info_2025_all"))
	d := obs.Next(t)
	expectTopic(t, d, up+"info")
	golden(t, "info_2025_all", d.Msg.Payload)
	// Downlinks to a 2025 terminal use its start bytes.
	e.publish("gbt32960/"+vin+"/dnstream", downlinkCases[0].js)
	if r := v.read(); r.start != "$$" || r.cmd != 0x80 {
		t.Fatalf("2025 downlink %+v", r)
	}
}

// TestSplitAndGarbage: bytes before a frame are skipped, and frames cut
// into single-byte writes arrive whole.
func TestSplitAndGarbage(t *testing.T) {
	e := newEnv(t, conf(""))
	obs := e.observe("gbt32960/#")
	v := e.dial()
	v.send([]byte("\r\nAT+OK\x00#"))
	login := cmdFrame(0x01, loginData)
	for i := range login {
		v.send(login[i : i+1])
		if i%16 == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	v.read()
	expectTopic(t, obs.Next(t), up+"vlogin")
	report := cmdFrame(0x02, cat(infoTime, infoLocation))
	v.send(cat(report[:7], nil))
	time.Sleep(5 * time.Millisecond)
	v.send(cat(report[7:], []byte("noise"), report))
	golden(t, "info_location", obs.Next(t).Msg.Payload)
	golden(t, "info_location", obs.Next(t).Msg.Payload)
	eventually(t, "garbage counted", func() bool { return e.counter("frame.garbage_bytes") == float64(len("\r\nAT+OK\x00#")+len("noise")) })
}

// TestBadChecksum: a frame failing its BCC closes the connection, as in
// EMQX, and is counted.
func TestBadChecksum(t *testing.T) {
	e := newEnv(t, conf(""))
	obs := e.observe("gbt32960/+/upstream/info")
	v := e.dial()
	v.login()
	bad := cmdFrame(0x02, cat(infoTime, infoEngine))
	bad[len(bad)-1] ^= 0x55
	v.send(bad)
	v.expectClosed()
	if n := e.counter("frame.check_error"); n != 1 {
		t.Fatalf("frame.check_error = %v", n)
	}
	select {
	case d := <-obs.Chan():
		t.Fatalf("published %s", d.Msg.Payload)
	default:
	}
}

func TestMaxLength(t *testing.T) {
	e := newEnv(t, conf(`frame.max_length = 100`))
	v := e.dial()
	v.login()
	v.send(cmdFrame(0x02, cat(infoTime, infoVoltage, infoVoltage, infoVoltage)))
	v.expectClosed()
	if n := e.counter("frame.too_large"); n != 1 {
		t.Fatalf("frame.too_large = %v", n)
	}
}

// TestLoginFirst: EMQX closes a connection whose first frame is not a
// vehicle login.
func TestLoginFirst(t *testing.T) {
	e := newEnv(t, conf(""))
	v := e.dial()
	v.send(cmdFrame(0x07, nil))
	v.expectClosed()
	if n := e.counter("frame.before_login"); n != 1 {
		t.Fatalf("frame.before_login = %v", n)
	}
}

// TestMalformedReport: a report that does not fit its layout is counted
// and dropped; the connection stays.
func TestMalformedReport(t *testing.T) {
	e := newEnv(t, conf(""))
	obs := e.observe("gbt32960/+/upstream/info")
	v := e.dial()
	v.login()
	v.send(cmdFrame(0x02, cat(infoTime, infoVehicle[:9])))
	v.send(cmdFrame(0x02, cat(infoTime, infoEngine)))
	golden(t, "info_engine", obs.Next(t).Msg.Payload)
	if n := e.counter("frame.malformed"); n != 1 {
		t.Fatalf("frame.malformed = %v", n)
	}
	// A frame for another vehicle on this connection is not published.
	v.send(wireFrame{cmd: 0x02, ack: 0xFE, vin: "LSVAA4180E2000001", data: cat(infoTime, infoEngine)}.bytes())
	v.send(cmdFrame(0x07, nil))
	v.read()
	if n := e.counter("frame.vin_mismatch"); n != 1 {
		t.Fatalf("frame.vin_mismatch = %v", n)
	}
}

func TestDownlink(t *testing.T) {
	e := newEnv(t, conf(""))
	resp := e.observe("gbt32960/+/upstream/response")
	v := e.dial()
	v.login()
	dn := "gbt32960/" + vin + "/dnstream"
	for _, tc := range []struct {
		dc    int // index in downlinkCases
		reply string
	}{{0, "query_response"}, {2, "setting_response"}, {4, "control_response_upgrade"}, {6, "control_response_alarm"}} {
		c := downlinkCases[tc.dc]
		e.publish(dn, c.js)
		r := v.read()
		if r.cmd != c.cmd || r.ack != 0xFE || r.vin != vin || string(r.data[6:]) != string(c.data) {
			t.Fatalf("%s: vehicle got %+v", c.name, r)
		}
		checkTime(t, r.data)
		v.send(codecFrame(t, tc.reply))
		d := resp.Next(t)
		expectTopic(t, d, up+"response")
		golden(t, tc.reply, d.Msg.Payload)
	}
	if n := e.counter("packets.retransmitted"); n != 0 {
		t.Fatalf("retransmitted %v", n)
	}
	// A command EMQX would not accept is dropped and counted.
	e.publish(dn, `{"Action":"Query","Ids":[]}`)
	eventually(t, "bad command counted", func() bool { return e.counter("delivery.dropped.bad_command") == 1 })
}

// TestRetransmit: an unanswered command is sent again every
// retry_interval, max_retry_times times, then dropped; commands behind it
// wait in a queue of message_queue_len.
func TestRetransmit(t *testing.T) {
	e := newEnv(t, conf(`retry_interval = "150ms"
max_retry_times = 2
message_queue_len = 1`))
	v := e.dial()
	v.login()
	dn := "gbt32960/" + vin + "/dnstream"
	e.publish(dn, downlinkCases[0].js) // in flight
	first := v.read()
	e.publish(dn, downlinkCases[5].js) // queued
	e.publish(dn, downlinkCases[2].js) // queue full: dropped
	for range 2 {
		again := v.read()
		if string(again.bytes()) != string(first.bytes()) {
			t.Fatalf("retransmission %+v differs from %+v", again, first)
		}
	}
	next := v.read() // after the drop, the queued control command
	if next.cmd != 0x82 || next.data[6] != 0x02 {
		t.Fatalf("after the drop: %+v", next)
	}
	if e.counter("delivery.dropped.max_retry") != 1 || e.counter("delivery.dropped.queue_full") != 1 || e.counter("packets.retransmitted") != 2 {
		t.Fatalf("max_retry %v queue_full %v retransmitted %v", e.counter("delivery.dropped.max_retry"),
			e.counter("delivery.dropped.queue_full"), e.counter("packets.retransmitted"))
	}
	// The answer settles it: no retransmission follows.
	v.send(codecFrame(t, "control_response_shutdown"))
	v.send(cmdFrame(0x07, nil))
	if r := v.read(); r.cmd != 0x07 {
		t.Fatalf("expected the heartbeat answer, got %+v", r)
	}
	time.Sleep(400 * time.Millisecond)
	if n := e.counter("packets.retransmitted"); n != 2 {
		t.Fatalf("retransmitted after the answer: %v", n)
	}
}

// TestAuthentication: the VIN is clientid and username for the
// authenticator chain (EMQX documents the HTTP authenticator); a denied
// vehicle gets an error answer and the connection closes.
func TestAuthentication(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var body map[string]any
		_ = json.NewDecoder(r.Body).Decode(&body)
		id, _ := body["clientid"].(string)
		user, _ := body["username"].(string)
		mu.Lock()
		seen = append(seen, id+"/"+user)
		mu.Unlock()
		res := "deny"
		if id == vin {
			res = "allow"
		}
		_ = json.NewEncoder(w).Encode(map[string]string{"result": res})
	}))
	defer srv.Close()
	e := newEnv(t, `
[gateway.gbt32960]
[[gateway.gbt32960.authentication]]
type = "http"
url = "`+srv.URL+`"

[gateway.gbt32960.listeners.tcp.default]
bind = "127.0.0.1:0"
`)
	e.dial().login()
	other := "LSVAA4180E2000001"
	v := e.dial()
	v.send(wireFrame{cmd: 0x01, ack: 0xFE, vin: other, data: loginData}.bytes())
	r := v.read()
	if r.cmd != 0x01 || r.ack != 0x02 || r.vin != other || string(r.data) != string(loginData[:6]) {
		t.Fatalf("denied login answer %+v", r)
	}
	v.expectClosed()
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(seen, ",") != vin+"/"+vin+","+other+"/"+other {
		t.Fatalf("authenticator saw %v", seen)
	}
	if n := e.counter("authentication.failure"); n != 1 {
		t.Fatalf("authentication.failure = %v", n)
	}
}

// TestTakeover: a second connection of the same vehicle replaces the first.
func TestTakeover(t *testing.T) {
	e := newEnv(t, conf(""))
	a := e.dial()
	a.login()
	b := e.dial()
	b.login()
	a.expectClosed()
	eventually(t, "one client", func() bool { return e.gw().ClientCount() == 1 })
}

// TestAuthorization: a publish the ACL denies is skipped and counted, as
// EMQX does for GB/T 32960; the vehicle stays connected.
func TestAuthorization(t *testing.T) {
	deny := gateway.AuthorizerFunc(func(ci *gateway.ClientInfo, a gateway.Action, topic string) bool {
		return !(a == gateway.ActionPublish && strings.HasSuffix(topic, "upstream/reinfo"))
	})
	e := newEnv(t, conf(""), deny)
	obs := e.observe("gbt32960/#")
	v := e.dial()
	v.login()
	expectTopic(t, obs.Next(t), up+"vlogin")
	v.send(cmdFrame(0x03, cat(infoTime, infoEngine)))
	v.send(cmdFrame(0x02, cat(infoTime, infoEngine)))
	expectTopic(t, obs.Next(t), up+"info")
	if n := e.counter("delivery.dropped.not_authorized"); n != 1 {
		t.Fatalf("delivery.dropped.not_authorized = %v", n)
	}
}
