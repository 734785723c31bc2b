#!/usr/bin/env bash
# Makes dist/edgeway-<version>-vendor.tar.xz, the vendor/ tree the Yocto
# recipe compiles from without network: `go mod vendor` into a temporary
# directory (the repository keeps no vendor/), packed reproducibly.
#   VERIFY=1 also builds cmd/edgeway from a copy of the tracked sources
#   plus that vendor/ with the module proxy off, as bitbake would.
set -euo pipefail
cd "$(dirname "$0")/.."
version=$(tr -d ' \n' < packaging/VERSION)
out=dist/edgeway-$version-vendor.tar.xz
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go mod vendor -o "$tmp/vendor"
epoch=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || date +%s)}
mkdir -p dist
tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$epoch" \
	-C "$tmp" -cf - vendor | xz -T1 -9 > "$out"
echo "built $out ($(stat -c %s "$out") bytes, $(grep -c '^# ' "$tmp/vendor/modules.txt") modules)"

if [ "${VERIFY:-0}" = 1 ]; then
	src=$tmp/src
	mkdir -p "$src"
	git ls-files -z --cached --others --exclude-standard | xargs -0 cp --parents -t "$src" 2>/dev/null || true
	tar -C "$src" -xJf "$out"
	(cd "$src" && GOFLAGS=-mod=vendor GOPROXY=off GOTOOLCHAIN=local CGO_ENABLED=0 \
		go build -trimpath -o "$tmp/edgeway" ./cmd/edgeway)
	echo "offline build from $out: ok ($("$tmp/edgeway" version))"
fi
