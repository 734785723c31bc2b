package api

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/edgeway/edgeway/agent/config"
	"github.com/edgeway/edgeway/agent/metrics"
)

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// readyz is 200 once the agent has started. Listeners that failed are
// listed, but do not make the box unready: it still relays the rest.
func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.a.StartedAt().IsZero() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "starting"})
		return
	}
	problems := []string{}
	for _, g := range s.a.Gateways().List() {
		for _, l := range g.Info().Listeners {
			if l.Error != "" {
				problems = append(problems, l.ID+": "+l.Error)
			} else if l.Enable && !l.Running && g.Status() == "running" {
				problems = append(problems, l.ID+": not running")
			}
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ready", "problems": problems})
}

// uplinkStatus is the uplink's status as JSON fields; false when there is
// no uplink, or it has none to give (nil: disabled, or not running).
func (s *Server) uplinkStatus() (map[string]any, bool) {
	if s.opts.Uplink == nil {
		return nil, false
	}
	b, err := json.Marshal(s.opts.Uplink.Status())
	if err != nil {
		s.log.Warn("uplink status does not marshal", "error", err)
		return nil, false
	}
	var m map[string]any
	if json.Unmarshal(b, &m) != nil || m == nil {
		return nil, false
	}
	return m, true
}

func (s *Server) getUplink(w http.ResponseWriter, r *http.Request) {
	if s.opts.Uplink == nil {
		s.writeErr(w, notFound("this agent has no uplink (not built in)"))
		return
	}
	m, ok := s.uplinkStatus()
	if !ok {
		s.writeErr(w, notFound("the uplink is not running ([uplink] disabled, or no server set)"))
		return
	}
	writeJSON(w, http.StatusOK, m)
}

func (s *Server) gatewayMetrics(w http.ResponseWriter, r *http.Request) {
	g, err := s.loaded(r.PathValue("name"))
	if err != nil {
		s.writeErr(w, err)
		return
	}
	ls := map[string]map[string]float64{}
	for _, l := range g.Listeners() {
		ls[l.ID()] = l.Metrics().Snapshot()
	}
	snap := g.Metrics().Snapshot()
	writeJSON(w, http.StatusOK, map[string]any{"name": g.Name(), "metrics": snap, "listeners": ls})
}

// prometheus writes every registered counter set (gateways, listeners,
// the uplink and the store register theirs), then the agent's own gauges
// and the uplink's queue. Client sets only with ?clients=true.
func (s *Server) prometheus(w http.ResponseWriter, r *http.Request) {
	clients := false
	if v := r.URL.Query().Get("clients"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			s.writeErr(w, badRequest("clients: want true or false, got %q", v))
			return
		}
		clients = b
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	bw := bufio.NewWriterSize(w, 32<<10)
	defer bw.Flush()
	if err := s.a.Metrics().WritePrometheus(bw, metrics.WriteOptions{IncludeClients: clients}); err != nil {
		s.log.Warn("prometheus exposition", "error", err)
	}
	gauge := func(name, help string, v float64, labels string) {
		fmt.Fprintf(bw, "# HELP %s %s\n# TYPE %s gauge\n%s%s %s\n", name, help, name, name, labels, strconv.FormatFloat(v, 'g', -1, 64))
	}
	gauge("edgeway_info", "Agent identity; always 1.", 1, fmt.Sprintf(`{agent_id=%q,version=%q,go=%q}`, s.a.ID(), s.opts.Version, runtime.Version()))
	if t := s.a.StartedAt(); !t.IsZero() {
		gauge("edgeway_start_time_seconds", "When the agent started, Unix time.", float64(t.Unix()), "")
	}
	for _, g := range s.a.Gateways().List() {
		up := 0.0
		if g.Status() == "running" {
			up = 1
		}
		gauge("edgeway_gateway_running", "1 while the gateway runs.", up, fmt.Sprintf(`{gateway=%q}`, g.Name()))
	}
	if st, ok := s.uplinkStatus(); ok {
		conn := 0.0
		if st["state"] == "connected" {
			conn = 1
		}
		gauge("edgeway_uplink_connected", "1 while the cloud connection is up.", conn, "")
		for _, f := range []struct{ key, name, help string }{
			{"queue_messages", "edgeway_uplink_queue_messages", "Messages waiting in the store for the cloud."},
			{"queue_bytes", "edgeway_uplink_queue_bytes", "Bytes waiting in the store for the cloud."},
			{"oldest_age", "edgeway_uplink_queue_oldest_age_seconds", "Age of the oldest queued message."},
			{"drain_rate", "edgeway_uplink_drain_rate", "Messages acknowledged by the cloud per second."},
			{"inflight", "edgeway_uplink_inflight", "PUBLISHes awaiting their PUBACK."},
			{"ping_rtt", "edgeway_uplink_ping_rtt_seconds", "Round trip of the last keepalive ping."},
		} {
			if v, ok := number(st[f.key]); ok {
				gauge(f.name, f.help, v, "")
			}
		}
	}
	dropped := s.a.Hooks().Dropped()
	names := make([]string, 0, len(dropped))
	for n := range dropped {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) > 0 {
		fmt.Fprint(bw, "# HELP edgeway_hooks_dropped_total Events a hook consumer lost because its queue was full.\n# TYPE edgeway_hooks_dropped_total counter\n")
		for _, n := range names {
			fmt.Fprintf(bw, "edgeway_hooks_dropped_total{consumer=%q} %d\n", n, dropped[n])
		}
	}
}

// number reads a JSON number, or a duration string as seconds.
func number(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case string:
		if d, err := config.ParseDuration(x); err == nil {
			return d.Seconds(), true
		}
	}
	return 0, false
}

// getConfig returns the running config text with every secret masked.
func (s *Server) getConfig(w http.ResponseWriter, r *http.Request) {
	text, err := s.runningText()
	if err != nil {
		s.writeErr(w, err)
		return
	}
	out := maskText(text, secretValues(s.a.Config()))
	w.Header().Set("Content-Type", "application/toml; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(out)
}

// putConfig applies a whole config. Secrets sent back as "******" keep
// the running values.
func (s *Server) putConfig(w http.ResponseWriter, r *http.Request) {
	if _, err := bodyFormat(r, formatTOML); err != nil {
		s.writeErr(w, err)
		return
	}
	if mediaType(r) == "application/json" || mediaType(r) == "text/json" {
		s.writeErr(w, errorf(http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", "PUT /config takes the TOML file (Content-Type: application/toml)"))
		return
	}
	body, err := readBody(r)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	s.editMu.Lock()
	defer s.editMu.Unlock()
	if old, err := s.runningText(); err == nil {
		if ot, err := decodeTree(old); err == nil {
			body = restoreMasked(body, ot)
		}
	}
	rep, err := s.apply(r.Context(), body)
	if err != nil {
		s.writeErr(w, err)
		return
	}
	if rep.Applied == nil {
		rep.Applied = []string{}
	}
	if rep.RestartRequired == nil {
		rep.RestartRequired = []string{}
	}
	writeJSON(w, http.StatusOK, rep)
}

// uptime formats a duration for people: "3d 4h", "5h 12m", "42s".
func uptime(d time.Duration) string {
	d = d.Round(time.Second)
	days := int(d / (24 * time.Hour))
	h := int(d/time.Hour) % 24
	m := int(d/time.Minute) % 60
	sec := int(d/time.Second) % 60
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, h)
	case h > 0:
		return fmt.Sprintf("%dh %dm", h, m)
	case m > 0:
		return fmt.Sprintf("%dm %ds", m, sec)
	}
	return strings.TrimSpace(fmt.Sprintf("%ds", sec))
}
