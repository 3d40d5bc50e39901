#!/usr/bin/env bash
# make real-debs: real Debian packages through stork, compared with dpkg.
# Downloads a fixed list of real packages (ROOTS below: libc6, coreutils,
# systemd, tzdata, openssl, python3 minimal and its stdlib, perl modules,
# git, gcc, firefox-esr, setuid tools, ...) and every package they depend
# on (Depends and Pre-Depends, as apt-cache resolves them on this host)
# with `apt-get download`, then runs TestRealDebs (cmd/stork), which:
#   - publishes every .deb with its own control data in one
#     `stork repo add --dir R --key K *.deb`,
#   - runs `stork repo serve` and a `stork daemon` on loopback,
#   - registers a VM with --mode bind --allow-setuid and installs each
#     root package with its dependencies (`stork install NAME`: cycles
#     and virtual packages resolved), then every published package no
#     root brought, also with its dependencies; a refused install fails,
#   - compares every installed tree with what `dpkg-deb -x` makes of its
#     .deb (content, type, mode with setuid/setgid/sticky, numeric owner
#     from the archive, symlink target), and checks that no store object
#     carries setuid or setgid,
#   - writes RUN_DIR/real-debs.md: packages published, installed,
#     identical, every difference and every refused install.
# Needs root (owners, mounts), apt-get, dpkg-deb and the network to the
# configured Debian mirror. Not part of `make test`.
# Usage: real-debs.sh [RUN_DIR]   (default a new temporary directory)
# Env: STORK_REAL_DEBS_ROOTS overrides the root list (space-separated).
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
RUN="${1:-$(mktemp -d "${TMPDIR:-/tmp}/stork-real-debs.XXXXXX")}"
mkdir -p "$RUN/debs"
RUN="$(realpath "$RUN")"

ROOTS="${STORK_REAL_DEBS_ROOTS:-libc6 libc-bin coreutils systemd tzdata openssl libssl3 \
python3-minimal python3.11-minimal libpython3.11-stdlib perl-base perl-modules-5.36 libperl5.36 \
git gcc-12 firefox-esr locales tar passwd mount sudo util-linux bash login dpkg base-files \
ca-certificates openssh-client procps zlib1g}"

die() { echo "real-debs: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (owners and bind mounts)"
for c in apt-get apt-cache dpkg-deb go; do
	command -v "$c" >/dev/null || die "$c not found"
done

# The package lists, once, if this host has none.
if ! ls /var/lib/apt/lists/*_Packages* >/dev/null 2>&1; then
	apt-get update
fi
for p in $ROOTS; do
	policy="$(apt-cache policy "$p")"
	[[ "$policy" =~ Candidate:\ [^\(] ]] || die "no candidate for $p on this host (apt-cache policy $p)"
done

# The whole dependency closure, so that every dependency is published:
# every alternative and every provider of a virtual name (<name>, whose
# providers apt-cache lists and recurses into), real packages only.
apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
	--no-breaks --no-replaces --no-enhances $ROOTS |
	grep -v '^ ' | grep -v '^<' | sort -u >"$RUN/closure.txt"
echo "real-debs: $(echo $ROOTS | wc -w) root packages, $(wc -l <"$RUN/closure.txt") with their dependencies"

# Download what is not there yet (a second run reuses the files).
cd "$RUN/debs"
missing=()
while read -r p; do
	ls "${p}_"*.deb >/dev/null 2>&1 || missing+=("$p")
done <"$RUN/closure.txt"
if [ ${#missing[@]} -gt 0 ]; then
	apt-get download "${missing[@]}" 2> >(grep -v 'unsandboxed' >&2)
fi
echo "real-debs: $(ls "$RUN/debs"/*.deb | wc -l) .deb files in $RUN/debs ($(du -sh "$RUN/debs" | cut -f1))"

cd "$REPO"
STORK_REAL_DEBS="$RUN/debs" STORK_REAL_DEBS_ROOTS="$ROOTS" STORK_REAL_DEBS_REPORT="$RUN/real-debs.md" \
	STORK_REAL_DEBS_WORK="$RUN/work" \
	go test -count=1 -timeout 90m -run '^TestRealDebs$' -v ./cmd/stork/ 2>&1 | tee "$RUN/test.log" |
	grep -E '^(=== RUN|--- |PASS|FAIL|ok )|real-debs' || true
echo "real-debs: report in $RUN/real-debs.md"
grep -q '^--- PASS: TestRealDebs' "$RUN/test.log"
