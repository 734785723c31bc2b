#!/usr/bin/env bash
# systemd-analyze verify on systemd/edgeway.service, as CI and `make
# systemd-verify` run it. verify insists that ExecStart's binary exists and
# is executable on this host; rather than put a stub at /usr/bin/edgeway,
# it checks a copy whose ExecStart points at a stub in a temporary
# directory — every other line is the unit as shipped. Also prints the
# unit's `systemd-analyze security` exposure score.
set -euo pipefail
cd "$(dirname "$0")/.."
command -v systemd-analyze >/dev/null || { echo "systemd-verify: systemd-analyze missing (Debian: apt-get install systemd)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
printf '#!/bin/sh\nexit 0\n' > "$tmp/edgeway"
chmod +x "$tmp/edgeway"
sed "s#/usr/bin/edgeway#$tmp/edgeway#g" systemd/edgeway.service > "$tmp/edgeway.service"
# verify prints problems and may still exit 0 for some of them: any output
# is a failure.
out=$(systemd-analyze verify "$tmp/edgeway.service" 2>&1) || { echo "$out" >&2; exit 1; }
if [ -n "$out" ]; then echo "$out" >&2; exit 1; fi
echo "systemd-analyze verify systemd/edgeway.service: ok ($(systemd-analyze --version | head -1))"
systemd-analyze security --offline=yes "$tmp/edgeway.service" 2>/dev/null | tail -1 | sed 's/^→ /systemd-analyze security: /' || true
