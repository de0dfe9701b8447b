# The two commands a new user needs: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test lint bench images clean passable

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.run-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[examples]"
	touch $@

$(VENV)/.dev-installed: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e ".[dev]"
	touch $@

## passable: as root, the node agent runs local sessions as unprivileged users, who must
## reach the Python interpreter: let them pass through (never list) the folders above it
passable: | $(BIN)/python
	@if [ "$$(id -u)" = 0 ]; then \
	  folder=$$(dirname "$$(readlink -f $(BIN)/python)"); \
	  while [ "$$folder" != / ]; do \
	    if [ -z "$$(find "$$folder" -maxdepth 0 -perm -o=x)" ]; then \
	      echo "make: letting local sessions reach Python: chmod o+x $$folder"; \
	      chmod o+x "$$folder"; \
	    fi; \
	    folder=$$(dirname "$$folder"); \
	  done; \
	fi

## run: the whole platform on this machine with its embedded defaults
run: $(VENV)/.run-installed passable
	$(BIN)/podium up --demo $(ARGS)

## lint: ruff (lint and format) and mypy
lint: $(VENV)/.dev-installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

## test: lint, then every test (browser tests need chromium; see README)
test: lint passable
	$(BIN)/pytest -p no:cacheprovider

## images: the Docker runtime's base images, built offline (needs dockerd and debootstrap)
images: $(VENV)/.dev-installed
	$(BIN)/podium image build
	$(BIN)/podium image build --variant scientific

## bench: the time from `podium run` to the script's first line
bench: $(VENV)/.dev-installed
	$(BIN)/python bench/startup.py

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
