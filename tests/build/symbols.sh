#!/bin/sh
# The shared library exports only im_* symbols (the rest is hidden).
set -eu
lib=$1
bad=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBRVW]$/ {print $3}' |
	grep -v '^im_' | grep -v '^_' || true)
if [ -n "$bad" ]; then
	echo "symbols exported without the im_ prefix:"
	echo "$bad"
	exit 1
fi
n=$(nm -D --defined-only "$lib" | grep -c ' im_' || true)
echo "symbols: $n exported, all im_*"
[ "$n" -gt 0 ]
