package simulations

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strconv"
	"strings"
)

// SizeDist is a distribution of package sizes read from a histogram table
// (testdata/debian12-main-sizes.tsv: the .deb sizes of Debian 12 main).
// Each line other than a comment ("#") or blank is a bin:
//
//	lo_bytes <TAB> hi_bytes <TAB> count
//
// a count of packages of lo <= size < hi. Sample draws a bin by its count
// and a size log-uniformly within it.
type SizeDist struct {
	lo, hi []int64
	cum    []int64 // cum[k]: packages in bins 0..k
}

// ReadSizeDist reads a size table from path.
func ReadSizeDist(path string) (*SizeDist, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("size table: %w", err)
	}
	defer f.Close()
	d, err := ParseSizeDist(f)
	if err != nil {
		return nil, fmt.Errorf("size table %s: %w", path, err)
	}
	return d, nil
}

// ParseSizeDist reads a size table (see SizeDist).
func ParseSizeDist(r io.Reader) (*SizeDist, error) {
	d := &SizeDist{}
	sc := bufio.NewScanner(r)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if s == "" || strings.HasPrefix(s, "#") {
			continue
		}
		f := strings.Fields(s)
		if len(f) != 3 {
			return nil, fmt.Errorf("line %d: want lo, hi and count, got %q", line, s)
		}
		var v [3]int64
		for k := range f {
			n, err := strconv.ParseInt(f[k], 10, 64)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("line %d: %q is not a count of bytes or packages", line, f[k])
			}
			v[k] = n
		}
		if v[0] < 1 || v[1] <= v[0] {
			return nil, fmt.Errorf("line %d: bin [%d, %d) is empty", line, v[0], v[1])
		}
		if n := len(d.hi); n > 0 && v[0] < d.hi[n-1] {
			return nil, fmt.Errorf("line %d: bin [%d, %d) overlaps the one before", line, v[0], v[1])
		}
		total := v[2]
		if n := len(d.cum); n > 0 {
			total += d.cum[n-1]
		}
		d.lo, d.hi, d.cum = append(d.lo, v[0]), append(d.hi, v[1]), append(d.cum, total)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(d.cum) == 0 || d.Count() == 0 {
		return nil, fmt.Errorf("no packages")
	}
	return d, nil
}

// Count returns the packages the table counts.
func (d *SizeDist) Count() int64 { return d.cum[len(d.cum)-1] }

// Sample draws a size from two uniform numbers in [0, 1): u picks the bin
// (by its count), v the size within it, log-uniformly.
func (d *SizeDist) Sample(u, v float64) int64 {
	k := d.bin(u)
	lo, hi := math.Log(float64(d.lo[k])), math.Log(float64(d.hi[k]))
	return min(max(int64(math.Exp(lo+v*(hi-lo))), d.lo[k]), d.hi[k]-1)
}

// bin returns the bin of quantile u in [0, 1).
func (d *SizeDist) bin(u float64) int {
	n := int64(u * float64(d.Count()))
	n = min(max(n, 0), d.Count()-1)
	return sort.Search(len(d.cum), func(k int) bool { return d.cum[k] > n })
}
