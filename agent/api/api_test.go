package api

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestAuthRequired(t *testing.T) {
	e := startEnv(t, baseConfig, Options{})
	for _, p := range []string{"/healthz", "/readyz"} {
		e.must(t, http.StatusOK, "GET", p, nil, nil, req{noAuth: true})
	}
	code, body, h := e.do(t, "GET", "/gateways", nil, req{noAuth: true})
	if code != http.StatusUnauthorized || !strings.Contains(h.Get("WWW-Authenticate"), "Basic") || !strings.Contains(string(body), `"code":"UNAUTHORIZED"`) {
		t.Fatalf("no credentials: %d %s %v", code, body, h)
	}
	for _, r := range []req{
		{header: map[string]string{"Authorization": "Bearer nope"}, noAuth: true},
		{user: "admin", pass: "nope"},
		{user: "viewer", pass: "nope"},
		{user: "nobody", pass: viewerPass},
	} {
		if code, _, _ := e.do(t, "GET", "/gateways", nil, r); code != http.StatusUnauthorized {
			t.Errorf("%+v: %d, want 401", r, code)
		}
	}
	// The status page and the metrics need credentials too.
	for _, p := range []string{"!/", "!/metrics", "/metrics", "/status", "/config"} {
		if code, _, _ := e.do(t, "GET", p, nil, req{noAuth: true}); code != http.StatusUnauthorized {
			t.Errorf("GET %s without credentials: %d", p, code)
		}
	}
	// Token as bearer or as admin's basic-auth password, and both users.
	for _, r := range []req{{}, {user: "admin", pass: e.token}, {user: "viewer", pass: viewerPass}, {user: "ops", pass: opsPass}} {
		e.must(t, http.StatusOK, "GET", "/gateways", nil, nil, r)
	}
	// A viewer reads but does not write.
	var eb errBody
	e.must(t, http.StatusForbidden, "PUT", "/gateways/apitest/enable/false", nil, &eb, req{user: "viewer", pass: viewerPass})
	if eb.Code != "FORBIDDEN" {
		t.Fatalf("viewer write: %+v", eb)
	}
	e.must(t, http.StatusForbidden, "DELETE", "/gateways/apitest/clients/x", nil, nil, req{user: "viewer", pass: viewerPass})
	e.must(t, http.StatusNoContent, "PUT", "/gateways/apitest/enable/false", nil, nil, req{user: "ops", pass: opsPass})
	// Writes from another origin are refused (a page elsewhere cannot
	// use the browser's cached basic auth).
	e.must(t, http.StatusForbidden, "PUT", "/gateways/apitest/enable/true", nil, nil, req{header: map[string]string{"Origin": "http://evil.example"}})
	e.must(t, http.StatusNoContent, "PUT", "/gateways/apitest/enable/true", nil, nil, req{header: map[string]string{"Origin": e.base}})
}

func TestTokenFile(t *testing.T) {
	e := startEnv(t, baseConfig, Options{})
	path := filepath.Join(e.data, TokenFile)
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v", fi.Mode().Perm())
	}
	if len(e.token) < 32 {
		t.Fatalf("token %d chars", len(e.token))
	}
	// Reused by the next start, and tightened if someone opened it up.
	if err := os.Chmod(path, 0o644); err != nil {
		t.Fatal(err)
	}
	e.stop()
	old := e.token
	e.boot(t)
	if e.token != old {
		t.Fatal("token changed across restarts")
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o600 {
		t.Fatalf("token file mode %v after restart", fi.Mode().Perm())
	}
	e.must(t, http.StatusOK, "GET", "/gateways", nil, nil)
}

func TestNotFoundAndMethods(t *testing.T) {
	e := startEnv(t, baseConfig, Options{})
	var eb errBody
	e.must(t, http.StatusNotFound, "GET", "/nope", nil, &eb)
	if eb.Code != "NOT_FOUND" {
		t.Fatalf("%+v", eb)
	}
	code, body, h := e.do(t, "POST", "/gateways", map[string]any{})
	if code != http.StatusMethodNotAllowed || h.Get("Allow") != "GET" {
		t.Fatalf("POST /gateways: %d %s allow %q", code, body, h.Get("Allow"))
	}
	e.must(t, http.StatusNotFound, "GET", "/gateways/nosuchkind", nil, &eb)
	if !strings.Contains(eb.Message, "apitest") {
		t.Fatalf("404 should list the kinds: %+v", eb)
	}
}
