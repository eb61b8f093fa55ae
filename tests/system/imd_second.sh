#!/usr/bin/env bash
# A second imd must not take a live one out of service. imd A runs with
# exclusive = false; imd B on the same database and A's port must fail at
# its bind, before it opens the store or claims a slot: B exits non-zero
# saying why, A keeps every slot and still serves logins and sends.
# Usage: imd_second.sh BUILD_DIR  (every wait bounded)
set -euo pipefail
build=$1
imd=$build/servers/imd
cli=$build/examples/im-cli
imctl=$build/servers/imctl/imctl
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	for f in "$tmp"/*.out "$tmp"/*.log; do
		[ -f "$f" ] && { echo "--- $f"; cat "$f"; }
	done
	exit 1
}
printf 'imd-second-test-secret-0123456789\n' >"$tmp/secret"
common=(--listen 127.0.0.1 --db "$tmp/imd.db" --secret_file "$tmp/secret"
	--sync normal --slots 16 --exclusive false --log_level info)
"$imd" "${common[@]}" --port 0 --port_file "$tmp/port" >"$tmp/a.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
	[ -s "$tmp/port" ] && break
	sleep 0.1
done
[ -s "$tmp/port" ] || fail "imd A did not start"
port=$(cat "$tmp/port")
owner_a=$(sed -n "s/.*owner '\([^']*\)' holds all.*/\1/p" "$tmp/a.log")
[ -n "$owner_a" ] || fail "imd A did not say its owner"

rc=0
timeout 30 "$imd" "${common[@]}" --port "$port" >"$tmp/b.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "imd B on A's port exited 0"
[ "$rc" -ne 124 ] || fail "imd B on A's port did not exit"

# Every slot of both kinds is still A's.
"$imctl" --store "$tmp/imd.db" --slots 16 slots >"$tmp/slots.out" ||
	fail "imctl slots"
n=$(awk -v o="$owner_a" '$2 == o {s += $3} END {print s + 0}' \
	"$tmp/slots.out")
[ "$n" -eq 32 ] || fail "A holds $n of 32 slots after B"
grep -q "Address already in use" "$tmp/b.log" || fail "B did not say why"
grep -q "no slot taken" "$tmp/b.log" || fail "B did not say it took nothing"
if grep -q "holds all" "$tmp/b.log"; then fail "B claimed slots"; fi

tok() { "$imd" token "$1" --secret_file "$tmp/secret"; }
printf '/create room 2\n' | timeout 30 "$cli" --port "$port" \
	--token "$(tok 1)" --linger-ms 5000 >"$tmp/create.out" 2>&1 ||
	fail "im-cli create exited $?"
gid=$(awk '/^created /{print $2}' "$tmp/create.out")
[ -n "$gid" ] || fail "A does not serve a create after B"
printf '/send %s still here\n/wait\n' "$gid" | timeout 30 "$cli" \
	--port "$port" --token "$(tok 2)" --linger-ms 5000 \
	>"$tmp/send.out" 2>&1 || fail "im-cli send exited $?"
grep -q "^ack $gid " "$tmp/send.out" || fail "A does not ack a send after B"
echo "imd_second: ok (port $port)"
