package gbt32960

import "fmt"

// GB/T 32960.3-2025 ("$$" frames). JSON names and layouts are those of
// EMQX's parser (apps/emqx_gateway_gbt32960/src/emqx_gbt32960_frame.erl),
// checked against independent 2025 parsers (beidouchangxi/rtm_con,
// baichangda/MyFramework) and published frames (published_test.go). EMQX's
// data exchange guide lists two fields its parser does not read (0x07
// FrameMinParallelUnitIndex/Count, 0x31 Temp); no parser and no published
// frame has them, so they are not read here either.

// 2025 information types that differ from 2016.
const (
	Info2025MinVoltage     = 0x07
	Info2025BatteryTemp    = 0x08
	Info2025FuelCellStack  = 0x30
	Info2025SuperCapacitor = 0x31
	Info2025SuperCapExtrem = 0x32
	Info2025Signature      = 0xFF
)

func writeLogin2025(w *jw, c *cur, iccid []byte, seq int64, t []byte) error {
	n := c.u8()
	counts := c.n(int(n))
	total := 0
	for _, k := range counts {
		total += int(k)
	}
	codes := c.n(total * 24)
	if c.bad {
		return fmt.Errorf("%w: vehicle login (2025)", ErrMalformed)
	}
	w.key("BatteryPackCounts")
	writeBytes(w, counts)
	w.key("BatteryPackEncodings")
	w.arr()
	for _, k := range counts {
		w.arr()
		for range k {
			w.str(trimNUL(codes[:24]))
			codes = codes[24:]
		}
		w.aend()
	}
	w.aend()
	w.ki("BmsNum", n)
	w.ks("ICCID", trimNUL(iccid))
	w.ki("Seq", seq)
	writeTime(w, t)
	return nil
}

