package benchkit

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// FreePort returns a loopback address nothing listens on right now (tcp).
func FreePort() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("benchkit: free port: %w", err)
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// FreeUDPPort returns a loopback UDP address nothing is bound to right now.
func FreeUDPPort() (string, error) {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("benchkit: free udp port: %w", err)
	}
	defer c.Close()
	return c.LocalAddr().String(), nil
}

// WaitTCP waits until addr accepts a connection.
func WaitTCP(addr string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("benchkit: %s not accepting after %s: %w", addr, within, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// syncBuf is a log buffer safe for a subprocess and a reader.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.b.Len() > 1<<20 { // keep the tail only
		s.b.Reset()
	}
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// dieWithUs has the kernel SIGKILL a child when the bench or test process
// dies (a test timeout panics, a bench is killed), so no agent or broker
// outlives it holding ports and CPU.
func dieWithUs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// MosquittoPath is where Debian puts the broker.
const MosquittoPath = "/usr/sbin/mosquitto"

// Mosquitto is a broker subprocess with persistence on, so a durable
// subscriber's queue survives a restart (outage and restart scenarios).
type Mosquitto struct {
	Addr string
	dir  string
	cmd  *exec.Cmd
	logs syncBuf
}

// NewMosquitto writes a config for a broker on a free port under dir; it
// does not start it.
func NewMosquitto(dir string) (*Mosquitto, error) {
	if _, err := os.Stat(MosquittoPath); err != nil {
		return nil, fmt.Errorf("benchkit: mosquitto: %w", err)
	}
	addr, err := FreePort()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("benchkit: mosquitto: %w", err)
	}
	conf := fmt.Sprintf(`listener %s 127.0.0.1
allow_anonymous true
persistence true
persistence_location %s/
autosave_interval 0
max_queued_messages 0
max_queued_bytes 0
max_inflight_messages 0
log_dest stderr
log_type error
log_type warning
`, port, dir)
	if os.Geteuid() == 0 {
		// As root mosquitto drops to user "mosquitto", which cannot write
		// the persistence file into our private temp dir: the durable
		// subscriber's session would silently not survive a restart.
		conf += "user root\n"
	}
	if err := os.WriteFile(filepath.Join(dir, "mosquitto.conf"), []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("benchkit: mosquitto: %w", err)
	}
	return &Mosquitto{Addr: addr, dir: dir}, nil
}

// Start runs the broker and waits until it accepts connections.
func (m *Mosquitto) Start() error {
	if m.cmd != nil {
		return nil
	}
	cmd := exec.Command(MosquittoPath, "-c", filepath.Join(m.dir, "mosquitto.conf"))
	cmd.Stderr, cmd.Stdout = &m.logs, &m.logs
	cmd.SysProcAttr = dieWithUs()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("benchkit: mosquitto: %w", err)
	}
	m.cmd = cmd
	if err := WaitTCP(m.Addr, 10*time.Second); err != nil {
		m.Stop()
		return fmt.Errorf("%w\n%s", err, m.logs.String())
	}
	return nil
}

// Stop ends the broker with SIGTERM (it saves its persistence file).
func (m *Mosquitto) Stop() {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = m.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		_ = m.cmd.Process.Kill()
		<-done
	}
	m.cmd = nil
}

// PID of the running broker, or 0.
func (m *Mosquitto) PID() int {
	if m.cmd == nil {
		return 0
	}
	return m.cmd.Process.Pid
}

// Logs is the broker's output so far.
func (m *Mosquitto) Logs() string { return m.logs.String() }

// BuildAgent builds ./cmd/edgeway of the module containing the working
// directory into dir and returns the binary's path. tags are build tags.
func BuildAgent(dir string, tags ...string) (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil || strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == os.DevNull {
		return "", fmt.Errorf("benchkit: build: not inside the edgeway module (%v)", err)
	}
	root := filepath.Dir(strings.TrimSpace(string(out)))
	bin := filepath.Join(dir, "edgeway")
	args := []string{"build", "-o", bin}
	if len(tags) > 0 {
		args = append(args, "-tags", strings.Join(tags, ","))
	}
	cmd := exec.Command("go", append(args, "./cmd/edgeway")...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("benchkit: go build ./cmd/edgeway: %w\n%s", err, b)
	}
	return bin, nil
}

