package jt808

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"time"
)

// Message ids the gateway itself acts on.
const (
	MsgTermAck       = 0x0001
	MsgHeartbeat     = 0x0002
	MsgDeregister    = 0x0003
	MsgQueryTime     = 0x0004
	MsgFragRequest   = 0x0005
	MsgRegister      = 0x0100
	MsgAuth          = 0x0102
	MsgLocation      = 0x0200
	MsgMultimedia    = 0x0801
	MsgPlatformAck   = 0x8001
	MsgPlatformRetx  = 0x8003
	MsgTimeAck       = 0x8004
	MsgRegisterAck   = 0x8100
	MsgMultimediaAck = 0x8800
)

// bodies maps each message id EMQX supports, both directions, to its body
// layout. One table serves decoding (uplinks, and tests of downlinks) and
// encoding (downlinks, and the tests' terminal side of uplinks).
var bodies = map[uint16][]field{
	// terminal → platform
	0x0001: {u16("seq"), u16("id"), u8("result")},
	0x0002: {},
	0x0003: {},
	0x0004: {},
	0x0005: {u16("seq"), list("ids", "length", 2, u16(""))},
	0x0100: append(append([]field{u16("province"), u16("city")},
		both(strN("manufacture", 5), strN("manufacture", 11))...),
		v13(strN("model", 20)), v19(strN("model", 30)), v13(strN("dev_id", 7)), v19(strN("dev_id", 30)),
		u8("color"), strEnd("license_number")),
	0x0102: {v13(strEnd("code")), v19(strL("code", "code_len", 1)), v19(strN("imei", 15)), v19(field{key: "sw_version", k: fCustom, c: swVersion})},
	0x0104: {u16("seq"), field{key: "params", k: fCustom, c: paramList}},
	0x0107: append(append([]field{u16("type")}, both(strN("manufacture", 5), strN("manufacture", 11))...),
		v13(strN("model", 20)), v19(strN("model", 30)), v13(strN("id", 7)), v19(strN("id", 30)),
		bcd("iccid", 10), strL("hardware_version", "", 1), strL("firmware_version", "", 1), u8("gnss_prop"), u8("comm_prop")),
	0x0108: {u8("type"), u8("result")},
	0x0200: {{key: "", k: fCustom, c: locationBody}},
	0x0201: {u16("seq"), {key: "params", k: fLoc}},
	0x0301: {u8("id")},
	0x0302: {u16("seq"), u8("id")},
	0x0303: {u8("id"), u8("flag")},
	0x0500: {u16("seq"), {key: "location", k: fLoc}},
	0x0608: {u8("type"), u32("length"), bytesEnd("items")},
	0x0700: {u16("seq"), u8("command"), bytesEnd("data")},
	0x0701: {bytesL("data", "length", 4)},
	0x0702: {u8("status"), bcd("time", 6), {key: "", k: fCustom, c: driverID}},
	0x0704: {{key: "", k: fCustom, c: bulkLocation}},
	0x0705: {u16("length"), bcd("time", 5), listEnd("can_data", field{key: "", k: fCustom, c: canItem})},
	0x0800: {u32("id"), u8("type"), u8("format"), u8("event"), u8("channel")},
	0x0801: {u32("id"), u8("type"), u8("format"), u8("event"), u8("channel"), {key: "location", k: fLocN}, bytesEnd("multimedia")},
	0x0802: {u16("seq"), list("result", "length", 2, u32("id"), u8("type"), u8("channel"), u8("event"), field{key: "location", k: fLocN})},
	0x0805: {u16("seq"), u8("result"), opt(list("ids", "length", 2, u32("")))},
	0x0900: {u8("type"), bytesEnd("data")},
	0x0901: {bytesL("data", "length", 4)},
	0x0A00: {u32("e"), bytesN("n", 128)},

	// platform → terminal
	0x8001: {u16("seq"), u16("id"), u8("result")},
	0x8003: {u16("seq"), v13(list("ids", "length", 1, u16(""))), v19(list("ids", "length", 2, u16("")))},
	0x8004: {{key: "", k: fCustom, c: utcTime}},
	0x8100: {u16("seq"), u8("result"), opt(strEnd("auth_code"))},
	0x8103: {field{key: "params", k: fCustom, c: paramList}},
	0x8104: {},
	0x8105: {u8("command"), opt(strEnd("param"))},
	0x8106: {list("ids", "length", 1, u32(""))},
	0x8107: {},
	0x8108: append([]field{u8("type")}, append(both(strN("manufacturer", 5), strN("manufacturer", 11)),
		strL("version", "ver_len", 1), bytesL("firmware", "fw_len", 4))...),
	0x8201: {},
	0x8202: {u16("period"), u32("expiry")},
	0x8203: {u16("seq"), u32("type")},
	0x8204: {},
	0x8300: {u8("flag"), v19(u8("text_type")), strEnd("text")},
	0x8301: {u8("type"), list("events", "length", 1, u8("id"), strL("content", "length", 1))},
	0x8302: {u8("flag"), strL("question", "length", 1), listEnd("answers", u8("id"), strL("answer", "len", 2))},
	0x8303: {u8("type"), list("menus", "length", 1, u8("type"), strL("info", "length", 2))},
	0x8304: {u8("type"), strL("info", "length", 2)},
	0x8400: {u8("type"), strEnd("phone")},
	0x8401: {u8("type"), list("contacts", "length", 1, u8("type"), strL("phone", "phone_len", 1), strL("name", "name_len", 1))},
	0x8500: {v13(u8("flag")), v19(list("controls", "length", 2, u16("type_id"), u8("param")))},
	0x8600: {u8("type"), list("areas", "length", 1, append([]field{u32("id"), u16("flag"),
		u32("center_latitude"), u32("center_longitude"), u32("radius")}, areaTail...)...)},
	0x8601: {list("ids", "length", 1, u32(""))},
	0x8602: {u8("type"), list("areas", "length", 1, append([]field{u32("id"), u16("flag"),
		u32("lt_lat"), u32("lt_lng"), u32("rb_lat"), u32("rb_lng")}, areaTail...)...)},
	0x8603: {list("ids", "length", 1, u32(""))},
	0x8604: append(append([]field{u32("id"), u16("flag")}, areaLimits...),
		list("points", "length", 2, u32("lat"), u32("lng")), v19(strL("name", "name_len", 2))),
	0x8605: {list("ids", "length", 1, u32(""))},
	0x8606: {u32("id"), u16("flag"), iff("flag", 0, bcd("start_time", 6)), iff("flag", 0, bcd("end_time", 6)),
		list("points", "length", 2, u32("point_id"), u32("path_id"), u32("point_lat"), u32("point_lng"),
			u8("width"), u8("attrib"), iff("attrib", 0, u16("passed")), iff("attrib", 0, u16("uncovered")),
			iff("attrib", 1, u16("max_speed")), iff("attrib", 1, u8("overspeed_duration")),
			v19(iff("attrib", 1, u16("night_max_speed")))),
		v19(strL("name", "name_len", 2))},
	0x8607: {list("ids", "length", 1, u32(""))},
	0x8608: {u8("type"), list("ids", "length", 4, u32(""))},
	0x8700: {u8("command"), bytesEnd("param")},
	0x8701: {u8("command"), bytesEnd("param")},
	0x8702: {},
	0x8800: {u32("mm_id"), opt(list("retx_ids", "length", 1, u16("")))},
	0x8801: {u8("channel_id"), u16("command"), u16("period"), u8("save"), u8("resolution"), u8("quality"),
		u8("bright"), u8("contrast"), u8("saturate"), u8("chromaticity")},
	0x8802: {u8("type"), u8("channel"), u8("event"), bcd("start_time", 6), bcd("end_time", 6)},
	0x8803: {u8("type"), u8("channel"), u8("event"), bcd("start_time", 6), bcd("end_time", 6), u8("delete")},
	0x8804: {u8("command"), u16("time"), u8("save"), u8("rate")},
	0x8805: {u32("id"), u8("flag")},
	0x8900: {u8("type"), bytesEnd("data")},
	0x8A00: {u32("e"), bytesN("n", 128)},
}

