package gbt32960

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// paramSize is the value width of each parameter id (2016 table B.10):
// 0 for the two strings whose length is the id before them (0x04 → 0x05,
// 0x0D → 0x0E).
var paramSize = [0x11]int{
	0x01: 2, 0x02: 2, 0x03: 2, 0x04: 1, 0x05: 0, 0x06: 2, 0x07: 5, 0x08: 5,
	0x09: 1, 0x0A: 2, 0x0B: 2, 0x0C: 1, 0x0D: 1, 0x0E: 0, 0x0F: 2, 0x10: 1,
}

func validParam(id int64) bool { return id >= 0x01 && id <= 0x10 }

// stringParam: values sent and published as text.
func stringParam(id int64) bool { return id == 0x05 || id == 0x07 || id == 0x08 || id == 0x0E }

func paramKey(id int64) string {
	return "0x" + string([]byte{hexDigits[id>>4&15], hexDigits[id&15]})
}

// writeParams decodes a terminal's list of id/value pairs.
func writeParams(w *jw, c *cur) error {
	w.arr()
	var lens [0x11]int64
	for len(c.b) > 0 {
		id := c.u8()
		if !validParam(id) {
			return fmt.Errorf("%w: unknown parameter id 0x%02x", ErrMalformed, id)
		}
		w.obj()
		w.key(paramKey(id))
		switch {
		case id == 0x05 || id == 0x0E:
			v := c.n(int(lens[id-1]))
			w.str(trimNUL(v))
		case stringParam(id):
			w.str(trimNUL(c.n(paramSize[id])))
		case paramSize[id] == 1:
			lens[id] = c.u8()
			w.int(lens[id])
		default:
			w.int(c.u16())
		}
		w.end()
		if c.bad {
			return fmt.Errorf("%w: parameter 0x%02x cut short", ErrMalformed, id)
		}
	}
	w.aend()
	return nil
}

// Terminal control commands (2016 table B.15).
const (
	CtrlUpgrade       = 0x01
	CtrlShutdown      = 0x02
	CtrlReset         = 0x03
	CtrlFactoryReset  = 0x04
	CtrlDisconnect    = 0x05
	CtrlAlarm         = 0x06
	CtrlSamplingStart = 0x07
)

// writeCtrlParam decodes the parameter of a control reply.
func writeCtrlParam(w *jw, cmd byte, b []byte) error {
	switch cmd {
	case CtrlUpgrade:
		u, err := parseUpgrade(b)
		if err != nil {
			return err
		}
		w.obj()
		w.ks("DialingName", u.dial)
		w.ks("HardwareVer", u.hw)
		w.ks("Ip", []byte(u.ip))
		w.ks("ManufacturerId", u.mfr)
		w.ks("Password", u.pass)
		w.ki("Port", u.port)
		w.ks("SoftwareVer", u.sw)
		w.ki("Timeout", u.timeout)
		w.ks("UpgradeUrl", u.url)
		w.ks("Username", u.user)
		w.end()
	case CtrlAlarm:
		if len(b) < 1 {
			return fmt.Errorf("%w: alarm control without level", ErrMalformed)
		}
		w.obj()
		w.ki("Level", int64(b[0]))
		w.ks("Message", b[1:])
		w.end()
	default:
		w.str(nil)
	}
	return nil
}

type upgrade struct {
	dial, user, pass, mfr, hw, sw, url []byte
	ip                                 string
	port, timeout                      int64
}

// parseUpgrade reads the ';'-separated upgrade parameter. The binary
// fields (address, port, timeout, versions) are taken by width, not by
// splitting, so a ';' byte inside them does not shift the rest (EMQX
// splits the whole parameter and fails on, say, port 59).
func parseUpgrade(b []byte) (upgrade, error) {
	var u upgrade
	c := cur{b: b}
	text := func() []byte {
		i := 0
		for i < len(c.b) && c.b[i] != ';' {
			i++
		}
		v := c.n(i)
		return v
	}
	semi := func() {
		if len(c.b) == 0 || c.b[0] != ';' {
			c.bad = true
			return
		}
		c.b = c.b[1:]
	}
	u.dial = text()
	semi()
	u.user = text()
	semi()
	u.pass = text()
	semi()
	ip := c.n(6)
	semi()
	u.port = c.u16()
	semi()
	u.mfr = c.n(4)
	semi()
	u.hw = c.n(5)
	semi()
	u.sw = c.n(5)
	semi()
	u.url = text()
	semi()
	u.timeout = c.u16()
	if c.bad || len(c.b) != 0 {
		return u, fmt.Errorf("%w: remote upgrade parameter", ErrMalformed)
	}
	// Six bytes, the first two zero for an IPv4 address (B.16).
	u.ip = netip.AddrFrom4([4]byte(ip[2:6])).String()
	return u, nil
}

