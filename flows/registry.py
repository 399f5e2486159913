"""Which flow carries which event type: the one table the drain and the deployments read."""

from __future__ import annotations

from typing import Any

from prefect import Flow

from flows.appointment_cancelled import appointment_cancelled
from flows.appointment_scheduled import appointment_scheduled
from flows.assessment_completed import assessment_completed
from flows.biomarker_updated import biomarker_updated
from flows.consent_changed import consent_changed
from flows.erase_user import erase_user
from flows.health_goal_completed import health_goal_completed
from flows.health_goal_created import health_goal_created
from flows.health_goal_progressed import health_goal_progressed
from flows.payment_changed import payment_changed
from flows.subscription_changed import subscription_changed
from flows.user_clinic_changed import user_clinic_changed
from flows.user_login import user_login
from flows.user_registered import user_registered

EVENT_FLOWS: dict[str, Flow[..., Any]] = {
    "user.registered": user_registered,
    "user.login": user_login,
    "assessment.completed": assessment_completed,
    "biomarker.updated": biomarker_updated,
    "health_goal.created": health_goal_created,
    "health_goal.completed": health_goal_completed,
    "health_goal.progressed": health_goal_progressed,
    "user.deletion_requested": erase_user,
    "user.consent_changed": consent_changed,
    "subscription.changed": subscription_changed,
    "payment.changed": payment_changed,
    "appointment.scheduled": appointment_scheduled,
    "appointment.cancelled": appointment_cancelled,
    "user.clinic_changed": user_clinic_changed,
}
