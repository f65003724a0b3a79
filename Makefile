# Two commands on a fresh machine with Python 3.11: `make lab` and `make test`.
# Both create .venv when it is missing: torch==2.13.0 (CPU build) first, then the package with
# its extras, constrained to that torch so no CUDA build is pulled in. --no-compile: pip does
# not byte-compile every installed module up front (about a minute on 2 cores); Python compiles
# the modules a command actually imports, once, on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.dltricks-installed

.PHONY: setup lab test test-slow lint bench clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --no-compile torch==2.13.0
	$(BIN)/python -m pip install --quiet --no-compile -c constraints.txt -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

lab: $(STAMP)
	$(BIN)/dltricks lab run --profile quick --out runs/lab
	$(BIN)/dltricks compare --profile quick --lab-out runs/lab --out runs/compare

test: $(STAMP)
	$(BIN)/python -m pytest -q

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow || [ $$? -eq 5 ]  # 5: no slow test selected

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/lint-imports

bench: $(STAMP)
	$(BIN)/python benchmarks/engine_overhead.py

clean:
	rm -rf $(VENV) runs .pytest_cache
