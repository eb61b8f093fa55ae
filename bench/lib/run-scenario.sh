# Shared tail of bench/run-imd.sh and bench/run-cluster.sh: source it,
# define run_once SCENARIO JSON [im-bench flags...] (start the servers, run
# im-bench once, stop them; status 0 when clean), then call
#   run_scenario PROG SCENARIO [im-bench flags...]
# `chat` without --rate/--inflight runs twice: at the maximum, then open
# loop at half of what it measured (latency at 50 % load). Results go to
# $out (or a fresh directory). Exits with the runs' status.

has_flag() {
	local f=$1 a
	shift
	for a in "$@"; do
		case "$a" in "$f" | "$f="*) return 0 ;; esac
	done
	return 1
}

run_scenario() {
	local prog=$1 scenario=$2 resdir json rc=0 max half
	shift 2
	resdir=${out:-$(mktemp -d "${TMPDIR:-/tmp}/imbench-out.XXXXXX")}
	mkdir -p "$resdir"
	json=$resdir/$scenario.json
	if has_flag --json "$@"; then
		json=/dev/null # the caller's --json comes later and wins
	fi
	if [ "$scenario" = chat ] && ! has_flag --rate "$@" &&
		! has_flag --inflight "$@"; then
		if has_flag --json "$@"; then
			echo "$prog: chat runs twice; use OUT=DIR, not --json" >&2
			exit 2
		fi
		run_once chat "$resdir/chat-max.json" "$@" || rc=$?
		max=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sends_acked_per_s"])' "$resdir/chat-max.json")
		half=$(python3 -c 'import sys; print(max(1, round(float(sys.argv[1]) / 2)))' "$max")
		echo
		echo "$prog: chat at 50% of the maximum ($max/s): --rate $half"
		run_once chat "$resdir/chat-half.json" --rate "$half" "$@" ||
			rc=$?
		echo "$prog: results in $resdir"
		exit $rc
	fi
	run_once "$scenario" "$json" "$@" || rc=$?
	[ -z "$out" ] || echo "$prog: results in $resdir"
	exit $rc
}
