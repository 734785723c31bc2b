package lwm2m

import (
	"bytes"
	"encoding/base64"
	"encoding/hex"
	"slices"
	"testing"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
)

const (
	mtTLV       = message.MediaType(11542)
	mtOMAJSON   = message.MediaType(11543)
	mtSenMLJSON = message.MediaType(110)
	mtSenMLCBOR = message.MediaType(112)
	mtOpaque    = message.MediaType(42)
)

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

// registered is a device "cmd" registered on a fresh gateway, with an
// observer on its uplink topics.
func registered(t *testing.T, keys string) (*env, *device, *observer) {
	t.Helper()
	e := newEnv(t, conf(keys, ""))
	up := e.observe("lwm2m/cmd/up/#")
	d := newDevice(t, "cmd")
	d.dial(e.addr("lwm2m:udp:default"))
	if c := d.register("</1/0>,</3/0>,</3303/0>", "lt=300", "lwm2m=1.1"); c != codes.Created {
		t.Fatalf("register: %v", c)
	}
	up.next(t)
	return e, d, up
}

func TestCommands(t *testing.T) {
	e, d, up := registered(t, "")
	// The device's data, encoded here by hand (TLV per OMA-TS-LightweightM2M
	// §C, SenML CBOR per RFC 8428 §6), not by the package's codecs.
	d.set("/3/0", mtTLV, cat(
		devTLV(0xC0, 0, []byte("Edge")),
		devTLV(0xC0, 9, []byte{87}),
		[]byte{0x83, 0x0B, 0x41, 0x00, 0x00}, // multiple resource 11: [0] = 0
		devTLV(0xC0, 13, []byte{0x65, 0x53, 0xF1, 0x00}),
	))
	d.set("/3/0/0", 0, []byte("Edge"))
	d.set("/3/0/9", 0, []byte("87"))
	d.set("/5/0/0", mtOpaque, []byte{0xde, 0xad})
	d.set("/6/0", mtOMAJSON, []byte(`{"bn":"/6/0/","e":[{"n":"0","v":43.1},{"n":"1","v":-71.2}]}`))
	d.set("/3303/0", mtSenMLJSON, []byte(`[{"bn":"/3303/0/","n":"5700","v":21.5},{"n":"5701","vs":"Cel"}]`))
	d.set("/3303/1", mtSenMLCBOR, cat(
		[]byte{0x82, 0xA3, 0x21, 0x68}, []byte("/3303/1/"), []byte{0x00, 0x64}, []byte("5700"),
		[]byte{0x02, 0xFA, 0x41, 0xB4, 0x00, 0x00},
		[]byte{0xA2, 0x00, 0x64}, []byte("5701"), []byte{0x03, 0x63}, []byte("Cel"),
	))
	d.set("/3303/0/5700", 0, []byte("21.5"))

	for _, tc := range []struct {
		name string
		cmd  string
		want devReq // zero code: the device is not asked
	}{
		{"read_tlv", `{"reqID":"1","msgType":"read","data":{"path":"/3/0"}}`, devReq{code: codes.GET, path: "/3/0"}},
		{"read_text", `{"reqID":"2","msgType":"read","data":{"path":"/3/0/0"}}`, devReq{code: codes.GET, path: "/3/0/0"}},
		{"read_text_integer", `{"requestID":3,"cacheID":9,"msgType":"read","data":{"path":"/3/0/9"}}`, devReq{code: codes.GET, path: "/3/0/9"}},
		{"read_opaque", `{"reqID":"4","msgType":"read","data":{"path":"/5/0/0"}}`, devReq{code: codes.GET, path: "/5/0/0"}},
		{"read_oma_json", `{"reqID":"5","msgType":"read","data":{"path":"/6/0"}}`, devReq{code: codes.GET, path: "/6/0"}},
		{"read_senml_json", `{"reqID":"6","msgType":"read","data":{"path":"/3303/0"}}`, devReq{code: codes.GET, path: "/3303/0"}},
		{"read_senml_cbor", `{"reqID":"7","msgType":"read","data":{"path":"/3303/1"}}`, devReq{code: codes.GET, path: "/3303/1"}},
		{"read_not_found", `{"reqID":"8","msgType":"read","data":{"path":"/7/0"}}`, devReq{code: codes.GET, path: "/7/0"}},
		{"discover", `{"reqID":"9","msgType":"discover","data":{"path":"/3/0"}}`, devReq{code: codes.GET, path: "/3/0", accept: 40}},
		{"write", `{"reqID":"10","msgType":"write","data":{"path":"/3/0/14","type":"String","value":"+02:00"}}`,
			devReq{code: codes.PUT, path: "/3/0/14", cf: 11542, payload: cat([]byte{0xC6, 0x0E}, []byte("+02:00"))}},
		{"write_batch", `{"reqID":"11","msgType":"write","data":{"basePath":"/3/0","content":[{"path":"/3/0/15","type":"String","value":"Europe"},{"path":"/3/0/14","type":"String","value":"+02"}]}}`,
			devReq{code: codes.POST, path: "/3/0", cf: 11542, payload: cat([]byte{0xC3, 0x0E}, []byte("+02"), []byte{0xC6, 0x0F}, []byte("Europe"))}},
		{"write_hex", `{"reqID":"12","msgType":"write","encoding":"hex","data":{"path":"/5/0/0","type":"Opaque","value":"dead"}}`,
			devReq{code: codes.PUT, path: "/5/0/0", cf: 11542, payload: []byte{0xC2, 0x00, 0xDE, 0xAD}}},
		{"write_attr", `{"reqID":"13","msgType":"write-attr","data":{"path":"/3303/0/5700","pmin":5,"pmax":"60"}}`,
			devReq{code: codes.PUT, path: "/3303/0/5700", queries: []string{"pmin=5", "pmax=60"}}},
		{"execute", `{"reqID":"14","msgType":"execute","data":{"path":"/3/0/4","args":"undefined"}}`,
			devReq{code: codes.POST, path: "/3/0/4", cf: 0}},
		{"create", `{"reqID":"15","msgType":"create","data":{"basePath":"/3303","content":[{"path":"/3303/2/5700","type":"Float","value":1.5}]}}`,
			devReq{code: codes.POST, path: "/3303", cf: 11542, payload: mustHex("0702E416443FC00000")}},
		{"delete", `{"reqID":"16","msgType":"delete","data":{"path":"/3303/2"}}`, devReq{code: codes.DELETE, path: "/3303/2"}},
		{"unsupported", `{"reqID":"17","msgType":"reboot","data":{"path":"/3/0"}}`, devReq{}},
		{"bad_path", `{"reqID":"18","msgType":"read","data":{"path":"/x/y"}}`, devReq{}},
		{"bad_value", `{"reqID":"19","msgType":"write","data":{"path":"/3/0/9","type":"Integer","value":"many"}}`, devReq{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.publish("lwm2m/cmd/dn", tc.cmd)
			if tc.want.code != 0 {
				r := d.nextReq()
				if tc.want.cf == 0 && tc.want.code != codes.POST {
					tc.want.cf = -1
				}
				if r.code != tc.want.code || r.path != tc.want.path || (tc.want.cf != r.cf) ||
					(tc.want.accept != 0 && r.accept != tc.want.accept) ||
					!bytes.Equal(r.payload, tc.want.payload) || !slices.Equal(r.queries, tc.want.queries) {
					t.Fatalf("device got %+v\nwant %+v", r, tc.want)
				}
			}
			m := up.next(t)
			if m.Msg.Topic != "lwm2m/cmd/up/resp" {
				t.Fatalf("reply on %s", m.Msg.Topic)
			}
			golden(t, "cmd_"+tc.name, jsonOf(t, m.Msg.Payload))
		})
	}
}

