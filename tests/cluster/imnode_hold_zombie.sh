#!/bin/sh
# Issue 13: the zombie's refused write, exercised deterministically instead
# of by luck of timing. Real imnode processes (a Router, a Connector, two
# Chatters) on one store (sqlite file, or PostgreSQL with "pg"), built with
# the test hooks (servers/roles/chatter/test_hold.c):
#  1. a client sends to a group; the owning Chatter's commit of it is held
#     in flight by the hook (IM_TEST_HOLD_ARM names the group);
#  2. that Chatter is paused (SIGSTOP) while its commit is held; the Router
#     judges it dead and moves its slots to the other Chatter (takeover,
#     seen in the store through imctl);
#  3. the client's send, answered ERR_UNAVAILABLE by the Router, is retried
#     with the same dedup id and acked by the new owner, while the zombie
#     is still paused;
#  4. the zombie is resumed and its commit released: the store refuses it
#     (IM_ESTALE, the zombie's log says so).
# Then: the client got exactly one ack, with the new owner's seq (not the
# seq the zombie had given the message), no error; the group holds the
# message exactly once, at the acked seq. Every wait is bounded.
# Usage: imnode_hold_zombie.sh IMNODE IMCTL IMD IM_CLI [sqlite|pg [FLAG...]]
#   pg: the store is a fresh schema of IM_TEST_PG (scripts/test-pg);
#   FLAGs go to the Chatters (--commit_thread false: held on the loop).
# How long the client waits: with the commit on the loop the Router's
# Forward is still unanswered when the Chatter dies, so the Router answers
# it ERR_UNAVAILABLE at the move and the retry is acked about 1 s after the
# pause; with the commit thread the Chatter acked the Forward when it
# handed the batch to the thread, so the client retries at its own send
# timeout (5 s).
set -eu
IMNODE=$1
IMCTL=$2
IMD=$3
CLI=$4
MODE=${5:-sqlite}
[ $# -gt 5 ] && shift 5 || shift $#
. "$(dirname "$0")/lib.sh"
imnode_scratch hold
psql_() {
	PGOPTIONS="-c client_min_messages=warning" "$IM_TEST_PG_BIN/psql" \
		"$IM_TEST_PG" -v ON_ERROR_STOP=1 -qAtX "$@"
}
case $MODE in
sqlite)
	store=$dir/s.db
	;;
pg)
	if [ -z "${IM_TEST_PG:-}" ] || [ ! -x "${IM_TEST_PG_BIN:-}/psql" ]
	then
		echo "FAIL: no IM_TEST_PG/IM_TEST_PG_BIN (run it through" \
			"scripts/test-pg)"
		exit 1
	fi
	schema=imhold_$$
	psql_ -c "CREATE SCHEMA $schema"
	trap 'imnode_cleanup; psql_ -c "DROP SCHEMA $schema CASCADE" || true' \
		EXIT
	store="$IM_TEST_PG options='-csearch_path=$schema'"
	;;
*)
	echo "usage: $0 IMNODE IMCTL IMD IM_CLI [sqlite|pg [FLAG...]]"
	exit 2
	;;
esac
fail() { imnode_fail "$@"; }
# Every node inherits them; the Chatters' hook reads them.
IM_TEST_HOLD_ARM=$dir/arm
IM_TEST_HOLD_RELEASE=$dir/release
export IM_TEST_HOLD_ARM IM_TEST_HOLD_RELEASE
P="--slots 16 --heartbeat-ms 100 --refresh-ms 100 --balance-ms 100"
P="$P --dead-after-ms 800 --log-level info"

# wait_for N CMD...: up to N/20 s for CMD to succeed
wait_for() {
	n=$1
	shift
	i=0
	until "$@"; do
		i=$((i + 1))
		[ $i -lt "$n" ] || return 1
		sleep 0.05
	done
}
node() { # NAME ROLE LISTEN [flags]
	name=$1 role=$2 listen=$3
	shift 3
	# shellcheck disable=SC2086
	"$IMNODE" --role "$role" --name "$name" --listen "$listen" \
		--store "$store" $P "$@" >"$dir/$name.log" 2>&1 &
	pids="$pids $!"
	echo "$! $name" >>"$dir/pids"
}
pid_of() { awk -v n="$1" '$2 == n {print $1}' "$dir/pids"; }
group_owner() { # GID: the owner's name, without its incarnation
	"$IMCTL" --store "$store" --slots 16 group "$1" |
		sed -n 's/.* owner \([^/ ]*\).*/\1/p'
}
owned_by() { [ "$(group_owner "$1")" = "$2" ]; }
slots_ok() {
	[ "$("$IMCTL" --store "$store" --slots 16 status 2>/dev/null |
		grep -c 'slots: 16/16')" = 2 ]
}

