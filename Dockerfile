# Spool: one image holding both binaries, spool-api (the default command) and
# spool-worker (`docker run IMAGE spool-worker`).
#
#   docker build -t spool:dev .
#   docker run --rm -p 8080:8080 -e REDIS_URL=redis://host:6379 \
#     -v "$PWD/clients.json:/run/secrets/api-clients.json:ro" -e SPOOL_AUTH_FILE=/run/secrets/api-clients.json spool:dev
#   docker run --rm --init -e REDIS_URL=redis://host:6379 spool:dev spool-worker
#
# (--init, like compose's `init: true`, puts a tiny init as PID 1 that reaps the
# orphaned children of handler commands; on Kubernetes, worker.yaml shares the pod's
# process namespace so the pause container does it.)
#
# Build stage: the official Swift image for Debian 12 (bookworm), the same Debian
# release the runtime stage uses, so the C libraries linked here are the ones
# installed there. The Swift runtime is linked statically (--static-swift-stdlib):
# the runtime image needs no Swift toolchain, only hiredis, libevent and OpenSSL.
# Tests/deploy/test_dockerfile.py builds the binaries the same way, runs ldd on them
# and checks that every library they load comes from a package installed below or
# from debian:bookworm-slim itself.

FROM swift:6.3.1-bookworm AS build

# Versions are pinned to Debian 12's (the `*` keeps security updates, deb12uN, in).
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libhiredis-dev=0.14.1-* \
      libevent-dev=2.1.12-stable-8* \
      libssl-dev=3.0.* \
      pkg-config=1.8.1-* \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src

# Dependencies first, so a change in Sources/ does not fetch them again.
# (Package.resolved is optional: the glob matches Package.swift alone too.)
COPY Package.* ./
RUN swift package resolve

COPY Sources ./Sources
# Package.swift also declares the unit-test target, and SwiftPM will not load a
# package whose target folder is missing ("overlapping sources"), even to build
# only the binaries: the tests' sources come along (they are not built).
COPY Tests/SharedTests ./Tests/SharedTests
# Debug info stripped (8 MB of the image), the symbol table kept: a crash's
# backtrace still names its functions.
RUN swift build -c release --static-swift-stdlib \
 && install -D -m 0755 .build/release/spool-api /out/spool-api \
 && install -D -m 0755 .build/release/spool-worker /out/spool-worker \
 && strip --strip-debug /out/spool-api /out/spool-worker


FROM debian:bookworm-slim AS runtime

# Only what the binaries load (ldd): hiredis, libevent (its core, extra, pthreads
# and openssl libraries) and OpenSSL's libssl3 (token digests, TLS). libc6, libgcc-s1
# and libstdc++6 are part of bookworm-slim.
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      libhiredis0.14=0.14.1-* \
      libevent-2.1-7=2.1.12-stable-8* \
      libevent-core-2.1-7=2.1.12-stable-8* \
      libevent-pthreads-2.1-7=2.1.12-stable-8* \
      libevent-openssl-2.1-7=2.1.12-stable-8* \
      libssl3=3.0.* \
 && rm -rf /var/lib/apt/lists/*

# A fixed, numeric non-root user, so Kubernetes' runAsNonRoot can verify it.
RUN groupadd --system --gid 10001 spool \
 && useradd --system --no-log-init --uid 10001 --gid spool --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin spool

COPY --from=build /out/spool-api /out/spool-worker /usr/local/bin/

# In a container the API must listen on every interface (its own default is loopback).
# REDIS_URL has no useful default here: set it at `docker run` / in compose / in k8s.
ENV SPOOL_API_ADDR=0.0.0.0:8080 \
    SPOOL_LOG_FORMAT=json

USER 10001:10001
WORKDIR /tmp
EXPOSE 8080

# spool-worker is `docker run IMAGE spool-worker` (or `command:` in compose/k8s). Give
# the worker a stop timeout above SPOOL_SHUTDOWN_GRACE_MS (25 s by default), for
# example `docker stop -t 35`, so running jobs can finish or be handed back
# (README "Shutdown").
CMD ["spool-api"]
