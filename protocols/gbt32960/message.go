package gbt32960

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
)

// Information types of a real-time or reissued report (2016 table 8).
const (
	InfoVehicle           = 0x01
	InfoDriveMotor        = 0x02
	InfoFuelCell          = 0x03
	InfoEngine            = 0x04
	InfoLocation          = 0x05
	InfoExtreme           = 0x06
	InfoAlarm             = 0x07
	InfoChargeableVoltage = 0x08
	InfoChargeableTemp    = 0x09
)

// ErrMalformed is a data unit that does not fit its command's layout.
var ErrMalformed = errors.New("gbt32960: malformed data unit")

// cur reads big-endian fields; running past the end sets bad and yields
// zeros, so a decoder checks once at the end.
type cur struct {
	b   []byte
	bad bool
}

func (c *cur) n(k int) []byte {
	if k < 0 || len(c.b) < k {
		c.bad = true
		c.b = nil
		return nil
	}
	v := c.b[:k]
	c.b = c.b[k:]
	return v
}

func (c *cur) u8() int64 {
	b := c.n(1)
	if b == nil {
		return 0
	}
	return int64(b[0])
}

func (c *cur) u16() int64 {
	b := c.n(2)
	if b == nil {
		return 0
	}
	return int64(b[0])<<8 | int64(b[1])
}

func (c *cur) u32() int64 {
	b := c.n(4)
	if b == nil {
		return 0
	}
	return int64(b[0])<<24 | int64(b[1])<<16 | int64(b[2])<<8 | int64(b[3])
}

