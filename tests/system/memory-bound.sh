#!/usr/bin/env bash
# Memory bound: 2,000 users chatting at the maximum (closed loop) on a fresh
# imd with stats_interval 1. Fails when imd's "mem:" lines are missing or
# lack a part (or the parts do not add up to the Connector's or the
# Chatter's total), or
# when RSS passes the bound documented in docs/operations.md ("Memory"):
# 32 MiB + 40 KiB per user at the default push queue limits.
# usage: tests/system/memory-bound.sh IMD IM_BENCH
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
export IMD=${1:?IMD binary} IMBENCH=${2:?im-bench binary}
users=2000
# Under AddressSanitizer (scripts/test's second pass) RSS is mostly shadow
# memory and quarantine: the bound is checked on a plain build only.
check_bound=1
if ldd "$IMD" 2>/dev/null | grep -q libasan; then
	check_bound=0
fi
export IMD_ARGS="--slots 32 --stats_interval 1 --log_level info"
out=$(mktemp -d "${TMPDIR:-/tmp}/memory-bound.XXXXXX")
trap 'rm -rf "$out"' EXIT
KEEP=1 OUT=$out timeout 120 "$here/bench/run-imd.sh" chat --users $users \
	--inflight 1 --duration 8 --warmup 1 --baseline-secs 0.3 --quiet \
	2> "$out/stderr" || { cat "$out/stderr" >&2; exit 1; }
kept=$(sed -n 's/^run-imd: kept //p' "$out/stderr")
[ -n "$kept" ] && [ -f "$kept/imd.log" ] || { echo "no imd log" >&2; exit 1; }
cp "$kept/imd.log" "$out/imd.log"
rm -rf "$kept"
if grep -q "AddressSanitizer\|runtime error" "$out/imd.log"; then
	cat "$out/imd.log" >&2
	exit 1
fi
python3 - "$out/imd.log" "$out/chat.json" $users $check_bound <<'PY'
import json, re, sys
log, js, users = sys.argv[1], sys.argv[2], int(sys.argv[3])
check_bound = sys.argv[4] == "1"
pat = re.compile(r"mem: rss (\d+) KiB; connector (\d+) KiB \(users (\d+), "
                 r"sessions (\d+), pushqs (\d+) with (\d+) unacked, "
                 r"convlists (\d+), conns (\d+), conn bufs (\d+), "
                 r"fixed (\d+)\); chatter (\d+) KiB \(groups (\d+), "
                 r"members (\d+), dedup (\d+), arenas (\d+) of (\d+), "
                 r"fixed (\d+)\); sqlite (\d+) KiB; other (\d+) KiB")
lines = [m for m in map(pat.search, open(log)) if m]
assert len(lines) >= 5, "expected a mem line per second, got %d" % len(lines)
bound_kib = 32 * 1024 + 40 * users
peak = 0
for m in lines:
    v = list(map(int, m.groups()))
    rss, conn, chat, sq = v[0], v[1], v[10], v[17]
    parts = v[2:5] + v[6:10]  # the unacked bytes are inside pushqs
    assert abs(sum(parts) - conn) <= len(parts), m.group(0)
    # the reserve (v[15]) is not in the total: only live arena bytes are
    cparts = v[11:15] + [v[16]]
    assert abs(sum(cparts) - chat) <= len(cparts), m.group(0)
    assert v[13] > 0 and v[14] <= v[15], m.group(0)
    assert rss <= bound_kib or not check_bound, "RSS %d KiB over the bound %d KiB" % (rss, bound_kib)
    peak = max(peak, rss)
busy = [m for m in lines if int(m.group(5)) > 0]
assert busy, "no line saw the push queues in use"
m = max(lines, key=lambda m: int(m.group(1)))
conn, chat, sq = int(m.group(2)), int(m.group(11)), int(m.group(18))
r = json.load(open(js))
assert r["unexpected_errors"] == 0 and r["counters"]["acked"] > 0, r
print("memory-bound: ok, %d lines, peak RSS %d KiB (bound %d KiB%s), at "
      "peak connector %d + chatter %d + sqlite %d KiB" % (len(lines), peak,
      bound_kib, "" if check_bound else ", not checked under ASan", conn,
      chat, sq))
PY