// Command is a downlink as EMQX accepts it on dnstream.
type Command struct {
	Action  string            `json:"Action"`
	Total   *int              `json:"Total"`
	Ids     []json.RawMessage `json:"Ids"`
	Params  []map[string]any  `json:"Params"`
	Command json.RawMessage   `json:"Command"`
	Param   json.RawMessage   `json:"Param"`
}

// appendTime writes the 6-byte time (year since 2000) in local time, as
// EMQX's gentime does.
func appendTime(b []byte, t time.Time) []byte {
	return append(b, byte(t.Year()%100), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()))
}

// parseByte reads "0x1A", "26" or 26.
func parseByte(raw json.RawMessage) (int64, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return 0, err
	}
	return byteValue(v)
}

func byteValue(v any) (int64, error) {
	switch x := v.(type) {
	case float64:
		if x < 0 || x > 255 || x != float64(int64(x)) {
			return 0, fmt.Errorf("%v is not a byte", x)
		}
		return int64(x), nil
	case string:
		var n uint64
		var err error
		if h, ok := strings.CutPrefix(strings.ToLower(x), "0x"); ok {
			n, err = strconv.ParseUint(h, 16, 8)
		} else {
			n, err = strconv.ParseUint(x, 10, 8)
		}
		if err != nil {
			return 0, fmt.Errorf("%q is not a byte", x)
		}
		return int64(n), nil
	}
	return 0, fmt.Errorf("%v is not a byte", v)
}

// EncodeCommand turns a dnstream JSON payload into the data unit and
// command of a downlink frame.
func EncodeCommand(payload []byte, now time.Time) (cmd byte, data []byte, err error) {
	var c Command
	if err := json.Unmarshal(payload, &c); err != nil {
		return 0, nil, fmt.Errorf("gbt32960: downlink: %w", err)
	}
	data = appendTime(make([]byte, 0, 64), now)
	switch c.Action {
	case "Query":
		if len(c.Ids) == 0 || len(c.Ids) > 252 {
			return 0, nil, fmt.Errorf("gbt32960: downlink Query: need 1..252 Ids, got %d", len(c.Ids))
		}
		if c.Total != nil && *c.Total != len(c.Ids) {
			return 0, nil, fmt.Errorf("gbt32960: downlink Query: Total %d but %d Ids", *c.Total, len(c.Ids))
		}
		data = append(data, byte(len(c.Ids)))
		for _, raw := range c.Ids {
			id, err := parseByte(raw)
			if err != nil || !validParam(id) {
				return 0, nil, fmt.Errorf("gbt32960: downlink Query: bad id %s", raw)
			}
			data = append(data, byte(id))
		}
		return CmdParamQuery, data, nil
	case "Setting":
		if c.Total != nil && *c.Total != len(c.Params) {
			return 0, nil, fmt.Errorf("gbt32960: downlink Setting: Total %d but %d Params", *c.Total, len(c.Params))
		}
		vals := map[int64]any{}
		var order []int64
		for _, m := range c.Params {
			if len(m) != 1 {
				return 0, nil, fmt.Errorf("gbt32960: downlink Setting: each Params entry holds one id, got %d", len(m))
			}
			for k, v := range m {
				id, err := byteValue(k)
				if err != nil || !validParam(id) {
					return 0, nil, fmt.Errorf("gbt32960: downlink Setting: bad id %q", k)
				}
				if _, dup := vals[id]; dup {
					return 0, nil, fmt.Errorf("gbt32960: downlink Setting: id %s twice", k)
				}
				vals[id] = v
				order = append(order, id)
			}
		}
		if len(order) == 0 {
			return 0, nil, fmt.Errorf("gbt32960: downlink Setting: no Params")
		}
		body, n, err := encodeParams(vals, order)
		if err != nil {
			return 0, nil, err
		}
		data = append(data, byte(n))
		return CmdParamSetting, append(data, body...), nil
	case "Control":
		cmd, err := parseByte(c.Command)
		if err != nil || cmd < CtrlUpgrade || cmd > CtrlSamplingStart {
			return 0, nil, fmt.Errorf("gbt32960: downlink Control: bad Command %s", c.Command)
		}
		data = append(data, byte(cmd))
		p, err := encodeCtrlParam(byte(cmd), c.Param)
		if err != nil {
			return 0, nil, err
		}
		return CmdTerminalCtrl, append(data, p...), nil
	}
	return 0, nil, fmt.Errorf("gbt32960: downlink: unknown Action %q (Query, Setting, Control)", c.Action)
}

