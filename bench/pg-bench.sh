#!/usr/bin/env bash
# Append throughput of the PostgreSQL backend on a throwaway server, next to
# a plain libpq multi-row INSERT of the same rows and pgbench's rate for a
# plain single-row INSERT, all on the same server in the same run.
# Usage: bench/pg-bench.sh BUILDDIR [SECONDS per run] [BATCHES] [WRITERS]
# Each point runs REPS times (env, default 3), backend and plain alternating
# so that both see the same background load; the table shows medians.
# Prints a markdown table (bench/README.md, section bench_pg, has the recorded one).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=$(cd "${1:?usage: bench/pg-bench.sh BUILDDIR [SECONDS]}" && pwd)
secs=${2:-3}
reps=${REPS:-3}
batches=${3:-"1 16 128 1024"}
writers_list=${4:-"1 4 16"}
bench=$build/bench/bench_pg
[ -x "$bench" ] || { echo "no $bench: build first" >&2; exit 1; }

dir=$(mktemp -d /tmp/im-pgb.XXXXXX)
trap '"$root/scripts/pg" stop "$dir"; rmdir "$dir" 2>/dev/null || true' EXIT INT TERM
"$root/scripts/pg" start "$dir" >/dev/null
eval "$("$root/scripts/pg" env "$dir")"
ci=$IM_TEST_PG
pgbench=$IM_TEST_PG_BIN/pgbench

# pgbench: one single-row INSERT per transaction, same row shape.
body=$(printf '78%.0s' $(seq 64))
cat >"$dir/insert.sql" <<SQL
\set c random(1, 1000000000)
\set s random(1, 1000000000000)
INSERT INTO imbench.pgb VALUES (:c, :s, 0, 1, 7, :s, 0, 1700000000000, 0, '\\x$body'::bytea) ON CONFLICT DO NOTHING;
SQL
pgbench_tps() {
	local w=$1
	"$bench" "$ci" backend 1 1 0.2 >/dev/null # (re)creates schema imbench
	psql -q "$ci" -c "CREATE TABLE imbench.pgb (LIKE imbench.im_messages INCLUDING ALL)" -c CHECKPOINT
	"$pgbench" -n -M prepared -c "$w" -j "$w" -T "$secs" -f "$dir/insert.sql" "$ci" 2>/dev/null |
		awk '/^tps = / {printf "%.0f", $3}'
}
rate() { "$bench" "$ci" "$@" "$secs" | awk '{print $7}'; }
median() { printf '%s\n' "$@" | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

echo "server: $(psql -tA "$ci" -c 'select version()' | cut -d, -f1);" \
	"fsync=$(psql -tA "$ci" -c 'show fsync')," \
	"synchronous_commit=$(psql -tA "$ci" -c 'show synchronous_commit');" \
	"$(nproc) cores; median of $reps runs of ${secs}s per point"
declare -A pgb
for w in $writers_list; do
	runs=()
	for r in $(seq "$reps"); do
		runs+=("$(pgbench_tps "$w")")
	done
	pgb[$w]=$(median "${runs[@]}")
done
echo
echo "| batch | writers | backend msg/s | plain multi-row INSERT msg/s | backend/plain | pgbench single-row INSERT tx/s | backend/pgbench |"
echo "|---:|---:|---:|---:|---:|---:|---:|"
for b in $batches; do
	for w in $writers_list; do
		bes=()
		pls=()
		for r in $(seq "$reps"); do
			bes+=("$(rate backend "$b" "$w")")
			pls+=("$(rate plain "$b" "$w")")
		done
		be=$(median "${bes[@]}")
		pl=$(median "${pls[@]}")
		awk -v b="$b" -v w="$w" -v be="$be" -v pl="$pl" -v pg="${pgb[$w]}" 'BEGIN {
			printf "| %d | %d | %d | %d | %.0f%% | %d | %.1fx |\n",
				b, w, be, pl, 100 * be / pl, pg, be / pg }'
	done
done
