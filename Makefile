# Everything a fresh machine needs: `make demo` and `make test` run setup first when needed.
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_DIR ?= demo_out
export OMP_NUM_THREADS ?= 2

.PHONY: setup demo test test-slow lint typecheck bench clean

setup: $(STAMP)

# Idempotent: re-installs only when the package metadata or the pins change.
$(STAMP): pyproject.toml constraints.txt
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -c constraints.txt torch
	$(PY) -m pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

demo: setup
	$(PY) -m sidetune.demo --out $(DEMO_DIR)

test: setup
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench
	$(PY) -m mypy
	$(PY) -m pytest -q

test-slow: setup
	$(PY) -m pytest -q -m slow

lint: setup
	$(PY) -m ruff check src tests bench
	$(PY) -m ruff format --check src tests bench

typecheck: setup
	$(PY) -m mypy

# Speed and memory benchmarks (not tests): each prints a table and writes bench/results/*.json.
bench: setup
	$(PY) bench/bench_metrics.py
	$(PY) bench/bench_sdst_criterion.py --out bench/results/sdst_criterion.json
	$(PY) bench/bench_sdst_step.py --threads 2 --compare-plain --rounds 3 --steps 9
	$(PY) bench/bench_sdst_epoch.py --threads 2 --fraction 0.1 --workers 0
	$(PY) bench/bench_extract.py
	$(PY) bench/bench_tds_memory.py
	$(PY) bench/bench_ground_long.py
	$(PY) bench/bench_app.py

clean:
	rm -rf $(VENV) $(DEMO_DIR) .pytest_cache .mypy_cache .ruff_cache
