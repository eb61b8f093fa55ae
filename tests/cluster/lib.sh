# Shared by the imnode shell tests: a scratch folder in $dir and the
# processes the test starts in $pids, all killed (-9) and the folder
# removed on exit, whatever the exit (imnode_scratch NAME), and how a test
# fails (imnode_fail). Usage: . lib.sh; imnode_scratch NAME
imnode_scratch() {
	dir=$(mktemp -d "/tmp/imnode-$1.XXXXXX")
	pids=
	trap imnode_cleanup EXIT
}

imnode_cleanup() {
	for p in $pids; do
		kill -9 "$p" 2>/dev/null || true
	done
	rm -rf "$dir"
}

# imnode_fail MSG: show the group slots ($IMCTL on $store), every log and
# output in $dir, then "FAIL: MSG", and exit 1.
imnode_fail() {
	"$IMCTL" --store "$store" --slots 16 slots || true
	for f in "$dir"/*.log "$dir"/*.out; do
		[ -f "$f" ] && { echo "--- $f"; cat "$f"; }
	done
	echo "FAIL: $*"
	exit 1
}
