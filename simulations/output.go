package simulations

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
)

// f formats a float for CSV: shortest representation, "" for NaN.
func f(x float64) string {
	if math.IsNaN(x) {
		return ""
	}
	return strconv.FormatFloat(x, 'g', -1, 64)
}

func writeCSV(path string, header []string, rows [][]string) error {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	if err := w.Write(header); err != nil {
		return err
	}
	if err := w.WriteAll(rows); err != nil {
		return err
	}
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// HostsCSV returns the per-host outcomes of r as CSV rows (with header):
// completion_s is done_s - arrival_s, empty for a host that never finished.
func HostsCSV(r *Result) (header []string, rows [][]string) {
	header = []string{"host", "site", "vms", "upload_Bps", "download_Bps", "arrival_s", "done_s", "completion_s",
		"from_origin_B", "from_site_B", "from_wan_B", "duplicate_B", "uploaded_B"}
	for _, h := range r.PerHost {
		rows = append(rows, []string{
			strconv.Itoa(h.Host), strconv.Itoa(h.Site), strconv.Itoa(h.VMs), f(h.Upload), f(h.Down),
			f(h.Arrival), f(h.Done), f(h.Done - h.Arrival),
			f(h.FromOrigin), f(h.FromSite), f(h.FromWAN), f(h.Duplicate), f(h.Uploaded),
		})
	}
	return header, rows
}

// summaryHeader and summaryRow: one line per run (strategy × hosts).
var summaryHeader = []string{"strategy", "hosts", "vms", "package_B", "origin_B", "delivered_B", "host_delivered_B",
	"offload", "host_offload", "site_B", "wan_B", "duplicate_B",
	"p50_s", "p95_s", "max_s", "makespan_s", "bound_s", "ratio", "finished", "departed", "events"}

func summaryRow(r *Result) []string {
	return []string{string(r.Strategy), strconv.Itoa(r.Hosts), strconv.Itoa(r.VMs), f(r.PackageBytes),
		f(r.OriginBytes), f(r.Delivered), f(r.HostDelivered), f(r.Offload), f(r.HostOffload),
		f(r.SiteBytes), f(r.WANBytes), f(r.DuplicateBytes),
		f(r.P50), f(r.P95), f(r.Max), f(r.Makespan), f(r.Bound), f(r.Ratio),
		strconv.Itoa(r.Finished), strconv.Itoa(r.Departed), strconv.FormatInt(r.Events, 10)}
}

// WriteCSV writes results into dir: summary.csv (one line per run: bytes
// per source, offload, completion times, the fluid bound), and per run
// hosts-STRATEGY-N.csv (per-host completion and bytes) and
// origin-STRATEGY-N.csv (the origin's cumulative bytes over time). The
// bytes depend only on the scenario and its seed.
func WriteCSV(dir string, results []*Result) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var sum [][]string
	for _, r := range results {
		sum = append(sum, summaryRow(r))
		tag := fmt.Sprintf("%s-%d", r.Strategy, r.Hosts)
		h, rows := HostsCSV(r)
		if err := writeCSV(filepath.Join(dir, "hosts-"+tag+".csv"), h, rows); err != nil {
			return err
		}
		var orows [][]string
		for _, s := range r.Origin {
			orows = append(orows, []string{f(s.T), f(s.Bytes)})
		}
		if err := writeCSV(filepath.Join(dir, "origin-"+tag+".csv"), []string{"t_s", "origin_B"}, orows); err != nil {
			return err
		}
	}
	return writeCSV(filepath.Join(dir, "summary.csv"), summaryHeader, sum)
}
