#!/bin/sh
# Every public header must compile alone, as pedantic C11 and as C++.
# Usage: headers.sh INCLUDE_DIR CC CXX
set -eu
inc=$1 cc=$2 cxx=${3:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail=0
for h in $(cd "$inc" && find im -name '*.h' | sort); do
	printf '#include <%s>\nint im_header_check_%s;\n' "$h" \
		"$(echo "$h" | tr -c 'a-zA-Z0-9\n' _)" >"$tmp/t.c"
	if ! $cc -std=c11 -pedantic -Wall -Wextra -Werror -I"$inc" \
		-c "$tmp/t.c" -o "$tmp/t.o"; then
		echo "not self-contained as C11: $h"
		fail=1
	fi
	if [ -n "$cxx" ] && command -v "$cxx" >/dev/null 2>&1; then
		cp "$tmp/t.c" "$tmp/t.cc"
		if ! $cxx -std=c++11 -Wall -Wextra -Werror -I"$inc" \
			-c "$tmp/t.cc" -o "$tmp/t.o"; then
			echo "does not compile as C++: $h"
			fail=1
		fi
	fi
done
[ $fail -eq 0 ] && echo "headers: all self-contained"
exit $fail
