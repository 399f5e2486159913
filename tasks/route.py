"""Route: which destinations take this batch, minus the people who have not consented to them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd
from sqlalchemy import select

from ennu.db import session_scope
from ennu.models import Consent
from ennu.settings import get_settings
from mappings import Mapping, load_all_mappings
from mappings.routing import ConsentNeed, routing_table
from tasks.extract import chunks

CONSENT_FLAGS = {
    ConsentNeed.MARKETING: "user.marketing_consent",
    ConsentNeed.COMMUNICATION: "user.communication_consent",
}


@dataclass
class Route:
    """One destination of a batch: its mapping, the rows that may go there and the rows that may not."""

    connector: str
    mapping: Mapping
    frame: pd.DataFrame
    refused: pd.DataFrame  # rows withheld for lack of consent
    filtered: pd.DataFrame | None = None  # rows the route's `where` filter leaves out
    where: str | None = None

    @property
    def destination(self) -> str:
        return f"{self.connector}/{self.mapping.object}"


def explicit_consents(user_ids: Sequence[int], integrations: Sequence[str]) -> pd.DataFrame:
    """Per-integration consent rows (user_id, integration, granted) for these people."""
    rows: list[tuple[int, str, bool]] = []
    with session_scope() as session:
        for part in chunks(sorted(set(user_ids))):
            rows.extend(
                (r.user_id, r.integration, r.granted)
                for r in session.execute(
                    select(Consent.user_id, Consent.integration, Consent.granted).where(
                        Consent.user_id.in_(part), Consent.integration.in_(list(integrations))
                    )
                )
            )
    return pd.DataFrame(rows, columns=["user_id", "integration", "granted"])


def consented(frame: pd.DataFrame, connector: str, need: ConsentNeed, consents: pd.DataFrame) -> pd.Series:
    """A boolean mask: the category flag (if any), overridden by an explicit per-integration row."""
    if need in CONSENT_FLAGS:
        allowed = frame[CONSENT_FLAGS[need]].fillna(False).astype(bool)
    else:
        allowed = pd.Series(True, index=frame.index)
    explicit = consents.loc[consents["integration"] == connector].set_index("user_id")["granted"]
    override = frame["user.id"].map(explicit)
    return override.where(override.notna(), allowed).astype(bool)


def plan_routes(event_type: str, frame: pd.DataFrame) -> list[Route]:
    settings = get_settings()
    table = routing_table(settings.mappings_dir)
    mappings = load_all_mappings(settings.mappings_dir)
    specs = table.routes_for(event_type)
    consents = (
        explicit_consents(frame["user.id"].tolist(), [s.connector for s in specs]) if len(frame) else None
    )
    routes = []
    for spec in specs:
        mapping = mappings[(event_type, spec.mapping_name)]
        if consents is None:
            mask = pd.Series(True, index=frame.index)
        else:
            mask = consented(frame, spec.connector, table.integrations[spec.connector].consent, consents)
        if spec.where is not None and len(frame):
            from tasks.route_filters import ROUTE_FILTERS  # connectors and mappings; loaded when named

            wanted = ROUTE_FILTERS[spec.where](frame)
            routes.append(
                Route(
                    spec.connector,
                    mapping,
                    frame.loc[mask & wanted],
                    frame.loc[~mask & wanted],
                    frame.loc[~wanted],
                    spec.where,
                )
            )
            continue
        routes.append(Route(spec.connector, mapping, frame.loc[mask], frame.loc[~mask]))
    return routes
