# The two commands of the README: `make up` runs the whole system on embedded
# defaults, `make test` runs every test. Both bootstrap the virtualenv first.
PYTHON ?= python3
VENV ?= .venv
DATA_DIR ?= .eventplane
BIN := $(VENV)/bin

.PHONY: up test lint bench clean

$(BIN)/.installed: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

up: $(BIN)/.installed
	$(BIN)/eventplane up --data-dir $(DATA_DIR)

lint: $(BIN)/.installed
	$(BIN)/lint-imports

test: lint
	$(BIN)/pytest $(PYTEST_ARGS)

bench: $(BIN)/.installed
	$(BIN)/python bench/append.py

clean:
	rm -rf $(VENV) build *.egg-info
