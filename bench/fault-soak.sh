#!/usr/bin/env bash
# Fault soak: N seeded randomized fault scenarios (tests/fault/run.sh on a
# local cluster with PostgreSQL), then a results table per fault kind:
# runs, violations, unavailability p50/p90/max (ms), and the false
# failovers of every run (a Router judged dead a node no fault hit;
# run.sh prints them and counts them as violations).
#
#   bench/fault-soak.sh [N] [SEED] [FAULTS_PER_RUN]   (default 20 1 3)
#   bench/fault-soak.sh --table RUNS_FILE              (the table again)
#
# Scenario i uses seed SEED+i: it picks FAULTS_PER_RUN fault kinds (with
# repetition, in order) from kill-chatter kill-connector kill-router
# stop-chatter stop-connector pg-restart partition-chatter restart-rolling
# (KINDS="..." draws from those instead), and the run picks their targets from the
# same seed: `tests/fault/run.sh --seed S --faults "..." --spacing 6`
# replays one. partition-chatter needs root (ip netns).
# Results go to bench/fault-soak.out/ (one check report per run, and
# table.md). BUILD selects the build directory (default build).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)

# The results table of a runs.txt (also: bench/fault-soak.sh --table FILE).
table() {
	python3 - "$1" <<'EOF'
import json, sys
rows = {}
bad_runs = 0
n = 0
false_fo = 0
for line in open(sys.argv[1]):
    s, rc, rest = line.split(" ", 2)
    ff = 0
    if not rest.startswith("{"):  # "FALSE_FAILOVERS JSON" since issue 13
        ff, rest = rest.split(" ", 1)
        ff = max(int(ff), 0)
        false_fo += ff
    r = json.loads(rest)
    n += 1
    v = r["violations"] + ff  # a false failover is a violation
    if v != 0:
        bad_runs += 1
    for f in r["faults"]:
        x = rows.setdefault(f["kind"], {"runs": 0, "viol": 0, "u": [],
                                        "c": []})
        x["runs"] += 1
        x["viol"] += 1 if v != 0 else 0
        x["u"].append(f["unavail_ms"])
        x["c"].append(f.get("client_unavail_ms", 0))
def pct(u, q):
    u = sorted(u)
    return u[min(len(u) - 1, int(len(u) * q))] if u else 0
print("%d scenarios, %d with violations (a failed run counts as one), "
      "%d false failovers" % (n, bad_runs, false_fo))
print()
print("| fault | runs | runs with violations | group unavailable p50 / p90"
      " / max (ms) | client waited p50 / p90 / max (ms) |")
print("|---|---:|---:|---:|---:|")
for k in sorted(rows):
    x = rows[k]
    print("| %s | %d | %d | %d / %d / %d | %d / %d / %d |"
          % (k, x["runs"], x["viol"], pct(x["u"], 0.5), pct(x["u"], 0.9),
             max(x["u"]), pct(x["c"], 0.5), pct(x["c"], 0.9),
             max(x["c"])))
EOF
}
if [ "${1:-}" = "--table" ]; then
	table "$2"
	exit 0
fi
n=${1:-20}
seed0=${2:-1}
per=${3:-3}
out=${OUT:-$ROOT/bench/fault-soak.out}
mkdir -p "$out"
# shellcheck disable=SC2206 # KINDS is a list of words
kinds=(${KINDS:-kill-chatter kill-connector kill-router stop-chatter
	stop-connector pg-restart partition-chatter restart-rolling})
: >"$out/runs.txt"
for i in $(seq 1 "$n"); do
	s=$((seed0 + i))
	RANDOM=$((s % 32768))
	f=""
	for j in $(seq 1 "$per"); do
		f="$f ${kinds[$((RANDOM % ${#kinds[@]}))]}"
	done
	echo "== run $i/$n seed $s:$f"
	rc=0
	timeout 400 "$ROOT/tests/fault/run.sh" --seed "$s" --faults "$f" \
		--spacing 6 >"$out/run-$s.txt" 2>&1 || rc=$?
	grep -E '^(fault |violations|partitioned |false failovers)' \
		"$out/run-$s.txt" || true
	res=$(grep '^RESULT ' "$out/run-$s.txt" | cut -c8- || true)
	[ -n "$res" ] || res='{"violations": -1, "faults": []}'
	ff=$(sed -n 's/^false failovers: \([0-9]*\).*/\1/p' "$out/run-$s.txt")
	echo "$s $rc ${ff:--1} $res" >>"$out/runs.txt"
done
table "$out/runs.txt" >"$out/table.md"
cat "$out/table.md"