// areaLimits are the time and speed limits of an area, present when the
// area's flag bits 0 and 1 say so.
var areaLimits = []field{
	iff("flag", 0, bcd("start_time", 6)), iff("flag", 0, bcd("end_time", 6)),
	iff("flag", 1, u16("max_speed")), iff("flag", 1, u8("overspeed_duration")),
	v19(iff("flag", 1, u16("night_max_speed"))),
}

var areaTail = append(append([]field(nil), areaLimits...), v19(strL("name", "name_len", 2)))

// replies maps a terminal reply to the downlink ids it acknowledges; a
// 0x0001 general response acknowledges any of them by {seq, id}.
var replies = map[uint16][]uint16{
	0x0104: {0x8104, 0x8106},
	0x0107: {0x8107},
	0x0201: {0x8201},
	0x0302: {0x8302},
	0x0500: {0x8500},
	0x0608: {0x8608},
	0x0700: {0x8700},
	0x0702: {0x8702},
	0x0802: {0x8802},
	0x0805: {0x8801},
}

// noAck are downlinks the terminal does not answer.
var noAck = map[uint16]bool{0x8001: true, 0x8003: true, 0x8004: true, 0x8100: true, 0x8800: true}

// autoAck are uplinks the gateway answers with 0x8001 itself.
var autoAck = map[uint16]bool{
	0x0002: true, 0x0003: true, 0x0005: true, 0x0108: true, 0x0200: true, 0x0301: true, 0x0303: true,
	0x0701: true, 0x0702: true, 0x0704: true, 0x0705: true, 0x0800: true, 0x0900: true, 0x0901: true, 0x0A00: true,
}