// encodeParams writes id/value pairs; a string parameter (0x05, 0x0E)
// gets its length id (0x04, 0x0D) written in front when the command did
// not give it, and must agree with it when it did.
func encodeParams(vals map[int64]any, order []int64) ([]byte, int, error) {
	var out []byte
	n := 0
	done := map[int64]bool{}
	put := func(id int64) error {
		if done[id] {
			return nil
		}
		done[id] = true
		v := vals[id]
		n++
		out = append(out, byte(id))
		switch {
		case id == 0x05 || id == 0x0E:
			s, ok := v.(string)
			if !ok || len(s) > 255 {
				return fmt.Errorf("gbt32960: downlink Setting: %s must be a string of at most 255 bytes", paramKey(id))
			}
			out = append(out, s...)
		case stringParam(id):
			s, ok := v.(string)
			if !ok || len(s) != paramSize[id] {
				return fmt.Errorf("gbt32960: downlink Setting: %s must be a %d-byte string", paramKey(id), paramSize[id])
			}
			out = append(out, s...)
		default:
			f, ok := v.(float64)
			limit := float64(0xFFFF)
			if paramSize[id] == 1 {
				limit = 0xFF
			}
			if !ok || f < 0 || f > limit || f != float64(int64(f)) {
				return fmt.Errorf("gbt32960: downlink Setting: %s must be an integer 0..%d, got %v", paramKey(id), int(limit), v)
			}
			if paramSize[id] == 2 {
				out = append(out, byte(int(f)>>8))
			}
			out = append(out, byte(int(f)))
		}
		return nil
	}
	for _, id := range order {
		if id == 0x05 || id == 0x0E {
			s, _ := vals[id].(string)
			lid := id - 1
			if lv, ok := vals[lid]; ok {
				if f, _ := lv.(float64); int(f) != len(s) {
					return nil, 0, fmt.Errorf("gbt32960: downlink Setting: %s is %v but %s has %d bytes", paramKey(lid), lv, paramKey(id), len(s))
				}
			} else {
				vals[lid] = float64(len(s))
			}
			if err := put(lid); err != nil {
				return nil, 0, err
			}
		}
		if err := put(id); err != nil {
			return nil, 0, err
		}
	}
	if n > 252 {
		return nil, 0, fmt.Errorf("gbt32960: downlink Setting: %d parameters, at most 252", n)
	}
	return out, n, nil
}

func encodeCtrlParam(cmd byte, raw json.RawMessage) ([]byte, error) {
	switch cmd {
	case CtrlUpgrade:
		var p struct {
			DialingName, Username, Password, Ip      string
			ManufacturerId, HardwareVer, SoftwareVer string
			UpgradeUrl                               string
			Port, Timeout                            int
		}
		if err := json.Unmarshal(raw, &p); err != nil {
			return nil, fmt.Errorf("gbt32960: downlink Control 0x01: %w", err)
		}
		ip, err := netip.ParseAddr(p.Ip)
		if err != nil || !ip.Unmap().Is4() {
			return nil, fmt.Errorf("gbt32960: downlink Control 0x01: Ip %q", p.Ip)
		}
		if len(p.ManufacturerId) != 4 || len(p.HardwareVer) != 5 || len(p.SoftwareVer) != 5 {
			return nil, fmt.Errorf("gbt32960: downlink Control 0x01: ManufacturerId is 4 bytes, HardwareVer and SoftwareVer 5")
		}
		if p.Port < 0 || p.Port > 0xFFFF || p.Timeout < 0 || p.Timeout > 0xFFFF {
			return nil, fmt.Errorf("gbt32960: downlink Control 0x01: Port and Timeout are 0..65535")
		}
		for _, s := range []string{p.DialingName, p.Username, p.Password, p.UpgradeUrl} {
			if strings.IndexByte(s, ';') >= 0 {
				return nil, fmt.Errorf("gbt32960: downlink Control 0x01: text fields cannot hold ';'")
			}
		}
		var b []byte
		b = append(b, p.DialingName...)
		b = append(b, ';')
		b = append(b, p.Username...)
		b = append(b, ';')
		b = append(b, p.Password...)
		b = append(b, ';')
		a := ip.Unmap().As4()
		b = append(b, 0, 0, a[0], a[1], a[2], a[3])
		b = append(b, ';', byte(p.Port>>8), byte(p.Port), ';')
		b = append(b, p.ManufacturerId...)
		b = append(b, ';')
		b = append(b, p.HardwareVer...)
		b = append(b, ';')
		b = append(b, p.SoftwareVer...)
		b = append(b, ';')
		b = append(b, p.UpgradeUrl...)
		return append(b, ';', byte(p.Timeout>>8), byte(p.Timeout)), nil
	case CtrlAlarm:
		var p struct {
			Level   *int
			Message string
		}
		if err := json.Unmarshal(raw, &p); err != nil || p.Level == nil || *p.Level < 0 || *p.Level > 255 {
			return nil, fmt.Errorf("gbt32960: downlink Control 0x06: Param needs Level 0..255 and Message")
		}
		return append([]byte{byte(*p.Level)}, p.Message...), nil
	}
	return nil, nil
}
