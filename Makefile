# catherd: see README.md. Targets: build test demo deb soak bench bench-xdp bench-idle fuzz generate generate-check.
GO      ?= go
BIN     := bin/catherd
# The version and revision catherd reports (catherd version, the
# catherd_build_info metric, the admin API); scripts/version.sh says how.
VERSION  ?= $(shell scripts/version.sh)
REVISION ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS  := -X github.com/catherd/catherd/userspace/version.stamped=$(VERSION) \
            -X github.com/catherd/catherd/userspace/version.stampedRevision=$(REVISION)
# A count of executions, not a duration: with a duration, Go 1.26's fuzz
# coordinator can fail a clean run with "context deadline exceeded" when
# time runs out mid-execution (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 200000x

.PHONY: build test demo deb bench bench-xdp bench-idle fuzz lint generate generate-check soak

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/catherd

# The whole suite: lint, unit and integration tests (race detector on),
# the real-Tomcat suite (needs root: network namespaces), and a short run
# of every fuzz target over its seed corpus.
test: build
	scripts/deps.sh test
	$(MAKE) lint
	$(MAKE) generate-check
	$(GO) test -race -count=1 -timeout 20m ./...
	$(MAKE) fuzz

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...

# The XDP program is compiled by bpf2go (clang) into userspace/xdp; its
# output is committed so that `go build` needs no clang.
generate:
	$(GO) generate ./userspace/xdp/

# Fails when the committed bpf2go output does not match bpf/ (CI runs it).
generate-check: generate
	@git diff --exit-code --stat -- userspace/xdp/ || { echo "bpf2go output is stale: run make generate and commit"; exit 1; }

# Every fuzz target, each for FUZZTIME executions, starting from its seed corpus
# (testdata/fuzz/ and the f.Add seeds; plain `go test` replays those too).
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzSessionParsing$$' -fuzztime $(FUZZTIME) ./session/
	$(GO) test -run '^$$' -fuzz '^FuzzContainerStream$$' -fuzztime $(FUZZTIME) ./ajp/
	$(GO) test -run '^$$' -fuzz '^FuzzForwardRequest$$' -fuzztime $(FUZZTIME) ./ajp/
	$(GO) test -run '^$$' -fuzz '^FuzzDatapath$$' -fuzztime $(FUZZTIME) ./userspace/xdp/
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./userspace/membership/
	$(GO) test -run '^$$' -fuzz '^FuzzParseRequest$$' -fuzztime $(FUZZTIME) ./userspace/httpwire/
	$(GO) test -run '^$$' -fuzz '^FuzzParseResponse$$' -fuzztime $(FUZZTIME) ./userspace/httpwire/
	$(GO) test -run '^$$' -fuzz '^FuzzChunkScanner$$' -fuzztime $(FUZZTIME) ./userspace/httpwire/
	$(GO) test -run '^$$' -fuzz '^FuzzFrameGuard$$' -fuzztime $(FUZZTIME) ./userspace/proxy/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeMessage$$' -fuzztime $(FUZZTIME) ./userspace/peers/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeBatch$$' -fuzztime $(FUZZTIME) ./userspace/peers/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeRecord$$' -fuzztime $(FUZZTIME) ./userspace/peers/
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeTouch$$' -fuzztime $(FUZZTIME) ./userspace/peers/

# The Debian package, built with dpkg-deb: catherd_<version>_<arch>.deb here.
deb:
	scripts/deb/build.sh .

demo: build
	scripts/deps.sh demo
	$(GO) build -o bin/l4demo ./scripts/l4demo
	CATHERD=$(BIN) L4DEMO=bin/l4demo scripts/demo.sh

