package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent"
	"github.com/edgeway/edgeway/agent/api"
	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/internal/testkind"
)

func init() {
	testkind.Register("ctltest")
	testkind.Register("ctlother")
}

// ctlAgent runs an agent with its API in this process, its API on a port
// written in the config, so that ctl finds both the API and the token
// from -c alone.
func ctlAgent(t *testing.T) (cfgPath string, a *agent.Agent) {
	t.Helper()
	dir := t.TempDir()
	cfgPath = filepath.Join(dir, "edgeway.toml")
	src := `# ctl test box
[agent]
id = "ctl-box"
data_dir = "` + filepath.Join(dir, "data") + `"
security_profile = "legacy"

[api]
listen = "` + freePort(t) + `"

[gateway.ctltest.listeners.tcp.a]
bind = "127.0.0.1:0"

[uplink]
enable = false
password = "upstream-secret"
`
	if err := os.WriteFile(cfgPath, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	a, err = agent.New(cfg, agent.Options{ConfigPath: cfgPath, BoardRoot: t.TempDir(), Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := api.New(a, api.Options{ConfigPath: cfgPath, HashIterations: 1000})
	if err := s.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Stop(ctx)
		a.Stop(ctx)
	})
	return cfgPath, a
}

func runCtl(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = cmdCtl(args, &o, &e)
	return code, o.String(), e.String()
}

// ctlOK runs ctl and wants exit 0 and stdout containing every want.
func ctlOK(t *testing.T, args []string, want ...string) string {
	t.Helper()
	code, out, errOut := runCtl(args...)
	if code != 0 {
		t.Fatalf("ctl %s: exit %d: %s%s", strings.Join(args, " "), code, out, errOut)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("ctl %s: no %q in\n%s", strings.Join(args, " "), w, out)
		}
	}
	return out
}

type ctlClient struct {
	c net.Conn
	r *bufio.Reader
}

func ctlDial(t *testing.T, addr, id string) *ctlClient {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	cc := &ctlClient{c: c, r: bufio.NewReader(c)}
	c.Write([]byte("CONNECT " + id + " - x\n"))
	if l := cc.line(); !strings.HasPrefix(l, "CONNACK ok") {
		t.Fatalf("connect %s: %q", id, l)
	}
	return cc
}

func (c *ctlClient) line() string {
	_ = c.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	l, _ := c.r.ReadString('\n')
	return strings.TrimSpace(l)
}

