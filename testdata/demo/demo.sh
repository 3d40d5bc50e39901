#!/usr/bin/env bash
# make demo: a signed repository, an origin on loopback, a sample package
# published and fetched with `stork get`, every byte verified.
set -euo pipefail
STORK="$(realpath "${1:-bin/stork}")"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/stork-demo.XXXXXX")"
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
	rm -rf "$WORK"
}
trap cleanup EXIT
say() { printf '\n== %s\n' "$*"; }

say "keys and repository in $WORK"
"$STORK" keys gen --out "$WORK/repo.key"
"$STORK" repo init --dir "$WORK/repo" --key "$WORK/repo.key"

say "a sample package: nested directories, a symlink, an empty file, 24 MiB of data"
PKG="$WORK/src/hello"
mkdir -p "$PKG/bin" "$PKG/share/doc/hello" "$PKG/lib"
printf '#!/bin/sh\necho "hello from stork"\n' > "$PKG/bin/hello"
chmod 0755 "$PKG/bin/hello"
printf 'Hello, delivered by Stork.\n' > "$PKG/share/doc/hello/README"
: > "$PKG/share/doc/hello/EMPTY"
head -c 25165824 /dev/urandom > "$PKG/lib/libhello.so.1"
ln -s libhello.so.1 "$PKG/lib/libhello.so"
"$STORK" repo add --dir "$WORK/repo" --key "$WORK/repo.key" --name hello --version 1.0.0 "$PKG"
"$STORK" repo add --dir "$WORK/repo" --key "$WORK/repo.key" --name hello-tools --version 0.1.0 --depends 'hello>=1.0' "$PKG/bin"
"$STORK" repo list --dir "$WORK/repo"

say "origin: stork repo serve on loopback"
PORT=$(( 20000 + RANDOM % 20000 ))
"$STORK" repo serve --dir "$WORK/repo" --listen "127.0.0.1:$PORT" > "$WORK/serve.log" 2>&1 &
SERVE_PID=$!
PIDS+=($SERVE_PID)
for _ in $(seq 50); do grep -q serving "$WORK/serve.log" 2>/dev/null && break; sleep 0.1; done
cat "$WORK/serve.log"

say "stork get: TUF update, resolve, parallel chunk download, verify, atomic write"
"$STORK" get --repo "http://127.0.0.1:$PORT" --root "$WORK/repo/metadata/1.root.json" \
	--state "$WORK/client-state" --out "$WORK/out/hello" --json hello
diff -r "$PKG" "$WORK/out/hello" && echo "tree identical to the published source"
"$WORK/out/hello/bin/hello"

say "a tampered chunk on the origin is refused and leaves nothing behind"
CHUNK=$(ls "$WORK/repo/chunks" | head -1)
chmod u+w "$WORK/repo/chunks/$CHUNK" 2>/dev/null || true
cp "$WORK/repo/chunks/$CHUNK" "$WORK/chunk.bak"
printf 'evil' | dd of="$WORK/repo/chunks/$CHUNK" bs=1 seek=0 conv=notrunc status=none
if "$STORK" get --repo "http://127.0.0.1:$PORT" --root "$WORK/repo/metadata/1.root.json" \
	--state "$WORK/client-state" --out "$WORK/out/tampered" hello; then
	echo "demo: tampered chunk was accepted" >&2; exit 1
fi
test ! -e "$WORK/out/tampered" && echo "refused, and no partial tree at out/tampered"
cp "$WORK/chunk.bak" "$WORK/repo/chunks/$CHUNK"

