#!/usr/bin/env bash
# Faults under load, then the history checker (tests/fault/README.md).
#
#   tests/fault/run.sh [--sqlite] [--faults "KIND..."] [--seed N]
#                      [--spacing S] [--keep DIR] [--clients K] [--groups G]
#
# Starts a local cluster (scripts/cluster: PostgreSQL, or one sqlite file
# with --sqlite) on 127.0.0.1, runs fault_load, injects the faults one
# after the other SPACING seconds apart, restarts what it killed (as a
# supervisor would: a new incarnation), and runs check.py over the history.
# Fault kinds: kill-chatter kill-connector kill-router stop-chatter
# stop-connector pg-restart partition-chatter (pg-restart and
# partition-* need PostgreSQL; partition-* need root, ip netns and tc:
# one Chatter, picked by the seed, runs in its own network namespace
# from the start, and the fault takes its link down), partition-routers
# (that Chatter's Routers cut, both ways, its store reachable: it must
# give its slots up, issue 13) and partition-store (the reverse), and
# kill-connector-stay (kill -9, never restarted: its clients go on to the
# other Connector; later connector faults pick the live one),
# hold-commit-zombie (a test build's hook holds a Chatter's commit in
# flight, the Chatter is paused with it held, then resumed and the commit
# released: the store must refuse it, IM_ESTALE; issue 13),
# term-chatter and term-connector (SIGTERM: a graceful stop, restarted
# spacing/2 after it exited) and restart-rolling (SIGTERM and restart
# every Chatter, Connector and Router one after the other, each once the
# previous is up again: one F line per node). Targets are picked by the
# seed. --max-unavail-ms N also fails the run when a fault's
# unavailability (for a group or a client) is over N ms.
# A false failover (a Router judged dead a node no kill-*, stop-* or
# partition-* or hold-* hit) is a violation too: "false failovers: N" is printed.
# Prints the checker's report; exit status 0 only with zero violations.
# Every wait is bounded (the whole run: 3 + SPACING * faults + 30 s plus
# the cluster's start).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BUILD=${BUILD:-$ROOT/build}
export BUILD
SLOTS=${SLOTS:-64}
export SLOTS
IMNODE=$BUILD/servers/cluster/imnode
LOAD=$BUILD/tests/fault/fault_load
mode=pg
faults="kill-chatter kill-connector kill-router stop-chatter"
faults="$faults stop-connector pg-restart partition-chatter"
faults="$faults partition-routers partition-store restart-rolling"
faults="$faults hold-commit-zombie"
seed=${IM_TEST_SEED:-$(date +%s)}
spacing=8
keep=
clients=12
groups=8
max_unavail=
while [ $# -gt 0 ]; do
	case $1 in
	--sqlite) mode=--sqlite; shift ;;
	--faults) faults=$2; shift 2 ;;
	--seed) seed=$2; shift 2 ;;
	--spacing) spacing=$2; shift 2 ;;
	--keep) keep=$2; shift 2 ;;
	--clients) clients=$2; shift 2 ;;
	--groups) groups=$2; shift 2 ;;
	--max-unavail-ms) max_unavail=$2; shift 2 ;;
	*) echo "usage: $0 [--sqlite] [--faults K...] [--seed N]" \
		"[--spacing S] [--keep DIR]" >&2; exit 2 ;;
	esac
done
drop_fault() {
	faults=$(echo "$faults" | tr ' ' '\n' | grep -v "^$1\$" |
		tr '\n' ' ' || true)
}
partitions="partition-chatter partition-routers partition-store"
if [ "$mode" = --sqlite ]; then
	drop_fault pg-restart
	for k in $partitions; do drop_fault "$k"; done
fi
# The held commit needs the test hooks (meson option test_hooks, not in
# release builds).
if echo " $faults " | grep -q ' hold-commit-zombie ' &&
	! grep -q IM_TEST_HOLD_RELEASE "$IMNODE"; then
	echo "WARNING: hold-commit-zombie needs a build with the test hooks:" \
		"not run" >&2
	drop_fault hold-commit-zombie
