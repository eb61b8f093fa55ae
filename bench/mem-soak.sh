#!/usr/bin/env bash
# The 10-minute memory soak: USERS (10,000) chatting at the maximum (closed
# loop, one send in flight each) on a fresh imd for DURATION (600) s, imd
# logging its "mem:" line every 60 s. Prints imd's RSS per minute (from
# im-bench's per-second samples) and the mem lines; exits 1 when RSS over
# the last half of the run grew by more than 5 %.
# usage: bench/mem-soak.sh [im-bench flags...]   env: BUILD, USERS, DURATION
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
users=${USERS:-10000}
duration=${DURATION:-600}
out=$(mktemp -d "${TMPDIR:-/tmp}/mem-soak.XXXXXX")
export IMD_ARGS="${IMD_ARGS:-} --stats_interval 60 --log_level info"
KEEP=1 OUT=$out "$root/bench/run-imd.sh" chat --users "$users" \
	--inflight 1 --duration "$duration" --warmup 2 --no-baseline "$@" \
	2> "$out/stderr" || { cat "$out/stderr" >&2; exit 1; }
kept=$(sed -n 's/^run-imd: kept //p' "$out/stderr")
grep "mem:" "$kept/imd.log" | sed 's/^[^ ]* I //' || true
python3 - "$out/chat.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
s = r["server_rss_kb_per_s_in_window"]
print("| minute | imd RSS at its end (MB) |")
print("|---:|---:|")
for i in range(59, len(s), 60):
    print("| %d | %.1f |" % (i // 60 + 1, s[i] / 1024))
half = s[len(s) // 2:]
growth = (half[-1] - half[0]) / half[0] * 100
print("acked/s %.0f, errors %d, peak RSS %.1f MB, last half %+.1f %%" % (
    r["sends_acked_per_s"], r["unexpected_errors"], max(s) / 1024, growth))
sys.exit(0 if abs(growth) <= 5 and r["unexpected_errors"] == 0 else 1)
PY