func writeInfos2025(w *jw, c *cur) error {
	for len(c.b) > 0 {
		start := c.b
		typ := c.u8()
		bad := func(what string) error { return fmt.Errorf("%w: %s (2025)", ErrMalformed, what) }
		switch typ {
		case InfoVehicle:
			status, charging, mode, speed := c.u8(), c.u8(), c.u8(), c.u16()
			mileage, voltage, current := c.u32(), c.u16(), c.u16()
			soc, dc, gear, res := c.u8(), c.u8(), c.u8(), c.u16()
			if c.bad {
				return bad("vehicle data")
			}
			w.obj()
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
			body := c.n(int(num) * 10)
			if c.bad {
				return bad("drive motor data")
			}
			m := cur{b: body}
			w.obj()
			w.key("Motors")
			w.arr()
			for range num {
				no, st, ct, rot, tq, mt := m.u8(), m.u8(), m.u8(), m.u16(), m.u32(), m.u8()
				w.obj()
				w.ki("CtrlTemp", ct)
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
			hmt, htp, hmc, hcs, hmp, hps := c.u16(), c.u8(), c.u16(), c.u8(), c.u16(), c.u8()
			dcs, rem, dct := c.u8(), c.u8(), c.u8()
			if c.bad {
				return bad("fuel cell data")
			}
			w.obj()
			w.ki("DCDCTemp", dct)
			w.ki("DCStatus", dcs)
			w.ki("H_ConcSensorCode", hcs)
			w.ki("H_MaxConc", hmc)
			w.ki("H_MaxPress", hmp)
			w.ki("H_MaxTemp", hmt)
			w.ki("H_PressSensorCode", hps)
			w.ki("H_TempProbeCode", htp)
			w.ki("RemainingH2", rem)
			w.ks("Type", []byte("FuelCell"))
			w.end()
		case InfoEngine:
			cs := c.u16()
			if c.bad {
				return bad("engine data")
			}
			w.obj()
			w.ki("CrankshaftSpeed", cs)
			w.ks("Type", []byte("Engine"))
			w.end()
		case InfoLocation:
			st, sys, lon, lat := c.u8(), c.u8(), c.u32(), c.u32()
			if c.bad {
				return bad("location data")
			}
			w.obj()
			w.ki("CoordinateSystem", sys)
			w.ki("Latitude", lat)
			w.ki("Longitude", lon)
			w.ki("Status", st)
			w.ks("Type", []byte("Location"))
			w.end()
		case 0x06: // alarm in 2025
			level, flag := c.u8(), c.u32()
			var lists [4][]byte
			var nums [4]int64
			for i := range lists {
				nums[i] = c.u8()
				lists[i] = c.n(faultCount(nums[i]) * 4)
			}
			gn := c.u8()
			general := c.n(faultCount(gn) * 2)
			if c.bad {
				return bad("alarm data")
			}
			w.obj()
			for i, name := range [4]string{"FaultChargeableDevice", "FaultDriveMotor", "FaultEngine", "FaultOthers"} {
				if i == 3 {
					// EMQX's parser writes FaultGeneralList (its guide
					// misspells it FaulGeneralList).
					w.key("FaultGeneralList")
					w.arr()
					for i := 0; i+1 < len(general); i += 2 {
						w.obj()
						w.ki("Level", int64(general[i+1]))
						w.ki("No", int64(general[i]))
						w.end()
					}
					w.aend()
					w.ki("FaultGeneralNum", gn)
				}
				w.key(name + "List")
				writeFaults(w, lists[i], 8)
				w.ki(name+"Num", nums[i])
			}
			w.ki("GeneralAlarmFlag", flag)
			w.ki("MaxAlarmLevel", level)
			w.ks("Type", []byte("Alarm"))
			w.end()
		case Info2025MinVoltage:
			// Table 11/12: per pack its number, voltage, current and the
			// voltages of all its minimum parallel units.
			num := c.u8()
			w.obj()
			w.ki("Number", num)
			w.key("SubSystems")
			w.arr()
			for range num {
				no, v, cu, total := c.u8(), c.u16(), c.u16(), c.u16()
				cells := c.n(int(total) * 2)
				if c.bad {
					return bad("power battery voltage data")
				}
				w.obj()
				w.ki("BatteryPackCurrent", cu)
				w.ki("BatteryPackNo", no)
				w.ki("BatteryPackVoltage", v)
				w.ki("MinParallelUnitTotal", total)
				w.key("MinParallelUnitVoltage")
				writeWords(w, cells)
				w.end()
			}
			if c.bad {
				return bad("power battery voltage data")
			}
			w.aend()
			w.ks("Type", []byte("MinVoltageOfPowerBattery"))
			w.end()
		case Info2025SuperCapacitor:
			// Table 25: one management system per unit.
			no, v, cu, total := c.u8(), c.u16(), c.u16(), c.u16()
			cells := c.n(int(total) * 2)
			pn := c.u16()
			temps := c.n(int(pn))
			if c.bad {
				return bad("super capacitor data")
			}
			w.obj()
			w.ki("CellsTotal", total)
			w.key("CellsVoltage")
			writeWords(w, cells)
			w.ki("ManagerSysNo", no)
			w.ki("ProbeNum", pn)
			w.key("ProbeTemp")
			writeBytes(w, temps)
			w.ki("TotalCurrent", cu)
			w.ki("TotalVoltage", v)
			w.ks("Type", []byte("SuperCapacitor"))
			w.end()
		case Info2025BatteryTemp:
			num := c.u8()
			w.obj()
			w.ki("Number", num)
			w.key("SubSystems")
			w.arr()
			for range num {
				no, pn := c.u8(), c.u16()
				temps := c.n(int(pn))
				if c.bad {
					return bad("power battery temperature data")
				}
				w.obj()
				w.ki("BatteryPackNo", no)
				w.ki("ProbeNum", pn)
				w.key("ProbesTemp")
				writeBytes(w, temps)
				w.end()
			}
			if c.bad {
				return bad("power battery temperature data")
			}
			w.aend()
			w.ks("Type", []byte("TempOfPowerBattery"))
			w.end()
		case Info2025FuelCellStack:
			num := c.u8()
			w.obj()
			w.ki("Number", num)
			w.key("Stacks")
			w.arr()
			for range num {
				no, v, cu, hp, ap, at, pn := c.u8(), c.u16(), c.u16(), c.u16(), c.u16(), c.u8(), c.u16()
				temps := c.n(int(pn))
				if c.bad {
					return bad("fuel cell stack data")
				}
				w.obj()
				w.ki("AirInletPressure", ap)
				w.ki("AirInletTemp", at)
				w.ki("Current", cu)
				w.ki("FuelCellStackNo", no)
				w.ki("H2InletPressure", hp)
				w.ki("StackProbeNum", pn)
				w.key("StackProbeTemp")
				writeBytes(w, temps)
				w.ki("Voltage", v)
				w.end()
			}
			if c.bad {
				return bad("fuel cell stack data")
			}
			w.aend()
			w.ks("Type", []byte("FuelCellStack"))
			w.end()
		case Info2025SuperCapExtrem:
			maxVS, maxVC, maxV := c.u8(), c.u16(), c.u16()
			minVS, minVC, minV := c.u8(), c.u16(), c.u16()
			maxTS, maxTC, maxT := c.u8(), c.u16(), c.u8()
			minTS, minTC, minT := c.u8(), c.u16(), c.u8()
			if c.bad {
				return bad("super capacitor extreme data")
			}
			w.obj()
			w.ki("MaxTempManagerSysNo", maxTS)
			w.ki("MaxTempProbeCode", maxTC)
			w.ki("MaxTempValue", maxT)
			w.ki("MaxVoltageCellCode", maxVC)
			w.ki("MaxVoltageCellValue", maxV)
			w.ki("MaxVoltageManagerSysNo", maxVS)
			w.ki("MinTempManagerSysNo", minTS)
			w.ki("MinTempProbeCode", minTC)
			w.ki("MinTempValue", minT)
			w.ki("MinVoltageCellCode", minVC)
			w.ki("MinVoltageCellValue", minV)
			w.ki("MinVoltageManagerSysNo", minVS)
			w.ks("Type", []byte("SuperCapacitorExtreme"))
			w.end()
		case Info2025Signature:
			st := c.u8()
			rl := c.u16()
			r := c.n(int(rl))
			sl := c.u16()
			s := c.n(int(sl))
			if c.bad {
				return bad("signature")
			}
			w.obj()
			w.ki("RLength", rl)
			w.key("RValue")
			writeHex(w, r)
			w.ki("SLength", sl)
			w.key("SValue")
			writeHex(w, s)
			w.ki("SignatureType", st)
			w.ks("Type", []byte("Signature"))
			w.end()
		default:
			writeCustom(w, start)
			c.b = nil
		}
	}
	return nil
}

// writeWords writes big-endian 16-bit values as a JSON array.
func writeWords(w *jw, b []byte) {
	w.arr()
	for i := 0; i+1 < len(b); i += 2 {
		w.int(int64(b[i])<<8 | int64(b[i+1]))
	}
	w.aend()
}

func writeHex(w *jw, b []byte) {
	w.sep()
	w.b = append(w.b, '"')
	for _, x := range b {
		w.b = append(w.b, hexDigits[x>>4], hexDigits[x&15])
	}
	w.b = append(w.b, '"')
	w.comma = true
}
