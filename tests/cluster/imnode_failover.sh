#!/bin/sh
# Who takes a killed Chatter's group slots, with real imnode processes on
# one sqlite store (short periods, every wait bounded):
#  1. with a Router up, the Router: it judges chatter-2 dead (silent on its
#     link and stale in the store), moves its slots to chatter-1 by CAS and
#     tells it; chatter-1 claims nothing itself after its first claim;
#  2. with no Router at all, chatter-1 itself (the fallback).
set -eu
IMNODE=$1
IMCTL=$2
. "$(dirname "$0")/lib.sh"
imnode_scratch fo
P="--slots 16 --heartbeat-ms 100 --refresh-ms 100 --balance-ms 100"
P="$P --dead-after-ms 600 --log-level info"

start() { # role name store log [args]
	role=$1 name=$2 st=$3 log=$4
	shift 4
	# shellcheck disable=SC2086
	"$IMNODE" --role "$role" --name "$name" --store "$st" $P "$@" \
		>"$log" 2>&1 &
	pids="$pids $!"
	last=$!
}

# wait_for CMD...: up to 10 s for CMD to succeed
wait_for() {
	i=0
	until "$@"; do
		i=$((i + 1))
		[ $i -lt 200 ] || return 1
		sleep 0.05
	done
}

group_slots_of() { # store owner-prefix
	"$IMCTL" --store "$1" --slots 16 slots |
		awk -v o="$2" '$1 == "group" && index($2, o) == 1 {print $3}'
}
owns() { [ "$(group_slots_of "$1" "$2")" = "$3" ]; }

run() { # with_router(yes|no) store
	st=$2
	d=$dir/$1
	mkdir -p "$d"
	if [ "$1" = yes ]; then
		start router router-1 "$st" "$d/router.log" \
			--listen 127.0.0.1:0 --port-file "$d/router.port"
		wait_for test -s "$d/router.port" || {
			cat "$d/router.log"; echo "router did not start"; exit 1; }
	fi
	start chatter chatter-1 "$st" "$d/c1.log" --listen - --expect 2
	start chatter chatter-2 "$st" "$d/c2.log" --listen - --expect 2
	c2=$last
	wait_for owns "$st" chatter-1/ 8 || {
		"$IMCTL" --store "$st" --slots 16 slots
		cat "$d/c1.log" "$d/c2.log"; echo "no even split"; exit 1; }
	wait_for owns "$st" chatter-2/ 8
	if [ "$1" = yes ]; then
		wait_for grep -q "router .* connected" "$d/c1.log"
	fi
	kill -9 "$c2"
	wait_for owns "$st" chatter-1/ 16 || {
		"$IMCTL" --store "$st" --slots 16 slots
		cat "$d"/*.log; echo "chatter-2's slots not taken ($1)"
		exit 1; }
}

run yes "$dir/a.db"
grep -q "chatter-2/00000001 is dead" "$dir/yes/router.log" || {
	cat "$dir/yes/router.log"; echo "the router did not judge"; exit 1; }
grep -q "moved 8 slots off dead nodes" "$dir/yes/router.log"
# chatter-1 claimed its first share only; chatter-2's came from the Router
if grep -q "claimed .*(now 16)" "$dir/yes/c1.log"; then
	cat "$dir/yes/c1.log"; echo "chatter-1 claimed itself"; exit 1
fi
for p in $pids; do kill -9 "$p" 2>/dev/null || true; done
pids=

run no "$dir/b.db"
grep -q "claimed .*(now 16)" "$dir/no/c1.log" || {
	cat "$dir/no/c1.log"; echo "no fallback claim"; exit 1; }
echo "ok"