fi
netns_node=
if echo " $faults " | grep -q ' partition-'; then
	if [ "$(id -u)" -ne 0 ] || ! command -v ip >/dev/null ||
		! command -v tc >/dev/null; then
		echo "WARNING: partition-* need root, ip and tc (iproute2):" \
			"not run" >&2
		for k in $partitions; do drop_fault "$k"; done
	else
		# From the seed but not from RANDOM: the other faults' targets
		# stay those of the same seed without a partition.
		netns_node=chatter-$((seed % 3 + 1))
	fi
fi
echo "fault run: seed $seed, faults: $faults"
RANDOM=$((seed % 32768))

dir=$(mktemp -d /tmp/im-fault.XXXXXX)
chmod 755 "$dir" # PostgreSQL runs as postgres when we are root
cl=$dir/cluster
loadpid=
netns=
cleanup() {
	[ -n "$loadpid" ] && kill "$loadpid" 2>/dev/null || true
	# a stopped node must be able to die
	if [ -f "$cl/pids" ]; then
		while read -r pid name; do
			kill -CONT "$pid" 2>/dev/null || true
		done <"$cl/pids"
	fi
	if [ -n "$keep" ]; then # the logs and the history, not the database
		mkdir -p "$keep/cluster"
		cp "$dir"/* "$keep"/ 2>/dev/null || true
		cp "$cl"/*.log "$cl"/pids "$keep/cluster/" 2>/dev/null || true
	fi
	[ -f "$cl/netns" ] && netns=$(cat "$cl/netns")
	"$ROOT/scripts/cluster" stop "$cl" >/dev/null 2>&1 || true
	if [ -n "$netns" ]; then # gone already unless stop failed
		ip netns del "${netns%% *}" 2>/dev/null || true
		netns=${netns#* }
		ip link del "${netns%% *}" 2>/dev/null || true
	fi
	rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 1' INT TERM # cleanup once, by EXIT, and stop here

now_ms() { date +%s%3N; }

# Every node inherits them; the Chatters' test hook reads them
# (servers/roles/chatter/test_hold.c): hold-commit-zombie arms it.
export IM_TEST_HOLD_ARM=$dir/hold-arm IM_TEST_HOLD_RELEASE=$dir/hold-release

if ! "$ROOT/scripts/cluster" start "$cl" $([ "$mode" = --sqlite ] &&
	echo --sqlite) ${netns_node:+--netns "$netns_node"} \
	>"$dir/cluster.out" 2>&1; then
	cat "$dir/cluster.out" >&2
	exit 1
fi
store=$(cat "$cl/store")

pid_of() { awk -v n="$1" '$2 == n { p = $1 } END { print p }' "$cl/pids"; }

# restart NAME: a new incarnation with the flags scripts/cluster used
# (the --netns node in its namespace again).
restart() {
	local name=$1 role=${1%-*} listen=- extra=() pre=() st=$store
	case $role in
	router) listen=$(cat "$cl/router-host"):0
		extra=(--port-file "$cl/$name.port") ;;
	connector) listen=127.0.0.1:$(cat "$cl/$name.port")
		extra=(--secret-file "$cl/secret") ;;
	esac
	if [ "$name" = "$netns_node" ]; then
		pre=(ip netns exec "$(cut -d' ' -f1 "$cl/netns")")
		st=$(cat "$cl/store-netns")
	fi
	"${pre[@]}" "$IMNODE" --role "$role" --name "$name" \
		--listen "$listen" --store "$st" --slots "$SLOTS" \
		"${extra[@]}" >>"$cl/$name.log" 2>&1 &
	echo "$! $name" >>"$cl/pids"
}

# pick ROLE COUNT: sets target (no subshell: bash reseeds RANDOM there)
pick() {
	target="$1-$((RANDOM % $2 + 1))"
}

# pick_held: a load group picked by the seed (hold_gid) and the Chatter
# that owns it now (target); the next group if one is between owners.
hold_gid=
pick_held() {
	local gids n i g owner
	gids=($(awk '$1 == "G" {print $2}' "$dir/history"))
	n=${#gids[@]}
	i=$((RANDOM % n))
	for _ in "${gids[@]}"; do
		g=${gids[$i]}
		owner=$("$BUILD/servers/imctl/imctl" --store "$store" \
			--slots "$SLOTS" group "$g" |
			sed -n 's/.* owner \(chatter-[0-9]*\)\/.*/\1/p')
		if [ -n "$owner" ]; then
			hold_gid=$g target=$owner
			return 0
		fi
		i=$(((i + 1) % n))
	done
	target=chatter-1 # none owned: the hold below finds nothing
}

