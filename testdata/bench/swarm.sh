#!/usr/bin/env bash
# make bench-swarm: one package (512 MiB of random bytes, 1 MiB chunks) to
# 8 hosts on loopback, three ways, in one run, figures side by side:
#   stork   1 origin (stork repo serve) + 8 `stork daemon` processes (one
#           bootstrap + 7), all `stork fetch` at once
#   get     8 concurrent `stork get` processes (HTTP only) against the same origin
#   aria2c  BitTorrent: 1 seeder + 8 leechers, opentracker (BASELINES.md)
# Usage: swarm.sh [STORK_BIN] [RUN_DIR]
# Env: STORK_BENCH_MIB (package size in MiB, default 512), STORK_BENCH_HOSTS
# (default 8), STORK_BENCH_TIMEOUT (seconds per phase, default 900);
# diagnostics: STORK_BENCH_HOSTS_DIR (where the daemons' data directories
# go, e.g. on a tmpfs to take fsync out of the figure; default the work dir),
# STORK_BENCH_PHASES (default "stork get aria2").
# Traffic stays on 127.0.0.0/8; every process started here is stopped by PID.
# RUN_DIR keeps logs and bench-swarm.txt; the package copies live in a work
# directory under it that is emptied phase by phase and removed at the end.
set -euo pipefail
STORK="$(realpath "${1:-bin/stork}")"
RUN="${2:-$(mktemp -d "${TMPDIR:-/tmp}/stork-bench-swarm.XXXXXX")}"
mkdir -p "$RUN"
RUN="$(realpath "$RUN")"
MIB="${STORK_BENCH_MIB:-512}"
N="${STORK_BENCH_HOSTS:-8}"
TMO="${STORK_BENCH_TIMEOUT:-900}"
PHASES="${STORK_BENCH_PHASES:-stork get aria2}"
phase() { case " $PHASES " in *" $1 "*) return 0 ;; esac; return 1; }
SIZE=$((MIB << 20))
WORK="$RUN/work"
LOGS="$RUN/logs"
OUT="$RUN/bench-swarm.txt"
HOSTS="$WORK/hosts"
if [ -n "${STORK_BENCH_HOSTS_DIR:-}" ]; then HOSTS="$STORK_BENCH_HOSTS_DIR/stork-bench-hosts.$$"; fi
rm -rf "$WORK" "$LOGS"
mkdir -p "$WORK" "$LOGS"
: > "$OUT"

