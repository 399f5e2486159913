.PHONY: up test lint lint-mappings bench lock

up:            ## start everything locally (Prefect server, flows, intake API, sandbox, demo data)
	scripts/up.sh

test:          ## run the tests (SQLite, PostgreSQL, Prefect harness, sandbox on loopback)
	scripts/test.sh

lint:          ## ruff, mypy and the packages' layering (lint-imports)
	scripts/bootstrap.sh
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports

lint-mappings: ## check every mapping file
	scripts/bootstrap.sh
	.venv/bin/python -m deployments.lint

bench:         ## bulk-sync benchmark against the sandbox
	scripts/bootstrap.sh
	.venv/bin/python -m bench.peers

lock:          ## re-pin requirements.lock from pyproject.toml
	.venv/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock
