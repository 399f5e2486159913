"""Blood-pressure halves: one panel with the partner the host recorded, or a wait, then the half alone."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Protocol

from connectors.base import Record
from connectors.epic_fhir.observations import (
    IDENTIFIER_PREFIX,
    CodedResult,
    ObservationDraft,
    code_results,
    panel_draft,
    single_draft,
)
from mappings.loinc import LoincTable

WAITING = "blood pressure half waiting for its other half"


class PanelPartners(Protocol):
    """Reads other panel results of these people from the host, mapped like the event's own records."""

    def around(
        self, user_ids: Collection[int], names: Collection[str], start: datetime, end: datetime
    ) -> list[Record]:
        """Records of these biomarker names, observed between `start` and `end` (inclusive)."""
        ...


@dataclass(frozen=True)
class PanelWindow:
    """How halves find each other: measured within `pair` of each other; a lone half waits `wait`."""

    pair: timedelta = timedelta(minutes=5)
    wait: timedelta = timedelta(minutes=15)  # counted from when the host recorded the half
    recheck: timedelta = timedelta(minutes=1)  # how soon a waiting half is offered again


@dataclass(frozen=True)
class HalfPlan:
    """One panel member of the batch: the panel with its partner (if found) and the half as sent alone."""

    half: CodedResult
    alone: ObservationDraft
    panel: ObservationDraft | None
    partner_alone: str | None  # the identifier the partner carries when it went alone
    wait_until: datetime

    @property
    def record_key(self) -> str:
        return self.half.result.record_key

    @property
    def user_id(self) -> int:
        return self.half.result.user_id


@dataclass(frozen=True)
class Waiting:
    """A half whose partner is not there yet: offered again at `not_before` (the window's end at most)."""

    record_key: str
    not_before: datetime


def read_partners(
    partners: PanelPartners | None, halves: Sequence[CodedResult], table: LoincTable, window: PanelWindow
) -> list[CodedResult]:
    """The halves of the batch plus the host's results that could pair with them (uncodable ones left out)."""
    if not halves or partners is None:
        return list(halves)
    names = {c for h in halves if h.entry.panel for c in table.panels[h.entry.panel].components}
    start = min(h.result.observed_at for h in halves) - window.pair
    end = max(h.result.observed_at for h in halves) + window.pair
    records = partners.around({h.result.user_id for h in halves}, names, start, end)
    from_host, _ = code_results(records, table)
    batch_ids = {h.result.biomarker_id for h in halves}
    return [*halves, *(r for r in from_host if r.result.biomarker_id not in batch_ids)]


def _closest(
    half: CodedResult, name: str, candidates: Sequence[CodedResult], pair: timedelta
) -> CodedResult | None:
    near = [
        c
        for c in candidates
        if c.entry.name == name
        and c.result.user_id == half.result.user_id
        and abs(c.result.observed_at - half.result.observed_at) <= pair
    ]
    return min(
        near,
        key=lambda c: (abs(c.result.observed_at - half.result.observed_at), c.result.biomarker_id),
        default=None,
    )


def plan_halves(
    halves: Sequence[CodedResult],
    candidates: Sequence[CodedResult],
    table: LoincTable,
    identifier_system: str,
    window: PanelWindow,
) -> list[HalfPlan]:
    """For each half: the closest partner of each other component, measured within the pairing window."""
    plans = []
    for half in halves:
        panel = table.panels[str(half.entry.panel)]
        members: list[CodedResult] = []
        for name in panel.components:
            found = half if name == half.entry.name else _closest(half, name, candidates, window.pair)
            if found is not None:
                members.append(found)
        complete = len(members) == len(panel.components)
        partners = [m for m in members if m is not half]
        recorded = half.result.recorded_at or half.result.observed_at
        plans.append(
            HalfPlan(
                half=half,
                alone=single_draft(half, identifier_system),
                panel=panel_draft(panel, members, identifier_system, (half.result.record_key,))
                if complete
                else None,
                partner_alone=f"{IDENTIFIER_PREFIX}{partners[0].result.biomarker_id}"
                if complete and len(partners) == 1
                else None,
                wait_until=recorded + window.wait,
            )
        )
    return plans


def choose(
    plan: HalfPlan, held: Collection[str], now: datetime, window: PanelWindow
) -> ObservationDraft | Waiting:
    """The Observation this half goes in, or a wait.

    What the EHR already holds decides first, so that both halves always agree: a half (or its partner)
    that went alone once stays alone, and a panel is never sent beside one of its halves. Then the panel if
    the partner is there; else the half waits until `wait_until`, and after that goes alone.
    """
    if plan.alone.identifier_value in held or (plan.partner_alone is not None and plan.partner_alone in held):
        return plan.alone
    if plan.panel is not None:
        return plan.panel
    if now >= plan.wait_until:
        return plan.alone
    return Waiting(plan.half.result.record_key, min(now + window.recheck, plan.wait_until))
