# Two commands on a fresh machine: `make demo` and `make test`. Both build the virtualenv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
GPUFLEET := $(VENV)/bin/gpufleet
STAMP := $(VENV)/.installed

.PHONY: demo test test-serial test-unit lint bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m gpufleet.automation.demo

# 3 pytest-xdist workers, a file per worker, the engine tiers' files first (tests/conftest.py).
test: $(STAMP)
	$(PY) -m ruff check infra automation lifecycle stacks tests bench
	$(PY) -m pytest -n 3 --dist loadfile

# The same suite in one process (slower; for bisecting an interaction between test files).
test-serial: $(STAMP)
	$(PY) -m ruff check infra automation lifecycle stacks tests bench
	$(PY) -m pytest

test-unit: $(STAMP)
	$(PY) -m pytest -m "not emulator and not slurm and not torch"

bench: $(STAMP)
	$(PY) bench/plan.py
	$(PY) bench/rebalance.py
	$(PY) bench/resilience.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
