#!/usr/bin/env bash
# im-bench against its scripted fake server: a tiny chat, a reconnect and
# a login run, each must end with zero unexpected errors and some acks.
# Usage: fake-run.sh IM_BENCH FAKESRV
set -euo pipefail
bench=$1
fake=$2
out=$(mktemp -d)
pid=
pid_b=
trap 'kill $pid $pid_b 2>/dev/null || true; rm -rf "$out"' EXIT

# start_fakes single|pair: fake A on $port (single), or A and B on a port
# pair that redirect each other's uids. Fresh ports below the ephemeral
# range (a port just used, or one a client socket holds, may refuse the
# bind): up to 10 tries.
start_fakes() {
	local up=0 _i _j
	for _i in $(seq 10); do
		port=$(( 20000 + RANDOM % 12000 ))
		port_b=$(( port + 1 ))
		rm -f "$out/ready" "$out/ready_b"
		if [ "$1" = pair ]; then
			"$fake" "$port_b" "$port" 0 > "$out/ready_b" 2>/dev/null &
			pid_b=$!
			"$fake" "$port" "$port_b" 1 > "$out/ready" 2>/dev/null &
		else
			echo ready > "$out/ready_b"
			pid_b=
			"$fake" "$port" > "$out/ready" 2>/dev/null &
		fi
		pid=$!
		for _j in $(seq 50); do
			if grep -q ready "$out/ready" 2>/dev/null &&
				grep -q ready "$out/ready_b" 2>/dev/null; then
				up=1
				break
			fi
			kill -0 "$pid" 2>/dev/null || break
			[ -z "$pid_b" ] || kill -0 "$pid_b" 2>/dev/null || break
			sleep 0.1
		done
		[ "$up" = 1 ] && return 0
		kill $pid $pid_b 2>/dev/null || true
		wait $pid $pid_b 2>/dev/null || true
	done
	echo "fake-run: no free port" >&2
	exit 1
}

start_fakes single
common=(--target "127.0.0.1:$port" --secret 0123456789abcdef0123
	--server-pid "$pid" --quiet --no-baseline)
"$bench" chat "${common[@]}" --users 40 --group-size 10 --duration 1 \
	--warmup 0.2 --procs 2 --first-uid 1000 --json "$out/chat.json"
grep -q '"unexpected_errors": 0' "$out/chat.json"
"$bench" chat "${common[@]}" --users 20 --group-size 5 --duration 1 \
	--warmup 0.2 --rate 200 --procs 1 --first-uid 2000 --json "$out/open.json"
"$bench" biggroup "${common[@]}" --users 150 --group-size 150 --senders 3 \
	--duration 1 --warmup 0.2 --procs 2 --first-uid 3000 \
	--json "$out/big.json"
"$bench" login "${common[@]}" --users 60 --convs 4 --group-size 6 \
	--login-rate 300 \
	--procs 2 --first-uid 4000 --json "$out/login.json"
"$bench" reconnect "${common[@]}" --users 40 --group-size 10 \
	--duration 0.5 --warmup 0.2 --down 0.5 --procs 2 --first-uid 5000 \
	--json "$out/reconnect.json"
grep -q '"caught_up": 36' "$out/reconnect.json"
# Redirects (a cluster's Connectors): fake A owns the even uids and sends
# the odd ones to fake B, which owns the odd ones and sends the even ones
# back to A. Connecting every user to A or B by uid must end with every
# user logged in where it belongs.
kill "$pid"
wait "$pid" 2>/dev/null || true
start_fakes pair
"$bench" idle --target "127.0.0.1:$port" --secret 0123456789abcdef0123 \
	--server-pid "$pid" --other-pid "$pid_b" --quiet --users 41 \
	--duration 0.3 --warmup 0.1 --procs 2 --first-uid 7000 \
	--json "$out/redirect.json"
grep -q '"logins": 41,' "$out/redirect.json"
grep -q '"redirects": 20,' "$out/redirect.json"
"$bench" reconnect --target "127.0.0.1:$port_b,127.0.0.1:$port" \
	--secret 0123456789abcdef0123 --quiet --no-baseline --users 40 \
	--group-size 1 --stayers 0 --duration 0.3 --warmup 0.1 --down 0.3 \
	--procs 2 --first-uid 8000 --json "$out/redirect2.json" \
	--server-pid "$pid"
grep -q '"redirects": 40,' "$out/redirect2.json"
grep -q '"resumed": 40,' "$out/redirect2.json"
kill "$pid_b"
wait "$pid_b" 2>/dev/null || true
# A server that is gone: every phase must end on its own, with errors.
kill "$pid"
wait "$pid" 2>/dev/null || true
rc=0
timeout 30 "$bench" chat "${common[@]}" --users 40 --group-size 10 \
	--duration 0.5 --warmup 0.1 --procs 2 --first-uid 6000 \
	--json "$out/dead.json" > /dev/null || rc=$?
[ "$rc" = 1 ] || { echo "fake-run: dead server gave rc $rc" >&2; exit 1; }
grep -q '"connect_fail": [1-9]' "$out/dead.json"
echo "fake-run: ok"
