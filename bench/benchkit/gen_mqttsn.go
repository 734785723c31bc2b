package benchkit

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	sn "github.com/edgeway/edgeway/protocols/mqttsn/mqttsntest"
)

func init() { Register("mqttsn", newMQTTSN) }

// mqttsnGen speaks MQTT-SN 1.2 over UDP with mqttsntest's encoder, which
// is independent of edgeway's codec, so it can load any MQTT-SN gateway.
type mqttsnGen struct{ t Target }

func newMQTTSN(t Target) (Generator, error) {
	if t.QoS > 1 {
		return nil, fmt.Errorf("benchkit/mqttsn: qos %d not supported (0 or 1)", t.QoS)
	}
	return &mqttsnGen{t}, nil
}

func (g *mqttsnGen) Topic(dev uint32) string {
	return g.t.Prefix + "mqttsn/" + strconv.FormatUint(uint64(dev), 10)
}

type snDevice struct {
	g     *mqttsnGen
	c     *net.UDPConn
	stop  func() bool // unregisters the close-on-cancel
	topic uint16
	msgID uint16
	buf   []byte
	out   []byte
}

func (g *mqttsnGen) Dial(ctx context.Context, dev uint32) (Device, error) {
	ra, err := net.ResolveUDPAddr("udp", g.t.Addr)
	if err != nil {
		return nil, fmt.Errorf("benchkit/mqttsn: %w", err)
	}
	c, err := net.DialUDP("udp", nil, ra)
	if err != nil {
		return nil, fmt.Errorf("benchkit/mqttsn: %w", err)
	}
	_ = c.SetReadBuffer(1 << 20)
	d := &snDevice{g: g, c: c, buf: make([]byte, 65536)}
	// Cancelling the load ends a read waiting for an acknowledgement.
	d.stop = context.AfterFunc(ctx, func() { c.Close() })
	ka := uint16(min(g.t.KeepAlive/time.Second, 65535))
	id := "bench-sn-" + strconv.FormatUint(uint64(dev), 10)
	p, err := d.request(ctx, sn.ConnectMsg(id, sn.Clean, ka), sn.CONNACK, 0)
	if err == nil && p.RC() != 0 {
		err = fmt.Errorf("benchkit/mqttsn: CONNACK rc 0x%02x", p.RC())
	}
	if err == nil {
		d.msgID = 1
		p, err = d.request(ctx, sn.RegisterMsg(1, g.Topic(dev)), sn.REGACK, 1)
		if err == nil && p.RC() != 0 {
			err = fmt.Errorf("benchkit/mqttsn: REGACK rc 0x%02x", p.RC())
		}
	}
	if err != nil {
		d.stop()
		c.Close()
		return nil, err
	}
	d.topic = p.TopicID()
	return d, nil
}

// request sends msg and waits for a reply of type want (and message id
// msgID when non-zero), resending up to 3 times as UDP may drop either.
func (d *snDevice) request(ctx context.Context, msg []byte, want byte, msgID uint16) (sn.Packet, error) {
	for try := 0; try < 3; try++ {
		if _, err := d.c.Write(msg); err != nil {
			return sn.Packet{}, fmt.Errorf("benchkit/mqttsn: %w", err)
		}
		p, err := d.await(ctx, want, msgID, d.g.t.Timeout/3)
		if err == nil {
			return p, nil
		}
		if ctx.Err() != nil {
			return p, ctx.Err()
		}
	}
	return sn.Packet{}, fmt.Errorf("benchkit/mqttsn: no reply of type 0x%02x from %s", want, d.g.t.Addr)
}

func (d *snDevice) await(ctx context.Context, want byte, msgID uint16, wait time.Duration) (sn.Packet, error) {
	deadline := time.Now().Add(wait)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = d.c.SetReadDeadline(deadline)
	for {
		n, err := d.c.Read(d.buf)
		if err != nil {
			return sn.Packet{}, err
		}
		p, err := sn.Parse(d.buf[:n])
		if err != nil || p.Type != want || (msgID != 0 && p.MsgID() != msgID) {
			continue // a late answer to an earlier try, or the gateway's own traffic
		}
		return p, nil
	}
}

func (d *snDevice) Publish(ctx context.Context, payload []byte) error {
	flags := byte(sn.QoS0 | sn.Normal)
	var id uint16
	if d.g.t.QoS == 1 {
		flags = sn.QoS1 | sn.Normal
		d.msgID++
		if d.msgID == 0 {
			d.msgID = 1
		}
		id = d.msgID
	}
	d.out = d.out[:0]
	// Built by hand into a reused buffer: sn.PublishMsg allocates.
	n := 7 + len(payload)
	if n <= 255 {
		d.out = append(d.out, byte(n))
	} else {
		n += 2
		d.out = append(d.out, 0x01, byte(n>>8), byte(n))
	}
	d.out = append(d.out, sn.PUBLISH, flags, byte(d.topic>>8), byte(d.topic), byte(id>>8), byte(id))
	d.out = append(d.out, payload...)
	if _, err := d.c.Write(d.out); err != nil {
		return fmt.Errorf("benchkit/mqttsn: %w", err)
	}
	if d.g.t.QoS == 0 {
		return nil
	}
	p, err := d.await(ctx, sn.PUBACK, id, d.g.t.Timeout)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotAcked, err)
	}
	if p.RC() != 0 {
		return fmt.Errorf("%w: PUBACK rc 0x%02x", ErrNotAcked, p.RC())
	}
	return nil
}

func (d *snDevice) Close() error {
	d.stop()
	_, _ = d.c.Write(sn.DisconnectMsg())
	return d.c.Close()
}
