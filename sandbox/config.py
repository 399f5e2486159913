"""The sandbox's settings: the published dummy credentials it accepts, starting rate limits, memory caps."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class SandboxConfig(BaseModel):
    """What the stand-ins accept and how they start (and restart after `POST /_sandbox/reset`)."""

    model_config = ConfigDict(frozen=True)

    hubspot_token: str = "sandbox-hubspot-token"  # noqa: S105 - a published dummy, not a secret
    mailchimp_api_key: str = "sandbox-key-us1"
    mailchimp_list_id: str = "sandbox-list"
    # vendor name -> requests per second allowed before 429 (None or absent: unlimited).
    rates: dict[str, float | None] = Field(default_factory=dict)
    retry_after: int = Field(default=1, ge=0)  # the Retry-After (seconds) of a configured rate's 429
    # Mailchimp refuses to re-import a permanently deleted address; switch off to let tests re-add one.
    mailchimp_block_forgotten: bool = True
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)  # larger request bodies get 413
    kept_bodies: int = Field(default=1000, ge=0)  # request bodies kept in memory per vendor, newest last