say "five host daemons on loopback swarm one package; the origin is the last resort"
LOOP=(--listen /ip4/127.0.0.1/tcp/0 --no-nat --refresh-interval 1h)
field() { sed -n "s/.*\"$2\": \([0-9]*\).*/\1/p" "$1" | head -1; }
start_daemon() { # NAME [BOOTSTRAP]
	local data="$WORK/hosts/$1"
	mkdir -p "$data"
	local boot=()
	if [ -n "${2:-}" ]; then boot=(--bootstrap "$2"); fi
	"$STORK" daemon --data "$data" --repo "http://127.0.0.1:$PORT" --root "$WORK/repo/metadata/1.root.json" "${LOOP[@]}" "${boot[@]}" 2> "$WORK/$1.log" &
	PIDS=("$!" "${PIDS[@]}")
	for _ in $(seq 100); do "$STORK" status --data "$data" >/dev/null 2>&1 && return 0; sleep 0.1; done
	echo "demo: daemon $1 did not start" >&2; cat "$WORK/$1.log" >&2; exit 1
}
start_daemon h1
BOOT=$("$STORK" status --data "$WORK/hosts/h1" --json | sed -n 's/^ *"\(\/ip4\/127.0.0.1\/tcp\/[^"]*\)".*/\1/p' | head -1)
echo "first host: $BOOT"
for h in h2 h3 h4 h5; do start_daemon "$h" "$BOOT"; done
sleep 1
# What the origin process handed to the network (Linux: wchar in
# /proc/PID/io; metadata and HTTP headers included): what it sent. The
# daemons' bytes_from_origin, summed, are the chunk bytes they took from
# it (each chunk counted at the host that fetched it from the origin):
# printed beside it.
wchar() { sed -n 's/^wchar: //p' "/proc/$SERVE_PID/io" 2>/dev/null; }
W0=$(wchar)
FETCHES=()
for h in h1 h2 h3 h4 h5; do
	"$STORK" fetch --data "$WORK/hosts/$h" hello > "$WORK/$h.fetch" &
	FETCHES+=($!)
done
for pid in "${FETCHES[@]}"; do wait "$pid"; done
SIZE=25165885
ORIGIN=0; PEERS=0
for h in h1 h2 h3 h4 h5; do
	"$STORK" status --data "$WORK/hosts/$h" --json > "$WORK/$h.status"
	o=$(field "$WORK/$h.status" bytes_from_origin); p=$(field "$WORK/$h.status" bytes_from_peers); u=$(field "$WORK/$h.status" bytes_uploaded)
	printf '%s: %10d B from origin, %10d B from peers, %10d B uploaded\n' "$h" "$o" "$p" "$u"
	ORIGIN=$((ORIGIN + o)); PEERS=$((PEERS + p))
done
W1=$(wchar)
awk -v o="$ORIGIN" -v s="$SIZE" 'BEGIN { printf "the daemons took %.2f copies of the package from the origin (bytes_from_origin, summed)\n", o/s }'
if [ -n "$W0" ] && [ -n "$W1" ]; then ORIGIN=$((W1 - W0)); fi
awk -v o="$ORIGIN" -v s="$SIZE" -v n=5 'BEGIN { printf "repository offload: %.1f%% (origin sent %.2f copies for %d hosts; HTTP-only would send %d)\n", 100*(1-o/(s*n)), o/s, n, n }'
"$STORK" peers --data "$WORK/hosts/h3"

say "one download, one copy, read-only views for three VMs on host h1"
DATA="$WORK/hosts/h1"
MODE=link
UNPRIV=(--unprivileged) # link views only for VMs declared unprivileged
if [ "$(id -u)" = 0 ]; then MODE=bind; UNPRIV=(); fi
INSTALLS=()
for vm in vm1 vm2 vm3; do
	"$STORK" vm add --data "$DATA" "$vm" --allow 'hello*' --root "$WORK/vms/$vm" --mode "$MODE" "${UNPRIV[@]}" > /dev/null
	"$STORK" install --data "$DATA" --vm "$vm" --mode "$MODE" hello-tools > /dev/null &
	INSTALLS+=($!)
done
for pid in "${INSTALLS[@]}"; do wait "$pid"; done
"$STORK" list --data "$DATA"
ls -li "$WORK/vms/vm1/hello/lib/libhello.so.1" "$WORK/vms/vm3/hello/lib/libhello.so.1" | awk '{print "inode", $1, $NF}'
if (echo x > "$WORK/vms/vm2/hello/bin/hello") 2>/dev/null; then echo "demo: a VM wrote into the store" >&2; exit 1; fi
echo "a VM cannot write through its view ($MODE mode)"
for vm in vm1 vm2 vm3; do "$STORK" uninstall --data "$DATA" --vm "$vm" hello >/dev/null; "$STORK" uninstall --data "$DATA" --vm "$vm" hello-tools >/dev/null; done
for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
PIDS=()
"$STORK" verify --data "$DATA"

say "demo done"
