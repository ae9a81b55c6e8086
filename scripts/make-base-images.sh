#!/usr/bin/env bash
# Makes, with podman, the three base images the Dockerfile and compose file
# name, when they are missing and no registry can be reached (this machine
# kind has none): debian:bookworm-slim, swift:6.3.1-bookworm and redis:7.
# Idempotent: an image that exists (pulled or made before) is left alone.
#
# - debian:bookworm-slim: debootstrap's minbase of Debian 12, trimmed of docs,
#   man pages and locales the way the official slim image is.
# - redis:7: that image plus Debian's redis-server (7.0), data in /data, a
#   redis user of uid/gid 999 as in the official image (k8s/redis.yaml runs it
#   as 999), and, like the official image's entrypoint, protected mode off for
#   a `redis-server` started without a config file (a container's clients are
#   never on its loopback; set a password, as compose and k8s do).
# - swift:6.3.1-bookworm: that image plus the runtime dependencies of Swift's
#   toolchain (the official image's list, plus libncurses6), with the toolchain
#   on PATH at /opt/swift. The toolchain itself is not copied in: `make image`
#   mounts this machine's read-only at build time (podman build -v), with the
#   local Swift package mirror, so that the Dockerfile is the one a Docker
#   user builds with the official image.
set -euo pipefail
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
SWIFT_DIR=${SWIFT_DIR:-/opt/swift}
PACKAGES_DIR=${SWIFT_PACKAGES_DIR:-/opt/swift-packages}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

have() { podman image exists "$1"; }

if ! have debian:bookworm-slim; then
  echo "making debian:bookworm-slim (debootstrap minbase, ~30 s)"
  debootstrap --variant=minbase bookworm "$work/rootfs" "$MIRROR" >"$work/debootstrap.log" 2>&1 \
    || { tail -20 "$work/debootstrap.log"; exit 1; }
  root="$work/rootfs"
  # What the official slim image leaves out, and keeps out of later installs.
  cat > "$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'CFG'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-exclude /usr/share/lintian/*
CFG
  # As in the official image: apt keeps no downloaded packages and no package
  # cache after an install, so an image's `apt-get install` layer holds only
  # what it installed.
  cat > "$root/etc/apt/apt.conf.d/docker-clean" <<'CFG'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
CFG
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete 2>/dev/null || true
  rm -rf "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/* \
         "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/* \
         "$root"/var/log/*.log
  printf 'deb %s bookworm main\ndeb %s bookworm-updates main\ndeb http://deb.debian.org/debian-security bookworm-security main\n' \
    "$MIRROR" "$MIRROR" > "$root/etc/apt/sources.list"
  tar -C "$root" -c . | podman import --change 'CMD ["bash"]' - debian:bookworm-slim >/dev/null
fi

if ! have redis:7; then
  echo "making redis:7 (Debian's redis-server)"
  cat > "$work/Containerfile.redis" <<'CF'
FROM debian:bookworm-slim
RUN groupadd --system --gid 999 redis \
 && useradd --system --uid 999 --gid redis --home-dir /var/lib/redis --no-create-home --shell /usr/sbin/nologin redis \
 && apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends redis-server redis-tools \
 && rm -rf /var/lib/apt/lists/* \
 && mkdir -p /data && chown redis:redis /data
RUN printf '#!/bin/sh\nif [ "$1" = redis-server ]; then shift; set -- redis-server --protected-mode no "$@"; fi\nexec "$@"\n' \
      > /usr/local/bin/redis-entrypoint && chmod 755 /usr/local/bin/redis-entrypoint
WORKDIR /data
EXPOSE 6379
ENTRYPOINT ["/usr/local/bin/redis-entrypoint"]
CMD ["redis-server"]
CF
  podman build -q -t redis:7 -f "$work/Containerfile.redis" "$work" >/dev/null
fi

if ! have swift:6.3.1-bookworm; then
  echo "making swift:6.3.1-bookworm (toolchain dependencies; the toolchain is mounted at build time)"
  cat > "$work/Containerfile.swift" <<CF
FROM debian:bookworm-slim
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \\
      binutils git gnupg2 libc6-dev libcurl4-openssl-dev libedit2 libgcc-12-dev libpython3-dev \\
      libsqlite3-0 libstdc++-12-dev libxml2-dev libz3-dev pkg-config tzdata zlib1g-dev libncurses6 \\
      ca-certificates \\
 && rm -rf /var/lib/apt/lists/*
# Marks the stand-in: build-image.sh then lends it this machine's toolchain.
LABEL spool.stand-in=toolchain-mounted
ENV PATH=$SWIFT_DIR/usr/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
# GitHub URLs resolve to the local package mirror, mounted at the same path.
RUN git config --system url.$PACKAGES_DIR/.insteadOf https://github.com/
CF
  podman build -q -t swift:6.3.1-bookworm -f "$work/Containerfile.swift" "$work" >/dev/null
fi
podman images --format '{{.Repository}}:{{.Tag}} {{.Size}}' | grep -E '^(localhost/)?(debian:bookworm-slim|redis:7|swift:6.3.1-bookworm) '
