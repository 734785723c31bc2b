package benchkit

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Series is one line of a chart.
type Series struct {
	Name string
	X, Y []float64
	Dash bool
	// Color indexes the palette; series of one phase share it.
	Color int
}

// Chart is a plain SVG line chart.
type Chart struct {
	Title, XLabel, YLabel string
	LogX                  bool
	Series                []Series
}

var palette = []string{"#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf"}

// niceMax rounds v up to a round figure (1, 1.2, 1.5, 2, 2.5 … × a power of ten).
func niceMax(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func fmtNum(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return fmt.Sprintf("%.4gM", v/1e6)
	case a >= 1e3:
		return fmt.Sprintf("%.4gk", v/1e3)
	default:
		return fmt.Sprintf("%.4g", v)
	}
}

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&quot;").Replace(s)
}

// SVG renders the chart.
func (c Chart) SVG() string {
	const W, H, L, R, T, B = 760.0, 400.0, 70.0, 190.0, 36.0, 50.0
	pw, ph := W-L-R, H-T-B
	xmin, xmax, ymax := math.Inf(1), math.Inf(-1), 0.0
	for _, s := range c.Series {
		for i, x := range s.X {
			if c.LogX && x <= 0 {
				continue
			}
			xmin, xmax = math.Min(xmin, x), math.Max(xmax, x)
			ymax = math.Max(ymax, s.Y[i])
		}
	}
	if math.IsInf(xmin, 0) {
		xmin, xmax = 1, 10 // no data: an empty frame
	}
	if c.LogX {
		xmin, xmax = math.Pow(10, math.Floor(math.Log10(xmin))), math.Pow(10, math.Ceil(math.Log10(xmax)))
	} else {
		xmin, xmax = 0, niceMax(xmax)
	}
	if xmax <= xmin {
		xmax = xmin + 1
	}
	ymax = niceMax(ymax)
	px := func(x float64) float64 {
		if c.LogX {
			return L + pw*(math.Log10(x)-math.Log10(xmin))/(math.Log10(xmax)-math.Log10(xmin))
		}
		return L + pw*(x-xmin)/(xmax-xmin)
	}
	py := func(y float64) float64 { return T + ph - ph*y/ymax }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-family="sans-serif" font-size="12">`+"\n", W, H, W, H)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(&b, `<text x="%.0f" y="22" font-size="15" font-weight="bold">%s</text>`+"\n", L, esc(c.Title))
	// Grid and ticks.
	for i := 0; i <= 5; i++ {
		y := ymax * float64(i) / 5
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", L, L+pw, py(y), py(y))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", L-6, py(y)+4, fmtNum(y))
	}
	var xt []float64
	if c.LogX {
		for x := xmin; x <= xmax*1.0001; x *= 10 {
			xt = append(xt, x)
		}
	} else {
		for i := 0; i <= 5; i++ {
			xt = append(xt, xmin+(xmax-xmin)*float64(i)/5)
		}
	}
	for _, x := range xt {
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", px(x), px(x), T, T+ph)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px(x), T+ph+16, fmtNum(x))
	}
	fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#333"/>`+"\n", L, T, pw, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", L+pw/2, H-10, esc(c.XLabel))
	fmt.Fprintf(&b, `<text transform="translate(16 %.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", T+ph/2, esc(c.YLabel))
	for i, s := range c.Series {
		col := palette[s.Color%len(palette)]
		var pts []string
		for j, x := range s.X {
			if c.LogX && x <= 0 {
				continue
			}
			pts = append(pts, fmt.Sprintf("%.1f,%.1f", px(x), py(s.Y[j])))
		}
		dash := ""
		if s.Dash {
			dash = ` stroke-dasharray="5 4"`
		}
		if len(pts) > 0 {
			fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.8"%s points="%s"/>`+"\n", col, dash, strings.Join(pts, " "))
		}
		ly := T + 14 + float64(i)*18
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>`+"\n", L+pw+10, L+pw+30, ly-4, ly-4, col, dash)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f">%s</text>`+"\n", L+pw+35, ly, esc(s.Name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// Charts builds the three standard charts of a result.
func Charts(r *Result) map[string]Chart {
	tp := Chart{Title: r.Scenario + ": throughput", XLabel: "seconds into phase", YLabel: "messages/s"}
	lat := Chart{Title: r.Scenario + ": latency distribution (CDF)", XLabel: "latency µs (log)", YLabel: "% of messages at or below", LogX: true}
	rss := Chart{Title: r.Scenario + ": agent RSS", XLabel: "seconds into phase", YLabel: "MB"}
	for pi, p := range r.Phases {
		var x, sent, deliv, mem, memX []float64
		for i := 1; i < len(p.Timeline); i++ {
			a, z := p.Timeline[i-1], p.Timeline[i]
			dt := z.T - a.T
			if dt <= 0 {
				continue
			}
			x = append(x, z.T)
			sent = append(sent, float64(z.Sent-a.Sent)/dt)
			deliv = append(deliv, float64(z.Delivered-a.Delivered)/dt)
		}
		for _, s := range p.Timeline {
			if s.RSS > 0 {
				memX = append(memX, s.T)
				mem = append(mem, float64(s.RSS)/(1<<20))
			}
		}
		tp.Series = append(tp.Series, Series{Name: p.Name + " sent", X: x, Y: sent, Dash: true, Color: pi},
			Series{Name: p.Name + " delivered", X: x, Y: deliv, Color: pi})
		if len(mem) > 0 {
			rss.Series = append(rss.Series, Series{Name: p.Name, X: memX, Y: mem, Color: pi})
		}
		if p.Latency.Count > 0 {
			var lx, ly []float64
			var cum uint64
			for _, bk := range p.Latency.Buckets {
				cum += bk.Count
				lx = append(lx, float64(max(bk.LowUS, 1)))
				ly = append(ly, 100*float64(cum)/float64(p.Latency.Count))
			}
			lat.Series = append(lat.Series, Series{Name: p.Name, X: lx, Y: ly, Color: pi})
		}
	}
	return map[string]Chart{"throughput.svg": tp, "latency.svg": lat, "rss.svg": rss}
}

// Markdown is the summary table of a result.
func Markdown(r *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## %s — %s\n\n", r.Scenario, r.Started.Format("2006-01-02 15:04 UTC"))
	fmt.Fprintf(&b, "Target: %s. Machine: %d × %s, %s, Linux %s, %s.\n\n", r.Target, r.Machine.CPUs, r.Machine.CPUModel, r.Machine.MemTotal, r.Machine.Kernel, r.Machine.GoVersion)
	var keys []string
	for k := range r.Params {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "`%s=%s` ", k, r.Params[k])
	}
	b.WriteString("\n\n| phase | clients | offered/s | delivered/s | sent | acked | delivered | missing | dups | p50 ms | p90 ms | p99 ms | max ms | RSS max MB | CPU cores |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	ms := func(us int64) string { return fmt.Sprintf("%.2f", float64(us)/1000) }
	for _, p := range r.Phases {
		fmt.Fprintf(&b, "| %s | %d | %.0f | %.0f | %d | %d | %d | %d | %d | %s | %s | %s | %s | %.1f | %.2f |\n",
			p.Name, p.Clients, p.OfferedRate, p.DeliveredRate, p.Sent, p.Acked, p.Delivered, p.Missing, p.Duplicates,
			ms(p.Latency.P50US), ms(p.Latency.P90US), ms(p.Latency.P99US), ms(p.Latency.MaxUS), float64(p.RSSMax)/(1<<20), p.CPUAvg)
	}
	b.WriteString("\n")
	for _, p := range r.Phases {
		var ks []string
		for k := range p.Extra {
			ks = append(ks, k)
		}
		if len(ks) == 0 {
			continue
		}
		sort.Strings(ks)
		fmt.Fprintf(&b, "- **%s**:", p.Name)
		for _, k := range ks {
			fmt.Fprintf(&b, " %s=%s", k, fmtNum(p.Extra[k]))
		}
		b.WriteString("\n")
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "- %s\n", n)
	}
	fmt.Fprintf(&b, "\n![throughput](throughput.svg) ![latency](latency.svg) ![rss](rss.svg)\n")
	return b.String()
}

// WriteReport writes results.json, the charts and summary.md into dir.
func WriteReport(r *Result, dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("benchkit: %w", err)
	}
	if err := r.WriteJSON(filepath.Join(dir, "results.json")); err != nil {
		return err
	}
	return RenderReport(r, dir)
}

// RenderReport writes the charts and summary.md of r into dir.
func RenderReport(r *Result, dir string) error {
	for name, c := range Charts(r) {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(c.SVG()), 0o644); err != nil {
			return fmt.Errorf("benchkit: %w", err)
		}
	}
	return os.WriteFile(filepath.Join(dir, "summary.md"), []byte(Markdown(r)), 0o644)
}
