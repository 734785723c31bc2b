package api

import (
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/api/route"
	"github.com/edgeway/edgeway/agent/gateway"
)

// fakeUplink is the seam where the uplink plugs in.
type fakeUplink struct{ queue atomic.Int64 }

func (f *fakeUplink) Status() any {
	return map[string]any{"state": "connected", "queue_messages": f.queue.Load(), "queue_bytes": 2048,
		"oldest_age": "1m30s", "drain_rate": 12.5, "ping_rtt": "40ms", "last_error": ""}
}

func TestMetricsAndUplink(t *testing.T) {
	up := &fakeUplink{}
	up.queue.Store(42)
	e := startEnv(t, baseConfig, Options{Uplink: up})
	c := dial(t, e.listenerAddr(t, "apitest", "apitest:tcp:a"), "meter-1", "", "x")
	c.send("PUB 0 a/b hello")
	if l := c.line(); l != "PUBACK ok" {
		t.Fatal(l)
	}

	_, body, h := e.do(t, "GET", "!/metrics", nil)
	text := string(body)
	if !strings.HasPrefix(h.Get("Content-Type"), "text/plain; version=0.0.4") {
		t.Fatalf("content type %q", h.Get("Content-Type"))
	}
	for _, want := range []string{
		`edgeway_messages_received_total{gateway="apitest"} 1`,
		`edgeway_connections_count{gateway="apitest"} 1`,
		`edgeway_gateway_running{gateway="apitest"} 1`,
		`edgeway_uplink_queue_messages 42`,
		`edgeway_uplink_queue_oldest_age_seconds 90`,
		`edgeway_uplink_connected 1`,
		`edgeway_info{agent_id="box-1"`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("no %s in\n%s", want, text)
		}
	}
	if strings.Contains(text, `clientid="meter-1"`) {
		t.Fatal("client series without ?clients=true")
	}
	_, body, _ = e.do(t, "GET", "/metrics?clients=true", nil, req{user: "viewer", pass: viewerPass})
	if !strings.Contains(string(body), `edgeway_messages_received_total{clientid="meter-1",gateway="apitest"} 1`) {
		t.Fatalf("client series missing:\n%s", body)
	}
	e.must(t, http.StatusBadRequest, "GET", "/metrics?clients=sure", nil, nil)

	var gm struct {
		Name      string                        `json:"name"`
		Metrics   map[string]float64            `json:"metrics"`
		Listeners map[string]map[string]float64 `json:"listeners"`
	}
	e.must(t, http.StatusOK, "GET", "/metrics/gateways/apitest", nil, &gm)
	if gm.Name != "apitest" || gm.Metrics["messages.received"] != 1 || gm.Metrics["connections.count"] != 1 {
		t.Fatalf("gateway metrics: %+v", gm)
	}
	e.must(t, http.StatusNotFound, "GET", "/metrics/gateways/apiother", nil, nil)

	var u map[string]any
	e.must(t, http.StatusOK, "GET", "/uplink", nil, &u)
	if u["state"] != "connected" || u["queue_messages"] != float64(42) {
		t.Fatalf("uplink: %v", u)
	}
}

func TestNoUplink(t *testing.T) {
	e := startEnv(t, baseConfig, Options{})
	var eb errBody
	e.must(t, http.StatusNotFound, "GET", "/uplink", nil, &eb)
	if !strings.Contains(eb.Message, "no uplink") {
		t.Fatalf("%+v", eb)
	}
	e2 := startEnv(t, baseConfig, Options{Uplink: UplinkFunc(func() any { return nil })})
	e2.must(t, http.StatusNotFound, "GET", "/uplink", nil, &eb)
	if !strings.Contains(eb.Message, "not running") {
		t.Fatalf("%+v", eb)
	}
}

