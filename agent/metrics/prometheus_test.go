package metrics_test

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/edgeway/edgeway/agent/metrics"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// goldenRegistry covers every kind of Set the framework makes, plus label
// values and names that need escaping or repair.
func goldenRegistry() *metrics.Registry {
	r := metrics.NewRegistry()

	gw := r.Set("gateway:mqttsn", map[string]string{"gateway": "mqttsn"})
	gw.Counter(metrics.BytesReceived).Add(1024)
	gw.Counter(metrics.BytesSent).Add(2048)
	gw.Counter(metrics.MessagesReceived).Add(10)
	gw.Counter(metrics.PacketsReceived).Add(12)
	gw.Gauge(metrics.ConnectionsCount).Set(3)
	gw.Counter(metrics.DeliveryDropped("queue_full")).Add(2)
	gw.Counter(metrics.DeliveryDropped("too-large")).Add(1)

	coap := r.Set("gateway:coap", map[string]string{"gateway": "coap"})
	coap.Counter(metrics.BytesReceived).Add(5)
	coap.Gauge(metrics.ConnectionsCount)

	l := r.Set("listener:mqttsn:udp:default", map[string]string{"gateway": "mqttsn", "listener": "mqttsn:udp:default"})
	l.Counter(metrics.BytesReceived).Add(1000)
	l.Gauge(metrics.ConnectionsCount).Set(2)

	odd := r.Set("listener:stomp:tcp:odd", map[string]string{
		"gateway":   "stomp",
		"listener":  "a\\b\"c\nd",
		"0bad-name": "x",
	})
	odd.Counter(metrics.MessagesDropped).Add(7)
	odd.Gauge("inflight").Set(-1)

	agent := r.Set("agent", nil)
	agent.Gauge("store.bytes").Set(4096)

	dev := r.Set("client:mqttsn:dev-1", map[string]string{"gateway": "mqttsn", "clientid": "dev-1"})
	dev.Counter(metrics.BytesReceived).Add(99)
	dev.Counter(metrics.MessagesSent).Add(4)
	bad := r.Set("client:coap:bad", map[string]string{"gateway": "coap", "clientid": "bad\xffid\"\n"})
	bad.Counter(metrics.PacketsReceived).Inc()
	return r
}