head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$dir/secret"
# The Router first: it makes the schema before the others open it.
node router-1 router 127.0.0.1:0 --port-file "$dir/router.port"
wait_for 200 test -s "$dir/router.port" || fail "router did not start"
port=$(python3 -c 'import socket; s=socket.socket()
s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
node connector-1 connector "127.0.0.1:$port" --port-file "$dir/cn.port" \
	--secret-file "$dir/secret" --expect 1
node chatter-1 chatter - --expect 2 "$@"
node chatter-2 chatter - --expect 2 "$@"
wait_for 200 test -s "$dir/cn.port" || fail "connector did not start"
wait_for 200 slots_ok || fail "the slots were not all taken"
wait_for 200 grep -q "router .* connected" "$dir/chatter-1.log" ||
	fail "chatter-1 has no Router"
wait_for 200 grep -q "router .* connected" "$dir/chatter-2.log" ||
	fail "chatter-2 has no Router"

tok=$("$IMD" token 1 --secret_file "$dir/secret")
printf '/create zombie\n' | timeout 30 "$CLI" --port "$port" --token "$tok" \
	--linger-ms 3000 >"$dir/create.out" 2>&1 || fail "im-cli create"
gid=$(awk '/^created /{print $2}' "$dir/create.out")
[ -n "$gid" ] || fail "the group was not created"
zombie=$(group_owner "$gid")
case $zombie in
chatter-1) heir=chatter-2 ;;
chatter-2) heir=chatter-1 ;;
*) fail "group $gid is not a Chatter's: '$zombie'" ;;
esac
zpid=$(pid_of "$zombie")
echo "group $gid on $zombie (pid $zpid)"

# 1. Armed by a whole file (the hook reads a line only once complete).
echo "$gid" >"$dir/arm.tmp"
mv "$dir/arm.tmp" "$dir/arm"
text="held-by-the-zombie-$$"
printf '/send %s %s\n/wait\n' "$gid" "$text" |
	timeout 60 "$CLI" --port "$port" --token "$tok" --linger-ms 40000 \
		>"$dir/send.out" 2>&1 &
cli=$!
pids="$pids $cli"
wait_for 200 grep -q "test hook: holding commit .* group $gid " \
	"$dir/$zombie.log" ||
	fail "the commit was not held (a build without the test hooks?)"
held_seq=$(sed -n "s/.*test hook: holding commit .* group $gid seq \([0-9]*\),.*/\1/p" \
	"$dir/$zombie.log")
[ -n "$held_seq" ] || fail "no seq in the hold line"
[ ! -e "$dir/arm" ] || fail "the hook did not take the arm file"

# 2. Paused with its commit in flight; the Router moves its slots.
kill -STOP "$zpid"
t0=$(date +%s%N)
wait_for 200 owned_by "$gid" "$heir" ||
	fail "group $gid was not taken over by $heir"
ms=$((($(date +%s%N) - t0) / 1000000))
echo "group $gid taken over by $heir ${ms} ms after the pause"
grep -q "$zombie/.* is dead" "$dir/router-1.log" ||
	fail "the Router did not judge $zombie dead"
# 3. The retried send is acked by the new owner, the zombie still paused.
wait_for 400 grep -q "^ack $gid " "$dir/send.out" ||
	fail "the send was not acked while $zombie was paused"
echo "acked $((($(date +%s%N) - t0) / 1000000)) ms after the pause"
kill -0 "$zpid" || fail "$zombie is gone"
grep -q "test hook: released" "$dir/$zombie.log" &&
	fail "the held commit went on while $zombie was paused"

# 4. Resumed and released: the store refuses the zombie's write.
kill -CONT "$zpid"
touch "$dir/release"
wait_for 200 grep -q "test hook: released the held commit of group $gid" \
	"$dir/$zombie.log" || fail "the held commit was not released"
# The hook logs the outcome of exactly the commit it held.
wait_for 200 grep -q "test hook: the held commit of group $gid: " \
	"$dir/$zombie.log" || fail "the held commit did not finish"
grep -q "test hook: the held commit of group $gid: IM_ESTALE" \
	"$dir/$zombie.log" || fail "the held commit was not refused IM_ESTALE"
grep -q "chatter: commit of 1 messages failed: IM_ESTALE" \
	"$dir/$zombie.log" || fail "the Chatter did not answer it as fenced"
rc=0
wait "$cli" || rc=$?
[ "$rc" -eq 0 ] || fail "im-cli send exited $rc"

# Exactly one ack, no error, and not the zombie's seq.
[ "$(grep -c "^ack $gid " "$dir/send.out")" -eq 1 ] ||
	fail "not exactly one ack"
grep -q "^error" "$dir/send.out" && fail "the client saw an error"
acked_seq=$(awk -v g="$gid" '$1 == "ack" && $2 == g {print $3}' \
	"$dir/send.out")
grep -q "^ack $gid $acked_seq dup" "$dir/send.out" &&
	fail "acked as a duplicate: the zombie's write was stored"
[ "$acked_seq" != "$held_seq" ] ||
	fail "acked with the zombie's seq $held_seq"
# The group holds it once, at the acked seq (read back from the store).
printf '/open %s\n' "$gid" | timeout 30 "$CLI" --port "$port" \
	--token "$tok" --linger-ms 1000 >"$dir/open.out" 2>&1 ||
	fail "im-cli open"
n=$(grep -c "^history $gid .* $text\$" "$dir/open.out" || true)
[ "$n" -eq 1 ] || fail "the message is stored $n times"
grep -q "^history $gid $acked_seq .* $text\$" "$dir/open.out" ||
	fail "the stored message is not at the acked seq $acked_seq"
echo "ok: held seq $held_seq refused (IM_ESTALE), acked and stored once" \
	"at seq $acked_seq by $heir"
