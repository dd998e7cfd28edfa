# The two commands: `make run` and `make test`. Both do all their own set-up.
SHELL := /bin/bash
PORT ?= 8000
UV := $(shell command -v uv 2>/dev/null || echo .venv-bootstrap/bin/uv)
SF := .venv/bin/storefront

.PHONY: install run test lint types unit integration bench clean dev-down

$(UV):
	python3 -m venv .venv-bootstrap && .venv-bootstrap/bin/pip install --quiet uv

install: $(UV)
	$(UV) sync --frozen

run: install
	$(SF) dev up
	$(SF) migrate && $(SF) dev seed  # the dev env reads .local/dev.env by itself
	$(SF) serve --host 127.0.0.1 --port $(PORT)

lint: install
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .

types: install
	.venv/bin/mypy app containers.py

test: lint types
	.venv/bin/pytest

bench: install
	.venv/bin/python -m bench.run

dev-down: install
	$(SF) dev down

clean: dev-down
	rm -rf .local
