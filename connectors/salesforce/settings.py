"""Salesforce's settings (`SALESFORCE_*`): the login URL, the API version, the org's external-id field, the
JWT bearer flow's user and key file, how fast we may call it, which Account a Contact belongs to."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Literal

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from connectors.request_rate import Rate, parse_rate
from connectors.settings import VendorSettings

API_NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"
# clinic: the person's clinic (household) Account, their own where they have no clinic; person: always
# their own; none: Contacts are linked to no Account.
AccountModel = Literal["clinic", "person", "none"]


class SalesforceSettings(VendorSettings):
    model_config = SettingsConfigDict(env_prefix="SALESFORCE_")
    secrets: ClassVar[dict[str, str]] = {
        "SALESFORCE_CONSUMER_KEY": "the connected app's consumer key (client id)",
        "SALESFORCE_CLIENT_SECRET": "the connected app's consumer secret (client credentials flow)",
        "SALESFORCE_PRIVATE_KEY": "PEM private key of the connected app's certificate (JWT bearer flow)",
    }

    login_url: str | None = Field(
        default=None,
        description="Where tokens are requested: the org's My Domain URL (required for client credentials); "
        "unset: login.salesforce.com.",
    )
    rate_limit: Rate = Field(
        default=parse_rate("15000/24h"),
        description=(
            "Requests shared by every worker: an org's API allocation over a rolling 24 hours (15,000 is "
            "the smallest; set your org's, less what its other integrations use). `4000/1h` is the "
            "conservative option of earlier releases."
        ),
    )
    api_version: str = Field(
        default="62.0", pattern=r"^\d{2,3}\.0$", description="REST API version (`/services/data/vNN.0`)."
    )
    external_id_field: str = Field(
        default="ENNU_User_Id__c",
        pattern=API_NAME_PATTERN,
        description="API name of the Contact and Lead external-id field that mappings call "
        "ENNU_User_Id__c, where an org named it otherwise.",
    )
    query_batch_size: int | None = Field(
        default=None,
        ge=200,
        le=2_000,
        description="Records per page of the inbound sync's query (Sforce-Query-Options batchSize, "
        "200 to 2,000); unset: Salesforce's 2,000.",
    )
    username: str | None = Field(
        default=None, description="The integration user the JWT bearer flow signs in as (its `sub`)."
    )
    private_key_file: Path | None = Field(
        default=None,
        description="A file with the JWT bearer flow's PEM private key, instead of SALESFORCE_PRIVATE_KEY.",
    )
    jwt_audience: str | None = Field(
        default=None,
        description="The JWT `aud`; unset: login.salesforce.com, or test.salesforce.com for sandbox orgs.",
    )
    account_model: AccountModel = Field(
        default="clinic",
        description="Which Account a registered Contact belongs to: `clinic` (the host clinic's Account, or "
        "the person's own when they have none), `person` (always the person's own), `none` (no Account).",
    )
