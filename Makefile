# edgeway — build, run, test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
TAGS    ?=
BUILD   := CGO_ENABLED=0 $(GO) build -trimpath -tags "$(TAGS)" -ldflags "$(LDFLAGS)"
CONFIG  ?= configs/edgeway.toml

# GOOS/GOARCH/GOARM triples for `make cross`.
CROSS := linux/arm/6 linux/arm/7 linux/arm64/- linux/amd64/- linux/riscv64/-

.PHONY: all build run test lint cross clean

all: build

build:
	$(BUILD) -o bin/edgeway ./cmd/edgeway

# Starts the agent on the example config; its data goes to ./data.
run: build
	mkdir -p data
	./bin/edgeway run -c $(CONFIG)

# Every test, with the race detector (needs cgo: gcc). The fault suite
# runs at its CI size (-short: ~90 s); `make fault` runs it in full.
test:
	$(GO) test -race -count=1 -timeout 20m $$($(GO) list ./... | grep -v /bench/fault)
	$(GO) test -race -count=1 -timeout 10m -short ./bench/fault/

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	  if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags testkind ./cmd/...

cross:
	@mkdir -p dist
	@set -e; for t in $(CROSS); do \
	  os=$${t%%/*}; rest=$${t#*/}; arch=$${rest%%/*}; arm=$${rest#*/}; \
	  name=edgeway-$$os-$$arch; [ "$$arm" != "-" ] && name=$$name"v"$$arm; \
	  echo "build dist/$$name"; \
	  GOOS=$$os GOARCH=$$arch GOARM=$$( [ "$$arm" != "-" ] && echo $$arm ) $(BUILD) -o dist/$$name ./cmd/edgeway; \
	done
	cd dist && sha256sum edgeway-* > SHA256SUMS

clean:
	rm -rf bin dist

# ---- packaging (issue 11): .deb, footprint, qemu smoke test, unit, Yocto ----
# Scripts under packaging/; .ci/packaging.sh runs them all as CI does.
.PHONY: deb footprint smoke-qemu systemd-verify yocto-check vendor-tarball packaging-check

# dist/edgeway_<version>_{armhf,arm64,amd64}.deb (nfpm: packaging/tools).
deb: cross
	bash packaging/deb.sh

# Binary sizes per arch, the minimal build, idle RSS and start-up time.
footprint: cross
	bash packaging/footprint.sh

# `edgeway version` and start/stop of armv7 and arm64 under qemu-user-static.
smoke-qemu: cross
	bash packaging/smoke-qemu.sh

systemd-verify:
	bash packaging/systemd-verify.sh

yocto-check:
	bash packaging/yocto-check.sh

# dist/edgeway-<version>-vendor.tar.xz for the Yocto recipe.
vendor-tarball:
	bash packaging/vendor-tarball.sh

# Everything above plus install/remove of the amd64 .deb (root).
packaging-check:
	bash .ci/packaging.sh

# ---- bench (issue 12): load generator, scenarios, fault suite ----
# SCENARIO: steady|idle|outage|backlog|ceiling|all; BENCHFLAGS e.g.
# "-protocols mqttsn -clients 200 -rate 10 -duration 20s". Results go to
# bench/results/<scenario>-<time>/ (JSON, SVG charts, summary.md).
.PHONY: bench fault
SCENARIO   ?= steady
BENCHFLAGS ?=
bench:
	$(GO) run ./bench/cmd/edgeway-bench $(BENCHFLAGS) $(SCENARIO)

# Kill -9 loop, broker restarts, black-holed uplink, full store, malformed
# flood, soak; needs /usr/sbin/mosquitto (a failure, not a skip, with CI set).
# FAULTFLAGS=-short for the CI-sized run.
FAULTFLAGS ?=
fault:
	$(GO) test -race -count=1 -timeout 15m $(FAULTFLAGS) -v ./bench/fault/

# Grows the checked-in fuzz corpora (protocols/*/testdata/fuzz/) that the
# malformed flood sends and `go test` replays: FUZZTIME per target (30s),
# FUZZMAX files per target (150). See bench/README.md, Fault suite.
.PHONY: fuzz-corpus
fuzz-corpus:
	bash bench/fuzzcorpus.sh
