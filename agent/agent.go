// Package agent wires edgeway together from a config: the hook bus,
// metrics, the local broker, the gateway manager (and, as they land, the
// store, the uplink and the API). It owns start, stop and reload.
//
// Sinks start first and stop last, so that a shutdown drains into the
// store rather than into the void; sources (gateways) start last and stop
// first.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgeway/edgeway/agent/auth"
	"github.com/edgeway/edgeway/agent/broker"
	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/agent/hooks"
	"github.com/edgeway/edgeway/agent/metrics"
	"github.com/edgeway/edgeway/board"
	"github.com/edgeway/edgeway/store"
	"github.com/edgeway/edgeway/uplink"
)

// Options are the agent's settings that do not come from the config file.
type Options struct {
	// Logger is the root logger; Level, if set, is the LevelVar behind it,
	// which reloads change.
	Logger *slog.Logger
	Level  *slog.LevelVar
	// BoardRoot is where board identity is read ("/" when empty).
	BoardRoot string
	// ConfigPath is the file the config came from; pushed configs are
	// written back to it. Empty: pushes are applied but not persisted.
	ConfigPath string
	Version    string
	// OnHealthy runs after each healthy check of the health loop (main
	// passes sdnotify.Watchdog); HealthInterval is its period (0: 5s).
	OnHealthy      func()
	HealthInterval time.Duration
}

// Agent is one running edgeway.
type Agent struct {
	opts    Options
	log     *slog.Logger
	ident   board.Identity
	board   *board.Board
	vars    config.MapVars
	bus     *hooks.Bus
	metrics *metrics.Registry
	broker  *broker.Broker
	gw      *gateway.Manager
	store   *store.Store
	uplink  atomic.Pointer[uplink.Uplink]
	// filterMu serialises OnFilter reconciliation with the uplink.
	filterMu sync.Mutex
	fleet    *fleet
	// storeRetry, when set, stops the loop that waits for the store
	// (sinks.go) and waits for it.
	storeRetry func()

	mu      sync.Mutex
	cfg     *config.Config
	started bool
	stopped bool
	startAt time.Time
}

// New builds an agent from a checked config. It does no I/O beyond reading
// the board identity.
func New(cfg *config.Config, opts Options) (*Agent, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.BoardRoot == "" {
		opts.BoardRoot = "/"
	}
	a := &Agent{opts: opts, log: opts.Logger, cfg: cfg, metrics: metrics.NewRegistry()}
	a.ident = board.ReadIdentity(opts.BoardRoot)
	a.vars = agentVars(cfg, a.ident)
	b, err := board.New(board.FromConfig(cfg), board.Options{
		Root: opts.BoardRoot, Logger: a.log, Health: a.health,
		OnHealthy: opts.OnHealthy, HealthInterval: opts.HealthInterval,
	})
	if err != nil {
		return nil, fmt.Errorf("board: %w", err)
	}
	a.board = b
	a.bus = hooks.New(hooks.Options{Logger: a.log.With("component", "hooks")})
	acl, err := auth.NewACL(cfg.Authorization)
	if err != nil {
		return nil, fmt.Errorf("authorization: %w", err)
	}
	var m *gateway.Manager
	a.broker = broker.New(broker.Options{
		OnDrop:   func(sid string, msg *broker.Message, reason string) { m.OnDrop(sid, msg, reason) },
		OnFilter: a.filterChanged,
	})
	m = gateway.NewManager(gateway.ManagerOptions{
		Broker: a.broker, Hooks: a.bus, Metrics: a.metrics, Authorizer: acl,
		SecurityProfile: cfg.Agent.SecurityProfile, AgentVars: a.vars,
		Logger: a.log, DataDir: cfg.Agent.DataDir,
	})
	a.gw = m
	return a, nil
}

func agentVars(cfg *config.Config, id board.Identity) config.MapVars {
	host, _ := os.Hostname()
	v := config.MapVars{"board.serial": id.Serial, "board.model": id.Model, "hostname": host}
	v["agent.id"] = cfg.Agent.ID.Render(v)
	return v
}

