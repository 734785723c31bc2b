package api

import (
	"bytes"
	"cmp"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io"
	"io/fs"
	"math"
	"net/http"
	"path"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/edgeway/edgeway/agent/gateway"
	"github.com/edgeway/edgeway/agent/hooks"
	"github.com/edgeway/edgeway/agent/metrics"
)

// The status page: server-rendered HTML, one stylesheet and one script,
// all embedded. The script polls GET /api/v5/status (counters, uplink,
// chart series, events) and the clients endpoints, and draws the charts
// as SVG paths. Nothing on the page is built from device-chosen strings
// with innerHTML, and the Content-Security-Policy allows only the page's
// own script, so a client id such as <img onerror=…> stays text.

//go:embed static
var staticFS embed.FS

type asset struct {
	body  []byte
	ctype string
	etag  string

	// The gzipped body is made on the first request that accepts it: a
	// BestCompression writer allocates about 800KB, which an idle agent
	// nobody browses should not keep in its heap (issue 11: idle RSS).
	gzOnce sync.Once
	gz     []byte
}

func (a *asset) gzipped() []byte {
	a.gzOnce.Do(func() {
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestCompression)
		zw.Write(a.body)
		zw.Close()
		a.gz = gz.Bytes()
	})
	return a.gz
}

var (
	assets   = map[string]*asset{}
	pageTmpl *pageTemplate
)

func init() {
	ents, _ := fs.ReadDir(staticFS, "static")
	for _, e := range ents {
		b, _ := staticFS.ReadFile("static/" + e.Name())
		sum := sha256.Sum256(b)
		a := &asset{body: b, etag: hex.EncodeToString(sum[:8])}
		switch path.Ext(e.Name()) {
		case ".js":
			a.ctype = "text/javascript; charset=utf-8"
		case ".css":
			a.ctype = "text/css; charset=utf-8"
		case ".html":
			a.ctype = "text/html; charset=utf-8"
		default:
			a.ctype = "application/octet-stream"
		}
		assets[e.Name()] = a
	}
	t, err := parsePage(string(assets["index.html"].body))
	if err != nil {
		panic(err) // the embedded page is broken: a build error, caught by the tests
	}
	pageTmpl = t
	delete(assets, "index.html")
}

func assetURL(name string) string { return "/static/" + name + "?v=" + assets[name].etag }

const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

func (s *Server) static(w http.ResponseWriter, r *http.Request) {
	a, ok := assets[r.PathValue("file")]
	if !ok {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.ctype)
	h.Set("ETag", `"`+a.etag+`"`)
	h.Set("Vary", "Accept-Encoding")
	if r.URL.Query().Get("v") == a.etag {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "no-cache")
	}
	if r.Header.Get("If-None-Match") == `"`+a.etag+`"` {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	body := a.body
	if acceptsGzip(r) {
		h.Set("Content-Encoding", "gzip")
		body = a.gzipped()
	}
	_, _ = w.Write(body)
}

// Gzip writers are pooled: a new one allocates hundreds of kilobytes,
// which a page polled every two seconds should not cost.
var gzips = sync.Pool{New: func() any { w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed); return w }}

func getGzip(w io.Writer) *gzip.Writer {
	zw := gzips.Get().(*gzip.Writer)
	zw.Reset(w)
	return zw
}

func putGzip(zw *gzip.Writer) {
	_ = zw.Close()
	gzips.Put(zw)
}

func acceptsGzip(r *http.Request) bool {
	return strings.Contains(r.Header.Get("Accept-Encoding"), "gzip")
}

// pageData is what index.html renders.
type pageData struct {
	Status   statusJSON
	Admin    bool
	User     string
	Clients  []map[string]any
	Gateways []string
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	p := principalOf(r)
	d := pageData{Status: s.statusData(p), Admin: p.role == roleAdmin, User: p.name}
	for _, g := range s.a.Gateways().List() {
		d.Gateways = append(d.Gateways, g.Name())
		for _, c := range g.Clients() {
			if len(d.Clients) >= 50 {
				break
			}
			d.Clients = append(d.Clients, s.clientJSON(c, false))
		}
	}
	var b strings.Builder
	pageTmpl.render(&b, d.values(assetURL))
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", csp)
	h.Set("Cache-Control", "no-store")
	if acceptsGzip(r) && b.Len() > 1024 {
		h.Set("Content-Encoding", "gzip")
		h.Set("Vary", "Accept-Encoding")
		zw := getGzip(w)
		_, _ = io.WriteString(zw, b.String())
		putGzip(zw)
		return
	}
	_, _ = io.WriteString(w, b.String())
}

// statusJSON is GET /api/v5/status, the status page's data.
type statusJSON struct {
	Agent    agentJSON        `json:"agent"`
	Role     string           `json:"role"`
	Uplink   map[string]any   `json:"uplink"`
	Gateways []map[string]any `json:"gateways"`
	Charts   chartJSON        `json:"charts"`
	Events   []eventJSON      `json:"events"`
}

