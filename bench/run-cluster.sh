#!/usr/bin/env bash
# Run one im-bench scenario against a fresh local cluster on PostgreSQL:
# scripts/cluster starts PostgreSQL (scripts/pg), 2 Routers, CHATTERS
# Chatters and CONNECTORS Connectors (imnode) on 127.0.0.1; im-bench
# connects each user to a Connector by uid and follows the Redirect to the
# one that owns it; the tables are printed; everything is stopped.
#
# usage: bench/run-cluster.sh SCENARIO [im-bench flags...]
#   SCENARIO  chat | idle | biggroup | login | reconnect
#   chat without --rate and --inflight runs twice: closed loop (the maximum),
#   then open loop at 50% of it, each on a fresh cluster (as run-imd.sh).
# env: BUILD (build dir, default build), IMBENCH (binary),
#      CONNECTORS (default 2), CHATTERS (default 3), SLOTS (default 1024),
#      CONNECTOR_ARGS (imnode flags for the Connectors, default
#        "--max-conns 19900 --log-level warn": a process holds at most
#        20,000 fds here), CHATTER_ARGS (default "--log-level warn"),
#      NODE_ARGS (every node, default "--dead-after-ms 10000"),
#      OUT (result dir), KEEP=1 (keep the cluster's logs).
# The baseline is PostgreSQL's own multi-row INSERT of the same rows on the
# cluster's server (--baseline-pg). RSS per connection is summed over the
# Connectors only (--server-pid); Routers and Chatters are sampled too
# (--other-pid). Every wait is bounded; a trap stops the cluster.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib/run-scenario.sh"
export BUILD=${BUILD:-$root/build}
bench=${IMBENCH:-$BUILD/bench/im-bench}
export CONNECTORS=${CONNECTORS:-2} CHATTERS=${CHATTERS:-3}
export SLOTS=${SLOTS:-1024}
export CONNECTOR_ARGS=${CONNECTOR_ARGS:---max-conns 19900 --log-level warn}
export CHATTER_ARGS=${CHATTER_ARGS:---log-level warn}
# A node silent for 1.5 s (the default) is taken for dead: on this shared
# 2-core machine a Chatter working through a burst of CreateGroups misses
# that and the cluster fails over in the middle of a benchmark. 10 s.
export NODE_ARGS=${NODE_ARGS:---dead-after-ms 10000}
scenario=${1:?usage: bench/run-cluster.sh SCENARIO [im-bench flags]}
shift
out=${OUT:-}
for x in "$bench" "$BUILD/servers/cluster/imnode" \
	"$BUILD/servers/imctl/imctl"; do
	[ -x "$x" ] || { echo "run-cluster: $x not built" >&2; exit 2; }
done
case $CONNECTORS in '' | *[!0-9]*) echo "run-cluster: bad CONNECTORS" >&2
	exit 2 ;; esac
[ "$CONNECTORS" -ge 1 ] && [ "$CONNECTORS" -le 16 ] ||
	{ echo "run-cluster: CONNECTORS must be 1..16" >&2; exit 2; }

dir=
stop_cluster() {
	if [ -n "$dir" ]; then
		if [ "${KEEP:-0}" = 1 ]; then
			mkdir -p "$dir.logs"
			cp "$dir"/*.log "$dir.logs/" 2>/dev/null || true
			echo "run-cluster: logs kept in $dir.logs" >&2
		fi
		# Bounded: TERM, 5 s, KILL; then PostgreSQL stops.
		timeout 120 "$root/scripts/cluster" stop "$dir" >/dev/null ||
			echo "run-cluster: stopping $dir failed" >&2
	fi
	dir=
}
trap stop_cluster EXIT
trap 'exit 130' INT TERM

start_cluster() {
	# scripts/pg needs a short path (unix socket in it).
	dir=$(mktemp -u /tmp/imcl.XXXXXX)
	if ! timeout 300 "$root/scripts/cluster" start "$dir" \
		>"${dir}.start.log" 2>&1; then
		cat "${dir}.start.log" >&2
		rm -f "${dir}.start.log"
		echo "run-cluster: the cluster did not start" >&2
		exit 1
	fi
	rm -f "${dir}.start.log"
	targets=
	for i in $(seq 1 "$CONNECTORS"); do
		targets=${targets:+$targets,}127.0.0.1:$(cat "$dir/connector-$i.port")
	done
	cpids=
	opids=
	while read -r pid name; do
		case $name in
		connector-*) cpids=${cpids:+$cpids,}$pid ;;
		*) opids=${opids:+$opids,}$pid ;;
		esac
	done <"$dir/pids"
	store=$(cat "$dir/store")
}

# Every node must still be running after the run.
check_nodes() {
	local pid name rc=0
	while read -r pid name; do
		if ! kill -0 "$pid" 2>/dev/null; then
			echo "run-cluster: $name (pid $pid) died; its log:" >&2
			tail -20 "$dir/$name.log" >&2
			rc=1
		fi
	done <"$dir/pids"
	# The start-up lines ("... up", "listening on") are not news.
	if cat "$dir"/*.log | grep -Evq ' up$|listening on'; then
		echo "run-cluster: node logs (warnings, most frequent):" >&2
		cat "$dir"/*.log | grep -Ev ' up$|listening on' |
			sed 's/^[^]]*] //' | sort | uniq -c | sort -rn |
			head -5 >&2
	fi
	return $rc
}

# run_once SCENARIO JSON FLAGS...: one scenario on a fresh cluster.
run_once() {
	local sc=$1 json=$2 rc=0 extra=()
	shift 2
	# A Router answers ERR_UNAVAILABLE to a Forward its Chatter has not
	# acked in 5 s, and a Chatter creates ~50 groups/s on PostgreSQL
	# here: im-bench's default of 256 CreateGroups in flight per worker
	# queues past that. 32 keeps the queue under a second.
	has_flag --setup-window "$@" || extra=(--setup-window 32)
	start_cluster
	echo "run-cluster: $CONNECTORS Connectors ($targets), store $store"
	"$bench" "$sc" --target "$targets" --secret-file "$dir/secret" \
		--server-pid "$cpids" --other-pid "$opids" \
		--baseline-pg "$store" --json "$json" "${extra[@]}" "$@" ||
		rc=$?
	check_nodes || rc=1
	stop_cluster
	return $rc
}

run_scenario run-cluster "$scenario" "$@"
