package benchkit

import (
	"bytes"
	"context"
	"encoding/base64"
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

func init() {
	Register("lwm2m", newLwM2M)
	RegisterDecoder("lwm2m", lwm2mDecoder{})
}

// lwm2mGen is a LwM2M 1.1 client on go-coap's udp client. Dial registers
// (CON POST /rd?ep=…&lt=…&lwm2m=1.1&b=U, links </19/0>, → 2.01 and a
// Location); each Publish is a LwM2M Send (CON POST /dp, SenML JSON) of
// one Opaque resource, /19/0/0 (BinaryAppDataContainer data), whose value
// is the bench payload. A gateway publishes it as EMQX-style JSON,
// {"msgType":"send","data":{"content":[{"path":"/19/0/0","value":"<base64>"}]}},
// on its notify translator's topic. A publish is acknowledged by the
// 2.04 Changed to the CON Send, whatever the QoS: the Send has no QoS of
// its own (the gateway's notify translator has one).
type lwm2mGen struct{ t Target }

func newLwM2M(t Target) (Generator, error) { return &lwm2mGen{t}, nil }

func lwEndpoint(dev uint32) string { return "bench-lw-" + strconv.FormatUint(uint64(dev), 10) }

// Topic is where the generated config (mountpoint
// bench/lwm2m/${endpoint_name}/, notify translator up/notify) publishes
// a Send.
func (g *lwm2mGen) Topic(dev uint32) string {
	return g.t.Prefix + "lwm2m/" + lwEndpoint(dev) + "/up/notify"
}

type lwDevice struct {
	g   *lwm2mGen
	c   *udpclient.Conn
	loc string
	buf []byte
}

var lwDataPrefix = []byte(`[{"bn":"/19/0/","n":"0","vd":"`)

func (g *lwm2mGen) Dial(ctx context.Context, dev uint32) (Device, error) {
	// Block-wise off, as for the CoAP generator (go-coap v3.4.1's client
	// races under -race with it on) — registers and Sends fit a datagram.
	c, err := udp.Dial(g.t.Addr, options.WithBlockwise(false, blockwise.SZX1024, time.Second))
	if err != nil {
		return nil, fmt.Errorf("benchkit/lwm2m: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, g.t.Timeout)
	defer cancel()
	lt := max(int(g.t.KeepAlive/time.Second), 15)
	r, err := c.Post(ctx, "/rd", message.AppLinkFormat, bytes.NewReader([]byte(`</19/0>`)),
		message.Option{ID: message.URIQuery, Value: []byte("ep=" + lwEndpoint(dev))},
		message.Option{ID: message.URIQuery, Value: []byte("lt=" + strconv.Itoa(lt))},
		message.Option{ID: message.URIQuery, Value: []byte("lwm2m=1.1")},
		message.Option{ID: message.URIQuery, Value: []byte("b=U")})
	if err == nil && r.Code() != codes.Created {
		err = fmt.Errorf("register answered %v", r.Code())
	}
	var loc string
	if err == nil {
		loc, err = r.Options().LocationPath()
	}
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("benchkit/lwm2m: register: %w", err)
	}
	return &lwDevice{g: g, c: c, loc: loc}, nil
}

func (d *lwDevice) Publish(ctx context.Context, payload []byte) error {
	ctx, cancel := context.WithTimeout(ctx, d.g.t.Timeout)
	defer cancel()
	// A fresh body each time: go-coap may still read it to retransmit
	// after a timeout.
	b := make([]byte, 0, len(lwDataPrefix)+base64.RawURLEncoding.EncodedLen(len(payload))+3)
	b = append(b, lwDataPrefix...)
	b = base64.RawURLEncoding.AppendEncode(b, payload)
	b = append(b, `"}]`...)
	r, err := d.c.Post(ctx, "/dp", message.AppSenmlJSON, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrNotAcked, err)
	}
	if r.Code() != codes.Changed {
		return fmt.Errorf("%w: %v", ErrNotAcked, r.Code())
	}
	return nil
}

// Close de-registers (best effort, briefly) and frees the socket.
func (d *lwDevice) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), min(d.g.t.Timeout, 500*time.Millisecond))
	defer cancel()
	_, _ = d.c.Delete(ctx, d.loc)
	return d.c.Close()
}

// lwm2mDecoder reads a Send's JSON: the first content value, base64.
type lwm2mDecoder struct{}

func (lwm2mDecoder) Decode(_ string, msg []byte) ([]byte, bool) {
	v, ok := jsonString(msg, "value")
	if !ok {
		return nil, false
	}
	return b64(v)
}
