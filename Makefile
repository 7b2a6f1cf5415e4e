# Tandem: `make demo` and `make test` do everything on a fresh Debian machine.
SHELL := /bin/bash
GO ?= go
BIN := bin
export CGO_ENABLED := 1

.PHONY: all deps build demo test bench lint fmt clean

all: build

## deps: install the Debian packages that are missing (idempotent)
deps:
	@bash scripts/deps.sh

## build: compile every binary into bin/
build: deps
	@mkdir -p $(BIN)
	$(GO) build -o $(BIN)/ ./uplink/cmd/... ./firmware/cmd/...

## demo: switcher + test-tone publisher on two local links; Ctrl-C stops all
demo: build
	@bash scripts/demo.sh

## test: every test, race detector on; needs root for the network lab
test: deps lint
	$(GO) test -race -count=1 -timeout 20m ./...

## bench: print the benchmark figures (not a pass/fail gate)
bench: build
	@bash scripts/bench.sh

## lint: formatting and vet must be clean
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [[ -n "$$out" ]]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

clean:
	rm -rf $(BIN)
