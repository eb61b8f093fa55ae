#!/bin/sh
# A Connector node whose client port is a live node's must fail at its
# bind, before it registers or takes a slot: it exits non-zero saying
# why, never appears in the store (where the live Connector would hand it
# slots), and the live Connector keeps every user slot. Every wait bounded.
set -eu
IMNODE=$1
IMCTL=$2
. "$(dirname "$0")/lib.sh"
imnode_scratch port
st=$dir/s.db
printf 'imnode-port-test-secret-0123456789\n' >"$dir/secret"
P="--store $st --slots 16 --heartbeat-ms 100 --refresh-ms 100"
P="$P --balance-ms 100 --dead-after-ms 600 --log-level info"
fail() {
	"$IMCTL" --store "$st" --slots 16 nodes || true
	"$IMCTL" --store "$st" --slots 16 slots || true
	cat "$dir"/*.log
	echo "FAIL: $*"
	exit 1
}
wait_for() {
	i=0
	until "$@"; do
		i=$((i + 1))
		[ $i -lt 200 ] || return 1
		sleep 0.05
	done
}
user_slots_of() {
	"$IMCTL" --store "$st" --slots 16 slots |
		awk -v o="$1" '$1 == "user" && index($2, o) == 1 {print $3}'
}
owns16() { [ "$(user_slots_of c1/)" = 16 ]; }

# shellcheck disable=SC2086
"$IMNODE" --role router --name router-1 --listen 127.0.0.1:0 $P \
	--port-file "$dir/router.port" >"$dir/router.log" 2>&1 &
pids="$pids $!"
wait_for test -s "$dir/router.port" || fail "router did not start"
# A free port for c1: bind one, let it go.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
# shellcheck disable=SC2086
"$IMNODE" --role connector --name c1 --listen "127.0.0.1:$port" $P \
	--secret-file "$dir/secret" --port-file "$dir/c1.port" \
	>"$dir/c1.log" 2>&1 &
pids="$pids $!"
wait_for test -s "$dir/c1.port" || fail "c1 did not start"
wait_for owns16 || fail "c1 did not take the 16 user slots"
inc=$("$IMCTL" --store "$st" nodes | awk '$1 == "c1" {print}')

for name in c2 c1; do
	rc=0
	# shellcheck disable=SC2086
	timeout 30 "$IMNODE" --role connector --name $name \
		--listen "127.0.0.1:$port" $P --secret-file "$dir/secret" \
		>"$dir/second-$name.log" 2>&1 || rc=$?
	[ "$rc" -ne 0 ] || fail "a second $name on c1's port exited 0"
	[ "$rc" -ne 124 ] || fail "a second $name on c1's port did not exit"
	if "$IMCTL" --store "$st" nodes | grep -q '^c2 '; then
		fail "the second $name registered in the store"
	fi
	# Long enough for c1 to balance several times against a newcomer.
	sleep 1
	owns16 || fail "c1 lost user slots to the second $name"
	grep -q "Address already in use" "$dir/second-$name.log" ||
		fail "the second $name did not say why"
done
# The same-name try did not make c1 a new incarnation either.
[ "$("$IMCTL" --store "$st" nodes | awk '$1 == "c1" {print $4}')" = \
	"$(echo "$inc" | awk '{print $4}')" ] || fail "c1's incarnation moved"
if grep -q "silent past the heartbeat timeout" "$dir/c1.log"; then
	fail "c1 was fenced off by the second c1"
fi
echo "ok"
