#!/usr/bin/env bash
# A full disk under PostgreSQL, driven through im-cli against a cluster
# (imnode Router, Chatter, Connector): the store's tables live in a
# tablespace on an 8 MiB tmpfs (PostgreSQL's WAL stays in its data
# directory, so the server itself keeps running). Sends until the
# tablespace is full get "store full" (SQLSTATE 53100, IM_ENOSPC) and
# nothing unstored is acked; once space returns sends are acked again;
# every acked message is in the database. The PostgreSQL server comes
# from scripts/test-pg (IM_TEST_PG, IM_TEST_PG_BIN): without it this
# fails. Needs root (mount); skipped (77) without it. The steps shared
# with diskfull.sh: diskfull-lib.sh.
# Usage: diskfull-pg.sh BUILD_DIR
set -euo pipefail
build=$1
imnode=$build/servers/cluster/imnode
imctl=$build/servers/imctl/imctl
imd=$build/servers/imd
cli=$build/examples/im-cli
for x in "$imnode" "$imctl" "$imd" "$cli"; do
	[ -x "$x" ] || { echo "diskfull-pg: missing $x"; exit 1; }
done
if [ -z "${IM_TEST_PG:-}" ] || [ ! -x "${IM_TEST_PG_BIN:-}/psql" ]; then
	echo "diskfull-pg: no IM_TEST_PG/IM_TEST_PG_BIN (run it through scripts/test-pg)"
	exit 1
fi
psql() {
	PGOPTIONS="-c client_min_messages=warning" "$IM_TEST_PG_BIN/psql" \
		"$IM_TEST_PG" -v ON_ERROR_STOP=1 -qAtX "$@"
}
df_name=diskfull-pg
# shellcheck source=tests/system/diskfull-lib.sh
. "$(dirname "$0")/diskfull-lib.sh"
# One name for the schema and the tablespace, unique per run.
ts=imfull_$$
made_ts=0
df_cleanup_more() {
	if [ "$made_ts" = 1 ]; then
		psql -c "DROP SCHEMA IF EXISTS $ts CASCADE" || true
		psql -c "DROP TABLESPACE IF EXISTS $ts" || true
	fi
}
df_setup

# The server runs as postgres: the tablespace directory is its own (and
# the way to it open).
chmod 755 "$tmp" "$disk"
mkdir "$disk/pg"
chown postgres: "$disk/pg" 2>/dev/null || true
chmod 700 "$disk/pg"
psql -c "CREATE TABLESPACE $ts LOCATION '$disk/pg'" || fail "no tablespace"
made_ts=1
psql -c "CREATE SCHEMA $ts" || fail "no schema"
# Every table and index the store makes goes to the small tablespace.
store="$IM_TEST_PG options='-csearch_path=$ts -cdefault_tablespace=$ts'"

printf 'diskfull-pg-test-secret-0123456789abcdef\n' >"$tmp/secret"
node() { # NAME ROLE LISTEN [flags]
	local name=$1 role=$2 listen=$3
	shift 3
	"$imnode" --role "$role" --name "$name" --listen "$listen" \
		--store "$store" --slots 16 "$@" >"$tmp/$name.log" 2>&1 &
	pids+=($!)
}
node router router 127.0.0.1:0 --port_file "$tmp/router.port"
node chatter chatter - --expect 1
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
node connector connector "127.0.0.1:$port" --expect 1 \
	--secret_file "$tmp/secret"
owned=0
for _ in $(seq 1 200); do
	owned=$("$imctl" --store "$store" --slots 16 status 2>/dev/null |
		grep -c "slots: 16/16" || true)
	[ "$owned" = 2 ] && break
	sleep 0.1
done
[ "$owned" = 2 ] || fail "the cluster did not take its slots in 20 s"
# The Router forwards a creation only once the Chatter said Hello to it:
# owning the slots comes before that, and a create sent in between is
# answered "no chatter for the group".
for _ in $(seq 1 200); do
	grep -q "took our Hello" "$tmp/chatter.log" &&
		grep -q "took our Hello" "$tmp/connector.log" && break
	sleep 0.1
done
grep -q "took our Hello" "$tmp/chatter.log" ||
	fail "the chatter did not reach the router in 20 s"
token=$("$imd" token 1 --secret_file "$tmp/secret")
df_create_group
# Random text, which PostgreSQL cannot compress: ~4 KB a row on its pages.
df_fill "$(head -c 2250 /dev/urandom | base64 -w 0)"
grep -q "store full" "$tmp/chatter.log" || fail "the Chatter did not log it"
df_space_returns "$tmp/chatter.log"
psql -c "SELECT seq FROM $ts.im_messages WHERE conv = $gid" |
	df_all_acked_stored
grep "store full\|still full\|space again" "$tmp/chatter.log" | cut -c1-200
echo "diskfull-pg: ok"
