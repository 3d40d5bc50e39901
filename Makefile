# Stork build, test and demo targets. `make test` is what CI runs.
GO        ?= go
BIN       := bin/stork
CORE_PKGS := ./metadata/... ./transfer/... ./share/... ./node/...
# What `stork version` prints: GOFLAGS may hold -buildvcs=false, so the
# commit is passed explicitly too.
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null)
LDFLAGS   := -X main.version=$(VERSION) -X main.commit=$(COMMIT)
FUZZTIME  ?= 30s

.PHONY: all build test test-short race lint vet fmt-check demo bench bench-get bench-repo bench-share bench-swarm bench-crowd soak fuzz clean sim sim-report validate validate-crowd real-debs testbed testbed-clean

all: build

build:
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN) ./cmd/stork

# The full suite: formatting, vet, every test, and the race detector on the
# core packages (short mode, so the largest round trips run once, without it).
test: fmt-check vet
	$(GO) test -count=1 -timeout 20m ./...
	$(GO) test -count=1 -race -short -timeout 20m $(CORE_PKGS)

test-short:
	$(GO) test -short ./...

race:
	$(GO) test -race $(CORE_PKGS)

fmt-check:
	@out="$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))"; \
	if [ -n "$$out" ]; then echo "gofmt needed on:"; echo "$$out"; exit 1; fi

vet:
	$(GO) vet ./...

lint: fmt-check vet
	@if command -v staticcheck >/dev/null 2>&1; then staticcheck ./...; \
	else echo "staticcheck not installed (go install honnef.co/go/tools/cmd/staticcheck@2025.1.1); skipped"; fi

# End to end on loopback with embedded defaults: see scripts in testdata/demo.
demo: build
	bash testdata/demo/demo.sh $(BIN)

# Benchmarks report ratios against a baseline measured in the same run.
bench:
	$(GO) test -run='^$$' -bench=. -benchtime=3x ./metadata/ ./transfer/...

bench-get:
	$(GO) test -run='^$$' -bench=BenchmarkGetVsCurl -benchtime=3x ./transfer/origin/

# The repository at distribution scale (issue 24), one run: 60,000 small
# packages published in batches, one more add, 1,000 single adds, prune,
# what an up-to-date client downloads after one change and a cold `stork
# get`, through `stork repo serve` and nginx. Sizes: STORK_BENCH_REPO_* env
# (see BenchmarkRepoScale). A 2,000-package instance runs in make test.
bench-repo:
	$(GO) test -run='^$$' -bench=BenchmarkRepoScale -benchtime=1x -timeout 60m ./cmd/stork/

# The sharing figures (disk, page cache, install time, concurrent installs),
# one fixed-size experiment per benchmark. Mount-based parts need root and
# skip without it.
bench-share:
	$(GO) test -run='^$$' -bench=. -benchtime=1x -timeout 30m ./share/
	$(GO) test -run='^$$' -bench='Install|Thousand' -benchtime=1x -timeout 30m ./node/

# The swarm figures, one run, side by side (testdata/bench/swarm.sh): two
# in-process daemons against a raw libp2p stream, many small files against
# one file, then 8 daemon processes on loopback against 8 `stork get` and
# aria2c BitTorrent. Results: $(BENCH_SWARM_DIR)/bench-swarm.txt.
BENCH_SWARM_DIR ?= /tmp/stork-bench-swarm
bench-swarm: build
	mkdir -p $(BENCH_SWARM_DIR)
	bash -o pipefail -c "$(GO) test -run='^$$' -bench='TwoNode|ManySmall' -benchtime=1x -timeout 30m ./node/ | tee $(BENCH_SWARM_DIR)/go-bench.txt"
	bash testdata/bench/swarm.sh $(BIN) $(BENCH_SWARM_DIR)

# Flash crowds (issue 23): 24 in-process daemons on loopback fetch one
# package (64 KiB to 64 MiB) at once and staggered, with cooperative origin
# fetching and with today's policy; then an upgrade of 300 packages with
# Debian's sizes (node/bench_crowd_test.go).
bench-crowd:
	$(GO) test -v -run='^$$' -bench='FlashCrowd|Upgrade' -benchtime=1x -timeout 60m ./node/

# kill -9 during download, STORK_SOAK_TRIALS times.
soak:
	STORK_SOAK_TRIALS=200 $(GO) test -count=1 -run TestKillNineDuringDownload -timeout 30m ./cmd/stork/

