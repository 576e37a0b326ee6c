# trigrad: two commands do everything.
#   make demo   the tour: three backends, one network, do they agree?
#   make test   the whole suite (parity, training, comparisons), plus the numpy-only check
#
# Both create .venv on first run from pyproject.toml + constraints.txt and reuse it afterwards
# (it is rebuilt when either file changes).

SHELL  := /bin/bash
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
EXTRAS := all dev

.PHONY: demo test test-fast lint bench report playground clean help

help:
	@echo "make demo    the tour: train XOR on every backend, parity table, figures in out/"
	@echo "make test    the whole test suite (creates .venv on first run)"
	@echo "make lint    ruff"
	@echo "make report  the benchmark report (python -m benchmarks)"
	@echo "make playground  the live page on 127.0.0.1:8765: train on every backend, watch the parity gap"
	@echo "make clean   remove .venv, caches and out/"

$(STAMP): pyproject.toml constraints.txt tools/deps.py
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@echo "Installing dependencies into $(VENV) (first run only; about a minute)..."
	@$(PYTHON) tools/deps.py $(EXTRAS) > $(VENV)/requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -r $(VENV)/requirements.txt
	@touch $(STAMP)

demo: $(STAMP)
	$(PY) -m comparisons tour

test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	@echo "--- numpy-only install (tox -e numpy): torch and jax tests must skip, not fail"
	$(PY) -m tox -q -e numpy 2>&1 | grep -v "WARNING: Location"; exit $${PIPESTATUS[0]}
	@echo "--- the whole suite, every backend"
	$(PY) -m pytest -q

test-fast: $(STAMP)
	$(PY) -m pytest -q -x

lint: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

bench: $(STAMP)
	$(PY) -m pytest benchmarks --benchmark-only

report: $(STAMP)
	$(PY) -m benchmarks

playground: $(STAMP)
	$(PY) -m comparisons playground

clean:
	rm -rf $(VENV) .tox .pytest_cache .hypothesis .ruff_cache .benchmarks out
