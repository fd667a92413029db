# Two commands on a fresh machine: `make demo` and `make test`. Both build the virtualenv first.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
GPUFLEET := $(VENV)/bin/gpufleet
STAMP := $(VENV)/.installed

.PHONY: demo test test-parallel test-unit lint bench clean venv

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m gpufleet.automation.demo

test: $(STAMP)
	$(PY) -m ruff check infra automation lifecycle stacks tests bench
	$(PY) -m pytest

# The same suite on 3 xdist workers, a file per worker: about 23 min instead of about 34 here,
# but the torch and heal tiers' signal timing is less certain under that load (see README).
test-parallel: $(STAMP)
	$(PY) -m ruff check infra automation lifecycle stacks tests bench
	$(PY) -m pytest -n 3 --dist loadfile

test-unit: $(STAMP)
	$(PY) -m pytest -m "not emulator and not slurm and not torch"

bench: $(STAMP)
	$(PY) bench/plan.py
	$(PY) bench/rebalance.py
	$(PY) bench/resilience.py

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