// DecodeBody decodes a body of message id into its JSON object.
func decodeBody(id uint16, v19 bool, cs charset, body []byte) (obj, error) {
	spec, ok := bodies[id]
	if !ok {
		return nil, errUnknown
	}
	d := &decoder{b: body, v19: v19, cs: cs}
	o := obj{}
	if err := d.fields(spec, &o); err != nil {
		return nil, fmt.Errorf("jt808: 0x%04X: %w", id, err)
	}
	return o, nil
}

// encodeBody encodes a JSON body (as encoding/json decodes it, with
// UseNumber) for message id.
func encodeBody(dst []byte, id uint16, v19 bool, cs charset, m map[string]any) ([]byte, error) {
	spec, ok := bodies[id]
	if !ok {
		return dst, fmt.Errorf("jt808: unsupported msg_id 0x%04X", id)
	}
	if m == nil {
		m = map[string]any{}
	}
	e := &encoder{b: dst, v19: v19, cs: cs}
	if err := e.fields(spec, m); err != nil {
		return dst, fmt.Errorf("jt808: 0x%04X: %w", id, err)
	}
	return e.b, nil
}

var errUnknown = fmt.Errorf("jt808: unknown message id")

// ---- location (0x0200 and everywhere it is embedded) ----

var locationBasic = []field{u32("alarm"), u32("status"), u32("latitude"), u32("longitude"),
	u16("altitude"), u16("speed"), u16("direction"), bcd("time", 6)}

var locationBody = &custom{
	dec: func(d *decoder, o *obj) error {
		l, err := decodeLocation(d, d.b)
		d.b = nil
		if err != nil {
			return err
		}
		*o = append(*o, l...)
		return nil
	},
	enc: func(e *encoder, m map[string]any) error { return encodeLocation(e, m) },
}

