package metadata

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

// rpmEVR is an RPM version [EPOCH:]VERSION[-RELEASE]. A missing epoch is 0.
type rpmEVR struct {
	epoch      uint64
	version    string
	release    string
	hasRelease bool
}

// parseRPM parses [EPOCH:]VERSION[-RELEASE] as rpm splits it: the epoch up
// to the colon (digits, at most 2^32-1, as rpm's uint32 tag), the release
// after the last '-'. VERSION and RELEASE are non-empty, of letters,
// digits and . _ + ~ ^ (rpm refuses '-' in both and ':' in VERSION).
func parseRPM(s string) (rpmEVR, error) {
	var v rpmEVR
	rest := s
	if e, r, ok := strings.Cut(s, ":"); ok {
		if e == "" || strings.Trim(e, "0123456789") != "" {
			return rpmEVR{}, errors.New("epoch is not a number")
		}
		n, err := strconv.ParseUint(e, 10, 64)
		if err != nil || n > math.MaxUint32 {
			return rpmEVR{}, errors.New("epoch is too big")
		}
		v.epoch, rest = n, r
	}
	if strings.Contains(rest, ":") {
		return rpmEVR{}, errors.New("more than one ':'")
	}
	v.version = rest
	if i := strings.LastIndexByte(rest, '-'); i >= 0 {
		v.version, v.release, v.hasRelease = rest[:i], rest[i+1:], true
		if v.release == "" {
			return rpmEVR{}, errors.New("release is empty")
		}
	}
	if v.version == "" {
		return rpmEVR{}, errors.New("version is empty")
	}
	if strings.Contains(v.version, "-") {
		return rpmEVR{}, errors.New("more than one '-' (version and release may not contain one)")
	}
	return v, nil
}

// compare orders v and w by epoch, then version, then release, each part
// with rpmvercmp. With depRelease (w is the operand of a constraint) the
// releases are compared only when both are present, as rpm compares a
// dependency: "foo >= 1.0" accepts 1.0-1.
func (v rpmEVR) compare(w rpmEVR, depRelease bool) int {
	switch {
	case v.epoch < w.epoch:
		return -1
	case v.epoch > w.epoch:
		return 1
	}
	if c := rpmvercmp(v.version, w.version); c != 0 {
		return c
	}
	if depRelease && (!v.hasRelease || !w.hasRelease) {
		return 0
	}
	return rpmvercmp(v.release, w.release)
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

func isAlpha(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// rpmvercmp is rpm's rpmvercmp (rpmio/rpmvercmp.cc) step for step: the
// strings are cut into maximal runs of digits or of ASCII letters, every
// other byte separating them, except '~' (sorts before anything, even the
// end of the string) and '^' (sorts after the end of the string but
// before anything else). Numeric runs compare as numbers of any length,
// a numeric run is newer than an alphabetic one, and when all runs are
// equal the string with runs left over is newer.
func rpmvercmp(a, b string) int {
	if a == b {
		return 0
	}
	at := func(s string, i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	isSep := func(c byte) bool { return c != 0 && !isDigit(c) && !isAlpha(c) && c != '~' && c != '^' }
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for isSep(at(a, i)) {
			i++
		}
		for isSep(at(b, j)) {
			j++
		}
		ca, cb := at(a, i), at(b, j)
		if ca == '~' || cb == '~' {
			if ca != '~' {
				return 1
			}
			if cb != '~' {
				return -1
			}
			i, j = i+1, j+1
			continue
		}
		if ca == '^' || cb == '^' {
			switch {
			case ca == 0:
				return -1
			case cb == 0:
				return 1
			case ca != '^':
				return 1
			case cb != '^':
				return -1
			}
			i, j = i+1, j+1
			continue
		}
		if ca == 0 || cb == 0 {
			break
		}
		class := isAlpha
		isNum := isDigit(ca)
		if isNum {
			class = isDigit
		}
		si, sj := i, j
		for i < len(a) && class(a[i]) {
			i++
		}
		for j < len(b) && class(b[j]) {
			j++
		}
		if sj == j { // b's run is of the other kind
			if isNum {
				return 1
			}
			return -1
		}
		ra, rb := a[si:i], b[sj:j]
		if isNum {
			ra, rb = strings.TrimLeft(ra, "0"), strings.TrimLeft(rb, "0")
			if len(ra) != len(rb) {
				if len(ra) > len(rb) {
					return 1
				}
				return -1
			}
		}
		if c := strings.Compare(ra, rb); c != 0 {
			return c
		}
	}
	switch {
	case i >= len(a) && j >= len(b):
		return 0
	case i >= len(a):
		return -1
	}
	return 1
}
