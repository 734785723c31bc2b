package jt808

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// publishedFrames are whole frames exactly as third parties published
// them, with the values their authors state for each field. They check
// our reading of the standard against independent implementations and a
// terminal vendor, not against our own encoder. Where a source states no
// value for a field, the value is read from the bytes by the standard's
// table and the comment says so.
//
// Sources:
//
//	[smallchi]  github.com/SmallChi/JT808, src/JT808.Protocol.Test/MessageBody/JT808_0x….Test.cs
//	            (xUnit tests of a .NET JT/T 808 library; each test names the frame's values)
//	[xtream]    github.com/makeclan/xtream-codec,
//	            debug/jt/jt-808-server-spring-boot-starter-debug-ui/src/utils/codec-utils.ts
//	            (codecMockData: 2019 frames with the decoded body as JSON)
//	[huabao]    https://huabaotelematics.com/blog/jt808-common-message-parsing-of-gps-electronic-lock-huabaotelematics-com_b9
//	            (a terminal vendor's annotated captures of 0x0200, 0x0102 and 0x8001)
var publishedFrames = []struct {
	name   string
	wire   string // escaped, with delimiters, as published
	gbk    bool
	h      Header
	json   string // the body's JSON as we publish it, with the source's values
	noBack bool   // re-encoding the JSON need not give the same bytes
}{
	// [smallchi] JT808_0x0002Test.cs Test2: phone "12345678900", MsgNum 10, no body.
	{"0x0002 heartbeat 2013", "7E 00 02 00 00 01 23 45 67 89 00 00 0A 81 7E", false,
		Header{MsgID: 0x0002, Phone: "012345678900", MsgSN: 10}, `{}`, false},
	// [smallchi] JT808_0x0002Test.cs Test3: phone "40021679287", MsgNum 43; the
	// checksum is 0x7e and travels escaped as 7d 02.
	{"0x0002 heartbeat escaped checksum", "7E 00 02 00 00 04 00 21 67 92 87 00 2B 7D 02 7E", false,
		Header{MsgID: 0x0002, Phone: "040021679287", MsgSN: 43}, `{}`, false},
	// [xtream] BuiltinMessage0002: 2019, version 1, phone 13912344329, flow id 0.
	{"0x0002 heartbeat 2019", "7e0002400001000000000139123443290000377e", false,
		Header{MsgID: 0x0002, V2019: true, ProtoVer: 1, Phone: "00000000013912344329"}, `{}`, false},

	// [smallchi] JT808_0x0100Test.cs Test1_1: AreaID 40, CityOrCountyId 50,
	// MakerId "12340", TerminalModel "smallchi123000000000", TerminalId
	// "CHI1230", PlateColor 1, PlateNo "粤A12345" (GBK d4 c1), MsgNum 10,
	// phone "123456789". Fixed-width fields are padded with ASCII '0', which
	// is data, not padding, so it stays in the strings, as the source says.
	{"0x0100 register 2013", "7E 01 00 00 2D 00 01 23 45 67 89 00 0A 00 28 00 32 31 32 33 34 30 73 6D 61 6C 6C 63 68 69 31 32 33 30 30 30 30 30 30 30 30 30 43 48 49 31 32 33 30 01 D4 C1 41 31 32 33 34 35 BA 7E", true,
		Header{MsgID: 0x0100, Len: 45, Phone: "000123456789", MsgSN: 10},
		`{"province":40,"city":50,"manufacture":"12340","model":"smallchi123000000000","dev_id":"CHI1230","color":1,"license_number":"粤A12345"}`, false},
	// [smallchi] JT808_0x0100Test.cs Test2019_2: ProtocolVersion 1, version
	// flag set, MsgNum 10, phone "123456789" (BCD[10]), AreaID 40, City 50,
	// MakerId "1234".PadLeft(11,'0'), TerminalModel "smallchi123".PadLeft(30,'0'),
	// TerminalId "CHI123".PadLeft(30,'0'), PlateColor 1, PlateNo "粤A12345".
	{"0x0100 register 2019", "7E010040540100000000000123456789000A00280032303030303030303132333430303030303030303030303030303030303030736D616C6C63686931323330303030303030303030303030303030303030303030303043484931323301D4C1413132333435B27E", true,
		Header{MsgID: 0x0100, Len: 84, V2019: true, ProtoVer: 1, Phone: "00000000000123456789", MsgSN: 10},
		`{"province":40,"city":50,"manufacture":"00000001234","model":"` + strings.Repeat("0", 19) + `smallchi123","dev_id":"` + strings.Repeat("0", 24) + `CHI123","color":1,"license_number":"粤A12345"}`, false},
	// [smallchi] JT808_0x0100Test.cs Test2019_4_2: phone "22222222222",
	// version 1, AreaID 0, City 0, PlateColor 2, PlateNo "粤A12346", MakerId,
	// TerminalId and TerminalModel "Koike002" left-padded with '0'.
	{"0x0100 register 2019 koike", "7e0100405401000000000222222222220001000000003030304b6f696b65303032303030303030303030303030303030303030303030304b6f696b65303032303030303030303030303030303030303030303030304b6f696b6530303202d4c1413132333436107e", true,
		Header{MsgID: 0x0100, Len: 84, V2019: true, ProtoVer: 1, Phone: "00000000022222222222", MsgSN: 1},
		`{"province":0,"city":0,"manufacture":"000Koike002","model":"` + strings.Repeat("0", 22) + `Koike002","dev_id":"` + strings.Repeat("0", 22) + `Koike002","color":2,"license_number":"粤A12346"}`, false},

	// [smallchi] JT808_0x0102Test.cs Test4: MsgNum 12345, phone
	// "12345678900", Code "456121111".
	{"0x0102 auth 2013", "7E 01 02 00 09 01 23 45 67 89 00 30 39 34 35 36 31 32 31 31 31 31 BE 7E", false,
		Header{MsgID: 0x0102, Len: 9, Phone: "012345678900", MsgSN: 12345}, `{"code":"456121111"}`, false},
	// [huabao] section 2: terminal 002002604325, serial 1, 13-byte auth
	// code (the page does not spell it out: ASCII "8300200260432").
	{"0x0102 auth 2013 huabao", "7E 01 02 00 0D 00 20 02 60 43 25 00 01 38 33 30 30 32 30 30 32 36 30 34 33 32 13 7E", false,
		Header{MsgID: 0x0102, Len: 13, Phone: "002002604325", MsgSN: 1}, `{"code":"8300200260432"}`, false},

	// [smallchi] JT808_0x0200Test.cs Demo2: MsgNum 126 (00 7e, escaped
	// as 7d 02), phone "123456789012", AlarmFlag 1, StatusFlag 2, Lat
	// 12222222, Lng 132444444, Altitude 40, Speed 60, Direction 0, GPSTime
	// 2018-10-15 10:10:10, mileage (0x01) 100, oil (0x02) 125 (00 7d,
	// escaped as 7d 01).
	{"0x0200 location escaped", "7E 02 00 00 26 12 34 56 78 90 12 00 7D 02 00 00 00 01 00 00 00 02 00 BA 7F 0E 07 E4 F1 1C 00 28 00 3C 00 00 18 10 15 10 10 10 01 04 00 00 00 64 02 02 00 7D 01 13 7E", false,
		Header{MsgID: 0x0200, Len: 38, Phone: "123456789012", MsgSN: 126},
		`{"alarm":1,"status":2,"latitude":12222222,"longitude":132444444,"altitude":40,"speed":60,"direction":0,"time":"181015101010","extra":{"mileage":100,"fuel_meter":125}}`, false},
	// [smallchi] JT808_0x0200Test.cs Test5: DataLength 38, MsgNum 8888,
	// phone "112233445566", same location as above but 2018-07-15 and oil 55.
	// (The source's comment above the frame says length 00 33 and
	// checksum 42; the frame itself has 00 26 and 57, which are right.)
	{"0x0200 location 2013", "7E 02 00 00 26 11 22 33 44 55 66 22 B8 00 00 00 01 00 00 00 02 00 BA 7F 0E 07 E4 F1 1C 00 28 00 3C 00 00 18 07 15 10 10 10 01 04 00 00 00 64 02 02 00 37 57 7E", false,
		Header{MsgID: 0x0200, Len: 38, Phone: "112233445566", MsgSN: 8888},
		`{"alarm":1,"status":2,"latitude":12222222,"longitude":132444444,"altitude":40,"speed":60,"direction":0,"time":"180715101010","extra":{"mileage":100,"fuel_meter":55}}`, false},
	// [smallchi] JT808_0x0200Test.cs Test6: a capture from a device; the
	// source asserts nothing, so the values are read from the bytes:
	// status 0x000c00c2, 22768750 / 113792664, altitude 30, direction 224,
	// mileage 0x00054c7d (its 7d escaped as 7d 01), and the 0x25, 0x2b,
	// 0x30 (rssi 29), 0x31 (13 satellites) items of JT/T 808-2013 table 27.
	{"0x0200 location device", "7E 02 00 00 3C 04 00 21 68 20 87 1D 0C 00 00 00 00 00 0C 00 C2 01 5B 6C 6E 06 C8 56 98 00 1E 00 00 00 E0 18 09 16 10 35 37 01 04 00 05 4C 7D 01 02 02 00 00 03 02 00 00 25 04 00 00 00 00 2B 04 00 00 00 00 30 01 1D 31 01 0D 97 7E", false,
		Header{MsgID: 0x0200, Len: 60, Phone: "040021682087", MsgSN: 0x1d0c},
		`{"alarm":0,"status":786626,"latitude":22768750,"longitude":113792664,"altitude":30,"speed":0,"direction":224,"time":"180916103537",
		  "extra":{"mileage":347261,"fuel_meter":0,"speed":0,
		    "signal":{"low_beam":0,"high_beam":0},"right_turn":0,"left_turn":0,"brake":0,"reverse":0,"fog":0,"side_marker":0,"horn":0,
		    "air_conditioner":0,"neutral":0,"retarder":0,"abs":0,"heater":0,"cluth":0,
		    "analog":{"ad0":0,"ad1":0},"rssi":29,"gnss_sat_num":13}}`, false},
	// [huabao] section 1: device 002002604323, sequence 0x00a4, alarm
	// 0x00020000, state 0x000c0002, latitude 0x0158b91b, longitude
	// 0x06cb7061, altitude 0x46, speed 0, direction 0x59, time 21-09-22
	// 16:37:58, mileage 1, 0x03 speed 0, 0x25 signal 1 (low beam), signal
	// strength 0x11, 0x10 satellites, then the vendor's own items 0xe3
	// ("keep", 1 byte) and 0xd5 (27 bytes of lock data), which travel raw
	// in "custome".
	{"0x0200 location vendor extras", "7E 02 00 00 52 00 20 02 60 43 23 00 A4 00 02 00 00 00 0C 00 02 01 58 B9 1B 06 CB 70 61 00 46 00 00 00 59 21 09 22 16 37 58 01 04 00 00 00 01 03 02 00 00 25 04 00 00 00 01 30 01 11 31 01 10 E3 01 00 D5 1B 02 20 02 60 43 23 27 95 93 78 61 60 00 12 20 00 00 12 34 27 95 93 78 61 58 00 12 86 7E", false,
		Header{MsgID: 0x0200, Len: 82, Phone: "002002604323", MsgSN: 0xa4},
		`{"alarm":131072,"status":786434,"latitude":22591771,"longitude":113995873,"altitude":70,"speed":0,"direction":89,"time":"210922163758",
		  "extra":{"mileage":1,"speed":0,
		    "signal":{"low_beam":1,"high_beam":0},"right_turn":0,"left_turn":0,"brake":0,"reverse":0,"fog":0,"side_marker":0,"horn":0,
		    "air_conditioner":0,"neutral":0,"retarder":0,"abs":0,"heater":0,"cluth":0,
		    "rssi":17,"gnss_sat_num":16,"custome":"4wEA1RsCIAJgQyMnlZN4YWAAEiAAABI0J5WTeGFYABI="}}`, false},
	// [xtream] BuiltinMessage0200: 2019, alarmFlag 111, status 22,
	// latitude 31234567, longitude 121987654, altitude 123, speed 66,
	// direction 3, time 2025-01-29 22:33:44, extra items 1 → 12, 2 → 100
	// (sent as 0x02 before 0x01). (The source's BuiltinMessage0200Sample2
	// repeats this JSON for a different frame: its values do not match
	// its bytes, so it is not used.)
	{"0x0200 location 2019", "7e02004026010000000001391234432900000000006f0000001601dc9a0707456246007b004200032501292233440202006401040000000c417e", false,
		Header{MsgID: 0x0200, Len: 38, V2019: true, ProtoVer: 1, Phone: "00000000013912344329"},
		`{"alarm":111,"status":22,"latitude":31234567,"longitude":121987654,"altitude":123,"speed":66,"direction":3,"time":"250129223344","extra":{"fuel_meter":100,"mileage":12}}`,
		true}, // we write extras in table order (0x01 first)

	// [smallchi] JT808_0x0704Test.cs Test2: MsgNum 8888, phone
	// "112233445566", Count 2, type 0 (normal), positions as in
	// JT808_0x0200Test with mileage 100/96 and oil 55/66.
	{"0x0704 bulk 2013", "7E 07 04 00 53 11 22 33 44 55 66 22 B8 00 02 00 00 26 00 00 00 01 00 00 00 02 00 BA 7F 0E 07 E4 F1 1C 00 28 00 3C 00 00 18 07 15 10 10 10 01 04 00 00 00 64 02 02 00 37 00 26 00 00 00 02 00 00 00 01 00 CB 73 55 07 E6 A3 23 00 29 00 36 00 78 18 07 15 10 10 30 01 04 00 00 00 60 02 02 00 42 D4 7E", false,
		Header{MsgID: 0x0704, Len: 83, Phone: "112233445566", MsgSN: 8888},
		`{"type":0,"length":2,"location":[
		  {"alarm":1,"status":2,"latitude":12222222,"longitude":132444444,"altitude":40,"speed":60,"direction":0,"time":"180715101010","extra":{"mileage":100,"fuel_meter":55}},
		  {"alarm":2,"status":1,"latitude":13333333,"longitude":132555555,"altitude":41,"speed":54,"direction":120,"time":"180715101030","extra":{"mileage":96,"fuel_meter":66}}]}`, false},
	// [xtream] BuiltinMessage0704: 2019, count 2, type 0, two locations
	// (alarm 1, status 1, 31000562/121451372, altitude 666, speed 33,
	// direction 89; 31000563/121451373, 777, 67, 90; both 2024-10-29 21:39:03).
	{"0x0704 bulk 2019", "7e0704403f01000000000139123443290000000200001c000000010000000101d907f2073d336c029a00210059241029213903001c000000010000000101d907f3073d336d03090043005a241029213903f87e", false,
		Header{MsgID: 0x0704, Len: 63, V2019: true, ProtoVer: 1, Phone: "00000000013912344329"},
		`{"type":0,"length":2,"location":[
		  {"alarm":1,"status":1,"latitude":31000562,"longitude":121451372,"altitude":666,"speed":33,"direction":89,"time":"241029213903"},
		  {"alarm":1,"status":1,"latitude":31000563,"longitude":121451373,"altitude":777,"speed":67,"direction":90,"time":"241029213903"}]}`, false},

	// [smallchi] JT808_0x8001Test.cs Test2: MsgNum 10, phone
	// "12345678900", AckMsgId 0x0200, ack MsgNum 100, result 0 (success).
	{"0x8001 platform ack 2013", "7E 80 01 00 05 01 23 45 67 89 00 00 0A 00 64 02 00 00 61 7E", false,
		Header{MsgID: 0x8001, Len: 5, Phone: "012345678900", MsgSN: 10}, `{"seq":100,"id":512,"result":0}`, false},
	// [huabao] section 3: message index 9, acknowledging 0x0200 with
	// sequence 0x00ee.
	{"0x8001 platform ack huabao", "7E 80 01 00 05 00 20 02 60 43 23 00 09 00 EE 02 00 00 43 7E", false,
		Header{MsgID: 0x8001, Len: 5, Phone: "002002604323", MsgSN: 9}, `{"seq":238,"id":512,"result":0}`, false},
	// [xtream] ServerCommonReplyMessage: 2019, clientFlowId 111,
	// clientMessageId 512, result 0. (The source's BuiltinMessage0001
	// sample is this 0x8001 frame again with other values, not a 0x0001.)
	{"0x8001 platform ack 2019", "7e8001400501000000000139123443290000006f020000dc7e", false,
		Header{MsgID: 0x8001, Len: 5, V2019: true, ProtoVer: 1, Phone: "00000000013912344329"}, `{"seq":111,"id":512,"result":0}`, false},

	// [smallchi] JT808_0x8100Test.cs Test2: MsgNum 10, AckMsgNum 100,
	// result 0, Code "123456".
	{"0x8100 register ack", "7E 81 00 00 09 01 23 45 67 89 00 00 0A 00 64 00 31 32 33 34 35 36 68 7E", false,
		Header{MsgID: 0x8100, Len: 9, Phone: "012345678900", MsgSN: 10}, `{"seq":100,"result":0,"auth_code":"123456"}`, false},
	// [smallchi] JT808_0x8100Test.cs Test4: result 4 (no such terminal in
	// the database) and no auth code.
	{"0x8100 register ack refused", "7E 81 00 00 03 01 23 45 67 89 00 00 0A 00 64 04 61 7E", false,
		Header{MsgID: 0x8100, Len: 3, Phone: "012345678900", MsgSN: 10}, `{"seq":100,"result":4}`, false},
	// [xtream] BuiltinMessage8100: 2019, clientFlowId 111, result 0,
	// authCode "ok..ok..ok".
	{"0x8100 register ack 2019", "7e8100400d01000000000139123443290000006f006f6b2e2e6f6b2e2e6f6bd27e", false,
		Header{MsgID: 0x8100, Len: 13, V2019: true, ProtoVer: 1, Phone: "00000000013912344329"}, `{"seq":111,"result":0,"auth_code":"ok..ok..ok"}`, false},

	// [smallchi] JT808_0x8103Test.cs Test1_1: MsgNum 10, one parameter
	// 0x0001 (heartbeat interval), 4 bytes, value 10.
	{"0x8103 set params", "7E 81 03 00 0A 00 01 23 45 67 89 00 0A 01 00 00 00 01 04 00 00 00 0A 05 7E", false,
		Header{MsgID: 0x8103, Len: 10, Phone: "000123456789", MsgSN: 10}, `{"length":1,"params":[{"id":1,"value":10}]}`, false},
	// [xtream] BuiltinMessage8201: 2019 location query, empty body.
	{"0x8201 query location 2019", "7e8201400001000000000139123443290000b67e", false,
		Header{MsgID: 0x8201, V2019: true, ProtoVer: 1, Phone: "00000000013912344329"}, `{}`, false},
	// [xtream] BuiltinMessage0005: 2019, originalMessageFlowId 111,
	// packageCount 3, ids 2, 3, 4.
	{"0x0005 fragment request 2019", "7e0005400a01000000000139123443290000006f0003000200030004537e", false,
		Header{MsgID: 0x0005, Len: 10, V2019: true, ProtoVer: 1, Phone: "00000000013912344329"}, `{"seq":111,"length":3,"ids":[2,3,4]}`, false},
	// [xtream] BuiltinMessage8003V2013 / V2019: the count is a BYTE in
	// 2013 and a WORD in 2019.
	{"0x8003 retransmit request 2013", "7e800300090139123443230000006f030002000300049d7e", false,
		Header{MsgID: 0x8003, Len: 9, Phone: "013912344323"}, `{"seq":111,"length":3,"ids":[2,3,4]}`, false},
	{"0x8003 retransmit request 2019", "7e8003400a01000000000139123443290000006f0003000200030004d57e", false,
		Header{MsgID: 0x8003, Len: 10, V2019: true, ProtoVer: 1, Phone: "00000000013912344329"}, `{"seq":111,"length":3,"ids":[2,3,4]}`, false},
}