// extra items with a plain integer value: id → key, size.
var extraInts = map[byte]struct {
	key string
	n   int
}{0x01: {"mileage", 4}, 0x02: {"fuel_meter", 2}, 0x03: {"speed", 2}, 0x04: {"alarm_id", 2},
	0x06: {"carriage_temp", 2}, 0x30: {"rssi", 1}, 0x31: {"gnss_sat_num", 1}}

var signalBits = []string{"low_beam", "high_beam", "right_turn", "left_turn", "brake", "reverse", "fog",
	"side_marker", "horn", "air_conditioner", "neutral", "retarder", "abs", "heater", "cluth"}

func decodeLocation(parent *decoder, b []byte) (obj, error) {
	d := &decoder{b: b, v19: parent.v19, cs: parent.cs}
	var o obj
	if err := d.fields(locationBasic, &o); err != nil {
		return nil, err
	}
	if len(d.b) == 0 {
		return o, nil
	}
	var extra obj
	var custom []byte
	for len(d.b) > 0 {
		if len(d.b) < 2 || len(d.b) < 2+int(d.b[1]) {
			return nil, fmt.Errorf("extra: %w", ErrShortBody)
		}
		id, n, v := d.b[0], int(d.b[1]), d.b[2:2+int(d.b[1])]
		raw := d.b[:2+n]
		d.b = d.b[2+n:]
		num := func() int64 {
			var x int64
			for _, c := range v {
				x = x<<8 | int64(c)
			}
			return x
		}
		switch {
		case extraInts[id].key != "" && n == extraInts[id].n:
			extra = append(extra, kv{extraInts[id].key, num()})
		case id == 0x05:
			extra = append(extra, kv{"tire_pressure", base64.StdEncoding.EncodeToString(v)})
		case id == 0x11 && (n == 1 || n == 5):
			a := obj{{"type", int64(v[0])}}
			if n == 5 {
				a = append(a, kv{"id", num() & 0xffffffff})
			}
			extra = append(extra, kv{"overspeed_alarm", a})
		case id == 0x12 && n == 6:
			extra = append(extra, kv{"in_out_alarm", obj{{"type", int64(v[0])},
				{"id", int64(v[1])<<24 | int64(v[2])<<16 | int64(v[3])<<8 | int64(v[4])}, {"direction", int64(v[5])}}})
		case id == 0x13 && n == 7:
			extra = append(extra, kv{"path_time_alarm", obj{
				{"id", int64(v[0])<<24 | int64(v[1])<<16 | int64(v[2])<<8 | int64(v[3])},
				{"time", int64(v[4])<<8 | int64(v[5])}, {"result", int64(v[6])}}})
		case id == 0x25 && n == 4:
			x := num()
			extra = append(extra, kv{"signal", obj{{"low_beam", x & 1}, {"high_beam", x >> 1 & 1}}})
			for i := 2; i < len(signalBits); i++ {
				extra = append(extra, kv{signalBits[i], x >> uint(i) & 1})
			}
		case id == 0x2A && n == 2:
			x := num()
			extra = append(extra, kv{"io_status", obj{{"deep_sleep", x & 1}, {"sleep", x >> 1 & 1}}})
		case id == 0x2B && n == 4:
			x := num()
			extra = append(extra, kv{"analog", obj{{"ad0", x & 0xffff}, {"ad1", x >> 16}}})
		default:
			// Custom and reserved items travel as their raw TLVs, so
			// nothing a terminal sends is lost.
			custom = append(custom, raw...)
		}
	}
	if custom != nil {
		extra = append(extra, kv{"custome", base64.StdEncoding.EncodeToString(custom)})
	}
	return append(o, kv{"extra", extra}), nil
}

