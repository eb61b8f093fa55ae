#!/bin/sh
# The test hooks (meson option test_hooks, IM_TEST_HOOKS) are in the
# server binaries exactly when the build says so: a test build has the
# Chatter's held commit (servers/roles/chatter/test_hold.c), a release
# build (bench/, scripts/run) has no byte of it: neither its code (the
# symbol, where a symbol table is left) nor its text (the variables it
# reads).
# Usage: test_hooks.sh yes|no BINARY...
set -eu
want=$1
shift
for bin in "$@"; do
	has=no
	if grep -q IM_TEST_HOLD_RELEASE "$bin"; then
		has=yes
	fi
	sym=$(nm "$bin" 2>/dev/null | grep -c ' chatter__test_run_commit$' || true)
	if [ "$want" = no ] && [ "$sym" -gt 0 ]; then
		has=yes
	fi
	if [ "$want" = yes ] && [ "$sym" -eq 0 ] &&
		nm "$bin" 2>/dev/null | grep -q ' chatter_create$'; then
		has="no (a symbol table without chatter__test_run_commit)"
	fi
	if [ "$has" != "$want" ]; then
		echo "test_hooks: $(basename "$bin"): hooks expected $want," \
			"found $has"
		exit 1
	fi
	echo "test_hooks: $(basename "$bin"): hooks $want, as built"
done