func TestPublishedFrames(t *testing.T) {
	for _, c := range publishedFrames {
		t.Run(c.name, func(t *testing.T) {
			wire := unhex(t, c.wire)
			var frames [][]byte
			NewDeframer(DefaultMaxLength).Feed(wire, func(f []byte, err error) {
				if err != nil {
					t.Fatalf("deframe: %v", err)
				}
				frames = append(frames, bytes.Clone(f))
			})
			if len(frames) != 1 {
				t.Fatalf("%d frames", len(frames))
			}
			h, body, err := ParseFrame(frames[0])
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			if h != c.h {
				t.Fatalf("header\n got %+v\nwant %+v", h, c.h)
			}
			cs := charset{gbk: c.gbk}
			o, err := decodeBody(h.MsgID, h.V2019, cs, body)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			got := appendJSON(nil, o)
			if !reflect.DeepEqual(jsonValue(t, string(got)), jsonValue(t, c.json)) {
				t.Fatalf("body\n got %s\nwant %s", got, c.json)
			}
			m, _ := jsonValue(t, c.json).(map[string]any)
			enc, err := encodeBody(nil, h.MsgID, h.V2019, cs, m)
			if err != nil {
				t.Fatalf("encode: %v", err)
			}
			if c.noBack {
				// The same values, possibly in another order of items.
				o2, err := decodeBody(h.MsgID, h.V2019, cs, enc)
				if err != nil || !reflect.DeepEqual(jsonValue(t, string(appendJSON(nil, o2))), jsonValue(t, c.json)) {
					t.Fatalf("re-encoded body % x decodes to %v %v", enc, o2, err)
				}
				return
			}
			frame, err := AppendFrame(nil, &h, enc)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(frame, wire) {
				t.Fatalf("re-encoded\n got % x\nwant % x", frame, wire)
			}
		})
	}
}

