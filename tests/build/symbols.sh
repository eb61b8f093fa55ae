#!/bin/sh
# A shared library exports only names with its prefix (the rest is hidden)
# and needs no library it must not: libim is the core without libev or
# nanopb, libim-client exports the client API only (no copy of the core).
# Usage: symbols.sh LIB PREFIX [NOT_NEEDED_REGEX]
set -eu
lib=$1 prefix=$2 not_needed=${3:-}
bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' |
	grep -v "^$prefix" | grep -v '^_' || true)
if [ -n "$bad" ]; then
	echo "$(basename "$lib"): symbols exported without the $prefix prefix:"
	echo "$bad"
	exit 1
fi
if [ -n "$not_needed" ]; then
	needed=$(readelf -d "$lib" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
	if echo "$needed" | grep -E "$not_needed"; then
		echo "$(basename "$lib") must not need the above"
		exit 1
	fi
fi
n=$(nm -D --defined-only "$lib" | grep -c " $prefix" || true)
echo "symbols: $(basename "$lib"): $n exported, all $prefix*"
[ "$n" -gt 0 ]
