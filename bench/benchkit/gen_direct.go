package benchkit

import (
	"context"
	"fmt"
	"strconv"

	paho "github.com/eclipse/paho.mqtt.golang"
)

func init() { Register("direct", newDirect) }

// directGen is the baseline: a plain MQTT client (paho) publishing the
// same messages straight to the cloud broker, no gateway in between.
type directGen struct{ t Target }

func newDirect(t Target) (Generator, error) { return &directGen{t}, nil }

func (g *directGen) Topic(dev uint32) string {
	return g.t.Prefix + "direct/" + strconv.FormatUint(uint64(dev), 10)
}

type directDevice struct {
	g     *directGen
	c     paho.Client
	topic string
}

func (g *directGen) Dial(ctx context.Context, dev uint32) (Device, error) {
	o := paho.NewClientOptions().AddBroker("tcp://" + g.t.Addr).
		SetClientID("bench-direct-" + strconv.FormatUint(uint64(dev), 10)).
		SetCleanSession(true).SetAutoReconnect(false).SetKeepAlive(g.t.KeepAlive).
		SetConnectTimeout(g.t.Timeout).SetWriteTimeout(g.t.Timeout)
	c := paho.NewClient(o)
	t := c.Connect()
	if !t.WaitTimeout(g.t.Timeout) || t.Error() != nil {
		c.Disconnect(0)
		return nil, fmt.Errorf("benchkit/direct: connect %s: %v", g.t.Addr, t.Error())
	}
	return &directDevice{g: g, c: c, topic: g.Topic(dev)}, nil
}

func (d *directDevice) Publish(_ context.Context, payload []byte) error {
	// paho keeps the slice until sent; the caller reuses it, so copy.
	t := d.c.Publish(d.topic, d.g.t.QoS, false, append([]byte(nil), payload...))
	if d.g.t.QoS == 0 {
		return nil
	}
	if !t.WaitTimeout(d.g.t.Timeout) || t.Error() != nil {
		return fmt.Errorf("%w: %v", ErrNotAcked, t.Error())
	}
	return nil
}

func (d *directDevice) Close() error {
	d.c.Disconnect(100)
	return nil
}
