// Package api is edgeway's local HTTP API (EMQX 5's gateway paths and JSON
// under /api/v5), the Prometheus endpoint and the embedded status page,
// and what `edgeway ctl` talks to.
//
// Every change of configuration made through the API — loading, updating,
// enabling or unloading a gateway, a listener, an authenticator, a
// built-in user, or a whole pushed config — is an edit of the running
// config text applied through agent.ApplyTOML, the one apply path that
// SIGHUP and fleet pushes also use: parse, validate, diff, apply live,
// write the file atomically, keep history. A change the API makes is
// therefore in the file and survives a restart, and a bad one is refused
// with the same key-named errors `edgeway config check` prints.
//
// Everything but /api/v5/healthz and /api/v5/readyz needs credentials: the
// bearer token from <data_dir>/api.token (made at first start, mode 0600),
// basic auth as user "admin" with that token, or a [[api.users]] entry.
// The token and admin users may do everything; viewers only read.
package api

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/edgeway/edgeway/agent"
	"github.com/edgeway/edgeway/agent/api/route"
	"github.com/edgeway/edgeway/agent/config"
)

// Prefix is the path every API endpoint lives under, as in EMQX 5.
const Prefix = "/api/v5"

// UplinkStatus is the uplink as the API sees it: Status returns a value
// that marshals to JSON. The status page and /metrics read these fields
// of it when present: state, last_error, queue_messages, queue_bytes,
// oldest_age, drain_rate, ping_rtt, inflight.
type UplinkStatus interface {
	Status() any
}

// UplinkFunc adapts a function to UplinkStatus:
//
//	api.UplinkFunc(func() any { return up.Status() })
type UplinkFunc func() any

// Status implements UplinkStatus.
func (f UplinkFunc) Status() any { return f() }

// Options are the server's settings that do not come from [api].
type Options struct {
	Logger *slog.Logger
	// Version is shown on the status page and in /metrics.
	Version string
	// ConfigPath is the file the agent's config came from (agent.Options
	// ConfigPath): the text that API edits start from. Empty: the API can
	// read state but not change config.
	ConfigPath string
	// Uplink is nil when the agent has none; GET /uplink then answers 404.
	Uplink UplinkStatus
	// SampleInterval is how often the status page's charts sample the
	// counters (default 1s); ChartPoints how many samples they keep
	// (default 300: five minutes).
	SampleInterval time.Duration
	ChartPoints    int
	// HashIterations is the PBKDF2 cost of passwords of built-in users
	// added through the API (0: auth.DefaultIterations).
	HashIterations int
}

// Server is the HTTP API and status page of one agent.
type Server struct {
	a    *agent.Agent
	opts Options
	log  *slog.Logger

	mux     *http.ServeMux
	maxBody int64
	auth    *authenticator
	charts  *charts
	events  *eventLog

	// editMu serialises config edits (read the running text, change it,
	// apply it).
	editMu   sync.Mutex
	baseText []byte // the config file as read at New

	mu      sync.Mutex
	srv     *http.Server
	ln      net.Listener
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	unsub   func()
	started bool
	stopped bool
}

// New builds a server for a. It does no I/O beyond reading the config
// file the agent was started from.
func New(a *agent.Agent, opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.SampleInterval <= 0 {
		opts.SampleInterval = time.Second
	}
	if opts.ChartPoints < 2 {
		opts.ChartPoints = 300
	}
	s := &Server{a: a, opts: opts, log: opts.Logger.With("component", "api")}
	if opts.ConfigPath != "" {
		if b, err := os.ReadFile(opts.ConfigPath); err == nil {
			s.baseText = b
		}
	}
	s.charts = newCharts(opts.ChartPoints)
	s.events = newEventLog(200)
	return s
}