# Five phases, each a side-by-side run with its own results file: static
# nginx backends over HTTP; Tomcat over HTTP; Tomcat over AJP (catherd vs
# Apache mod_proxy_ajp and mod_jk); 8 MiB downloads and 8 MiB uploads
# (CPU per MiB). See BENCHMARKS.md.
bench: build
	scripts/deps.sh bench
	CATHERD=$(BIN) BENCH_OUT=bench-static.md scripts/bench/run.sh
	CATHERD=$(BIN) BENCH_OUT=bench-tomcat.md scripts/bench/run.sh --tomcat
	CATHERD=$(BIN) BENCH_OUT=bench-ajp.md scripts/bench/run.sh --ajp
	CATHERD=$(BIN) BENCH_OUT=bench-large.md BENCH_FRONTENDS="nginx haproxy catherd" BENCH_PATH=/big.bin BENCH_CONNS=4 BENCH_MIB_PER_REQ=8 scripts/bench/run.sh
	CATHERD=$(BIN) BENCH_OUT=bench-upload.md BENCH_FRONTENDS="nginx haproxy catherd" BENCH_UPLOAD_MIB=8 BENCH_CONNS=4 BENCH_MIB_PER_REQ=8 scripts/bench/run.sh

# The XDP datapath: ns per packet by BPF_PROG_TEST_RUN beside a bare
# XDP_PASS program (steering and the membership filter), a UDP flood
# through namespaces steered by catherd and by nftables DNAT, and catherd's
# CPU under a beacon flood with the filter dropping it or not (needs root).
# Results in bench-xdp.md.
bench-xdp: build
	scripts/deps.sh bench-xdp
	$(GO) test -run '^$$' -bench '^BenchmarkPerPacket$$' -benchtime 1x ./userspace/xdp/ | tee bench-xdp.md
	$(GO) run ./scripts/bench/xdp -catherd $(BIN) | tee -a bench-xdp.md
	$(GO) run ./scripts/bench/beaconflood -catherd $(BIN) | tee -a bench-xdp.md

# Memory per idle client connection: IDLE_CONNS kept-alive connections
# to catherd, nginx and HAProxy in turn, each front end's RSS growth per
# connection side by side (loopback; raises its own RLIMIT_NOFILE, so run
# as root for 10,000). Results in bench-idle.md; see BENCHMARKS.md.
IDLE_CONNS ?= 10000
bench-idle: build
	scripts/deps.sh bench-idle
	$(GO) run ./scripts/bench/idleconns -catherd $(BIN) -conns $(IDLE_CONNS) | tee bench-idle.md

# A long run against a real 3-node Tomcat cluster under mixed load, with
# nodes killed and restarted, operator actions and catherd restarted
# (SIGUSR2) at random: fails on a failed request, a lost session update or
# growth of catherd's goroutines, memory or open files (needs root). The
# suite runs the same test for 90 s. See BENCHMARKS.md.
SOAK_DURATION ?= 10m
soak: build
	scripts/deps.sh test
	bash -o pipefail -c "CATHERD_SOAK=$(SOAK_DURATION) $(GO) test -count=1 -v -run '^TestTomcatSoak$$' -timeout 60m ./cmd/catherd/ | tee soak.txt"

# Session safety through a kill -9, a node's return and a rolling restart:
# the same load and checks (scripts/failover) behind two catherd instances
# and behind two Apache mod_proxy_balancer instances, each on a fresh
# 3-node Tomcat DeltaManager cluster (needs root). See BENCHMARKS.md.
FAILOVER_RUNS ?= 3
.PHONY: failover-compare
failover-compare:
	scripts/deps.sh bench
	$(GO) run ./scripts/failover/compare -runs $(FAILOVER_RUNS) -md failover-compare.md

# The keepalived pair (issue 15): TestTierKeepalived's phases (the front
# end holding the VIP killed, a node killed, the front end back) behind a
# catherd tier of two and behind two Apache instances, each pair under the
# same keepalived, on a fresh rig each (needs root). See BENCHMARKS.md.
.PHONY: failover-compare-keepalived
failover-compare-keepalived:
	scripts/deps.sh bench
	$(GO) run ./scripts/failover/compare -scenario keepalived -runs $(FAILOVER_RUNS) -md failover-compare-keepalived.md
