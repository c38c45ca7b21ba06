package loadtest

import (
	"fmt"
	"html"
	"io"
	"math"
	"strings"
)

// WriteHTML writes rep as one self-contained HTML page: the summary, a
// latency-over-time chart and a throughput chart, as inline SVG (no
// scripts, styles or images from elsewhere).
func WriteHTML(w io.Writer, rep *Report) error {
	var b strings.Builder
	v := &rep.Verification
	verdict, colour := "OK", "#1a7f37"
	if !rep.OK {
		verdict, colour = "FAILED", "#cf222e"
	}
	fmt.Fprintf(&b, `<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>weir loadtest</title>
<style>body{font:14px system-ui,sans-serif;margin:2em;color:#24292f}table{border-collapse:collapse}
td{padding:2px 12px 2px 0;vertical-align:top}td:first-child{color:#57606a}h1 span{color:%s}svg{display:block;margin:1em 0}</style>
</head><body>
<h1>weir loadtest: <span>%s</span></h1>
<table>
`, colour, verdict)
	row := func(k, f string, a ...any) {
		fmt.Fprintf(&b, "<tr><td>%s</td><td>%s</td></tr>\n", html.EscapeString(k), html.EscapeString(fmt.Sprintf(f, a...)))
	}
	row("records", "%d of %d bytes, %d keys, %d partitions", rep.Records, rep.ValueSize, rep.Keys, rep.Partitions)
	row("handler", "%s, ordering %s", rep.Handler, rep.Ordering)
	if rep.Rate > 0 {
		row("produce rate", "%.0f records/s", rep.Rate)
	} else {
		row("produce rate", "as fast as possible")
	}
	row("throughput", "%.0f records/s, %.1f MB/s over %.2f s", rep.RecordsPerS, rep.MBPerS, rep.DurationS)
	row("latency", "p50 %.1f ms, p90 %.1f ms, p99 %.1f ms, max %.1f ms", v.Latency.P50, v.Latency.P90, v.Latency.P99, v.Latency.Max)
	row("latency measures", "%s", rep.LatencyBasis)
	row("peak RSS", "%.0f MiB (weir %.0f MiB, plugins %.0f MiB)", float64(rep.Resources.PeakRSSBytes)/(1<<20),
		float64(rep.Resources.PeakRSSSelfBytes)/(1<<20), float64(rep.Resources.PeakRSSChildrenBytes)/(1<<20))
	row("CPU", "%.1f s (weir %.1f s, plugins %.1f s)", rep.Resources.CPUSeconds, rep.Resources.CPUSelfSeconds, rep.Resources.CPUChildrenSeconds)
	row("verified", "lost %d, duplicated %d, reordered %d, committed to end %v", rep.Lost, rep.Duplicated, rep.Reordered, rep.CommittedToEnd)
	for _, p := range rep.Problems {
		row("problem", "%s", p)
	}
	b.WriteString("</table>\n<h2>End-to-end latency over time</h2>\n")
	var at, p50, p99, mx []float64
	for _, p := range v.Timeline {
		if p.Records == 0 {
			continue
		}
		at = append(at, p.AtS+p.WidthS/2)
		p50, p99, mx = append(p50, p.P50), append(p99, p.P99), append(mx, p.Max)
	}
	b.WriteString(svgChart("seconds since the first record was produced", "ms", []series{
		{"p50", "#0969da", at, p50}, {"p99", "#bf8700", at, p99}, {"max", "#cf222e", at, mx}}))
	b.WriteString("<h2>Throughput</h2>\n")
	var ts, prod, comp []float64
	for _, p := range rep.Throughput {
		ts, prod, comp = append(ts, p.AtS), append(prod, p.Produced), append(comp, p.Completed)
	}
	b.WriteString(svgChart("seconds since the first record was produced", "records/s", []series{
		{"produced", "#8250df", ts, prod}, {"complete", "#1a7f37", ts, comp}}))
	b.WriteString("</body></html>\n")
	_, err := io.WriteString(w, b.String())
	return err
}

type series struct {
	name, colour string
	x, y         []float64
}

// svgChart draws line series on shared axes starting at 0.
func svgChart(xlabel, ylabel string, ss []series) string {
	const W, H, L, R, T, B = 760.0, 300.0, 70.0, 110.0, 10.0, 40.0
	var xmax, ymax float64
	for _, s := range ss {
		for i := range s.x {
			xmax, ymax = math.Max(xmax, s.x[i]), math.Max(ymax, s.y[i])
		}
	}
	if xmax == 0 || ymax == 0 {
		return "<p>(no data)</p>\n"
	}
	ymax = niceCeil(ymax)
	px := func(x float64) float64 { return L + x/xmax*(W-L-R) }
	py := func(y float64) float64 { return H - B - y/ymax*(H-T-B) }
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" viewBox="0 0 %.0f %.0f" font-size="11">`+"\n", W, H, W, H)
	for i := 0; i <= 4; i++ {
		y := ymax * float64(i) / 4
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="#d0d7de"/><text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n",
			L, W-R, py(y), py(y), L-6, py(y)+4, fmtNum(y))
	}
	for i := 0; i <= 5; i++ {
		x := xmax * float64(i) / 5
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", px(x), H-B+16, fmtNum(x))
	}
	fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", (L+W-R)/2, H-4, html.EscapeString(xlabel))
	fmt.Fprintf(&b, `<text x="14" y="%.1f" transform="rotate(-90 14 %.1f)" text-anchor="middle">%s</text>`+"\n", (T+H-B)/2, (T+H-B)/2, html.EscapeString(ylabel))
	for k, s := range ss {
		var pts strings.Builder
		for i := range s.x {
			fmt.Fprintf(&pts, "%.1f,%.1f ", px(s.x[i]), py(s.y[i]))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`+"\n", s.colour, strings.TrimSpace(pts.String()))
		ly := T + 14 + float64(k)*16
		fmt.Fprintf(&b, `<line x1="%.1f" x2="%.1f" y1="%.1f" y2="%.1f" stroke="%s" stroke-width="3"/><text x="%.1f" y="%.1f">%s</text>`+"\n",
			W-R+10, W-R+28, ly-4, ly-4, s.colour, W-R+32, ly, html.EscapeString(s.name))
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// niceCeil rounds v up to 1, 2 or 5 times a power of ten.
func niceCeil(v float64) float64 {
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if v <= m*p {
			return m * p
		}
	}
	return 10 * p
}

func fmtNum(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	case v == math.Trunc(v):
		return fmt.Sprintf("%.0f", v)
	default:
		return fmt.Sprintf("%.1f", v)
	}
}
