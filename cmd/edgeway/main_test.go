package main

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/auth"
)

var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edgeway-bin")
	if err != nil {
		panic(err)
	}
	binary = filepath.Join(dir, "edgeway")
	// The subprocess carries the test-only "linetest" kind so reloads have
	// a gateway to act on.
	out, err := exec.Command("go", "build", "-tags", "testkind", "-o", binary, ".").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "build: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// syncBuf collects a subprocess's stderr.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func accepts(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
	if err != nil {
		return false
	}
	c.Close()
	return true
}

type lineClient struct {
	c net.Conn
	r *bufio.Reader
}

func (l *lineClient) ask(t *testing.T, cmd string) string {
	t.Helper()
	if cmd != "" {
		fmt.Fprintf(l.c, "%s\n", cmd)
	}
	_ = l.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	s, err := l.r.ReadString('\n')
	if err != nil && s == "" {
		return "EOF"
	}
	return strings.TrimSpace(s)
}

const baseConfig = `
[agent]
id = "test-box"
data_dir = %q
security_profile = "legacy"
shutdown_timeout = "5s"
[agent.log]
level = "info"
format = "json"
[api]
listen = "127.0.0.1:0"
[gateway.linetest.listeners.tcp.one]
bind = %q
`

func TestRunReloadStop(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "edgeway.toml")
	one, two := freePort(t), freePort(t)
	write := func(s string) {
		if err := os.WriteFile(cfgPath, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write(fmt.Sprintf(baseConfig, filepath.Join(dir, "data"), one))

	var logs syncBuf
	cmd := exec.Command(binary, "run", "--config", cfgPath)
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
		}
	})
	waitFor(t, "listener one", func() bool { return accepts(one) })

	conn, err := net.Dial("tcp", one)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &lineClient{c: conn, r: bufio.NewReader(conn)}
	if got := c.ask(t, "CONNECT c1 u p"); !strings.HasPrefix(got, "CONNACK ok") {
		t.Fatalf("connect: %q", got)
	}

	// SIGHUP with a changed file: a second listener and a new log level
	// are applied; the client on the unchanged listener stays.
	changed := fmt.Sprintf(baseConfig, filepath.Join(dir, "data"), one) + fmt.Sprintf("[gateway.linetest.listeners.tcp.two]\nbind = %q\n", two)
	write(strings.Replace(changed, `level = "info"`, `level = "debug"`, 1))
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "listener two after SIGHUP", func() bool { return accepts(two) })
	waitFor(t, "reload log", func() bool { return strings.Contains(logs.String(), `"msg":"config reloaded"`) })
	if l := logs.String(); !strings.Contains(l, `"applied":["agent.log.level","gateway.linetest"]`) {
		t.Fatalf("reload did not report what it applied:\n%s", l)
	}
	if got := c.ask(t, "WHOAMI"); got != "ME c1" {
		t.Fatalf("client on unchanged listener disturbed: %q", got)
	}

	// SIGHUP with a broken file: rejected key by key, running config kept.
	write(changed + "[gateway.linetest.listeners.tcp.three]\nbind = \"nope\"\nbogus = 1\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "rejection log", func() bool { return strings.Contains(logs.String(), "reload rejected") })
	l := logs.String()
	for _, want := range []string{`"key":"gateway.linetest.listeners.tcp.three.bind"`, `"key":"gateway.linetest.listeners.tcp.three.bogus"`} {
		if !strings.Contains(l, want) {
			t.Fatalf("rejection does not name %s:\n%s", want, l)
		}
	}
	if !accepts(two) {
		t.Fatal("running config was not kept after a bad reload")
	}
	if got := c.ask(t, "WHOAMI"); got != "ME c1" {
		t.Fatalf("client disturbed by rejected reload: %q", got)
	}

	// SIGTERM: clients are told, the process exits 0.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if got := c.ask(t, ""); got != "KICK gateway_stopped" {
		t.Fatalf("client not told of the stop: %q", got)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v\n%s", err, logs.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("did not stop within 10s of SIGTERM")
	}
	if !strings.Contains(logs.String(), `"msg":"agent stopped"`) {
		t.Fatalf("no clean stop in log:\n%s", logs.String())
	}
}

func runCmd(args []string, stdin string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = run(args, strings.NewReader(stdin), &o, &e)
	return code, o.String(), e.String()
}

func TestConfigCheck(t *testing.T) {
	code, out, errs := runCmd([]string{"config", "check", "../../configs/edgeway.toml"}, "")
	if code != 0 || !strings.HasSuffix(out, ": ok\n") {
		t.Fatalf("example config: code %d\n%s%s", code, out, errs)
	}
	bad := filepath.Join(t.TempDir(), "bad.toml")
	os.WriteFile(bad, []byte("[agent]\nsecurity_profile = \"open\"\n[uplink.store]\nmax_bytes = \"ten\"\n"), 0o600)
	code, _, errs = runCmd([]string{"config", "check", bad}, "")
	if code != 1 {
		t.Fatalf("bad config exit %d", code)
	}
	want := bad + ":2: agent.security_profile: must be \"hardened\" or \"legacy\", got \"open\"\n" +
		bad + ":4: uplink.store.max_bytes: bad size \"ten\" (want a number with a unit: B, KB, MB, GB)\n"
	if errs != want {
		t.Fatalf("stderr:\n%s\nwant:\n%s", errs, want)
	}
	if code, _, _ := runCmd([]string{"config", "check"}, ""); code != 2 {
		t.Fatalf("usage exit %d", code)
	}
}

func TestVersion(t *testing.T) {
	out, err := exec.Command(binary, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	s := string(out)
	if !strings.HasPrefix(s, "edgeway ") || !strings.Contains(s, runtime.Version()) || !strings.Contains(s, runtime.GOOS+"/"+runtime.GOARCH) {
		t.Fatalf("version output %q", s)
	}
}

func TestPasswd(t *testing.T) {
	code, out, _ := runCmd([]string{"passwd", "-iterations", "1000"}, "s3cret\n")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	h := strings.TrimSpace(out)
	ok, err := auth.VerifyPassword(h, "s3cret")
	if err != nil || !ok {
		t.Fatalf("hash %q does not verify: %v", h, err)
	}
	if bad, _ := auth.VerifyPassword(h, "other"); bad {
		t.Fatal("wrong password verified")
	}
	if code, _, _ := runCmd([]string{"passwd"}, "\n"); code != 1 {
		t.Fatal("empty password accepted")
	}
}

func TestGatewayRegistry(t *testing.T) {
	out, err := exec.Command(binary, "gateway-registry").Output()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), "linetest") {
		t.Fatalf("registry: %q", out)
	}
}
