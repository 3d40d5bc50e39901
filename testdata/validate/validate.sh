#!/usr/bin/env bash
# make validate: the simulator's honesty check (issue 5). One small scenario,
# run both ways, figures side by side:
#   real  1 origin (`stork repo serve --rate`) + N `stork daemon` processes on
#         loopback (one bootstrap + N-1, each with --upload-rate), every host
#         `stork fetch`es the package at once (a flash crowd); RUNS times
#   sim   `stork sim run` of the same scenario, strategy swarm, SEEDS seeds,
#         as given and with free control messages
# and the gap, (sim - real) / real, of the means, for origin copies, host
# offload, makespan and median completion time. See docs/validation.md for
# the mapping and the figures.
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
#   STORK_VALIDATE_RUNS           real runs (fresh daemons each time), default 1
#   STORK_VALIDATE_SIM_SEEDS      simulator seeds per model, default 5
#   STORK_VALIDATE_TIMEOUT        seconds for the fetches, default 300
#   STORK_VALIDATE_HOSTS_DIR      where the daemons' data directories go (default the work dir)
# RUN_DIR (default a new temporary directory) keeps scenario.json, the logs,
# real-hosts-R.csv, sim/ (the simulator's CSV) and validate.md (the table).
# Exit status: 0 all gaps within the limit, 2 a gap over it, 1 a failure.
# Traffic stays on 127.0.0.1; every process started here is stopped by PID.
set -euo pipefail
STORK="$(realpath "${1:-bin/stork}")"
RUN="${2:-$(mktemp -d "${TMPDIR:-/tmp}/stork-validate.XXXXXX")}"
HERE="$(cd "$(dirname "$0")" && pwd)"
mkdir -p "$RUN"
RUN="$(realpath "$RUN")"

