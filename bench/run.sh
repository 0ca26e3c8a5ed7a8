#!/usr/bin/env bash
# One command for the Lockgate benchmark: prepares bench/.venv (LiteLLM as a
# peer, py-spy for --profile) and bench/peers (Portkey's gateway, Node; never dependencies of lockgate itself), then
# runs bench/run.py with any arguments given, e.g.
#   bench/run.sh                     # full run, 10 s per measurement
#   bench/run.sh --duration 5        # quicker
#   bench/run.sh --targets upstream,lockgate --profile
# The gateway runs from bench/.venv-gateway: requirements.lock alone, as the image installs it,
# with this checkout installed editable (so it measures what is deployed, not the test tools);
# set LOCKGATE_PYTHON to use another interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."

LITELLM_VERSION=1.108.0   # newest litellm[proxy] whose pinned extras all install from PyPI here
PYSPY_VERSION=0.4.3
VENV=bench/.venv
PY=${BENCH_PYTHON:-python3}

if [ ! -x "$VENV/bin/python" ]; then
  echo "[bench] creating $VENV" >&2
  "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >/dev/null 2>&1 || true
fi
# the fake upstream is faster with these; they also come with LiteLLM
stamp="$VENV/.stamp-base"
if [ ! -f "$stamp" ]; then
  "$VENV/bin/pip" install -q uvloop orjson "py-spy==$PYSPY_VERSION" >&2 && touch "$stamp" \
    || echo "[bench] note: could not install uvloop/orjson/py-spy; going on without them" >&2
fi
stamp="$VENV/.stamp-litellm-$LITELLM_VERSION"
if [ -z "${BENCH_NO_LITELLM:-}" ] && [ ! -f "$stamp" ]; then
  echo "[bench] installing litellm[proxy]==$LITELLM_VERSION into $VENV (once)" >&2
  if "$VENV/bin/pip" install -q "litellm[proxy]==$LITELLM_VERSION" >&2; then
    touch "$stamp"
  else
    echo "[bench] LiteLLM could not be installed: the benchmark runs without it" >&2
  fi
fi
# Portkey's gateway (Node) as a second peer, pinned by bench/peers/package-lock.json
stamp="bench/peers/node_modules/.stamp-$(sha256sum bench/peers/package-lock.json | cut -c1-16)"
if [ -z "${BENCH_NO_PORTKEY:-}" ] && [ ! -f "$stamp" ]; then
  if command -v npm >/dev/null 2>&1 && command -v node >/dev/null 2>&1; then
    echo "[bench] installing the Portkey gateway into bench/peers (npm ci, once)" >&2
    if (cd bench/peers && npm ci --no-audit --no-fund --ignore-scripts --loglevel=error >&2); then
      touch "$stamp"
    else
      echo "[bench] Portkey could not be installed: the benchmark runs without it" >&2
    fi
  else
    echo "[bench] node/npm not found: the benchmark runs without Portkey (apt-get install nodejs npm)" >&2
  fi
fi
# wrk drives the load (Debian's package); installed here when missing and apt-get can (root).
if ! command -v wrk >/dev/null 2>&1; then
  echo "[bench] installing wrk (apt-get)" >&2
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk >/dev/null) \
    || echo "[bench] could not install wrk: apt-get install wrk" >&2
fi
GW_VENV=bench/.venv-gateway
stamp="$GW_VENV/.stamp-$(sha256sum requirements.lock pyproject.toml | sha256sum | cut -c1-16)"
if [ -z "${LOCKGATE_PYTHON:-}" ] && [ ! -f "$stamp" ]; then
  echo "[bench] creating $GW_VENV from requirements.lock (once per lock)" >&2
  rm -rf "$GW_VENV"
  pip_log=$(mktemp)
  if "$PY" -m venv "$GW_VENV" \
      && "$GW_VENV/bin/pip" install -q --disable-pip-version-check --require-hashes -r requirements.lock >"$pip_log" 2>&1 \
      && "$GW_VENV/bin/pip" install -q --disable-pip-version-check --no-deps -e . >"$pip_log" 2>&1; then
    touch "$stamp"
  else
    tail -n 20 "$pip_log" >&2
    rm -rf "$GW_VENV"
    echo "[bench] note: $GW_VENV could not be made; the gateway runs from .venv instead" >&2
  fi
  rm -f "$pip_log"
fi
if [ -z "${LOCKGATE_PYTHON:-}" ] && [ ! -x "$GW_VENV/bin/python" ] && [ ! -x .venv/bin/python ]; then
  echo "[bench] note: no interpreter for the gateway; run the project's set-up first" \
       "(or set LOCKGATE_PYTHON). The gateway will be reported as not measured." >&2
fi
exec "$VENV/bin/python" bench/run.py "$@"
