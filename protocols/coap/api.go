package coap

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/edgeway/edgeway/agent/api/route"
	"github.com/edgeway/edgeway/agent/gateway"
)

func init() {
	route.Register("POST", "/gateways/coap/clients/{clientid}/request", apiRequest)
}

// DeviceRequest is a request the gateway sends to a connected device.
type DeviceRequest struct {
	Method      string        `json:"method"` // get (default), put, post, delete
	Path        string        `json:"path"`   // Uri-Path, e.g. "/3/0/1"
	ContentType string        `json:"content_type"`
	Payload     string        `json:"payload"`
	Timeout     time.Duration `json:"-"`
}

// DeviceResponse is the device's answer; a Block2 response is reassembled.
type DeviceResponse struct {
	ID      uint16 `json:"id"`
	Token   string `json:"token"`
	Method  string `json:"method"` // the response code, "2.05"
	Payload string `json:"payload"`
}

// Errors of Request that the API maps to status codes.
var (
	ErrClientNotFound = errors.New("coap: client not found")
	ErrNoResponse     = errors.New("coap: device did not respond")
	ErrBadResponse    = errors.New("coap: bad response from device")
)

var contentFormats = map[string]uint32{"text/plain": 0, "application/octet-stream": 42, "application/json": 50}

// Request sends req to the device behind clientid on gateway g (a CON
// request to the address its session is bound to, in connection mode or
// not) and waits for the
// response, fetching further Block2 blocks up to blockwise.max_body_size.
func Request(ctx context.Context, g *gateway.Gateway, clientid string, req DeviceRequest) (*DeviceResponse, error) {
	v, ok := instances.Load(g)
	if !ok {
		return nil, ErrClientNotFound
	}
	p := v.(*proto)
	c, ok := g.Client(clientid)
	if !ok {
		return nil, ErrClientNotFound
	}
	var ep *endpoint
	if s, ok := p.sessionOf(c); ok {
		ep = s.endpoint()
	}
	if ep == nil {
		return nil, ErrClientNotFound
	}
	spec := p.spec.Load()
	code := map[string]uint8{"": codeGET, "get": codeGET, "post": codePOST, "put": codePUT, "delete": codeDELETE}[strings.ToLower(req.Method)]
	if code == 0 {
		return nil, fmt.Errorf("coap: bad method %q", req.Method)
	}
	timeout := req.Timeout
	if timeout <= 0 {
		timeout = spec.RequestTimeout.D()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var body []byte
	var first *Message
	for num := uint32(0); ; num++ {
		m := &Message{Code: code, Token: make([]byte, 8)}
		_, _ = rand.Read(m.Token)
		for _, seg := range strings.Split(strings.Trim(req.Path, "/"), "/") {
			if seg != "" {
				m.Options = append(m.Options, Option{ID: optURIPath, Value: []byte(seg)})
			}
		}
		if num == 0 && req.ContentType != "" {
			cf, ok := contentFormats[req.ContentType]
			if !ok {
				return nil, fmt.Errorf("coap: unknown content_type %q", req.ContentType)
			}
			m.Options = append(m.Options, Option{ID: optContentFormat, Value: uintValue(cf)})
		}
		if num > 0 {
			m.Code = codeGET
			m.Options = append(m.Options, Option{ID: optBlock2, Value: block{num: num, szx: szxFor(spec.Blockwise.MaxBlockSize)}.value()})
		} else {
			m.Payload = []byte(req.Payload)
		}
		r, err := p.exchange(ctx, ep, m)
		if err != nil {
			return nil, err
		}
		if first == nil {
			first = r
		}
		body = append(body, r.Payload...)
		v, has := r.Opt(optBlock2)
		if !has || !spec.Blockwise.Enable {
			break
		}
		b, ok := parseBlock(v)
		if !ok || b.num != num {
			return nil, ErrBadResponse
		}
		if !b.more {
			break
		}
		if len(body) > int(spec.Blockwise.MaxBodySize) {
			return nil, fmt.Errorf("%w: body over blockwise.max_body_size", ErrBadResponse)
		}
	}
	return &DeviceResponse{ID: first.MID, Token: fmt.Sprintf("%x", first.Token), Method: fmt.Sprintf("%d.%02d", first.Code>>5, first.Code&31), Payload: string(body)}, nil
}

// exchange sends one CON request and waits for its piggybacked or
// separate response.
func (p *proto) exchange(ctx context.Context, ep *endpoint, m *Message) (*Message, error) {
	w := make(chan *Message, 1)
	key := string(m.Token)
	ep.mu.Lock()
	if ep.closed {
		ep.mu.Unlock()
		return nil, ErrClientNotFound
	}
	if ep.waiters == nil {
		ep.waiters = map[string]chan *Message{}
	}
	ep.waiters[key] = w
	ep.mu.Unlock()
	defer func() {
		ep.mu.Lock()
		delete(ep.waiters, key)
		ep.mu.Unlock()
	}()
	fail := make(chan bool, 1)
	p.sendCON(ep, nil, m, func(ack *Message, reset bool) {
		if ack == nil {
			fail <- reset
			return
		}
		if ack.Code != codeEmpty {
			deliverResponse(w, ack)
		}
	})
	select {
	case r, ok := <-w:
		if !ok {
			return nil, ErrNoResponse
		}
		return r, nil
	case reset := <-fail:
		if reset {
			return nil, fmt.Errorf("%w: reset", ErrBadResponse)
		}
		return nil, ErrNoResponse
	case <-ctx.Done():
		return nil, ErrNoResponse
	}
}

// sessionOf finds the session behind a gateway client.
func (p *proto) sessionOf(c *gateway.Client) (*session, bool) {
	v, ok := p.byClient.Load(c)
	if !ok {
		return nil, false
	}
	return v.(*session), true
}

type apiBody struct {
	Method      string `json:"method"`
	Path        string `json:"path"`
	Token       string `json:"token"`
	Timeout     string `json:"timeout"`
	ContentType string `json:"content_type"`
	Payload     string `json:"payload"`
}

func apiRequest(m *gateway.Manager, w http.ResponseWriter, r *http.Request) {
	g, ok := m.Get("coap")
	if !ok {
		route.Error(w, http.StatusNotFound, "CLIENT_NOT_FOUND", "coap gateway not loaded")
		return
	}
	var b apiBody
	if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
		route.Error(w, http.StatusBadRequest, "BAD_REQUEST", "bad JSON body: "+err.Error())
		return
	}
	if b.ContentType == "" {
		route.Error(w, http.StatusBadRequest, "BAD_REQUEST", "content_type is required")
		return
	}
	req := DeviceRequest{Method: b.Method, Path: b.Path, ContentType: b.ContentType, Payload: b.Payload}
	if b.Timeout != "" {
		d, err := time.ParseDuration(b.Timeout)
		if err != nil {
			route.Error(w, http.StatusBadRequest, "BAD_REQUEST", "bad timeout "+b.Timeout)
			return
		}
		req.Timeout = d
	}
	resp, err := Request(r.Context(), g, r.PathValue("clientid"), req)
	switch {
	case err == nil:
		route.JSON(w, http.StatusOK, resp)
	case errors.Is(err, ErrClientNotFound):
		route.Error(w, http.StatusNotFound, "CLIENT_NOT_FOUND", "no connected client "+r.PathValue("clientid"))
	case errors.Is(err, ErrNoResponse):
		route.Error(w, http.StatusGatewayTimeout, "CLIENT_NOT_RESPONSE", err.Error())
	case errors.Is(err, ErrBadResponse):
		route.Error(w, http.StatusBadGateway, "CLIENT_BAD_RESPONSE", err.Error())
	default:
		route.Error(w, http.StatusBadRequest, "BAD_REQUEST", err.Error())
	}
}
