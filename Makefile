# The two set-up commands (see README.md): `make run` and `make test`.
# Each bootstraps .venv with the pinned dependencies when pyproject.toml changes, and can be run again.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lockgate-installed

.PHONY: run test bench clean claude-code

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@$(PY) -m pip install -q --disable-pip-version-check --upgrade pip
	@$(PY) -m pip install -q --disable-pip-version-check -e ".[test]"
	@touch $(STAMP)

run: $(STAMP)
	$(VENV)/bin/lockgate serve $(ARGS)

test: $(STAMP)
	$(PY) -m pytest $(PYTEST_ARGS)

bench: $(STAMP)
	bench/run.sh $(ARGS)

# Claude Code, as a real client for tests/test_claude_code_e2e.py: the npm package ships its
# native binary in a per-platform optional dependency, so this needs only the npm registry.
CLAUDE_CODE_VERSION := 2.1.332
CLAUDE_CODE_DIR := .tools/claude-code
claude-code: $(CLAUDE_CODE_DIR)/.installed-$(CLAUDE_CODE_VERSION)
$(CLAUDE_CODE_DIR)/.installed-$(CLAUDE_CODE_VERSION):
	@mkdir -p $(CLAUDE_CODE_DIR)
	cd $(CLAUDE_CODE_DIR) && npm install --no-audit --no-fund --no-save --ignore-scripts @anthropic-ai/claude-code@$(CLAUDE_CODE_VERSION)
	@touch $@

clean:
	rm -rf $(VENV) .pytest_cache .tools
