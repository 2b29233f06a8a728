# catherd: see README.md. Targets: build test demo bench fuzz generate-check.
GO      ?= go
BIN     := bin/catherd
FUZZTIME ?= 10s

.PHONY: build test demo bench fuzz lint

build:
	$(GO) build -o $(BIN) ./cmd/catherd

# The whole suite: lint, unit and integration tests (race detector on),
# the real-Tomcat suite (needs root: network namespaces), and a short run
# of every fuzz target over its seed corpus.
test: build
	scripts/deps.sh test
	$(MAKE) lint
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# Every fuzz target, each for FUZZTIME, starting from its seed corpus
# (testdata/fuzz/ and the f.Add seeds; plain `go test` replays those too).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzSessionParsing$$' -fuzztime $(FUZZTIME) ./session/
	$(GO) test -run '^$$' -fuzz '^FuzzContainerStream$$' -fuzztime $(FUZZTIME) ./ajp/
	$(GO) test -run '^$$' -fuzz '^FuzzForwardRequest$$' -fuzztime $(FUZZTIME) ./ajp/

demo: build
	scripts/deps.sh demo
	CATHERD=$(BIN) scripts/demo.sh

bench: build
	scripts/deps.sh bench
	CATHERD=$(BIN) scripts/bench/run.sh
