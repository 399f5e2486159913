"""Mailchimp's settings (`MAILCHIMP_*`): the audience, how fast we may call it, segments, follow-ups."""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from connectors.mailchimp.member_events import EVENT_NAME_PATTERN
from connectors.request_rate import Rate, parse_rate
from connectors.settings import VendorSettings


class MailchimpSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="MAILCHIMP_")
    secrets: ClassVar[dict[str, str]] = {
        "MAILCHIMP_API_KEY": "an API key with its data-centre suffix (`...-us21`): where its API is"
    }

    base_url: str | None = Field(
        default=None,
        description="API base URL instead of the API key's data centre (a proxy); "
        "unset: https://{dc}.api.mailchimp.com/3.0.",
    )
    list_id: str = Field(
        default="sandbox-list", min_length=1, description="The audience members are written to."
    )
    rate_limit: Rate = Field(
        default=parse_rate("10/1s"),
        description=(
            "Requests shared by every worker. Mailchimp limits simultaneous connections (10), not a rate;"
            " ten a second keeps inside it. `3600/1h` is the conservative option of earlier releases."
        ),
    )
    journey_id: int | None = Field(
        default=None,
        ge=1,
        description="The Customer Journey whose API-trigger step follows up a health goal "
        "(`journey_members`); unset, or MAILCHIMP_JOURNEY_STEP_ID unset: no journey is triggered.",
    )
    journey_step_id: int | None = Field(
        default=None, ge=1, description="The journey's API-trigger step (with MAILCHIMP_JOURNEY_ID)."
    )
    assessment_event: str = Field(
        default="assessment_completed",
        pattern=EVENT_NAME_PATTERN,
        description="The member event (`/members/{hash}/events`) a completed assessment sends, to start its "
        "follow-up journey: 2-30 letters, digits, `_` or `-`.",
    )
    goal_completed_event: str = Field(
        default="goal_completed",
        pattern=EVENT_NAME_PATTERN,
        description="The member event a completed health goal sends, to start its follow-up journey.",
    )
    segments: bool = Field(
        default=True,
        description="Create the saved segments for goal kinds and assessment types (tag conditions) once "
        "per audience; `false`: none are created.",
    )
