"""Which follow-ups a completed health goal starts: the vocabulary and the reading of ENNU_GOAL_FOLLOW_UP.

A follow-up is one kind of next step after a goal is reached: `notice` (the care team's Slack and Teams
channels), `journey` (a Mailchimp member event that starts a follow-up journey), `zap` (the Zapier trigger).
ENNU_GOAL_FOLLOW_UP lists the ones every completed goal starts (comma-separated, empty for none);
ENNU_GOAL_FOLLOW_UP_BY_KIND replaces that list for some goal kinds (`{"reduce_stress": "notice"}`). The
routes of `health_goal.completed` carry them out: a route with `where: goal_follow_up_<follow-up>`
(tasks/route_filters.py) takes only the goals whose follow-ups include it, so adding a follow-up is one
name here and one route.
"""

from __future__ import annotations

from collections.abc import Mapping

GOAL_FOLLOW_UPS: tuple[str, ...] = ("notice", "journey", "zap")
FILTER_PREFIX = "goal_follow_up_"


def parse_follow_ups(text: str) -> frozenset[str]:
    """The follow-ups a comma-separated list names; a name outside GOAL_FOLLOW_UPS is a ValueError."""
    names = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(names - set(GOAL_FOLLOW_UPS))
    if unknown:
        raise ValueError(f"unknown follow-up {', '.join(unknown)}; known: {', '.join(GOAL_FOLLOW_UPS)}")
    return names


def follow_ups_for(kind: str | None, default: str, by_kind: Mapping[str, str]) -> frozenset[str]:
    """The follow-ups a completed goal of this kind starts: its kind's own list, else the default."""
    return parse_follow_ups(by_kind[kind] if kind is not None and kind in by_kind else default)


def filter_name(follow_up: str) -> str:
    """The route filter (`where:`) that keeps the completed goals starting this follow-up."""
    return f"{FILTER_PREFIX}{follow_up}"
