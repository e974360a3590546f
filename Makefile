# Two commands on a fresh machine:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test system compat build check-sync lint format benchmarks lab clean

# The virtual environment, created when missing and refreshed when
# pyproject.toml changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

## demo: install, build the student versions, autograde the sample submissions
demo: $(STAMP)
	$(BIN)/autograder demo

## system: the system packages the tests use (PostgreSQL), when missing
system:
	sh tools/system-packages.sh

## compat: an older TensorFlow and Keras (tools/compat-requirements.txt) in
## .venv-compat, where the tests run the student bundle's checks as on a
## runtime with its own TensorFlow (Colab, a JupyterHub image)
COMPAT       := .venv-compat
COMPAT_STAMP := $(COMPAT)/.installed
$(COMPAT_STAMP): tools/compat-requirements.txt
	rm -rf $(COMPAT)
	$(PYTHON) -m venv $(COMPAT)
	$(COMPAT)/bin/python -m pip install --quiet -r tools/compat-requirements.txt
	touch $(COMPAT_STAMP)

compat: $(COMPAT_STAMP)

## test: the whole test suite (unit tests, notebooks, grading) and ruff
test: $(STAMP) system compat
	$(BIN)/ruff check .
	$(BIN)/ruff format --check autograder data tests benchmarks
	$(BIN)/python -m pytest

## build: regenerate the solution notebooks and assignments/ from solutions/
build: $(STAMP)
	$(BIN)/autograder build

check-sync: $(STAMP)
	$(BIN)/autograder check-sync

format: $(STAMP)
	$(BIN)/ruff format autograder data tests benchmarks
	$(BIN)/ruff check --fix .

## benchmarks: notebook run time and accuracy, grading time split
benchmarks: $(STAMP)
	$(BIN)/python benchmarks/run_all.py

## lab: your own copy of the student notebooks (work/: made where missing,
## never replaced by any target) opened in JupyterLab
lab: $(STAMP)
	$(BIN)/autograder workspace work
	$(BIN)/jupyter lab work/

clean:
	rm -rf build .pytest_cache .ruff_cache
