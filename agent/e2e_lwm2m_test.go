package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/plgd-dev/go-coap/v3/message"
	"github.com/plgd-dev/go-coap/v3/message/codes"
	"github.com/plgd-dev/go-coap/v3/mux"
	"github.com/plgd-dev/go-coap/v3/options"
	"github.com/plgd-dev/go-coap/v3/udp"

	"github.com/edgeway/edgeway/protocols/stomp/stomptest"
)

// TestE2ELwM2M: a device on go-coap's client registers; the cloud
// application sees EMQX's register JSON on a real broker, sends a read
// command in EMQX's JSON, and gets the device's answer back as JSON.
func TestE2ELwM2M(t *testing.T) {
	a, cl := startE2E(t)
	app := newPahoPeer(t, cl.Addr)
	up, err := app.Subscribe("site/e2e/lwm2m/dev1/up/#")
	if err != nil {
		t.Fatal(err)
	}
	dev, err := udp.Dial(listenerAddr(t, a, "lwm2m"), options.WithMux(mux.HandlerFunc(func(w mux.ResponseWriter, r *mux.Message) {
		p, _ := r.Options().Path()
		if r.Code() == codes.GET && p == "/3/0/0" {
			_ = w.SetResponse(codes.Content, message.TextPlain, bytes.NewReader([]byte("edgeway-test")))
			return
		}
		_ = w.SetResponse(codes.NotFound, message.TextPlain, nil)
	})))
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := dev.Post(ctx, "/rd", message.AppLinkFormat, strings.NewReader("</3/0>"),
		message.Option{ID: message.URIQuery, Value: []byte("ep=dev1")},
		message.Option{ID: message.URIQuery, Value: []byte("lt=300")},
		message.Option{ID: message.URIQuery, Value: []byte("lwm2m=1.1")})
	if err != nil || resp.Code() != codes.Created {
		t.Fatalf("register: %v %v", resp, err)
	}

	next := func(want string) map[string]any {
		t.Helper()
		for {
			select {
			case m := <-up:
				var v map[string]any
				if err := json.Unmarshal(m.Payload, &v); err != nil {
					t.Fatalf("cloud got non-JSON on %s: %q", m.Topic, m.Payload)
				}
				if v["msgType"] == want {
					return v
				}
			case <-time.After(10 * time.Second):
				t.Fatalf("no %s event reached the cloud", want)
			}
		}
	}
	reg := next("register")
	if d, _ := reg["data"].(map[string]any); d["ep"] != "dev1" || d["lwm2m"] != "1.1" {
		t.Fatalf("register event %v", reg)
	}

	deadline := time.Now().Add(10 * time.Second)
	for !cl.HasSubscriber("site/e2e/lwm2m/dev1/dn/#") {
		if time.Now().After(deadline) {
			t.Fatal("command topic not mirrored upstream")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cmd := `{"reqID":"r1","msgType":"read","data":{"path":"/3/0/0"}}`
	if err := app.Publish("site/e2e/lwm2m/dev1/dn/cmd", []byte(cmd)); err != nil {
		t.Fatal(err)
	}
	res := next("read")
	d, _ := res["data"].(map[string]any)
	content, _ := d["content"].([]any)
	if res["reqID"] != "r1" || d["code"] != "2.05" || len(content) != 1 {
		t.Fatalf("read response %v", res)
	}
	if c, _ := content[0].(map[string]any); c["path"] != "/3/0/0" || c["value"] != "edgeway-test" {
		t.Fatalf("read content %v", content)
	}
}

var _ stomptest.Peer = (*pahoPeer)(nil)
