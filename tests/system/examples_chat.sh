#!/usr/bin/env bash
# End to end through the examples: a real imd, im-cli sessions driven
# through pipes and the bot. Two users and a bot share a group; the
# second user is offline meanwhile, then logs in and gets exact unread
# counts and the history in order; reading clears the count.
# Usage: examples_chat.sh BUILD_DIR   
set -euo pipefail
build=$1
imd=$build/servers/imd
cli=$build/examples/im-cli
bot=$build/examples/im-bot
if [ ! -x "$imd" ] || [ ! -x "$cli" ] || [ ! -x "$bot" ]; then
	echo "examples_chat: missing servers/imd, examples/im-cli or examples/im-bot in $build"
	exit 1
fi
tmp=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	for f in "$tmp"/*.out "$tmp"/imd.log; do
		[ -f "$f" ] && { echo "--- $f"; cat "$f"; }
	done
	exit 1
}

printf 'examples-chat-test-secret-0123456789\n' >"$tmp/secret"
"$imd" --listen 127.0.0.1 --port 0 --port_file "$tmp/port" \
	--db "$tmp/imd.db" --secret_file "$tmp/secret" --sync normal \
	--slots 16 --log_level warn >"$tmp/imd.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 300); do
	[ -s "$tmp/port" ] && break
	sleep 0.1
done
[ -s "$tmp/port" ] || fail "imd did not start"
port=$(cat "$tmp/port")
tok() { "$imd" token "$1" --secret_file "$tmp/secret"; }
t1=$(tok 1) t2=$(tok 2) t3=$(tok 3)
run_cli() { # TOKEN NAME: stdin = commands
	timeout 30 "$cli" --port "$port" --token "$1" --linger-ms 10000 \
		>"$tmp/$2.out" 2>&1 || fail "im-cli $2 exited $?"
}

echo "/create room 2 3" | run_cli "$t1" create
gid=$(awk '/^created /{print $2}' "$tmp/create.out")
[ -n "$gid" ] || fail "no group created"

timeout 30 "$bot" --port "$port" --token "$t3" --count 2 \
	>"$tmp/bot.out" 2>&1 &
botpid=$!
pids+=($botpid)
for _ in $(seq 1 100); do
	grep -q '^ready ' "$tmp/bot.out" 2>/dev/null && break
	sleep 0.1
done
grep -q '^ready 3 ' "$tmp/bot.out" || fail "bot did not log in"

printf '/send %s hello there\n/send %s second\n/wait\n' "$gid" "$gid" |
	run_cli "$t1" send
[ "$(grep -c "^ack $gid " "$tmp/send.out")" -eq 2 ] || fail "sends not acked"
wait "$botpid" || fail "bot did not answer twice"

# A second device of user 2 stays online to see the read sync.
mkfifo "$tmp/u2b.in"
timeout 30 "$cli" --port "$port" --token "$t2" --device other \
	<"$tmp/u2b.in" >"$tmp/u2b.out" 2>&1 &
devpid=$!
exec 8>"$tmp/u2b.in"
pids+=($devpid)
for _ in $(seq 1 100); do
	grep -q '^state connected' "$tmp/u2b.out" 2>/dev/null && break
	sleep 0.1
done
grep -q '^state connected' "$tmp/u2b.out" || fail "second device not in"

# user 2 was offline: 4 unread (2 from user 1, 2 from the bot), history
# in seq order, then a read clears the count.
printf '/list\n/open %s\n/read %s\n/list\n' "$gid" "$gid" | run_cli "$t2" u2
grep -q "^conv $gid unread=4 " "$tmp/u2.out" || fail "unread is not 4"
[ "$(grep -c "^history $gid " "$tmp/u2.out")" -eq 4 ] || fail "history"
grep -q "^history $gid [0-9]* 1 hello there\$" "$tmp/u2.out" || fail "text"
grep -q "^history $gid [0-9]* 3 echo: hello there\$" "$tmp/u2.out" ||
	fail "bot answer"
seqs=$(awk -v g="$gid" '$1 == "history" && $2 == g {print $3}' "$tmp/u2.out")
[ "$seqs" = "$(echo "$seqs" | sort -n)" ] || fail "history out of order"
grep -q "^ok read" "$tmp/u2.out" || fail "read not done"
[ "$(grep "^conv $gid " "$tmp/u2.out" | tail -n 1 | cut -d' ' -f3)" = \
	"unread=0" ] || fail "unread not cleared by the read"
last=$(awk -v g="$gid" '$1 == "history" && $2 == g {print $3}' \
	"$tmp/u2.out" | tail -n 1)
for _ in $(seq 1 100); do
	grep -q "^event read $gid $last\$" "$tmp/u2b.out" && break
	sleep 0.1
done
grep -q "^event read $gid $last\$" "$tmp/u2b.out" ||
	fail "the read did not reach the other device"
echo /quit >&8
exec 8>&-
wait "$devpid" || fail "second device exited $?"

# An over-long message is refused for that send alone, as too big (the
# client checks IM_CLIENT_BODY_MAX itself; the server's answer to one is
# tested with a raw socket in system_bad_input), and the next send of
# the same session goes through.
echo "/create big" | run_cli "$t1" create2
big=$(awk '/^created /{print $2}' "$tmp/create2.out")
[ -n "$big" ] || fail "no second group created"
long=$(head -c 4097 /dev/zero | tr '\0' x)
printf '/send %s %s\n/send %s fits\n/wait\n' "$big" "$long" "$big" |
	run_cli "$t1" big
grep -q "^error send IM_ETOOBIG group=$big\$" "$tmp/big.out" ||
	fail "an over-long send is not refused as too big"
[ "$(grep -c "^ack $big " "$tmp/big.out")" -eq 1 ] ||
	fail "the send after an over-long one was not acked"
# More refused sends than the client's outbox holds (256): each is
# answered with an error, none with an ack, and im-cli still reads on to
# the end (a line waiting for outbox room must go on when a send is
# refused, not only when one is acked; a full store refuses every send).
for i in $(seq 1 600); do echo "/send 999999 refused $i"; done >"$tmp/refused"
echo /wait >>"$tmp/refused"
run_cli "$t1" refused <"$tmp/refused"
[ "$(grep -c '^error send IM_ENOTFOUND group=999999 ' "$tmp/refused.out")" \
	-eq 600 ] || fail "not every send to a missing group was refused"
grep -q '^ok wait$' "$tmp/refused.out" || fail "/wait after refusals"
echo "examples_chat: ok (group $gid)"