# hold_arm: arm the hook for hold_gid and wait until target holds a
# commit to it (bounded: 5 s; the load sends to every group far more
# often). Before the fault's F line: the fault is the pause that follows,
# and the group's sends before the hold are acked as usual.
hold_ok=
holds() { # NAME GID: how many commits to GID NAME's hook held so far
	grep -c "test hook: holding commit .* group $2 " "$cl/$1.log" || true
}
hold_arm() {
	local i n
	hold_ok=
	n=$(holds "$target" "$hold_gid")
	echo "$hold_gid" >"$dir/hold-arm.tmp"
	mv "$dir/hold-arm.tmp" "$dir/hold-arm"
	for i in $(seq 1 100); do
		[ "$(holds "$target" "$hold_gid")" -gt "$n" ] && break
		sleep 0.05
	done
	if [ "$(holds "$target" "$hold_gid")" -le "$n" ]; then
		rm -f "$dir/hold-arm"
		echo "hold-commit-zombie: $target held no commit of group" \
			"$hold_gid" >>"$dir/hold.fail"
		return 0
	fi
	hold_ok=1
}

# hold_zombie: pause target with its commit held; spacing/2 later resume
# it and release the commit.
hold_zombie() {
	local pid
	[ -n "$hold_ok" ] || return 0
	pid=$(pid_of "$target")
	kill -STOP "$pid"
	(sleep $((spacing / 2)); kill -CONT "$pid"
		touch "$dir/hold-release") &
	held="$held $target:$hold_gid"
}

# hold_report: every commit held was refused (IM_ESTALE) when released
# (the hook logs the outcome of exactly the commit it held).
held=
hold_report() {
	local h name gid n bad=0
	[ -f "$dir/hold.fail" ] && { cat "$dir/hold.fail"; bad=1; }
	for h in $(echo $held | tr ' ' '\n' | sort -u); do
		name=${h%%:*} gid=${h#*:}
		n=$(grep -c "test hook: the held commit of group $gid: " \
			"$cl/$name.log" || true)
		if [ "$n" -gt 0 ] && [ "$n" -eq "$(grep \
			"test hook: the held commit of group $gid: " \
			"$cl/$name.log" | grep -c ': IM_ESTALE')" ]; then
			echo "hold-commit-zombie $name: $n commit(s) held to" \
				"group $gid, refused (IM_ESTALE) when released"
		else
			echo "hold-commit-zombie $name: a commit held to group" \
				"$gid was not refused:"
			grep "test hook: the held commit of group $gid: " \
				"$cl/$name.log" || echo "  (no outcome logged)"
			bad=1
		fi
	done
	return $bad
}

# wait_exit PID: until the process is gone (a graceful stop: bounded by
# its stop_ms, 2 s; 10 s here), 0 if it went
wait_exit() {
	local i
	for i in $(seq 1 100); do
		kill -0 "$1" 2>/dev/null || return 0
		sleep 0.1
	done
	return 1
}

# restart_up NAME: restart it and wait (bounded) until its new
# incarnation says it is up
restart_up() {
	local name=$1 log=$cl/$1.log n i
	n=$(grep -cE ' up$|listening on' "$log" || true)
	restart "$name"
	for i in $(seq 1 100); do
		[ "$(grep -cE ' up$|listening on' "$log" || true)" -gt "$n" ] &&
			return 0
		sleep 0.1
	done
	echo "restart-rolling: $name did not come up" >&2
	return 1
}

# restart-rolling: each node in turn gets SIGTERM (it hands its slots
# over and exits), a supervisor starts it again, and the next goes once
# it is up and took its share back (ROLL_SETTLE seconds). One F line per
# node: check.py reports each one's unavailability.
ROLL_NODES="chatter-1 chatter-2 chatter-3 connector-1 connector-2"
ROLL_NODES="$ROLL_NODES router-1 router-2"
ROLL_SETTLE=1.5
rolling() {
	local name pid
	for name in $ROLL_NODES; do
		case " $down " in *" $name "*) continue ;; esac
		pid=$(pid_of "$name")
		echo "F $(now_ms) restart-rolling $name" >>"$dir/faults"
		echo "  $(date +%T) restart-rolling $name"
		kill -TERM "$pid"
		wait_exit "$pid" ||
			{ echo "restart-rolling: $name did not exit" >&2; return 1; }
		restart_up "$name" || return 1
		sleep "$ROLL_SETTLE"
	done
}

