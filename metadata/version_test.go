package metadata

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

func TestParseVersion(t *testing.T) {
	t.Parallel()
	tests := []struct {
		scheme Scheme
		in     string
		ok     bool
	}{
		{SchemeSemver, "1.2.3", true},
		{SchemeSemver, "1.2", true},
		{SchemeSemver, "v1.2.3", true},
		{SchemeSemver, "1.0.0-rc.1", true},
		{SchemeSemver, "1.0.0+b1", false}, // build metadata takes no part in order
		{SchemeSemver, "1:2.0", false},
		{SchemeSemver, "9.1-1", true}, // a pre-release of 9.1.0 under semver
		{SchemeDeb, "5.2.15-2+b13", true},
		{SchemeDeb, "1:2.39.5-0+deb12u3", true},
		{SchemeDeb, "1.0~rc1-1", true},
		{SchemeDeb, "9.1-1", true},
		{SchemeDeb, "2.36", true},
		{SchemeDeb, "1:2:3-4", true},       // ':' in upstream after an epoch
		{SchemeDeb, "1.0-1-2", true},       // '-' in upstream when there is a revision
		{SchemeDeb, "00:1.0", true},        // epoch 0
		{SchemeDeb, "2147483647:1", true},  // INT_MAX
		{SchemeDeb, "2147483648:1", false}, // epoch too big for dpkg
		{SchemeDeb, "a1.0", false},         // upstream must start with a digit
		{SchemeDeb, "1.0-", false},         // empty revision
		{SchemeDeb, "1:", false},           // nothing after the colon
		{SchemeDeb, ":1.0", false},         // empty epoch (also not alphanumeric first)
		{SchemeDeb, "1:-1", false},         // empty upstream
		{SchemeDeb, "1.0_1", false},        // '_' not in policy
		{SchemeDeb, "1.0-1:2", false},      // ':' in revision
		{SchemeDeb, "1.0^1", false},        // '^' not in policy
		{SchemeDeb, "1.0 1", false},        // space
		{SchemeDeb, " 1.0", false},         // never trimmed
		{SchemeDeb, "1x:1.0", false},       // epoch not a number
		{SchemeRPM, "1.0-1.el9", true},     // version-release
		{SchemeRPM, "2:1.0^git1-3.fc40", true},
		{SchemeRPM, "1.0~rc1", true},
		{SchemeRPM, "1_0", true},
		{SchemeRPM, "1.0-1-2", false},      // '-' in version
		{SchemeRPM, "1.0-", false},         // empty release
		{SchemeRPM, "4294967296:1", false}, // epoch beyond uint32
		{SchemeRPM, "1:2:3", false},        // ':' in version
		{SchemeRPM, "x:1", false},          // epoch not a number
		{SchemeDeb, strings.Repeat("1", MaxVersionLen), true},
		{SchemeDeb, strings.Repeat("1", MaxVersionLen+1), false},
		{SchemeDeb, "", false},
		{Scheme("pep440"), "1.0", false},
	}
	for _, tt := range tests {
		v, err := ParseVersion(tt.scheme, tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseVersion(%s, %q) = %v, want ok=%v", tt.scheme, tt.in, err, tt.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("ParseVersion(%s, %q) = %v, want ErrMalformed", tt.scheme, tt.in, err)
			}
			continue
		}
		if v.String() != tt.in || v.Scheme() != tt.scheme {
			t.Errorf("ParseVersion(%s, %q) = %s %q, want the string kept as given", tt.scheme, tt.in, v.Scheme(), v.String())
		}
	}
}

