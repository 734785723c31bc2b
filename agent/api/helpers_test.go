package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent"
	"github.com/edgeway/edgeway/agent/auth"
	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/internal/testkind"
)

func init() {
	testkind.Register("apitest")
	testkind.Register("apiother")
}

// Passwords of the [[api.users]] in baseConfig.
const (
	viewerPass = "look-but-do-not-touch"
	opsPass    = "ops-can-do-it"
)

var viewerHash, opsHash = mustHash(viewerPass), mustHash(opsPass)

func mustHash(pw string) string {
	h, err := auth.HashPassword(pw, auth.MinIterations)
	if err != nil {
		panic(err)
	}
	return h
}

// baseConfig: DATA is replaced by the data dir.
var baseConfig = `# test box
[agent]
id = "box-1"
data_dir = "DATA"
security_profile = "legacy"

[api]
listen = "127.0.0.1:0"

[[api.users]]
username = "viewer"
password_hash = "` + viewerHash + `"
role = "viewer"

[[api.users]]
username = "ops"
password_hash = "` + opsHash + `"
role = "admin"

# the gateway the tests use
[gateway.apitest]
mountpoint = "t/"

[gateway.apitest.listeners.tcp.a]
bind = "127.0.0.1:0"
`

type env struct {
	t     *testing.T
	a     *agent.Agent
	s     *Server
	base  string
	token string
	path  string
	data  string
	opts  Options
}

func startEnv(t testing.TB, src string, opts Options) *env {
	t.Helper()
	dir := t.TempDir()
	data := filepath.Join(dir, "data")
	path := filepath.Join(dir, "edgeway.toml")
	if err := os.WriteFile(path, []byte(strings.ReplaceAll(src, "DATA", data)), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &env{path: path, data: data, opts: opts}
	if tt, ok := t.(*testing.T); ok {
		e.t = tt
	}
	e.boot(t)
	return e
}

// boot starts an agent and a server from the config file.
func (e *env) boot(t testing.TB) {
	t.Helper()
	cfg, err := config.Load(e.path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := agent.New(cfg, agent.Options{ConfigPath: e.path, BoardRoot: t.TempDir(), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	o := e.opts
	o.ConfigPath = e.path
	if o.HashIterations == 0 {
		o.HashIterations = auth.MinIterations
	}
	s := New(a, o)
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.a, e.s = a, s
	e.base = "http://" + s.Addr()
	tok, err := os.ReadFile(filepath.Join(e.data, TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	e.token = strings.TrimSpace(string(tok))
	t.Cleanup(e.stop)
}

func (e *env) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = e.s.Stop(ctx)
	_ = e.a.Stop(ctx)
}

// req is one API request; the zero value is a GET with the token.
type req struct {
	user, pass string // basic auth instead of the token
	noAuth     bool
	ctype      string
	header     map[string]string
}

func (e *env) do(t testing.TB, method, path string, body any, o ...req) (int, []byte, http.Header) {
	t.Helper()
	var r req
	if len(o) > 0 {
		r = o[0]
	}
	var rd io.Reader
	ctype := r.ctype
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
		if ctype == "" {
			ctype = "application/toml"
		}
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(j)
		if ctype == "" {
			ctype = "application/json"
		}
	}
	url := e.base + path
	if !strings.HasPrefix(path, "!") {
		url = e.base + Prefix + path
	} else {
		url = e.base + path[1:]
	}
	hr, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if ctype != "" {
		hr.Header.Set("Content-Type", ctype)
	}
	switch {
	case r.noAuth:
	case r.user != "":
		hr.SetBasicAuth(r.user, r.pass)
	default:
		hr.Header.Set("Authorization", "Bearer "+e.token)
	}
	for k, v := range r.header {
		hr.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, out, resp.Header
}

// must does a request that must answer status, and decodes JSON into v.
func (e *env) must(t testing.TB, status int, method, path string, body any, v any, o ...req) []byte {
	t.Helper()
	code, out, _ := e.do(t, method, path, body, o...)
	if code != status {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, code, status, out)
	}
	if v != nil {
		if err := json.Unmarshal(out, v); err != nil {
			t.Fatalf("%s %s: %v in %s", method, path, err, out)
		}
	}
	return out
}

// errBody is the API's error answer, with config errors.
type errBody struct {
	Code    string        `json:"code"`
	Message string        `json:"message"`
	Errors  []ConfigError `json:"errors"`
}

func (e *env) listenerAddr(t testing.TB, gw, id string) string {
	t.Helper()
	g, ok := e.a.Gateways().Get(gw)
	if !ok {
		t.Fatalf("gateway %s not loaded", gw)
	}
	l, ok := g.Listener(id)
	if !ok {
		t.Fatalf("listener %s not running", id)
	}
	return l.Addr()
}

func (e *env) file(t testing.TB) string {
	t.Helper()
	b, err := os.ReadFile(e.path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tclient is a device of the test kind over TCP.
type tclient struct {
	t  testing.TB
	c  net.Conn
	r  *bufio.Reader
	id string
}

func dial(t testing.TB, addr, id, user, pass string) *tclient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	tc := &tclient{t: t, c: c, r: bufio.NewReader(c), id: id}
	t.Cleanup(func() { c.Close() })
	if user == "" {
		user = "-"
	}
	tc.send("CONNECT " + id + " " + user + " " + pass)
	if l := tc.line(); !strings.HasPrefix(l, "CONNACK ok") {
		t.Fatalf("%s: connect: %q", id, l)
	}
	return tc
}

func (c *tclient) send(line string) {
	c.t.Helper()
	if _, err := io.WriteString(c.c, line+"\n"); err != nil {
		c.t.Fatalf("%s: send: %v", c.id, err)
	}
}

// line reads the next line ("" at EOF).
func (c *tclient) line() string {
	c.t.Helper()
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, err := c.r.ReadString('\n')
	if err != nil && l == "" {
		return ""
	}
	return strings.TrimRight(l, "\n")
}

// alive asks the gateway who the client is: a connected client answers.
func (c *tclient) alive() bool {
	c.t.Helper()
	if _, err := io.WriteString(c.c, "WHOAMI\n"); err != nil {
		return false
	}
	return strings.HasPrefix(c.line(), "ME "+c.id)
}
