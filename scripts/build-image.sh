#!/usr/bin/env bash
# `make image`: builds the project's Dockerfile with podman, as a Docker user
# would (`docker build -t spool:dev .`), tagged spool:dev and spool:<version>.
# When the build stage's base image is the local stand-in (make-base-images.sh),
# this machine's Swift toolchain and package mirror are mounted read-only for
# the build (podman build -v): nothing of them ends up in an image, and the
# Dockerfile is unchanged.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p .spool
version=$(sed -n 's/.*static let current = "\(.*\)".*/\1/p' Sources/Shared/Support/Version.swift)
mounts=()
if [[ $(podman image inspect swift:6.3.1-bookworm --format '{{index .Labels "spool.stand-in"}}' 2>/dev/null) == toolchain-mounted ]]; then
  mounts=(-v "${SWIFT_DIR:-/opt/swift}:${SWIFT_DIR:-/opt/swift}:ro"
          -v "${SWIFT_PACKAGES_DIR:-/opt/swift-packages}:${SWIFT_PACKAGES_DIR:-/opt/swift-packages}:ro")
fi
start=$(date +%s)
podman build "${mounts[@]}" --layers -t spool:dev -t "spool:$version" -f Dockerfile . >.spool/image-build.log 2>&1 \
  || { tail -40 .spool/image-build.log; echo "image build failed; whole log: .spool/image-build.log"; exit 1; }
size=$(podman image inspect spool:dev --format '{{.Size}}')
echo "built spool:dev and spool:$version in $(( $(date +%s) - start )) s; size $(( size / 1000000 )) MB (log: .spool/image-build.log)"
