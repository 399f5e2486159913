"""The sandbox's published dummy credentials and defaults."""

from __future__ import annotations

from pydantic import BaseModel


class SandboxConfig(BaseModel):
    hubspot_token: str = "sandbox-hubspot-token"  # noqa: S105 - a published dummy
    mailchimp_api_key: str = "sandbox-key-us1"
    mailchimp_list_id: str = "sandbox-list"
    default_rate_per_second: float | None = None
