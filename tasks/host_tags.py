"""The people's goals and assessments from the host tables, as the Mailchimp connector's tag facts."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import select

from connectors.mailchimp.tag_state import CLOSED_GOALS, PersonFacts, milestone, score_band
from ennu.db import session_scope
from ennu.models import Assessment, HealthGoal
from tasks.extract import chunks

COMPLETED_ASSESSMENT = "completed"
EPOCH = datetime.min


class HostTagFacts:
    """The Mailchimp connector's reader of tag facts (connectors/mailchimp/tag_state.HostFacts).

    It lives in tasks/ because reading the host's tables is the pipeline's work; the connector is given one
    (`tasks.host_biomarkers.provide_host_data`). Read at push time, so tags follow the host's current
    state whatever order the events arrive in. Only kinds, statuses and score bands leave this function.
    """

    def of(self, user_ids: Collection[int]) -> dict[int, PersonFacts]:
        goals: dict[int, list[tuple[str, str]]] = defaultdict(list)
        progress: dict[int, dict[str, int]] = defaultdict(dict)
        progressed: dict[int, set[str]] = defaultdict(set)
        assessments: dict[int, list[Any]] = defaultdict(list)
        with session_scope() as session:
            for part in chunks(sorted(set(user_ids))):
                rows = session.execute(
                    select(
                        HealthGoal.user_id, HealthGoal.kind, HealthGoal.status, HealthGoal.progress_percent
                    ).where(HealthGoal.user_id.in_(part))
                )
                for user_id, kind, status, percent in rows:
                    goals[user_id].append((str(kind), str(status)))
                    if milestone(percent) is not None:
                        progressed[user_id].add(str(kind))
                    if percent is not None and str(status) not in CLOSED_GOALS:
                        mine = progress[user_id]
                        mine[str(kind)] = max(int(percent), mine.get(str(kind), 0))
                done = session.execute(
                    select(
                        Assessment.user_id,
                        Assessment.type,
                        Assessment.completed_at,
                        Assessment.id,
                        Assessment.overall_score,
                    ).where(Assessment.user_id.in_(part), Assessment.status == COMPLETED_ASSESSMENT)
                )
                for row in done:
                    assessments[row[0]].append(row)
        return {
            user_id: facts(
                goals.get(user_id, []),
                assessments.get(user_id, []),
                progress.get(user_id, {}),
                frozenset(progressed.get(user_id, ())),
            )
            for user_id in set(goals) | set(assessments)
        }


def _completion_order(row: Any) -> tuple[datetime, int]:
    completed_at: datetime | None = row[2]
    return (completed_at.replace(tzinfo=None) if completed_at else EPOCH, int(row[3]))


def facts(
    goals: list[tuple[str, str]],
    assessments: list[Any],
    progress: dict[str, int] | None = None,
    progressed: frozenset[str] = frozenset(),
) -> PersonFacts:
    """One person's facts: the latest assessment of a type is the last completed (ties: the higher id)."""
    latest: dict[str, str | None] = {}
    held: dict[str, set[str]] = defaultdict(set)
    for _, kind, _, _, score in sorted(assessments, key=_completion_order):
        band = score_band(score)
        latest[str(kind)] = band
        if band is not None:
            held[str(kind)].add(band)
    return PersonFacts(
        goals=tuple(sorted(goals)),
        progress=dict(progress or {}),
        progressed=progressed,
        latest_band=latest,
        bands_held={kind: frozenset(bands) for kind, bands in held.items()},
    )
