// Package fault is edgeway's fault suite: the agent runs as a subprocess
// between virtual devices and a real mosquitto, and each test breaks
// something — the agent (SIGKILL), the broker, the link, the store, the
// input — while the cloud-side subscriber checks that every message a
// device saw acknowledged arrived. `make fault` runs it; -short shrinks it.
package fault

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/edgeway/edgeway/bench/benchkit"
)

var agentBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "edgeway-fault-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	agentBin, err = benchkit.BuildAgent(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// rig is mosquitto, the agent and the cloud subscriber.
type rig struct {
	t     *testing.T
	mosq  *benchkit.Mosquitto
	agent *benchkit.Agent
	sub   *benchkit.Subscriber
	env   *benchkit.Env
}

// needMosquitto skips without mosquitto, except in CI, where its absence
// is a failure: the suite must not pass by doing nothing.
func needMosquitto(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(benchkit.MosquittoPath); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and %s is missing: install Debian's mosquitto", benchkit.MosquittoPath)
		}
		t.Skipf("%s missing", benchkit.MosquittoPath)
	}
}

// newRig starts everything; edit changes the agent config before start.
// With via set, the agent reaches the broker through that function's
// address (a proxy) instead of directly.
func newRig(t *testing.T, edit func(*benchkit.AgentConfig), via func(broker string) string) *rig {
	t.Helper()
	needMosquitto(t)
	dir := t.TempDir()
	m, err := benchkit.NewMosquitto(filepath.Join(dir, "mosquitto"))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	c := benchkit.AgentConfig{Broker: m.Addr, MQTTSN: "auto", STOMP: "auto", CoAP: "auto",
		LwM2M: "auto", JT808: "auto", GBT32960: "auto"}
	if via != nil {
		c.Broker = via(m.Addr)
	}
	if edit != nil {
		edit(&c)
	}
	a, err := benchkit.NewAgent(agentBin, filepath.Join(dir, "agent"), c)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		a.Kill()
		if t.Failed() {
			t.Logf("agent log (tail):\n%s", tail(a.Logs(), 3000))
		}
	})
	sub, err := benchkit.Subscribe(m.Addr, "fault-cloud-"+strings.ReplaceAll(t.Name(), "/", "-"), "bench/#")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)
	r := &rig{t: t, mosq: m, agent: a, sub: sub}
	r.env = &benchkit.Env{Broker: m.Addr, Mosq: m, Agent: a, Sub: sub,
		Addrs: a.Conf.Addrs()}
	return r
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

// load starts clients of proto at rate each (QoS 1, 1 s ack timeout so a
// killed agent is noticed fast).
func (r *rig) load(ctx context.Context, proto string, clients int, rate float64) *benchkit.Load {
	r.t.Helper()
	g, err := r.env.Generator(proto, benchkit.Options{QoS: 1, Timeout: time.Second})
	if err != nil {
		r.t.Fatal(err)
	}
	l := benchkit.StartLoad(ctx, g, benchkit.LoadOptions{Clients: clients, Rate: rate, Payload: 64, FirstDev: r.env.Devs(clients)})
	r.t.Cleanup(l.Stop)
	return l
}

// expectAllArrived fails unless every message l had acknowledged reached
// the cloud within wait; it reports duplicates.
func (r *rig) expectAllArrived(l *benchkit.Load, wait time.Duration) {
	r.t.Helper()
	left := r.sub.WaitFor(&l.AckedKeys, wait, 0)
	if left > 0 {
		n, some := l.AckedKeys.Missing(&r.sub.Seen, 10)
		up, _ := r.status()["uplink"].(map[string]any)
		r.t.Fatalf("%d of %d acknowledged messages never reached the cloud, e.g. %v\nsubscriber connected: %v; uplink: %v\nmosquitto: %s",
			n, l.AckedKeys.Len(), some, r.sub.Connected(), up, tail(r.mosq.Logs(), 2000))
	}
	r.t.Logf("all %d acknowledged messages arrived; %d duplicates; %d publishes unacknowledged (allowed to be lost)",
		l.AckedKeys.Len(), r.sub.Duplicates(), l.Failed.Load())
}

// waitAcked waits until l's acknowledged count grows by n.
func waitAcked(t *testing.T, l *benchkit.Load, n int64, within time.Duration) {
	t.Helper()
	want := l.Acked.Load() + n
	deadline := time.Now().Add(within)
	for l.Acked.Load() < want {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d acknowledged after %s: the agent stopped accepting", l.Acked.Load(), want, within)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// status reads GET /api/v5/status.
func (r *rig) status() map[string]any {
	r.t.Helper()
	tok, err := os.ReadFile(filepath.Join(r.agent.Dir, "data", "api.token"))
	if err != nil {
		r.t.Fatal(err)
	}
	req, _ := http.NewRequest("GET", "http://"+r.agent.Conf.API+"/api/v5/status", nil)
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(tok)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		r.t.Fatal(err)
	}
	return m
}

func (r *rig) metrics() map[string]float64 {
	r.t.Helper()
	m, err := r.agent.Metrics()
	if err != nil {
		r.t.Fatal(err)
	}
	return m
}

// n picks the full or the -short figure.
func n[T any](full, short T) T {
	if testing.Short() {
		return short
	}
	return full
}
