# Spool — the two commands of the README, and the heavier targets.
#   make run    install what is missing, build (release), start Redis + API + worker
#   make test   install what is missing, run every test (unit, scripts, end to end,
#               deploy manifests offline and for real in containers, short chaos, no
#               compiler warnings; the e2e suite once more on a Redis Cluster, with ACLs and
#               over TLS); about 24 minutes on 2 cores
#   make chaos  the full fault-injection suite; writes docs/reliability.md
#   make bench  the benchmark; writes docs/benchmarks.md
#   make image  the container image, built from the Dockerfile with podman
.PHONY: run test deps validators build build-release warnings unit e2e e2e-cluster e2e-acl e2e-tls deploy-test chaos-short chaos bench bench-cluster bench-security bench-streaming bench-flow bench-ir bench-scale bench-cost bench-latency clean image deploy-e2e

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

# The same suite against a Redis Cluster (3 primaries, 3 replicas on loopback)
# instead of one redis-server; tests that need a server of their own (restarts,
# passwords, replicas) are skipped, each with its reason.
# Warm handlers do the same on any Redis (their limit back-off is in
# test_limits), and a limit's arithmetic (rate, budget) and a queue's group
# turns are the same Lua either way: those run on one Redis only (where the
# claiming call takes the limits' slots itself); the cluster run keeps what
# crosses slots (the worker calling a limit's keys apart from its queues'),
# so make test stays under 25 minutes.
CLUSTER_SKIP = --ignore=test_warm_handlers.py --deselect test_limits.py::test_rate_limit_over_ten_seconds \
	--deselect test_limits.py::test_units_budget_charges_declared_cost_and_settles_reported_usage \
	--deselect test_groups.py::test_a_small_tenant_is_not_stuck_behind_a_big_backlog
e2e-cluster: build
	@bash scripts/install-test-tools.sh
	cd Tests/e2e && SPOOL_TEST_REDIS=cluster SPOOL_BIN_DIR=$(CURDIR)/.build/debug $(PYTEST) -rs $(CLUSTER_SKIP)

# The HTTP contract with the API and workers logged in as the least-privileged
# Redis ACL user the README's Security section gives (read from the README):
# a command Spool needs and the README forgets fails here with NOPERM.
CONTRACT_SUITE = test_lifecycle.py test_queues_and_dead.py test_cancel_and_progress.py test_scheduling_and_waiting.py \
	test_workers_and_retention.py test_auth.py test_api_errors.py test_metrics.py test_crash_recovery.py
# Streams use Redis commands nothing else does (XADD, XRANGE, ...): the ACL
# run checks them too. Over TLS they take the relay every other command
# takes, so that run leaves them out (make test stays under 25 minutes).
# Limits and groups use commands of their own too (ZCOUNT, HSCAN, ...): their
# routes, refusals, parks, wake-ups and listings run as the ACL user.
ACL_FLOW = test_limits.py::test_limit_routes_define_read_list_delete \
	test_limits.py::test_concurrency_limit_holds_across_four_workers_and_unlimited_jobs_pass \
	test_groups.py::test_grouped_jobs_cancel_and_count_and_bad_groups_are_refused
e2e-acl: build
	@bash scripts/install-test-tools.sh
	cd Tests/e2e && SPOOL_TEST_REDIS=acl SPOOL_BIN_DIR=$(CURDIR)/.build/debug $(PYTEST) $(CONTRACT_SUITE) test_streaming.py $(ACL_FLOW)

# The same contract over TLS: redis-server with --tls-port only (a CA made by the
# test), API and workers on rediss:// through their in-process TLS relay.
e2e-tls: build
	@bash scripts/install-test-tools.sh
	cd Tests/e2e && SPOOL_TEST_REDIS=tls SPOOL_BIN_DIR=$(CURDIR)/.build/debug $(PYTEST) $(CONTRACT_SUITE) test_tls_redis.py

# Dockerfile, compose file and Kubernetes manifests, validated offline.
deploy-test: validators
	$(VENV_PY) -m pytest -q -p no:cacheprovider Tests/deploy

# The image from the project's Dockerfile, built with podman (installed and set
# up when missing; the base images are made locally when no registry answers).
image:
	@bash scripts/install-podman.sh
	@bash scripts/make-base-images.sh
	@bash scripts/build-image.sh

# The image, the compose file and the Kubernetes manifests run for real.
deploy-e2e: image validators
	cd Tests/containers && ../../$(VENV_PY) -m pytest -q -p no:cacheprovider -s

# Crashes, restarts, outages and hostile input: the short form runs in make test.
chaos-short: build
	cd Tests/chaos && CHAOS_SCALE=short SPOOL_BIN_DIR=$(CURDIR)/.build/debug $(PYTEST)

