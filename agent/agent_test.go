package agent

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/internal/testkind"
)

func init() { testkind.Register("agenttest") }

func startAgent(t *testing.T, src string) (*Agent, string) {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "edgeway.toml")
	src = strings.ReplaceAll(src, "DATA", filepath.Join(dir, "data"))
	if err := os.WriteFile(path, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(cfg, Options{ConfigPath: path, BoardRoot: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		a.Stop(ctx)
	})
	return a, path
}

const base = `
[agent]
id = "box-${board.serial}"
data_dir = "DATA"
security_profile = "legacy"
[gateway.agenttest.listeners.tcp.a]
bind = "127.0.0.1:0"
`

func TestApplyTOML(t *testing.T) {
	a, path := startAgent(t, base)
	if !strings.HasPrefix(a.ID(), "box-") || a.Identity().Source != "hostname" {
		t.Fatalf("id %q from %s", a.ID(), a.Identity().Source)
	}
	g, _ := a.Gateways().Get("agenttest")
	addr := g.Listeners()[0].Addr()
	data := filepath.Dir(path) + "/data"

	// A bad push touches nothing: not the running config, not the file.
	before, _ := os.ReadFile(path)
	_, err := a.ApplyTOML(context.Background(), []byte("[agent]\ndata_dir = \"x\"\nfrobnicate = true\n"), "api", true)
	var es config.Errors
	if !errors.As(err, &es) || len(es) != 1 || es[0].Key != "agent.frobnicate" {
		t.Fatalf("bad push: %v", err)
	}
	after, _ := os.ReadFile(path)
	if string(before) != string(after) {
		t.Fatal("bad push changed the file")
	}
	if g.Listeners()[0].Addr() != addr {
		t.Fatal("bad push changed the running gateway")
	}

	// An identical push is a no-op.
	r, err := a.ApplyTOML(context.Background(), before, "api", true)
	if err != nil || r.Changed() {
		t.Fatalf("identical push: %+v %v", r, err)
	}
	if g.Listeners()[0].Addr() != addr {
		t.Fatal("identical push reopened the listener")
	}

	// A good push is applied live and written atomically, with history.
	next := strings.ReplaceAll(base, "DATA", data) + "[gateway.agenttest.listeners.tcp.b]\nbind = \"127.0.0.1:0\"\n[agent.log]\nformat = \"json\"\n"
	r, err = a.ApplyTOML(context.Background(), []byte(next), "api", true)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(r.Applied, ",") != "gateway.agenttest" || strings.Join(r.RestartRequired, ",") != "agent.log.format" {
		t.Fatalf("report %+v", r)
	}
	if len(g.Listeners()) != 2 || g.Listeners()[0].Addr() != addr {
		t.Fatal("listener b not added live, or a disturbed")
	}
	if got, _ := os.ReadFile(path); string(got) != next {
		t.Fatal("pushed config not written to the file")
	}
	h, err := a.History()
	if err != nil || len(h) != 2 {
		t.Fatalf("history %v %v", h, err)
	}
}

func TestHistoryKeepsLastN(t *testing.T) {
	a, _ := startAgent(t, base)
	for i := 0; i < HistoryKeep+3; i++ {
		if err := a.keepHistory([]byte("# v")); err != nil {
			t.Fatal(err)
		}
	}
	h, _ := a.History()
	if len(h) != HistoryKeep {
		t.Fatalf("kept %d", len(h))
	}
}

func TestStopIdempotent(t *testing.T) {
	a, _ := startAgent(t, base)
	ctx := context.Background()
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}