func TestObserveNotify(t *testing.T) {
	e, d, up := registered(t, "")
	d.set("/3303/0/5700", 0, []byte("21.5"))
	e.publish("lwm2m/cmd/dn", `{"reqID":"o1","msgType":"observe","data":{"path":"/3303/0/5700"}}`)
	if r := d.nextReq(); r.observe != 0 {
		t.Fatalf("observe sent as %+v", r)
	}
	golden(t, "observe", jsonOf(t, up.next(t).Msg.Payload))

	d.notify(0, []byte("22.25"))
	n := up.next(t)
	if n.Msg.Topic != "lwm2m/cmd/up/notify" {
		t.Fatalf("notify on %s", n.Msg.Topic)
	}
	golden(t, "notify", jsonOf(t, n.Msg.Payload))
	d.notify(mtSenMLJSON, []byte(`[{"bn":"/3303/0/5700","v":23}]`))
	golden(t, "notify_senml", jsonOf(t, up.next(t).Msg.Payload))

	e.publish("lwm2m/cmd/dn", `{"reqID":"o2","msgType":"cancel-observe","data":{"path":"/3303/0/5700"}}`)
	if r := d.nextReq(); r.observe != 1 {
		t.Fatalf("cancel-observe sent as %+v", r)
	}
	golden(t, "cancel_observe", jsonOf(t, up.next(t).Msg.Payload))
	if e.counter("lwm2m.notify") != 2 {
		t.Fatalf("notify counter %v", e.counter("lwm2m.notify"))
	}
}

func TestAutoObserve(t *testing.T) {
	_, d, up := registered(t, `auto_observe = ["/3303/0", "/9/0"]`)
	d.set("/3303/0", mtSenMLJSON, []byte(`[{"bn":"/3303/0/","n":"5700","v":21.5}]`))
	_ = d // the observe goes out right after register; the resource may not be set yet
	r := d.nextReq()
	if r.path != "/3303/0" || r.observe != 0 {
		t.Fatalf("auto observe sent %+v", r)
	}
	m := up.nextJSON(t)
	if m["msgType"] != "observe" || m["data"].(map[string]any)["reqPath"] != "/3303/0" {
		t.Fatalf("auto observe reply %v", m)
	}
}

