package benchkit

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

func init() {
	Register("jt808", newJT808)
	RegisterDecoder("jt808", jt808Decoder{})
}

// JT/T 808 message ids the terminal uses.
const (
	jtTermAck    = 0x0001
	jtRegister   = 0x0100
	jtAuth       = 0x0102
	jtLocation   = 0x0200
	jtPlatAck    = 0x8001
	jtRegAck     = 0x8100
	jtBenchExtra = 0xE0 // a custom location extra (0xE0–0xFF): carries the bench payload
)

// jt808Gen is a JT/T 808-2013 terminal over TCP with its own frame
// encoder (0x7e framing, 0x7d escapes, XOR check code, BCD[6] phone),
// independent of protocols/jt808's codec. It registers (0x0100 → 0x8100),
// authenticates with the code it got (0x0102 → 0x8001), then sends 0x0200
// location reports whose custom extra item 0xE0 holds the bench payload;
// a gateway publishes unknown extras raw, base64, in `extra.custome`
// (EMQX's name). At QoS 1 a report counts once the platform's 0x8001
// naming its serial number says result 0.
type jt808Gen struct{ t Target }

func newJT808(t Target) (Generator, error) { return &jt808Gen{t}, nil }

// jtPhone is the terminal's 12-digit phone number: dev, zero-padded.
func jtPhone(dev uint32) string {
	s := strconv.FormatUint(uint64(dev), 10)
	return "000000000000"[len(s):] + s
}

// Topic is the generated config's up_topic, bench/jt808/${phone}.
func (g *jt808Gen) Topic(dev uint32) string { return g.t.Prefix + "jt808/" + jtPhone(dev) }

type jtDevice struct {
	g     *jt808Gen
	c     net.Conn
	r     *bufio.Reader
	stop  func() bool
	phone [6]byte
	sn    uint16
	out   []byte
	body  []byte
	frame []byte
	drain sync.WaitGroup // QoS 0: reads and discards the platform's answers
}

func (g *jt808Gen) Dial(ctx context.Context, dev uint32) (Device, error) {
	nd := net.Dialer{Timeout: g.t.Timeout}
	c, err := nd.DialContext(ctx, "tcp", g.t.Addr)
	if err != nil {
		return nil, fmt.Errorf("benchkit/jt808: %w", err)
	}
	d := &jtDevice{g: g, c: c, r: bufio.NewReaderSize(c, 512)}
	d.stop = context.AfterFunc(ctx, func() { c.Close() })
	ph := jtPhone(dev)
	for i := range d.phone {
		d.phone[i] = (ph[2*i]-'0')<<4 | (ph[2*i+1] - '0')
	}
	if err := d.login(ctx, ph); err != nil {
		d.stop()
		c.Close()
		return nil, err
	}
	if g.t.QoS == 0 {
		// Every report is still answered: unread answers would fill the
		// socket and get the terminal closed as a slow consumer.
		d.drain.Add(1)
		go func() {
			defer d.drain.Done()
			_, _ = io.Copy(io.Discard, c)
		}()
	}
	return d, nil
}

func (d *jtDevice) login(ctx context.Context, phone string) error {
	// 0x0100 (2013): province, city WORD; manufacturer BYTE[5]; model
	// BYTE[20]; terminal id BYTE[7]; plate colour BYTE; plate STRING.
	b := binary.BigEndian.AppendUint16(nil, 11)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = append(b, "BENCH"...)
	b = append(b, make([]byte, 20)...)
	copy(b[9:], "edgeway-bench")
	b = append(b, phone[5:]...) // 7 characters
	b = append(b, 1)
	b = append(b, "B"+phone[6:]...)
	sn, err := d.send(jtRegister, b)
	if err != nil {
		return err
	}
	body, err := d.await(ctx, jtRegAck, sn, 0)
	if err != nil {
		return fmt.Errorf("benchkit/jt808: register: %w", err)
	}
	if len(body) < 3 || body[2] != 0 {
		return fmt.Errorf("benchkit/jt808: register refused: % x", body)
	}
	code := append([]byte(nil), body[3:]...)
	if sn, err = d.send(jtAuth, code); err != nil {
		return err
	}
	if body, err = d.await(ctx, jtPlatAck, sn, jtAuth); err != nil {
		return fmt.Errorf("benchkit/jt808: authenticate: %w", err)
	}
	if body[4] != 0 {
		return fmt.Errorf("benchkit/jt808: authentication refused (result %d)", body[4])
	}
	return nil
}

// send frames and writes one message; it returns the serial number used.
func (d *jtDevice) send(id uint16, body []byte) (uint16, error) {
	d.sn++
	sn := d.sn
	d.out = jtAppendFrame(d.out[:0], id, d.phone, sn, body)
	_ = d.c.SetWriteDeadline(time.Now().Add(d.g.t.Timeout))
	if _, err := d.c.Write(d.out); err != nil {
		return sn, fmt.Errorf("benchkit/jt808: %w", err)
	}
	return sn, nil
}

// await reads frames until the platform's message id answering serial
// sn (and, for 0x8001, message id of) arrives; it returns its body.
func (d *jtDevice) await(ctx context.Context, id, sn, of uint16) ([]byte, error) {
	deadline := time.Now().Add(d.g.t.Timeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = d.c.SetReadDeadline(deadline)
	for {
		f, err := d.readFrame()
		if err != nil {
			return nil, err
		}
		gotID, body, err := jtParse(f)
		if err != nil || gotID != id || len(body) < 2 || binary.BigEndian.Uint16(body) != sn {
			continue // not the answer (a downlink, an answer to a timed-out try)
		}
		if id == jtPlatAck && (len(body) < 5 || binary.BigEndian.Uint16(body[2:]) != of) {
			continue
		}
		return body, nil
	}
}

// readFrame returns the next frame between 0x7e delimiters, unescaped.
func (d *jtDevice) readFrame() ([]byte, error) {
	for {
		raw, err := d.r.ReadSlice(0x7e)
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				continue // longer than any answer: not one of ours
			}
			return nil, err
		}
		raw = raw[:len(raw)-1]
		if len(raw) == 0 {
			continue // an opening delimiter
		}
		f, ok := jtUnescape(d.frame[:0], raw)
		d.frame = f
		if ok {
			return f, nil
		}
	}
}

