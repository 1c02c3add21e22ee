# The two commands of the README: `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test lint typecheck pytest bench redteam clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# atheris (the fuzz extra) has wheels for CPython on Linux only; elsewhere its tests skip.
	$(BIN)/python -m pip install -q -e '.[test,fuzz]' || $(BIN)/python -m pip install -q -e '.[test]'
	touch $@

demo: $(STAMP)
	$(BIN)/python -m xdrstream.demo

test: $(STAMP) lint typecheck pytest

lint: $(STAMP)
	$(BIN)/ruff check xdrstream tests benchmarks fuzz
	$(BIN)/ruff format --check xdrstream tests benchmarks fuzz

typecheck: $(STAMP)
	$(BIN)/mypy

pytest: $(STAMP)
	$(BIN)/pytest

bench: $(STAMP)
	for b in benchmarks/*.py; do $(BIN)/python $$b || exit 1; done

# issue 15's attacks against a real server: RSS, threads, a client's latency, verdicts
redteam: $(STAMP)
	ulimit -n 8192; $(BIN)/python benchmarks/redteam.py

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