func TestWritePrometheusGolden(t *testing.T) {
	for _, tc := range []struct {
		file string
		opts metrics.WriteOptions
	}{
		{"metrics.prom", metrics.WriteOptions{}},
		{"metrics_clients.prom", metrics.WriteOptions{IncludeClients: true}},
	} {
		t.Run(tc.file, func(t *testing.T) {
			var buf bytes.Buffer
			if err := goldenRegistry().WritePrometheus(&buf, tc.opts); err != nil {
				t.Fatal(err)
			}
			checkExposition(t, buf.String())

			path := filepath.Join("testdata", tc.file)
			if *update {
				if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if got := buf.String(); got != string(want) {
				t.Errorf("output differs from %s (run with -update to accept)\ngot:\n%s\nwant:\n%s", path, got, want)
			}
			// Same registry, same output.
			var again bytes.Buffer
			goldenRegistry().WritePrometheus(&again, tc.opts)
			if again.String() != buf.String() {
				t.Error("output not deterministic")
			}
		})
	}
}

func TestWritePrometheusEmpty(t *testing.T) {
	var buf bytes.Buffer
	if err := metrics.NewRegistry().WritePrometheus(&buf, metrics.WriteOptions{}); err != nil || buf.Len() != 0 {
		t.Errorf("empty registry: %q, %v", buf.String(), err)
	}
}

func TestWritePrometheusSumsAndClashes(t *testing.T) {
	r := metrics.NewRegistry()
	// Equal labels under two keys, and two names that become one.
	r.Set("a", map[string]string{"gateway": "x"}).Counter("drops.too-large").Add(1)
	r.Set("b", map[string]string{"gateway": "x"}).Counter("drops.too_large").Add(2)
	// A gauge whose name is a counter's exposed name.
	r.Set("c", nil).Counter("queue").Add(5)
	r.Set("d", nil).Gauge("queue.total").Set(9)

	var buf bytes.Buffer
	err := r.WritePrometheus(&buf, metrics.WriteOptions{})
	checkExposition(t, buf.String())
	if err == nil || !strings.Contains(err.Error(), "edgeway_queue_total is both a counter and a gauge") {
		t.Errorf("err = %v", err)
	}
	out := buf.String()
	for _, want := range []string{
		"edgeway_drops_too_large_total{gateway=\"x\"} 3\n",
		"# TYPE edgeway_queue_total counter\n",
		"edgeway_queue_total 5\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
}

type failWriter struct{}

var errDiskFull = errors.New("disk full")

func (failWriter) Write([]byte) (int, error) { return 0, errDiskFull }

func TestWritePrometheusWriteError(t *testing.T) {
	err := goldenRegistry().WritePrometheus(failWriter{}, metrics.WriteOptions{})
	if !errors.Is(err, errDiskFull) {
		t.Errorf("err = %v, want it to wrap %v", err, errDiskFull)
	}
}

func FuzzWritePrometheus(f *testing.F) {
	f.Add("bytes.received", "connections.count", "gateway", "mqttsn")
	f.Add("delivery.dropped.too-large", "x.total", "0bad-name", "a\\b\"c\nd")
	f.Add("", "", "", "\xff")
	f.Add("q", "q.total", "clientid", "dev")
	f.Fuzz(func(t *testing.T, counter, gauge, labelName, labelValue string) {
		r := metrics.NewRegistry()
		s := r.Set("k", map[string]string{labelName: labelValue, "gateway": "g"})
		s.Counter(counter).Inc()
		if gauge != counter {
			s.Gauge(gauge).Set(-2)
		}
		r.Set("other", nil).Counter(counter).Add(2)
		var buf bytes.Buffer
		r.WritePrometheus(&buf, metrics.WriteOptions{IncludeClients: true})
		checkExposition(t, buf.String())
	})
}

var (
	labelPair  = `[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"`
	sampleLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{` + labelPair + `(?:,` + labelPair + `)*\})? (-?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?|NaN|[+-]Inf)$`)
	helpLine   = regexp.MustCompile(`^# HELP ([a-zA-Z_:][a-zA-Z0-9_:]*) (?:[^\\\n]|\\[\\n])*$`)
	typeLine   = regexp.MustCompile(`^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$`)
	labelName  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="`)
)

// checkExposition parses text as Prometheus text format 0.0.4, as far as
// edgeway writes it: every sample line is well formed and valid UTF-8,
// each family has exactly one TYPE line, before its samples, at most one
// HELP line, its samples are contiguous, and no series appears twice.
func checkExposition(t testing.TB, text string) {
	t.Helper()
	if text == "" {
		return
	}
	if !strings.HasSuffix(text, "\n") {
		t.Errorf("output does not end in a newline")
	}
	if !utf8.ValidString(text) {
		t.Errorf("output is not valid UTF-8")
	}
	types := map[string]int{}
	helps := map[string]int{}
	done := map[string]bool{} // families whose samples are over
	series := map[string]bool{}
	current := ""
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		n := i + 1
		switch {
		case strings.HasPrefix(line, "# HELP "):
			m := helpLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("line %d: bad HELP: %q", n, line)
				continue
			}
			helps[m[1]]++
		case strings.HasPrefix(line, "# TYPE "):
			m := typeLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("line %d: bad TYPE: %q", n, line)
				continue
			}
			types[m[1]]++
			if current != "" && current != m[1] {
				done[current] = true
			}
			current = m[1]
		case strings.HasPrefix(line, "#"):
			t.Errorf("line %d: unknown comment %q", n, line)
		default:
			m := sampleLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("line %d: bad sample: %q", n, line)
				continue
			}
			name, labels := m[1], m[2]
			if types[name] == 0 {
				t.Errorf("line %d: sample of %s before its TYPE", n, name)
			}
			if name != current || done[name] {
				t.Errorf("line %d: samples of %s not contiguous", n, name)
			}
			seen := map[string]bool{}
			for _, lm := range labelName.FindAllStringSubmatch(labels, -1) {
				if seen[lm[1]] {
					t.Errorf("line %d: label %s twice", n, lm[1])
				}
				seen[lm[1]] = true
			}
			if series[name+labels] {
				t.Errorf("line %d: series %s%s twice", n, name, labels)
			}
			series[name+labels] = true
		}
	}
	for name, c := range types {
		if c != 1 {
			t.Errorf("family %s has %d TYPE lines", name, c)
		}
	}
	for name, c := range helps {
		if c != 1 || types[name] == 0 {
			t.Errorf("family %s has %d HELP lines and %d TYPE lines", name, c, types[name])
		}
	}
}