type agentJSON struct {
	ID              string `json:"id"`
	Version         string `json:"version"`
	StartedAt       any    `json:"started_at"`
	Uptime          string `json:"uptime"`
	UptimeSeconds   int64  `json:"uptime_seconds"`
	BoardSerial     string `json:"board_serial"`
	BoardModel      string `json:"board_model"`
	BoardSource     string `json:"board_source"`
	SecurityProfile string `json:"security_profile"`
	Go              string `json:"go"`
	Arch            string `json:"arch"`
}

func (s *Server) statusData(p principal) statusJSON {
	id := s.a.Identity()
	up := time.Duration(0)
	if t := s.a.StartedAt(); !t.IsZero() {
		up = time.Since(t)
	}
	st := statusJSON{
		Agent: agentJSON{ID: s.a.ID(), Version: cmp.Or(s.opts.Version, "dev"), StartedAt: apiTime(s.a.StartedAt()),
			Uptime: uptime(up), UptimeSeconds: int64(up.Seconds()),
			BoardSerial: id.Serial, BoardModel: id.Model, BoardSource: id.Source,
			SecurityProfile: s.a.Config().Agent.SecurityProfile, Go: runtime.Version(), Arch: runtime.GOOS + "/" + runtime.GOARCH},
		Role:     p.role,
		Gateways: []map[string]any{},
		Charts:   s.charts.json(),
		Events:   s.events.recent(50),
	}
	st.Charts.Window = (s.opts.SampleInterval * time.Duration(s.opts.ChartPoints)).Milliseconds()
	if u, ok := s.uplinkStatus(); ok {
		st.Uplink = u
	}
	for _, g := range s.a.Gateways().List() {
		st.Gateways = append(st.Gateways, gatewayOverviewFull(g))
	}
	return st
}

func gatewayOverviewFull(g *gateway.Gateway) map[string]any {
	in := g.Info()
	ls := []map[string]any{}
	for _, l := range in.Listeners {
		ls = append(ls, map[string]any{"id": l.ID, "type": l.Type, "name": l.Name, "bind": l.Bind, "address": l.Address,
			"running": l.Running, "enable": l.Enable, "error": l.Error,
			"current_connections": l.CurrentConnections, "max_connections": limitJSON(l.MaxConnections)})
	}
	snap := g.Metrics().Snapshot()
	return map[string]any{"name": in.Name, "status": in.Status, "enable": g.Config().Enable,
		"current_connections": in.CurrentConnections, "max_connections": limitJSON(in.MaxConnections),
		"messages_received": uint64(snap[metrics.MessagesReceived]), "messages_sent": uint64(snap[metrics.MessagesSent]),
		"messages_dropped": uint64(snap[metrics.MessagesDropped]), "listeners": ls}
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st := s.statusData(principalOf(r))
	if acceptsGzip(r) {
		var b bytes.Buffer
		zw := getGzip(&b)
		_ = jsonEncoder(zw).Encode(st)
		putGzip(zw)
		h := w.Header()
		h.Set("Content-Type", "application/json")
		h.Set("Content-Encoding", "gzip")
		h.Set("Vary", "Accept-Encoding")
		h.Set("Cache-Control", "no-store")
		_, _ = w.Write(b.Bytes())
		return
	}
	writeJSON(w, http.StatusOK, st)
}

// sample is called every SampleInterval by the charts goroutine.
func (s *Server) sample(now time.Time) {
	var in, out uint64
	seen := map[string]bool{}
	for _, g := range s.a.Gateways().List() {
		name := g.Name()
		seen[name] = true
		in += s.charts.delta(name+"/in", g.Metrics().Counter(metrics.MessagesReceived).Load())
		out += s.charts.delta(name+"/out", g.Metrics().Counter(metrics.MessagesSent).Load())
	}
	s.charts.forget(seen)
	q := math.NaN()
	if v, ok := s.queueDepth(); ok {
		q = v
	}
	s.charts.add(now, in, out, q)
}

// queueDepth is the uplink's queue length for the charts. It is sampled
// every second for the life of the agent, so a status that tells it
// directly spares the JSON round trip of uplinkStatus: that garbage kept
// an idle agent's heap growing until the next GC (issue 11, idle RSS).
func (s *Server) queueDepth() (float64, bool) {
	if s.opts.Uplink == nil {
		return 0, false
	}
	if d, ok := s.opts.Uplink.Status().(interface{ QueueDepth() int64 }); ok {
		return float64(d.QueueDepth()), true
	}
	if st, ok := s.uplinkStatus(); ok {
		return number(st["queue_messages"])
	}
	return 0, false
}

// charts keeps the status page's series: messages in and out per second
// (from the sum of every gateway's counters, made monotonic so that a
// gateway unloaded or reloaded does not show as a spike) and the uplink's
// queue depth.
type charts struct {
	mu      sync.Mutex
	in, out *metrics.Rate
	totIn   uint64
	totOut  uint64
	last    map[string]uint64
	qt      []time.Time
	qv      []float64
	n       int
}

