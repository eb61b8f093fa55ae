#!/usr/bin/env bash
# A full disk under imd (sqlite on an 8 MiB tmpfs), driven through im-cli:
# sends until the disk is full get a clear "store full" (IM_ENOSPC) and
# nothing unstored is acked; imd's log stays bounded (a few lines, not one
# per failed commit); once space returns sends succeed again within the
# backoff (<= 1 s); every acked message is in the database; a restart on
# a full disk exits with status 3 and says the disk is full.
# Needs root (mount); skipped (77) without it. The steps shared with
# diskfull-pg.sh: diskfull-lib.sh.
# Usage: diskfull.sh BUILD_DIR
set -euo pipefail
build=$1
imd=$build/servers/imd
cli=$build/examples/im-cli
for x in "$imd" "$cli"; do
	[ -x "$x" ] || { echo "diskfull: missing $x"; exit 1; }
done
command -v sqlite3 >/dev/null || { echo "diskfull: no sqlite3, skipped"; exit 77; }
df_name=diskfull
# shellcheck source=tests/system/diskfull-lib.sh
. "$(dirname "$0")/diskfull-lib.sh"
df_cleanup_more() { :; }
df_setup

printf 'diskfull-test-secret-0123456789abcdef\n' >"$tmp/secret"
"$imd" --listen 127.0.0.1 --port 0 --port_file "$tmp/port" \
	--db "$disk/imd.db" --secret_file "$tmp/secret" \
	--slots 16 --log_level info >"$tmp/imd.log" 2>&1 &
imd_pid=$!
pids+=("$imd_pid")
for _ in $(seq 1 100); do
	[ -s "$tmp/port" ] && break
	kill -0 "$imd_pid" 2>/dev/null || break
	sleep 0.1
done
[ -s "$tmp/port" ] || fail "imd did not start"
port=$(cat "$tmp/port")
token=$("$imd" token 1 --secret_file "$tmp/secret")
df_create_group
df_fill "$(head -c 3000 /dev/zero | tr '\0' x)"
# Bounded log: the first failure, at most one line per 10 s, nothing per
# failed commit.
lines=$(grep -c "store full\|still full" "$tmp/imd.log" || true)
echo "diskfull: $lines log lines about the full store"
[ "$lines" -ge 1 ] || fail "imd did not log the full store"
[ "$lines" -le $((2 + fill_ms / 10000)) ] || fail "$lines log lines: not rate-limited"
df_space_returns "$tmp/imd.log"

kill -TERM "$imd_pid"
wait "$imd_pid" || fail "imd exited $? on SIGTERM"
sqlite3 "$disk/imd.db" "SELECT seq FROM im_messages WHERE conv = $gid" |
	df_all_acked_stored

# A restart on a full disk: a clear message and exit status 3.
dd if=/dev/zero of="$disk/filler" bs=64k status=none 2>/dev/null || true
set +e
timeout 30 "$imd" --listen 127.0.0.1 --port 0 --db "$disk/imd.db" \
	--secret_file "$tmp/secret" --slots 16 >"$tmp/restart.log" 2>&1
rc=$?
set -e
echo "diskfull: restart on a full disk exited $rc"
[ "$rc" -eq 3 ] || fail "imd on a full disk exited $rc, not 3"
grep -q "disk is full" "$tmp/restart.log" || fail "no clear message"
rm -f "$disk/filler"
echo "diskfull: ok"
