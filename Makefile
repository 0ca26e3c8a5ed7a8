# The two set-up commands (see README.md): `make run` and `make test`.
# Each bootstraps .venv with the pinned dependencies when pyproject.toml changes, and can be run again.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.lockgate-installed

.PHONY: run test bench clean

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

clean:
	rm -rf $(VENV) .pytest_cache