// ID is the rendered agent id.
func (a *Agent) ID() string { return a.vars["agent.id"] }

// Identity is the board identity read at construction.
func (a *Agent) Identity() board.Identity { return a.ident }

// Logger is the agent's root logger.
func (a *Agent) Logger() *slog.Logger { return a.log }

// Config is the config in force.
func (a *Agent) Config() *config.Config {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cfg
}

// Gateways is the gateway manager.
func (a *Agent) Gateways() *gateway.Manager { return a.gw }

// Broker is the local broker.
func (a *Agent) Broker() *broker.Broker { return a.broker }

// Hooks is the event bus.
func (a *Agent) Hooks() *hooks.Bus { return a.bus }

// Metrics is the registry of every counter set.
func (a *Agent) Metrics() *metrics.Registry { return a.metrics }

// StartedAt is when Start completed.
func (a *Agent) StartedAt() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.startAt
}

// Start brings the agent up: data directory, then sinks, then gateways.
// A gateway that fails to start is logged and reported, but does not stop
// the others or the agent: a box with one bad serial port must still relay
// the rest.
func (a *Agent) Start(ctx context.Context) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.started {
		return errors.New("agent: already started")
	}
	if err := os.MkdirAll(a.cfg.Agent.DataDir, 0o750); err != nil {
		return fmt.Errorf("agent: data_dir: %w", err)
	}
	a.started = true
	a.startAt = time.Now()
	a.board.Install()
	if err := a.board.Start(ctx); err != nil {
		a.log.Warn("board support partly unavailable", "error", err)
	}
	// Sinks first: the store and the uplink are in place before any
	// device can publish.
	if err := a.startSinks(ctx); err != nil {
		if a.store != nil {
			// Only the uplink failed (a bad setting): as before, stop here.
			a.board.Stop(ctx)
			return err
		}
		a.awaitStore(ctx, err)
	}
	if err := a.startFleet(); err != nil {
		a.log.Error("fleet pushes off", "error", err)
	}
	err := a.gw.Apply(ctx, a.cfg.Gateways)
	if err != nil {
		a.log.Error("some gateways did not start", "error", err)
	}
	a.log.Info("agent started", "id", a.ID(), "board_serial_source", a.ident.Source,
		"gateways", len(a.gw.List()), "security_profile", a.cfg.Agent.SecurityProfile, "version", a.opts.Version)
	return err
}

// Stop shuts down: gateways first (their clients are told), then sinks.
// It is idempotent and safe after a partial start.
func (a *Agent) Stop(ctx context.Context) error {
	a.mu.Lock()
	if a.stopped {
		a.mu.Unlock()
		return nil
	}
	a.stopped = true
	f := a.fleet
	a.mu.Unlock()
	// The fleet loop may be applying a push (which takes a.mu): end it first.
	if f != nil {
		f.close()
	}
	a.mu.Lock()
	retry := a.storeRetry
	a.storeRetry = nil
	a.mu.Unlock()
	if retry != nil {
		retry() // it takes a.mu itself
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	a.gw.Close(ctx)
	a.stopSinks(ctx)
	a.broker.Close()
	a.bus.Close()
	a.board.Stop(ctx)
	a.log.Info("agent stopped")
	return ctx.Err()
}

// health tells the board's health loop (and through it the hardware and
// systemd watchdogs) whether the core still answers: the agent's lock can
// be taken and the broker answers, within the deadline.
func (a *Agent) health(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		a.mu.Lock()
		stopped := a.stopped
		a.mu.Unlock()
		if !stopped {
			_ = a.broker.Stats()
		}
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("agent: core not responding: %w", ctx.Err())
	}
}

// Store is the durable queue (nil before Start or with the uplink disabled).
func (a *Agent) Store() *store.Store { return a.store }

