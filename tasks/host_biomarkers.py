"""A person's other biomarker results from the host tables, mapped like the event's own (panel partners)."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import select

from connectors.base import Connector, Record
from connectors.epic_fhir import EpicFhirConnector
from connectors.mailchimp import MailchimpConnector
from connectors.twilio import TwilioConnector
from ennu.db import session_scope
from ennu.models import Biomarker, User
from ennu.settings import Settings
from mappings import apply_mapping, load_all_mappings
from tasks.extract import chunks
from tasks.host_tags import HostTagFacts
from tasks.push import to_records

EVENT_TYPE = "biomarker.updated"
CONNECTOR = "epic_fhir"


def provide_host_data(connector: Connector, settings: Settings) -> None:
    """Hand a connector the reader of the host's data it needs, if it needs one: the Epic connector pairs
    blood-pressure halves with the partners the host recorded (`HostBiomarkers`), the Mailchimp connector
    derives tags from the people's goals and assessments (`tasks.host_tags.HostTagFacts`), the Twilio
    connector cancels the reminder it scheduled for an appointment (`tasks.reminders`). The pipeline
    calls this for each connector it builds (`tasks.push.connector_for`); a connector never imports this
    layer."""
    if isinstance(connector, EpicFhirConnector) and connector.partners is None:
        connector.partners = HostBiomarkers(settings.mappings_dir)
    if isinstance(connector, MailchimpConnector) and connector.facts is None:
        connector.facts = HostTagFacts()
    if isinstance(connector, TwilioConnector) and connector.scheduled_reminders is None:
        from tasks.reminders import scheduled_reminders  # the sync log's SIDs of reminders Twilio holds

        connector.scheduled_reminders = scheduled_reminders


class HostBiomarkers:
    """The Epic connector's reader of blood-pressure partners (connectors/epic_fhir/panels.PanelPartners).

    It lives in tasks/ because reading the host's tables is the pipeline's work; the connector is given one.
    The rows go through the same mapping file as the event's own records, so that nothing leaves that the
    mapping does not name.
    """

    def __init__(self, mappings_dir: Path) -> None:
        self.mappings_dir = mappings_dir

    def around(
        self, user_ids: Collection[int], names: Collection[str], start: datetime, end: datetime
    ) -> list[Record]:
        """Results of these people and biomarker names observed between `start` and `end` (inclusive)."""
        if not user_ids or not names:
            return []
        mapping = load_all_mappings(self.mappings_dir)[(EVENT_TYPE, CONNECTOR)]
        biomarker_columns = list(Biomarker.__table__.columns)
        user_columns = list(User.__table__.columns)
        rows: list[Any] = []
        people: list[Any] = []
        with session_scope() as session:
            for part in chunks(sorted(set(user_ids))):
                rows.extend(
                    session.execute(
                        select(*biomarker_columns).where(
                            Biomarker.user_id.in_(part),
                            Biomarker.name.in_(sorted(names)),
                            Biomarker.observed_at >= start,
                            Biomarker.observed_at <= end,
                        )
                    ).all()
                )
                people.extend(session.execute(select(*user_columns).where(User.id.in_(part))).all())
        if not rows:
            return []
        results = pd.DataFrame(rows, columns=[f"biomarker.{c.name}" for c in biomarker_columns])
        users = pd.DataFrame(people, columns=[f"user.{c.name}" for c in user_columns])
        frame = results.merge(users, how="inner", left_on="biomarker.user_id", right_on="user.id")
        frame["event.id"] = None  # not announced by an event of this batch
        return to_records(apply_mapping(mapping, frame))
