#!/usr/bin/env bash
# Fault soak: N seeded randomized fault scenarios (tests/fault/run.sh on a
# local cluster with PostgreSQL), then a results table per fault kind:
# runs, violations, unavailability p50/max (ms).
#
#   bench/fault-soak.sh [N] [SEED] [FAULTS_PER_RUN]   (default 20 1 3)
#   bench/fault-soak.sh --table RUNS_FILE              (the table again)
#
# Scenario i uses seed SEED+i: it picks FAULTS_PER_RUN fault kinds (with
# repetition, in order) from kill-chatter kill-connector kill-router
# stop-chatter stop-connector pg-restart partition-chatter (KINDS="..."
# draws from those instead), and the run picks their targets from the
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
for line in open(sys.argv[1]):
    s, rc, js = line.split(" ", 2)
    r = json.loads(js)
    n += 1
    v = r["violations"]
    if v != 0:
        bad_runs += 1
    for f in r["faults"]:
        x = rows.setdefault(f["kind"], {"runs": 0, "viol": 0, "u": [],
                                        "c": []})
        x["runs"] += 1
        x["viol"] += 1 if v != 0 else 0
        x["u"].append(f["unavail_ms"])
        x["c"].append(f.get("client_unavail_ms", 0))
def p50(u):
    u = sorted(u)
    return u[len(u) // 2] if u else 0
print("%d scenarios, %d with violations (a failed run counts as one)"
      % (n, bad_runs))
print()
print("| fault | runs | runs with violations | group unavailable p50 / max"
      " (ms) | client waited p50 / max (ms) |")
print("|---|---:|---:|---:|---:|")
for k in sorted(rows):
    x = rows[k]
    print("| %s | %d | %d | %d / %d | %d / %d |"
          % (k, x["runs"], x["viol"], p50(x["u"]), max(x["u"]),
             p50(x["c"]), max(x["c"])))
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
	stop-connector pg-restart partition-chatter})
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
	grep -E '^(fault |violations|partitioned )' "$out/run-$s.txt" || true
	res=$(grep '^RESULT ' "$out/run-$s.txt" | cut -c8- || true)
	[ -n "$res" ] || res='{"violations": -1, "faults": []}'
	echo "$s $rc $res" >>"$out/runs.txt"
done
table "$out/runs.txt" >"$out/table.md"
cat "$out/table.md"