// AgentConfig is what the generated config varies.
type AgentConfig struct {
	Broker        string // cloud broker host:port
	MQTTSN, STOMP string // listener addresses; "" = no such gateway
	CoAP          string
	// LwM2M (udp), JT808 and GBT32960 (tcp): anonymous, with their cloud
	// topics under bench/ (see the generators' Topic).
	LwM2M, JT808  string
	GBT32960      string
	API           string
	StoreMaxBytes string // default "256MB"
	OnFull        string // default "drop_oldest"
	Sync          string // default "batch"
	Extra         string // appended verbatim (TOML)
}

// Agent is edgeway as a subprocess on a generated config.
type Agent struct {
	Bin, Dir string
	Conf     AgentConfig
	cmd      *exec.Cmd
	done     chan struct{}
	logs     syncBuf
	token    string
}

// NewAgent writes dir/edgeway.toml for c; free ports fill empty API, and
// the listeners named "auto".
func NewAgent(bin, dir string, c AgentConfig) (*Agent, error) {
	var err error
	if c.API == "" {
		if c.API, err = FreePort(); err != nil {
			return nil, err
		}
	}
	for _, a := range []struct {
		addr *string
		free func() (string, error)
	}{{&c.MQTTSN, FreeUDPPort}, {&c.CoAP, FreeUDPPort}, {&c.LwM2M, FreeUDPPort},
		{&c.STOMP, FreePort}, {&c.JT808, FreePort}, {&c.GBT32960, FreePort}} {
		if *a.addr == "auto" {
			if *a.addr, err = a.free(); err != nil {
				return nil, err
			}
		}
	}
	c.StoreMaxBytes = cmpOr(c.StoreMaxBytes, "256MB")
	c.OnFull = cmpOr(c.OnFull, "drop_oldest")
	c.Sync = cmpOr(c.Sync, "batch")
	var b strings.Builder
	fmt.Fprintf(&b, `[agent]
id = "bench"
data_dir = %q
security_profile = "legacy"
[agent.log]
level = "error"
[api]
listen = %q
[uplink]
server = "mqtt://%s"
keepalive = "5s"
ping_timeout = "3s"
connect_timeout = "3s"
max_inflight = 64
status_topic = ""
events_topic = ""
backoff = { initial = "100ms", max = "500ms" }
[uplink.store]
max_bytes = %q
on_full = %q
sync = %q
`, filepath.Join(dir, "data"), c.API, c.Broker, c.StoreMaxBytes, c.OnFull, c.Sync)
	// Every gateway: anonymous, one listener without connection limits.
	for _, g := range []struct {
		kind, transport, addr string
		settings, listener    string
	}{
		{"mqttsn", "udp", c.MQTTSN, "gateway_id = 1\nmax_inflight = 64\n", ""},
		{"stomp", "tcp", c.STOMP, "", ""},
		// heartbeat past any bench run, so an idle coap-conn device keeps
		// its connection.
		{"coap", "udp", c.CoAP, "heartbeat = \"1h\"\n", ""},
		// notify at QoS 1: a Send is answered 2.04 once it is in the store.
		// idle_timeout past any bench run, so an idle device keeps its peer.
		{"lwm2m", "udp", c.LwM2M, `mountpoint = "bench/lwm2m/${endpoint_name}/"
[gateway.lwm2m.translators]
command  = { topic = "dn/#",      qos = 0 }
response = { topic = "up/resp",   qos = 0 }
notify   = { topic = "up/notify", qos = 1 }
register = { topic = "up/resp",   qos = 0 }
update   = { topic = "up/update", qos = 0 }
`, "idle_timeout = \"25h\"\n"},
		// keepalive past any bench run, so idle terminals stay connected.
		{"jt808", "tcp", c.JT808, `[gateway.jt808.proto]
up_topic = "bench/jt808/${phone}"
keepalive = "24h"
[gateway.jt808.proto.auth]
allow_anonymous = true
`, ""},
		{"gbt32960", "tcp", c.GBT32960, "mountpoint = \"bench/gbt32960/${clientid}/\"\n", ""},
	} {
		if g.addr == "" {
			continue
		}
		fmt.Fprintf(&b, "[gateway.%[1]s]\n%[2]s[[gateway.%[1]s.authentication]]\ntype = \"anonymous\"\n"+
			"[gateway.%[1]s.listeners.%[3]s.default]\nbind = %[4]q\n%[5]smax_connections = 1000000\nmax_conn_rate = 1000000\n",
			g.kind, g.settings, g.transport, g.addr, g.listener)
	}
	b.WriteString(c.Extra)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("benchkit: agent: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "edgeway.toml"), []byte(b.String()), 0o600); err != nil {
		return nil, fmt.Errorf("benchkit: agent: %w", err)
	}
	return &Agent{Bin: bin, Dir: dir, Conf: c}, nil
}

func cmpOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Addrs is the gateway address per generator name, for Env.Addrs.
func (c AgentConfig) Addrs() map[string]string {
	return map[string]string{"mqttsn": c.MQTTSN, "stomp": c.STOMP, "coap": c.CoAP, "coap-conn": c.CoAP,
		"lwm2m": c.LwM2M, "jt808": c.JT808, "gbt32960": c.GBT32960}
}

// Start runs the agent and waits until its API answers readyz and its
// tcp listeners (if any) accept.
func (a *Agent) Start() error {
	if a.cmd != nil {
		return nil
	}
	cmd := exec.Command(a.Bin, "run", "-c", filepath.Join(a.Dir, "edgeway.toml"))
	cmd.Stderr, cmd.Stdout = &a.logs, &a.logs
	cmd.SysProcAttr = dieWithUs()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("benchkit: agent: %w", err)
	}
	a.cmd, a.done = cmd, make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(cmd, a.done)
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := http.Get("http://" + a.Conf.API + "/api/v5/readyz")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == 200 {
				break
			}
		}
		select {
		case <-a.done:
			a.cmd = nil
			return fmt.Errorf("benchkit: agent exited at start:\n%s", a.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			a.Kill()
			return fmt.Errorf("benchkit: agent not ready after 20s:\n%s", a.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, addr := range []string{a.Conf.STOMP, a.Conf.JT808, a.Conf.GBT32960} {
		if addr == "" {
			continue
		}
		if err := WaitTCP(addr, 10*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// Exited reports whether a started agent ended by itself (a crash).
func (a *Agent) Exited() bool {
	if a.cmd == nil {
		return false
	}
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// Kill sends SIGKILL and waits.
func (a *Agent) Kill() {
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Kill()
	<-a.done
	a.cmd = nil
}

// Stop sends SIGTERM and waits (SIGKILL after 15s).
func (a *Agent) Stop() {
	if a.cmd == nil {
		return
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
	case <-time.After(15 * time.Second):
		_ = a.cmd.Process.Kill()
		<-a.done
	}
	a.cmd = nil
}

// PID of the running agent, or 0.
func (a *Agent) PID() int {
	if a.cmd == nil {
		return 0
	}
	return a.cmd.Process.Pid
}

// Logs is the agent's output so far.
func (a *Agent) Logs() string { return a.logs.String() }

// Metrics reads the agent's Prometheus endpoint: each sample line as
// `name{labels}` → value.
func (a *Agent) Metrics() (map[string]float64, error) {
	if a.token == "" {
		b, err := os.ReadFile(filepath.Join(a.Dir, "data", "api.token"))
		if err != nil {
			return nil, fmt.Errorf("benchkit: metrics: %w", err)
		}
		a.token = strings.TrimSpace(string(b))
	}
	req, _ := http.NewRequestWithContext(context.Background(), "GET", "http://"+a.Conf.API+"/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+a.token)
	c := http.Client{Timeout: 5 * time.Second}
	r, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("benchkit: metrics: %w", err)
	}
	defer r.Body.Close()
	if r.StatusCode != 200 {
		b, _ := io.ReadAll(r.Body)
		return nil, fmt.Errorf("benchkit: metrics: %s: %s", r.Status, b)
	}
	return ParseProm(r.Body)
}

// ParseProm reads Prometheus text exposition.
func ParseProm(r io.Reader) (map[string]float64, error) {
	m := map[string]float64{}
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		l := s.Text()
		if l == "" || l[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(l, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(l[i+1:], 64)
		if err != nil {
			continue
		}
		m[l[:i]] = v
	}
	if err := s.Err(); err != nil {
		return nil, fmt.Errorf("benchkit: metrics: %w", err)
	}
	return m, nil
}

// Sum adds every sample of metric name whose labels contain all of sel
// (e.g. `gateway="mqttsn"`).
func Sum(m map[string]float64, name string, sel ...string) float64 {
	var t float64
outer:
	for k, v := range m {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		for _, s := range sel {
			if !strings.Contains(k, s) {
				continue outer
			}
		}
		t += v
	}
	return t
}

// ErrNoMosquitto is returned when a scenario needs a broker it can restart.
var ErrNoMosquitto = errors.New("benchkit: this scenario stops and starts the broker: it needs mosquitto started by the tool (no -broker)")
