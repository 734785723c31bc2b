package benchkit

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"strconv"
	"time"
)

func init() {
	Register("gbt32960", newGBT32960)
	RegisterDecoder("gbt32960", gbtDecoder{})
}

// GB/T 32960.3-2016 command ids and response flags the vehicle uses.
const (
	gbtLogin     = 0x01
	gbtRealtime  = 0x02
	gbtLogout    = 0x04
	gbtHeartbeat = 0x07
	gbtCommand   = 0xFE // the response flag of a command frame
	gbtSuccess   = 0x01
	gbtBenchInfo = 0xEB // a user-defined information type (0x80–0xFE): the bench payload
)

// gbtGen is a GB/T 32960 (2016, "##") vehicle over TCP with its own frame
// encoder, independent of protocols/gbt32960. It logs in (0x01 with its
// VIN → 0x01 success), then sends real-time reports (0x02) whose one
// information unit is user-defined type 0xEB followed by the bench
// payload; a gateway publishes such a unit as EMQX does, a CustomData
// entry with the unit base64 from the type byte on.
//
// The standard has no answer to a real-time report. At QoS 1 each report
// is followed by a heartbeat (0x07) and counts as acknowledged when the
// heartbeat's answer arrives: a gateway that handles a connection's frames
// in order, as edgeway's does, has by then handed the report on. That is
// a barrier, not an acknowledgement — a gateway that fails to store the
// report still answers the heartbeat.
type gbtGen struct{ t Target }

func newGBT32960(t Target) (Generator, error) { return &gbtGen{t}, nil }

// gbtVIN is the vehicle's 17-character VIN: "EB" and dev, zero-padded.
func gbtVIN(dev uint32) string {
	s := strconv.FormatUint(uint64(dev), 10)
	return "EB000000000000000"[:17-len(s)] + s
}

// Topic is where the generated config (mountpoint
// bench/gbt32960/${clientid}/) publishes real-time reports.
func (g *gbtGen) Topic(dev uint32) string {
	return g.t.Prefix + "gbt32960/" + gbtVIN(dev) + "/upstream/info"
}

type gbtDevice struct {
	g    *gbtGen
	c    net.Conn
	r    *bufio.Reader
	stop func() bool
	vin  string
	out  []byte
	data []byte
	in   []byte
}

func (g *gbtGen) Dial(ctx context.Context, dev uint32) (Device, error) {
	nd := net.Dialer{Timeout: g.t.Timeout}
	c, err := nd.DialContext(ctx, "tcp", g.t.Addr)
	if err != nil {
		return nil, fmt.Errorf("benchkit/gbt32960: %w", err)
	}
	d := &gbtDevice{g: g, c: c, r: bufio.NewReaderSize(c, 512), vin: gbtVIN(dev)}
	d.stop = context.AfterFunc(ctx, func() { c.Close() })
	// Login data unit: time, login serial WORD, ICCID[20], no battery
	// subsystem codes (count 0, length 0).
	b := gbtAppendTime(nil, time.Now())
	b = binary.BigEndian.AppendUint16(b, 1)
	b = append(b, "89860000000000000000"...)
	b = append(b, 0, 0)
	if err = d.send(gbtLogin, b); err == nil {
		err = d.await(ctx, gbtLogin)
	}
	if err != nil {
		d.stop()
		c.Close()
		return nil, fmt.Errorf("benchkit/gbt32960: login: %w", err)
	}
	return d, nil
}

func (d *gbtDevice) send(cmd byte, data []byte) error {
	d.out = gbtAppendFrame(d.out[:0], cmd, gbtCommand, d.vin, data)
	_ = d.c.SetWriteDeadline(time.Now().Add(d.g.t.Timeout))
	if _, err := d.c.Write(d.out); err != nil {
		return fmt.Errorf("benchkit/gbt32960: %w", err)
	}
	return nil
}