// Uplink is the cloud connection (nil when disabled or not started).
func (a *Agent) Uplink() *uplink.Uplink { return a.uplink.Load() }

func (a *Agent) storeOptions(c config.Store) store.Options {
	dir := c.Dir
	if dir == "" {
		dir = filepath.Join(a.cfg.Agent.DataDir, "queue")
	}
	ss := a.metrics.Set("store", map[string]string{"component": "store"})
	return store.Options{
		Dir: dir, MaxBytes: int64(c.MaxBytes), MaxAge: c.MaxAge.D(),
		OnFull: store.OnFull(c.OnFull), Sync: store.SyncMode(c.Sync), MinFreeBytes: int64(c.MinFree),
		Logger: a.log.With("component", "store"),
		OnDrop: func(m *store.Message, reason string) {
			ss.Counter("messages.dropped").Inc()
			ss.Counter("messages.dropped." + reason).Inc()
			if a.bus.Enabled(hooks.MessageDropped) {
				a.bus.Emit(hooks.Event{Name: hooks.MessageDropped, Time: time.Now(),
					Client: hooks.Client{Gateway: m.Gateway, ClientID: m.ClientID}, Topic: m.Topic, QoS: m.QoS, Reason: reason})
			}
		},
	}
}

// startSinks opens the store and starts the uplink, and makes the uplink
// the broker's sink: from then on a device's QoS 1/2 publish is
// acknowledged only once the store has it.
func (a *Agent) startSinks(ctx context.Context) error {
	if !uplinkWanted(a.cfg.Uplink) {
		a.log.Info("uplink disabled or no server set: running local-only")
		return nil
	}
	st, err := store.Open(a.storeOptions(a.cfg.Uplink.Store))
	if err != nil {
		return fmt.Errorf("agent: store: %w", err)
	}
	a.store = st
	return a.startUplink(ctx, a.cfg.Uplink)
}

func (a *Agent) startUplink(ctx context.Context, uc config.Uplink) error {
	u, err := uplink.New(uc, uplink.Deps{
		Queue: a.store, Broker: a.broker, Hooks: a.bus, Logger: a.log,
		AgentID: a.ID(), Vars: a.vars, Metrics: a.metrics.Set("uplink", map[string]string{"component": "uplink"}),
		QuarantineDir: filepath.Join(a.cfg.Agent.DataDir, "quarantine"),
	})
	if err != nil {
		return fmt.Errorf("agent: uplink: %w", err)
	}
	if err := u.Start(ctx); err != nil {
		return fmt.Errorf("agent: uplink: %w", err)
	}
	a.uplink.Store(u)
	a.broker.SetSink(u)
	// Mirror the subscriptions that already exist (a restarted uplink).
	for _, f := range a.broker.Filters() {
		a.filterChanged(f)
	}
	return nil
}

// restartUplink swaps the uplink for one with the new settings; the store
// and everything in it stay.
func (a *Agent) restartUplink(ctx context.Context, uc config.Uplink) error {
	if a.store == nil {
		if !uplinkWanted(uc) {
			return nil
		}
		st, err := store.Open(a.storeOptions(uc.Store))
		if err != nil {
			return err
		}
		a.store = st
	}
	if old := a.uplink.Swap(nil); old != nil {
		// Until the new uplink is the sink, device publishes are refused
		// (they come again), not acknowledged and routed nowhere.
		a.broker.SetSink(storeDown{errors.New("agent: uplink restarting")})
		if err := old.Stop(ctx); err != nil {
			a.log.Warn("uplink stop", "error", err)
		}
	}
	if !uplinkWanted(uc) {
		a.broker.SetSink(nil)
		return nil
	}
	return a.startUplink(ctx, uc)
}

// uplinkWanted: an uplink needs enable = true and a server; without one the
// agent is a local broker for its devices.
func uplinkWanted(uc config.Uplink) bool { return uc.Enable && uc.Server != "" }

