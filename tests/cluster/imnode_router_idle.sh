#!/bin/sh
# Issue 13: idle TCP peers that never say Hello must not keep a real node
# out of a Router. A real `imnode --role router` (default limits: 256
# connections, 64 per address, Hello within 2 s) has every connection slot
# taken by idle connections from 127.0.0.2-5; then a real Chatter starts:
#  - it connects and says Hello at once (the oldest idle one makes room);
#  - every idle connection is closed within the Hello deadline, and the
#    Router says why in its log;
#  - a 65th connection from one address is refused.
# Every wait is bounded.
set -eu
IMNODE=$1
PYTHON=${3:-python3}
. "$(dirname "$0")/lib.sh"
imnode_scratch idle

# wait_for CMD...: up to 10 s for CMD to succeed
wait_for() {
	i=0
	until "$@"; do
		i=$((i + 1))
		[ $i -lt 200 ] || return 1
		sleep 0.05
	done
}

P="--slots 16 --heartbeat-ms 100 --refresh-ms 100 --balance-ms 100"
P="$P --dead-after-ms 600 --log-level info"
# shellcheck disable=SC2086
"$IMNODE" --role router --name router-1 --store "$dir/s.db" $P \
	--listen 127.0.0.1:0 --port-file "$dir/port" >"$dir/router.log" 2>&1 &
pids="$pids $!"
wait_for test -s "$dir/port" || {
	cat "$dir/router.log"; echo "router did not start"; exit 1; }
port=$(cat "$dir/port")

# The idle peers: 4 addresses x 64 connections = the Router's 256, plus
# one more from the first address (over its 64). They report when every
# connection of theirs has been closed by the Router, and how long it took.
cat >"$dir/idle.py" <<'EOF'
import socket, sys, time
port = int(sys.argv[1])
socks = []
for host in range(2, 6):
    for _ in range(64):
        s = socket.socket()
        s.bind(("127.0.0.%d" % host, 0))
        s.connect(("127.0.0.1", port))
        socks.append(s)
extra = socket.socket()
extra.bind(("127.0.0.2", 0))
extra.connect(("127.0.0.1", port))
print("held", len(socks), flush=True)
t0 = time.monotonic()
open(sys.argv[2], "w").close()  # the Chatter may start now

def closed(s, wait):
    s.settimeout(wait)
    try:
        return s.recv(1) == b""
    except ConnectionResetError:
        return True
    except socket.timeout:
        return False

print("extra refused" if closed(extra, 1.0) else "extra kept", flush=True)
open_ = list(socks)
while open_ and time.monotonic() - t0 < 8.0:
    open_ = [s for s in open_ if not closed(s, 0.01)]
print("idle closed %d of %d in %.1f s" %
      (len(socks) - len(open_), len(socks), time.monotonic() - t0),
      flush=True)
sys.exit(0 if not open_ else 1)
EOF
"$PYTHON" "$dir/idle.py" "$port" "$dir/full" >"$dir/idle.out" 2>&1 &
idle=$!
pids="$pids $idle"
wait_for test -e "$dir/full" || {
	cat "$dir/idle.out"; echo "could not fill the router"; exit 1; }

# shellcheck disable=SC2086
"$IMNODE" --role chatter --name chatter-1 --store "$dir/s.db" $P \
	--listen - >"$dir/chatter.log" 2>&1 &
pids="$pids $!"
wait_for grep -q "router .* took our Hello" "$dir/chatter.log" || {
	cat "$dir/chatter.log" "$dir/router.log" "$dir/idle.out"
	echo "the chatter could not reach the full router"; exit 1; }

rc=0
wait "$idle" || rc=$?
cat "$dir/idle.out"
[ "$rc" -eq 0 ] || {
	cat "$dir/router.log"; echo "idle connections were kept"; exit 1; }
grep -q "extra refused" "$dir/idle.out" || {
	echo "a 65th connection from one address was kept"; exit 1; }
grep -q "not admitted (no Hello) within 2000 ms" "$dir/router.log" || {
	cat "$dir/router.log"; echo "no log line for the closed ones"; exit 1; }
# The chatter is still connected: it never lost the Router.
if grep -q "router .* lost" "$dir/chatter.log"; then
	cat "$dir/chatter.log"; echo "the chatter lost the router"; exit 1
fi
echo "ok"
