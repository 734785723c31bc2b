package jt808

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

// codecCase is one body, byte for byte, and its JSON. The table is shared
// by the decode and encode tests and seeds FuzzFrame; every message id of
// the bodies table has at least one case (TestEveryIDHasACase).
type codecCase struct {
	name string
	id   uint16
	v19  bool
	gbk  bool
	hex  string
	json string
}

var codecCases = []codecCase{
	{"terminal ack", 0x0001, false, false, "004e 8300 00", `{"seq":78,"id":33536,"result":0}`},
	{"heartbeat", 0x0002, false, false, "", `{}`},
	{"deregister", 0x0003, false, false, "", `{}`},
	{"query time", 0x0004, true, false, "", `{}`},
	{"fragment request", 0x0005, true, false, "0010 0002 0001 0003", `{"seq":16,"length":2,"ids":[1,3]}`},
	// EMQX's own register test body (emqx_jt808_SUITE client_regi_procedure).
	{"register 2013", 0x0100, false, false,
		"003a 003b 6578616d70 3333333333333333333333333333333333000000 31323334353600 03 756a766c323339",
		`{"province":58,"city":59,"manufacture":"examp","model":"33333333333333333","dev_id":"123456","color":3,"license_number":"ujvl239"}`},
	{"register 2019", 0x0100, true, false,
		"002c 012c 4d414e5546303030303031" + "4d4f44454c2d5800" + strings.Repeat("00", 22) + "54455231" + strings.Repeat("00", 26) + "01 41313233",
		`{"province":44,"city":300,"manufacture":"MANUF000001","model":"MODEL-X","dev_id":"TER1","color":1,"license_number":"A123"}`},
	{"register gbk plate", 0x0100, false, true,
		"0001 0002 4d414e5546 4d4f44454c" + strings.Repeat("00", 15) + "54455231000000 02 d4c141313233",
		`{"province":1,"city":2,"manufacture":"MANUF","model":"MODEL","dev_id":"TER1","color":2,"license_number":"粤A123"}`},
	{"auth 2013", 0x0102, false, false, "313233343536", `{"code":"123456"}`},
	{"auth 2019", 0x0102, true, false, "06 313233343536 383637353330303430303030303031 76312e32" + strings.Repeat("00", 16),
		`{"code_len":6,"code":"123456","imei":"867530040000001","sw_version_len":4,"sw_version":"v1.2"}`},
	{"query params ack", 0x0104, false, false, "0005 03 00000001 04 0000003c 00000013 05 6869626f78 00000031 02 0064",
		`{"seq":5,"length":3,"params":[{"id":1,"value":60},{"id":19,"value":"hibox"},{"id":49,"value":100}]}`},
	{"query params ack byte8", 0x0104, false, false, "0005 01 00000110 08 0102030405060708",
		`{"seq":5,"length":1,"params":[{"id":272,"value":"AQIDBAUGBwg="}]}`},
	{"attributes 2013", 0x0107, false, false,
		"0003 4d414e5546 4d4f44454c" + strings.Repeat("00", 15) + "54455231000000 89860012345678901234 03 312e30 03 322e30 03 01",
		`{"type":3,"manufacture":"MANUF","model":"MODEL","id":"TER1","iccid":"89860012345678901234","hardware_version":"1.0","firmware_version":"2.0","gnss_prop":3,"comm_prop":1}`},
	{"upgrade result", 0x0108, false, false, "00 01", `{"type":0,"result":1}`},
	{"location basic", 0x0200, false, false, "00000002 00000003 000003e8 000003e9 07d0 0087 0020 171022111553",
		`{"alarm":2,"status":3,"latitude":1000,"longitude":1001,"altitude":2000,"speed":135,"direction":32,"time":"171022111553"}`},
	// EMQX's location_report() body with every extra it tests.
	{"location extras", 0x0200, false, false,
		"00000002 00000003 000003e8 000003e9 07d0 0087 0020 171022111553" +
			"01 04 0000305b 02 02 03cc 03 02 001d 04 02 0012 11 05 02 0000001d 12 06 08 00000017 59 13 07 0000002d 0015 01",
		`{"alarm":2,"status":3,"latitude":1000,"longitude":1001,"altitude":2000,"speed":135,"direction":32,"time":"171022111553",
		 "extra":{"mileage":12379,"fuel_meter":972,"speed":29,"alarm_id":18,"overspeed_alarm":{"type":2,"id":29},
		 "in_out_alarm":{"type":8,"id":23,"direction":89},"path_time_alarm":{"id":45,"time":21,"result":1}}}`},
	{"location signals", 0x0200, true, false,
		"00000000 00000000 00000001 00000002 0003 0004 0005 260101120000" +
			"05 02 aabb 06 02 0123 25 04 00000015 2a 02 0002 2b 04 00020001 30 01 1f 31 01 0c e0 02 abcd",
		`{"alarm":0,"status":0,"latitude":1,"longitude":2,"altitude":3,"speed":4,"direction":5,"time":"260101120000",
		 "extra":{"tire_pressure":"qrs=","carriage_temp":291,"signal":{"low_beam":1,"high_beam":0},"right_turn":1,"left_turn":0,
		 "brake":1,"reverse":0,"fog":0,"side_marker":0,"horn":0,"air_conditioner":0,"neutral":0,"retarder":0,"abs":0,"heater":0,"cluth":0,
		 "io_status":{"deep_sleep":0,"sleep":1},"analog":{"ad0":1,"ad1":2},"rssi":31,"gnss_sat_num":12,"custome":"4AKrzQ=="}}`},
	{"location query ack", 0x0201, false, false, "0007 00000000 00000000 00000001 00000002 0003 0004 0005 260101120000",
		`{"seq":7,"params":{"alarm":0,"status":0,"latitude":1,"longitude":2,"altitude":3,"speed":4,"direction":5,"time":"260101120000"}}`},
	{"event report", 0x0301, false, false, "62", `{"id":98}`},
	{"question ack", 0x0302, false, false, "0009 02", `{"seq":9,"id":2}`},
	{"info demand", 0x0303, false, false, "05 01", `{"id":5,"flag":1}`},
	{"vehicle control ack", 0x0500, false, false, "0008 00000000 00000000 00000001 00000002 0003 0004 0005 260101120000",
		`{"seq":8,"location":{"alarm":0,"status":0,"latitude":1,"longitude":2,"altitude":3,"speed":4,"direction":5,"time":"260101120000"}}`},
	{"area query ack", 0x0608, true, false, "01 00000001 aabbcc", `{"type":1,"length":1,"items":"qrvM"}`},
	{"drive record", 0x0700, false, false, "0003 08 0102", `{"seq":3,"command":8,"data":"AQI="}`},
	{"waybill", 0x0701, false, false, "00000003 616263", `{"length":3,"data":"YWJj"}`},
	{"driver id out", 0x0702, false, false, "02 260101120000", `{"status":2,"time":"260101120000"}`},
	{"driver id in", 0x0702, false, false, "01 260101120000 00 03 626f62" + "3132333435" + strings.Repeat("00", 15) + "02 6f72 20301231",
		`{"status":1,"time":"260101120000","ic_result":0,"driver_name":"bob","certificate":"12345","organization":"or","cert_expiry":"20301231"}`},
	{"bulk location", 0x0704, false, false, "0002 01 001c 00000000 00000000 00000001 00000002 0003 0004 0005 260101120000 001c 00000000 00000000 00000003 00000004 0003 0004 0005 260101120001",
		`{"type":1,"length":2,"location":[
		 {"alarm":0,"status":0,"latitude":1,"longitude":2,"altitude":3,"speed":4,"direction":5,"time":"260101120000"},
		 {"alarm":0,"status":0,"latitude":3,"longitude":4,"altitude":3,"speed":4,"direction":5,"time":"260101120001"}]}`},
	{"can bus", 0x0705, false, false, "0001 1200300001 c0000123 0102030405060708",
		`{"length":1,"time":"1200300001","can_data":[{"channel":1,"frame_type":1,"data_method":0,"id":291,"data":"AQIDBAUGBwg="}]}`},
	{"multimedia event", 0x0800, false, false, "00000007 00 00 01 02", `{"id":7,"type":0,"format":0,"event":1,"channel":2}`},
	{"multimedia data", 0x0801, false, false, "00000007 00 00 01 02 00000000 00000000 00000001 00000002 0003 0004 0005 260101120000 ffd8",
		`{"id":7,"type":0,"format":0,"event":1,"channel":2,"location":{"alarm":0,"status":0,"latitude":1,"longitude":2,"altitude":3,"speed":4,"direction":5,"time":"260101120000"},"multimedia":"/9g="}`},
	{"multimedia search ack", 0x0802, false, false, "0004 0001 00000009 00 01 02 00000000 00000000 00000001 00000002 0003 0004 0005 260101120000",
		`{"seq":4,"length":1,"result":[{"id":9,"type":0,"channel":1,"event":2,"location":{"alarm":0,"status":0,"latitude":1,"longitude":2,"altitude":3,"speed":4,"direction":5,"time":"260101120000"}}]}`},
	{"camera ack", 0x0805, false, false, "0004 00 0002 00000001 00000002", `{"seq":4,"result":0,"length":2,"ids":[1,2]}`},
	{"camera ack failed", 0x0805, false, false, "0004 01", `{"seq":4,"result":1}`},
	{"transparent up", 0x0900, false, false, "41 0102", `{"type":65,"data":"AQI="}`},
	{"zip up", 0x0901, false, false, "00000002 1f8b", `{"length":2,"data":"H4s="}`},
	{"rsa up", 0x0A00, false, false, "00010001 " + strings.Repeat("ab", 128),
		`{"e":65537,"n":"` + strings.Repeat("q6ur", 42) + `q6s="}`},

	{"platform ack", 0x8001, false, false, "004e 0102 00", `{"seq":78,"id":258,"result":0}`},
	{"retx request 2013", 0x8003, false, false, "0010 02 0002 0004", `{"seq":16,"length":2,"ids":[2,4]}`},
	{"retx request 2019", 0x8003, true, false, "0010 0002 0002 0004", `{"seq":16,"length":2,"ids":[2,4]}`},
	{"time ack", 0x8004, true, false, "261122004059", `{"year":2026,"month":11,"day":22,"hour":0,"minute":40,"second":59}`},
	{"register ack", 0x8100, false, false, "004e 00 313233343536", `{"seq":78,"result":0,"auth_code":"123456"}`},
	{"register ack failed", 0x8100, false, false, "004e 02", `{"seq":78,"result":2}`},
	{"set params", 0x8103, false, false, "02 00000001 04 0000001e 00000013 03 617069",
		`{"length":2,"params":[{"id":1,"value":30},{"id":19,"value":"api"}]}`},
	{"set params byte8", 0x8103, false, false, "01 00000110 08 0102030405060708",
		`{"length":1,"params":[{"id":272,"value":"AQIDBAUGBwg="}]}`},
	{"query params", 0x8104, false, false, "", `{}`},
	{"control", 0x8105, false, false, "04", `{"command":4}`},
	{"control with param", 0x8105, false, false, "01 3b3b", `{"command":1,"param":";;"}`},
	{"query some params", 0x8106, false, false, "02 00000001 00000013", `{"length":2,"ids":[1,19]}`},
	{"query attributes", 0x8107, false, false, "", `{}`},
	{"upgrade", 0x8108, false, false, "00 4d414e5546 03 312e31 00000002 0102",
		`{"type":0,"manufacturer":"MANUF","ver_len":3,"version":"1.1","fw_len":2,"firmware":"AQI="}`},
	{"query location", 0x8201, false, false, "", `{}`},
	{"track", 0x8202, false, false, "000a 00000e10", `{"period":10,"expiry":3600}`},
	{"confirm alarm", 0x8203, false, false, "0011 00000001", `{"seq":17,"type":1}`},
	{"link detect", 0x8204, true, false, "", `{}`},
	{"text 2013", 0x8300, false, false, "0f 77686f2061726520796f75", `{"flag":15,"text":"who are you"}`},
	{"text 2019", 0x8300, true, false, "0c 01 6869", `{"flag":12,"text_type":1,"text":"hi"}`},
	{"text gbk", 0x8300, false, true, "01 c4e3bac3", `{"flag":1,"text":"你好"}`},
	{"set events", 0x8301, false, false, "01 02 01 02 6869 02 00", `{"type":1,"length":2,"events":[{"id":1,"length":2,"content":"hi"},{"id":2,"length":0,"content":""}]}`},
	{"question", 0x8302, false, false, "10 03 796573 01 0002 6f6b 02 0002 6e6f",
		`{"flag":16,"length":3,"question":"yes","answers":[{"id":1,"len":2,"answer":"ok"},{"id":2,"len":2,"answer":"no"}]}`},
	{"menu", 0x8303, false, false, "01 01 05 0004 6e657773", `{"type":1,"length":1,"menus":[{"type":5,"length":4,"info":"news"}]}`},
	{"info service", 0x8304, false, false, "05 0002 6869", `{"type":5,"length":2,"info":"hi"}`},
	{"call back", 0x8400, false, false, "00 313338", `{"type":0,"phone":"138"}`},
	{"phone book", 0x8401, false, false, "01 01 03 02 3131 03 626f62",
		`{"type":1,"length":1,"contacts":[{"type":3,"phone_len":2,"phone":"11","name_len":3,"name":"bob"}]}`},
	{"vehicle control 2013", 0x8500, false, false, "01", `{"flag":1}`},
	{"vehicle control 2019", 0x8500, true, false, "0001 0001 01", `{"length":1,"controls":[{"type_id":1,"param":1}]}`},
	{"circle area", 0x8600, false, false, "00 01 00000001 0003 00000010 00000020 00000064 260101000000 261231235959 003c 05",
		`{"type":0,"length":1,"areas":[{"id":1,"flag":3,"center_latitude":16,"center_longitude":32,"radius":100,"start_time":"260101000000","end_time":"261231235959","max_speed":60,"overspeed_duration":5}]}`},
	{"circle area 2019", 0x8600, true, false, "00 01 00000001 0002 00000010 00000020 00000064 003c 05 0028 0002 6869",
		`{"type":0,"length":1,"areas":[{"id":1,"flag":2,"center_latitude":16,"center_longitude":32,"radius":100,"max_speed":60,"overspeed_duration":5,"night_max_speed":40,"name_len":2,"name":"hi"}]}`},
	{"delete circles", 0x8601, false, false, "02 00000001 00000002", `{"length":2,"ids":[1,2]}`},
	{"rect area", 0x8602, false, false, "01 01 00000002 0000 00000001 00000002 00000003 00000004",
		`{"type":1,"length":1,"areas":[{"id":2,"flag":0,"lt_lat":1,"lt_lng":2,"rb_lat":3,"rb_lng":4}]}`},
	{"delete rects", 0x8603, false, false, "01 00000002", `{"length":1,"ids":[2]}`},
	{"polygon", 0x8604, false, false, "00000003 0002 003c 05 0002 00000001 00000002 00000003 00000004",
		`{"id":3,"flag":2,"max_speed":60,"overspeed_duration":5,"length":2,"points":[{"lat":1,"lng":2},{"lat":3,"lng":4}]}`},
	{"delete polygons", 0x8605, false, false, "00", `{"length":0,"ids":[]}`},
	{"route", 0x8606, false, false, "00000004 0000 0001 00000001 00000002 00000003 00000004 0a 03 0064 0032 0050 0a",
		`{"id":4,"flag":0,"length":1,"points":[{"point_id":1,"path_id":2,"point_lat":3,"point_lng":4,"width":10,"attrib":3,"passed":100,"uncovered":50,"max_speed":80,"overspeed_duration":10}]}`},
	{"delete routes", 0x8607, false, false, "01 00000004", `{"length":1,"ids":[4]}`},
	{"query areas", 0x8608, true, false, "01 00000001 00000007", `{"type":1,"length":1,"ids":[7]}`},
	{"drive record cmd", 0x8700, false, false, "08", `{"command":8,"param":""}`},
	{"drive record params", 0x8701, false, false, "82 0102", `{"command":130,"param":"AQI="}`},
	{"driver id request", 0x8702, false, false, "", `{}`},
	{"multimedia ack", 0x8800, false, false, "00000007", `{"mm_id":7}`},
	{"multimedia ack retx", 0x8800, false, false, "00000007 02 0001 0003", `{"mm_id":7,"length":2,"retx_ids":[1,3]}`},
	{"camera", 0x8801, false, false, "01 0001 0000 00 01 05 7f 40 40 7f",
		`{"channel_id":1,"command":1,"period":0,"save":0,"resolution":1,"quality":5,"bright":127,"contrast":64,"saturate":64,"chromaticity":127}`},
	{"multimedia search", 0x8802, false, false, "00 01 00 260101000000 260102000000",
		`{"type":0,"channel":1,"event":0,"start_time":"260101000000","end_time":"260102000000"}`},
	{"multimedia upload", 0x8803, false, false, "00 01 00 260101000000 260102000000 01",
		`{"type":0,"channel":1,"event":0,"start_time":"260101000000","end_time":"260102000000","delete":1}`},
	{"record", 0x8804, false, false, "01 001e 00 01", `{"command":1,"time":30,"save":0,"rate":1}`},
	{"single multimedia", 0x8805, false, false, "00000009 00", `{"id":9,"flag":0}`},
	{"transparent down", 0x8900, false, false, "41 0102", `{"type":65,"data":"AQI="}`},
	{"rsa down", 0x8A00, false, false, "00010001 " + strings.Repeat("ab", 128),
		`{"e":65537,"n":"` + strings.Repeat("q6ur", 42) + `q6s="}`},
}

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", "\n", "", "\t", "").Replace(s))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func jsonValue(t testing.TB, s string) any {
	t.Helper()
	var v any
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	if err := d.Decode(&v); err != nil {
		t.Fatalf("bad json %s: %v", s, err)
	}
	return v
}