func (a *Agent) stopSinks(ctx context.Context) {
	if u := a.uplink.Swap(nil); u != nil {
		if err := u.Stop(ctx); err != nil {
			a.log.Warn("uplink stop", "error", err)
		}
	}
	a.broker.SetSink(nil)
	if a.store != nil {
		if err := a.store.Close(); err != nil {
			a.log.Error("store close", "error", err)
		}
	}
}

// filterChanged is the broker's OnFilter: keep the uplink's upstream
// subscriptions equal to the local ones.
func (a *Agent) filterChanged(f string) {
	a.filterMu.Lock()
	defer a.filterMu.Unlock()
	if u := a.uplink.Load(); u != nil {
		u.FilterChanged(f)
	}
}

// Board is the board support (profile, ports, LED, watchdog).
func (a *Agent) Board() *board.Board { return a.board }

// Report says what a reload did.
type Report struct {
	// Applied lists the sections changed live.
	Applied []string `json:"applied"`
	// RestartRequired lists changed sections that take effect on the next start.
	RestartRequired []string `json:"restart_required"`
}

// Changed reports whether anything differed.
func (r Report) Changed() bool { return len(r.Applied)+len(r.RestartRequired) > 0 }

// Reload applies a new, already checked config: it diffs section by
// section and changes only what differs. An identical config is a no-op.
// Everything that can fail is built before anything is applied; a gateway
// that fails to update is reported and the others still apply.
func (a *Agent) Reload(ctx context.Context, nc *config.Config) (Report, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	old := a.cfg
	var r Report
	var acl *auth.ACL
	if !reflect.DeepEqual(old.Authorization, nc.Authorization) {
		var err error
		if acl, err = auth.NewACL(nc.Authorization); err != nil {
			return r, fmt.Errorf("authorization: %w", err)
		}
	}
	live := func(s string) { r.Applied = append(r.Applied, s) }
	later := func(s string) { r.RestartRequired = append(r.RestartRequired, s) }

	if old.Agent.Log.Level != nc.Agent.Log.Level {
		if a.opts.Level != nil {
			a.opts.Level.Set(ParseLevel(nc.Agent.Log.Level))
			live("agent.log.level")
		} else {
			later("agent.log.level")
		}
	}
	if old.Agent.Log.Format != nc.Agent.Log.Format {
		later("agent.log.format")
	}
	if old.Agent.SecurityProfile != nc.Agent.SecurityProfile {
		a.gw.SetSecurityProfile(nc.Agent.SecurityProfile)
		live("agent.security_profile")
	}
	if old.Agent.ID.String() != nc.Agent.ID.String() {
		later("agent.id")
	}
	if old.Agent.DataDir != nc.Agent.DataDir {
		later("agent.data_dir")
	}
	if old.Agent.ShutdownTimeout != nc.Agent.ShutdownTimeout {
		live("agent.shutdown_timeout")
	}
	if acl != nil {
		a.gw.SetAuthorizer(acl)
		live("authorization")
	}
	if !reflect.DeepEqual(old.API, nc.API) {
		later("api")
	}
	if !reflect.DeepEqual(old.Fleet, nc.Fleet) {
		later("fleet")
	}
	if !reflect.DeepEqual(old.Uplink.Store, nc.Uplink.Store) {
		// The store is never recreated by a reload: a pushed config must
		// not be able to throw away the backlog.
		later("uplink.store")
	}
	ou, nu := old.Uplink, nc.Uplink
	ou.Store, nu.Store = config.Store{}, config.Store{}
	if !reflect.DeepEqual(ou, nu) {
		if err := a.restartUplink(ctx, nc.Uplink); err != nil {
			return r, fmt.Errorf("uplink: %w", err)
		}
		live("uplink")
	}
	for _, k := range sortedKeys(nc.Extra, old.Extra) {
		if !reflect.DeepEqual(old.Extra[k], nc.Extra[k]) {
			later(k)
		}
	}
	var err error
	if !reflect.DeepEqual(old.Gateways, nc.Gateways) {
		for _, name := range unionNames(old.Gateways, nc.Gateways) {
			if !reflect.DeepEqual(old.Gateways[name], nc.Gateways[name]) {
				live("gateway." + name)
			}
		}
		err = a.gw.Apply(ctx, nc.Gateways)
	}
	a.cfg = nc
	if r.Changed() {
		a.log.Info("config reloaded", "applied", r.Applied, "restart_required", r.RestartRequired)
	} else {
		a.log.Info("config reloaded: no changes")
	}
	return r, err
}

