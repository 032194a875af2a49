package loadtest

import (
	"encoding/json"
	"fmt"
	"html/template"
	"io"
	"math"
	"strings"
)

// WriteJSON writes the result as indented JSON.
func (r *Result) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes the result as a table and a verdict line, for a
// terminal.
func (r *Result) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "\n%s, %.1f s\n", r.Scenario, r.Seconds)
	for _, p := range r.Params {
		fmt.Fprintf(&b, "  %-44s %s\n", p.Name, p.Value)
	}
	if r.Publish.Count > 0 || r.Deliver.Count > 0 {
		fmt.Fprintf(&b, "\n  %-22s %9s %9s %9s %9s %9s %9s\n", "latency (ms)", "count", "p50", "p90", "p99", "p99.9", "max")
		for _, l := range []struct {
			name string
			l    Latency
		}{{"publish (to the 201)", r.Publish}, {"publish to deliver", r.Deliver}} {
			fmt.Fprintf(&b, "  %-22s %9d %9.2f %9.2f %9.2f %9.2f %9.2f\n", l.name, l.l.Count, l.l.P50, l.l.P90, l.l.P99, l.l.P999, l.l.Max)
		}
	}
	if len(r.Figures) > 0 {
		b.WriteString("\n")
		for _, f := range r.Figures {
			fmt.Fprintf(&b, "  %-44s %s\n", f.Name, fmtValue(f))
		}
	}
	if r.Errors > 0 {
		fmt.Fprintf(&b, "  %-44s %d\n", "publish errors", r.Errors)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "  note: %s\n", n)
	}
	if v := r.Verdict; v != nil && v.DevicesShort > 0 {
		fmt.Fprintf(&b, "  %d devices miss messages:\n", v.DevicesShort)
		for _, m := range v.Missing {
			fmt.Fprintf(&b, "    %s\n", m)
		}
	}
	fmt.Fprintf(&b, "\n%s\n", r.verdictLine())
	_, err := io.WriteString(w, b.String())
	return err
}

func (r *Result) verdictLine() string {
	v := r.Verdict
	if v == nil {
		return "verdict: no messages in this scenario"
	}
	word := "PASS"
	if !v.Pass {
		word = "FAIL"
	}
	return fmt.Sprintf("verdict: %s: %d published, %d of %d expected deliveries made; lost %d, duplicated %d, out of order %d (redelivered after reconnects and dropped by seq: %d; delivered without a 201: %d)",
		word, v.Published, v.Delivered, v.Expected, v.Lost, v.Duplicated, v.OutOfOrder, v.Redelivered, v.Unexpected)
}

func fmtValue(f Figure) string {
	v := f.Value
	s := fmt.Sprintf("%.0f", v)
	if v != math.Trunc(v) && math.Abs(v) < 1000 {
		s = fmt.Sprintf("%.2f", v)
	}
	if f.Unit != "" {
		s += " " + f.Unit
	}
	return s
}

// WriteHTML writes a self-contained report: the verdict, the tables, and
// throughput and latency over time as inline SVG (nothing to fetch).
func (r *Result) WriteHTML(w io.Writer) error {
	var pub, del, errs, dp50, dp99, pp99 []float64
	for _, s := range r.Series {
		pub = append(pub, float64(s.Published))
		del = append(del, float64(s.Delivered))
		errs = append(errs, float64(s.Errors))
		dp50 = append(dp50, s.DelP50)
		dp99 = append(dp99, s.DelP99)
		pp99 = append(pp99, s.PubP99)
	}
	data := struct {
		R          *Result
		Verdict    string
		Throughput template.HTML
		Latency    template.HTML
	}{
		R:       r,
		Verdict: r.verdictLine(),
		Throughput: svgChart("Throughput", "per second", []line{
			{"published", "#2563eb", pub}, {"delivered", "#16a34a", del}, {"publish errors", "#dc2626", errs}}),
		Latency: svgChart("Latency", "ms", []line{
			{"deliver p50", "#16a34a", dp50}, {"deliver p99", "#ca8a04", dp99}, {"publish p99", "#2563eb", pp99}}),
	}
	return reportPage.Execute(w, data)
}

// line is one series of a chart.
type line struct {
	name, color string
	ys          []float64
}

