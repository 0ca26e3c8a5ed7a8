#!/usr/bin/env bash
# Installs the tools the deploy checks use: Debian packages (buildah, mmdebstrap, promtool, amtool)
# and PyPI wheels into .tools/venv. Idempotent; each network step is retried.
# Usage: deploy/tools/install.sh [--no-apt]
set -uo pipefail
cd "$(dirname "$0")/../.."
PYTHON=${PYTHON:-python3}
TOOLS=.tools/venv

retry() {  # retry N cmd...: the registries are reachable but may hiccup
  local n=$1; shift
  for i in $(seq 1 "$n"); do "$@" && return 0; echo "deploy-tools: attempt $i failed: $*" >&2; sleep $((i * 5)); done
  return 1
}

status=0
if [ "${1:-}" != "--no-apt" ]; then
  need=()
  command -v buildah >/dev/null || need+=(buildah)
  command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
  command -v promtool >/dev/null || need+=(prometheus)
  command -v amtool >/dev/null || need+=(prometheus-alertmanager)
  if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ]; then
      echo "deploy-tools: apt-get install ${need[*]}"
      retry 3 apt-get update -qq || status=1
      # policy-rc.d: install the packages, do not start their services (prometheus, alertmanager).
      printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
      retry 3 env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || status=1
      rm -f /usr/sbin/policy-rc.d
    else
      echo "deploy-tools: not root, skipping apt-get install ${need[*]}" >&2
    fi
  fi
fi

stamp=$TOOLS/.installed
if [ ! -f "$stamp" ] || [ deploy/tools/requirements.txt -nt "$stamp" ]; then
  test -x $TOOLS/bin/python || $PYTHON -m venv $TOOLS
  if retry 3 $TOOLS/bin/python -m pip install -q --disable-pip-version-check -r deploy/tools/requirements.txt; then
    touch "$stamp"
  else
    status=1
  fi
fi
exit $status
