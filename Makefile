# Strata — the two commands that matter: `make run` and `make test`.

GO      ?= go
BIN     := bin/strata
PKGS    := ./...
FUZZTIME ?= 30s
# Everything `make test` builds or installs is cached under $HOME (Go's
# build and module caches) so a second run is fast.

.PHONY: all build run test test-short bench fuzz lint tools images clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/strata

## run: one broker on 127.0.0.1:9092 with embedded etcd, data in ./strata-data
run: build
	./$(BIN) serve

## tools: install what the tests need that Go does not build (Debian's kcat)
tools:
	@./scripts/install-tools.sh

## images: the local images docker-compose.yml runs (nothing is pulled)
images:
	@./scripts/build-images.sh

## test: the whole suite — unit, fuzz seeds, end-to-end with real clients
test: tools build
	STRATA_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 30m $(PKGS)

test-short: build
	STRATA_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -short $(PKGS)

## bench: BENCHMARKS.md figures; results in bench-results/
bench: build
	./$(BIN) bench $(BENCHFLAGS)

## fuzz: run every fuzz target for FUZZTIME each
fuzz:
	@set -e; for f in $$(grep -rl --include='*_test.go' '^func Fuzz' . | xargs -n1 dirname | sort -u); do \
	  for t in $$(grep -h '^func Fuzz' $$f/*_test.go | sed 's/func \(Fuzz[A-Za-z0-9_]*\).*/\1/'); do \
	    echo "== $$f $$t"; $(GO) test -run '^$$' -fuzz "^$$t$$" -fuzztime $(FUZZTIME) $$f; \
	  done; \
	done

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

clean:
	rm -rf bin bench-results
