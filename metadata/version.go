package metadata

import (
	"fmt"
	"strings"

	"github.com/Masterminds/semver/v3"
	debversion "pault.ag/go/debian/version"
)

// Scheme names the ordering a package's versions follow. It is recorded in
// each signed package target; a target without one is SchemeSemver.
type Scheme string

// Version schemes.
const (
	// SchemeSemver: semantic versions (Masterminds/semver, loose: "1.2" and
	// a leading "v" are accepted and compare as 1.2.0).
	SchemeSemver Scheme = "semver"
	// SchemeDeb: Debian policy versions [EPOCH:]UPSTREAM[-REVISION] in
	// dpkg's order ("~" sorts before everything, even the end).
	SchemeDeb Scheme = "deb"
	// SchemeRPM: RPM versions [EPOCH:]VERSION[-RELEASE] in rpmvercmp's
	// order ("~" sorts before everything, "^" after the base version).
	SchemeRPM Scheme = "rpm"
)

// Schemes lists the known schemes.
var Schemes = []Scheme{SchemeSemver, SchemeDeb, SchemeRPM}

// ParseScheme checks a scheme name; "" is SchemeSemver (targets published
// before schemes existed carry none).
func ParseScheme(s string) (Scheme, error) {
	switch Scheme(s) {
	case "", SchemeSemver:
		return SchemeSemver, nil
	case SchemeDeb, SchemeRPM:
		return Scheme(s), nil
	}
	return "", fmt.Errorf("version scheme %q: %w: want semver, deb or rpm", s, ErrMalformed)
}

// MaxVersionLen is the longest version string accepted.
const MaxVersionLen = 128

// Version is a version string with the scheme that orders it. The string
// is kept exactly as given: a version is never rewritten (semver "1.2"
// stays "1.2", though it compares equal to "1.2.0").
type Version struct {
	scheme Scheme
	text   string
	sv     *semver.Version
	deb    debversion.Version
	rpm    rpmEVR
}

// isVersionByte reports whether c may appear in a version of any scheme:
// ASCII letters and digits and . + ~ ^ _ : -. A version therefore never
// holds '/', spaces, quotes or glob characters, and is safe as the last
// element of a target path and in index keys.
func isVersionByte(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
		strings.IndexByte(".+~^_:-", c) >= 0
}

// checkVersionText checks what every scheme requires of a version string:
// 1 to MaxVersionLen bytes of isVersionByte, starting with a letter or digit.
func checkVersionText(s string) error {
	if s == "" || len(s) > MaxVersionLen {
		return fmt.Errorf("version %.40q: %w: empty or longer than %d bytes", s, ErrMalformed, MaxVersionLen)
	}
	for i := 0; i < len(s); i++ {
		if !isVersionByte(s[i]) {
			return fmt.Errorf("version %q: %w: byte %q not allowed (letters, digits and . + ~ ^ _ : -)", s, ErrMalformed, s[i])
		}
	}
	if c := s[0]; !(c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		return fmt.Errorf("version %q: %w: must start with a letter or digit", s, ErrMalformed)
	}
	return nil
}

// ParseVersion parses s under scheme. It refuses what the scheme refuses
// (see parseSemver, parseDeb, parseRPM) and anything checkVersionText
// refuses; it never rewrites s.
func ParseVersion(scheme Scheme, s string) (Version, error) {
	if err := checkVersionText(s); err != nil {
		return Version{}, err
	}
	v := Version{scheme: scheme, text: s}
	var err error
	switch scheme {
	case SchemeSemver:
		v.sv, err = parseSemver(s)
	case SchemeDeb:
		v.deb, err = parseDeb(s)
	case SchemeRPM:
		v.rpm, err = parseRPM(s)
	default:
		_, err = ParseScheme(string(scheme))
		return Version{}, err
	}
	if err != nil {
		return Version{}, fmt.Errorf("%s version %q: %w: %v", scheme, s, ErrMalformed, err)
	}
	return v, nil
}

// String returns the version exactly as it was given.
func (v Version) String() string { return v.text }

// Scheme returns the scheme v is ordered under.
func (v Version) Scheme() Scheme { return v.scheme }

// IsZero reports whether v is the zero Version (not parsed).
func (v Version) IsZero() bool { return v.text == "" }

// Prerelease reports whether v is a semver pre-release ("1.0.0-rc1").
// Debian and RPM versions have no such notion ("~" only orders).
func (v Version) Prerelease() bool {
	return v.scheme == SchemeSemver && v.sv != nil && v.sv.Prerelease() != ""
}

// Compare orders v and w: negative if v < w, 0 if equal under their scheme
// (which two different strings may be: "1.2" and "1.2.0", "1.0" and
// "0:1.0-0"), positive if v > w. Versions of different schemes have no
// meaningful order; they are ordered by scheme name, then by string, so
// that sorting stays total and deterministic. A zero Version sorts by its
// (empty) string.
func (v Version) Compare(w Version) int {
	if v.scheme != w.scheme {
		if c := strings.Compare(string(v.scheme), string(w.scheme)); c != 0 {
			return c
		}
	}
	if v.IsZero() || w.IsZero() {
		return strings.Compare(v.text, w.text)
	}
	switch v.scheme {
	case SchemeSemver:
		return v.sv.Compare(w.sv)
	case SchemeDeb:
		return sign(debversion.Compare(v.deb, w.deb))
	case SchemeRPM:
		return v.rpm.compare(w.rpm, false)
	}
	return strings.Compare(v.text, w.text)
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// parseSemver parses a semantic version; build metadata ("+...") is
// refused because it takes no part in semver ordering (the deb and rpm
// schemes order "+").
func parseSemver(s string) (*semver.Version, error) {
	v, err := semver.NewVersion(s)
	if err != nil {
		return nil, err
	}
	if v.Metadata() != "" {
		return nil, fmt.Errorf("build metadata (+...) takes no part in semver order (the deb and rpm schemes order '+')")
	}
	return v, nil
}
