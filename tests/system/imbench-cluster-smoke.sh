#!/usr/bin/env bash
# im-bench against a local cluster (suite pg): a 2 s chat of 40 users on
# 2 Connectors over PostgreSQL through bench/run-cluster.sh. About half the
# users are connected to a Connector that does not own them, so it checks
# that im-bench follows Redirect. Fails on unexpected errors, no ack, no
# redirect, or missing numbers (the PostgreSQL baseline among them).
# usage: tests/system/imbench-cluster-smoke.sh BUILD_DIR
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
export BUILD=${1:?build dir}
# Fewer slots: claiming them is one commit each.
export SLOTS=${SLOTS:-64}
out=$(mktemp -d "${TMPDIR:-/tmp}/imbench-csmoke.XXXXXX")
trap 'rm -rf "$out"' EXIT
OUT=$out timeout 100 "$here/bench/run-cluster.sh" chat --users 40 \
	--group-size 10 --inflight 2 --duration 2 --warmup 0.5 \
	--baseline-secs 0.3 --procs 2 --quiet
python3 - "$out/chat.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["unexpected_errors"] == 0, r
assert r["counters"]["acked"] > 0, "no acks"
assert r["counters"]["redirects"] > 0, "no redirect followed"
assert r["sends_acked_per_s"] > 0 and r["deliveries_per_s"] > 0, r
assert r["latency_us"]["send_ack"]["count"] > 0, r
assert r["baseline"]["store"] == "pg" and r["baseline"]["rows_per_s"] > 0, r
assert r["logins"] == 40, r
assert len([s for s in r["server"] if s["counts_per_conn"]]) == 2, r
print("imbench-cluster-smoke: ok, %.0f acks/s, %d redirects, "
      "p99 send->deliver %.1f ms" % (r["sends_acked_per_s"],
      r["counters"]["redirects"],
      r["latency_us"]["send_deliver"]["p99"] / 1e3))
PY
