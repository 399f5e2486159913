"""Which flow carries which event type: the one table the drain and the deployments read."""

from __future__ import annotations

from typing import Any

from prefect import Flow

from flows.assessment_completed import assessment_completed

EVENT_FLOWS: dict[str, Flow[..., Any]] = {
    "assessment.completed": assessment_completed,
}