func encodeLocation(e *encoder, m map[string]any) error {
	if err := e.fields(locationBasic, m); err != nil {
		return err
	}
	ex, ok := m["extra"].(map[string]any)
	if !ok {
		return nil
	}
	tlv := func(id byte, v []byte) {
		e.b = append(e.b, id, byte(len(v)))
		e.b = append(e.b, v...)
	}
	be := func(x int64, n int) []byte {
		b := make([]byte, n)
		for i := n - 1; i >= 0; i-- {
			b[i] = byte(x)
			x >>= 8
		}
		return b
	}
	emitInt := func(id byte) error {
		it := extraInts[id]
		if _, ok := ex[it.key]; !ok {
			return nil
		}
		x, err := getInt(ex, it.key)
		if err != nil {
			return err
		}
		tlv(id, be(x, it.n))
		return nil
	}
	for _, id := range []byte{0x01, 0x02, 0x03, 0x04} {
		if err := emitInt(id); err != nil {
			return err
		}
	}
	if _, ok := ex["tire_pressure"]; ok {
		p, err := getB64(ex, "tire_pressure")
		if err != nil {
			return err
		}
		tlv(0x05, p)
	}
	if err := emitInt(0x06); err != nil {
		return err
	}
	if a, ok := ex["overspeed_alarm"].(map[string]any); ok {
		t, _ := getInt(a, "type")
		if _, has := a["id"]; has {
			id, _ := getInt(a, "id")
			tlv(0x11, append([]byte{byte(t)}, be(id, 4)...))
		} else {
			tlv(0x11, []byte{byte(t)})
		}
	}
	if a, ok := ex["in_out_alarm"].(map[string]any); ok {
		t, _ := getInt(a, "type")
		id, _ := getInt(a, "id")
		dir, _ := getInt(a, "direction")
		tlv(0x12, append(append([]byte{byte(t)}, be(id, 4)...), byte(dir)))
	}
	if a, ok := ex["path_time_alarm"].(map[string]any); ok {
		id, _ := getInt(a, "id")
		t, _ := getInt(a, "time")
		r, _ := getInt(a, "result")
		tlv(0x13, append(append(be(id, 4), be(t, 2)...), byte(r)))
	}
	if s, ok := ex["signal"].(map[string]any); ok {
		var x int64
		lo, _ := getInt(s, "low_beam")
		hi, _ := getInt(s, "high_beam")
		x = lo&1 | (hi&1)<<1
		for i := 2; i < len(signalBits); i++ {
			b, _ := getInt(ex, signalBits[i])
			x |= (b & 1) << uint(i)
		}
		tlv(0x25, be(x, 4))
	}
	if s, ok := ex["io_status"].(map[string]any); ok {
		a, _ := getInt(s, "deep_sleep")
		b, _ := getInt(s, "sleep")
		tlv(0x2A, be(a&1|(b&1)<<1, 2))
	}
	if s, ok := ex["analog"].(map[string]any); ok {
		a, _ := getInt(s, "ad0")
		b, _ := getInt(s, "ad1")
		tlv(0x2B, be(a&0xffff|(b&0xffff)<<16, 4))
	}
	for _, id := range []byte{0x30, 0x31} {
		if err := emitInt(id); err != nil {
			return err
		}
	}
	if _, ok := ex["custome"]; ok {
		p, err := getB64(ex, "custome")
		if err != nil {
			return err
		}
		e.b = append(e.b, p...)
	}
	return nil
}

// ---- 0x0704 bulk location ----

var bulkLocation = &custom{
	dec: func(d *decoder, o *obj) error {
		n, err := d.uint(2)
		if err != nil {
			return err
		}
		t, err := d.uint(1)
		if err != nil {
			return err
		}
		*o = append(*o, kv{"type", t}, kv{"length", n})
		var items []any
		f := field{k: fLocL16}
		for i := int64(0); i < n; i++ {
			var e obj
			if err := d.field(&f, &e); err != nil {
				return fmt.Errorf("location %d: %w", i, err)
			}
			items = append(items, e[0].v)
		}
		if items == nil {
			items = []any{}
		}
		*o = append(*o, kv{"location", items})
		return nil
	},
	enc: func(e *encoder, m map[string]any) error {
		items, _ := m["location"].([]any)
		t, err := getInt(m, "type")
		if err != nil {
			return err
		}
		e.putUint(2, int64(len(items)))
		e.putUint(1, t)
		f := field{key: "l", k: fLocL16}
		for _, it := range items {
			if err := e.field(&f, map[string]any{"l": it}); err != nil {
				return err
			}
		}
		return nil
	},
}