func TestCodecDecode(t *testing.T) {
	for _, c := range codecCases {
		t.Run(c.name, func(t *testing.T) {
			o, err := decodeBody(c.id, c.v19, charset{gbk: c.gbk}, unhex(t, c.hex))
			if err != nil {
				t.Fatal(err)
			}
			got := appendJSON(nil, o)
			if !reflect.DeepEqual(jsonValue(t, string(got)), jsonValue(t, c.json)) {
				t.Fatalf("0x%04X decoded\n got %s\nwant %s", c.id, got, c.json)
			}
		})
	}
}

func TestCodecEncode(t *testing.T) {
	for _, c := range codecCases {
		t.Run(c.name, func(t *testing.T) {
			m, _ := jsonValue(t, c.json).(map[string]any)
			got, err := encodeBody(nil, c.id, c.v19, charset{gbk: c.gbk}, m)
			if err != nil {
				t.Fatal(err)
			}
			if want := unhex(t, c.hex); !bytes.Equal(got, want) {
				t.Fatalf("0x%04X encoded\n got % x\nwant % x", c.id, got, want)
			}
		})
	}
}

func TestEveryIDHasACase(t *testing.T) {
	have := map[uint16]bool{}
	for _, c := range codecCases {
		have[c.id] = true
	}
	for id := range bodies {
		if !have[id] {
			t.Errorf("no codec case for 0x%04X", id)
		}
	}
}