down= # Connectors killed for good (kill-connector-stay)
fault() {
	local kind=$1 t pid target
	case $kind in
	kill-chatter) pick chatter 3 ;;
	kill-connector | kill-connector-stay) pick connector 2 ;;
	kill-router) pick router 2 ;;
	term-chatter) pick chatter 3 ;;
	term-connector) pick connector 2 ;;
	restart-rolling) rolling; return ;;
	stop-chatter) pick chatter 3 ;;
	stop-connector) pick connector 2 ;;
	pg-restart) target=postgresql ;;
	partition-*) target=$netns_node ;;
	hold-commit-zombie) pick_held; hold_arm ;;
	*) echo "unknown fault $kind" >&2; return 1 ;;
	esac
	case " $down " in # never the one that is gone: the other one
	*" $target "*) target=connector-$((3 - ${target#connector-})) ;;
	esac
	t=$(now_ms)
	echo "F $t $kind $target" >>"$dir/faults"
	echo "  $(date +%T) $kind $target"
	case $kind in
	kill-*)
		pid=$(pid_of "$target")
		kill -KILL "$pid"
		if [ "$kind" = kill-connector-stay ]; then
			down="$down $target"
		else
			# a supervisor restarts it once the others took over
			(sleep $((spacing / 2)); restart "$target") &
		fi
		;;
	term-*)
		pid=$(pid_of "$target")
		kill -TERM "$pid"
		# a supervisor starts it again once it has exited
		(wait_exit "$pid" && sleep $((spacing / 2)) &&
			restart "$target") &
		;;
	stop-chatter | stop-connector)
		pid=$(pid_of "$target")
		kill -STOP "$pid"
		# past the heartbeat timeout: the others take its slots
		(sleep $((spacing / 2)); kill -CONT "$pid") &
		;;
	partition-chatter)
		# the host end of its only link: the store and the Routers
		# are gone for it (and it for them) until healed, past the
		# heartbeat timeout
		"$ROOT/scripts/cluster" cut "$cl"
		(sleep $((spacing / 2)); "$ROOT/scripts/cluster" heal "$cl") &
		;;
	partition-routers | partition-store)
		# half a partition: the Routers (it must give its slots up:
		# no Router serves it) or the store (the Routers judge it
		# by its stale heartbeat) gone for it, until healed
		"$ROOT/scripts/cluster" "cut-${kind#partition-}" "$cl"
		(sleep $((spacing / 2)); "$ROOT/scripts/cluster" heal "$cl") &
		;;
	hold-commit-zombie)
		hold_zombie
		;;
	pg-restart)
		eval "$("$ROOT/scripts/pg" env "$cl/pg")"
		(eval "$IM_TEST_PG_RESTART") ||
			echo "pg restart failed" >&2
		;;
	esac
}

nf=$(echo $faults | wc -w)
duration=$((3 + spacing * nf + 3))
# each restart-rolling takes about 3 s a node (stop, start, settle)
nroll=$(echo $faults | tr ' ' '\n' | grep -c '^restart-rolling$' || true)
duration=$((duration + nroll * $(echo $ROLL_NODES | wc -w) * 3))
: >"$dir/faults"
"$LOAD" --ports "$(cat "$cl/connector-1.port"),$(cat "$cl/connector-2.port")" \
	--secret-file "$cl/secret" --store "$store" --out "$dir/history" \
	--clients "$clients" --groups "$groups" --members 3 \
	--duration "$duration" --drain 20 --seed "$seed" \
	--interval-ms 100 >"$dir/load.log" 2>&1 &