func mustVersion(t testing.TB, s Scheme, text string) Version {
	t.Helper()
	v, err := ParseVersion(s, text)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestVersionCompare(t *testing.T) {
	t.Parallel()
	tests := []struct {
		scheme Scheme
		a, b   string
		want   int
	}{
		{SchemeSemver, "1.2", "1.2.0", 0},
		{SchemeSemver, "1.10.0", "1.2.0", 1},
		{SchemeSemver, "1.0.0-rc1", "1.0.0", -1},
		{SchemeSemver, "v2", "1.9.9", 1},
		{SchemeDeb, "9.1-1", "9.1", 1},
		{SchemeDeb, "9.1-1", "9.0", 1},
		{SchemeDeb, "1.0~rc1", "1.0", -1},
		{SchemeDeb, "1.0~~", "1.0~", -1},
		{SchemeDeb, "1.0", "1.0+b1", -1},
		{SchemeDeb, "1:0.1", "9.9", 1},
		{SchemeDeb, "0:1.0", "1.0", 0},
		{SchemeDeb, "1.0-0", "1.0", 0},
		{SchemeDeb, "5.2.15-2+b13", "5.2.15-2", 1},
		{SchemeDeb, "2.39.5-0+deb12u3", "2.39.5-0+deb12u2", 1},
		{SchemeDeb, "1.0a", "1.0.", -1}, // letters sort before non-letters
		{SchemeRPM, "1.0-1", "1.0-2", -1},
		{SchemeRPM, "1:1.0", "2.0", 1},
		{SchemeRPM, "1.0", "1.0-1", -1},
		{SchemeRPM, "1.0^git1", "1.0", 1},
		{SchemeRPM, "1.0~rc1-5", "1.0-1", -1},
	}
	for _, tt := range tests {
		a, b := mustVersion(t, tt.scheme, tt.a), mustVersion(t, tt.scheme, tt.b)
		if got := a.Compare(b); got != tt.want {
			t.Errorf("%s Compare(%q, %q) = %d, want %d", tt.scheme, tt.a, tt.b, got, tt.want)
		}
		if got := b.Compare(a); got != -tt.want {
			t.Errorf("%s Compare(%q, %q) = %d, want %d", tt.scheme, tt.b, tt.a, got, -tt.want)
		}
	}
	// Across schemes: total and deterministic, never equal.
	d, s := mustVersion(t, SchemeDeb, "1.0"), mustVersion(t, SchemeSemver, "1.0")
	if d.Compare(s) == 0 || d.Compare(s) != -s.Compare(d) {
		t.Errorf("Compare across schemes = %d and %d, want opposite non-zero", d.Compare(s), s.Compare(d))
	}
}

// TestRPMVercmp runs the cases of rpm's own test suite (tests/rpmvercmp.at:
// the basic, tilde and caret cases).
func TestRPMVercmp(t *testing.T) {
	t.Parallel()
	cases := []struct {
		a, b string
		want int
	}{
		{"1.0", "1.0", 0}, {"1.0", "2.0", -1}, {"2.0", "1.0", 1},
		{"2.0.1", "2.0.1", 0}, {"2.0", "2.0.1", -1}, {"2.0.1", "2.0", 1},
		{"2.0.1a", "2.0.1a", 0}, {"2.0.1a", "2.0.1", 1}, {"2.0.1", "2.0.1a", -1},
		{"5.5p1", "5.5p1", 0}, {"5.5p1", "5.5p2", -1}, {"5.5p2", "5.5p1", 1},
		{"5.5p10", "5.5p10", 0}, {"5.5p1", "5.5p10", -1}, {"5.5p10", "5.5p1", 1},
		{"10xyz", "10.1xyz", -1}, {"10.1xyz", "10xyz", 1},
		{"xyz10", "xyz10", 0}, {"xyz10", "xyz10.1", -1}, {"xyz10.1", "xyz10", 1},
		{"xyz.4", "xyz.4", 0}, {"xyz.4", "8", -1}, {"8", "xyz.4", 1}, {"xyz.4", "2", -1}, {"2", "xyz.4", 1},
		{"5.5p2", "5.6p1", -1}, {"5.6p1", "5.5p2", 1},
		{"5.6p1", "6.5p1", -1}, {"6.5p1", "5.6p1", 1},
		{"6.0.rc1", "6.0", 1}, {"6.0", "6.0.rc1", -1},
		{"10b2", "10a1", 1}, {"10a2", "10b2", -1},
		{"1.0aa", "1.0aa", 0}, {"1.0a", "1.0aa", -1}, {"1.0aa", "1.0a", 1},
		{"10.0001", "10.0001", 0}, {"10.0001", "10.1", 0}, {"10.1", "10.0001", 0},
		{"10.0001", "10.0039", -1}, {"10.0039", "10.0001", 1},
		{"4.999.9", "5.0", -1}, {"5.0", "4.999.9", 1},
		{"20101121", "20101121", 0}, {"20101121", "20101122", -1}, {"20101122", "20101121", 1},
		{"2_0", "2_0", 0}, {"2.0", "2_0", 0}, {"2_0", "2.0", 0},
		{"a", "a", 0}, {"a+", "a+", 0}, {"a+", "a_", 0}, {"a_", "a+", 0},
		{"+a", "+a", 0}, {"+a", "_a", 0}, {"_a", "+a", 0}, {"+_", "+_", 0},
		{"_+", "+_", 0}, {"_+", "_+", 0}, {"+", "_", 0}, {"_", "+", 0},
		{"1.0~rc1", "1.0~rc1", 0}, {"1.0~rc1", "1.0", -1}, {"1.0", "1.0~rc1", 1},
		{"1.0~rc1", "1.0~rc2", -1}, {"1.0~rc2", "1.0~rc1", 1},
		{"1.0~rc1~git123", "1.0~rc1~git123", 0}, {"1.0~rc1~git123", "1.0~rc1", -1}, {"1.0~rc1", "1.0~rc1~git123", 1},
		{"1.0^", "1.0^", 0}, {"1.0^", "1.0", 1}, {"1.0", "1.0^", -1},
		{"1.0^git1", "1.0^git1", 0}, {"1.0^git1", "1.0", 1}, {"1.0", "1.0^git1", -1},
		{"1.0^git1", "1.0^git2", -1}, {"1.0^git2", "1.0^git1", 1},
		{"1.0^git1", "1.01", -1}, {"1.01", "1.0^git1", 1},
		{"1.0^20160101", "1.0^20160101", 0}, {"1.0^20160101", "1.0.1", -1}, {"1.0.1", "1.0^20160101", 1},
		{"1.0^20160101^git1", "1.0^20160101^git1", 0}, {"1.0^20160102", "1.0^20160101^git1", 1},
		{"1.0^20160101^git1", "1.0^20160102", -1},
		{"1.0~rc1^git1", "1.0~rc1^git1", 0}, {"1.0~rc1^git1", "1.0~rc1", 1}, {"1.0~rc1", "1.0~rc1^git1", -1},
		{"1.0^git1~pre", "1.0^git1~pre", 0}, {"1.0^git1", "1.0^git1~pre", 1}, {"1.0^git1~pre", "1.0^git1", -1},
		// Digit runs longer than any integer type.
		{"1.123456789012345678901234567890", "1.123456789012345678901234567891", -1},
	}
	for _, c := range cases {
		if got := rpmvercmp(c.a, c.b); got != c.want {
			t.Errorf("rpmvercmp(%q, %q) = %d, want %d", c.a, c.b, got, c.want)
		}
	}
}

// genDebVersion makes a random valid Debian version from a small alphabet,
// so that near-equal versions (leading zeros, "~", epochs, empty parts)
// meet often.
func genDebVersion(r *rand.Rand) string {
	pick := func(xs ...string) string { return xs[r.IntN(len(xs))] }
	part := func(first string, n int, syms ...string) string {
		s := first
		for i := 0; i < n; i++ {
			switch r.IntN(3) {
			case 0:
				s += pick("0", "1", "2", "9", "10", "00", "007", "123456789012345678901234")
			case 1:
				s += pick("a", "b", "z", "A", "Z", "rc", "deb", "git")
			default:
				s += pick(syms...)
			}
		}
		return s
	}
	var b strings.Builder
	hasEpoch := r.IntN(3) == 0
	if hasEpoch {
		b.WriteString(pick("0", "1", "2", "00", "10") + ":")
	}
	hasRev := r.IntN(2) == 0
	syms := []string{".", "+", "~", "~"}
	if hasEpoch {
		syms = append(syms, ":")
	}
	if hasRev {
		syms = append(syms, "-")
	}
	b.WriteString(part(pick("0", "1", "2", "10", "01"), r.IntN(6), syms...))
	if hasRev {
		b.WriteString("-" + part(pick("0", "1", "2", "a", "~", "+"), r.IntN(4), ".", "+", "~"))
	}
	return b.String()
}

// dpkgBatch runs "dpkg --compare-versions A OP B" for each check in one
// shell and returns whether each held. dpkg must print nothing (no
// syntax warnings: every version is valid).
func dpkgBatch(t *testing.T, checks [][3]string) []bool {
	t.Helper()
	var script strings.Builder
	for _, c := range checks {
		fmt.Fprintf(&script, "dpkg --compare-versions '%s' %s '%s'; echo $?\n", c[0], c[1], c[2])
	}
	p := filepath.Join(t.TempDir(), "checks.sh")
	if err := os.WriteFile(p, []byte(script.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.Command("sh", p)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("dpkg checks: %v: %s", err, stderr.String())
	}
	if stderr.Len() > 0 {
		t.Fatalf("dpkg complained: %s", stderr.String())
	}
	lines := strings.Fields(stdout.String())
	if len(lines) != len(checks) {
		t.Fatalf("dpkg checks: %d results for %d checks", len(lines), len(checks))
	}
	out := make([]bool, len(lines))
	for i, l := range lines {
		switch l {
		case "0":
			out[i] = true
		case "1":
		default:
			t.Fatalf("dpkg --compare-versions %v exited %s", checks[i], l)
		}
	}
	return out
}

func debOp(c int) string {
	switch {
	case c < 0:
		return "lt"
	case c > 0:
		return "gt"
	}
	return "eq"
}

// TestDebOrderMatchesDpkg is a differential test against dpkg itself. It
// sorts a few thousand generated versions with Compare and checks every
// neighbouring pair with dpkg (lt where Compare says less, eq where it
// says equal): since dpkg's order is transitive, agreeing on neighbours
// means agreeing on every pair of the sorted list. Then it checks random
// pairs three-way.
func TestDebOrderMatchesDpkg(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg not installed")
	}
	t.Parallel()
	n, pairs := 2000, 1000
	if testing.Short() {
		n, pairs = 400, 200
	}
	r := rand.New(rand.NewPCG(17, 4))
	seen := map[string]bool{}
	var vs []Version
	for len(vs) < n {
		s := genDebVersion(r)
		if seen[s] {
			continue
		}
		seen[s] = true
		v, err := ParseVersion(SchemeDeb, s)
		if err != nil {
			t.Fatalf("generated version %q: %v", s, err)
		}
		vs = append(vs, v)
	}
	sorted := append([]Version(nil), vs...)
	sort.SliceStable(sorted, func(i, j int) bool { return sorted[i].Compare(sorted[j]) < 0 })
	var checks [][3]string
	for i := 0; i+1 < len(sorted); i++ {
		a, b := sorted[i], sorted[i+1]
		checks = append(checks, [3]string{a.String(), debOp(a.Compare(b)), b.String()})
	}
	for i := 0; i < pairs; i++ {
		a, b := vs[r.IntN(len(vs))], vs[r.IntN(len(vs))]
		checks = append(checks, [3]string{a.String(), debOp(a.Compare(b)), b.String()})
	}
	bad := 0
	for i, ok := range dpkgBatch(t, checks) {
		if !ok {
			c := checks[i]
			t.Errorf("Compare says %s %s %s; dpkg disagrees", c[0], c[1], c[2])
			if bad++; bad > 10 {
				t.Fatal("too many disagreements")
			}
		}
	}
	t.Logf("%d versions, %d dpkg checks agree", len(vs), len(checks))
}

// TestDebValidityMatchesDpkg: ParseVersion accepts exactly what dpkg
// --validate-version accepts, except where a case says it is stricter: a
// version is never trimmed, and an epoch is plain digits (dpkg's strtol
// also takes a sign).
func TestDebValidityMatchesDpkg(t *testing.T) {
	if _, err := exec.LookPath("dpkg"); err != nil {
		t.Skip("dpkg not installed")
	}
	t.Parallel()
	tests := []struct {
		in       string
		stricter bool // refused here, accepted by dpkg
	}{
		{"1.0", false}, {"1:2.39.5-0+deb12u3", false}, {"5.2.15-2+b13", false}, {"1.0~rc1", false},
		{"1.0-", false}, {"1:", false}, {"1:-1", false}, {"-1", false}, {"2147483648:1", false},
		{"2147483647:1", false}, {"x:1", false}, {"1.0-1-2", false}, {"1:2:3", false},
		{"a1.0", false}, {"1.0_1", false}, {"1.0^1", false}, {"1.0-1:2", false}, {"1.0-a_b", false},
		{"0:0-", false}, {"01:2", false}, {"1:2:3-4", false},
		{"+1:2", true}, {" 1.0", true}, {"1.0 ", true},
	}
	var script strings.Builder
	for _, tt := range tests {
		fmt.Fprintf(&script, "dpkg --validate-version '%s' 2>/dev/null; echo $?\n", tt.in)
	}
	out, err := exec.Command("sh", "-c", script.String()).Output()
	if err != nil {
		t.Fatal(err)
	}
	res := strings.Fields(string(out))
	if len(res) != len(tests) {
		t.Fatalf("%d results for %d versions", len(res), len(tests))
	}
	for i, tt := range tests {
		dpkgOK := res[i] == "0"
		_, err := ParseVersion(SchemeDeb, tt.in)
		ours := err == nil
		if tt.stricter {
			if ours || !dpkgOK {
				t.Errorf("%q: ParseVersion ok=%v, dpkg ok=%v; want refused here and accepted by dpkg", tt.in, ours, dpkgOK)
			}
			continue
		}
		if ours != dpkgOK {
			t.Errorf("%q: ParseVersion ok=%v (%v), dpkg --validate-version ok=%v", tt.in, ours, err, dpkgOK)
		}
	}
}
