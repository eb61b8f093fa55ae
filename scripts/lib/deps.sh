# Sourced by scripts/*: install the Debian packages libim needs, once.
IM_DEB_PACKAGES="meson ninja-build pkg-config gcc libc6-dev python3
 libsqlite3-dev sqlite3 libcmocka-dev libev-dev libnanopb-dev nanopb
 python3-protobuf libpq-dev postgresql postgresql-contrib libssl-dev
 openssl iproute2 procps"

im_install_deps() {
	local missing=() p
	for p in $IM_DEB_PACKAGES; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null |
			grep -q "install ok installed" || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	echo "installing: ${missing[*]}"
	local sudo=""
	[ "$(id -u)" -eq 0 ] || sudo="sudo"
	$sudo apt-get update -qq
	DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq \
		--no-install-recommends "${missing[@]}" >/dev/null
}