func TestStatusPageHTML(t *testing.T) {
	up := &fakeUplink{}
	e := startEnv(t, baseConfig, Options{Uplink: up, SampleInterval: 20 * time.Millisecond})
	dial(t, e.listenerAddr(t, "apitest", "apitest:tcp:a"), `<img/src=x/onerror=alert(1)>`, "", "x")

	code, body, h := e.do(t, "GET", "!/", nil, req{user: "admin", pass: e.token})
	page := string(body)
	if code != http.StatusOK || !strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Fatalf("page: %d %v", code, h)
	}
	for _, want := range []string{`data-admin="true"`, `class="kick"`, `class="toggle"`, "box-1", "apitest:tcp:a", `&lt;img/src=x/onerror=alert(1)&gt;`, `id="chart-msgs"`} {
		if !strings.Contains(page, want) {
			t.Errorf("admin page lacks %s", want)
		}
	}
	if strings.Contains(page, "<img/src") {
		t.Fatal("device-chosen client id not escaped")
	}
	_, body, _ = e.do(t, "GET", "!/", nil, req{user: "viewer", pass: viewerPass})
	page = string(body)
	if !strings.Contains(page, `data-admin="false"`) || strings.Contains(page, `class="kick"`) || strings.Contains(page, `class="toggle"`) {
		t.Fatal("viewer page has admin controls")
	}

	// Assets: public, cached by version, gzip on request.
	hr, _ := http.NewRequest("GET", e.base+"/static/app.js?v="+assets["app.js"].etag, nil)
	hr.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(hr)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	js, _ := io.ReadAll(zr)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Control"), "immutable") || !strings.Contains(string(js), "textContent") {
		t.Fatalf("app.js: %d %v", resp.StatusCode, resp.Header)
	}
	code, _, _ = e.do(t, "GET", "!/static/nope.js", nil, req{noAuth: true})
	if code != http.StatusNotFound {
		t.Fatalf("unknown asset: %d", code)
	}

	// The data the page polls: charts fill as the sampler runs.
	var st statusJSON
	for i := 0; ; i++ {
		up.queue.Store(int64(i))
		e.must(t, http.StatusOK, "GET", "/status", nil, &st, req{user: "viewer", pass: viewerPass})
		if len(st.Charts.T) >= 3 && len(st.Charts.Queue) >= 3 {
			break
		}
		if i > 500 {
			t.Fatalf("charts not filling: %+v", st.Charts)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if st.Role != "viewer" || st.Agent.ID != "box-1" || st.Uplink["state"] != "connected" || len(st.Gateways) != 1 || len(st.Events) == 0 || st.Events[0].Name != "client.connected" {
		t.Fatalf("status: %+v", st)
	}
	// Config applies show in the event log, with where they came from.
	e.must(t, http.StatusNoContent, "PUT", "/gateways/apitest/enable/false", nil, nil)
	for i := 0; ; i++ {
		e.must(t, http.StatusOK, "GET", "/status", nil, &st)
		if len(st.Events) > 0 && st.Events[0].Name == "config.applied" && st.Events[0].Reason == "api" {
			break
		}
		if i > 500 {
			t.Fatalf("no config.applied event: %+v", st.Events)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestRegisteredRoute(t *testing.T) {
	route.Register("GET", "/gateways/apitest/clients/{clientid}/hello", func(m *gateway.Manager, w http.ResponseWriter, r *http.Request) {
		g, _ := m.Get("apitest")
		if _, ok := g.Client(r.PathValue("clientid")); !ok {
			route.Error(w, http.StatusNotFound, "CLIENT_NOT_FOUND", "no such client")
			return
		}
		route.JSON(w, http.StatusOK, map[string]string{"hello": r.PathValue("clientid")})
	})
	route.Register("POST", "/gateways/apitest/clients/{clientid}/poke", func(m *gateway.Manager, w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	defer route.Unregister("GET", "/gateways/apitest/clients/{clientid}/hello")
	defer route.Unregister("POST", "/gateways/apitest/clients/{clientid}/poke")
	e := startEnv(t, baseConfig, Options{})
	dial(t, e.listenerAddr(t, "apitest", "apitest:tcp:a"), "dev", "", "x")
	var out map[string]string
	e.must(t, http.StatusOK, "GET", "/gateways/apitest/clients/dev/hello", nil, &out, req{user: "viewer", pass: viewerPass})
	if out["hello"] != "dev" {
		t.Fatalf("%v", out)
	}
	e.must(t, http.StatusNotFound, "GET", "/gateways/apitest/clients/nobody/hello", nil, nil)
	e.must(t, http.StatusUnauthorized, "GET", "/gateways/apitest/clients/dev/hello", nil, nil, req{noAuth: true})
	e.must(t, http.StatusForbidden, "POST", "/gateways/apitest/clients/dev/poke", map[string]any{}, nil, req{user: "viewer", pass: viewerPass})
	e.must(t, http.StatusNoContent, "POST", "/gateways/apitest/clients/dev/poke", map[string]any{}, nil)

	// A route that collides with the API's own is refused at start.
	route.Register("GET", "/gateways/{name}", func(*gateway.Manager, http.ResponseWriter, *http.Request) {})
	defer route.Unregister("GET", "/gateways/{name}")
	s := New(e.a, Options{})
	if err := s.Start(t.Context()); err == nil || !strings.Contains(err.Error(), "/gateways/{name}") {
		s.Stop(t.Context())
		t.Fatalf("colliding route: %v", err)
	}
}
