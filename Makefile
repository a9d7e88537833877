# Two commands set everything up on a fresh clone: `make demo` and `make test` (`make lint`: ruff and mypy).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
# torch 2.13.0 is the CPU wheel on this machine kind's disk; elsewhere any torch >= 2.4 works (see pyproject.toml).
TORCH_PIN ?= torch==2.13.0
STAMP  := $(VENV)/.installed
LINT_PATHS := cards hub modules tests benchmarks

.PHONY: demo test lint venv clean

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet "$(TORCH_PIN)"
	$(PY) -m pip install --quiet -e ".[test,lint,hdf5,minari,ray]"
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/mdhub demo

test: $(STAMP)
	$(PY) -m pytest

# ruff: lint and import order; mypy: strict on cards/ and hub/, the default checks on modules/ (pyproject.toml)
lint: $(STAMP)
	$(PY) -m ruff check $(LINT_PATHS)
	$(PY) -m mypy

clean:
	rm -rf $(VENV) build *.egg-info
