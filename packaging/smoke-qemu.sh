#!/usr/bin/env bash
# `edgeway version` and a start/stop smoke test of the armv7 and arm64
# binaries from `make cross`, under Debian's qemu-user-static.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p dist/work
go build -o dist/work/smoke ./packaging/smoke
fail=0
for pair in armv7:qemu-arm-static arm64:qemu-aarch64-static; do
	arch=${pair%%:*} qemu=${pair#*:}
	bin=dist/edgeway-linux-$arch
	[ -x "$bin" ] || { echo "smoke-qemu: $bin missing: run make cross" >&2; exit 1; }
	command -v "$qemu" >/dev/null || { echo "smoke-qemu: $qemu missing (apt-get install qemu-user-static)" >&2; exit 1; }
	dist/work/smoke -bin "$bin" -wrap "$qemu" -timeout 120s ${SMOKE_FLAGS:-} || fail=1
done
exit $fail