// ---- 0x0705 CAN items ----

var canItem = &custom{
	dec: func(d *decoder, o *obj) error {
		id, err := d.uint(4)
		if err != nil {
			return err
		}
		data, err := d.take(8)
		if err != nil {
			return err
		}
		*o = append(*o, kv{"", obj{{"channel", id >> 31 & 1}, {"frame_type", id >> 30 & 1},
			{"data_method", id >> 29 & 1}, {"id", id & 0x1fffffff}, {"data", base64.StdEncoding.EncodeToString(data)}}})
		return nil
	},
	enc: func(e *encoder, m map[string]any) error {
		it, ok := m[""].(map[string]any)
		if !ok {
			return fmt.Errorf("CAN item must be an object")
		}
		var x int64
		for _, k := range []string{"channel", "frame_type", "data_method"} {
			v, err := getInt(it, k)
			if err != nil {
				return err
			}
			x = x<<1 | v&1
		}
		id, err := getInt(it, "id")
		if err != nil {
			return err
		}
		data, err := getB64(it, "data")
		if err != nil {
			return err
		}
		if len(data) != 8 {
			return fmt.Errorf("CAN data must be 8 bytes")
		}
		e.putUint(4, x<<29|id&0x1fffffff)
		e.b = append(e.b, data...)
		return nil
	},
}

// ---- 0x0702 driver identity ----

var driverTail = []field{strL("driver_name", "", 1), strN("certificate", 20), strL("organization", "", 1),
	bcd("cert_expiry", 4), v19(strN("id_card", 20))}

var driverID = &custom{
	dec: func(d *decoder, o *obj) error {
		if st, _ := o.get("status"); st != int64(1) {
			return nil
		}
		r, err := d.uint(1)
		if err != nil {
			return err
		}
		*o = append(*o, kv{"ic_result", r})
		if r != 0 {
			return nil
		}
		return d.fields(driverTail, o)
	},
	enc: func(e *encoder, m map[string]any) error {
		if st, _ := getInt(m, "status"); st != 1 {
			return nil
		}
		r, err := getInt(m, "ic_result")
		if err != nil {
			return err
		}
		e.putUint(1, r)
		if r != 0 {
			return nil
		}
		return e.fields(driverTail, m)
	},
}

// ---- 0x0102 (2019) software version: BYTE[20] in the standard ----

var swVersion = &custom{
	dec: func(d *decoder, o *obj) error {
		p, err := d.take(20)
		if err != nil {
			return err
		}
		s := d.cs.decode(trimZero(p))
		*o = append(*o, kv{"sw_version_len", int64(len(trimZero(p)))}, kv{"sw_version", s})
		return nil
	},
	enc: func(e *encoder, m map[string]any) error {
		f := strN("sw_version", 20)
		return e.field(&f, m)
	},
}

// ---- 0x8004 UTC time, BCD[6] on the wire ----

var utcTime = &custom{
	dec: func(d *decoder, o *obj) error {
		p, err := d.take(6)
		if err != nil {
			return err
		}
		s, ok := bcdString(p)
		if !ok {
			return fmt.Errorf("time is not BCD")
		}
		for i, k := range []string{"year", "month", "day", "hour", "minute", "second"} {
			n, _ := strconv.Atoi(s[2*i : 2*i+2])
			if i == 0 {
				n += 2000
			}
			*o = append(*o, kv{k, int64(n)})
		}
		return nil
	},
	enc: func(e *encoder, m map[string]any) error {
		var digits []byte
		for i, k := range []string{"year", "month", "day", "hour", "minute", "second"} {
			n, err := getInt(m, k)
			if err != nil {
				return err
			}
			if i == 0 {
				n %= 100
			}
			digits = append(digits, byte('0'+n/10%10), byte('0'+n%10))
		}
		p := make([]byte, 6)
		if err := putBCD(p, string(digits)); err != nil {
			return err
		}
		e.b = append(e.b, p...)
		return nil
	},
}