// Addr is the address the server listens on, once started ("" before).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// Start opens the listener from [api] listen and serves until Stop. With
// listen = "" it does nothing. It makes the token file on first start.
func (s *Server) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.started {
		return errors.New("api: already started")
	}
	cfg := s.a.Config()
	if cfg.API.Listen == "" {
		s.log.Info("api disabled ([api] listen is empty)")
		s.started = true
		return nil
	}
	if err := checkUsers(cfg.API.Users); err != nil {
		return err
	}
	tok, created, err := loadToken(cfg.Agent.DataDir)
	if err != nil {
		return err
	}
	if created {
		s.log.Info("api token created", "file", filepath.Join(cfg.Agent.DataDir, TokenFile))
	}
	s.auth = newAuthenticator(tok, func() []config.APIUser { return s.a.Config().API.Users })
	s.maxBody = int64(cfg.API.MaxBodySize)
	if s.maxBody <= 0 {
		s.maxBody = 1 << 20
	}
	if err := s.routes(); err != nil {
		return err
	}
	var lc net.ListenConfig
	ln, err := lc.Listen(ctx, "tcp", cfg.API.Listen)
	if err != nil {
		return fmt.Errorf("api: listen: %w", err)
	}
	s.ln = ln
	s.srv = &http.Server{
		Handler:           s.mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	sctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.unsub = s.events.subscribe(s.a.Hooks())
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Error("api server stopped", "error", err)
		}
	}()
	go func() {
		defer s.wg.Done()
		s.charts.run(sctx, s.opts.SampleInterval, s.sample)
	}()
	s.started = true
	s.log.Info("api listening", "address", ln.Addr().String(), "users", len(cfg.API.Users))
	return nil
}

// Stop ends the server: no new requests, in-flight ones get until ctx
// ends, then the sampler and the event log stop. Idempotent.
func (s *Server) Stop(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped || !s.started || s.srv == nil {
		s.stopped = true
		return nil
	}
	s.stopped = true
	err := s.srv.Shutdown(ctx)
	if err != nil {
		_ = s.srv.Close()
	}
	s.cancel()
	s.wg.Wait()
	s.unsub()
	return err
}

// handle mounts h at "METHOD /path" (relative to Prefix unless it starts
// with "!"), requiring role (roleNone: no credentials).
func (s *Server) handle(method, path, role string, h http.HandlerFunc) {
	p := path
	if !strings.HasPrefix(p, "!") {
		p = Prefix + p
	} else {
		p = p[1:]
	}
	pattern := p
	if method != "" {
		pattern = method + " " + p
	}
	s.mux.Handle(pattern, s.wrap(role, h))
}

func (s *Server) routes() (err error) {
	s.mux = http.NewServeMux()
	s.handle("GET", "/healthz", roleNone, s.healthz)
	s.handle("GET", "/readyz", roleNone, s.readyz)

	s.handle("GET", "/gateways", roleViewer, s.listGateways)
	s.handle("GET", "/gateways/{name}", roleViewer, s.getGateway)
	s.handle("PUT", "/gateways/{name}", roleAdmin, s.putGateway)
	s.handle("DELETE", "/gateways/{name}", roleAdmin, s.deleteGateway)
	s.handle("PUT", "/gateways/{name}/enable/{enable}", roleAdmin, s.enableGateway)

	s.handle("GET", "/gateways/{name}/listeners", roleViewer, s.listListeners)
	s.handle("POST", "/gateways/{name}/listeners", roleAdmin, s.createListener)
	s.handle("GET", "/gateways/{name}/listeners/{id}", roleViewer, s.getListener)
	s.handle("PUT", "/gateways/{name}/listeners/{id}", roleAdmin, s.putListener)
	s.handle("DELETE", "/gateways/{name}/listeners/{id}", roleAdmin, s.deleteListener)

	for _, base := range []string{"/gateways/{name}/authentication", "/gateways/{name}/listeners/{id}/authentication"} {
		s.handle("GET", base, roleViewer, s.getAuthn)
		s.handle("POST", base, roleAdmin, s.postAuthn)
		s.handle("PUT", base, roleAdmin, s.putAuthn)
		s.handle("DELETE", base, roleAdmin, s.deleteAuthn)
		s.handle("GET", base+"/users", roleViewer, s.listUsers)
		s.handle("POST", base+"/users", roleAdmin, s.addUser)
		s.handle("GET", base+"/users/{uid}", roleViewer, s.getUser)
		s.handle("PUT", base+"/users/{uid}", roleAdmin, s.updateUser)
		s.handle("DELETE", base+"/users/{uid}", roleAdmin, s.deleteUser)
	}

	s.handle("GET", "/gateways/{name}/clients", roleViewer, s.listClients)
	s.handle("GET", "/gateways/{name}/clients/{clientid}", roleViewer, s.getClient)
	s.handle("DELETE", "/gateways/{name}/clients/{clientid}", roleAdmin, s.kickClient)
	s.handle("GET", "/gateways/{name}/clients/{clientid}/subscriptions", roleViewer, s.listSubs)
	s.handle("POST", "/gateways/{name}/clients/{clientid}/subscriptions", roleAdmin, s.addSub)
	s.handle("DELETE", "/gateways/{name}/clients/{clientid}/subscriptions/{topic...}", roleAdmin, s.deleteSub)

	s.handle("GET", "/uplink", roleViewer, s.getUplink)
	s.handle("GET", "/metrics/gateways/{name}", roleViewer, s.gatewayMetrics)
	s.handle("GET", "/metrics", roleViewer, s.prometheus)
	s.handle("GET", "!/metrics", roleViewer, s.prometheus)
	s.handle("GET", "/config", roleViewer, s.getConfig)
	s.handle("PUT", "/config", roleAdmin, s.putConfig)
	s.handle("GET", "/status", roleViewer, s.status)

	s.handle("GET", "!/{$}", roleViewer, s.page)
	s.handle("GET", "!/static/{file}", roleNone, s.static)
	s.handle("", "/", roleViewer, s.notFound)
	s.handle("", "!/", roleNone, s.notFound)

	for _, rt := range route.Routes() {
		role := roleAdmin
		if rt.Method == "GET" || rt.Method == "HEAD" {
			role = roleViewer
		}
		h := rt.Handler
		if err := mountSafely(func() {
			s.handle(rt.Method, rt.Pattern, role, func(w http.ResponseWriter, r *http.Request) { h(s.a.Gateways(), w, r) })
		}); err != nil {
			return fmt.Errorf("api: route %s %s: %v", rt.Method, rt.Pattern, err)
		}
	}
	return nil
}