# Each fuzz target in turn, FUZZTIME each.
fuzz:
	@for pkg in ./metadata ./transfer/origin ./transfer/swarm ./node; do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo "== $$pkg $$f"; \
			$(GO) test -run='^$$' -fuzz="^$$f$$" -fuzztime=$(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

clean:
	rm -rf bin

# Simulations: the checked-in report, and the simulator's tests.
# sim-report writes the whole of simulations/REPORT.md: the first sweep
# writes the report (targets, figures, plots in simulations/report/, the
# scenario) and the next appends the section of the upgrade workload
# (simulations/testdata/upgrade.json: 300 packages of Debian's sizes) at
# 100, 1,000 and 10,000 hosts. Nothing in it is written by hand. The
# upgrade's sweep took 5 min 41 s on 2 cores shared with other work
# (2026-12-05, docs/figures.md), nearly all of it the 10,000-host
# swarm-coop run: 76 M events, a 4.0 GiB peak heap, 4.1 GiB resident;
# SIM_UPGRADE_HOSTS=100,1000 leaves it out, and SIM_UPGRADE_GOENV gives
# it room.
SIM_UPGRADE_HOSTS ?= 100,1000,10000
SIM_UPGRADE_GOENV ?= GOMEMLIMIT=16GiB
sim-report: build
	$(BIN) sim sweep --hosts 10,100,1000,10000 --report simulations/REPORT.md
	$(SIM_UPGRADE_GOENV) $(BIN) sim sweep simulations/testdata/upgrade.json --hosts $(SIM_UPGRADE_HOSTS) \
		--strategy origin-per-host --strategy swarm-coop --append-report simulations/REPORT.md

sim:
	$(GO) test -count=1 ./simulations/

# The simulator's honesty check (testdata/validate/validate.sh, docs/validation.md):
# one small scenario run by real daemons on loopback (origin and uploads
# rate-capped) and by `stork sim run`, figures and gaps side by side.
# Results: $(VALIDATE_DIR)/validate.md. Sizes and rates: STORK_VALIDATE_* env.
VALIDATE_DIR ?= /tmp/stork-validate
validate: build
	bash testdata/validate/validate.sh $(BIN) $(VALIDATE_DIR)

# The issue 23 scenarios, daemons and simulator side by side
# (cmd/stork/validate_crowd_test.go, docs/validation.md): 24 rate-capped
# daemon processes fetch one package per size (64K..64M) and an upgrade of
# 300 packages of Debian's sizes, with and without cooperative fetching,
# and the simulator runs the same scenarios, its start-up and (for the
# upgrade, on the machine's shared cores) CPU terms measured in the same
# run and a calibration fetch before it (SIMVAL_MEASURED=1; empty: the
# STORK_SIMVAL_* settings alone). SIMVAL=crowd or upgrade for one;
# settings: STORK_SIMVAL_* env. Tables and the origin's request logs:
# $(SIMVAL_DIR).
SIMVAL          ?= crowd,upgrade
SIMVAL_DIR      ?= /tmp/stork-simval
SIMVAL_MEASURED ?= 1
validate-crowd:
	STORK_SIMVAL=$(SIMVAL) STORK_SIMVAL_OUT=$(SIMVAL_DIR) STORK_SIMVAL_MEASURED=$(SIMVAL_MEASURED) $(GO) test -count=1 -v -run 'TestValidate(Crowd|Upgrade)$$' -timeout 120m ./cmd/stork/

# Real Debian packages (testdata/real-debs/real-debs.sh): about 30 packages
# (libc6, coreutils, systemd, tzdata, openssl, python3, perl, git, gcc,
# firefox-esr, setuid tools, ...) and their dependencies, downloaded with
# apt-get download, published with their control data, installed into a
# VM's bind view and compared with dpkg-deb -x. Needs root, apt and the
# network; not part of `make test`. Report: $(REAL_DEBS_DIR)/real-debs.md.
REAL_DEBS_DIR ?= /tmp/stork-real-debs
real-debs:
	bash testdata/real-debs/real-debs.sh $(REAL_DEBS_DIR)

# The testbed (docs/testbed.md; root): 3 sites of 4 hosts in network
# namespaces on this machine, tc-shaped links (hosts 1 Gbit/s, site uplinks
# and the origin 100 Mbit/s), 20 ms between sites; a 256 MiB package fetched
# over HTTP alone, by the swarm without and with sites, and under four
# faults; the simulator on the same scenario beside. The package is made
# of the .deb files `make real-debs` downloaded where they are
# ($(REAL_DEBS_DIR)/debs), random bytes otherwise. Results:
# $(TESTBED_DIR)/REPORT.md. Options (stork testbed run --help):
# TESTBED_ARGS='--sites 3,2 --size 32M --runs http,swarm,link-down'.
TESTBED_DIR  ?= /tmp/stork-testbed
TESTBED_DEBS ?= $(wildcard $(REAL_DEBS_DIR)/debs)
TESTBED_ARGS ?=
testbed: build
	$(BIN) testbed run --out $(TESTBED_DIR) $(if $(TESTBED_DEBS),--debs $(TESTBED_DEBS)) $(TESTBED_ARGS)

# Remove what testbed runs that died left behind (their namespaces).
testbed-clean: build
	$(BIN) testbed clean