func (d *jtDevice) Publish(ctx context.Context, payload []byte) error {
	if len(payload) > 255 {
		return fmt.Errorf("benchkit/jt808: payload of %d bytes does not fit a location extra item (255)", len(payload))
	}
	// 0x0200: alarm, status, latitude, longitude DWORD; altitude, speed,
	// direction WORD; time BCD[6]; then the extra item.
	now := time.Now().UTC()
	b := append(d.body[:0], 0, 0, 0, 0, 0, 0, 0, 3, // alarm; status: ACC on, fixed
		0x01, 0xDA, 0x9C, 0x20, 0x06, 0xF3, 0x15, 0x00, // 31.04°N, 116.592°E (×10⁶)
		0, 40, 0, 0, 0, 90)
	for _, v := range []int{now.Year() % 100, int(now.Month()), now.Day(), now.Hour(), now.Minute(), now.Second()} {
		b = append(b, byte(v/10<<4|v%10))
	}
	b = append(b, jtBenchExtra, byte(len(payload)))
	b = append(b, payload...)
	d.body = b
	sn, err := d.send(jtLocation, b)
	if err != nil || d.g.t.QoS == 0 {
		return err
	}
	body, err := d.await(ctx, jtPlatAck, sn, jtLocation)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotAcked, err)
	}
	if body[4] != 0 {
		return fmt.Errorf("%w: 0x8001 result %d", ErrNotAcked, body[4])
	}
	return nil
}

func (d *jtDevice) Close() error {
	d.stop()
	if tc, ok := d.c.(*net.TCPConn); ok && d.g.t.QoS == 0 {
		// A FIN, then the drain sees the gateway close. Closing with
		// answers unread sends an RST instead, and the gateway's kernel
		// discards the reports the gateway had not read yet.
		_ = tc.CloseWrite()
		_ = d.c.SetReadDeadline(time.Now().Add(d.g.t.Timeout))
		d.drain.Wait()
	}
	err := d.c.Close()
	d.drain.Wait()
	return err
}

// jtAppendFrame appends a 2013 frame: 0x7e, escaped (header, body, XOR
// check code), 0x7e.
func jtAppendFrame(dst []byte, id uint16, phone [6]byte, sn uint16, body []byte) []byte {
	var h [12]byte
	binary.BigEndian.PutUint16(h[0:], id)
	binary.BigEndian.PutUint16(h[2:], uint16(len(body))&0x3ff) // no encryption, no sub-packages, 2013
	copy(h[4:], phone[:])
	binary.BigEndian.PutUint16(h[10:], sn)
	var cs byte
	dst = append(dst, 0x7e)
	put := func(c byte) {
		switch c {
		case 0x7e:
			dst = append(dst, 0x7d, 0x02)
		case 0x7d:
			dst = append(dst, 0x7d, 0x01)
		default:
			dst = append(dst, c)
		}
	}
	for _, c := range h {
		cs ^= c
		put(c)
	}
	for _, c := range body {
		cs ^= c
		put(c)
	}
	put(cs)
	return append(dst, 0x7e)
}

// jtUnescape undoes 0x7d escapes and checks the XOR check code; the
// result keeps the check code byte.
func jtUnescape(dst, raw []byte) ([]byte, bool) {
	var cs byte
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c == 0x7d {
			if i+1 == len(raw) || (raw[i+1] != 0x01 && raw[i+1] != 0x02) {
				return dst, false
			}
			i++
			c = 0x7c + raw[i] // 0x01 → 0x7d, 0x02 → 0x7e
		}
		dst = append(dst, c)
		cs ^= c
	}
	return dst, len(dst) >= 13 && cs == 0 // XOR over everything including the code is 0
}

// jtParse splits an unescaped frame into message id and body, for either
// edition's header (the platform answers in the terminal's edition).
func jtParse(f []byte) (uint16, []byte, error) {
	f = f[:len(f)-1] // check code
	id, props := binary.BigEndian.Uint16(f), binary.BigEndian.Uint16(f[2:])
	hl := 12
	if props&(1<<14) != 0 {
		hl = 17
	}
	if props&(1<<13) != 0 {
		hl += 4
	}
	n := int(props & 0x3ff)
	if len(f) != hl+n {
		return 0, nil, fmt.Errorf("benchkit/jt808: frame of %d bytes, header says %d", len(f), hl+n)
	}
	return id, f[hl:], nil
}

// jt808Decoder reads a location report's JSON: the bench payload is the
// value of extra item 0xE0 inside the base64 `custome` TLVs.
type jt808Decoder struct{}

func (jt808Decoder) Decode(_ string, msg []byte) ([]byte, bool) {
	v, ok := jsonString(msg, "custome")
	if !ok {
		return nil, false
	}
	tlv, ok := b64(v)
	for ok && len(tlv) >= 2 {
		n := int(tlv[1])
		if len(tlv) < 2+n {
			return nil, false
		}
		if tlv[0] == jtBenchExtra {
			return tlv[2 : 2+n], true
		}
		tlv = tlv[2+n:]
	}
	return nil, false
}
