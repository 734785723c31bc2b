# edgeway — build, run, test.
GO      ?= go
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT  ?= $(shell git rev-parse --short HEAD 2>/dev/null || echo unknown)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
BUILD   := CGO_ENABLED=0 $(GO) build -trimpath -ldflags "$(LDFLAGS)"
CONFIG  ?= configs/edgeway.toml

# GOOS/GOARCH/GOARM triples for `make cross`.
CROSS := linux/arm/6 linux/arm/7 linux/arm64/- linux/amd64/-

.PHONY: all build run test lint cross clean

all: build

build:
	$(BUILD) -o bin/edgeway ./cmd/edgeway

# Starts the agent on the example config; its data goes to ./data.
run: build
	mkdir -p data
	./bin/edgeway run -c $(CONFIG)

# Every test, with the race detector (needs cgo: gcc).
test:
	$(GO) test -race -count=1 -timeout 20m ./...

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
