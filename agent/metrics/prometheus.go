package metrics

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
)

// WriteOptions controls WritePrometheus.
type WriteOptions struct {
	// IncludeClients also writes client-scoped Sets (those with a
	// clientid label). It is off by default because one series per
	// device and metric swamps a scrape on a gateway with thousands of
	// devices, and churns the time-series database as devices come and go.
	IncludeClients bool
}

// namePrefix starts every exposed metric name.
const namePrefix = "edgeway_"

var help = map[string]string{
	BytesReceived:     "Bytes received from clients.",
	BytesSent:         "Bytes sent to clients.",
	MessagesReceived:  "Messages received from clients.",
	MessagesSent:      "Messages sent to clients.",
	MessagesDropped:   "Messages dropped.",
	MessagesDelivered: "Messages delivered to subscribers.",
	MessagesAcked:     "QoS 1 and 2 messages acknowledged by clients.",
	PacketsReceived:   "Packets received from clients.",
	PacketsSent:       "Packets sent to clients.",
	ConnectionsCount:  "Clients currently connected.",
}

type family struct {
	kind    string // "counter" or "gauge"
	help    string
	samples []sample
	byLabel map[string]int // labels → index in samples
}

type sample struct {
	labels string
	u      uint64 // counters
	i      int64  // gauges
}

// WritePrometheus writes every Set in the Prometheus text exposition
// format, version 0.0.4. A metric called "bytes.received" becomes
// edgeway_bytes_received_total if it is a counter and a gauge called
// "connections.count" becomes edgeway_connections_count: "edgeway_",
// then the name with every character outside [a-zA-Z0-9_] replaced by
// '_', then "_total" for counters. The Set's labels label every sample;
// values are escaped and made valid UTF-8, so device-chosen client ids
// cannot break the output. Families are sorted by name, samples within a
// family by Set key, so the output is deterministic.
//
// Samples that end up with the same name and labels (two Sets with equal
// labels, or names that differ only in replaced characters) are summed.
// A family that would be both a counter and a gauge keeps the kind it met
// first, in key order; the other samples are left out and reported in the
// returned error, after everything else has been written. An error from w
// is returned too.
func (r *Registry) WritePrometheus(w io.Writer, opts WriteOptions) error {
	fams := make(map[string]*family)
	var conflicts []string
	add := func(name, kind, labels string, u uint64, i int64) {
		fname := namePrefix + sanitizeName(name)
		if kind == "counter" {
			fname += "_total"
		}
		f := fams[fname]
		if f == nil {
			f = &family{kind: kind, help: helpFor(name), byLabel: make(map[string]int)}
			fams[fname] = f
		}
		if f.kind != kind {
			conflicts = append(conflicts, fname+labels+" is both a counter and a gauge")
			return
		}
		if j, ok := f.byLabel[labels]; ok {
			f.samples[j].u += u
			f.samples[j].i += i
			return
		}
		f.byLabel[labels] = len(f.samples)
		f.samples = append(f.samples, sample{labels: labels, u: u, i: i})
	}
	r.Each(func(_ string, s *Set) {
		if !opts.IncludeClients && s.clientScoped() {
			return
		}
		labels := formatLabels(s.labels)
		s.mu.RLock()
		defer s.mu.RUnlock()
		// Sorted so that which side of a counter/gauge clash is kept
		// does not depend on map order.
		for _, name := range slices.Sorted(maps.Keys(s.counters)) {
			add(name, "counter", labels, s.counters[name].Load(), 0)
		}
		for _, name := range slices.Sorted(maps.Keys(s.gauges)) {
			add(name, "gauge", labels, 0, s.gauges[name].Load())
		}
	})

	bw := bufio.NewWriter(w)
	var num []byte
	for _, name := range slices.Sorted(maps.Keys(fams)) {
		f := fams[name]
		bw.WriteString("# HELP ")
		bw.WriteString(name)
		bw.WriteByte(' ')
		bw.WriteString(f.help)
		bw.WriteString("\n# TYPE ")
		bw.WriteString(name)
		bw.WriteByte(' ')
		bw.WriteString(f.kind)
		bw.WriteByte('\n')
		for _, s := range f.samples {
			bw.WriteString(name)
			bw.WriteString(s.labels)
			bw.WriteByte(' ')
			if f.kind == "counter" {
				num = strconv.AppendUint(num[:0], s.u, 10)
			} else {
				num = strconv.AppendInt(num[:0], s.i, 10)
			}
			bw.Write(num)
			bw.WriteByte('\n')
		}
	}
	// bufio keeps the first write error and returns it here.
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("metrics: write prometheus: %w", err)
	}
	if len(conflicts) > 0 {
		slices.Sort(conflicts)
		return errors.New("metrics: left out of prometheus output: " + strings.Join(slices.Compact(conflicts), "; "))
	}
	return nil
}

// helpFor returns the escaped HELP text for a metric name.
func helpFor(name string) string {
	if h, ok := help[name]; ok {
		return h
	}
	if reason, ok := strings.CutPrefix(name, DeliveryDroppedPrefix); ok {
		return "Deliveries dropped, reason " + escapeHelp(reason) + "."
	}
	return "Metric " + escapeHelp(name) + "."
}

func sanitizeName(name string) string {
	b := []byte(name)
	for i, c := range b {
		if !nameByte(c) {
			b[i] = '_'
		}
	}
	return string(b)
}

func nameByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_'
}

// formatLabels returns `{a="1",b="2"}` with names sorted, or "" for no
// labels. Names are made valid, and of two that become equal the first
// in order of the original names is kept.
func formatLabels(labels map[string]string) string {
	if len(labels) == 0 {
		return ""
	}
	type pair struct{ name, orig, value string }
	pairs := make([]pair, 0, len(labels))
	for k, v := range labels {
		if k == "" {
			continue
		}
		n := sanitizeName(k)
		if n[0] >= '0' && n[0] <= '9' {
			n = "_" + n
		}
		pairs = append(pairs, pair{n, k, v})
	}
	slices.SortFunc(pairs, func(a, b pair) int {
		if c := strings.Compare(a.name, b.name); c != 0 {
			return c
		}
		return strings.Compare(a.orig, b.orig)
	})
	pairs = slices.CompactFunc(pairs, func(a, b pair) bool { return a.name == b.name })
	if len(pairs) == 0 {
		return ""
	}
	var sb strings.Builder
	sb.WriteByte('{')
	for i, p := range pairs {
		if i > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(p.name)
		sb.WriteString(`="`)
		sb.WriteString(labelEscaper.Replace(strings.ToValidUTF8(p.value, "\uFFFD")))
		sb.WriteByte('"')
	}
	sb.WriteByte('}')
	return sb.String()
}

var (
	labelEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`)
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
)

func escapeHelp(s string) string {
	return helpEscaper.Replace(strings.ToValidUTF8(s, "\uFFFD"))
}
