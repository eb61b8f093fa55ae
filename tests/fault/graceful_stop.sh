#!/usr/bin/env bash
# Graceful stop (issue 13), through the public surface: a local cluster on
# one sqlite file (scripts/cluster: 2 Routers, 3 Chatters, 2 Connectors),
# 12 im_client users sending under fault_load, then SIGTERM of a Chatter
# and, later, of a Connector (each restarted by run.sh once it exited).
# Asserts, from check.py over the whole history: zero violations (no
# failed, lost, duplicated or unacked send), every fault's unavailability
# for a group and for a client under BOUND ms (default 600: far below a
# crash, which waits for the Routers' failure detector), and that both
# nodes logged their handover ("stopped gracefully"), not the bound's
# fallback.
#
#   tests/fault/graceful_stop.sh [BOUND_MS]     (BUILD: the build dir)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BOUND=${1:-600}
keep=$(mktemp -d /tmp/im-graceful.XXXXXX)
trap 'rm -rf "$keep"' EXIT
rc=0
"$ROOT/tests/fault/run.sh" --sqlite --faults "term-chatter term-connector" \
	--spacing 4 --seed "${IM_TEST_SEED:-13}" --max-unavail-ms "$BOUND" \
	--keep "$keep" || rc=$?
[ $rc -eq 0 ] || { echo "FAIL: run.sh: $rc"; exit 1; }
for kind in term-chatter term-connector; do
	name=$(awk -v k="$kind" '$3 == k {print $4}' "$keep/faults")
	if ! grep -q 'stopped gracefully' "$keep/cluster/$name.log"; then
		echo "FAIL: $name ($kind) did not stop gracefully:"
		tail -n 20 "$keep/cluster/$name.log"
		exit 1
	fi
	grep -h 'stopping: handed\|stopped gracefully' \
		"$keep/cluster/$name.log"
done
echo "PASS: graceful stops under load, every window under $BOUND ms"