// TestPublishedQuirks: frames seen in the wild that are not valid JT/T 808
// and must be refused, not misread.
func TestPublishedQuirks(t *testing.T) {
	for _, c := range []struct {
		name, wire string
		want       error
	}{
		// [smallchi] JT808_0x0200Test.cs Test5_3 and the JT808.Protocol
		// README's "JT808_2013_Force" example: a device that sets the 2019
		// flag (props 0x400c) but sends a 2013 header, so the "BCD[10]"
		// phone runs into the body ("4a" is not BCD). SmallChi decodes it
		// only when told to force 2013; we refuse it and count it as
		// malformed rather than guess.
		{"2019 flag on a 2013 header", "7e0102400c01003000068109024a3130303330303030363831857e", ErrBadPhone},
		// The 0x8001 of [huabao] section 3 with its checksum changed.
		{"bad checksum", "7E 80 01 00 05 00 20 02 60 43 23 00 09 00 EE 02 00 00 44 7E", ErrChecksum},
	} {
		t.Run(c.name, func(t *testing.T) {
			n := 0
			NewDeframer(DefaultMaxLength).Feed(unhex(t, c.wire), func(f []byte, err error) {
				n++
				if err != nil {
					t.Fatal(err)
				}
				if _, _, err := ParseFrame(f); !errors.Is(err, c.want) {
					t.Fatalf("got %v, want %v", err, c.want)
				}
			})
			if n != 1 {
				t.Fatalf("%d frames", n)
			}
		})
	}
}