STORK_T=nan STORK_FIRST=nan STORK_O_SERVER=nan STORK_REQS=nan STORK_O_DAEMONS=nan STORK_CPU=nan STORK_CPU_O=nan
GET_T=nan GET_O=nan GET_CPU=nan GET_CPU_O=nan ARIA_T=nan SEED_UP=nan LEECH_UP=nan ARIA_CPU=nan
PIDS=()
cleanup() {
	local pid
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
	rm -rf "$WORK" "$HOSTS"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

report() { printf '%s\n' "$*" | tee -a "$OUT"; }
die() { echo "bench-swarm: $*" >&2; exit 1; }
# say, now, forget, stop, proc_cpu, origin_bytes, start_daemon
. "$(dirname "$0")/../lib/loopback.sh"
# wait_timed NAME PID...: wait for every PID (each runs under timeout(1), so
# the wait is bounded), write each one's end time to $WORK/done-NAME-PID;
# fails if any exits non-zero.
wait_timed() {
	local name=$1 rc=0 pid st p
	shift
	local left=("$@") rest
	while [ ${#left[@]} -gt 0 ]; do
		pid=""
		wait -n -p pid "${left[@]}" && st=0 || st=$?
		[ -n "$pid" ] || break
		now > "$WORK/done-$name-$pid"
		[ "$st" = 0 ] || { echo "bench-swarm: $name process $pid exited $st" >&2; rc=1; }
		rest=()
		for p in "${left[@]}"; do [ "$p" = "$pid" ] || rest+=("$p"); done
		left=("${rest[@]}")
	done
	forget "$@"
	return $rc
}
# sum of field F over JSON files (jq)
jsum() { local f=$1; shift; jq -s "map(.$f) | add" "$@"; }
# children_cpu VAR: sets VAR to the CPU seconds of every child this shell
# has waited for (times(1) in this shell, not in a $(...) subshell).
children_cpu() {
	times > "$WORK/times"
	printf -v "$1" '%s' "$(tail -1 "$WORK/times" | awk '{ for (i = 1; i <= 2; i++) { split($i, a, /[ms]/); s += a[1] * 60 + a[2] } } END { printf "%.2f", s }')"
}
# cpu_per_gib SECONDS: CPU seconds per GiB received by the N hosts.
cpu_per_gib() { awk -v c="$1" -v n="$N" -v s="$SIZE" 'BEGIN { printf "%.2f", c / (n * s / 1073741824) }'; }
fdiv() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }

say "tools"
need=()
command -v aria2c >/dev/null || need+=(aria2)
command -v opentracker >/dev/null || need+=(opentracker)
command -v mktorrent >/dev/null || need+=(mktorrent)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
	echo "installing ${need[*]}"
	apt-get update -qq
	apt-get install -y -qq "${need[@]}" >/dev/null
fi
avail=$(df -Pk "$RUN" | awk 'NR == 2 { print $4 }')
needk=$(((2 * N + 4) * (SIZE >> 10)))
echo "disk: $((avail >> 20)) GiB free in $RUN; a phase needs at most $((needk >> 20)) GiB"
[ "$avail" -gt "$needk" ] || die "not enough disk in $RUN: $avail KiB free, want $needk"

say "repository with one ${MIB} MiB package of random bytes, in $WORK"
"$STORK" keys gen --out "$WORK/repo.key" >/dev/null
"$STORK" repo init --dir "$WORK/repo" --key "$WORK/repo.key" >/dev/null
mkdir -p "$WORK/src"
head -c "$SIZE" /dev/urandom > "$WORK/src/blob.bin"
"$STORK" repo add --dir "$WORK/repo" --key "$WORK/repo.key" --name blob --version 1.0.0 "$WORK/src/blob.bin" >/dev/null
"$STORK" repo list --dir "$WORK/repo"
ROOT="$WORK/repo/metadata/1.root.json"

say "origin: stork repo serve on 127.0.0.1 (debug log: one line per request)"
STORK_DEBUG=1 STORK_LOG_FORMAT=text "$STORK" repo serve --dir "$WORK/repo" --listen 127.0.0.1:0 > "$LOGS/serve.out" 2> "$LOGS/serve.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q serving "$LOGS/serve.out" 2>/dev/null && break; sleep 0.1; done
REPO=$(sed -n 's/.* on \(http:\/\/127\.0\.0\.1:[0-9]*\).*/\1/p' "$LOGS/serve.out")
[ -n "$REPO" ] || die "origin did not start: $(cat "$LOGS/serve.out" "$LOGS/serve.log")"
echo "origin $REPO"
chunk_reqs() { tail -n +"$(($1 + 1))" "$LOGS/serve.log" | grep 'method=GET' | grep -c 'path=/chunks/' || true; }
loglines() { wc -l < "$LOGS/serve.log"; }

# ---------------------------------------------------------------- stork swarm
if phase stork; then
say "stork: $N daemons on 127.0.0.1 (TCP, --no-nat), one bootstrap + $((N - 1))"
start_daemon h1
BOOT=$("$STORK" status --data "$HOSTS/h1" --json | jq -r '.addrs[0]')
case "$BOOT" in /ip4/127.0.0.1/tcp/*/p2p/*) ;; *) die "bootstrap address $BOOT is not on 127.0.0.1/tcp" ;; esac
echo "bootstrap: $BOOT"
for i in $(seq 2 "$N"); do start_daemon "h$i" "$BOOT"; done
for _ in $(seq 100); do # the overlay: at most 10s for every host to see every other
	low=0
	for i in $(seq "$N"); do
		p=$("$STORK" status --data "$HOSTS/h$i" --json | jq .peers)
		[ "$p" -ge $((N - 1)) ] || low=1
	done
	[ $low = 0 ] && break
	sleep 0.1
done
for i in $(seq "$N"); do printf 'h%d:%s peers  ' "$i" "$("$STORK" status --data "$HOSTS/h$i" --json | jq .peers)"; done
echo
mark=$(loglines)
SERVE_PID=${PIDS[0]}
c0=$(proc_cpu "${DAEMONS[@]}")
o0=$(proc_cpu "$SERVE_PID")
FETCHES=()
t0=$(now)
for i in $(seq "$N"); do
	timeout -k 10 "$TMO" "$STORK" fetch --data "$HOSTS/h$i" blob > "$LOGS/fetch-h$i.out" 2>&1 &
	FETCHES+=($!)
	PIDS+=($!)
done
wait_timed fetch "${FETCHES[@]}" || die "stork fetch failed: $(tail -n 3 "$LOGS"/fetch-h*.out)"
last=$(cat "$WORK"/done-fetch-* | sort -n | tail -1)
first=$(cat "$WORK"/done-fetch-* | sort -n | head -1)
STORK_T=$(awk -v a="$t0" -v b="$last" 'BEGIN { printf "%.2f", b - a }')
STORK_FIRST=$(awk -v a="$t0" -v b="$first" 'BEGIN { printf "%.2f", b - a }')
for i in $(seq "$N"); do
	"$STORK" status --data "$HOSTS/h$i" --json > "$LOGS/status-h$i.json"
	jq -r --arg h "h$i" '"\($h): \(.bytes_from_origin) B from origin, \(.bytes_from_peers) B from peers, \(.bytes_uploaded) B uploaded, \(.peers) peers, package \(.packages[0].state)"' "$LOGS/status-h$i.json"
	[ "$(jq -r '.packages[0].state' "$LOGS/status-h$i.json")" = complete ] || die "h$i: package not complete"
done
STORK_CPU=$(awk -v a="$(proc_cpu "${DAEMONS[@]}")" -v b="$c0" 'BEGIN { printf "%.2f", a - b }')
STORK_CPU_O=$(awk -v a="$(proc_cpu "$SERVE_PID")" -v b="$o0" 'BEGIN { printf "%.2f", a - b }')
echo "CPU during the fetches: daemons $STORK_CPU s, origin $STORK_CPU_O s"
STORK_O_DAEMONS=$(jsum bytes_from_origin "$LOGS"/status-h*.json)
STORK_PEERS=$(jsum bytes_from_peers "$LOGS"/status-h*.json)
STORK_UP=$(jsum bytes_uploaded "$LOGS"/status-h*.json)
STORK_O_SERVER=$(origin_bytes "$mark")
STORK_REQS=$(chunk_reqs "$mark")
echo "origin side: $STORK_O_SERVER B in $STORK_REQS chunk requests; daemons: $STORK_O_DAEMONS B from origin, $STORK_PEERS B from peers, $STORK_UP B uploaded"
stop "${DAEMONS[@]}"
rm -rf "$HOSTS" "$WORK"/done-fetch-*

fi
# ------------------------------------------------------------ stork get (HTTP)
if phase get; then
say "stork get: $N concurrent processes, HTTP only, against the same origin"
mark=$(loglines)
children_cpu c0
o0=$(proc_cpu "$SERVE_PID")
GETS=()
t0=$(now)
for i in $(seq "$N"); do
	timeout -k 10 "$TMO" "$STORK" get --repo "$REPO" --root "$ROOT" --state "$WORK/get/state$i" --out "$WORK/get/out$i" blob > "$LOGS/get-$i.out" 2>&1 &
	GETS+=($!)
	PIDS+=($!)
done
wait_timed get "${GETS[@]}" || die "stork get failed: $(tail -n 3 "$LOGS"/get-*.out)"
last=$(cat "$WORK"/done-get-* | sort -n | tail -1)
GET_T=$(awk -v a="$t0" -v b="$last" 'BEGIN { printf "%.2f", b - a }')
GET_O=$(origin_bytes "$mark")
children_cpu c1
GET_CPU=$(awk -v a="$c1" -v b="$c0" 'BEGIN { printf "%.2f", a - b }')
GET_CPU_O=$(awk -v a="$(proc_cpu "$SERVE_PID")" -v b="$o0" 'BEGIN { printf "%.2f", a - b }')
for i in $(seq "$N"); do
	got=$(find "$WORK/get/out$i" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%.0f\n", s }')
	[ "$got" = "$SIZE" ] || die "get $i: wrote $got bytes, want $SIZE"
done
echo "all done in $GET_T s; origin sent $GET_O B; CPU: get processes $GET_CPU s, origin $GET_CPU_O s"
rm -rf "$WORK/get" "$WORK"/done-get-*

fi
# ------------------------------------------------------------ aria2c BitTorrent
if phase aria2; then
say "aria2c: BitTorrent, 1 seeder + $N leechers, opentracker on 127.0.0.1:6969"
BT="$WORK/bt"
mkdir -p "$BT/tracker" "$BT/seed"
mv "$WORK/src/blob.bin" "$BT/seed/blob.bin"
mktorrent -a http://127.0.0.1:6969/announce -l 20 -o "$BT/blob.torrent" "$BT/seed/blob.bin" >/dev/null
HASH=$(aria2c -S "$BT/blob.torrent" | sed -n 's/^Info Hash: *//p')
[ -n "$HASH" ] || die "no info hash"
echo "$HASH" > "$BT/tracker/whitelist.txt"
chmod -R a+rX "$BT/tracker"
(cd "$BT/tracker" && exec opentracker -i 127.0.0.1 -p 6969 -P 6969 -w whitelist.txt -d "$BT/tracker") > "$LOGS/opentracker.log" 2>&1 &
PIDS+=($!)
TRACKER=$!
sleep 0.5
kill -0 "$TRACKER" 2>/dev/null || die "opentracker exited: $(cat "$LOGS/opentracker.log")"
cat > "$BT/done.sh" <<EOF
#!/bin/sh
date +%s.%N > "$BT/done-\$(basename "\$(dirname "\$3")")"
EOF
chmod +x "$BT/done.sh"
ARIA=(--enable-dht=false --enable-dht6=false --bt-enable-lpd=false --seed-ratio=0.0 --enable-rpc --rpc-listen-all=false
	--file-allocation=falloc --summary-interval=0 --console-log-level=warn)
rpc() { # PORT METHOD: JSON-RPC result
	curl -s --max-time 5 "http://127.0.0.1:$1/jsonrpc" -d "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"$2\",\"params\":[]}"
}
uploaded() { # PORT: uploadLength of the active download(s)
	rpc "$1" aria2.tellActive | jq '[.result[].uploadLength | tonumber] | add // 0'
}
ARIAS=()
aria2c "${ARIA[@]}" --interface=127.0.0.2 --listen-port=6881 --rpc-listen-port=6800 --dir="$BT/seed" \
	--bt-seed-unverified=true "$BT/blob.torrent" > "$LOGS/aria-seed.log" 2>&1 &
PIDS+=($!)
ARIAS+=($!)
for _ in $(seq 100); do rpc 6800 aria2.getVersion >/dev/null 2>&1 && break; sleep 0.1; done
sleep 1 # the seeder's first announce
c0=$(proc_cpu "${ARIAS[@]}" "$TRACKER")
t0=$(now)
for i in $(seq "$N"); do
	mkdir -p "$BT/l$i"
	aria2c "${ARIA[@]}" --interface="127.0.0.$((i + 2))" --listen-port=$((6881 + i)) --rpc-listen-port=$((6800 + i)) \
		--dir="$BT/l$i" --on-bt-download-complete="$BT/done.sh" "$BT/blob.torrent" > "$LOGS/aria-l$i.log" 2>&1 &
	PIDS+=($!)
	ARIAS+=($!)
done
limit=$(($(date +%s) + TMO))
while [ "$(ls "$BT"/done-l* 2>/dev/null | wc -l)" -lt "$N" ]; do
	[ "$(date +%s)" -lt "$limit" ] || die "aria2c: only $(ls "$BT"/done-l* 2>/dev/null | wc -l) of $N leechers done after $TMO s"
	sleep 0.05
done
last=$(cat "$BT"/done-l* | sort -n | tail -1)
ARIA_T=$(awk -v a="$t0" -v b="$last" 'BEGIN { printf "%.2f", b - a }')
ARIA_CPU=$(awk -v a="$(proc_cpu "${ARIAS[@]}" "$TRACKER")" -v b="$c0" 'BEGIN { printf "%.2f", a - b }')
SEED_UP=$(uploaded 6800)
LEECH_UP=0
for i in $(seq "$N"); do LEECH_UP=$((LEECH_UP + $(uploaded $((6800 + i))))); done
echo "all done in $ARIA_T s; seeder uploaded $SEED_UP B, leechers uploaded $LEECH_UP B; CPU (all aria2c + tracker, until the last completion + RPC) $ARIA_CPU s"
for i in $(seq "$N"); do
	got=$(stat -c %s "$BT/l$i/blob.bin")
	[ "$got" = "$SIZE" ] || die "leecher $i: $got bytes, want $SIZE"
done
stop "${ARIAS[@]}" "$TRACKER"
rm -rf "$BT"

fi
# ---------------------------------------------------------------------- report
say "results"
report "bench-swarm $(date -u +%Y-%m-%dT%H:%M:%SZ) $(uname -m), $(nproc) CPUs; package ${MIB} MiB ($SIZE B, 1 MiB chunks/pieces), $N hosts, loopback"
report "$(printf '%-28s %9s %10s %14s %12s %s' method all_done_s agg_MB/s origin_copies cpu_s/GiB notes)"
report "$(printf '%-28s %9s %10s %14s %12s %s' "stork swarm ($N daemons)" "$STORK_T" \
	"$(awk -v n="$N" -v s="$SIZE" -v t="$STORK_T" 'BEGIN { printf "%.0f", n * s / 1e6 / t }')" \
	"$(fdiv "$STORK_O_SERVER" "$SIZE")" "$(cpu_per_gib "$(awk -v a="$STORK_CPU" -v b="$STORK_CPU_O" 'BEGIN { print a + b }')")" \
	"origin side $STORK_O_SERVER B ($STORK_REQS chunk GETs); daemons' bytes_from_origin sum $STORK_O_DAEMONS B = $(fdiv "$STORK_O_DAEMONS" "$SIZE") copies; first done ${STORK_FIRST}s")"
report "$(printf '%-28s %9s %10s %14s %12s %s' "stork get (HTTP only)" "$GET_T" \
	"$(awk -v n="$N" -v s="$SIZE" -v t="$GET_T" 'BEGIN { printf "%.0f", n * s / 1e6 / t }')" \
	"$(fdiv "$GET_O" "$SIZE")" "$(cpu_per_gib "$(awk -v a="$GET_CPU" -v b="$GET_CPU_O" 'BEGIN { print a + b }')")" "origin side $GET_O B")"
report "$(printf '%-28s %9s %10s %14s %12s %s' "aria2c BitTorrent" "$ARIA_T" \
	"$(awk -v n="$N" -v s="$SIZE" -v t="$ARIA_T" 'BEGIN { printf "%.0f", n * s / 1e6 / t }')" \
	"$(fdiv "$SEED_UP" "$SIZE")" "$(cpu_per_gib "$ARIA_CPU")" "seeder uploadLength $SEED_UP B; leechers uploaded $LEECH_UP B")"
OC=$(fdiv "$STORK_O_SERVER" "$SIZE")
TR=$(fdiv "$STORK_T" "$ARIA_T")
report "origin_copies (stork) = $OC  target <= 1.20: $(awk -v x="$OC" 'BEGIN { print (x <= 1.2) ? "met" : "MISSED" }')"
report "stork_time/aria2_time = $TR  target <= 1.00: $(awk -v x="$TR" 'BEGIN { print (x <= 1.0) ? "met" : "MISSED" }')"
report "stork_time/get_time   = $(fdiv "$STORK_T" "$GET_T")"
if [ -f "$RUN/go-bench.txt" ]; then
	report "go benchmarks (node, same run):"
	grep -E '^(Benchmark|    bench_swarm_test)' "$RUN/go-bench.txt" | tee -a "$OUT"
fi
report "origin_copies: chunk bytes the origin served (its request log: GET /chunks/CID, status 200, each chunk file's size) / package size; for aria2c the seeder's uploadLength / size"
report "cpu_s/GiB: CPU seconds (user+system, every process of the method: daemons+origin, get processes+origin, aria2c+tracker) per GiB received by the $N hosts"
echo "written to $OUT (logs in $LOGS)"
