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

func TestParseSizeAndRate(t *testing.T) {
	for _, tc := range []struct {
		in   string
		size float64 // -1: refused
		rate float64 // -1: refused
	}{
		{"1GiB", 1 << 30, -1}, {"512K", 512 << 10, 512e3}, {"1048576", 1 << 20, 1 << 20},
		{"100Mbps", -1, 12.5e6}, {"125MB/s", -1, 125e6},
		{"NaN", -1, -1}, {"nanK", -1, -1}, {"-1", -1, -1}, {"1e308G", -1, -1}, {"Inf", -1, -1},
	} {
		sz, err := ParseSize(tc.in)
		if (err == nil) != (tc.size >= 0) || (err == nil && float64(sz) != tc.size) {
			t.Errorf("ParseSize(%q) = %v, %v; want %v (-1: an error)", tc.in, sz, err, tc.size)
		}
		r, err := ParseRate(tc.in)
		if (err == nil) != (tc.rate >= 0) || (err == nil && float64(r) != tc.rate) {
			t.Errorf("ParseRate(%q) = %v, %v; want %v (-1: an error)", tc.in, r, err, tc.rate)
		}
	}
}
