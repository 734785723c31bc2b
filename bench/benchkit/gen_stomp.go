package benchkit

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/go-stomp/stomp/v3"
	"github.com/go-stomp/stomp/v3/frame"
)

func init() { Register("stomp", newSTOMP) }

// stompGen uses go-stomp, an independent client. At QoS 1 each SEND
// carries `qos:1` and asks for a RECEIPT, which edgeway sends once the
// message is stored.
type stompGen struct{ t Target }

func newSTOMP(t Target) (Generator, error) { return &stompGen{t}, nil }

func (g *stompGen) Topic(dev uint32) string {
	return g.t.Prefix + "stomp/" + strconv.FormatUint(uint64(dev), 10)
}

type stompDevice struct {
	g    *stompGen
	c    *stomp.Conn
	nc   net.Conn
	stop func() bool
	dest string
	opts []func(*frame.Frame) error
}

func (g *stompGen) Dial(ctx context.Context, dev uint32) (Device, error) {
	var d net.Dialer
	d.Timeout = g.t.Timeout
	nc, err := d.DialContext(ctx, "tcp", g.t.Addr)
	if err != nil {
		return nil, fmt.Errorf("benchkit/stomp: %w", err)
	}
	c, err := stomp.Connect(nc, stomp.ConnOpt.HeartBeat(0, 0),
		stomp.ConnOpt.Header("client-id", "bench-stomp-"+strconv.FormatUint(uint64(dev), 10)))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("benchkit/stomp: connect: %w", err)
	}
	sd := &stompDevice{g: g, c: c, nc: nc, dest: g.Topic(dev)}
	// go-stomp's Send takes no context: closing the socket is what ends a
	// wait for a RECEIPT, on cancellation or (in Publish) on timeout.
	sd.stop = context.AfterFunc(ctx, func() { nc.Close() })
	sd.opts = append(sd.opts, stomp.SendOpt.Header("qos", strconv.Itoa(int(g.t.QoS))))
	if g.t.QoS > 0 {
		sd.opts = append(sd.opts, stomp.SendOpt.Receipt)
	}
	return sd, nil
}

func (d *stompDevice) Publish(_ context.Context, payload []byte) error {
	if d.g.t.QoS > 0 {
		t := time.AfterFunc(d.g.t.Timeout, func() { d.nc.Close() })
		defer t.Stop()
	}
	// go-stomp queues the body for its writer goroutine and, without a
	// receipt, returns before it is written: the caller's buffer is reused.
	if err := d.c.Send(d.dest, "application/octet-stream", append([]byte(nil), payload...), d.opts...); err != nil {
		if d.g.t.QoS > 0 {
			return fmt.Errorf("%w: %v", ErrNotAcked, err)
		}
		return fmt.Errorf("benchkit/stomp: %w", err)
	}
	return nil
}

func (d *stompDevice) Close() error {
	d.stop()
	return d.c.MustDisconnect()
}
