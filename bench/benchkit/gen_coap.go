package benchkit

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
	udpclient "github.com/plgd-dev/go-coap/v3/udp/client"
)

func init() { Register("coap", newCoAP) }

// coapGen publishes with go-coap's own client, connectionless: a CON
// POST /ps/{topic}?c={clientid}&q={qos} per message, acknowledged by the
// 2.04 Changed in the piggy-backed ACK (EMQX's CoAP gateway paths, so it
// loads any gateway that speaks them).
type coapGen struct{ t Target }

func newCoAP(t Target) (Generator, error) { return &coapGen{t}, nil }

func (g *coapGen) Topic(dev uint32) string {
	return g.t.Prefix + "coap/" + strconv.FormatUint(uint64(dev), 10)
}

type coapDevice struct {
	g    *coapGen
	c    *udpclient.Conn
	path string
	opts []message.Option
}

func (g *coapGen) Dial(_ context.Context, dev uint32) (Device, error) {
	// Block-wise off: the load is small messages, and go-coap v3.4.1's
	// client races between its block-wise handler and the release of a
	// request's message (seen under -race).
	c, err := udp.Dial(g.t.Addr, options.WithBlockwise(false, blockwise.SZX1024, time.Second))
	if err != nil {
		return nil, fmt.Errorf("benchkit/coap: %w", err)
	}
	return &coapDevice{g: g, c: c, path: "/ps/" + g.Topic(dev), opts: []message.Option{
		{ID: message.URIQuery, Value: []byte("c=bench-coap-" + strconv.FormatUint(uint64(dev), 10))},
		{ID: message.URIQuery, Value: []byte("q=" + strconv.Itoa(int(g.t.QoS)))},
	}}, nil
}

func (d *coapDevice) Publish(ctx context.Context, payload []byte) error {
	ctx, cancel := context.WithTimeout(ctx, d.g.t.Timeout)
	defer cancel()
	// A copy: go-coap may still read the body to retransmit after a timeout.
	r, err := d.c.Post(ctx, d.path, message.AppOctets, bytes.NewReader(append([]byte(nil), payload...)), d.opts...)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotAcked, err)
	}
	if r.Code() != codes.Changed {
		return fmt.Errorf("%w: %v", ErrNotAcked, r.Code())
	}
	return nil
}

func (d *coapDevice) Close() error { return d.c.Close() }
