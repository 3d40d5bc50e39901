package simulations

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// The shipped Debian table reads, counts what its header says, and its
// samples have the median and tail of Debian 12 main (59 KB, 1.45 MB,
// 21.9 MB) within a bin.
func TestDebianSizeTable(t *testing.T) {
	t.Parallel()
	d, err := ReadSizeDist("testdata/debian12-main-sizes.tsv")
	if err != nil {
		t.Fatal(err)
	}
	if d.Count() != 63441 {
		t.Errorf("table counts %d packages, want 63441", d.Count())
	}
	rng := rand.New(rand.NewPCG(1, 2))
	s := make([]int64, 100_000)
	for k := range s {
		s[k] = d.Sample(rng.Float64(), rng.Float64())
	}
	slices.Sort(s)
	for _, c := range []struct {
		q      float64
		lo, hi int64
	}{{0.5, 50_000, 70_000}, {0.9, 1_200_000, 1_750_000}, {0.99, 18_000_000, 26_000_000}} {
		if got := s[int(c.q*float64(len(s)))]; got < c.lo || got > c.hi {
			t.Errorf("sampled quantile %.2f = %d bytes, want in [%d, %d]", c.q, got, c.lo, c.hi)
		}
	}
}

func TestParseSizeDistErrors(t *testing.T) {
	t.Parallel()
	for _, in := range []string{"", "# only a comment\n", "10\t5\t1\n", "1\t2\n", "1\t10\t1\n5\t20\t1\n", "0\t10\t0\n"} {
		if _, err := ParseSizeDist(strings.NewReader(in)); err == nil {
			t.Errorf("ParseSizeDist(%q) = nil error", in)
		}
	}
}