func newCharts(n int) *charts {
	return &charts{in: metrics.NewRate(n), out: metrics.NewRate(n), last: map[string]uint64{}, n: n}
}

func (c *charts) run(ctx context.Context, every time.Duration, sample func(time.Time)) {
	t := time.NewTicker(every)
	defer t.Stop()
	sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			sample(now)
		}
	}
}

// delta returns how much a counter grew since the last call for key.
func (c *charts) delta(key string, v uint64) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, ok := c.last[key]
	c.last[key] = v
	switch {
	case !ok:
		return 0
	case v < prev:
		return v // restarted from zero
	}
	return v - prev
}

func (c *charts) forget(seen map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.last {
		gw, _, _ := strings.Cut(k, "/")
		if !seen[gw] {
			delete(c.last, k)
		}
	}
}

func (c *charts) add(now time.Time, dIn, dOut uint64, queue float64) {
	c.mu.Lock()
	c.totIn += dIn
	c.totOut += dOut
	in, out := c.totIn, c.totOut
	c.qt = append(c.qt, now)
	c.qv = append(c.qv, queue)
	if len(c.qt) > c.n {
		c.qt = c.qt[len(c.qt)-c.n:]
		c.qv = c.qv[len(c.qv)-c.n:]
	}
	c.mu.Unlock()
	c.in.Sample(now, in)
	c.out.Sample(now, out)
}

// chartJSON carries the series with times as milliseconds before End.
type chartJSON struct {
	End    int64     `json:"end"`
	Window int64     `json:"window_ms"`
	T      []int64   `json:"t"`
	In     []float64 `json:"in"`
	Out    []float64 `json:"out"`
	QT     []int64   `json:"qt"`
	Queue  []any     `json:"queue"`
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

func (c *charts) json() chartJSON {
	now := time.Now()
	in, out := c.in.Series(), c.out.Series()
	j := chartJSON{End: now.UnixMilli(), T: []int64{}, In: []float64{}, Out: []float64{}, QT: []int64{}, Queue: []any{}}
	for i, p := range in {
		j.T = append(j.T, now.Sub(p.Time).Milliseconds())
		j.In = append(j.In, round2(p.Value))
		if i < len(out) {
			j.Out = append(j.Out, round2(out[i].Value))
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, t := range c.qt {
		j.QT = append(j.QT, now.Sub(t).Milliseconds())
		if math.IsNaN(c.qv[i]) {
			j.Queue = append(j.Queue, nil)
		} else {
			j.Queue = append(j.Queue, c.qv[i])
		}
	}
	return j
}

// eventLog keeps the recent events for the status page.
type eventLog struct {
	mu   sync.Mutex
	ring []eventJSON
	next int
	n    int
}

type eventJSON struct {
	Time     any    `json:"time"`
	Name     string `json:"name"`
	Gateway  string `json:"gateway,omitempty"`
	Listener string `json:"listener,omitempty"`
	ClientID string `json:"clientid,omitempty"`
	Username string `json:"username,omitempty"`
	Peer     string `json:"peer,omitempty"`
	Topic    string `json:"topic,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

var eventNames = []hooks.Name{hooks.ClientConnected, hooks.ClientDisconnected, hooks.ClientAuthenticate,
	hooks.SessionTakenover, hooks.MessageDropped, hooks.Name("config.applied")}

func newEventLog(n int) *eventLog { return &eventLog{ring: make([]eventJSON, n)} }

func (l *eventLog) subscribe(b *hooks.Bus) func() {
	return b.Subscribe("statuspage", eventNames, 256, l.add)
}

func (l *eventLog) add(e hooks.Event) {
	switch {
	case e.Name == hooks.ClientAuthenticate && e.Reason != "deny":
		return // only failures are news
	case e.Name == hooks.MessageDropped && e.Reason == "no_subscribers":
		return // normal for a box without an uplink; counted in metrics
	}
	j := eventJSON{Time: apiTime(e.Time), Name: string(e.Name), Gateway: e.Client.Gateway, Listener: e.Client.Listener,
		ClientID: e.Client.ClientID, Username: e.Client.Username, Peer: e.Client.PeerHost, Topic: e.Topic, Reason: e.Reason}
	l.mu.Lock()
	l.ring[l.next] = j
	l.next = (l.next + 1) % len(l.ring)
	l.n = min(l.n+1, len(l.ring))
	l.mu.Unlock()
}

// recent returns up to n events, newest first.
func (l *eventLog) recent(n int) []eventJSON {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]eventJSON, 0, min(n, l.n))
	for i := 0; i < l.n && i < n; i++ {
		out = append(out, l.ring[(l.next-1-i+2*len(l.ring))%len(l.ring)])
	}
	return out
}
