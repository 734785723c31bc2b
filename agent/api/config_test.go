package api

import (
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/edgeway/edgeway/agent"
)

const uplinkSecret = "cloud-pa55word"

func TestConfigGetPut(t *testing.T) {
	src := baseConfig + "\n[gateway.apiother.listeners.tcp.o]\nbind = \"127.0.0.1:0\"\n\n[uplink]\nenable = false\nusername = \"box\"\npassword = \"" + uplinkSecret + "\"\n"
	e := startEnv(t, src, Options{})
	ca := dial(t, e.listenerAddr(t, "apitest", "apitest:tcp:a"), "stays", "", "x")
	co := dial(t, e.listenerAddr(t, "apiother", "apiother:tcp:o"), "goes", "", "x")

	// GET: the file as written, comments kept, secrets masked.
	_, body, h := e.do(t, "GET", "/config", nil)
	text := string(body)
	if !strings.HasPrefix(h.Get("Content-Type"), "application/toml") || !strings.HasPrefix(text, "# test box\n") {
		t.Fatalf("GET /config: %s\n%s", h.Get("Content-Type"), text)
	}
	for _, secret := range []string{uplinkSecret, viewerHash, opsHash} {
		if strings.Contains(text, secret) {
			t.Fatalf("secret %q in GET /config:\n%s", secret, text)
		}
	}
	if strings.Count(text, `"******"`) != 3 {
		t.Fatalf("masked values:\n%s", text)
	}
	e.must(t, http.StatusOK, "GET", "/config", nil, nil, req{user: "viewer", pass: viewerPass})

	// The masked text sent back is a no-op, and keeps the secrets.
	var rep agent.Report
	e.must(t, http.StatusOK, "PUT", "/config", text, &rep)
	if len(rep.Applied)+len(rep.RestartRequired) != 0 {
		t.Fatalf("round trip changed something: %+v", rep)
	}
	f := e.file(t)
	if !strings.Contains(f, uplinkSecret) || !strings.Contains(f, viewerHash) || !strings.Contains(f, "# the gateway the tests use") {
		t.Fatalf("secrets or comments lost:\n%s", f)
	}
	e.must(t, http.StatusOK, "GET", "/gateways", nil, nil, req{user: "viewer", pass: viewerPass})

	// Bad pushes: nothing changes, the errors name the key (and line).
	before := e.file(t)
	addr := e.listenerAddr(t, "apiother", "apiother:tcp:o")
	var eb errBody
	e.must(t, http.StatusBadRequest, "PUT", "/config", strings.Replace(text, "[gateway.apitest]\n", "[gateway.apitest]\nmountpont = \"x/\"\n", 1), &eb)
	if eb.Code != "BAD_CONFIG" || len(eb.Errors) != 1 || eb.Errors[0].Key != "gateway.apitest.mountpont" || eb.Errors[0].Line == 0 || eb.Errors[0].Msg != "unknown key" {
		t.Fatalf("unknown key: %+v", eb)
	}
	eb = errBody{}
	e.must(t, http.StatusBadRequest, "PUT", "/config", "[agent\nid = 1\n", &eb)
	if eb.Code != "BAD_CONFIG" || eb.Errors[0].Line == 0 || eb.Errors[0].Key != "" || !strings.Contains(eb.Errors[0].Msg, "syntax") {
		t.Fatalf("bad TOML: %+v", eb)
	}
	e.must(t, http.StatusUnsupportedMediaType, "PUT", "/config", map[string]any{"agent": map[string]any{}}, nil)
	e.must(t, http.StatusForbidden, "PUT", "/config", text, nil, req{user: "viewer", pass: viewerPass})
	if e.file(t) != before || e.listenerAddr(t, "apiother", "apiother:tcp:o") != addr || !co.alive() || !ca.alive() {
		t.Fatal("a refused push changed the file or the running gateways")
	}

	// A good push: apiother goes, apitest (unchanged) keeps its client.
	next := strings.Replace(text, "\n[gateway.apiother.listeners.tcp.o]\nbind = \"127.0.0.1:0\"\n", "\n", 1)
	next = strings.Replace(next, `username = "box"`, `username = "box2"`, 1)
	e.must(t, http.StatusOK, "PUT", "/config", next, &rep)
	// The uplink section changed too; whether live or on restart is the
	// agent's business.
	all := strings.Join(append(rep.Applied, rep.RestartRequired...), ",")
	if !strings.Contains(strings.Join(rep.Applied, ","), "gateway.apiother") || !strings.Contains(all, "uplink") || strings.Contains(all, "apitest") {
		t.Fatalf("report: %+v", rep)
	}
	if l := co.line(); !strings.HasPrefix(l, "KICK") {
		t.Fatalf("client of the removed gateway got %q", l)
	}
	if !ca.alive() {
		t.Fatal("client of an unchanged gateway was dropped")
	}
	f = e.file(t)
	if strings.Contains(f, "apiother") || !strings.Contains(f, uplinkSecret) || !strings.Contains(f, `username = "box2"`) {
		t.Fatalf("file after push:\n%s", f)
	}
	if hist, _ := e.a.History(); len(hist) != 2 {
		t.Fatalf("history: %v", hist)
	}
	// Later API edits start from the pushed text.
	e.must(t, http.StatusNoContent, "PUT", "/gateways/apitest/enable/false", nil, nil)
	if f := e.file(t); !strings.Contains(f, `username = "box2"`) || !strings.Contains(f, "enable = false") {
		t.Fatalf("edit after push:\n%s", f)
	}
}

// A SIGHUP-style reload from the file is what later API edits build on.
func TestEditsFollowReloads(t *testing.T) {
	e := startEnv(t, baseConfig, Options{})
	f := e.file(t) + "\n[gateway.apiother]\n"
	if err := os.WriteFile(e.path, []byte(f), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := e.a.ApplyTOML(t.Context(), []byte(f), "file", false); err != nil {
		t.Fatal(err)
	}
	e.must(t, http.StatusNoContent, "PUT", "/gateways/apitest/enable/false", nil, nil)
	if _, ok := e.a.Gateways().Get("apiother"); !ok || !strings.Contains(e.file(t), "[gateway.apiother]") {
		t.Fatalf("the API edit undid a reload:\n%s", e.file(t))
	}
}
