#!/usr/bin/env bash
# Soak the PostgreSQL concurrency tests: each of the four runs N times
# (default 20) against one throwaway server; any failure fails the script.
# Usage: bench/pg-soak.sh BUILDDIR [N]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: bench/pg-soak.sh BUILDDIR [N]}" && pwd)
n=${2:-20}
exe=$build/tests/store/store-pg-concurrency
[ -x "$exe" ] || { echo "no $exe: build first" >&2; exit 1; }

dir=$(mktemp -d /tmp/im-pgs.XXXXXX)
trap '"$root/scripts/pg" stop "$dir"; rmdir "$dir" 2>/dev/null || true' EXIT INT TERM
"$root/scripts/pg" start "$dir" >/dev/null
eval "$("$root/scripts/pg" env "$dir")"
export IM_TEST_PG

tests="test_pg_concurrent_segment_takers_never_overlap
test_pg_racing_slot_cas_has_exactly_one_winner_per_epoch
test_pg_stale_writer_cannot_append_after_a_cas_it_started_before
test_pg_stale_writer_with_duplicates_cannot_append_either
test_pg_same_dedup_key_from_two_processes_is_stored_once"
failed=0
for t in $tests; do
	ok=0
	start=$(date +%s)
	for i in $(seq "$n"); do
		if IM_TEST_SEED=$i IM_TEST_FILTER=$t "$exe" >"$dir/last.log" 2>&1 &&
			grep -q "PASSED.*1 test" "$dir/last.log"; then
			ok=$((ok + 1))
		else
			echo "FAIL: $t run $i (IM_TEST_SEED=$i):"
			tail -n 20 "$dir/last.log"
			failed=$((failed + 1))
		fi
	done
	echo "$t: $ok/$n passed in $(($(date +%s) - start))s"
done
[ "$failed" -eq 0 ] || { echo "pg-soak: $failed failure(s)"; exit 1; }
echo "pg-soak: all passed"