die() { echo "validate: $*" >&2; exit 1; }
# say, now, stop, proc_cpu, origin_bytes, start_daemon
. "$HERE/../lib/loopback.sh"
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
RUNS="${STORK_VALIDATE_RUNS:-1}"
SEEDS="${STORK_VALIDATE_SIM_SEEDS:-5}"
SIZE=$((MIB << 20))
WORK="$RUN/work"
LOGS="$RUN/logs"
HOSTS="$WORK/hosts"
if [ -n "${STORK_VALIDATE_HOSTS_DIR:-}" ]; then HOSTS="$STORK_VALIDATE_HOSTS_DIR/stork-validate-hosts.$$"; fi
rm -rf "$WORK" "$LOGS" "$RUN/sim" "$RUN"/real-*
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
STORK_DEBUG=1 STORK_LOG_FORMAT=text "$STORK" repo serve --dir "$WORK/repo" --listen 127.0.0.1:0 --rate "$ORATE" > "$LOGS/serve.out" 2> "$LOGS/serve.log" &
PIDS+=($!)
SERVE_PID=$!
for _ in $(seq 100); do grep -q serving "$LOGS/serve.out" 2>/dev/null && break; sleep 0.1; done
REPO=$(sed -n 's/.* on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$LOGS/serve.out")
[ -n "$REPO" ] || die "origin did not start: $(cat "$LOGS/serve.out" "$LOGS/serve.log")"
# wchar: bytes the origin process has handed to write(2) and send(2) so far
# (/proc/PID/io): what it sent, responses cut off by a cancelling client
# included, as the simulator counts them.
wchar() { awk '/^wchar:/ { print $2 }' "/proc/$SERVE_PID/io"; }
[ -n "$(wchar)" ] || die "cannot read /proc/$SERVE_PID/io"
# column C of a CSV (header skipped); median and max of a column of numbers
col() { tail -n +2 "$1" | cut -d, -f"$2"; }
median() { sort -g | awk '{ a[NR] = $1 } END { if (NR % 2) printf "%.3f", a[(NR + 1) / 2]; else printf "%.3f", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }
maxof() { sort -g | tail -1 | awk '{ printf "%.3f", $1 }'; }

# --no-pull-through: the simulator's swarm strategy models the swarm
# without cooperative origin fetching, so the daemons run that policy.
DAEMON_ARGS=(--upload-rate "$URATE" --no-pull-through)
if [ -n "$DRATE" ]; then DAEMON_ARGS+=(--download-rate "$DRATE"); fi
# real_run R: fresh daemons, a flash crowd of fetches; writes real-hosts-R.csv
# (completion from the moment every `stork fetch` was started, bytes per
# source from `stork status --json`) and the origin's own count.
real_run() {
	local r=$1 i boot low mark rc pid fetches=()
	say "real run $r: $N daemons on 127.0.0.1 (TCP, --no-nat), --upload-rate $URATE${DRATE:+, --download-rate $DRATE}"
	DAEMONS=()
	start_daemon "r$r-h1"
	boot=$("$STORK" status --data "$HOSTS/r$r-h1" --json | jq -r '.addrs[0]')
	case "$boot" in /ip4/127.0.0.1/tcp/*/p2p/*) ;; *) die "bootstrap address $boot is not on 127.0.0.1/tcp" ;; esac
	for i in $(seq 2 "$N"); do start_daemon "r$r-h$i" "$boot"; done
	for _ in $(seq 100); do # at most 10s for every host to see every other
		low=0
		for i in $(seq "$N"); do
			[ "$("$STORK" status --data "$HOSTS/r$r-h$i" --json | jq .peers)" -ge $((N - 1)) ] || low=1
		done
		[ $low = 0 ] && break
		sleep 0.1
	done
	mark=$(wc -l < "$LOGS/serve.log")
	w0=$(wchar)
	c0=$(proc_cpu "${DAEMONS[@]}" "$SERVE_PID")
	t0=$(now)
	for i in $(seq "$N"); do
		(timeout -k 10 "$TMO" "$STORK" fetch --data "$HOSTS/r$r-h$i" blob > "$LOGS/fetch-r$r-h$i.out" 2>&1 && now > "$WORK/done-r$r-h$i") &
		fetches+=($!)
		PIDS+=($!)
	done
	rc=0
	for pid in "${fetches[@]}"; do wait "$pid" || rc=1; done
	stop "${fetches[@]}"
	[ $rc = 0 ] || die "stork fetch failed: $(tail -n 3 "$LOGS"/fetch-r$r-h*.out)"
	echo "host,completion_s,from_origin_B,from_peers_B,uploaded_B" > "$RUN/real-hosts-$r.csv"
	for i in $(seq "$N"); do
		"$STORK" status --data "$HOSTS/r$r-h$i" --json > "$LOGS/status-r$r-h$i.json"
		[ "$(jq -r '.packages[0].state' "$LOGS/status-r$r-h$i.json")" = complete ] || die "r$r-h$i: package not complete"
		jq -r --arg h "h$i" --arg t "$(awk -v a="$t0" -v b="$(cat "$WORK/done-r$r-h$i")" 'BEGIN { printf "%.3f", b - a }')" \
			'"\($h),\($t),\(.bytes_from_origin),\(.bytes_from_peers),\(.bytes_uploaded)"' "$LOGS/status-r$r-h$i.json" >> "$RUN/real-hosts-$r.csv"
	done
	origin_bytes "$mark" > "$RUN/real-origin-log-$r.txt"
	echo $(($(wchar) - w0)) > "$RUN/real-origin-sent-$r.txt"
	# CPU of the daemons and the origin during the fetches, in cores on
	# average over the makespan, and the machine's load: a run short of
	# CPU is slower than its links.
	awk -v a="$(proc_cpu "${DAEMONS[@]}" "$SERVE_PID")" -v b="$c0" -v t="$(col "$RUN/real-hosts-$r.csv" 2 | maxof)" \
		-v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN { printf "%.2f CPU-s, %.2f cores, load %s\n", a - b, (a - b) / t, l }' > "$RUN/real-cpu-$r.txt"
	cat "$RUN/real-cpu-$r.txt"
	cat "$RUN/real-hosts-$r.csv"
	stop "${DAEMONS[@]}"
	rm -rf "$HOSTS"/r"$r"-h*
}
for r in $(seq "$RUNS"); do real_run "$r"; done

# ------------------------------------------------------------ simulator
# The scenario as given (head_of_line off in validate.json since the daemon
# sends capped chunks as parts with control messages between them) and,
# beside it, the same with free control messages (the model of simulations/REPORT.md), each over SEEDS
# seeds.
jq '.head_of_line = false' "$RUN/scenario.json" > "$RUN/scenario-free.json"
for v in model free; do
	sc="$RUN/scenario.json"
	[ $v = free ] && sc="$RUN/scenario-free.json"
	say "stork sim run ($v: $(jq -r '"head_of_line \(.head_of_line // false)"' "$sc")), strategy swarm, seeds 1..$SEEDS"
	for seed in $(seq "$SEEDS"); do
		"$STORK" sim run "$sc" --strategy swarm --seed "$seed" --out "$RUN/sim/$v-seed$seed" | tee -a "$LOGS/sim.out"
		[ -f "$RUN/sim/$v-seed$seed/hosts-swarm-$N.csv" ] || die "no $RUN/sim/$v-seed$seed/hosts-swarm-$N.csv"
	done
done

# ------------------------------------------------------------ the table
# per-run figures, then the mean over runs (real) or seeds (sim)
sumof() { awk '{ s += $1 } END { printf "%.0f", s }'; }
mean() { awk '{ s += $1; n++ } END { printf "%.4f", s / n }'; }
range() { sort -g | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s–%s", lo, hi }'; }
copies() { awk -v b="$1" -v s="$SIZE" 'BEGIN { printf "%.3f", b / s }'; }
offload() { awk -v b="$1" -v s="$SIZE" -v n="$N" 'BEGIN { printf "%.2f", 100 * (1 - b / (n * s)) }'; }
# figures FILE... (time column, origin column): one line per file: copies
# offload makespan median, origin bytes summed over hosts. Real runs: the
# origin's sent bytes (real-origin-sent-R.txt) replace the sum, which
# counts only the chunks the daemons kept (bytes_from_origin); the
# simulator's per-host origin bytes count aborted flows' bytes too.
figures() {
	local tc=$1 oc=$2 f o r
	shift 2
	for f in "$@"; do
		o=$(col "$f" "$oc" | sumof)
		r=${f##*/real-hosts-}
		if [ "$r" != "$f" ]; then o=$(cat "$RUN/real-origin-sent-${r%.csv}.txt"); fi
		echo "$(copies "$o") $(offload "$o") $(col "$f" "$tc" | maxof) $(col "$f" "$tc" | median)"
	done
}
figures 2 3 "$RUN"/real-hosts-*.csv > "$WORK/fig-real"
figures 8 9 "$RUN"/sim/model-seed*/hosts-swarm-"$N".csv > "$WORK/fig-model"
figures 8 9 "$RUN"/sim/free-seed*/hosts-swarm-"$N".csv > "$WORK/fig-free"
kept() { local f; for f in "$RUN"/real-hosts-*.csv; do copies "$(col "$f" 3 | sumof)"; echo; done | range; }
fmean() { awk -v c="$2" '{ s += $c; n++ } END { printf "%.3f", s / n }' "$1"; }
frange() { awk -v c="$2" '{ print $c }' "$1" | range; }
BOUND=$(tail -1 "$RUN/sim/model-seed1/summary.csv" | cut -d, -f17)
gap() { awk -v r="$1" -v s="$2" 'BEGIN { printf "%+.1f", 100 * (s - r) / r }'; }
MISSED=()
row() { # NAME COLUMN
	local real model free gm gf verdict
	real=$(fmean "$WORK/fig-real" "$2")
	model=$(fmean "$WORK/fig-model" "$2")
	free=$(fmean "$WORK/fig-free" "$2")
	gm=$(gap "$real" "$model")
	gf=$(gap "$real" "$free")
	if awk -v g="$gm" -v m="$MAXGAP" 'BEGIN { exit !(g <= m && g >= -m) }'; then verdict=ok; else verdict=MISSED; MISSED+=("$1"); fi
	printf '| %s | %s (%s) | %s (%s) | %s%% | %s | %s (%s) | %s%% |\n' "$1" \
		"$real" "$(frange "$WORK/fig-real" "$2")" "$model" "$(frange "$WORK/fig-model" "$2")" "$gm" "$verdict" \
		"$free" "$(frange "$WORK/fig-free" "$2")" "$gf"
}
{
	echo "# Validation: $N real daemons vs the simulator"
	echo
	echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), $(uname -m), $(nproc) CPUs. Package $MIB MiB ($SIZE B, 1 MiB chunks), $N hosts on loopback, flash crowd;"
	echo "origin capped at $ORATE B/s (\`stork repo serve --rate\`), every daemon \`--upload-rate $URATE --no-pull-through\`${DRATE:+ \`--download-rate $DRATE\`}."
	echo "Real: $RUNS run(s) of $N \`stork daemon\` processes; simulator: \`stork sim run scenario.json --strategy swarm --seed 1..$SEEDS\`"
	echo "(fluid bound $(awk -v b="$BOUND" 'BEGIN { printf "%.2f", b }') s). Means, (min–max) over runs or seeds. Gap = (sim − real) / real; every row must be within ±$MAXGAP%"
	echo "for the scenario's model (head_of_line $(jq -r '.head_of_line // false' "$RUN/scenario.json")); the last columns, free control messages, are for comparison."
	echo
	echo "| figure | real daemons | simulator | gap | check | sim, free messages | gap |"
	echo "|---|---|---|---|---|---|---|"
	row "origin copies (origin bytes sent / package)" 1
	row "host offload % (1 − origin bytes sent / (hosts × package))" 2
	row "makespan s (last host done)" 3
	row "median completion s" 4
	echo
	echo "Real origin bytes sent: what the \`stork repo serve\` process wrote to its sockets during the fetches (/proc/PID/io wchar: chunks, plus a few KiB"
	echo "of metadata, HTTP headers and its log lines), $(cat "$RUN"/real-origin-sent-*.txt | tr '\n' ' ')B per run; of it the daemons kept (\`bytes_from_origin\` summed)"
	echo "$(kept) copies, the rest being responses they cancelled in flight (a peer delivered first). The origin's request log (GET /chunks/, status 200,"
	echo "each chunk's full size) counts $(cat "$RUN"/real-origin-log-*.txt | tr '\n' ' ')B."
	echo "CPU during the real fetches (daemons + origin; cores on average over the makespan; the machine's 1-minute load, other work included):"
	echo "$(cat "$RUN"/real-cpu-*.txt | paste -sd';' | sed 's/;/; /g') (per run, on $(nproc) CPUs)."
	echo "Per host: real-hosts-R.csv, sim/{model,free}-seedS/hosts-swarm-$N.csv."
} > "$RUN/validate.md"
say "results ($RUN/validate.md)"
cat "$RUN/validate.md"
if [ ${#MISSED[@]} -gt 0 ]; then
	echo "validate: gap over ${MAXGAP}% for: ${MISSED[*]}" >&2
	exit 2
fi