func mountSafely(f func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	f()
	return nil
}

type ctxKey struct{}

func principalOf(r *http.Request) principal {
	p, _ := r.Context().Value(ctxKey{}).(principal)
	return p
}

// wrap adds what every endpoint shares: security headers, credentials and
// role, same-origin check for writes, body limit, panics as 500s.
func (s *Server) wrap(role string, h http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		hd := w.Header()
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("Referrer-Policy", "no-referrer")
		rec := &statusWriter{ResponseWriter: w}
		w = rec
		var who string
		defer func() {
			if v := recover(); v != nil {
				s.log.Error("api handler panic", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				if rec.status == 0 {
					route.Error(w, http.StatusInternalServerError, "INTERNAL_ERROR", "internal error")
				}
			}
			s.log.Debug("api request", "method", r.Method, "path", r.URL.Path, "status", rec.status, "user", who, "duration", time.Since(start))
		}()
		if role != roleNone {
			p, ok := s.auth.check(r)
			if !ok {
				hd.Set("WWW-Authenticate", `Basic realm="edgeway", charset="UTF-8"`)
				route.Error(w, http.StatusUnauthorized, "UNAUTHORIZED", "credentials required: a bearer token, or basic auth as admin with the token or as an [[api.users]] user")
				return
			}
			who = p.name
			if !p.can(role) {
				route.Error(w, http.StatusForbidden, "FORBIDDEN", fmt.Sprintf("user %q has role %s; this needs %s", p.name, p.role, role))
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, p))
		}
		if r.Method != "GET" && r.Method != "HEAD" {
			if o := r.Header.Get("Origin"); o != "" && !sameOrigin(o, r.Host) {
				route.Error(w, http.StatusForbidden, "FORBIDDEN", "cross-origin request refused")
				return
			}
			if r.ContentLength > s.maxBody {
				route.Error(w, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", fmt.Sprintf("request body of %d bytes is over the %d byte limit (api.max_body_size)", r.ContentLength, s.maxBody))
				return
			}
			r.Body = http.MaxBytesReader(w, r.Body, s.maxBody)
		}
		h(w, r)
	})
}

func sameOrigin(origin, host string) bool {
	u, err := url.Parse(origin)
	return err == nil && strings.EqualFold(u.Host, host)
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// notFound answers paths no endpoint matched: 405 with Allow when the path
// exists for other methods, else 404.
func (s *Server) notFound(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{"GET", "POST", "PUT", "DELETE"} {
		if m == r.Method {
			continue
		}
		r2 := r.Clone(r.Context())
		r2.Method = m
		if _, p := s.mux.Handler(r2); p != "" && p != Prefix+"/" && p != "/" {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		sort.Strings(allow)
		w.Header().Set("Allow", strings.Join(allow, ", "))
		route.Error(w, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", fmt.Sprintf("%s %s: allowed %s", r.Method, r.URL.Path, strings.Join(allow, ", ")))
		return
	}
	route.Error(w, http.StatusNotFound, "NOT_FOUND", "no endpoint "+r.URL.Path)
}

// mediaType is the request's Content-Type without parameters.
func mediaType(r *http.Request) string {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt
}
