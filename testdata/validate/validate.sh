#!/usr/bin/env bash
# make validate: the simulator's honesty check (issue 5). One small scenario,
# run twice, figures side by side:
#   real  1 origin (`stork repo serve --rate`) + N `stork daemon` processes on
#         loopback (one bootstrap + N-1, each with --upload-rate), every host
#         `stork fetch`es the package at once (a flash crowd)
#   sim   `stork sim run` of the same scenario, strategy swarm
# and the gap, (sim - real) / real, for origin copies, offload, makespan and
# median completion time. See docs/validation.md for the mapping.
# Usage: validate.sh [STORK_BIN] [RUN_DIR]
# Env (sizes and rates: bytes, or with a binary K/M/G suffix, as the stork
# flags take them):
#   STORK_VALIDATE_HOSTS          hosts (daemons), default 8
#   STORK_VALIDATE_MIB            package size in MiB (random bytes, 1 MiB chunks), default 96
#   STORK_VALIDATE_ORIGIN_RATE    origin send cap, bytes/s, default 12M
#   STORK_VALIDATE_UPLOAD_RATE    every daemon's --upload-rate, default 8M
#   STORK_VALIDATE_DOWNLOAD_RATE  every daemon's --download-rate, default none
#                                 (see docs/validation.md: it does not cover the origin)
#   STORK_VALIDATE_MAX_GAP        gap limit in %, default 15
#   STORK_VALIDATE_SCENARIO       base scenario, default testdata/validate/validate.json
#   STORK_VALIDATE_TIMEOUT        seconds for the fetches, default 300
#   STORK_VALIDATE_HOSTS_DIR      where the daemons' data directories go (default the work dir)
# RUN_DIR (default a new temporary directory) keeps scenario.json, the logs,
# real-hosts.csv, sim/ (the simulator's CSV) and validate.md (the table).
# Exit status: 0 all gaps within the limit, 2 a gap over it, 1 a failure.
# Traffic stays on 127.0.0.1; every process started here is stopped by PID.
set -euo pipefail
STORK="$(realpath "${1:-bin/stork}")"
RUN="${2:-$(mktemp -d "${TMPDIR:-/tmp}/stork-validate.XXXXXX")}"
HERE="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$RUN"
RUN="$(realpath "$RUN")"

die() { echo "validate: $*" >&2; exit 1; }
# bytes SIZE: 12M -> 12582912 (binary suffixes, as stork's parseSize)
bytes() {
	local s="${1^^}" m=1
	s="${s%B}"
	s="${s%I}"
	case "$s" in
	*K) m=1024 s="${s%K}" ;;
	*M) m=1048576 s="${s%M}" ;;
	*G) m=1073741824 s="${s%G}" ;;
	esac
	[[ "$s" =~ ^[0-9]+$ ]] || die "size $1: want bytes or e.g. 12M"
	echo $((s * m))
}
N="${STORK_VALIDATE_HOSTS:-8}"
MIB="${STORK_VALIDATE_MIB:-96}"
ORATE=$(bytes "${STORK_VALIDATE_ORIGIN_RATE:-12M}")
URATE=$(bytes "${STORK_VALIDATE_UPLOAD_RATE:-8M}")
DRATE=""
if [ -n "${STORK_VALIDATE_DOWNLOAD_RATE:-}" ]; then DRATE=$(bytes "$STORK_VALIDATE_DOWNLOAD_RATE"); fi
MAXGAP="${STORK_VALIDATE_MAX_GAP:-15}"
BASE="${STORK_VALIDATE_SCENARIO:-$HERE/validate.json}"
TMO="${STORK_VALIDATE_TIMEOUT:-300}"
SIZE=$((MIB << 20))
WORK="$RUN/work"
LOGS="$RUN/logs"
HOSTS="$WORK/hosts"
if [ -n "${STORK_VALIDATE_HOSTS_DIR:-}" ]; then HOSTS="$STORK_VALIDATE_HOSTS_DIR/stork-validate-hosts.$$"; fi
rm -rf "$WORK" "$LOGS" "$RUN/sim"
mkdir -p "$WORK" "$LOGS"
command -v jq >/dev/null || die "jq is needed (apt-get install jq)"

PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$WORK" "$HOSTS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
say() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }

# ------------------------------------------------------------ the scenario
# The base file with this run's sizes and rates: what the simulator runs is
# what the daemons are given. Host download: the daemon's --download-rate
# if set, otherwise unlimited, which the simulator cannot say: 1.25 GB/s,
# about what one loopback TCP stream carries here (BASELINES.md).
SIMDOWN="${DRATE:-1250000000}"
jq --argjson n "$N" --argjson size "$SIZE" --argjson o "$ORATE" --argjson u "$URATE" --argjson d "$SIMDOWN" \
	'.hosts = $n | .package_size = $size | .chunk_size = 1048576 | .origin_upload = $o
	 | .host_upload = $u | .host_download = $d | .vms_per_host = 1 | .sites = 1
	 | .arrival = {pattern: "flash"}' "$BASE" > "$RUN/scenario.json"
