#!/usr/bin/env bash
# A second imd must not take a live one out of service. imd A runs with
# exclusive = false; imd B on the same database and A's port must fail at
# its bind, before it opens the store or claims a slot: B exits non-zero
# saying why, A keeps every slot and still serves logins and sends.
# Then imd B on a free port really takes every slot: A logs SLOTS LOST
# (naming the slots and B) once, refuses the users and takes nothing back.
# Usage: imd_second.sh BUILD_DIR  (every wait bounded; KEEP=1 keeps the
# temporary directory with the logs)
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
	[ -n "${KEEP:-}" ] || rm -rf "$tmp"
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
"$imd" "${common[@]}" --port 0 --port_file "$tmp/port" --slot_watch_ms 100 \
	>"$tmp/a.log" 2>&1 &
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

# imd B on a free port really takes every slot: A says so loudly, naming
# the slots and B, refuses them and does not take them back.
"$imd" "${common[@]}" --port 0 --port_file "$tmp/port_b" >"$tmp/b2.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
	[ -s "$tmp/port_b" ] && break
	sleep 0.1
done
[ -s "$tmp/port_b" ] || fail "imd B on a free port did not start"
owner_b=$(sed -n "s/.*owner '\([^']*\)' holds all.*/\1/p" "$tmp/b2.log")
[ -n "$owner_b" ] || fail "imd B did not say its owner"
for _ in $(seq 1 100); do
	grep -q "E SLOTS LOST" "$tmp/a.log" && break
	sleep 0.1
done
line=$(grep "E SLOTS LOST" "$tmp/a.log" | tail -n 1)
[ -n "$line" ] || fail "A did not notice it lost its slots"
case $line in
*"32 slots this imd ($owner_a)"*"user 0-15 -> '$owner_b'"*"group 0-15 -> '$owner_b'"*) ;;
*) fail "A's message does not name the slots and B: $line" ;;
esac
# A checks every 100 ms: the line is repeated at most every 10 s.
sleep 2
[ "$(grep -c "E SLOTS LOST" "$tmp/a.log")" -eq 1 ] ||
	fail "A's message is not rate-limited"
"$imctl" --store "$tmp/imd.db" --slots 16 slots >"$tmp/slots2.out"
n=$(awk -v o="$owner_b" '$2 == o {s += $3} END {print s + 0}' \
	"$tmp/slots2.out")
[ "$n" -eq 32 ] || fail "B holds $n of 32 slots: A took some back"
# A refuses a login cleanly (its slots are B's); B serves it.
printf '/quit\n' | timeout 30 "$cli" --port "$port" --token "$(tok 1)" \
	--linger-ms 2000 >"$tmp/refused.out" 2>&1 || true
if grep -q '^state connected' "$tmp/refused.out"; then
	fail "A served a user of a slot it lost"
fi
printf '/send %s on B\n/wait\n' "$gid" | timeout 30 "$cli" \
	--port "$(cat "$tmp/port_b")" --token "$(tok 2)" --linger-ms 5000 \
	>"$tmp/send_b.out" 2>&1 || fail "im-cli send to B exited $?"
grep -q "^ack $gid " "$tmp/send_b.out" || fail "B does not ack a send"
echo "imd_second: ok (port $port)"
