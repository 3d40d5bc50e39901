package metadata

import (
	"errors"
	"math"
	"strings"

	debversion "pault.ag/go/debian/version"
)

// parseDeb parses a Debian version [EPOCH:]UPSTREAM[-REVISION] with
// pault.ag/go/debian/version, which orders versions as dpkg does
// (verrevcmp). With the library's own checks it accepts what dpkg
// --validate-version accepts (upstream version starting with a digit, of
// letters, digits and . + ~ - :; revision of letters, digits and . + ~),
// adding dpkg's refusals of an empty upstream version, an empty revision
// ("1.0-") and an epoch above INT_MAX. It is stricter than dpkg in two
// ways: an epoch is plain digits (dpkg's strtol also takes a sign), and
// surrounding spaces are refused, not trimmed (checkVersionText).
func parseDeb(s string) (debversion.Version, error) {
	if epoch, _, ok := strings.Cut(s, ":"); ok {
		if epoch == "" || strings.Trim(epoch, "0123456789") != "" {
			return debversion.Version{}, errors.New("epoch is not a number")
		}
	}
	v, err := debversion.Parse(s)
	if err != nil {
		return debversion.Version{}, err
	}
	if v.Epoch > math.MaxInt32 {
		return debversion.Version{}, errors.New("epoch is too big")
	}
	if v.Version == "" {
		return debversion.Version{}, errors.New("upstream version is empty")
	}
	if strings.HasSuffix(s, "-") {
		return debversion.Version{}, errors.New("revision is empty")
	}
	return v, nil
}
