"""The routing table: which connectors each event type goes to, with enable switches and consent needs."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from ennu.events import EVENT_TYPES
from ennu.follow_up import GOAL_FOLLOW_UPS, filter_name

SANDBOX_ONLY = "sandbox"
# The record filters a route may name (`where:`), part of the routing vocabulary like the event types, each
# with the resource its event must carry (the filter reads its columns); each is implemented in
# tasks/route_filters.py (it needs the connectors), which a test keeps equal to this list.
ROUTE_FILTER_RESOURCES: dict[str, str] = {
    "critical_biomarker": "biomarker",
    "goal_active": "health_goal",
    **{filter_name(follow_up): "health_goal" for follow_up in GOAL_FOLLOW_UPS},
}
ROUTE_FILTER_NAMES: frozenset[str] = frozenset(ROUTE_FILTER_RESOURCES)


class ConsentNeed(StrEnum):
    NONE = "none"
    MARKETING = "marketing"
    COMMUNICATION = "communication"


DEFAULT_PRIORITY = 5


class IntegrationRouting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    # `sandbox` in the file: on in local mode (ENNU_ENV=local: `make up`, the tests), off in production.
    enabled: bool = True
    declared: bool | Literal["sandbox"] = True  # what the file says (kept for status and health)
    consent: ConsentNeed = ConsentNeed.NONE
    # The drain serves waiting events of higher-priority integrations first (1 is first).
    priority: int = Field(default=DEFAULT_PRIORITY, ge=1, le=9)
    # Routed every event type that has a mapping file for it (`mappings/<type>/<name>.yaml`), so the
    # mapping files are the one list of what it takes (Zapier: its triggers). A route listed under
    # `routes:` for such a type still wins (its priority or filter).
    every_mapped_event: bool = False

    @model_validator(mode="before")
    @classmethod
    def _sandbox_only(cls, raw: object, info: ValidationInfo) -> object:
        if not isinstance(raw, dict) or "declared" in raw:
            return raw
        declared = raw.get("enabled", True)
        if declared == SANDBOX_ONLY:
            local = bool((info.context or {}).get("local_mode", False))
            return {**raw, "enabled": local, "declared": SANDBOX_ONLY}
        return {**raw, "declared": declared}


class RouteSpec(BaseModel):
    """One destination of an event type; `mapping` defaults to the connector's name."""

    model_config = ConfigDict(extra="forbid")

    connector: str
    mapping: str | None = None
    enabled: bool = True
    where: str | None = None  # one of ROUTE_FILTER_NAMES (tasks/route_filters.py), e.g. critical_biomarker
    # This route's priority where it differs from its integration's (assessment scores to the EHR are
    # not as urgent as the EHR's results).
    priority: int | None = Field(default=None, ge=1, le=9)

    @property
    def mapping_name(self) -> str:
        return self.mapping or self.connector


class RoutingTable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    integrations: dict[str, IntegrationRouting]
    routes: dict[str, list[RouteSpec]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> RoutingTable:
        for event_type, specs in self.routes.items():
            if event_type not in EVENT_TYPES:
                raise ValueError(f"routes: unknown event type {event_type!r}")
            for spec in specs:
                if spec.connector not in self.integrations:
                    raise ValueError(
                        f"routes.{event_type}: connector {spec.connector!r} is not under integrations"
                    )
        return self

    def event_priority(self, event_type: str) -> int:
        """The most urgent priority among the event type's enabled destinations (9 when it has none)."""
        return min(
            (s.priority or self.integrations[s.connector].priority for s in self.routes_for(event_type)),
            default=9,
        )

    def routes_for(self, event_type: str) -> list[RouteSpec]:
        """The enabled routes of one event type, in table order."""
        return [
            spec
            for spec in self.routes.get(event_type, [])
            if spec.enabled and self.integrations[spec.connector].enabled
        ]


class RoutingError(ValueError):
    pass


def load_routing(path: Path, *, local: bool = False) -> RoutingTable:
    """The routing table; `local`: the hub runs in local mode (turns on `enabled: sandbox`)."""
    try:
        data = yaml.safe_load(path.read_text())
        table = RoutingTable.model_validate(data, context={"local_mode": local})
    except (yaml.YAMLError, ValidationError) as exc:
        raise RoutingError(f"{path}: {exc}") from None
    return with_mapped_routes(table, path.parent)


def with_mapped_routes(table: RoutingTable, mappings_dir: Path) -> RoutingTable:
    """The table with a route for each `every_mapped_event` integration to each event type that has its
    mapping file (after the listed routes of that type, in event-type order)."""
    for name, integration in table.integrations.items():
        if not integration.every_mapped_event:
            continue
        for event_type in sorted(EVENT_TYPES):
            listed = table.routes.get(event_type, [])
            if (mappings_dir / event_type / f"{name}.yaml").is_file() and not any(
                spec.connector == name for spec in listed
            ):
                table.routes[event_type] = [*listed, RouteSpec(connector=name)]
    return table


@lru_cache(maxsize=8)
def _cached(path: Path, mtime_ns: int, local: bool, mapping_files: tuple[str, ...]) -> RoutingTable:
    return load_routing(path, local=local)


def routing_table(mappings_dir: Path) -> RoutingTable:
    """The routing table of this process: `enabled: sandbox` is on in local mode (ENNU_ENV=local) only.

    Read again when routing.yaml changes or a mapping file comes or goes (`every_mapped_event` routes)."""
    from ennu.settings import get_settings

    path = mappings_dir / "routing.yaml"
    present = tuple(sorted(str(p) for p in mappings_dir.glob("*/*.yaml")))
    return _cached(path, path.stat().st_mtime_ns, get_settings().local, present)