func TestCodecErrors(t *testing.T) {
	for _, c := range []struct {
		id   uint16
		hex  string
		want string
	}{
		{0x0001, "004e 83", "id: jt808: body too short"},
		{0x0200, "00000002 00000003", "latitude: jt808: body too short"},
		{0x0200, "00000002 00000003 000003e8 000003e9 07d0 0087 0020 171022111553 01 04 00", "extra: jt808: body too short"},
		{0x0100, "003a 003b 6578616d", "manufacture: jt808: body too short"},
		{0x8103, "02 00000001 04 0000001e", "jt808: body too short"},
	} {
		_, err := decodeBody(c.id, false, charset{}, unhex(t, c.hex))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("0x%04X % s: got %v, want …%s", c.id, c.hex, err, c.want)
		}
	}
	for _, c := range []struct {
		id   uint16
		json string
		want string
	}{
		{0x8300, `{"flag":1}`, `missing "text"`},
		{0x8300, `{"flag":300,"text":"x"}`, "300 does not fit 1 bytes"},
		{0x8103, `{"params":[{"id":1,"value":"x!"}]}`, "illegal base64"},
		{0x8A00, `{"e":1,"n":"AQI="}`, "must be 128 bytes"},
		{0x8300, `{"flag":1,"text":"\u00e9\u20ac"}`, ""}, // utf8 passes
		{0x0000, `{}`, "unsupported msg_id 0x0000"},
	} {
		m, _ := jsonValue(t, c.json).(map[string]any)
		_, err := encodeBody(nil, c.id, false, charset{}, m)
		if c.want == "" {
			if err != nil {
				t.Errorf("%s: %v", c.json, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("0x%04X %s: got %v, want …%s", c.id, c.json, err, c.want)
		}
	}
	if _, err := encodeBody(nil, 0x8300, false, charset{gbk: true}, map[string]any{"flag": json.Number("1"), "text": "😀"}); err == nil {
		t.Error("an emoji has no GBK encoding, want an error")
	}
}

// frameCases are whole frames on the wire with what ParseFrame gives.
var frameCases = []struct {
	name string
	wire string // escaped, with delimiters
	h    Header
	body string
}{
	// EMQX's heartbeat frame from emqx_jt808_SUITE (phone 000123456789, sn 78).
	{"2013 heartbeat", "7e 0002 0000 000123456789 004e c5 7e",
		Header{MsgID: 2, Phone: "000123456789", MsgSN: 78}, ""},
	{"2019 heartbeat", "7e 0002 4000 01 00000000000123456789 004e 84 7e",
		Header{MsgID: 2, V2019: true, ProtoVer: 1, Phone: "00000000000123456789", MsgSN: 78}, ""},
	// A body of 7e 7d travels as 7d 02 7d 01.
	{"escaped", "7e 0900 0003 000123456789 0001 41 7d02 7d01 c0 7e",
		Header{MsgID: 0x0900, Len: 3, Phone: "000123456789", MsgSN: 1}, "41 7e 7d"},
	{"fragment", "7e 0801 2002 000123456789 0005 0003 0002 aabb b7 7e",
		Header{MsgID: 0x0801, Len: 2, Phone: "000123456789", MsgSN: 5, FragTotal: 3, FragSN: 2}, "aabb"},
}

func TestFrames(t *testing.T) {
	for _, c := range frameCases {
		t.Run(c.name, func(t *testing.T) {
			wire := unhex(t, c.wire)
			var got [][]byte
			NewDeframer(0).Feed(wire, func(f []byte, err error) {
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, bytes.Clone(f))
			})
			if len(got) != 1 {
				t.Fatalf("got %d frames", len(got))
			}
			h, body, err := ParseFrame(got[0])
			if err != nil {
				t.Fatal(err)
			}
			if h != c.h || !bytes.Equal(body, unhex(t, c.body)) {
				t.Fatalf("got %+v % x, want %+v %s", h, body, c.h, c.body)
			}
			enc, err := AppendFrame(nil, &c.h, body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, wire) {
				t.Fatalf("encoded % x, want % x", enc, wire)
			}
			// Split at every position, the escape included.
			for i := 1; i < len(wire); i++ {
				d := NewDeframer(0)
				n := 0
				emit := func(f []byte, err error) {
					if err != nil || !bytes.Equal(f, got[0]) {
						t.Fatalf("split at %d: % x %v", i, f, err)
					}
					n++
				}
				d.Feed(wire[:i], emit)
				d.Feed(wire[i:], emit)
				if n != 1 {
					t.Fatalf("split at %d: %d frames", i, n)
				}
			}
		})
	}
}

