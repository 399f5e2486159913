"""A person's Mailchimp tags from the host's current state: those that hold, and those that no longer do.

Tags are derived from the person's goals and assessments as the host holds them when the push runs, never
from the event alone, so an older event delivered late cannot re-activate a tag that a newer state removed
(a `health_goal.created` arriving after the completion tags `goal-completed:…`, not `goal:…`). Any event
type whose Mailchimp mapping writes members gets the same tags: one more event is a mapping and a route.

The scheme, per known goal kind and assessment type (`slug`: the host's value with `-` for `_`):

| tag | active while | inactive when |
|---|---|---|
| `goal:<kind>` | the person has an open goal of that kind | all their goals of that kind are closed |
| `goal-completed:<kind>` | they completed a goal of that kind | never (a completion stays history) |
| `assessment:<type>` | they completed an assessment of that type | never |
| `assessment:<type>:<band>` | the band of their latest assessment of the type | a newer one has another |
| `goal:<kind>:<n>pct` | an open goal of the kind reached n % (25, 50, 75) | it reached the next; it closed |

Bands (`low`, `medium`, `high`) are the only trace of a score, and the audience already holds the overall
score as the SCORE merge field. Kinds and types the scheme does not know get no tag (free text is never a
tag name). A tag is sent inactive only when the person's history could have set it (a closed goal of that
kind, an older band of that type): a first assessment or a first goal costs no tags request at all.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass, field
from typing import Protocol

from ennu.models import AssessmentType

GOAL_KINDS = (
    "lose_weight",
    "improve_sleep",
    "balance_hormones",
    "lower_cholesterol",
    "build_muscle",
    "reduce_stress",
)
ASSESSMENT_TYPES = tuple(t.value for t in AssessmentType)
CLOSED_GOALS = frozenset({"completed", "abandoned", "cancelled"})
COMPLETED_GOAL = "completed"
BANDS = ("low", "medium", "high")
MILESTONES = (25, 50, 75)  # progress tags (`health_goal.progressed`): the quarter a goal has reached


def slug(value: str) -> str:
    return value.replace("_", "-")


def score_band(score: float | None) -> str | None:
    """The band of an overall score on ENNU's 0-10 scale: below 4 low, below 7 medium, else high."""
    if score is None:
        return None
    return "low" if score < 4 else "medium" if score < 7 else "high"


def goal_tag(kind: str) -> str:
    return f"goal:{slug(kind)}"


def goal_completed_tag(kind: str) -> str:
    return f"goal-completed:{slug(kind)}"


def assessment_tag(kind: str) -> str:
    return f"assessment:{slug(kind)}"


def band_tag(kind: str, band: str) -> str:
    return f"assessment:{slug(kind)}:{band}"


def progress_tag(kind: str, milestone: int) -> str:
    return f"goal:{slug(kind)}:{milestone}pct"


def milestone(progress: int | None) -> int | None:
    """The highest milestone a goal's progress (0-100) has reached, or None below the first."""
    reached = [m for m in MILESTONES if progress is not None and progress >= m]
    return reached[-1] if reached else None


@dataclass(frozen=True)
class PersonFacts:
    """What the host holds of one person that tags are made of (no value beyond a band)."""

    goals: tuple[tuple[str, str], ...] = ()  # (kind, status) of each of their goals
    # kind -> the highest progress (0-100) of their open goals of that kind that report any
    progress: dict[str, int] = field(default_factory=dict)
    # kinds of which some goal, open or closed, reached a milestone (its tag may be set)
    progressed: frozenset[str] = frozenset()
    latest_band: dict[str, str | None] = field(default_factory=dict)  # type -> band of its latest assessment
    bands_held: dict[str, frozenset[str]] = field(default_factory=dict)  # type -> every band it ever had


class HostFacts(Protocol):
    """Reads the people's facts from the host (tasks/host_tags.py); people without any are left out."""

    def of(self, user_ids: Collection[int]) -> dict[int, PersonFacts]: ...


@dataclass(frozen=True)
class TagState:
    active: tuple[str, ...] = ()
    inactive: tuple[str, ...] = ()


def tag_state(facts: PersonFacts) -> TagState:
    """The tags that hold for the person now, and the ones their history may have set that no longer hold."""
    active: list[str] = []
    inactive: list[str] = []
    for kind in GOAL_KINDS:
        statuses = [status for goal_kind, status in facts.goals if goal_kind == kind]
        if not statuses:
            continue
        (active if any(s not in CLOSED_GOALS for s in statuses) else inactive).append(goal_tag(kind))
        if COMPLETED_GOAL in statuses:
            active.append(goal_completed_tag(kind))
        reached = milestone(facts.progress.get(kind))
        if reached is not None:
            active.append(progress_tag(kind, reached))
        if kind in facts.progressed:  # an earlier milestone, or one of a goal since closed, no longer holds
            inactive.extend(progress_tag(kind, m) for m in MILESTONES if m != reached)
    for kind in ASSESSMENT_TYPES:
        if kind not in facts.latest_band:
            continue
        active.append(assessment_tag(kind))
        band = facts.latest_band[kind]
        if band is not None:
            active.append(band_tag(kind, band))
        inactive.extend(
            band_tag(kind, old) for old in BANDS if old in facts.bands_held.get(kind, ()) and old != band
        )
    return TagState(tuple(active), tuple(inactive))