say "scenario ($RUN/scenario.json)"
cat "$RUN/scenario.json"

# ------------------------------------------------------------ real daemons
say "repository with one $MIB MiB package of random bytes"
"$STORK" keys gen --out "$WORK/repo.key" >/dev/null
"$STORK" repo init --dir "$WORK/repo" --key "$WORK/repo.key" >/dev/null
mkdir -p "$WORK/src"
head -c "$SIZE" /dev/urandom > "$WORK/src/blob.bin"
"$STORK" repo add --dir "$WORK/repo" --key "$WORK/repo.key" --name blob --version 1.0.0 --chunk-size 1M "$WORK/src/blob.bin" >/dev/null
rm -rf "$WORK/src"
ROOT="$WORK/repo/metadata/1.root.json"

say "origin: stork repo serve --rate $ORATE on 127.0.0.1"
STORK_DEBUG=1 "$STORK" repo serve --dir "$WORK/repo" --listen 127.0.0.1:0 --rate "$ORATE" > "$LOGS/serve.out" 2> "$LOGS/serve.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q serving "$LOGS/serve.out" 2>/dev/null && break; sleep 0.1; done
REPO=$(sed -n 's/.* on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$LOGS/serve.out")
[ -n "$REPO" ] || die "origin did not start: $(cat "$LOGS/serve.out" "$LOGS/serve.log")"
# origin_bytes FROM_LINE: chunk bytes the origin served (GET /chunks/CID,
# status 200, each chunk file's size) in serve.log after FROM_LINE.
origin_bytes() {
	tail -n +"$(($1 + 1))" "$LOGS/serve.log" | grep 'method=GET' | grep 'status=200' |
		sed -n 's/.*path=\/chunks\/\([A-Za-z0-9]*\).*/\1/p' |
		(cd "$WORK/repo/chunks" && xargs -r stat -c %s) | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

say "$N daemons on 127.0.0.1 (TCP, --no-nat), --upload-rate $URATE${DRATE:+, --download-rate $DRATE}"
rates=(--upload-rate "$URATE")
if [ -n "$DRATE" ]; then rates+=(--download-rate "$DRATE"); fi
start_daemon() { # I [BOOTSTRAP]
	local data="$HOSTS/h$1" boot=()
	mkdir -p "$data"
	if [ -n "${2:-}" ]; then boot=(--bootstrap "$2"); fi
	"$STORK" daemon --data "$data" --repo "$REPO" --root "$ROOT" --listen /ip4/127.0.0.1/tcp/0 --no-nat \
		--refresh-interval 1h "${rates[@]}" "${boot[@]}" 2> "$LOGS/daemon-h$1.log" &
	PIDS+=($!)
	for _ in $(seq 300); do "$STORK" status --data "$data" >/dev/null 2>&1 && return 0; sleep 0.1; done
	die "daemon h$1 did not start within 30s: $(tail -5 "$LOGS/daemon-h$1.log")"
}
start_daemon 1
BOOT=$("$STORK" status --data "$HOSTS/h1" --json | jq -r '.addrs[0]')
case "$BOOT" in /ip4/127.0.0.1/tcp/*/p2p/*) ;; *) die "bootstrap address $BOOT is not on 127.0.0.1/tcp" ;; esac
for i in $(seq 2 "$N"); do start_daemon "$i" "$BOOT"; done
for _ in $(seq 100); do # at most 10s for every host to see every other
	low=0
	for i in $(seq "$N"); do
		[ "$("$STORK" status --data "$HOSTS/h$i" --json | jq .peers)" -ge $((N - 1)) ] || low=1
	done
	[ $low = 0 ] && break
	sleep 0.1
done
mark=$(wc -l < "$LOGS/serve.log")
FETCHES=()
t0=$(now)
for i in $(seq "$N"); do
	(timeout -k 10 "$TMO" "$STORK" fetch --data "$HOSTS/h$i" blob > "$LOGS/fetch-h$i.out" 2>&1 && now > "$WORK/done-h$i") &
	FETCHES+=($!)
	PIDS+=($!)
done
rc=0
for pid in "${FETCHES[@]}"; do wait "$pid" || rc=1; done
[ $rc = 0 ] || die "stork fetch failed: $(tail -n 3 "$LOGS"/fetch-h*.out)"
echo "host,completion_s,from_origin_B,from_peers_B,uploaded_B" > "$RUN/real-hosts.csv"
for i in $(seq "$N"); do
	"$STORK" status --data "$HOSTS/h$i" --json > "$LOGS/status-h$i.json"
	[ "$(jq -r '.packages[0].state' "$LOGS/status-h$i.json")" = complete ] || die "h$i: package not complete"
	jq -r --arg h "h$i" --arg t "$(awk -v a="$t0" -v b="$(cat "$WORK/done-h$i")" 'BEGIN { printf "%.3f", b - a }')" \
		'"\($h),\($t),\(.bytes_from_origin),\(.bytes_from_peers),\(.bytes_uploaded)"' "$LOGS/status-h$i.json" >> "$RUN/real-hosts.csv"
done
REAL_O_SERVER=$(origin_bytes "$mark")
cat "$RUN/real-hosts.csv"

# ------------------------------------------------------------ simulator
say "stork sim run (strategy swarm)"
"$STORK" sim run "$RUN/scenario.json" --strategy swarm --out "$RUN/sim" | tee "$LOGS/sim.out"
SIMH="$RUN/sim/hosts-swarm-$N.csv"
[ -f "$SIMH" ] || die "no $SIMH"

# ------------------------------------------------------------ the table
# column C of a CSV (header skipped): median, max, sum
col() { tail -n +2 "$1" | cut -d, -f"$2"; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) printf "%.3f", a[(NR + 1) / 2]; else printf "%.3f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
maxof() { sort -g | tail -1 | awk '{ printf "%.3f", $1 }'; }
sumof() { awk '{ s += $1 } END { printf "%.0f", s }'; }
REAL_O=$(col "$RUN/real-hosts.csv" 3 | sumof)
REAL_MED=$(col "$RUN/real-hosts.csv" 2 | median)
REAL_MAX=$(col "$RUN/real-hosts.csv" 2 | maxof)
SIM_O=$(col "$SIMH" 9 | sumof)
SIM_MED=$(col "$SIMH" 8 | median)
SIM_MAX=$(col "$SIMH" 8 | maxof)
BOUND=$(tail -1 "$RUN/sim/summary.csv" | cut -d, -f17)
copies() { awk -v b="$1" -v s="$SIZE" 'BEGIN { printf "%.3f", b / s }'; }
offload() { awk -v b="$1" -v s="$SIZE" -v n="$N" 'BEGIN { printf "%.2f", 100 * (1 - b / (n * s)) }'; }
gap() { awk -v r="$1" -v s="$2" 'BEGIN { printf "%+.1f", 100 * (s - r) / r }'; }
MISSED=()
row() { # NAME REAL SIM CHECKED
	local g
	g=$(gap "$2" "$3")
	local verdict="—"
	if [ "$4" = yes ]; then
		if awk -v g="$g" -v m="$MAXGAP" 'BEGIN { exit !(g <= m && g >= -m) }'; then verdict=ok; else verdict=MISSED; MISSED+=("$1"); fi
	fi
	printf '| %s | %s | %s | %s%% | %s |\n' "$1" "$2" "$3" "$g" "$verdict"
}
{
	echo "# Validation: $N real daemons vs the simulator"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -m), $(nproc) CPUs. Package $MIB MiB ($SIZE B, 1 MiB chunks), $N hosts on loopback, flash crowd;"
	echo "origin capped at $ORATE B/s (\`stork repo serve --rate\`), every daemon \`--upload-rate $URATE\`${DRATE:+ \`--download-rate $DRATE\`};"
	echo "simulator: \`stork sim run scenario.json --strategy swarm\` (fluid bound $(awk -v b="$BOUND" 'BEGIN { printf "%.2f", b }') s)."
	echo "Gap = (sim − real) / real; checked rows must be within ±$MAXGAP%."
	echo
	echo "| figure | real daemons | simulator | gap | check |"
	echo "|---|---|---|---|---|"
	row "origin copies (bytes from origin / package)" "$(copies "$REAL_O")" "$(copies "$SIM_O")" no
	row "host offload % (1 − origin bytes / (hosts × package))" "$(offload "$REAL_O")" "$(offload "$SIM_O")" yes
	row "makespan s (last host done)" "$REAL_MAX" "$SIM_MAX" yes
	row "median completion s" "$REAL_MED" "$SIM_MED" yes
	echo
	echo "Real origin bytes: the daemons' \`bytes_from_origin\` summed ($REAL_O B); the origin's own request log counts $REAL_O_SERVER B."
	echo "Per host: real-hosts.csv (completion from the moment every \`stork fetch\` was started), sim/hosts-swarm-$N.csv."
} > "$RUN/validate.md"
say "results ($RUN/validate.md)"
cat "$RUN/validate.md"
if [ ${#MISSED[@]} -gt 0 ]; then
	echo "validate: gap over ${MAXGAP}% for: ${MISSED[*]}" >&2
	exit 2
fi