func TestCtl(t *testing.T) {
	cfg, a := ctlAgent(t)
	g, _ := a.Gateways().Get("ctltest")
	dev := ctlDial(t, g.Listeners()[0].Addr(), "dev-7")
	c := []string{"-c", cfg}
	with := func(args ...string) []string { return append(append([]string(nil), c...), args...) }

	ctlOK(t, with("gateway", "list"), "NAME", "ctltest", "running", "ctltest:tcp:a(up)", "ctlother", "unloaded")
	ctlOK(t, with("gateway-registry", "list"), "ctltest", "tcp")
	ctlOK(t, with("gateway", "lookup", "ctltest"), "status", "running", "ctltest:tcp:a", "LISTENER")
	ctlOK(t, with("gateway-clients", "list", "ctltest"), "dev-7", "127.0.0.1:", "ctltest:tcp:a", "1 client(s)")
	out := ctlOK(t, with("--json", "gateway-clients", "list", "ctltest"))
	var list []map[string]any
	if err := json.Unmarshal([]byte(out), &list); err != nil || len(list) != 1 || list[0]["clientid"] != "dev-7" {
		t.Fatalf("--json list: %v %s", err, out)
	}
	ctlOK(t, with("gateway-clients", "lookup", "ctltest", "dev-7"), "clientid", "dev-7", "subscriptions_cnt")
	ctlOK(t, with("gateway-metrics", "ctltest"), "connections.count", "ctltest:tcp:a")

	ctlOK(t, with("gateway-clients", "kick", "ctltest", "dev-7"), "ok")
	if l := dev.line(); l != "KICK kicked" {
		t.Fatalf("kicked device got %q", l)
	}
	code, _, errOut := runCtl(with("gateway-clients", "kick", "ctltest", "dev-7")...)
	if code != 1 || !strings.Contains(errOut, "CLIENTID_NOT_FOUND") {
		t.Fatalf("kick again: %d %s", code, errOut)
	}

	ctlOK(t, with("gateway", "stop", "ctltest"), "ok")
	if g.Status() != "stopped" {
		t.Fatalf("after stop: %s", g.Status())
	}
	ctlOK(t, with("gateway", "start", "ctltest"), "ok")
	if g.Status() != "running" {
		t.Fatalf("after start: %s", g.Status())
	}

	// load from a TOML file, update from inline JSON (as EMQX's ctl), unload.
	sec := filepath.Join(t.TempDir(), "other.toml")
	os.WriteFile(sec, []byte("greeting = \"yo\"\n[listeners.tcp.b]\nbind = \"127.0.0.1:0\"\n"), 0o600)
	ctlOK(t, with("gateway", "load", "ctlother", sec), "ok")
	if o, ok := a.Gateways().Get("ctlother"); !ok || o.Status() != "running" {
		t.Fatal("ctlother not loaded")
	}
	ctlOK(t, with("gateway", "load", "ctlother", `{"greeting":"hey","listeners":[{"type":"tcp","name":"b","bind":"127.0.0.1:0"}]}`), "ok")
	code, _, errOut = runCtl(with("gateway", "load", "ctlother", `{"greting":"typo"}`)...)
	if code != 1 || !strings.Contains(errOut, "gateway.ctlother.greting: unknown key") {
		t.Fatalf("bad load: %d %s", code, errOut)
	}
	ctlOK(t, with("gateway", "unload", "ctlother"), "ok")
	if _, ok := a.Gateways().Get("ctlother"); ok {
		t.Fatal("ctlother still loaded")
	}

	code, _, errOut = runCtl(with("uplink", "status")...)
	if code != 1 || !strings.Contains(errOut, "no uplink") {
		t.Fatalf("uplink status without one: %d %s", code, errOut)
	}

	// config get / push / check.
	text := ctlOK(t, with("config", "get"), "# ctl test box", `password = "******"`)
	if strings.Contains(text, "upstream-secret") {
		t.Fatal("config get shows a secret")
	}
	next := filepath.Join(t.TempDir(), "next.toml")
	os.WriteFile(next, []byte(strings.Replace(text, "[gateway.ctltest.listeners.tcp.a]", "[gateway.ctltest.listeners.tcp.z]\nbind = \"127.0.0.1:0\"\n\n[gateway.ctltest.listeners.tcp.a]", 1)), 0o600)
	ctlOK(t, with("config", "push", next), "applied: gateway.ctltest")
	if _, ok := g.Listener("ctltest:tcp:z"); !ok {
		t.Fatal("pushed listener not running")
	}
	if b, _ := os.ReadFile(cfg); !strings.Contains(string(b), "upstream-secret") {
		t.Fatal("push through the masked text lost the secret")
	}
	ctlOK(t, with("config", "push", next), "no changes")
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte(strings.Replace(text, "[api]", "[api]\nlisten_on = 1", 1)), 0o600)
	code, _, errOut = runCtl(with("config", "push", bad)...)
	if code != 1 || !strings.Contains(errOut, bad+":") || !strings.Contains(errOut, "api.listen_on: unknown key") {
		t.Fatalf("bad push: %d %s", code, errOut)
	}
	ctlOK(t, []string{"config", "check", next}, "ok")
	if code, _, errOut := runCtl("config", "check", bad); code != 1 || !strings.Contains(errOut, "api.listen_on") {
		t.Fatalf("check bad: %d %s", code, errOut)
	}
}

func TestCtlFlagsAndErrors(t *testing.T) {
	cfg, a := ctlAgent(t)
	b, _ := os.ReadFile(filepath.Join(a.Config().Agent.DataDir, api.TokenFile))
	tok := strings.TrimSpace(string(b))
	apiURL := "http://" + a.Config().API.Listen
	// --api and --token need no config; flags may follow the verb.
	ctlOK(t, []string{"--api", apiURL, "--token=" + tok, "gateway", "list"}, "ctltest")
	ctlOK(t, []string{"gateway", "list", "--api=" + apiURL, "--token", tok}, "ctltest")

	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--api", apiURL, "--token", "wrong", "gateway", "list"}, 1, "UNAUTHORIZED"},
		{[]string{"-c", cfg, "gateway", "lookup", "nope"}, 1, "no gateway kind"},
		{[]string{"-c", cfg, "gateway", "fly"}, 2, "unknown command"},
		{[]string{"-c", cfg, "gateway", "lookup"}, 2, "usage: edgeway ctl gateway lookup NAME"},
		{[]string{"-c", cfg, "--frobnicate", "gateway", "list"}, 2, "unknown flag"},
		{[]string{"-c", cfg}, 2, "usage"},
		{[]string{"-c", filepath.Join(t.TempDir(), "missing.toml"), "gateway", "list"}, 1, "config"},
		{[]string{"--api", "http://127.0.0.1:1", "--token", "x", "gateway", "list"}, 1, "cannot reach the agent"},
	} {
		code, out, errOut := runCtl(tc.args...)
		if code != tc.code || !strings.Contains(out+errOut, tc.msg) {
			t.Errorf("ctl %s: exit %d, %q; want %d with %q", strings.Join(tc.args, " "), code, out+errOut, tc.code, tc.msg)
		}
	}
}
