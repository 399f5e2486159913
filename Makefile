.PHONY: up test test-fast test-flows test-e2e lint lint-mappings bench lock

up:            ## start everything locally (Prefect server, flows, intake API, sandbox, demo data)
	scripts/up.sh

test:          ## run every test: the fast, flow and end-to-end tiers (what CI runs)
	scripts/test.sh

test-fast:     ## the fast tier: no Prefect flow runs, no processes of their own
	scripts/test.sh -m "not e2e and not flow"

test-flows:    ## the flow tier: flows on the session's Prefect test harness
	scripts/test.sh -m flow

test-e2e:      ## the end-to-end tier only: tests that start servers, workers or other processes
	scripts/test.sh -m e2e

lint:          ## ruff, mypy and the packages' layering (lint-imports)
	scripts/bootstrap.sh
	.venv/bin/ruff check .
	.venv/bin/mypy
	.venv/bin/lint-imports

lint-mappings: ## check every mapping file
	scripts/bootstrap.sh
	.venv/bin/python -m deployments.lint

bench:         ## bulk throughput side by side (raw, script, dlt, pipeline) against the sandbox
	scripts/bootstrap.sh
	.venv/bin/python -m bench.peers

lock:          ## re-pin requirements.lock from pyproject.toml
	.venv/bin/uv pip compile pyproject.toml --extra dev --python-version 3.11 -o requirements.lock
