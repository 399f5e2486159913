"""Named per-record route filters: `where: <name>` on a route in `mappings/routing.yaml`.

A filter takes the extracted frame of one event type and returns a boolean mask of the rows that may take
the route; the rows it leaves out are simply not routed there (no sync-log row: they were never meant to
go). Adding a filter is one function here, one entry in `ROUTE_FILTERS` and its name in
`mappings.routing.ROUTE_FILTER_NAMES` (what the mapping lint knows without importing the connectors); the lint
refuses a route that names an unknown one.
"""

from __future__ import annotations

from collections.abc import Callable

import pandas as pd

from connectors.epic_fhir.observations import critical_results
from ennu.follow_up import GOAL_FOLLOW_UPS, filter_name, follow_ups_for
from ennu.settings import get_settings
from mappings import apply_mapping, load_all_mappings
from tasks.push import to_records

RouteFilter = Callable[[pd.DataFrame], pd.Series]


def critical_biomarker(frame: pd.DataFrame) -> pd.Series:
    """Results flagged LL or HH: beyond the critical limits of mappings/loinc.yaml, read through the EHR's
    mapping, so that the care team is told about exactly the results the EHR flags critical."""
    mapping = load_all_mappings(get_settings().mappings_dir)[("biomarker.updated", "epic_fhir")]
    mapped = apply_mapping(mapping, frame)
    critical = {c.result.record_key for c in critical_results(to_records(mapped))}
    return mapped["_record_key"].isin(critical).reindex(frame.index, fill_value=False).astype(bool)


def goal_active(frame: pd.DataFrame) -> pd.Series:
    """Goals the host still has active: a progress event that arrives after the goal was completed (or
    given up) leaves the won deal and its stage alone."""
    return frame["health_goal.status"].eq("active").astype(bool)


def goal_follow_up(follow_up: str) -> RouteFilter:
    """The filter of one follow-up: completed goals whose kind starts it, per ENNU_GOAL_FOLLOW_UP and
    ENNU_GOAL_FOLLOW_UP_BY_KIND (read at each batch, so a changed setting holds from the next one)."""

    def starts_it(frame: pd.DataFrame) -> pd.Series:
        settings = get_settings()
        kinds = frame["health_goal.kind"]
        wanted = {
            kind
            for kind in kinds.dropna().unique().tolist()  # a handful of kinds, not a loop over rows
            if follow_up in follow_ups_for(kind, settings.goal_follow_up, settings.goal_follow_up_by_kind)
        }
        return kinds.isin(wanted).astype(bool)

    starts_it.__name__ = filter_name(follow_up)
    return starts_it


ROUTE_FILTERS: dict[str, RouteFilter] = {
    "critical_biomarker": critical_biomarker,
    "goal_active": goal_active,
    **{filter_name(follow_up): goal_follow_up(follow_up) for follow_up in GOAL_FOLLOW_UPS},
}
