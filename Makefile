# Spool — the two commands of the README, and the heavier targets.
#   make run    install what is missing, build (release), start Redis + API + worker
#   make test   install what is missing, run every test (unit, scripts, end to end,
#               deploy manifests, short chaos, no compiler warnings); about 7 minutes on 2 cores
#   make chaos  the full fault-injection suite; writes docs/reliability.md
#   make bench  the benchmark; writes docs/benchmarks.md
.PHONY: run test deps validators build build-release warnings unit e2e deploy-test chaos-short chaos bench clean

SWIFT ?= swift
PYTEST ?= python3 -m pytest -q -p no:cacheprovider
VENV_PY = .spool/venv/bin/python

deps:
	@bash scripts/install-deps.sh

validators: deps
	@bash scripts/install-validators.sh

build-release: deps
	$(SWIFT) build -c release

build: deps
	$(SWIFT) build --build-tests

run: build-release
	@bash scripts/run.sh

# A release build from scratch of Spool's own sources has zero compiler
# warnings (dependencies' warnings are theirs). Part of make test.
warnings: deps
	@bash scripts/check-warnings.sh

# Unit tests and the Lua scripts against a throwaway redis-server (XCTest).
unit: build
	$(SWIFT) test --skip-build

# The real binaries over HTTP against a throwaway redis-server (pytest),
# checked with outside tools (curl, promtool).
e2e: build
	@bash scripts/install-test-tools.sh
	cd Tests/e2e && SPOOL_BIN_DIR=$(CURDIR)/.build/debug $(PYTEST)

# Dockerfile, compose file and Kubernetes manifests, validated offline.
deploy-test: validators
	$(VENV_PY) -m pytest -q -p no:cacheprovider Tests/deploy

# Crashes, restarts, outages and hostile input: the short form runs in make test.
chaos-short: build
	cd Tests/chaos && CHAOS_SCALE=short SPOOL_BIN_DIR=$(CURDIR)/.build/debug $(PYTEST)

chaos: build
	cd Tests/chaos && CHAOS_SCALE=full SPOOL_BIN_DIR=$(CURDIR)/.build/debug $(PYTEST)
	python3 scripts/write-reliability-doc.py

# The benchmark measures the binaries as the container image ships them:
# release, with the Swift runtime linked in statically.
bench: deps
	@command -v wrk >/dev/null || apt-get install -y -qq wrk
	@# Sidekiq (Debian's 6.4), measured in the same run as the peer to compare with.
	@command -v sidekiq >/dev/null || apt-get install -y -qq ruby-sidekiq || echo "ruby-sidekiq not installed: the Sidekiq comparison is skipped"
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-static
	SPOOL_BIN_DIR=$(CURDIR)/.build-static/release python3 scripts/bench.py

test: unit e2e deploy-test chaos-short warnings

clean:
	rm -rf .build .build-static .spool
