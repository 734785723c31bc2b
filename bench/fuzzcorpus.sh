#!/usr/bin/env bash
# Grows the checked-in fuzz corpora the fault suite's malformed flood
# sends (bench/fault TestMalformedFlood) and plain `go test` replays:
# runs each codec's fuzz target for FUZZTIME, then copies inputs the
# fuzzer found interesting from $(go env GOCACHE)/fuzz/<pkg>/<target>/
# into protocols/<p>/testdata/fuzz/<target>/.
#
#   FUZZTIME      per target (default 30s; "0" copies what the cache holds)
#   FUZZPARALLEL  fuzz workers (default 1: the box is shared)
#   FUZZMAX       files per target, existing ones included (default 150)
#   FUZZMAXSIZE   bytes per file; larger inputs are skipped (default 2048)
#   FUZZTARGETS   "pkg:Target ..." to do only some
#
# Files already checked in are never removed (one may be a crash's
# reproducer). New ones are taken in name order; the fuzzer names a file
# by a hash of its content, so that is a fixed pseudo-random sample, not
# a bias to the smallest inputs.
set -euo pipefail
cd "$(dirname "$0")/.."

FUZZTIME=${FUZZTIME:-30s}
FUZZPARALLEL=${FUZZPARALLEL:-1}
FUZZMAX=${FUZZMAX:-150}
FUZZMAXSIZE=${FUZZMAXSIZE:-2048}
FUZZTARGETS=${FUZZTARGETS:-"mqttsn:FuzzDecode mqttsn:FuzzSerialFramer coap:FuzzDecode
  lwm2m:FuzzTLV lwm2m:FuzzSenMLCBOR lwm2m:FuzzContent stomp:FuzzParseFrame
  jt808:FuzzFrame gbt32960:FuzzFrame"}

mod=$(go list -m)
cache=$(go env GOCACHE)/fuzz

for pt in $FUZZTARGETS; do
	p=${pt%%:*} t=${pt#*:}
	if [ "$FUZZTIME" != 0 ]; then
		echo "== $p $t: fuzzing for $FUZZTIME"
		go test -run '^$' -fuzz "^$t\$" -fuzztime "$FUZZTIME" -parallel "$FUZZPARALLEL" "./protocols/$p"
	fi
	src=$cache/$mod/protocols/$p/$t
	dst=protocols/$p/testdata/fuzz/$t
	mkdir -p "$dst"
	have=$(find "$dst" -type f | wc -l)
	added=0
	if [ -d "$src" ]; then
		for f in $(find "$src" -type f -size -"$((FUZZMAXSIZE + 1))"c -printf '%f\n' | sort); do
			[ "$have" -ge "$FUZZMAX" ] && break
			[ -e "$dst/$f" ] && continue
			cp "$src/$f" "$dst/$f"
			have=$((have + 1)) added=$((added + 1))
		done
	fi
	echo "   $dst: $have files (+$added), $(du -sb "$dst" | cut -f1) bytes"
done
echo "total: $(cat protocols/*/testdata/fuzz/*/* 2>/dev/null | wc -c) bytes in $(ls protocols/*/testdata/fuzz/*/* 2>/dev/null | wc -l) files"
