"""Prepare a batch: extract → route → map → validate, plain function calls in the batch's flow run.

No task run: a task run costs the Prefect server (its state events) and the worker more than the stages
themselves for a small batch; the stages' counts are in the flow run's log lines either way. The pushes,
one task run per destination's batch, are what the run's task list shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from prefect import get_run_logger

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
