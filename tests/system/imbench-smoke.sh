#!/usr/bin/env bash
# im-bench smoke test: a few-second tiny chat against a fresh imd (through
# bench/run-imd.sh). Fails when im-bench reports unexpected errors or no
# acked send (im-bench's exit status), or when the JSON lacks the numbers.
# With TLS_CERTS (tests/system/tls-certs.sh) the same run goes over TLS:
# imd with a test certificate, im-bench --tls with its CA.
# usage: tests/system/imbench-smoke.sh IMD IM_BENCH [TLS_CERTS]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
export IMD=${1:?IMD binary} IMBENCH=${2:?im-bench binary}
certs=${3:-}
# Fewer slots: imd claims each at start with its own commit, and 2 x 1024
# of them take ~10 s on this disk; the smoke test is about im-bench.
export IMD_ARGS="${IMD_ARGS:-} --slots 32"
out=$(mktemp -d "${TMPDIR:-/tmp}/imbench-smoke.XXXXXX")
trap 'rm -rf "$out"' EXIT
tls=()
if [ -n "$certs" ]; then
	"$certs" "$out/certs" >/dev/null
	IMD_ARGS="$IMD_ARGS --tls_cert $out/certs/server.pem"
	IMD_ARGS="$IMD_ARGS --tls_key $out/certs/server.key"
	tls=(--tls "$out/certs/ca.pem")
fi
OUT=$out timeout 60 "$here/bench/run-imd.sh" chat --users 40 \
	--group-size 10 --inflight 2 --duration 2 --warmup 0.5 \
	--baseline-secs 0.3 --procs 2 --quiet "${tls[@]}"
python3 - "$out/chat.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["unexpected_errors"] == 0, r
assert r["counters"]["acked"] > 0, "no acks"
assert r["sends_acked_per_s"] > 0 and r["deliveries_per_s"] > 0, r
assert r["latency_us"]["send_ack"]["count"] > 0, r
assert r["baseline"]["rows_per_s"] > 0, r
assert r["logins"] == 40, r
assert r["counters"]["tls_failures"] == 0, r
print("imbench-smoke: ok, %.0f acks/s, p99 send->deliver %.1f ms" % (
    r["sends_acked_per_s"], r["latency_us"]["send_deliver"]["p99"] / 1e3))
PY
