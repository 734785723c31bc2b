package api

import (
	"net/http"
	"strings"
	"testing"

	"github.com/edgeway/edgeway/agent/config"
)

type gwJSON struct {
	Name               string    `json:"name"`
	Status             string    `json:"status"`
	CurrentConnections int       `json:"current_connections"`
	MaxConnections     any       `json:"max_connections"`
	Mountpoint         string    `json:"mountpoint"`
	Enable             bool      `json:"enable"`
	Greeting           string    `json:"greeting"`
	Listeners          []lisJSON `json:"listeners"`
}

type lisJSON struct {
	ID                 string `json:"id"`
	Type               string `json:"type"`
	Name               string `json:"name"`
	Bind               string `json:"bind"`
	Address            string `json:"address"`
	Running            bool   `json:"running"`
	CurrentConnections int    `json:"current_connections"`
	MaxConnections     any    `json:"max_connections"`
}

func TestGateways(t *testing.T) {
	e := startEnv(t, baseConfig, Options{})
	c := dial(t, e.listenerAddr(t, "apitest", "apitest:tcp:a"), "dev1", "", "x")

	var list []gwJSON
	e.must(t, http.StatusOK, "GET", "/gateways", nil, &list)
	st := map[string]gwJSON{}
	for _, g := range list {
		st[g.Name] = g
	}
	if st["apitest"].Status != "running" || st["apitest"].CurrentConnections != 1 || len(st["apitest"].Listeners) != 1 || st["apiother"].Status != "unloaded" {
		t.Fatalf("list: %+v", list)
	}
	e.must(t, http.StatusOK, "GET", "/gateways?status=unloaded", nil, &list)
	for _, g := range list {
		if g.Status != "unloaded" || g.Name == "apitest" {
			t.Fatalf("status filter: %+v", list)
		}
	}
	e.must(t, http.StatusBadRequest, "GET", "/gateways?status=sleepy", nil, nil)

	var g gwJSON
	e.must(t, http.StatusOK, "GET", "/gateways/apitest", nil, &g)
	if g.Mountpoint != "t/" || g.Greeting != "hello" || !g.Enable || g.Listeners[0].ID != "apitest:tcp:a" || !g.Listeners[0].Running || g.Listeners[0].MaxConnections != float64(1024) {
		t.Fatalf("get: %+v", g)
	}
	e.must(t, http.StatusOK, "GET", "/gateways/apiother", nil, &g)
	if g.Status != "unloaded" {
		t.Fatalf("unloaded: %+v", g)
	}

	// PUT loads an unloaded gateway (TOML body)...
	e.must(t, http.StatusNoContent, "PUT", "/gateways/apiother", "greeting = \"hi\"\n[listeners.tcp.x]\nbind = \"127.0.0.1:0\"\n", nil)
	e.must(t, http.StatusOK, "GET", "/gateways/apiother", nil, &g)
	if g.Status != "running" || g.Greeting != "hi" || len(g.Listeners) != 1 || !g.Listeners[0].Running {
		t.Fatalf("loaded: %+v", g)
	}
	// ...and updates a loaded one (JSON, EMQX's list of listeners, the
	// GET answer's state fields sent back as they were).
	e.must(t, http.StatusNoContent, "PUT", "/gateways/apiother", map[string]any{
		"name": "apiother", "status": "running", "current_connections": 0, "greeting": "hey",
		"listeners": []map[string]any{{"id": "apiother:tcp:x", "type": "tcp", "name": "x", "bind": "127.0.0.1:0", "running": true, "max_connections": "infinity"}},
	}, nil)
	e.must(t, http.StatusOK, "GET", "/gateways/apiother", nil, &g)
	if g.Greeting != "hey" || g.Listeners[0].MaxConnections != "infinity" {
		t.Fatalf("updated: %+v", g)
	}
	if !c.alive() {
		t.Fatal("a client of apitest was dropped by an update of apiother")
	}
	f := e.file(t)
	if !strings.Contains(f, "# the gateway the tests use") || !strings.Contains(f, `greeting = "hey"`) {
		t.Fatalf("file after PUT:\n%s", f)
	}

	// Bad bodies: key-named config errors, nothing changed.
	var eb errBody
	e.must(t, http.StatusBadRequest, "PUT", "/gateways/apiother", map[string]any{"greting": "typo", "listeners": map[string]any{"tcp": map[string]any{"x": map[string]any{"bind": "nope"}}}}, &eb)
	keys := []string{}
	for _, ce := range eb.Errors {
		keys = append(keys, ce.Key)
	}
	if eb.Code != "BAD_CONFIG" || strings.Join(keys, ",") != "gateway.apiother.greting,gateway.apiother.listeners.tcp.x.bind" && strings.Join(keys, ",") != "gateway.apiother.listeners.tcp.x.bind,gateway.apiother.greting" {
		t.Fatalf("bad body: %+v", eb)
	}
	e.must(t, http.StatusOK, "GET", "/gateways/apiother", nil, &g)
	if g.Greeting != "hey" {
		t.Fatalf("bad PUT changed the gateway: %+v", g)
	}
	e.must(t, http.StatusBadRequest, "PUT", "/gateways/apiother", "greeting = ", &eb)
	if eb.Code != "BAD_REQUEST" || !strings.Contains(eb.Message, "line 1") {
		t.Fatalf("bad TOML: %+v", eb)
	}
	e.must(t, http.StatusBadRequest, "PUT", "/gateways/apiother", "[1,2]", &eb, req{ctype: "application/json"})
	e.must(t, http.StatusUnsupportedMediaType, "PUT", "/gateways/apiother", "greeting=1", &eb, req{ctype: "application/x-www-form-urlencoded"})
	e.must(t, http.StatusBadRequest, "PUT", "/gateways/apiother", map[string]any{"name": "apitest"}, &eb)
	e.must(t, http.StatusRequestEntityTooLarge, "PUT", "/gateways/apiother", "greeting = \""+strings.Repeat("x", 2<<20)+"\"\n", &eb)
	if eb.Code != "PAYLOAD_TOO_LARGE" {
		t.Fatalf("413: %+v", eb)
	}

	// enable/false stops (and kicks), true starts again; the file keeps it.
	e.must(t, http.StatusNoContent, "PUT", "/gateways/apitest/enable/false", nil, nil)
	e.must(t, http.StatusOK, "GET", "/gateways/apitest", nil, &g)
	if g.Status != "stopped" || g.Enable {
		t.Fatalf("disabled: %+v", g)
	}
	if l := c.line(); !strings.HasPrefix(l, "KICK") {
		t.Fatalf("client of a disabled gateway got %q", l)
	}
	if !strings.Contains(e.file(t), "[gateway.apitest]\nenable = false\nmountpoint") {
		t.Fatalf("enable not written in place:\n%s", e.file(t))
	}
	e.must(t, http.StatusNoContent, "PUT", "/gateways/apitest/enable/true", nil, nil)
	e.must(t, http.StatusOK, "GET", "/gateways/apitest", nil, &g)
	if g.Status != "running" {
		t.Fatalf("enabled: %+v", g)
	}
	e.must(t, http.StatusBadRequest, "PUT", "/gateways/apitest/enable/maybe", nil, nil)
	e.must(t, http.StatusNotFound, "PUT", "/gateways/apiother2/enable/true", nil, nil)

	// DELETE unloads and takes the section out of the file.
	e.must(t, http.StatusNoContent, "DELETE", "/gateways/apiother", nil, nil)
	e.must(t, http.StatusOK, "GET", "/gateways/apiother", nil, &g)
	if g.Status != "unloaded" || strings.Contains(e.file(t), "apiother") {
		t.Fatalf("unloaded: %+v\n%s", g, e.file(t))
	}
	e.must(t, http.StatusNotFound, "DELETE", "/gateways/apiother", nil, nil)
	if _, err := config.Load(e.path); err != nil {
		t.Fatalf("file no longer loads: %v", err)
	}
}

