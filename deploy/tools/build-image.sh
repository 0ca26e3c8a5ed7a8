#!/usr/bin/env bash
# Daemonless image build, for CI and for machines without Docker: a Debian base made with mmdebstrap
# (images cannot be pulled here), then the repo's Dockerfile on it with buildah (chroot isolation).
# Usage: deploy/tools/build-image.sh [TAG]   (root; buildah and mmdebstrap from deploy/tools/install.sh)
# The base carries this machine's CA bundle and pip settings so the build's pip reaches the registry;
# that is a property of the test base only, never of the Dockerfile.
set -euo pipefail
cd "$(dirname "$0")/../.."
TAG=${1:-localhost/lockgate:ci}
BASE=localhost/lockgate-base:bookworm
export STORAGE_DRIVER=vfs BUILDAH_ISOLATION=chroot
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  start=$(date +%s)
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates,tini \
    --customize-hook='cp /etc/ssl/certs/ca-certificates.crt "$1/etc/ssl/certs/ca-certificates.crt"' \
    --customize-hook='printf "[global]\ncert = /etc/ssl/certs/ca-certificates.crt\n" > "$1/etc/pip.conf"' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$work/rootfs.tar"
  printf 'FROM scratch\nADD rootfs.tar /\nCMD ["/bin/sh"]\n' > "$work/Containerfile"
  buildah bud --quiet --isolation chroot -t "$BASE" -f "$work/Containerfile" "$work" >/dev/null
  echo "build-image: base $BASE in $(( $(date +%s) - start )) s"
fi
start=$(date +%s)
buildah bud --quiet --format docker --isolation chroot --layers=false --build-arg BASE="$BASE" \
  --build-arg VERSION="$(sed -n 's/^__version__ = "\(.*\)"/\1/p' lockgate/__init__.py)" \
  --build-arg REVISION="$(git rev-parse HEAD 2>/dev/null || echo unknown)" -t "$TAG" . >/dev/null
echo "build-image: $TAG in $(( $(date +%s) - start )) s"