func timeBody(t time.Time) obj {
	t = t.UTC()
	return obj{{"year", int64(t.Year())}, {"month", int64(t.Month())}, {"day", int64(t.Day())},
		{"hour", int64(t.Hour())}, {"minute", int64(t.Minute())}, {"second", int64(t.Second())}}
}

// ---- terminal parameters (0x8103, 0x0104) ----

// paramKind says how a parameter's value travels; ids not listed are
// DWORDs, and any value of another length is carried as base64.
func paramKind(id int64) byte {
	switch {
	case id >= 0x0010 && id <= 0x0017, id == 0x001A, id == 0x001D, id >= 0x0040 && id <= 0x0044,
		id == 0x0048, id == 0x0049, id == 0x0083:
		return 's'
	case id == 0x0031, id >= 0x005B && id <= 0x005E, id == 0x0081, id == 0x0082, id == 0x0101, id == 0x0103:
		return 2
	case id == 0x0084, id >= 0x0090 && id <= 0x0092, id == 0x0094:
		return 1
	case id >= 0x0110 && id <= 0x01FF:
		return 'b'
	}
	return 4
}

var paramList = &custom{
	dec: func(d *decoder, o *obj) error {
		n, err := d.uint(1)
		if err != nil {
			return err
		}
		*o = append(*o, kv{"length", n})
		items := []any{}
		for i := int64(0); i < n; i++ {
			id, err := d.uint(4)
			if err != nil {
				return err
			}
			l, err := d.uint(1)
			if err != nil {
				return err
			}
			v, err := d.take(int(l))
			if err != nil {
				return err
			}
			var val any
			switch k := paramKind(id); {
			case k == 's':
				val = d.cs.decode(trimZero(v))
			case (k == 1 || k == 2 || k == 4) && int(l) == int(k):
				var x int64
				for _, c := range v {
					x = x<<8 | int64(c)
				}
				val = x
			default:
				val = base64.StdEncoding.EncodeToString(v)
			}
			items = append(items, obj{{"id", id}, {"value", val}})
		}
		*o = append(*o, kv{"params", items})
		return nil
	},
	enc: func(e *encoder, m map[string]any) error {
		items, ok := m["params"].([]any)
		if !ok {
			return fmt.Errorf("params must be a list")
		}
		if len(items) > 255 {
			return fmt.Errorf("too many params")
		}
		e.putUint(1, int64(len(items)))
		for i, it := range items {
			pm, ok := it.(map[string]any)
			if !ok {
				return fmt.Errorf("param %d must be an object", i)
			}
			id, err := getInt(pm, "id")
			if err != nil {
				return err
			}
			var v []byte
			switch k := paramKind(id); {
			case k == 's':
				if v, err = e.str(pm, "value"); err != nil {
					return err
				}
			case k == 'b':
				if v, err = getB64(pm, "value"); err != nil {
					return err
				}
			default:
				if s, isStr := pm["value"].(string); isStr {
					if v, err = base64.StdEncoding.DecodeString(s); err != nil {
						return fmt.Errorf("param 0x%04X: %w", id, err)
					}
					break
				}
				x, err := getInt(pm, "value")
				if err != nil {
					return err
				}
				for j := int(k) - 1; j >= 0; j-- {
					v = append(v, byte(x>>(8*j)))
				}
			}
			if len(v) > 255 {
				return fmt.Errorf("param 0x%04X too long", id)
			}
			e.putUint(4, id)
			e.putUint(1, int64(len(v)))
			e.b = append(e.b, v...)
		}
		return nil
	},
}