// await reads frames until the platform's success answer to cmd arrives.
func (d *gbtDevice) await(ctx context.Context, cmd byte) error {
	deadline := time.Now().Add(d.g.t.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = d.c.SetReadDeadline(deadline)
	for {
		gotCmd, ack, err := d.readFrame()
		if err != nil {
			return err
		}
		if gotCmd != cmd {
			continue // a downlink command: not answered by a bench vehicle
		}
		if ack != gbtSuccess {
			return fmt.Errorf("benchkit/gbt32960: command 0x%02x answered with flag 0x%02x", cmd, ack)
		}
		return nil
	}
}

// readFrame reads one frame: "##", cmd, ack, VIN[17], encrypt, length
// WORD, data, BCC (XOR from cmd to the end of data).
func (d *gbtDevice) readFrame() (cmd, ack byte, err error) {
	for {
		b, err := d.r.ReadByte()
		if err != nil {
			return 0, 0, err
		}
		if b != '#' && b != '$' {
			continue
		}
		if nb, err := d.r.Peek(1); err != nil || nb[0] != b {
			continue
		}
		_, _ = d.r.Discard(1)
		var h [22]byte
		if _, err := io.ReadFull(d.r, h[:]); err != nil {
			return 0, 0, err
		}
		n := int(binary.BigEndian.Uint16(h[20:]))
		d.in = append(d.in[:0], h[:]...)
		d.in = append(d.in, make([]byte, n+1)...)
		if _, err := io.ReadFull(d.r, d.in[22:]); err != nil {
			return 0, 0, err
		}
		var x byte
		for _, c := range d.in {
			x ^= c // including the BCC: 0 when it matches
		}
		if x != 0 {
			return 0, 0, fmt.Errorf("benchkit/gbt32960: answer with a bad BCC")
		}
		return h[0], h[1], nil
	}
}

func (d *gbtDevice) Publish(ctx context.Context, payload []byte) error {
	d.data = gbtAppendTime(d.data[:0], time.Now())
	d.data = append(d.data, gbtBenchInfo)
	d.data = append(d.data, payload...)
	if err := d.send(gbtRealtime, d.data); err != nil || d.g.t.QoS == 0 {
		return err
	}
	if err := d.send(gbtHeartbeat, nil); err != nil {
		return err
	}
	if err := d.await(ctx, gbtHeartbeat); err != nil {
		return fmt.Errorf("%w: %v", ErrNotAcked, err)
	}
	return nil
}

func (d *gbtDevice) Close() error {
	d.stop()
	b := gbtAppendTime(nil, time.Now())
	b = binary.BigEndian.AppendUint16(b, 1)
	_ = d.send(gbtLogout, b) // best effort: the answer is not waited for
	return d.c.Close()
}

// gbtAppendFrame appends a 2016 frame with no encryption (0x01).
func gbtAppendFrame(dst []byte, cmd, ack byte, vin string, data []byte) []byte {
	dst = append(dst, '#', '#')
	start := len(dst)
	dst = append(dst, cmd, ack)
	dst = append(dst, vin...)
	dst = append(dst, 0x01)
	dst = binary.BigEndian.AppendUint16(dst, uint16(len(data)))
	dst = append(dst, data...)
	var x byte
	for _, c := range dst[start:] {
		x ^= c
	}
	return append(dst, x)
}

// gbtAppendTime appends the standard's 6-byte time (year since 2000).
func gbtAppendTime(dst []byte, t time.Time) []byte {
	return append(dst, byte(t.Year()-2000), byte(t.Month()), byte(t.Day()), byte(t.Hour()), byte(t.Minute()), byte(t.Second()))
}

// gbtDecoder reads a real-time report's JSON: the bench payload follows
// the type byte in the base64 of the CustomData entry's "Data" (the outer
// "Data" is an object, which the scan skips).
type gbtDecoder struct{}

func (gbtDecoder) Decode(_ string, msg []byte) ([]byte, bool) {
	v, ok := jsonString(msg, "Data")
	if !ok {
		return nil, false
	}
	u, ok := b64(v)
	if !ok || len(u) < 1 || u[0] != gbtBenchInfo {
		return nil, false
	}
	return u[1:], true
}
