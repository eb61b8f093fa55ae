# Shared by the imnode shell tests: a scratch folder in $dir and the
# processes the test starts in $pids, all killed (-9) and the folder
# removed on exit, whatever the exit. Usage: . lib.sh; imnode_scratch NAME
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