func TestListeners(t *testing.T) {
	e := startEnv(t, baseConfig, Options{})
	ca := dial(t, e.listenerAddr(t, "apitest", "apitest:tcp:a"), "on-a", "", "x")

	var ls []lisJSON
	e.must(t, http.StatusOK, "GET", "/gateways/apitest/listeners", nil, &ls)
	if len(ls) != 1 || ls[0].ID != "apitest:tcp:a" || ls[0].CurrentConnections != 1 || ls[0].Address == "" {
		t.Fatalf("list: %+v", ls)
	}
	var l lisJSON
	e.must(t, http.StatusCreated, "POST", "/gateways/apitest/listeners", map[string]any{"type": "tcp", "name": "b", "bind": "127.0.0.1:0", "max_connections": 5}, &l)
	if l.ID != "apitest:tcp:b" || !l.Running || l.MaxConnections != float64(5) {
		t.Fatalf("created: %+v", l)
	}
	cb := dial(t, e.listenerAddr(t, "apitest", "apitest:tcp:b"), "on-b", "", "x")
	e.must(t, http.StatusConflict, "POST", "/gateways/apitest/listeners", map[string]any{"type": "tcp", "name": "b"}, nil)
	e.must(t, http.StatusBadRequest, "POST", "/gateways/apitest/listeners", map[string]any{"bind": "127.0.0.1:0"}, nil)
	var eb errBody
	e.must(t, http.StatusBadRequest, "POST", "/gateways/apitest/listeners", map[string]any{"type": "udp", "name": "u"}, &eb)
	if eb.Code != "BAD_CONFIG" || len(eb.Errors) == 0 || !strings.Contains(eb.Errors[0].Msg, "not available") {
		t.Fatalf("bad type: %+v", eb)
	}

	e.must(t, http.StatusOK, "GET", "/gateways/apitest/listeners/apitest:tcp:b", nil, &l)
	e.must(t, http.StatusNotFound, "GET", "/gateways/apitest/listeners/apitest:tcp:zz", nil, nil)
	e.must(t, http.StatusNotFound, "GET", "/gateways/apitest/listeners/apiother:tcp:b", nil, nil)
	e.must(t, http.StatusBadRequest, "GET", "/gateways/apitest/listeners/nocolons", nil, nil)

	// Updating b keeps a's client, and a limit change keeps b's socket.
	e.must(t, http.StatusOK, "PUT", "/gateways/apitest/listeners/apitest:tcp:b", map[string]any{"bind": "127.0.0.1:0", "max_connections": 7}, &l)
	if l.MaxConnections != float64(7) {
		t.Fatalf("put: %+v", l)
	}
	e.must(t, http.StatusBadRequest, "PUT", "/gateways/apitest/listeners/apitest:tcp:b", map[string]any{"bind": "127.0.0.1:0", "type": "udp"}, nil)
	e.must(t, http.StatusBadRequest, "PUT", "/gateways/apitest/listeners/apitest:tcp:b", map[string]any{"bind": "127.0.0.1:0", "max_connections": -1}, &eb)
	if len(eb.Errors) != 1 || eb.Errors[0].Key != "gateway.apitest.listeners.tcp.b.max_connections" {
		t.Fatalf("bad listener: %+v", eb)
	}
	if !ca.alive() {
		t.Fatal("listener a's client dropped by a change of b")
	}

	e.must(t, http.StatusNoContent, "DELETE", "/gateways/apitest/listeners/apitest:tcp:b", nil, nil)
	if l := cb.line(); !strings.HasPrefix(l, "KICK") {
		t.Fatalf("client of a deleted listener got %q", l)
	}
	if !ca.alive() {
		t.Fatal("listener a's client dropped by deleting b")
	}
	e.must(t, http.StatusNotFound, "DELETE", "/gateways/apitest/listeners/apitest:tcp:b", nil, nil)
	if strings.Contains(e.file(t), "tcp.b") {
		t.Fatalf("listener b still in the file:\n%s", e.file(t))
	}
}
