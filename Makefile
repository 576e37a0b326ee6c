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

# The suite runs on both cores (pytest-xdist, -n 2: a worker that runs out of tests takes half of the
# other's). The numpy-only check (its own small venv via tox) runs beside it, not after it: that
# saves its install and its ~60 s of tests from the wall clock. Its output is kept in
# .tox/numpy-only.log and printed after the suite; either one failing fails `make test`, and Ctrl-C
# stops both.
test: $(STAMP)
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .
	@mkdir -p .tox; \
	echo "--- numpy-only install (tox -e numpy, in the background): torch and jax tests must skip, not fail"; \
	{ $(PY) -m tox -q -e numpy > .tox/numpy-only.log 2>&1; echo $$? > .tox/numpy-only.rc; } & \
	numpy_pid=$$!; trap 'kill $$numpy_pid 2>/dev/null; exit 130' INT TERM; \
	echo "--- the whole suite, every backend"; \
	$(PY) -m pytest -q -n 2 --dist worksteal; suite=$$?; wait; \
	echo "--- numpy-only install (tox -e numpy): its output"; \
	grep -v "WARNING: Location" .tox/numpy-only.log; numpy_only=$$(cat .tox/numpy-only.rc); \
	echo "--- exit codes: whole suite $$suite, numpy-only $$numpy_only"; \
	test $$suite -eq 0 && test $$numpy_only -eq 0

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
