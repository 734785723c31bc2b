#!/usr/bin/env bash
# Builds dist/edgeway_<version>_<arch>.deb for armhf, arm64 and amd64 from
# the binaries `make cross` left in dist/. nfpm is this repository's Go tool
# (packaging/tools/go.mod), built through the module proxy; nothing else is
# downloaded.
#
#   packaging/deb.sh [ARCH...]     default: armhf arm64 amd64
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
dist=$root/dist
arches=("$@")
((${#arches[@]})) || arches=(armhf arm64 amd64)

# Debian arch → the `make cross` binary. armhf takes the ARMv6 build:
# Raspberry Pi OS's armhf is ARMv6+VFP (Pi Zero/1), and ARMv6 code runs on
# every ARMv7 Debian armhf box too.
bin_for() {
	case $1 in
	armhf) echo "$dist/edgeway-linux-armv6" ;;
	arm64) echo "$dist/edgeway-linux-arm64" ;;
	amd64) echo "$dist/edgeway-linux-amd64" ;;
	*) echo "deb.sh: unknown architecture $1" >&2; return 1 ;;
	esac
}

deb_version() {
	local base tag stamp
	base=$(tr -d ' \n' < packaging/VERSION)
	tag=$(git describe --tags --exact-match HEAD 2>/dev/null || true)
	if [ "$tag" = "v$base" ] && [ -z "$(git status --porcelain 2>/dev/null)" ]; then
		echo "$base"
		return
	fi
	# Between releases: sorts below the release itself (~), above the
	# previous one, and names the commit.
	stamp=$(git log -1 --format=%cd --date=format:%Y%m%d 2>/dev/null || date -u +%Y%m%d)
	echo "${base}~git${stamp}.$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
}

export DEB_VERSION=${DEB_VERSION:-$(deb_version)}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}

# The packaged config is the example config with its data where the unit
# keeps it (StateDirectory=edgeway).
work=$dist/work
mkdir -p "$work"
sed 's|^data_dir = .*|data_dir = "/var/lib/edgeway"|' configs/edgeway.toml > "$work/edgeway.toml"
grep -q '^data_dir = "/var/lib/edgeway"$' "$work/edgeway.toml" || {
	echo "deb.sh: configs/edgeway.toml has no data_dir line to point at /var/lib/edgeway" >&2
	exit 1
}
export EDGEWAY_CONF=$work/edgeway.toml

nfpm=$work/nfpm
go -C packaging/tools build -o "$nfpm" github.com/goreleaser/nfpm/v2/cmd/nfpm

for arch in "${arches[@]}"; do
	bin=$(bin_for "$arch")
	[ -x "$bin" ] || { echo "deb.sh: $bin missing: run make cross first" >&2; exit 1; }
	export DEB_ARCH=$arch EDGEWAY_BIN=$bin
	out=$dist/edgeway_${DEB_VERSION}_${arch}.deb
	rm -f "$out"
	if ! log=$("$nfpm" package --config packaging/nfpm.yaml --packager deb --target "$out" 2>&1); then
		echo "$log" >&2
		exit 1
	fi
	echo "built $out ($(stat -c %s "$out") bytes)"
done
