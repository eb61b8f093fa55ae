#!/bin/sh
# TLS on a cluster Connector: a Router, a Chatter and a Connector (imnode,
# one sqlite store) with tls_cert/tls_key; two im-cli users chat over TLS
# through it, a plain-text im-cli is refused, and SIGHUP reloads the
# certificate without dropping the Connector. Every wait is bounded.
# First, imd refuses to start with a certificate that does not load.
set -eu
IMNODE=$1
IMD=$2
CLI=$3
CERTS=$4
. "$(dirname "$0")/lib.sh"
imnode_scratch tls
"$CERTS" "$dir/certs" >/dev/null
secret=0123456789abcdef0123456789abcdef

# A certificate that does not load stops imd at start (status 2, the file
# named) before it takes any slot.
rc=0
"$IMD" --db "$dir/imd.db" --secret "$secret" --port 0 --slots 16 \
	--tls-cert "$dir/certs/nonexistent.pem" \
	--tls-key "$dir/certs/server.key" >"$dir/imd.err" 2>&1 || rc=$?
[ "$rc" -eq 2 ] && grep -q "tls: $dir/certs/nonexistent.pem" "$dir/imd.err" &&
	grep -q "stopping before taking any slot" "$dir/imd.err" || {
	cat "$dir/imd.err"; echo "imd: status $rc for a missing certificate"
	exit 1; }
P="--slots 16 --heartbeat-ms 100 --refresh-ms 100 --balance-ms 100"
P="$P --store $dir/s.db --log-level debug"

wait_for() { # up to 10 s for CMD to succeed
	i=0
	until "$@"; do
		i=$((i + 1))
		[ $i -lt 200 ] || return 1
		sleep 0.05
	done
}

# shellcheck disable=SC2086
"$IMNODE" --role router --name router-1 --listen 127.0.0.1:0 \
	--port-file "$dir/router.port" $P >"$dir/router.log" 2>&1 &
pids="$pids $!"
wait_for test -s "$dir/router.port"
# shellcheck disable=SC2086
"$IMNODE" --role chatter --name chatter-1 --listen - $P \
	>"$dir/chatter.log" 2>&1 &
pids="$pids $!"
# A Connector registers its real port: take a free one.
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
# shellcheck disable=SC2086
"$IMNODE" --role connector --name connector-1 --listen "127.0.0.1:$port" \
	--port-file "$dir/cn.port" --secret "$secret" \
	--tls-cert "$dir/certs/server.pem" --tls-key "$dir/certs/server.key" \
	$P >"$dir/cn.log" 2>&1 &
cn=$!
pids="$pids $cn"
wait_for test -s "$dir/cn.port" || { cat "$dir/cn.log"; exit 1; }
wait_for grep -q "connector connector-1 .* up" "$dir/cn.log"
tok1=$("$IMD" token 1 --secret "$secret")
tok2=$("$IMD" token 2 --secret "$secret")
tls="--port $port --tls --ca $dir/certs/ca.pem"

# shellcheck disable=SC2086
printf '/create tls 2\n/wait\n/send 1 hello over tls\n/wait\n' |
	timeout 30 "$CLI" $tls --token "$tok1" --linger-ms 5000 \
		>"$dir/u1.out" 2>&1 || true
grep -q "^ack 1 " "$dir/u1.out" || {
	cat "$dir/u1.out" "$dir/cn.log"; echo "user 1 got no ack"; exit 1; }
# shellcheck disable=SC2086
printf '/list\n/open 1\n' |
	timeout 30 "$CLI" $tls --token "$tok2" --linger-ms 1000 \
		--wait-ms 500 >"$dir/u2.out" 2>&1 || true
grep -q "hello over tls" "$dir/u2.out" || {
	cat "$dir/u2.out"; echo "user 2 did not get the message"; exit 1; }

# Plain text on the TLS port: closed, never logged in.
printf '/list\n' | timeout 10 "$CLI" --port "$port" --token "$tok2" \
	--linger-ms 300 --wait-ms 1000 >"$dir/plain.out" 2>&1 || true
if grep -q "^login" "$dir/plain.out"; then
	cat "$dir/plain.out"; echo "a plain client logged in"; exit 1
fi
grep -q "tls handshake failed: wrong version number" "$dir/cn.log"

# SIGHUP: reloaded, the Connector goes on.
kill -HUP "$cn"
wait_for grep -q "SIGHUP: TLS certificate .* reloaded" "$dir/cn.log"
kill -0 "$cn"
# shellcheck disable=SC2086
printf '/list\n' | timeout 30 "$CLI" $tls --token "$tok2" --linger-ms 300 \
	>"$dir/u2b.out" 2>&1 || true
grep -q "^login 2 " "$dir/u2b.out" || {
	cat "$dir/u2b.out"; echo "no login after SIGHUP"; exit 1; }
echo ok