// svgChart draws lines over seconds 0..n-1 with a y axis from 0 to a round
// maximum.
func svgChart(title, unit string, lines []line) template.HTML {
	const w, h, left, right, top, bottom = 760.0, 260.0, 56.0, 16.0, 28.0, 36.0
	n, ymax := 0, 0.0
	for _, l := range lines {
		n = max(n, len(l.ys))
		for _, y := range l.ys {
			ymax = max(ymax, y)
		}
	}
	if n == 0 || ymax == 0 {
		return template.HTML(fmt.Sprintf(`<p class="empty">%s: no data</p>`, template.HTMLEscapeString(title)))
	}
	ymax = niceCeil(ymax)
	x := func(i int) float64 { return left + float64(i)*(w-left-right)/float64(max(n-1, 1)) }
	y := func(v float64) float64 { return top + (h-top-bottom)*(1-v/ymax) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg viewBox="0 0 %.0f %.0f" width="%.0f" height="%.0f" role="img" aria-label="%s">`, w, h, w, h, template.HTMLEscapeString(title))
	fmt.Fprintf(&b, `<text x="%.0f" y="18" class="title">%s (%s)</text>`, left, template.HTMLEscapeString(title), template.HTMLEscapeString(unit))
	for i := 0; i <= 4; i++ {
		v := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" class="grid"/>`, left, w-right, y(v), y(v))
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="axis" text-anchor="end">%s</text>`, left-6, y(v)+4, short(v))
	}
	step := max(1, n/10)
	for i := 0; i < n; i += step {
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" class="axis" text-anchor="middle">%ds</text>`, x(i), h-bottom+16, i)
	}
	lx := left
	for _, l := range lines {
		var pts strings.Builder
		for i, v := range l.ys {
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(i), y(v))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.8" points="%s"/>`, l.color, pts.String())
		fmt.Fprintf(&b, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f" class="axis">%s</text>`,
			lx, h-12, l.color, lx+14, h-3, template.HTMLEscapeString(l.name))
		lx += 150
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func short(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}

var reportPage = template.Must(template.New("report").Funcs(template.FuncMap{"fmtValue": fmtValue}).Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>hubload {{.R.Scenario}}</title>
<style>
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:820px;color:#111;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem} .when{color:#555;margin-top:0}
.verdict{padding:.8rem 1rem;border-radius:6px;font-weight:600}
.pass{background:#dcfce7;color:#14532d} .fail{background:#fee2e2;color:#7f1d1d} .none{background:#f3f4f6}
table{border-collapse:collapse;margin:1rem 0} td,th{padding:.25rem .8rem;border-bottom:1px solid #e5e7eb;text-align:right}
td:first-child,th:first-child{text-align:left}
svg{display:block;margin:1.2rem 0} .grid{stroke:#e5e7eb} .axis{font-size:11px;fill:#555} .title{font-size:13px;font-weight:600}
</style></head><body>
<h1>hubload: {{.R.Scenario}}</h1>
<p class="when">{{.R.Started.Format "2006-01-02 15:04:05 UTC"}}, {{printf "%.1f" .R.Seconds}} s</p>
{{with .R.Verdict}}<p class="verdict {{if .Pass}}pass{{else}}fail{{end}}">{{$.Verdict}}</p>{{else}}<p class="verdict none">{{.Verdict}}</p>{{end}}
<table><tr><th>parameter</th><th></th></tr>{{range .R.Params}}<tr><td>{{.Name}}</td><td>{{.Value}}</td></tr>{{end}}</table>
{{if or .R.Publish.Count .R.Deliver.Count}}
<table><tr><th>latency (ms)</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>p99.9</th><th>max</th></tr>
<tr><td>publish (to the 201)</td>{{with .R.Publish}}<td>{{.Count}}</td><td>{{.P50}}</td><td>{{.P90}}</td><td>{{.P99}}</td><td>{{.P999}}</td><td>{{.Max}}</td>{{end}}</tr>
<tr><td>publish to deliver</td>{{with .R.Deliver}}<td>{{.Count}}</td><td>{{.P50}}</td><td>{{.P90}}</td><td>{{.P99}}</td><td>{{.P999}}</td><td>{{.Max}}</td>{{end}}</tr>
</table>{{end}}
{{if .R.Figures}}<table><tr><th>figure</th><th></th></tr>{{range .R.Figures}}<tr><td>{{.Name}}</td><td>{{fmtValue .}}</td></tr>{{end}}</table>{{end}}
{{if .R.Series}}{{.Throughput}}{{.Latency}}{{end}}
{{range .R.Notes}}<p>Note: {{.}}</p>{{end}}
<p class="when">Latencies count from the moment each publish was due (open loop), so a stalled server is not measured kindly. Publish to deliver: from then to a device's first receipt of the message.</p>
</body></html>
`))