// A device that stops answering gets coap_timeout after the retransmissions.
func TestCoapTimeout(t *testing.T) {
	e, d, up := registered(t, "")
	_ = d.cc.Close()
	e.publish("lwm2m/cmd/dn", `{"reqID":"t1","msgType":"read","data":{"path":"/3/0/0"}}`)
	golden(t, "coap_timeout", up.nextJSON(t))
	if e.counter("lwm2m.downlink.coap_timeout") != 1 || e.counter("lwm2m.downlink.retransmit") != 2 {
		t.Fatalf("timeout %v retransmit %v", e.counter("lwm2m.downlink.coap_timeout"), e.counter("lwm2m.downlink.retransmit"))
	}
}

// A response too large for one datagram comes in Block2 blocks (go-coap's
// client splits it); the gateway fetches and joins them.
func TestReadBlockwise(t *testing.T) {
	e, d, up := registered(t, "")
	big := bytes.Repeat([]byte("0123456789abcdef"), 200) // 3200 bytes
	d.set("/5/0/0", mtOpaque, big)
	e.publish("lwm2m/cmd/dn", `{"reqID":"b","msgType":"read","data":{"path":"/5/0/0"}}`)
	m := up.nextJSON(t)
	data := m["data"].(map[string]any)
	content, _ := data["content"].([]any)
	if data["code"] != "2.05" || len(content) != 1 {
		t.Fatalf("reply %v", m)
	}
	if got := content[0].(map[string]any)["value"]; got != base64.StdEncoding.EncodeToString(big) {
		t.Fatalf("value of %d chars", len(got.(string)))
	}
	// 3200 bytes in 1024-byte blocks: three follow-up requests.
	if n := e.counter("lwm2m.downlink.block2"); n != 3 {
		t.Fatalf("%v follow-up block requests", n)
	}
}

// A LwM2M 1.1 device that lists SenML CBOR and not TLV on its root link
// gets its writes in SenML CBOR.
func TestWriteSenML(t *testing.T) {
	e := newEnv(t, conf("", ""))
	up := e.observe("lwm2m/s11/up/#")
	d := newDevice(t, "s11")
	d.dial(e.addr("lwm2m:udp:default"))
	if c := d.register(`</>;ct="60 110 112",</3/0>`, "lt=60", "lwm2m=1.1"); c != codes.Created {
		t.Fatalf("register: %v", c)
	}
	up.next(t)
	for _, tc := range []struct {
		cmd  string
		want devReq
	}{
		{`{"msgType":"write","data":{"path":"/3/0/14","type":"String","value":"+02:00"}}`,
			devReq{code: codes.PUT, path: "/3/0/14", cf: 112, payload: cat(mustHex("81A20067"), []byte("/3/0/14"), mustHex("0366"), []byte("+02:00"))}},
		{`{"msgType":"write","data":{"basePath":"/3/0","content":[{"path":"/3/0/13","type":"Time","value":1700000000}]}}`,
			devReq{code: codes.POST, path: "/3/0", cf: 112, payload: cat(mustHex("81A20067"), []byte("/3/0/13"), mustHex("021A6553F100"))}},
	} {
		e.publish("lwm2m/s11/dn", tc.cmd)
		r := d.nextReq()
		if r.code != tc.want.code || r.path != tc.want.path || r.cf != tc.want.cf || !bytes.Equal(r.payload, tc.want.payload) {
			t.Fatalf("device got %+v (% x)\nwant %+v", r, r.payload, tc.want)
		}
		if m := up.nextJSON(t); m["data"].(map[string]any)["code"] != "2.04" {
			t.Fatalf("reply %v", m)
		}
	}
}

// A write larger than a block (a firmware package) goes out in Block1
// blocks; the device (go-coap) reassembles it.
func TestWriteBlockwise(t *testing.T) {
	e, d, up := registered(t, "")
	pkg := bytes.Repeat([]byte{0xA5, 0x5A, 0x01}, 1000) // 3000 bytes
	e.publish("lwm2m/cmd/dn", `{"reqID":"fw","msgType":"write","encoding":"hex","data":{"path":"/5/0/0","type":"Opaque","value":"`+hex.EncodeToString(pkg)+`"}}`)
	r := d.nextReq()
	want := cat([]byte{0xD0, 0x00, 0x0B, 0xB8}, pkg) // resource 0, 16-bit length 3000
	if r.code != codes.PUT || r.path != "/5/0/0" || !bytes.Equal(r.payload, want) {
		t.Fatalf("device got %v %s, %d bytes", r.code, r.path, len(r.payload))
	}
	if m := up.nextJSON(t); m["reqID"] != "fw" || m["data"].(map[string]any)["code"] != "2.04" {
		t.Fatalf("reply %v", m)
	}
	if n := e.counter("lwm2m.downlink.block1"); n != 2 {
		t.Fatalf("%v follow-up blocks, want 2 (3004 bytes in 1024-byte blocks)", n)
	}
}
