package coap_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"

	"github.com/edgeway/edgeway/agent/api/route"
	"github.com/edgeway/edgeway/agent/auth"
	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/protocols/coap"
)

func TestCredentials(t *testing.T) {
	hash, err := auth.HashPassword("s3cret", auth.MinIterations)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, `
[gateway.coap]
[[gateway.coap.authentication]]
type = "built_in"
[[gateway.coap.authentication.users]]
user_id = "alice"
password_hash = "`+hash+`"
[gateway.coap.listeners.udp.default]
bind = "127.0.0.1:0"
`)
	s := e.subscribe("cred", 0)
	c := dial(t, e.udp())
	expectCode(t, post(t, c, "/ps/cred", "ok", "c=d1", "u=alice", "p=s3cret"), codes.Changed)
	s.next(t)
	for _, q := range [][]string{{"u=alice", "p=wrong"}, {"u=mallory", "p=s3cret"}, {}} {
		expectCode(t, post(t, c, "/ps/cred", "no", append([]string{"c=d1"}, q...)...), codes.Unauthorized)
		expectCode(t, post(t, c, "/mqtt/connection", "", append([]string{"c=d1"}, q...)...), codes.Unauthorized)
	}
	// connectionless authentication is per request: a good request after bad ones works
	expectCode(t, post(t, c, "/ps/cred", "again", "c=d1", "username=alice", "password=s3cret"), codes.Changed)
	if d := s.next(t); string(d.Msg.Payload) != "again" {
		t.Fatalf("got %q", d.Msg.Payload)
	}
}

func TestPubSubUnauthorized(t *testing.T) {
	az := gateway.AuthorizerFunc(func(ci *gateway.ClientInfo, a gateway.Action, topic string) bool {
		return !strings.HasPrefix(topic, "secret")
	})
	e := newEnv(t, conf(""), withAuthorizer(az))
	c := dial(t, e.udp())
	expectCode(t, post(t, c, "/ps/secret/x", "1", "c=z"), codes.Unauthorized)
	expectCode(t, post(t, c, "/ps/open/x", "1", "c=z"), codes.Changed)
	r, err := c.Get(ctx(t), "/ps/secret/%23", append(query("c=z"), message.Option{ID: message.Observe, Value: []byte{}})...)
	if err != nil {
		t.Fatal(err)
	}
	expectCode(t, r, codes.Unauthorized)
	if e.b.HasSubscribers("secret/#") {
		t.Fatal("denied subscription exists")
	}
}

// TestRequestAPI sends a request to a connected device through the HTTP
// handler, with the device answering block-wise.
func TestRequestAPI(t *testing.T) {
	e := newEnv(t, conf(`[gateway.coap.blockwise]
max_block_size = 64`))
	big := strings.Repeat("r", 200)
	router := mux.NewRouter()
	_ = router.Handle("/3/0", mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) {
		body, _ := r.ReadBody()
		_ = w.SetResponse(codes.Content, message.TextPlain, strings.NewReader("v="+string(body)))
	}))
	_ = router.Handle("/big", mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) {
		_ = w.SetResponse(codes.Content, message.TextPlain, strings.NewReader(big))
	}))
	c := dial(t, e.udp(), options.WithMux(router))
	connect(t, c, "dev-api")

	call := func(body string) (int, map[string]any) {
		req := httptest.NewRequest("POST", "/gateways/coap/clients/dev-api/request", strings.NewReader(body))
		req.SetPathValue("clientid", "dev-api")
		w := httptest.NewRecorder()
		var h route.Handler
		for _, rt := range route.Routes() {
			if rt.Pattern == "/gateways/coap/clients/{clientid}/request" {
				h = rt.Handler
			}
		}
		if h == nil {
			t.Fatal("route not registered")
		}
		h(e.m, w, req)
		var out map[string]any
		_ = json.Unmarshal(w.Body.Bytes(), &out)
		return w.Code, out
	}
	code, out := call(`{"method":"post","path":"/3/0","content_type":"text/plain","payload":"42"}`)
	if code != http.StatusOK || out["method"] != "2.05" || out["payload"] != "v=42" {
		t.Fatalf("%d %v", code, out)
	}
	code, out = call(`{"method":"get","path":"/big","content_type":"text/plain"}`)
	if code != http.StatusOK || out["payload"] != big {
		t.Fatalf("block2: %d %v", code, out)
	}
	req := httptest.NewRequest("POST", "/x", strings.NewReader(`{"content_type":"text/plain"}`))
	req.SetPathValue("clientid", "nobody")
	w := httptest.NewRecorder()
	for _, rt := range route.Routes() {
		if rt.Pattern == "/gateways/coap/clients/{clientid}/request" {
			rt.Handler(e.m, w, req)
		}
	}
	if w.Code != http.StatusNotFound {
		t.Fatalf("unknown client: %d", w.Code)
	}
	if code, _ := call(`{"path":"/3/0"}`); code != http.StatusBadRequest {
		t.Fatalf("missing content_type: %d", code)
	}
	// a connectionless device is reachable too, at the peer it last used
	c2 := dial(t, e.udp(), options.WithMux(router))
	expectCode(t, post(t, c2, "/ps/hello", "x", "c=cl-api"), codes.Changed)
	if resp, err := coap.Request(context.Background(), e.gw(), "cl-api", coap.DeviceRequest{Method: "post", Path: "/3/0", Payload: "7"}); err != nil || resp.Payload != "v=7" {
		t.Fatalf("connectionless: %+v %v", resp, err)
	}
	// the Go API with a short timeout against a path nobody answers well
	g := e.gw()
	resp, err := coap.Request(context.Background(), g, "dev-api", coap.DeviceRequest{Path: "/none", Timeout: 2 * time.Second})
	if err != nil || resp.Method != "4.04" {
		t.Fatalf("%+v %v", resp, err)
	}
}

func TestClientinfoOverride(t *testing.T) {
	e := newEnv(t, conf(`[gateway.coap.clientinfo_override]
clientid = "${packet.site}-${clientid}"`))
	s := e.subscribe("ov", 0)
	c := dial(t, e.udp())
	expectCode(t, post(t, c, "/ps/ov", "x", "c=dev", "site=plant7"), codes.Changed)
	if d := s.next(t); d.Msg.ClientID != "plant7-dev" {
		t.Fatalf("clientid %q", d.Msg.ClientID)
	}
}
