"""Prepare a batch: extract → route → map → validate, one Prefect task (each stage a plain function).

One task rather than four: a task run costs the Prefect server about as much as the stage itself for a
small batch, and the stages' counts are in this task's log lines either way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prefect import get_run_logger, task
from prefect.cache_policies import NONE

from mappings import apply_mapping
from tasks.extract import Extracted, extract_records
from tasks.route import Route, plan_routes
from tasks.validate import ValidationResult, validate_parts


@dataclass
class Prepared:
    """The batch's records, every route of its type (as `keep` left it), and those with rows to send,
    checked."""

    extracted: Extracted
    routes: list[Route]
    sending: list[tuple[Route, ValidationResult]]

    def __repr__(self) -> str:  # never the frames
        return f"Prepared({len(self.extracted.frame)} records, {len(self.sending)} destinations)"


@task(name="prepare", cache_policy=NONE)
def prepare(event_type: str, event_ids: list[str], keep: Callable[[Route], Route]) -> Prepared:
    """Read the events and their records, route them (consent, filters), keep what `keep` leaves of each
    route (the rows this batch holds deliveries for), map each to its destination and validate them all
    in one Great Expectations run. Logs counts only."""
    logger = get_run_logger()
    extracted = extract_records(event_type, event_ids)
    logger.info(
        "extracted %d records from %d events (%d unusable)",
        len(extracted.frame),
        len(event_ids),
        len(extracted.missing),
    )
    kept = [keep(r) for r in plan_routes(event_type, extracted.frame)]
    logger.info(
        "routed: %s",
        ", ".join(f"{r.destination} {len(r.frame)} ({len(r.refused)} without consent)" for r in kept)
        or "none",
    )
    sending = [r for r in kept if len(r.frame)]
    checks = validate_parts([(r.mapping, apply_mapping(r.mapping, r.frame)) for r in sending])
    if sending:
        logger.info(
            "validated: %s",
            ", ".join(
                f"{r.destination} {len(c.valid)} valid, {len(c.rejected)} rejected"
                for r, c in zip(sending, checks, strict=True)
            ),
        )
    return Prepared(extracted, kept, list(zip(sending, checks, strict=True)))
