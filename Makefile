# Spool — the two commands of the README, and the heavier targets.
#   make run    install what is missing, build (release), start Redis + API + worker
#   make test   install what is missing, run every test (unit, scripts, end to end)
.PHONY: run test deps build build-release unit e2e clean

SWIFT ?= swift
PYTEST ?= python3 -m pytest

deps:
	@bash scripts/install-deps.sh

build-release: deps
	$(SWIFT) build -c release

build: deps
	$(SWIFT) build --build-tests

run: build-release
	@bash scripts/run.sh

# Unit tests and the Lua scripts against a throwaway redis-server (XCTest).
unit: build
	$(SWIFT) test --skip-build

# The real binaries over HTTP against a throwaway redis-server (pytest).
e2e: build
	cd Tests/e2e && SPOOL_BIN_DIR=$(CURDIR)/.build/debug $(PYTEST) -q -p no:cacheprovider

test: unit e2e

clean:
	rm -rf .build .spool
