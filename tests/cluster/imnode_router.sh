#!/bin/sh
# imnode --role router as a real process: it listens, registers itself in
# the store (imctl sees it alive at the bound port), and stops cleanly on
# SIGTERM. Every wait is bounded.
set -eu
IMNODE=$1
IMCTL=$2
dir=$(mktemp -d /tmp/imnode-test.XXXXXX)
pid=
cleanup() {
	[ -n "$pid" ] && kill "$pid" 2>/dev/null || true
	rm -rf "$dir"
}
trap cleanup EXIT

"$IMNODE" --role chatterbox --name x --listen 127.0.0.1:0 \
	--store "$dir/s.db" 2>"$dir/err" && { echo "bad role accepted"; exit 1; }
grep -q "not available" "$dir/err"

"$IMNODE" --role router --name router-1 --listen 127.0.0.1:0 \
	--store "$dir/s.db" --port-file "$dir/port" 2>"$dir/log" &
pid=$!
i=0
while [ ! -s "$dir/port" ] && [ $i -lt 200 ]; do
	sleep 0.05
	i=$((i + 1))
done
[ -s "$dir/port" ] || { cat "$dir/log"; echo "no port file"; exit 1; }
port=$(cat "$dir/port")
out=$("$IMCTL" --store "$dir/s.db" nodes)
echo "$out"
echo "$out" | grep -Eq "^router-1 +router +127\.0\.0\.1:$port .* alive$" || {
	echo "router-1 not listed alive at port $port"
	exit 1
}
kill -TERM "$pid"
rc=0
wait "$pid" || rc=$?
pid=
[ "$rc" -eq 0 ] || { cat "$dir/log"; echo "exit status $rc"; exit 1; }
grep -q "stopping" "$dir/log"
echo "ok"
