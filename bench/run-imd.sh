#!/usr/bin/env bash
# Run one im-bench scenario against a fresh imd: temp database and secret,
# imd started on a free port, the scenario run, imd stopped, the table
# printed (and JSON written where --json says, or $OUT/SCENARIO.json).
#
# usage: bench/run-imd.sh SCENARIO [im-bench flags...]
#   SCENARIO  chat | idle | biggroup | login | reconnect
#   chat without --rate and --inflight runs twice: closed loop (the maximum),
#   then open loop at 50% of it (latency at half load), each on a fresh imd.
# env: BUILD (build dir, default build), IMD / IMBENCH (binaries),
#      IMD_ARGS (extra imd flags, e.g. "--sync normal"), OUT (result dir),
#      KEEP=1 keeps the temp dir (db, imd log).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
. "$root/bench/lib/run-scenario.sh"
build=${BUILD:-$root/build}
imd=${IMD:-$build/servers/imd}
[ -x "$imd" ] || imd=$build/servers/imd/imd
bench=${IMBENCH:-$build/bench/im-bench}
scenario=${1:?usage: bench/run-imd.sh SCENARIO [im-bench flags]}
shift
out=${OUT:-}
for x in "$imd" "$bench"; do
	[ -x "$x" ] || { echo "run-imd: $x not built" >&2; exit 2; }
done

imd_pid=
tmp=
stop_imd() {
	if [ -n "$imd_pid" ] && kill -0 "$imd_pid" 2>/dev/null; then
		kill -TERM "$imd_pid" 2>/dev/null || true
		for _ in $(seq 100); do
			kill -0 "$imd_pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$imd_pid" 2>/dev/null || true
		wait "$imd_pid" 2>/dev/null || true
	fi
	imd_pid=
	if [ -n "$tmp" ] && [ "${KEEP:-0}" != 1 ]; then
		rm -rf "$tmp"
	elif [ -n "$tmp" ]; then
		echo "run-imd: kept $tmp" >&2
	fi
	tmp=
}
trap stop_imd EXIT

start_imd() {
	tmp=$(mktemp -d "${TMPDIR:-/tmp}/run-imd.XXXXXX")
	head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' > "$tmp/secret"
	# imd holds at most 20,000 descriptors (ulimit -Hn): keep a margin.
	# shellcheck disable=SC2086
	"$imd" --listen 127.0.0.1 --port 0 --port_file "$tmp/port" \
		--db "$tmp/imd.db" --secret_file "$tmp/secret" \
		--log_level warn --max_conns 19900 ${IMD_ARGS:-} \
		> "$tmp/imd.log" 2>&1 &
	imd_pid=$!
	# imd claims every slot at start (2 x --slots CAS writes): seconds.
	for _ in $(seq 1200); do
		[ -s "$tmp/port" ] && break
		kill -0 "$imd_pid" 2>/dev/null || break
		sleep 0.1
	done
	if [ ! -s "$tmp/port" ]; then
		echo "run-imd: imd did not start:" >&2
		cat "$tmp/imd.log" >&2
		exit 1
	fi
	port=$(cat "$tmp/port")
}

# run_once SCENARIO JSON FLAGS...: one scenario on a fresh imd.
run_once() {
	local sc=$1 json=$2 rc=0
	shift 2
	start_imd
	"$bench" "$sc" --target "127.0.0.1:$port" --secret-file "$tmp/secret" \
		--server-pid "$imd_pid" --baseline-dir "$tmp" \
		--json "$json" "$@" || rc=$?
	if ! kill -0 "$imd_pid" 2>/dev/null; then
		local st=0
		wait "$imd_pid" 2>/dev/null || st=$?
		imd_pid=
		if [ "$st" -gt 128 ]; then
			echo "run-imd: imd died during the run: signal" \
				"$((st - 128)) ($(kill -l $((st - 128))))" >&2
		else
			echo "run-imd: imd exited during the run: status $st" >&2
		fi
		echo "run-imd: imd log:" >&2
		tail -20 "$tmp/imd.log" >&2
		rc=1
	elif grep -q . "$tmp/imd.log"; then
		echo "run-imd: imd log (warnings):" >&2
		sort "$tmp/imd.log" | uniq -c | sort -rn | head -5 >&2
	fi
	stop_imd
	return $rc
}

run_scenario run-imd "$scenario" "$@"
