"""Serve every deployment from this process: event triggers for the event flows, schedules for maintenance."""

from __future__ import annotations

import argparse
from typing import Any

from prefect import serve

from deployments.catalogue import catalogue


def build_deployments() -> list[Any]:
    """Every deployment of the project, as `prefect.yaml` declares them for workers."""
    return [spec.to_deployment() for spec in catalogue()]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=4, help="at most this many flow runs at once")
    args = parser.parse_args()
    from connectors.registry import validate_settings
    from connectors.settings import SettingsError

    try:  # as the intake and the delivery worker: a bad or missing setting stops the start, named
        validate_settings()
    except SettingsError as exc:
        raise SystemExit(f"served deployments: {exc}") from None
    serve(*build_deployments(), limit=args.limit)


if __name__ == "__main__":
    main()