func TestDeframerErrors(t *testing.T) {
	var errs []error
	var frames int
	d := NewDeframer(16)
	emit := func(f []byte, err error) {
		if err != nil {
			errs = append(errs, err)
		} else {
			frames++
		}
	}
	d.Feed(unhex(t, "0102 03 7e 0102 7d03 7e 7e"+strings.Repeat("00", 20)+"7e 7e 01 7e"), emit)
	if d.Garbage != 3 || frames != 1 || len(errs) != 2 || errs[0] != ErrEscape || errs[1] != ErrTooLong {
		t.Fatalf("garbage %d frames %d errs %v", d.Garbage, frames, errs)
	}
	if _, _, err := ParseFrame(unhex(t, "0002 0000 000123456789 004e c4")); err != ErrChecksum {
		t.Fatalf("checksum: %v", err)
	}
	if _, _, err := ParseFrame(unhex(t, "0002 0001 000123456789 004e c4")); err == nil {
		t.Fatal("length mismatch accepted")
	}
}

func FuzzFrame(f *testing.F) {
	for _, c := range frameCases {
		f.Add(unhex(f, c.wire))
	}
	for _, c := range publishedFrames {
		f.Add(unhex(f, c.wire))
	}
	for _, c := range codecCases {
		h := Header{MsgID: c.id, V2019: c.v19, ProtoVer: 1, Phone: "13912345678"}
		b, err := AppendFrame(nil, &h, unhex(f, c.hex))
		if err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		d := NewDeframer(4096)
		d.Feed(data, func(fr []byte, err error) {
			if err != nil {
				return
			}
			h, body, err := ParseFrame(fr)
			if err != nil {
				return
			}
			for _, cs := range []charset{{}, {gbk: true}} {
				o, err := decodeBody(h.MsgID, h.V2019, cs, body)
				if err != nil {
					continue
				}
				js := appendJSON(nil, o)
				if !json.Valid(js) {
					t.Fatalf("invalid JSON %s", js)
				}
			}
		})
	})
}

// FuzzDownlink feeds the other parser, the JSON a cloud application
// publishes on dn_topic: whatever it is, encoding must not panic, and a
// body that encodes must decode again.
func FuzzDownlink(f *testing.F) {
	for _, c := range codecCases {
		f.Add(c.id, c.v19, []byte(c.json))
	}
	f.Fuzz(func(t *testing.T, id uint16, v19 bool, js []byte) {
		var m map[string]any
		d := json.NewDecoder(bytes.NewReader(js))
		d.UseNumber()
		if d.Decode(&m) != nil {
			return
		}
		body, err := encodeBody(nil, id, v19, charset{}, m)
		if err != nil {
			return
		}
		if _, err := decodeBody(id, v19, charset{}, body); err != nil {
			t.Fatalf("0x%04X %s encoded to % x, which does not decode: %v", id, js, body, err)
		}
	})
}
