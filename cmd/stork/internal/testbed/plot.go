package testbed

import (
	"fmt"
	"path/filepath"
	"slices"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
)

// Plot files written by Run.
const (
	PlotCompletion = "completion.png" // completion-time CDF, one line per run
	PlotProgress   = "progress.png"   // share of the package held over time
	PlotUplinks    = "uplinks.png"    // copies into each site per run
)

// writePlots draws the plots and returns the files written.
func (b *bed) writePlots() ([]string, error) {
	var done []*RunResult
	for _, r := range b.result.Runs {
		if r.Skipped == "" && len(r.Hosts) > 0 {
			done = append(done, r)
		}
	}
	if len(done) == 0 {
		return nil, nil
	}
	var files []string
	for _, p := range []struct {
		file string
		draw func([]*RunResult) (*plot.Plot, error)
	}{{PlotCompletion, completionPlot}, {PlotProgress, progressPlot}, {PlotUplinks, uplinkPlot}} {
		pl, err := p.draw(done)
		if err != nil {
			return files, err
		}
		if pl == nil {
			continue
		}
		if err := pl.Save(7*vg.Inch, 4.5*vg.Inch, filepath.Join(b.cfg.Dir, p.file)); err != nil {
			return files, fmt.Errorf("testbed: plot %s: %w", p.file, err)
		}
		files = append(files, p.file)
	}
	return files, nil
}

func newPlot(title, x, y string) *plot.Plot {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = x
	p.Y.Label.Text = y
	p.Legend.Top, p.Legend.Left = false, false
	p.Add(plotter.NewGrid())
	return p
}

// completionPlot: per run, the share of hosts done by each time.
func completionPlot(runs []*RunResult) (*plot.Plot, error) {
	p := newPlot("Hosts done over time", "seconds from the start", "share of hosts done")
	var vs []any
	for _, r := range runs {
		ts := r.doneTimes()
		if len(ts) == 0 {
			continue
		}
		xy := plotter.XYs{{X: 0, Y: 0}}
		for i, t := range ts { // a step at each host's completion
			xy = append(xy, plotter.XY{X: t, Y: float64(i) / float64(len(r.Hosts))}, plotter.XY{X: t, Y: float64(i+1) / float64(len(r.Hosts))})
		}
		vs = append(vs, r.Name, xy)
	}
	return p, plotutil.AddLines(p, vs...)
}

// progressPlot: per swarm run, the share of every host's package held
// over time (summed over hosts).
func progressPlot(runs []*RunResult) (*plot.Plot, error) {
	p := newPlot("Bytes held by all hosts over time", "seconds from the start", "share of hosts × package")
	var vs []any
	for _, r := range runs {
		if len(r.Progress) == 0 {
			continue
		}
		byT := map[float64]int64{}
		var ts []float64
		for _, s := range r.Progress {
			if _, ok := byT[s.T]; !ok {
				ts = append(ts, s.T)
			}
			byT[s.T] += s.Have
		}
		slices.Sort(ts)
		xy := make(plotter.XYs, 0, len(ts))
		for _, t := range ts {
			xy = append(xy, plotter.XY{X: t, Y: float64(byT[t]) / float64(int64(len(r.Hosts))*r.Size)})
		}
		vs = append(vs, r.Name, xy)
	}
	if len(vs) == 0 {
		return nil, nil
	}
	return p, plotutil.AddLines(p, vs...)
}

// uplinkPlot: per run, bars of the copies that went into each site over
// its uplink.
func uplinkPlot(runs []*RunResult) (*plot.Plot, error) {
	p := newPlot("Package copies into each site over its uplink", "", "copies")
	sites := 0
	for _, r := range runs {
		sites = max(sites, len(r.Links.SiteIn))
	}
	if sites == 0 {
		return nil, nil
	}
	w := vg.Points(float64(120) / float64(len(runs)))
	top := 0.0
	for k, r := range runs {
		vals := make(plotter.Values, sites)
		copy(vals, r.siteInCopies())
		for _, v := range vals {
			top = max(top, v)
		}
		bars, err := plotter.NewBarChart(vals, w)
		if err != nil {
			return nil, err
		}
		bars.LineStyle.Width = 0
		bars.Color = plotutil.Color(k)
		bars.Offset = w * vg.Length(float64(k)-float64(len(runs)-1)/2)
		p.Add(bars)
		p.Legend.Add(r.Name, bars)
	}
	names := make([]string, sites)
	for i := range names {
		names[i] = fmt.Sprintf("site s%d", i+1)
	}
	p.NominalX(names...)
	p.Legend.Top = true
	p.Y.Min, p.Y.Max = 0, top*1.6 // room for the legend above the bars
	p.X.Min, p.X.Max = -0.5, float64(sites)-0.5
	return p, nil
}