loadpid=$!
# wait for the load to start (bounded)
for i in $(seq 1 300); do
	grep -q '^X .* load$' "$dir/history" 2>/dev/null && break
	kill -0 "$loadpid" 2>/dev/null || break
	sleep 0.1
done
if ! grep -q '^X .* load$' "$dir/history" 2>/dev/null; then
	cat "$dir/load.log" >&2
	exit 1
fi
sleep 3
for k in $faults; do
	fault "$k"
	sleep "$spacing"
done
rc=0
wait "$loadpid" || rc=$?
loadpid=
cat "$dir/load.log"
[ $rc -eq 0 ] || { echo "fault_load failed ($rc)" >&2; tail -n 20 "$cl"/*.log >&2; exit 1; }
set +e
python3 "$ROOT/tests/fault/check.py" --json "$dir/history" "$dir/faults" \
	>"$dir/check.out"
rc=$?
set -e
cat "$dir/check.out"
hold_report || rc=1
# False failovers (issue 13): a Router judged a node dead ("X/INC is
# dead") that no crash-like fault hit (kill-*, stop-*, partition-*): a
# live node lost its slots (a graceful stop's node counts too: it hands
# its slots over, it must not need a failover). Each owner counts once
# however many Routers and ticks logged it. A violation.
false_fo=$(awk '$1 == "F" && $3 ~ /^(kill|stop|partition|hold)-/ {print $4}' \
	"$dir/faults" | sort -u)
false_list=$(cat "$cl"/router-*.log 2>/dev/null |
	sed -n 's/^router: \([^ /]*\)\(\/[^ ]*\) is dead .*/\1\2/p' |
	sort -u | while read -r owner; do
		echo "$false_fo" | grep -qx "${owner%%/*}" || echo "$owner"
	done)
nfalse=$(echo "$false_list" | grep -c . || true)
echo "false failovers: $nfalse${false_list:+ ($(echo $false_list))}"
[ "$nfalse" -eq 0 ] || rc=1
if [ $rc -eq 0 ] && [ -n "$max_unavail" ]; then
	# every fault's window under the bound, for groups and clients
	python3 - "$max_unavail" "$dir/check.out" <<'PY' || rc=1
import json, sys
bound = int(sys.argv[1])
for line in open(sys.argv[2]):
    if line.startswith("RESULT "):
        over = [f for f in json.loads(line[7:])["faults"]
                if max(f["unavail_ms"], f["client_unavail_ms"]) > bound]
        for f in over:
            print("OVER BOUND: fault %s %s: %d ms (group), %d ms (client)"
                  " > %d ms" % (f["kind"], f["target"], f["unavail_ms"],
                                f["client_unavail_ms"], bound))
        sys.exit(1 if over else 0)
sys.exit(1)
PY
fi
if [ -n "$netns_node" ]; then
	# What the cut-off Chatter did (tests/fault/README.md): its commits
	# that the store fenced (IM_ESTALE), those that failed otherwise, and
	# its comebacks as a new incarnation (after any silence: a SIGSTOP
	# of it counts too).
	log=$cl/$netns_node.log
	echo "partitioned $netns_node:" \
		"$(grep -c 'commit of .* failed: IM_ESTALE' "$log" || true)" \
		"commits fenced (IM_ESTALE)," \
		"$(grep 'commit of .* failed' "$log" | grep -vc IM_ESTALE ||
			true) failed otherwise," \
		"$(grep -c 'silent past the heartbeat timeout' "$log" ||
			true) comebacks as a new incarnation," \
		"$(grep -c 'no Router serves us' "$log" || true) give-ups" \
		"(no Router served it: heartbeat stopped)"
fi
# Membership changes and read pointers the store refused as stale over
# every node (issue 13: a zombie owner writes none of them).
echo "fenced owner writes (all nodes):" \
	"$(cat "$cl"/*.log | grep -c 'membership of .* fenced' || true)" \
	"membership changes," \
	"$(cat "$cl"/*.log | grep -c 'MarkRead of .* fenced' || true)" \
	"MarkReads"
if [ $rc -ne 0 ] && [ -z "$keep" ]; then
	tail -n 15 "$cl"/*.log >&2 || true
fi
exit $rc
