"""`python -m deployments.render [--check]`: write `deployments/prefect.yaml` from the catalogue.

With `--check` nothing is written; the exit status says whether the file is current.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import yaml

from deployments.catalogue import DeploymentSpec, catalogue

PREFECT_YAML = Path(__file__).resolve().parent / "prefect.yaml"
WORK_POOL = "ennu-process"
HEADER = """\
# Every ENNU deployment, for a Prefect server on PostgreSQL and any number of process workers.
# Written by `python -m deployments.render` from deployments/catalogue.py; edit the catalogue, not this file.
#
#   export PREFECT_API_URL=https://<server>/api   # TLS and basic auth: README, More than one machine
#   export PREFECT_API_AUTH_STRING='<user>:<password>'   # the server's PREFECT_SERVER_API_AUTH_STRING
#   prefect work-pool create ennu-process --type process      # once
#   prefect deploy --all --prefect-file deployments/prefect.yaml   # from the repository root
#   ENNU_PROJECT_DIR=/srv/ennu-integrations prefect worker start --pool ennu-process   # on each machine
#   .venv/bin/python -m engine --name "$(hostname)"   # and the delivery worker, on each machine that delivers
#
# The delivery workers carry every event as it arrives: they claim micro-batches from the hub database and
# run the event flows below in-process (one flow run per batch). The event flows' deployments are for
# re-running a batch of event ids by hand; the Prefect workers run those, the schedules and bulk syncs.
# Workers run the flows from ENNU_PROJECT_DIR (a checkout of this repository with `make up`'s .venv
# installed, or `scripts/bootstrap.sh`); DATABASE_URL and the vendor credentials come from the worker's
# environment or from Prefect Secret blocks. Rate limits are Prefect global concurrency limits, shared
# by all workers.
"""


def _trigger(trigger: Any) -> dict[str, Any]:
    out: dict[str, Any] = {"type": "event", "name": trigger.name, "expect": sorted(trigger.expect)}
    related = trigger.match_related
    if related:
        specs = related if isinstance(related, list) else [related]
        out["match_related"] = [dict(spec.root) for spec in specs]
    out["parameters"] = trigger.parameters
    return out


def _deployment(spec: DeploymentSpec) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": spec.name,
        "entrypoint": spec.entrypoint,
        "description": spec.description,
        "tags": list(spec.tags),
        "work_pool": {"name": WORK_POOL, "job_variables": {}},
    }
    if spec.cron:
        out["schedules"] = [{"cron": spec.cron}]
    if spec.triggers:
        out["triggers"] = [_trigger(t) for t in spec.triggers]
    return out


def render() -> str:
    document = {
        "name": "ennu-integrations",
        "prefect-version": "3.9.1",
        "pull": [
            {"prefect.deployments.steps.set_working_directory": {"directory": "{{ $ENNU_PROJECT_DIR }}"}}
        ],
        "deployments": [_deployment(spec) for spec in catalogue()],
    }
    return HEADER + yaml.safe_dump(document, sort_keys=False, width=110, allow_unicode=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true", help="only check that prefect.yaml is current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        if PREFECT_YAML.read_text() != text:
            print(f"{PREFECT_YAML} is out of date: run python -m deployments.render", file=sys.stderr)
            return 1
        return 0
    PREFECT_YAML.write_text(text)
    print(f"wrote {PREFECT_YAML}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