chaos: build
	cd Tests/chaos && CHAOS_SCALE=full SPOOL_BIN_DIR=$(CURDIR)/.build/debug $(PYTEST)
	python3 scripts/write-reliability-doc.py

# The benchmark measures the binaries as the container image ships them:
# release, with the Swift runtime linked in statically.
bench: deps validators
	@command -v wrk >/dev/null || apt-get install -y -qq wrk
	@# Sidekiq (Debian's 6.4), measured in the same run as the peer to compare with.
	@command -v sidekiq >/dev/null || apt-get install -y -qq ruby-sidekiq || echo "ruby-sidekiq not installed: the Sidekiq comparison is skipped"
	@# nginx (Debian's), the floor the API's CPU per request is compared with.
	@command -v nginx >/dev/null || apt-get install -y -qq nginx-light || echo "nginx not installed: the cost scenario is skipped"
	@# valgrind (Debian's): Redis instructions per job, plain, limited and grouped (scenario 13).
	@command -v valgrind >/dev/null || apt-get install -y -qq valgrind || echo "valgrind not installed: Redis instructions are not counted"
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-static
	SPOOL_BIN_DIR=$(CURDIR)/.build-static/release python3 scripts/bench.py

# Scenario 10 of make bench alone: Redis CPU per job on each primary of a
# 3-primary cluster against one Redis (.spool/bench-cluster.json).
bench-cluster: deps
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-static
	SPOOL_BIN_DIR=$(CURDIR)/.build-static/release python3 scripts/bench_cluster.py

# Scenario 11 of make bench alone: HTTPS and API tokens against plain HTTP on
# concurrent enqueue (.spool/bench-security.json).
bench-security: deps
	@command -v wrk >/dev/null || apt-get install -y -qq wrk
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-static
	SPOOL_BIN_DIR=$(CURDIR)/.build-static/release python3 scripts/bench_security.py

# Scenario 12 of make bench alone: event streams (chunk delay, 1,000 idle
# streams, a flooding handler; .spool/bench-streaming.json).
bench-streaming: deps
	@command -v wrk >/dev/null || apt-get install -y -qq wrk
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-static
	SPOOL_BIN_DIR=$(CURDIR)/.build-static/release python3 scripts/bench_streaming.py

# Scenario 13 of make bench alone: limits and groups on the drain, and a
# Python handler one-shot, persistent and over HTTP (.spool/bench-flow.json).
bench-flow: deps validators
	@command -v valgrind >/dev/null || apt-get install -y -qq valgrind || echo "valgrind not installed: Redis instructions are not counted"
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-static
	SPOOL_BIN_DIR=$(CURDIR)/.build-static/release python3 scripts/bench_flow.py

# What a limit that does not bind, and groups, cost Redis, in instructions
# (callgrind): one client replays the worker's complete-and-fetch calls,
# plain, limited and grouped; noise-free where jobs/s on a shared machine is not
# (.spool/bench-ir.json; scripts/bench_ir.py says how).
bench-ir: deps
	@command -v valgrind >/dev/null || apt-get install -y -qq valgrind
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-static
	SPOOL_BIN_DIR=$(CURDIR)/.build-static/release python3 scripts/bench_ir.py

# Scenario 14 of make bench alone: a 1,000,000-job drain per 100,000-job
# slice, and enqueue and drain with 1,000,000 jobs pending in another
# priority (.spool/bench-scale.json).
bench-scale: deps
	@command -v wrk >/dev/null || apt-get install -y -qq wrk
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-static
	SPOOL_BIN_DIR=$(CURDIR)/.build-static/release python3 scripts/bench_scale.py

# Scenario 15 of make bench alone: CPU per job against the floors (nginx's
# static 201, a bare LPUSH; .spool/bench-cost.json).
bench-cost: deps
	@command -v wrk >/dev/null || apt-get install -y -qq wrk
	@command -v nginx >/dev/null || apt-get install -y -qq nginx-light
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-static
	SPOOL_BIN_DIR=$(CURDIR)/.build-static/release python3 scripts/bench_cost.py

# Scenario 16 of make bench alone: a client's enqueue call to the handler's
# start, Spool against Sidekiq (.spool/bench-latency.json).
bench-latency: deps validators
	@command -v sidekiq >/dev/null || apt-get install -y -qq ruby-sidekiq || echo "ruby-sidekiq not installed: Spool alone"
	$(SWIFT) build -c release --static-swift-stdlib --scratch-path .build-static
	SPOOL_BIN_DIR=$(CURDIR)/.build-static/release python3 scripts/bench_latency.py

test: unit e2e e2e-cluster e2e-acl e2e-tls deploy-test chaos-short deploy-e2e warnings

clean:
	rm -rf .build .build-static .spool
