#!/bin/sh
# The installed libraries as an outsider sees them: install the build into
# a temporary prefix, point pkg-config at it and, with nothing but what
# pkg-config says,
#  - build examples/custom-server (its own Makefile, pkg-config im) and
#    run it on a fresh sqlite file;
#  - build examples/bot with pkg-config im-client and run it;
#  - link both again against the static libim.a / libim-client.a with
#    pkg-config --static, which is what Libs.private / Requires.private
#    are for.
# The .pc files themselves must be clean: no absolute paths, no flag twice,
# and im.pc free of libev and nanopb (those are libim-client's).
# Usage: examples.sh BUILD_DIR SOURCE_DIR SANITIZE(none|address,...)
set -eu
build=$1 src=$2 san=${3:-none}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fail() {
	echo "examples: $*"
	exit 1
}

meson install -C "$build" --destdir "$tmp/root" --no-rebuild --quiet \
	>"$tmp/install.log" 2>&1 || { cat "$tmp/install.log"; exit 1; }
pc=$(find "$tmp/root" -name im.pc | head -n 1)
[ -n "$pc" ] || fail "no im.pc installed"
pcdir=$(dirname "$pc")
[ -f "$pcdir/im-client.pc" ] || fail "no im-client.pc beside im.pc"
[ -f "$(find "$tmp/root" -path '*/include/im/client.h' | head -n 1)" ] ||
	fail "im/client.h not installed"

# Each Libs/Libs.private/Requires line: no absolute path (the prefix comes
# from ${libdir}), no flag listed twice.
for f in "$pcdir/im.pc" "$pcdir/im-client.pc"; do
	sed -n 's/^\(Libs\|Libs.private\|Requires\|Requires.private\): *//p' \
		"$f" | tr ' ,' '\n\n' | grep -v '^$' >"$tmp/flags" || true
	if grep -q '^/' "$tmp/flags"; then
		cat "$f"
		fail "$(basename "$f") lists an absolute path"
	fi
	if [ -n "$(grep -v '^[<>=0-9.]*$' "$tmp/flags" | sort | uniq -d)" ]; then
		cat "$f"
		fail "$(basename "$f") lists a flag twice"
	fi
done
if grep -Eq 'nanopb|-lev\b' "$pcdir/im.pc"; then
	cat "$pcdir/im.pc"
	fail "im.pc mentions libev or nanopb (they belong to im-client.pc)"
fi

export PKG_CONFIG_PATH="$pcdir"
export PKG_CONFIG_SYSROOT_DIR="$tmp/root"
libdir="$tmp/root$(pkg-config --variable=libdir im | sed "s|^$tmp/root||")"
[ -f "$libdir/libim.so" ] && [ -f "$libdir/libim.a" ] &&
	[ -f "$libdir/libim-client.so" ] && [ -f "$libdir/libim-client.a" ] ||
	fail "libim / libim-client (.so and .a) not all in $libdir"
san_flags=
if [ "$san" != none ] && [ -n "$san" ]; then
	san_flags="-fsanitize=$san"
fi
cflags="-std=c11 -Wall -Wextra -Werror -pedantic -O2 $san_flags"
export LD_LIBRARY_PATH="$libdir"

# Linking PKG's archive: its Libs and Libs.private (depth 2 is the package
# alone), the -l of libim/libim-client as .a; what it requires the same way
# if it is ours, else as the shared library it is (plain --libs: the
# system's own private libs, e.g. libpq's -lpgcommon, are not installed).
static_libs() (
	pkg-config --static --libs --maximum-traverse-depth=2 "$1" |
		tr ' ' '\n' | sed \
		-e 's/^-lim$/-Wl,-Bstatic -lim -Wl,-Bdynamic/' \
		-e 's/^-lim-client$/-Wl,-Bstatic -lim-client -Wl,-Bdynamic/' |
		tr '\n' ' '
	for r in $( (pkg-config --print-requires "$1"
		pkg-config --print-requires-private "$1") | awk '{print $1}'); do
		case $r in
		im | im-client) static_libs "$r" ;;
		*) pkg-config --libs "$r" ;;
		esac
	done
)

# custom-server: the core and the sqlite store (pkg-config im).
echo "pkg-config --cflags --libs im: $(pkg-config --cflags --libs im)"
make -s -f "$src/examples/custom-server/Makefile" \
	SRCDIR="$src/examples/custom-server" OUT="$tmp/custom-server" \
	CFLAGS="$cflags"
# shellcheck disable=SC2046
cc $cflags -o "$tmp/custom-server-static" \
	"$src/examples/custom-server/main.c" \
	$(pkg-config --cflags im) $(static_libs im)
if readelf -d "$tmp/custom-server-static" | grep -q 'libim\.so'; then
	fail "custom-server-static still needs libim.so"
fi
for exe in custom-server custom-server-static; do
	rm -f "$tmp/demo.db"
	"$tmp/$exe" "$tmp/demo.db" >"$tmp/out" 2>&1 ||
		{ cat "$tmp/out"; fail "$exe failed"; }
	grep -q '^retry seq=.* dup=1$' "$tmp/out" &&
		[ "$(grep -c '^msg ' "$tmp/out")" -eq 3 ] &&
		grep -q '^conv .* unread=3 ' "$tmp/out" ||
		{ cat "$tmp/out"; fail "$exe: unexpected output"; }
done
cat "$tmp/out"

# The bot: the client driver (pkg-config im-client), run against a port
# nobody listens on: it must start, try to connect and stop on its timer.
echo "pkg-config --cflags --libs im-client: $(pkg-config --cflags --libs im-client)"
# The project's own flags for it: callbacks ignore parameters.
bot_cflags="$cflags -Wno-unused-parameter -D_POSIX_C_SOURCE=200809L"
# shellcheck disable=SC2046
cc $bot_cflags -o "$tmp/bot" "$src/examples/bot/main.c" \
	$(pkg-config --cflags --libs im-client)
# shellcheck disable=SC2046
cc $bot_cflags -o "$tmp/bot-static" \
	"$src/examples/bot/main.c" \
	$(pkg-config --cflags im-client) $(static_libs im-client)
if readelf -d "$tmp/bot-static" | grep -q 'libim\(-client\)\?\.so'; then
	fail "bot-static still needs a libim shared library"
fi
for exe in bot bot-static; do
	"$tmp/$exe" --port 1 --token 1.2.x --timeout-ms 200 >"$tmp/out" 2>&1 ||
		{ cat "$tmp/out"; fail "$exe failed"; }
	grep -q 'connect 127.0.0.1:1' "$tmp/out" ||
		{ cat "$tmp/out"; fail "$exe: no connect attempt"; }
done
echo "examples: custom-server and bot built with pkg-config im / im-client" \
	"against the installed libraries (shared and static) and ran"
