# Shell helpers shared by the loopback runs (testdata/bench/swarm.sh,
# testdata/validate/validate.sh): stopping processes by PID, their CPU,
# the origin's served bytes, and starting daemons. Source it after setting
# STORK, HOSTS, LOGS, WORK, REPO, ROOT and PIDS=() and defining die; every
# process started here is recorded in PIDS (and DAEMONS) and stopped by PID.

say() { printf '\n== %s\n' "$*"; }
now() { date +%s.%N; }

# forget PID...: drop them from PIDS (they have been waited for).
forget() {
	local keep=() p q drop
	for p in "${PIDS[@]}"; do
		drop=0
		for q in "$@"; do [ "$p" = "$q" ] && drop=1; done
		[ $drop = 1 ] || keep+=("$p")
	done
	PIDS=("${keep[@]}")
}

# stop PID...: SIGTERM, then SIGKILL after 10s; drop them from PIDS.
stop() {
	local pid i
	for pid in "$@"; do kill "$pid" 2>/dev/null || true; done
	for pid in "$@"; do
		for i in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -9 "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	forget "$@"
}

# proc_cpu PID...: CPU seconds (user + system) the live processes have used.
TCK=$(getconf CLK_TCK)
proc_cpu() {
	local pid t=0 v
	for pid in "$@"; do
		v=$(sed 's/^.*) //' "/proc/$pid/stat" 2>/dev/null | awk '{ print $12 + $13 }') || v=0
		t=$((t + ${v:-0}))
	done
	awk -v t="$t" -v k="$TCK" 'BEGIN { printf "%.2f", t / k }'
}

# origin_bytes FROM_LINE: chunk bytes the origin served (GET /chunks/CID,
# status 200, each chunk file's size) in $LOGS/serve.log after FROM_LINE.
origin_bytes() {
	tail -n +"$(($1 + 1))" "$LOGS/serve.log" | grep 'method=GET' | grep 'status=200' |
		sed -n 's/.*path=\/chunks\/\([A-Za-z0-9]*\).*/\1/p' |
		(cd "$WORK/repo/chunks" && xargs -r stat -c %s) | awk '{ s += $1 } END { printf "%.0f\n", s }'
}

# start_daemon NAME [BOOTSTRAP]: a daemon on 127.0.0.1 (TCP, --no-nat) with
# data in $HOSTS/NAME, its log in $LOGS/daemon-NAME.log and the extra flags
# in DAEMON_ARGS; returns once its admin socket answers (at most 30s).
DAEMONS=()
DAEMON_ARGS=()
start_daemon() {
	local data="$HOSTS/$1" boot=()
	mkdir -p "$data"
	if [ -n "${2:-}" ]; then boot=(--bootstrap "$2"); fi
	"$STORK" daemon --data "$data" --repo "$REPO" --root "$ROOT" --listen /ip4/127.0.0.1/tcp/0 --no-nat \
		--refresh-interval 1h "${DAEMON_ARGS[@]}" "${boot[@]}" 2> "$LOGS/daemon-$1.log" &
	PIDS+=($!)
	DAEMONS+=($!)
	for _ in $(seq 300); do "$STORK" status --data "$data" >/dev/null 2>&1 && return 0; sleep 0.1; done
	die "daemon $1 did not start within 30s: $(tail -5 "$LOGS/daemon-$1.log")"
}
