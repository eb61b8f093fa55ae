#!/usr/bin/env bash
# A full disk under imd (sqlite on an 8 MiB tmpfs), driven through im-cli:
# sends until the disk is full get a clear "store full" (IM_ENOSPC) and
# nothing unstored is acked; imd's log stays bounded (a few lines, not one
# per failed commit); once space returns sends succeed again within the
# backoff (<= 1 s); every acked message is in the database; a restart on
# a full disk exits with status 3 and says the disk is full.
# Needs root (mount); skipped (77) without it.
# Usage: diskfull.sh BUILD_DIR
set -euo pipefail
build=$1
imd=$build/servers/imd
cli=$build/examples/im-cli
for x in "$imd" "$cli"; do
	[ -x "$x" ] || { echo "diskfull: missing $x"; exit 1; }
done
command -v sqlite3 >/dev/null || { echo "diskfull: no sqlite3, skipped"; exit 77; }
tmp=$(mktemp -d)
disk=$tmp/disk
mkdir "$disk"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	umount "$disk" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
if [ "$(id -u)" != 0 ] || ! mount -t tmpfs -o size=8m tmpfs "$disk" 2>/dev/null; then
	echo "diskfull: cannot mount a tmpfs (needs root), skipped"
	exit 77
fi
fail() {
	echo "FAIL: $*"
	for f in "$tmp"/*.out "$tmp"/*.log; do
		[ -f "$f" ] && { echo "--- $f"; tail -n 40 "$f"; }
	done
	df -k "$disk" || true
	exit 1
}

printf 'diskfull-test-secret-0123456789abcdef\n' >"$tmp/secret"
start_imd() { # LOG
	rm -f "$tmp/port"
	"$imd" --listen 127.0.0.1 --port 0 --port_file "$tmp/port" \
		--db "$disk/imd.db" --secret_file "$tmp/secret" \
		--slots 16 --log_level info >"$tmp/$1" 2>&1 &
	imd_pid=$!
	pids+=($imd_pid)
	for _ in $(seq 1 100); do
		[ -s "$tmp/port" ] && break
		kill -0 "$imd_pid" 2>/dev/null || break
		sleep 0.1
	done
}
start_imd imd.log
[ -s "$tmp/port" ] || fail "imd did not start"
port=$(cat "$tmp/port")
t1=$("$imd" token 1 --secret_file "$tmp/secret")
run_cli() { # NAME: stdin = commands
	timeout 20 "$cli" --port "$port" --token "$t1" --linger-ms 10000 \
		>"$tmp/$1.out" 2>&1 || fail "im-cli $1 exited $?"
}
echo "/create full 2" | run_cli create
gid=$(awk '/^created /{print $2}' "$tmp/create.out")
[ -n "$gid" ] || fail "no group created"

# Leave about 2 MiB free, then send 3 MB: the disk fills part way. (Not
# less: one batch, a whole client outbox of 256 sends, is ~800 KB in the
# WAL and as much again in the database at its checkpoint; with 1 MiB
# free as few as 18 sends were acked before the disk was full.)
avail=$(df -k --output=avail "$disk" | tail -n 1)
dd if=/dev/zero of="$disk/filler" bs=1k count=$((avail - 2048)) \
	status=none 2>/dev/null || true
body=$(head -c 3000 /dev/zero | tr '\0' x)
n=1000
for i in $(seq 1 $n); do echo "/send $gid $i $body"; done >"$tmp/sends"
echo /wait >>"$tmp/sends"
t0=$(date +%s%N)
run_cli fill <"$tmp/sends"
t1ms=$((($(date +%s%N) - t0) / 1000000))
acked=$(grep -c "^ack $gid " "$tmp/fill.out" || true)
full=$(grep -c "^error send IM_ENOSPC group=$gid store full\$" \
	"$tmp/fill.out" || true)
other=$(grep "^error" "$tmp/fill.out" | grep -vc "IM_ENOSPC" || true)
echo "diskfull: $acked acked, $full refused 'store full', $other other errors, $t1ms ms"
[ "$acked" -gt 0 ] || fail "nothing was acked before the disk was full"
[ "$full" -gt 0 ] || fail "no send was refused with 'store full'"
[ "$other" -eq 0 ] || fail "errors other than store full"
[ $((acked + full)) -eq $n ] || fail "$acked + $full answers for $n sends"
# Bounded log: the first failure, at most one line per 10 s, nothing per
# failed commit.
lines=$(grep -c "store full\|still full" "$tmp/imd.log" || true)
echo "diskfull: $lines log lines about the full store"
[ "$lines" -ge 1 ] || fail "imd did not log the full store"
[ "$lines" -le $((2 + t1ms / 10000)) ] || fail "$lines log lines: not rate-limited"

# Space returns: sends go through again (the pause is at most 1 s).
rm -f "$disk/filler"
sleep 1.2
for i in $(seq 1 20); do echo "/send $gid after $i"; done >"$tmp/again"
echo /wait >>"$tmp/again"
run_cli again <"$tmp/again"
[ "$(grep -c "^ack $gid " "$tmp/again.out")" -eq 20 ] ||
	fail "sends after space returned were not all acked"
grep -q "store has space again" "$tmp/imd.log" || fail "no recovery line"

kill -TERM "$imd_pid"
wait "$imd_pid" || fail "imd exited $? on SIGTERM"

# Every acked message is stored, at the seq it was acked with.
cat "$tmp/fill.out" "$tmp/again.out" |
	awk -v g="$gid" '$1 == "ack" && $2 == g {print $3}' | sort -n >"$tmp/acked"
sqlite3 "$disk/imd.db" "SELECT seq FROM im_messages WHERE conv = $gid" |
	sort -n >"$tmp/stored"
missing=$(comm -23 "$tmp/acked" "$tmp/stored" | wc -l)
[ "$missing" -eq 0 ] || fail "$missing acked messages are not stored"
echo "diskfull: all $(wc -l <"$tmp/acked") acked messages stored"

# A restart on a full disk: a clear message and exit status 3.
dd if=/dev/zero of="$disk/filler" bs=64k status=none 2>/dev/null || true
set +e
timeout 30 "$imd" --listen 127.0.0.1 --port 0 --db "$disk/imd.db" \
	--secret_file "$tmp/secret" --slots 16 >"$tmp/restart.log" 2>&1
rc=$?
set -e
echo "diskfull: restart on a full disk exited $rc"
[ "$rc" -eq 3 ] || fail "imd on a full disk exited $rc, not 3"
grep -q "disk is full" "$tmp/restart.log" || fail "no clear message"
rm -f "$disk/filler"
echo "diskfull: ok"