// HistoryKeep is how many earlier config versions are kept.
const HistoryKeep = 10

// ApplyTOML is the one apply path for a config coming from outside (a
// SIGHUP re-read, the HTTP API, a fleet push): parse and check it, apply
// what differs live, then — for pushes (persist) — write it atomically to
// the config file. Every applied version is kept in
// <data_dir>/config-history (the last HistoryKeep). A config that does not
// parse or validate touches nothing and returns config.Errors.
func (a *Agent) ApplyTOML(ctx context.Context, data []byte, source string, persist bool) (Report, error) {
	name := a.opts.ConfigPath
	if name == "" || source != "file" {
		name = source
	}
	nc, err := config.Parse(data, name)
	if err != nil {
		return Report{}, err
	}
	if persist && a.opts.ConfigPath != "" {
		if err := writeAtomic(a.opts.ConfigPath, data); err != nil {
			return Report{}, fmt.Errorf("agent: write config: %w", err)
		}
	}
	r, err := a.Reload(ctx, nc)
	if herr := a.keepHistory(data); herr != nil {
		a.log.Warn("config history not written", "error", herr)
	}
	if a.bus.Enabled(hooks.Name("config.applied")) {
		a.bus.Emit(hooks.Event{Name: "config.applied", Time: time.Now(), Reason: source})
	}
	return r, err
}

// writeAtomic replaces path with data: temp file in the same directory,
// fsync, rename, fsync of the directory, so a power cut leaves either the
// old or the new file, never half of one.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".edgeway-*.toml")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o640); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

func (a *Agent) keepHistory(data []byte) error {
	dir := filepath.Join(a.Config().Agent.DataDir, "config-history")
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	name := filepath.Join(dir, "edgeway-"+time.Now().UTC().Format("20060102T150405.000000000Z")+".toml")
	if err := writeAtomic(name, data); err != nil {
		return err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	var files []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "edgeway-") && strings.HasSuffix(e.Name(), ".toml") {
			files = append(files, e.Name())
		}
	}
	sort.Strings(files)
	for len(files) > HistoryKeep {
		_ = os.Remove(filepath.Join(dir, files[0]))
		files = files[1:]
	}
	return nil
}

// History lists the kept config versions, newest last.
func (a *Agent) History() ([]string, error) {
	dir := filepath.Join(a.Config().Agent.DataDir, "config-history")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if os.IsNotExist(err) {
			return nil, nil
		}
		return nil, err
	}
	var out []string
	for _, e := range ents {
		out = append(out, filepath.Join(dir, e.Name()))
	}
	sort.Strings(out)
	return out, nil
}

func sortedKeys(ms ...map[string]any) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range ms {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

func unionNames(a, b config.Gateways) []string {
	seen := map[string]bool{}
	var out []string
	for _, m := range []config.Gateways{a, b} {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// ParseLevel maps a config log level to slog's.
func ParseLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// NewLogger builds the root logger from [agent.log], writing to w.
func NewLogger(w interface{ Write([]byte) (int, error) }, lc config.Log) (*slog.Logger, *slog.LevelVar) {
	lv := new(slog.LevelVar)
	lv.Set(ParseLevel(lc.Level))
	ho := &slog.HandlerOptions{Level: lv}
	var h slog.Handler
	if lc.Format == "json" {
		h = slog.NewJSONHandler(w, ho)
	} else {
		h = slog.NewTextHandler(w, ho)
	}
	return slog.New(h), lv
}