// trimNUL drops the NUL padding of a fixed-width text field.
func trimNUL(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// AppendJSON appends f as EMQX's JSON, {Cmd, Data, Encrypt, Vin} (plus
// Ack on a terminal's reply to a downlink command), to dst.
func AppendJSON(dst []byte, f *Frame) ([]byte, error) {
	w := jw{b: dst}
	w.obj()
	if f.Ack != AckCommand && isDownlinkCmd(f.Cmd) {
		w.ki("Ack", int64(f.Ack))
	}
	w.ki("Cmd", int64(f.Cmd))
	w.key("Data")
	if err := writeData(&w, f); err != nil {
		return dst, err
	}
	w.ki("Encrypt", int64(f.Encrypt))
	w.ks("Vin", []byte(f.VIN))
	w.end()
	return w.b, nil
}

func isDownlinkCmd(c byte) bool { return c >= CmdParamQuery && c <= CmdTerminalCtrl }

// encrypted reports whether the data unit is ciphertext edgeway cannot
// read (it holds no keys): published as base64 rather than guessed at.
func encrypted(e byte) bool { return e != EncryptNone && e != 0xFE && e != 0xFF && e != 0 }

func writeData(w *jw, f *Frame) error {
	if encrypted(f.Encrypt) {
		w.obj()
		w.key("Encrypted")
		w.sep()
		w.b = append(w.b, '"')
		w.b = base64.StdEncoding.AppendEncode(w.b, f.Data)
		w.b = append(w.b, '"')
		w.comma = true
		w.end()
		return nil
	}
	c := cur{b: f.Data}
	w.obj()
	switch f.Cmd {
	case CmdVehicleLogin:
		t := c.n(6)
		seq := c.u16()
		iccid := c.n(20)
		if f.Edition == Edition2025 {
			if err := writeLogin2025(w, &c, iccid, seq, t); err != nil {
				return err
			}
			break
		}
		num, l := c.u8(), c.u8()
		id := c.n(int(num * l))
		if c.bad {
			return fmt.Errorf("%w: vehicle login", ErrMalformed)
		}
		w.ks("ICCID", trimNUL(iccid))
		w.ks("Id", id)
		w.ki("Length", l)
		w.ki("Num", num)
		w.ki("Seq", seq)
		writeTime(w, t)
	case CmdVehicleLogout, CmdPlatformLogout:
		t := c.n(6)
		seq := c.u16()
		if c.bad {
			return fmt.Errorf("%w: logout", ErrMalformed)
		}
		w.ki("Seq", seq)
		writeTime(w, t)
	case CmdPlatformLogin:
		t := c.n(6)
		seq := c.u16()
		user, pass := c.n(12), c.n(20)
		enc := c.u8()
		if c.bad {
			return fmt.Errorf("%w: platform login", ErrMalformed)
		}
		w.ki("Encrypt", enc)
		w.ks("Password", trimNUL(pass))
		w.ki("Seq", seq)
		writeTime(w, t)
		w.ks("Username", trimNUL(user))
	case CmdRealtime, CmdReissue:
		t := c.n(6)
		if c.bad {
			return fmt.Errorf("%w: report without time", ErrMalformed)
		}
		w.key("Infos")
		w.arr()
		var err error
		if f.Edition == Edition2025 {
			err = writeInfos2025(w, &c)
		} else {
			err = writeInfos(w, &c)
		}
		if err != nil {
			return err
		}
		w.aend()
		writeTime(w, t)
	case CmdHeartbeat, CmdTimeCalibrate:
		if len(f.Data) >= 6 {
			writeTime(w, c.n(6))
		}
	case CmdParamQuery, CmdParamSetting:
		if f.Ack == AckCommand {
			writeRaw(w, f.Data)
			break
		}
		t := c.n(6)
		if c.bad {
			return fmt.Errorf("%w: parameter reply without time", ErrMalformed)
		}
		if len(c.b) > 0 {
			total := c.u8()
			w.key("Params")
			if err := writeParams(w, &c); err != nil {
				return err
			}
			writeTime(w, t)
			w.ki("Total", total)
		} else {
			writeTime(w, t)
		}
	case CmdTerminalCtrl:
		if f.Ack == AckCommand {
			writeRaw(w, f.Data)
			break
		}
		t := c.n(6)
		if c.bad {
			return fmt.Errorf("%w: control reply without time", ErrMalformed)
		}
		if len(c.b) > 0 {
			cmd := c.u8()
			w.ki("Command", cmd)
			w.key("Param")
			if err := writeCtrlParam(w, byte(cmd), c.b); err != nil {
				return err
			}
		}
		writeTime(w, t)
	default:
		// Commands EMQX forwards on upstream/transparent.
		writeRaw(w, f.Data)
	}
	w.end()
	return nil
}

func writeRaw(w *jw, b []byte) {
	w.key("Raw")
	w.sep()
	w.b = append(w.b, '"')
	w.b = base64.StdEncoding.AppendEncode(w.b, b)
	w.b = append(w.b, '"')
	w.comma = true
}

func writeTime(w *jw, t []byte) {
	if len(t) < 6 {
		return
	}
	w.key("Time")
	w.obj()
	w.ki("Day", int64(t[2]))
	w.ki("Hour", int64(t[3]))
	w.ki("Minute", int64(t[4]))
	w.ki("Month", int64(t[1]))
	w.ki("Second", int64(t[5]))
	w.ki("Year", int64(t[0]))
	w.end()
}

// writeInfos decodes the 2016 information bodies after the time.
func writeInfos(w *jw, c *cur) error {
	for len(c.b) > 0 {
		start := c.b
		typ := c.u8()
		switch typ {
		case InfoVehicle:
			b := c.n(20)
			if c.bad {
				return fmt.Errorf("%w: vehicle data", ErrMalformed)
			}
			v := cur{b: b}
			status, charging, mode, speed := v.u8(), v.u8(), v.u8(), v.u16()
			mileage, voltage, current := v.u32(), v.u16(), v.u16()
			soc, dc, gear, res, acc, brake := v.u8(), v.u8(), v.u8(), v.u16(), v.u8(), v.u8()
			w.obj()
			w.ki("AcceleratorPedal", acc)
			w.ki("BrakePedal", brake)
			w.ki("Charging", charging)
			w.ki("Current", current)
			w.ki("DC", dc)
			w.ki("Gear", gear)
			w.ki("Mileage", mileage)
			w.ki("Mode", mode)
			w.ki("Resistance", res)
			w.ki("SOC", soc)
			w.ki("Speed", speed)
			w.ki("Status", status)
			w.ks("Type", []byte("Vehicle"))
			w.ki("Voltage", voltage)
			w.end()
		case InfoDriveMotor:
			num := c.u8()
			body := c.n(int(num) * 12)
			if c.bad {
				return fmt.Errorf("%w: drive motor data", ErrMalformed)
			}
			w.obj()
			w.key("Motors")
			w.arr()
			m := cur{b: body}
			for range num {
				no, st, ct, rot, tq, mt, iv, dcc := m.u8(), m.u8(), m.u8(), m.u16(), m.u16(), m.u8(), m.u16(), m.u16()
				w.obj()
				w.ki("CtrlTemp", ct)
				w.ki("DCBusCurrent", dcc)
				w.ki("InputVoltage", iv)
				w.ki("MotorTemp", mt)
				w.ki("No", no)
				w.ki("Rotating", rot)
				w.ki("Status", st)
				w.ki("Torque", tq)
				w.end()
			}
			w.aend()
			w.ki("Number", num)
			w.ks("Type", []byte("DriveMotor"))
			w.end()
		case InfoFuelCell:
			cv, cc, fc, pn := c.u16(), c.u16(), c.u16(), c.u16()
			temps := c.n(int(pn))
			hmt, htp, hmc, hcs, hmp, hps, dcs := c.u16(), c.u8(), c.u16(), c.u8(), c.u16(), c.u8(), c.u8()
			if c.bad {
				return fmt.Errorf("%w: fuel cell data", ErrMalformed)
			}
			w.obj()
			w.ki("CellCurrent", cc)
			w.ki("CellVoltage", cv)
			w.ki("DCStatus", dcs)
			w.ki("FuelConsumption", fc)
			w.ki("H_ConcSensorCode", hcs)
			w.ki("H_MaxConc", hmc)
			w.ki("H_MaxPress", hmp)
			w.ki("H_MaxTemp", hmt)
			w.ki("H_PressSensorCode", hps)
			w.ki("H_TempProbeCode", htp)
			w.ki("ProbeNum", pn)
			w.key("ProbeTemps")
			writeBytes(w, temps)
			w.ks("Type", []byte("FuelCell"))
			w.end()
		case InfoEngine:
			st, cs, fc := c.u8(), c.u16(), c.u16()
			if c.bad {
				return fmt.Errorf("%w: engine data", ErrMalformed)
			}
			w.obj()
			w.ki("CrankshaftSpeed", cs)
			w.ki("FuelConsumption", fc)
			w.ki("Status", st)
			w.ks("Type", []byte("Engine"))
			w.end()
		case InfoLocation:
			st, lon, lat := c.u8(), c.u32(), c.u32()
			if c.bad {
				return fmt.Errorf("%w: location data", ErrMalformed)
			}
			w.obj()
			w.ki("Latitude", lat)
			w.ki("Longitude", lon)
			w.ki("Status", st)
			w.ks("Type", []byte("Location"))
			w.end()
		case InfoExtreme:
			b := c.n(14)
			if c.bad {
				return fmt.Errorf("%w: extreme value data", ErrMalformed)
			}
			v := cur{b: b}
			maxVSub, maxVCode, maxV := v.u8(), v.u8(), v.u16()
			minVSub, minVCode, minV := v.u8(), v.u8(), v.u16()
			maxTSub, maxTProbe, maxT := v.u8(), v.u8(), v.u8()
			minTSub, minTProbe, minT := v.u8(), v.u8(), v.u8()
			w.obj()
			w.ki("MaxBatteryVoltage", maxV)
			w.ki("MaxTemp", maxT)
			w.ki("MaxTempProbeNo", maxTProbe)
			w.ki("MaxTempSubsysNo", maxTSub)
			w.ki("MaxVoltageBatteryCode", maxVCode)
			w.ki("MaxVoltageBatterySubsysNo", maxVSub)
			w.ki("MinBatteryVoltage", minV)
			w.ki("MinTemp", minT)
			w.ki("MinTempProbeNo", minTProbe)
			w.ki("MinTempSubsysNo", minTSub)
			w.ki("MinVoltageBatteryCode", minVCode)
			w.ki("MinVoltageBatterySubsysNo", minVSub)
			w.ks("Type", []byte("Extreme"))
			w.end()
		case InfoAlarm:
			level, flag := c.u8(), c.u32()
			var lists [4][]byte
			var nums [4]int64
			for i := range lists {
				nums[i] = c.u8()
				lists[i] = c.n(faultCount(nums[i]) * 4)
			}
			if c.bad {
				return fmt.Errorf("%w: alarm data", ErrMalformed)
			}
			w.obj()
			for i, name := range [4]string{"FaultChargeableDevice", "FaultDriveMotor", "FaultEngine", "FaultOthers"} {
				w.key(name + "List")
				writeFaults(w, lists[i], 4)
				w.ki(name+"Num", nums[i])
			}
			w.ki("GeneralAlarmFlag", flag)
			w.ki("MaxAlarmLevel", level)
			w.ks("Type", []byte("Alarm"))
			w.end()
		case InfoChargeableVoltage:
			num := c.u8()
			w.obj()
			w.ki("Number", num)
			w.key("SubSystems")
			w.arr()
			for range num {
				sub, volt, curr, total, idx, cnt := c.u8(), c.u16(), c.u16(), c.u16(), c.u16(), c.u8()
				cells := c.n(int(cnt) * 2)
				if c.bad {
					return fmt.Errorf("%w: chargeable voltage data", ErrMalformed)
				}
				w.obj()
				w.ki("CellsTotal", total)
				w.key("CellsVoltage")
				w.arr()
				for i := 0; i+1 < len(cells); i += 2 {
					w.int(int64(cells[i])<<8 | int64(cells[i+1]))
				}
				w.aend()
				w.ki("ChargeableCurrent", curr)
				w.ki("ChargeableSubsysNo", sub)
				w.ki("ChargeableVoltage", volt)
				w.ki("FrameCellsCount", cnt)
				w.ki("FrameCellsIndex", idx)
				w.end()
			}
			if c.bad {
				return fmt.Errorf("%w: chargeable voltage data", ErrMalformed)
			}
			w.aend()
			w.ks("Type", []byte("ChargeableVoltage"))
			w.end()
		case InfoChargeableTemp:
			num := c.u8()
			w.obj()
			w.ki("Number", num)
			w.key("SubSystems")
			w.arr()
			for range num {
				sub, pn := c.u8(), c.u16()
				temps := c.n(int(pn))
				if c.bad {
					return fmt.Errorf("%w: chargeable temperature data", ErrMalformed)
				}
				w.obj()
				w.ki("ChargeableSubsysNo", sub)
				w.ki("ProbeNum", pn)
				w.key("ProbesTemp")
				writeBytes(w, temps)
				w.end()
			}
			if c.bad {
				return fmt.Errorf("%w: chargeable temperature data", ErrMalformed)
			}
			w.aend()
			w.ks("Type", []byte("ChargeableTemp"))
			w.end()
		default:
			// Reserved (0x0A-0x7F) and user-defined (0x80-0xFE) bodies carry no
			// length in 2016, so the rest of the unit is theirs.
			writeCustom(w, start)
			c.b = nil
		}
	}
	return nil
}

// writeCustom writes what cannot be decoded further as EMQX does: the
// rest of the unit, type byte included, base64 in a CustomData entry.
func writeCustom(w *jw, rest []byte) {
	w.obj()
	w.key("Data")
	w.sep()
	w.b = append(w.b, '"')
	w.b = base64.StdEncoding.AppendEncode(w.b, rest)
	w.b = append(w.b, '"')
	w.comma = true
	w.ks("Type", []byte("CustomData"))
	w.end()
}

func writeBytes(w *jw, b []byte) {
	w.arr()
	for _, v := range b {
		w.int(int64(v))
	}
	w.aend()
}

// faultCount is how many codes follow a fault count: 0xFE (abnormal) and
// 0xFF (invalid) are flags, not counts (valid counts are 0-252), and no
// list follows them.
func faultCount(n int64) int {
	if n >= 0xFE {
		return 0
	}
	return int(n)
}

// writeFaults writes 4-byte fault codes as upper-case hex of at least
// digits digits, as EMQX does: four for 2016 ("00C8"), eight for 2025
// ("00080002").
func writeFaults(w *jw, b []byte, digits int) {
	w.arr()
	var tmp [16]byte
	for i := 0; i+3 < len(b); i += 4 {
		v := uint64(b[i])<<24 | uint64(b[i+1])<<16 | uint64(b[i+2])<<8 | uint64(b[i+3])
		s := strconv.AppendUint(tmp[:0], v, 16)
		for j, ch := range s {
			if ch >= 'a' {
				s[j] = ch - 'a' + 'A'
			}
		}
		w.sep()
		w.b = append(w.b, '"')
		for k := len(s); k < digits; k++ {
			w.b = append(w.b, '0')
		}
		w.b = append(w.b, s...)
		w.b = append(w.b, '"')
		w.comma = true
	}
	w.aend()
}
