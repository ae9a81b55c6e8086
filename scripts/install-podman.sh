#!/usr/bin/env bash
# Installs what `make image` and `make deploy-e2e` need, only when missing:
# podman (with runc), podman-compose, debootstrap (for the stand-in base
# images, see make-base-images.sh). Then sets podman up for this kind of
# machine, once: runc rather than crun (crun refuses this VM's hybrid
# cgroups), cgroupfs (no systemd here), and no default ulimits (raising
# RLIMIT_NOFILE is not permitted in this VM). On a machine with a working
# Docker or podman of its own, none of this is needed: the Dockerfile and the
# compose file are the ones a user runs.
set -euo pipefail
missing=()
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
command -v podman-compose >/dev/null || missing+=(podman-compose)
command -v debootstrap >/dev/null || missing+=(debootstrap)
# slirp4netns/netavark/aardvark-dns and fuse-overlayfs come as podman's
# recommends; --no-install-recommends would leave podman without networking.
if ((${#missing[@]})); then
  sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "installing (apt): ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi

conf=/etc/containers/containers.conf
marker="# written by spool's scripts/install-podman.sh"
if ! grep -qF "$marker" "$conf" 2>/dev/null; then
  [[ -e $conf ]] && cp "$conf" "$conf.before-spool"
  mkdir -p /etc/containers
  cat > "$conf" <<CONF
$marker
[containers]
default_ulimits = []

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
  echo "wrote $conf (runc, cgroupfs, no default ulimits)"
fi
podman --version
