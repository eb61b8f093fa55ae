# shellcheck shell=bash disable=SC2154 # df_name, cli, port, token: the caller's
# Shared by diskfull.sh (imd on sqlite) and diskfull-pg.sh (an imnode
# cluster on PostgreSQL), sourced, not run: the 8 MiB tmpfs, the im-cli
# that fills it and the checks of its answers, the recovery once space
# returns, and "every acked message is stored".
#
# The caller sets df_name (its messages' prefix) and cli, defines
# df_cleanup_more (its own teardown, run after its processes are
# stopped and before the unmount), calls df_setup, and once its server
# runs sets port and token.

# tmp, disk (the tmpfs) and pids (killed at exit); exit 77 without root.
df_setup() {
	tmp=$(mktemp -d)
	disk=$tmp/disk
	mkdir "$disk"
	pids=()
	trap df_cleanup EXIT
	if [ "$(id -u)" != 0 ] ||
		! mount -t tmpfs -o size=8m tmpfs "$disk" 2>/dev/null; then
		echo "$df_name: cannot mount a tmpfs (needs root), skipped"
		exit 77
	fi
}

df_cleanup() {
	local p
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	df_cleanup_more
	umount "$disk" 2>/dev/null || true
	rm -rf "$tmp"
}

fail() {
	local f
	echo "FAIL: $*"
	for f in "$tmp"/*.out "$tmp"/*.log; do
		[ -f "$f" ] && { echo "--- $f"; tail -n 40 "$f" | cut -c1-300; }
	done
	df -k "$disk" || true
	exit 1
}

run_cli() { # NAME: stdin = commands
	timeout 20 "$cli" --port "$port" --token "$token" --linger-ms 10000 \
		>"$tmp/$1.out" 2>&1 || fail "im-cli $1 exited $?"
}

# gid: a new group of users 1 and 2.
df_create_group() {
	echo "/create full 2" | run_cli create
	gid=$(awk '/^created /{print $2}' "$tmp/create.out")
	[ -n "$gid" ] || fail "no group created"
}

# BODY: leave about 2 MiB free, then send 1,000 messages of BODY (3 MB
# or more as stored): the disk fills part way. Not less free space: one
# batch, a whole client outbox of 256 sends, is ~800 KB of sqlite WAL
# (as much again at its checkpoint) or ~1 MiB of PostgreSQL pages; with
# 1 MiB free as few as 18 sends were acked before the disk was full.
# Every send is answered: acked, or refused "store full" (nothing
# else). Sets fill_ms, the filling im-cli's time.
df_fill() {
	local avail i n=1000 t0 acked full other
	avail=$(df -k --output=avail "$disk" | tail -n 1)
	dd if=/dev/zero of="$disk/filler" bs=1k count=$((avail - 2048)) \
		status=none 2>/dev/null || true
	for i in $(seq 1 $n); do echo "/send $gid $i $1"; done >"$tmp/sends"
	echo /wait >>"$tmp/sends"
	t0=$(date +%s%N)
	run_cli fill <"$tmp/sends"
	fill_ms=$((($(date +%s%N) - t0) / 1000000))
	acked=$(grep -c "^ack $gid " "$tmp/fill.out" || true)
	full=$(grep -c "^error send IM_ENOSPC group=$gid store full\$" \
		"$tmp/fill.out" || true)
	other=$(grep "^error" "$tmp/fill.out" | grep -vc "IM_ENOSPC" || true)
	echo "$df_name: $acked acked, $full refused 'store full'," \
		"$other other errors, $fill_ms ms"
	[ "$acked" -gt 0 ] || fail "nothing was acked before the disk was full"
	[ "$full" -gt 0 ] || fail "no send was refused with 'store full'"
	[ "$other" -eq 0 ] || fail "errors other than store full"
	[ $((acked + full)) -eq $n ] || fail "$acked + $full answers for $n sends"
}

# LOG (the writer's): space returns, and within the pause (at most 1 s)
# sends are acked again and LOG says the store has space again.
df_space_returns() {
	local i
	rm -f "$disk/filler"
	sleep 1.2
	for i in $(seq 1 20); do echo "/send $gid after $i"; done >"$tmp/again"
	echo /wait >>"$tmp/again"
	run_cli again <"$tmp/again"
	[ "$(grep -c "^ack $gid " "$tmp/again.out")" -eq 20 ] ||
		fail "sends after space returned were not all acked"
	grep -q "store has space again" "$1" || fail "no recovery line"
}

# stdin: the seqs stored in group gid. Every acked message is among them,
# at the seq it was acked with.
df_all_acked_stored() {
	local missing
	sort -n >"$tmp/stored"
	cat "$tmp/fill.out" "$tmp/again.out" |
		awk -v g="$gid" '$1 == "ack" && $2 == g {print $3}' |
		sort -n >"$tmp/acked"
	missing=$(comm -23 "$tmp/acked" "$tmp/stored" | wc -l)
	[ "$missing" -eq 0 ] || fail "$missing acked messages are not stored"
	echo "$df_name: all $(wc -l <"$tmp/acked") acked messages stored"
}
