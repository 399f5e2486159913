"""The routing table: which connectors each event type goes to, with enable switches and consent needs."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ennu.events import EVENT_TYPES


class ConsentNeed(StrEnum):
    NONE = "none"
    MARKETING = "marketing"
    COMMUNICATION = "communication"


DEFAULT_PRIORITY = 5


class IntegrationRouting(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    consent: ConsentNeed = ConsentNeed.NONE
    # The drain serves waiting events of higher-priority integrations first (1 is first).
    priority: int = Field(default=DEFAULT_PRIORITY, ge=1, le=9)


class RouteSpec(BaseModel):
    """One destination of an event type; `mapping` defaults to the connector's name."""

    model_config = ConfigDict(extra="forbid")

    connector: str
    mapping: str | None = None
    enabled: bool = True
    where: str | None = None  # a named record filter (tasks/route_filters.py), e.g. critical_biomarker

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
        return min((self.integrations[s.connector].priority for s in self.routes_for(event_type)), default=9)

    def routes_for(self, event_type: str) -> list[RouteSpec]:
        """The enabled routes of one event type, in table order."""
        return [
            spec
            for spec in self.routes.get(event_type, [])
            if spec.enabled and self.integrations[spec.connector].enabled
        ]


class RoutingError(ValueError):
    pass


def load_routing(path: Path) -> RoutingTable:
    try:
        data = yaml.safe_load(path.read_text())
        return RoutingTable.model_validate(data)
    except (yaml.YAMLError, ValidationError) as exc:
        raise RoutingError(f"{path}: {exc}") from None


@lru_cache(maxsize=8)
def _cached(path: Path, mtime_ns: int) -> RoutingTable:
    return load_routing(path)


def routing_table(mappings_dir: Path) -> RoutingTable:
    path = mappings_dir / "routing.yaml"
    return _cached(path, path.stat().st_mtime_ns)
