# The two commands of the README: `make demo` and `make test`. Everything else is a step.
VENV := .venv
BIN := $(VENV)/bin
PYTEST_ARGS ?=

.PHONY: setup demo up test bench clean

setup:
	@bash scripts/bootstrap.sh

demo: setup
	$(BIN)/compute demo

up: setup
	$(BIN)/compute up

test: setup
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

bench: setup
	$(BIN)/python bench/e2e.py

clean:
	rm -rf var .pytest_cache
