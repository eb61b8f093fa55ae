#!/bin/sh
# Build examples/custom-server against an INSTALLED libim: install the
# build into a temporary prefix, point pkg-config at it, build with the
# example's own Makefile, and run it on a fresh sqlite file.
# Usage: examples.sh BUILD_DIR SOURCE_DIR SANITIZE(none|address,...)
set -eu
build=$1 src=$2 san=${3:-none}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

meson install -C "$build" --destdir "$tmp/root" --no-rebuild --quiet \
	>"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; exit 1; }
pc=$(find "$tmp/root" -name im.pc | head -n 1)
if [ -z "$pc" ]; then
	echo "examples: no im.pc installed"
	exit 1
fi
lib=$(find "$tmp/root" -name 'libim.so' | head -n 1)

export PKG_CONFIG_PATH="$(dirname "$pc")"
export PKG_CONFIG_SYSROOT_DIR="$tmp/root"
cflags="-std=c11 -Wall -Wextra -Werror -pedantic -O2"
if [ "$san" != none ] && [ -n "$san" ]; then
	cflags="$cflags -fsanitize=$san"
fi
echo "pkg-config --cflags --libs im: $(pkg-config --cflags --libs im)"
make -s -f "$src/examples/custom-server/Makefile" \
	SRCDIR="$src/examples/custom-server" OUT="$tmp/custom-server" \
	CFLAGS="$cflags"

LD_LIBRARY_PATH="$(dirname "$lib")" "$tmp/custom-server" "$tmp/demo.db" \
	>"$tmp/out" 2>&1 || { cat "$tmp/out"; exit 1; }
cat "$tmp/out"
grep -q '^retry seq=.* dup=1$' "$tmp/out"
[ "$(grep -c '^msg ' "$tmp/out")" -eq 3 ]
grep -q '^conv .* unread=3 ' "$tmp/out"
echo "examples: custom-server built against the installed libim and ran"
