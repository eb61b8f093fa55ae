#!/usr/bin/env bash
# A full disk under PostgreSQL, driven through im-cli against a cluster
# (imnode Router, Chatter, Connector): the store's tables live in a
# tablespace on an 8 MiB tmpfs (PostgreSQL's WAL stays in its data
# directory, so the server itself keeps running). Sends until the
# tablespace is full get "store full" (SQLSTATE 53100, IM_ENOSPC) and
# nothing unstored is acked; once space returns sends are acked again;
# every acked message is in the database. The PostgreSQL server comes
# from scripts/test-pg (IM_TEST_PG, IM_TEST_PG_BIN): without it this
# fails. Needs root (mount); skipped (77) without it.
# Usage: diskfull-pg.sh BUILD_DIR
set -euo pipefail
build=$1
imnode=$build/servers/cluster/imnode
imctl=$build/servers/imctl/imctl
imd=$build/servers/imd
cli=$build/examples/im-cli
for x in "$imnode" "$imctl" "$imd" "$cli"; do
	[ -x "$x" ] || { echo "diskfull-pg: missing $x"; exit 1; }
done
[ -n "${IM_TEST_PG:-}" ] && [ -x "${IM_TEST_PG_BIN:-}/psql" ] || {
	echo "diskfull-pg: no IM_TEST_PG/IM_TEST_PG_BIN (run it through scripts/test-pg)"
	exit 1
}
psql() { PGOPTIONS="-c client_min_messages=warning" "$IM_TEST_PG_BIN/psql" "$IM_TEST_PG" -v ON_ERROR_STOP=1 -qAtX "$@"; }
tmp=$(mktemp -d)
disk=$tmp/disk
mkdir "$disk"
# One name for the schema and the tablespace, unique per run.
ts=imfull_$$
pids=()
made_ts=0
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [ "$made_ts" = 1 ]; then
		psql -c "DROP SCHEMA IF EXISTS $ts CASCADE" || true
		psql -c "DROP TABLESPACE IF EXISTS $ts" || true
	fi
	umount "$disk" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
if [ "$(id -u)" != 0 ] || ! mount -t tmpfs -o size=8m tmpfs "$disk" 2>/dev/null; then
	echo "diskfull-pg: cannot mount a tmpfs (needs root), skipped"
	exit 77
fi
fail() {
	echo "FAIL: $*"
	for f in "$tmp"/*.out "$tmp"/*.log; do
		[ -f "$f" ] && { echo "--- $f"; tail -n 30 "$f" | cut -c1-300; }
	done
	df -k "$disk" || true
	exit 1
}

# The server runs as postgres: the tablespace directory is its own (and
# the way to it open).
chmod 755 "$tmp" "$disk"
mkdir "$disk/pg"
chown postgres: "$disk/pg" 2>/dev/null || true
chmod 700 "$disk/pg"
psql -c "CREATE TABLESPACE $ts LOCATION '$disk/pg'" || fail "no tablespace"
made_ts=1
psql -c "CREATE SCHEMA $ts" || fail "no schema"
# Every table and index the store makes goes to the small tablespace.
store="$IM_TEST_PG options='-csearch_path=$ts -cdefault_tablespace=$ts'"

printf 'diskfull-pg-test-secret-0123456789abcdef\n' >"$tmp/secret"
node() { # NAME ROLE LISTEN [flags]
	local name=$1 role=$2 listen=$3
	shift 3
	"$imnode" --role "$role" --name "$name" --listen "$listen" \
		--store "$store" --slots 16 "$@" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
}
node router router 127.0.0.1:0 --port_file "$tmp/router.port"
node chatter chatter - --expect 1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
node connector connector "127.0.0.1:$port" --expect 1 \
	--secret_file "$tmp/secret"
owned=0
for _ in $(seq 1 200); do
	owned=$("$imctl" --store "$store" --slots 16 status 2>/dev/null |
		grep -c "slots: 16/16" || true)
	[ "$owned" = 2 ] && break
	sleep 0.1
done
[ "$owned" = 2 ] || fail "the cluster did not take its slots in 20 s"
t1=$("$imd" token 1 --secret_file "$tmp/secret")
run_cli() { # NAME: stdin = commands
	timeout 20 "$cli" --port "$port" --token "$t1" --linger-ms 10000 \
		>"$tmp/$1.out" 2>&1 || fail "im-cli $1 exited $?"
}
echo "/create full 2" | run_cli create
gid=$(awk '/^created /{print $2}' "$tmp/create.out")
[ -n "$gid" ] || fail "no group created"

# Leave about 2 MiB free, then send 3 MB that PostgreSQL cannot compress
# (random text, ~4 KB a row on its pages): the tablespace fills part way.
# (Not less: one batch, a whole client outbox of 256 sends, takes ~1 MiB.)
avail=$(df -k --output=avail "$disk" | tail -n 1)
dd if=/dev/zero of="$disk/filler" bs=1k count=$((avail - 2048)) \
	status=none 2>/dev/null || true
body=$(head -c 2250 /dev/urandom | base64 -w 0)
n=1000
for i in $(seq 1 $n); do echo "/send $gid $i $body"; done >"$tmp/sends"
echo /wait >>"$tmp/sends"
run_cli fill <"$tmp/sends"
acked=$(grep -c "^ack $gid " "$tmp/fill.out" || true)
full=$(grep -c "^error send IM_ENOSPC group=$gid store full\$" \
	"$tmp/fill.out" || true)
other=$(grep "^error" "$tmp/fill.out" | grep -vc "IM_ENOSPC" || true)
echo "diskfull-pg: $acked acked, $full refused 'store full', $other other errors"
[ "$acked" -gt 0 ] || fail "nothing was acked before the disk was full"
[ "$full" -gt 0 ] || fail "no send was refused with 'store full'"
[ "$other" -eq 0 ] || fail "errors other than store full"
[ $((acked + full)) -eq $n ] || fail "$acked + $full answers for $n sends"
grep -q "store full" "$tmp/chatter.log" || fail "the Chatter did not log it"

# Space returns: sends go through again (the pause is at most 1 s).
rm -f "$disk/filler"
sleep 1.2
for i in $(seq 1 20); do echo "/send $gid after $i"; done >"$tmp/again"
echo /wait >>"$tmp/again"
run_cli again <"$tmp/again"
[ "$(grep -c "^ack $gid " "$tmp/again.out")" -eq 20 ] ||
	fail "sends after space returned were not all acked"
grep -q "store has space again" "$tmp/chatter.log" || fail "no recovery line"

# Every acked message is stored, at the seq it was acked with.
cat "$tmp/fill.out" "$tmp/again.out" |
	awk -v g="$gid" '$1 == "ack" && $2 == g {print $3}' | sort -n >"$tmp/acked"
psql -c "SELECT seq FROM $ts.im_messages WHERE conv = $gid" |
	sort -n >"$tmp/stored"
missing=$(comm -23 "$tmp/acked" "$tmp/stored" | wc -l)
[ "$missing" -eq 0 ] || fail "$missing acked messages are not stored"
echo "diskfull-pg: all $(wc -l <"$tmp/acked") acked messages stored"
grep "store full\|still full\|space again" "$tmp/chatter.log" | cut -c1-200
echo "diskfull-pg: ok"
