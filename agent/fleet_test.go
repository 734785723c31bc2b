package agent

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/internal/cloudtest"
	"github.com/edgeway/edgeway/uplink"
)

const fleetBase = `
[agent]
id = "box7"
data_dir = "DATA"
security_profile = "legacy"
[api]
listen = ""
[uplink]
server = "mqtt://CLOUD"
keepalive = "5s"
backoff = { initial = "100ms", max = "300ms" }
[fleet]
config_topic = "edgeway/${agent.id}/config/set"
trusted_keys = ["KEY"]
rollback_after = "1500ms"
[gateway.agenttest.listeners.tcp.a]
bind = "127.0.0.1:0"
`

type fleetEnv struct {
	t     *testing.T
	a     *Agent
	cloud *cloudtest.Cloud
	priv  ed25519.PrivateKey
	src   string // config text with placeholders filled, as on disk
	path  string
}

func newFleetEnv(t *testing.T) *fleetEnv {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	cl := cloudtest.Start(t, "127.0.0.1:0")
	cl.Record(t, "edgeway/box7/config/result")
	dir := t.TempDir()
	src := strings.NewReplacer("DATA", filepath.Join(dir, "data"), "CLOUD", cl.Addr,
		"KEY", base64.StdEncoding.EncodeToString(pub)).Replace(fleetBase)
	path := filepath.Join(dir, "edgeway.toml")
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
	e := &fleetEnv{t: t, a: a, cloud: cl, priv: priv, src: src, path: path}
	e.waitFor("uplink connected and subscribed to the config topic", func() bool {
		u := a.Uplink()
		return u != nil && u.Status().State == uplink.StateConnected && cl.HasSubscriber("edgeway/box7/config/set")
	})
	return e
}

func (e *fleetEnv) waitFor(what string, cond func() bool) {
	e.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			e.t.Fatalf("timed out: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (e *fleetEnv) push(version uint64, cfg string, key ed25519.PrivateKey) PushResult {
	e.t.Helper()
	p := Push{Version: version, Config: cfg}
	if key != nil {
		p.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, SignedBytes(version, cfg)))
	}
	b, _ := json.Marshal(p)
	before := len(e.cloud.Received("edgeway/box7/config/result"))
	e.cloud.Publish(e.t, "edgeway/box7/config/set", b, 1, false)
	var res PushResult
	e.waitFor("push result", func() bool {
		got := e.cloud.Received("edgeway/box7/config/result")
		if len(got) <= before {
			return false
		}
		return json.Unmarshal(got[before], &res) == nil
	})
	return res
}

func TestFleetPush(t *testing.T) {
	e := newFleetEnv(t)
	g, _ := e.a.Gateways().Get("agenttest")
	addr := g.Listeners()[0].Addr()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "CONNECT stay u p\n")

	good := e.src + "[gateway.agenttest.listeners.tcp.b]\nbind = \"127.0.0.1:0\"\n"
	// Unsigned, badly signed and invalid pushes change nothing.
	if r := e.push(1, good, nil); r.OK || !strings.Contains(r.Error, "not signed") {
		t.Fatalf("unsigned: %+v", r)
	}
	_, stranger, _ := ed25519.GenerateKey(rand.Reader)
	if r := e.push(1, good, stranger); r.OK || !strings.Contains(r.Error, "does not verify") {
		t.Fatalf("untrusted key: %+v", r)
	}
	if r := e.push(1, e.src+"[gateway.agenttest]\nbogus = 1\n", e.priv); r.OK || len(r.Errors) != 1 || r.Errors[0].Key != "gateway.agenttest.bogus" {
		t.Fatalf("bad config: %+v", r)
	}
	if len(g.Listeners()) != 1 {
		t.Fatal("a rejected push changed the gateway")
	}
	// A good push is applied live; the client on the unchanged listener stays.
	r := e.push(2, good, e.priv)
	if !r.OK || strings.Join(r.Applied, ",") != "gateway.agenttest" {
		t.Fatalf("good push: %+v", r)
	}
	if len(g.Listeners()) != 2 || g.Listeners()[0].Addr() != addr {
		t.Fatal("listener not added live, or the old one disturbed")
	}
	if _, ok := g.Client("stay"); !ok {
		t.Fatal("client on the unchanged listener was dropped")
	}
	if got, _ := os.ReadFile(e.path); string(got) != good {
		t.Fatal("pushed config not persisted")
	}
	// Replaying it (or anything older) is refused.
	if r := e.push(2, good, e.priv); r.OK || !strings.Contains(r.Error, "not newer") {
		t.Fatalf("replay: %+v", r)
	}
}

func TestFleetRollbackWhenUplinkLost(t *testing.T) {
	e := newFleetEnv(t)
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	bad := strings.Replace(e.src, e.cloud.Addr, deadAddr, 1)
	r := e.push(5, bad, e.priv)
	if r.OK || !r.RolledBack {
		t.Fatalf("push that loses the uplink: %+v", r)
	}
	if got := e.a.Config().Uplink.Server; got != "mqtt://"+e.cloud.Addr {
		t.Fatalf("running uplink server after rollback: %s", got)
	}
	if got, _ := os.ReadFile(e.path); string(got) != e.src {
		t.Fatal("rollback did not restore the file")
	}
	e.waitFor("uplink back after rollback", func() bool {
		u := e.a.Uplink()
		return u != nil && u.Status().State == uplink.StateConnected
	})
}
