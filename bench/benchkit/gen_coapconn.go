package benchkit

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/net/blockwise"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"
)

func init() { Register("coap-conn", newCoAPConn) }

// coapConnGen is the CoAP device in connection mode (EMQX's): it opens a
// connection with POST /mqtt/connection?c={clientid}, keeps the token it
// gets back, and publishes with c and t on every /ps request. Unlike the
// connectionless "coap" generator, every device holds a gateway session,
// so `idle` measures what a connected CoAP client costs. Its messages
// arrive on the "coap" topics.
type coapConnGen struct{ coapGen }

func newCoAPConn(t Target) (Generator, error) { return &coapConnGen{coapGen{t}}, nil }

func (g *coapConnGen) Dial(ctx context.Context, dev uint32) (Device, error) {
	c, err := udp.Dial(g.t.Addr, options.WithBlockwise(false, blockwise.SZX1024, time.Second))
	if err != nil {
		return nil, fmt.Errorf("benchkit/coap-conn: %w", err)
	}
	id := "bench-coapc-" + strconv.FormatUint(uint64(dev), 10)
	cctx, cancel := context.WithTimeout(ctx, g.t.Timeout)
	defer cancel()
	r, err := c.Post(cctx, "/mqtt/connection", message.TextPlain, bytes.NewReader(nil),
		message.Option{ID: message.URIQuery, Value: []byte("c=" + id)})
	if err != nil || r.Code() != codes.Created {
		_ = c.Close()
		if err == nil {
			err = fmt.Errorf("answer %v", r.Code())
		}
		return nil, fmt.Errorf("benchkit/coap-conn: connect %s: %w", id, err)
	}
	var token []byte
	if body := r.Body(); body != nil {
		token, _ = io.ReadAll(body)
	}
	if len(token) == 0 {
		_ = c.Close()
		return nil, fmt.Errorf("benchkit/coap-conn: connect %s: no token", id)
	}
	return &coapDevice{g: &g.coapGen, c: c, path: "/ps/" + g.Topic(dev), opts: []message.Option{
		{ID: message.URIQuery, Value: []byte("c=" + id)},
		{ID: message.URIQuery, Value: append([]byte("t="), token...)},
		{ID: message.URIQuery, Value: []byte("q=" + strconv.Itoa(int(g.t.QoS)))},
	}}, nil
}
