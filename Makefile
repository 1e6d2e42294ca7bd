# Two commands do all the set-up on a fresh machine:
#   make demo   create .venv, install everything, run the main job on the built-in workload
#   make test   create .venv, install everything (and the test tools), check formatting and lint
#               (ruff), run the whole test suite
#
# torch is pinned to the CPU wheel used on the development machine and in CI. On a GPU machine,
# install the CUDA build first (see README, "GPU install") or run: make install TORCH=torch

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0

.PHONY: install demo test lint format test-deps benchmarks clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q "$(TORCH)"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

install: $(VENV)/.installed

# system packages the tests use (headless Chromium renders the HTML reports)
test-deps:
	@if [ -f scripts/install-test-deps.sh ]; then bash scripts/install-test-deps.sh; fi

demo: install
	$(VENV)/bin/trainwise demo

# ruff (pinned in the dev extra): the format is checked and the rules of pyproject.toml [tool.ruff]
lint: install
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/ruff check .

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

test: install test-deps lint
	$(PY) -m pytest

clean:
	rm -rf $(VENV) runs out mlflow.db mlartifacts
