package simulations

import (
	"fmt"
	"math"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Plot files written by WritePlots.
const (
	PlotOriginVsHosts  = "origin-vs-hosts.png"
	PlotOffloadVsHosts = "offload-vs-hosts.png"
	PlotRatioVsHosts   = "ratio-vs-hosts.png"
)

// PlotCDF names the completion-time CDF plot for n hosts.
func PlotCDF(n int) string { return fmt.Sprintf("cdf-%d.png", n) }

// PlotOriginTime names the origin-bytes-over-time plot for n hosts.
func PlotOriginTime(n int) string { return fmt.Sprintf("origin-time-%d.png", n) }

// byStrategy groups results by strategy (in AllStrategies order) and host
// count (ascending).
func byStrategy(results []*Result) (map[Strategy][]*Result, []Strategy, []int) {
	m := map[Strategy][]*Result{}
	hostSet := map[int]bool{}
	for _, r := range results {
		m[r.Strategy] = append(m[r.Strategy], r)
		hostSet[r.Hosts] = true
	}
	var order []Strategy
	for _, s := range AllStrategies() {
		if rs := m[s]; len(rs) > 0 {
			slices.SortFunc(rs, func(a, b *Result) int { return a.Hosts - b.Hosts })
			order = append(order, s)
		}
	}
	var hosts []int
	for n := range hostSet {
		hosts = append(hosts, n)
	}
	slices.Sort(hosts)
	return m, order, hosts
}

func newPlot(title, x, y string, logX, logY bool) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	if logX {
		p.X.Scale = plot.LogScale{}
		p.X.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	if logY {
		p.Y.Scale = plot.LogScale{}
		p.Y.Tick.Marker = plot.LogTicks{Prec: -1}
	}
	p.Legend.Top = true
	p.Legend.Left = true
	p.Add(plotter.NewGrid())
	return p
}

func save(p *plot.Plot, path string) error {
	logRange(&p.X)
	logRange(&p.Y)
	if err := p.Save(7*vg.Inch, 4.5*vg.Inch, path); err != nil {
		return fmt.Errorf("plot %s: %w", path, err)
	}
	return nil
}

// logRange gives a log-scale axis a range it can draw: plot pads a range
// of one value by one on either side (through zero) and gives an axis
// with no data the range [0, 0], and a log scale has no ticks there.
// One value v spans [v/2, 2v]; no data, [1, 10].
func logRange(a *plot.Axis) {
	if _, ok := a.Scale.(plot.LogScale); !ok {
		return
	}
	switch {
	case a.Min > a.Max || math.IsInf(a.Min, 0) || math.IsInf(a.Max, 0) || a.Max <= 0:
		a.Min, a.Max = 1, 10
	case a.Min == a.Max:
		a.Min, a.Max = a.Min/2, a.Max*2
	case a.Min <= 0:
		a.Min = a.Max / 1000
	}
}

// addLines adds one line (with points) per named series.
func addLines(p *plot.Plot, names []string, series []plotter.XYs) error {
	var vs []any
	for k, name := range names {
		if len(series[k]) == 0 {
			continue
		}
		vs = append(vs, name, series[k])
	}
	if len(vs) == 0 {
		return nil
	}
	return plotutil.AddLinePoints(p, vs...)
}

// WritePlots draws results into dir: origin bytes vs hosts, offload vs
// hosts and completion time over the fluid bound vs hosts (one line per
// strategy), and per host count the completion-time CDF and the origin's
// bytes over time (one line per strategy). It returns the files written.
func WritePlots(dir string, results []*Result) ([]string, error) {
	m, order, hosts := byStrategy(results)
	sp := strategyPlots{dir: dir, m: m, order: order, names: make([]string, len(order))}
	for k, s := range order {
		sp.names[k] = string(s)
	}
	var files []string
	if len(hosts) > 1 {
		var err error
		if files, err = sp.vsHosts(); err != nil {
			return nil, err
		}
	}
	for _, n := range hosts {
		for _, draw := range []func(int) (string, error){sp.cdf, sp.originOverTime} {
			path, err := draw(n)
			if err != nil {
				return nil, err
			}
			files = append(files, path)
		}
	}
	return files, nil
}

// strategyPlots draws plots with one line per strategy.
type strategyPlots struct {
	dir   string
	m     map[Strategy][]*Result
	order []Strategy
	names []string // of order
}

// vsHosts draws origin bytes, offload and completion time over the fluid
// bound against the host count.
func (sp strategyPlots) vsHosts() ([]string, error) {
	type metric struct {
		file, title, y string
		logY           bool
		v              func(*Result) float64
	}
	var files []string
	for _, mt := range []metric{
		{PlotOriginVsHosts, "Origin bytes vs hosts", "origin GiB", true, func(r *Result) float64 { return r.OriginBytes / (1 << 30) }},
		{PlotOffloadVsHosts, "Repository offload vs hosts (1 - origin/delivered to VMs)", "offload %", false, func(r *Result) float64 { return 100 * r.Offload }},
		{PlotRatioVsHosts, "Completion time / fluid lower bound", "makespan / bound", true, func(r *Result) float64 { return r.Ratio }},
	} {
		p := newPlot(mt.title, "hosts", mt.y, true, mt.logY)
		var series []plotter.XYs
		for _, s := range sp.order {
			var xy plotter.XYs
			for _, r := range sp.m[s] {
				if v := mt.v(r); !math.IsNaN(v) && (!mt.logY || v > 0) {
					xy = append(xy, plotter.XY{X: float64(r.Hosts), Y: v})
				}
			}
			series = append(series, xy)
		}
		if err := addLines(p, sp.names, series); err != nil {
			return nil, err
		}
		path := filepath.Join(sp.dir, mt.file)
		if err := save(p, path); err != nil {
			return nil, err
		}
		files = append(files, path)
	}
	return files, nil
}

// cdf draws the completion-time CDF of the runs of n hosts, with the
// fluid bound.
func (sp strategyPlots) cdf(n int) (string, error) {
	p := newPlot(fmt.Sprintf("Completion time CDF, %d hosts", n), "seconds from arrival (log)", "fraction of hosts", true, false)
	var series []plotter.XYs
	var bound float64
	for _, s := range sp.order {
		var xy plotter.XYs
		for _, r := range sp.m[s] {
			if r.Hosts != n {
				continue
			}
			bound = r.Bound
			var ts []float64
			for _, h := range r.PerHost {
				if !math.IsNaN(h.Done) {
					ts = append(ts, max(h.Done-h.Arrival, 1e-3))
				}
			}
			slices.Sort(ts)
			step := max(1, len(ts)/200)
			for k := 0; k < len(ts); k += step {
				xy = append(xy, plotter.XY{X: ts[k], Y: float64(k+1) / float64(len(ts))})
			}
			if len(ts) > 0 {
				xy = append(xy, plotter.XY{X: ts[len(ts)-1], Y: 1})
			}
		}
		series = append(series, xy)
	}
	if err := addLines(p, sp.names, series); err != nil {
		return "", err
	}
	if bound > 0 {
		l, err := plotter.NewLine(plotter.XYs{{X: bound, Y: 0}, {X: bound, Y: 1}})
		if err != nil {
			return "", err
		}
		l.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
		p.Add(l)
		p.Legend.Add("fluid bound", l)
	}
	path := filepath.Join(sp.dir, PlotCDF(n))
	return path, save(p, path)
}

// originOverTime draws the origin's bytes over time in the runs of n
// hosts.
func (sp strategyPlots) originOverTime(n int) (string, error) {
	p := newPlot(fmt.Sprintf("Origin bytes over time, %d hosts", n), "seconds (log)", "origin GiB (log)", true, true)
	var series []plotter.XYs
	for _, s := range sp.order {
		var xy plotter.XYs
		for _, r := range sp.m[s] {
			if r.Hosts != n {
				continue
			}
			step := max(1, len(r.Origin)/300)
			for k := 0; k < len(r.Origin); k += step {
				if o := r.Origin[k]; o.T > 0 && o.Bytes > 0 {
					xy = append(xy, plotter.XY{X: o.T, Y: o.Bytes / (1 << 30)})
				}
			}
			if o := r.Origin[len(r.Origin)-1]; o.T > 0 && o.Bytes > 0 {
				xy = append(xy, plotter.XY{X: o.T, Y: o.Bytes / (1 << 30)})
			}
		}
		series = append(series, xy)
	}
	if err := addLinesNoPoints(p, sp.names, series); err != nil {
		return "", err
	}
	path := filepath.Join(sp.dir, PlotOriginTime(n))
	return path, save(p, path)
}

func addLinesNoPoints(p *plot.Plot, names []string, series []plotter.XYs) error {
	var vs []any
	for k, name := range names {
		if len(series[k]) > 0 {
			vs = append(vs, name, series[k])
		}
	}
	if len(vs) == 0 {
		return nil
	}
	return plotutil.AddLines(p, vs...)
}
