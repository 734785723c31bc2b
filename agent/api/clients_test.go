package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

type clientsPage struct {
	Data []map[string]any `json:"data"`
	Meta Meta             `json:"meta"`
}

func TestClients(t *testing.T) {
	e := startEnv(t, baseConfig, Options{})
	addr := e.listenerAddr(t, "apitest", "apitest:tcp:a")
	before := time.Now().Add(-time.Second)
	cs := map[string]*tclient{}
	for i := 0; i < 7; i++ {
		id := fmt.Sprintf("sensor-%02d", i)
		user := "floor1"
		if i%2 == 1 {
			user = "floor2"
		}
		cs[id] = dial(t, addr, id, user, "x")
	}
	cs["pump-1"] = dial(t, addr, "pump-1", "", "x")

	var p clientsPage
	e.must(t, http.StatusOK, "GET", "/gateways/apitest/clients", nil, &p)
	if p.Meta != (Meta{Page: 1, Limit: 100, Count: 8}) || len(p.Data) != 8 || p.Data[0]["clientid"] != "pump-1" {
		t.Fatalf("all: %+v", p)
	}
	c0 := p.Data[1]
	if c0["clientid"] != "sensor-00" || c0["username"] != "floor1" || c0["ip_address"] != "127.0.0.1" || c0["listener_id"] != "apitest:tcp:a" ||
		c0["mountpoint"] != "t/" || c0["connected"] != true || c0["proto_name"] != "apitest" || c0["node"] != "box-1" || c0["port"].(float64) == 0 {
		t.Fatalf("client: %v", c0)
	}
	for _, tc := range []struct {
		q     string
		count int
		first string
	}{
		{"page=2&limit=3", 8, "sensor-02"},
		{"clientid=sensor-03", 1, "sensor-03"},
		{"like_clientid=sensor", 7, "sensor-00"},
		{"username=floor2", 3, "sensor-01"},
		{"like_username=floor", 7, "sensor-00"},
		{"ip_address=127.0.0.1", 8, "pump-1"},
		{"ip_address=10.0.0.1", 0, ""},
		{"conn_state=connected", 8, "pump-1"},
		{"conn_state=disconnected", 0, ""},
		{"listener_id=apitest:tcp:a", 8, "pump-1"},
		{"gte_connected_at=" + url.QueryEscape(before.Format(time.RFC3339)), 8, "pump-1"},
		{"lte_connected_at=" + fmt.Sprint(before.UnixMilli()), 0, ""},
		{"endpoint_name=x", 0, ""},
	} {
		e.must(t, http.StatusOK, "GET", "/gateways/apitest/clients?"+tc.q, nil, &p)
		first := ""
		if len(p.Data) > 0 {
			first = p.Data[0]["clientid"].(string)
		}
		if p.Meta.Count != tc.count || first != tc.first {
			t.Errorf("%s: count %d first %q, want %d %q", tc.q, p.Meta.Count, first, tc.count, tc.first)
		}
	}
	e.must(t, http.StatusOK, "GET", "/gateways/apitest/clients?page=3&limit=3", nil, &p)
	if p.Meta.HasNext || len(p.Data) != 2 {
		t.Fatalf("last page: %+v", p.Meta)
	}
	var eb errBody
	for _, q := range []string{"page=0", "limit=x", "limit=10001", "conn_state=asleep", "gte_connected_at=yesterday", "like_clientId=s", "ip_address=nope"} {
		e.must(t, http.StatusBadRequest, "GET", "/gateways/apitest/clients?"+q, nil, &eb)
		if name, _, _ := strings.Cut(q, "="); !strings.HasPrefix(eb.Message, name) {
			t.Errorf("%s: message %q does not name the parameter", q, eb.Message)
		}
	}
	e.must(t, http.StatusNotFound, "GET", "/gateways/apiother/clients", nil, nil)

	// Details and subscriptions.
	c := cs["sensor-03"]
	c.send("SUB 1 rooms/+/temp")
	if l := c.line(); l != "SUBACK ok" {
		t.Fatalf("sub: %q", l)
	}
	c.send("PUB 0 rooms/1/temp 21")
	for {
		l := c.line()
		if l == "PUBACK ok" {
			break
		}
		if !strings.HasPrefix(l, "MSG") {
			t.Fatalf("pub: %q", l)
		}
	}
	var d map[string]any
	e.must(t, http.StatusOK, "GET", "/gateways/apitest/clients/sensor-03", nil, &d)
	if d["subscriptions_cnt"] != float64(1) || d["recv_msg"] != float64(1) || d["metrics"] == nil {
		t.Fatalf("details: %v", d)
	}
	var subs []subJSON
	e.must(t, http.StatusOK, "GET", "/gateways/apitest/clients/sensor-03/subscriptions", nil, &subs)
	if len(subs) != 1 || subs[0].Topic != "rooms/+/temp" || subs[0].QoS != 1 {
		t.Fatalf("subs: %+v", subs)
	}
	var sub subJSON
	e.must(t, http.StatusCreated, "POST", "/gateways/apitest/clients/sensor-03/subscriptions", map[string]any{"topic": "alarms/#", "qos": 0}, &sub)
	if sub.Topic != "alarms/#" || sub.ClientID != "sensor-03" {
		t.Fatalf("added: %+v", sub)
	}
	// The added subscription delivers to the device.
	cs["pump-1"].send("PUB 0 alarms/fire yes")
	if l := cs["pump-1"].line(); l != "PUBACK ok" {
		t.Fatalf("pump pub: %q", l)
	}
	if l := c.line(); !strings.Contains(l, "alarms/fire yes") {
		t.Fatalf("delivery through an API subscription: %q", l)
	}
	e.must(t, http.StatusBadRequest, "POST", "/gateways/apitest/clients/sensor-03/subscriptions", map[string]any{"topic": "a/#/b"}, nil)
	e.must(t, http.StatusBadRequest, "POST", "/gateways/apitest/clients/sensor-03/subscriptions", map[string]any{"topic": "a", "qos": 3}, nil)
	e.must(t, http.StatusBadRequest, "POST", "/gateways/apitest/clients/sensor-03/subscriptions", map[string]any{"qos": 1}, nil)
	e.must(t, http.StatusNoContent, "DELETE", "/gateways/apitest/clients/sensor-03/subscriptions/"+url.PathEscape("alarms/#"), nil, nil)
	e.must(t, http.StatusNoContent, "DELETE", "/gateways/apitest/clients/sensor-03/subscriptions/rooms/+/temp", nil, nil)
	e.must(t, http.StatusNotFound, "DELETE", "/gateways/apitest/clients/sensor-03/subscriptions/rooms/+/temp", nil, nil)
	e.must(t, http.StatusOK, "GET", "/gateways/apitest/clients/sensor-03/subscriptions", nil, &subs)
	if len(subs) != 0 {
		t.Fatalf("subs left: %+v", subs)
	}

	// Kick disconnects the device.
	e.must(t, http.StatusNoContent, "DELETE", "/gateways/apitest/clients/sensor-05", nil, nil)
	if l := cs["sensor-05"].line(); l != "KICK kicked" {
		t.Fatalf("kicked client got %q", l)
	}
	if l := cs["sensor-05"].line(); l != "" {
		t.Fatalf("kicked client's connection still open: %q", l)
	}
	e.must(t, http.StatusNotFound, "GET", "/gateways/apitest/clients/sensor-05", nil, &eb)
	if eb.Code != "CLIENTID_NOT_FOUND" {
		t.Fatalf("%+v", eb)
	}
	e.must(t, http.StatusNotFound, "DELETE", "/gateways/apitest/clients/sensor-05", nil, nil)
	if !cs["sensor-04"].alive() {
		t.Fatal("kick of one client dropped another")
	}
}
