"""HubSpot CRM: contacts by CRM v3 batch upsert (100 a request), private-app bearer token."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, ClassVar, Self

from connectors.base import ConnectionCheck, Connector, Outcome, Person, Record
from connectors.endpoint import resolve_endpoint
from connectors.http import ErrorPolicy, VendorHttp
from connectors.rate_limit import RateLimit
from ennu.models import SyncStatus
from ennu.settings import Settings

VENDOR_BASE_URL = "https://api.hubapi.com"
SANDBOX_TOKEN = "sandbox-hubspot-token"  # noqa: S105 - the sandbox's published dummy token
POLICY = ErrorPolicy(passthrough_statuses=frozenset({207}))


class HubSpotConnector(Connector):
    """Contacts (and any CRM v3 object with a unique-value id property) upserted in batches."""

    name: ClassVar[str] = "hubspot"
    consent_category: ClassVar[str] = "crm"
    batch_sizes: ClassVar[dict[str, int]] = {"contacts": 100, "companies": 100, "deals": 100}

    def __init__(self, http: VendorHttp) -> None:
        self.http = http

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        endpoint = resolve_endpoint(
            cls.name,
            credential_env="HUBSPOT_ACCESS_TOKEN",
            vendor_base_url=VENDOR_BASE_URL,
            configured_base_url=settings.hubspot_base_url,
            sandbox_path="hubspot",
            sandbox_secret=SANDBOX_TOKEN,
        )
        http = VendorHttp(
            cls.name,
            endpoint.base_url,
            headers={"Authorization": f"Bearer {endpoint.secret.get_secret_value()}"},
            timeout=settings.http_timeout_seconds,
            policy=POLICY,
            rate_limit=RateLimit(cls.name, settings.hubspot_requests_per_hour) if rate_limited else None,
        )
        return cls(http)

    def push(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        inputs = [
            {"id": str(r.fields[upsert_key]), "idProperty": upsert_key, "properties": _properties(r.fields)}
            for r in records
        ]
        response = self.http.request(
            "POST", f"/crm/v3/objects/{object_name}/batch/upsert", json={"inputs": inputs}
        )
        body: dict[str, Any] = response.json()
        by_key = {str(r.fields[upsert_key]).lower(): r for r in records}
        outcomes: dict[str, Outcome] = {}
        for result in body.get("results", []):
            key = str(result.get("properties", {}).get(upsert_key, "")).lower()
            record = by_key.get(key)
            if record is not None:
                status = SyncStatus.CREATED if result.get("new") else SyncStatus.UPDATED
                outcomes[record.record_key] = Outcome(
                    record.record_key, status, remote_id=str(result.get("id"))
                )
        for error in body.get("errors", []):
            code = str(error.get("category") or error.get("status") or "error")
            for key in error.get("context", {}).get("ids", []):
                record = by_key.get(str(key).lower())
                if record is not None:
                    outcomes[record.record_key] = Outcome(record.record_key, SyncStatus.FAILED, error=code)
        return [
            outcomes.get(r.record_key)
            or Outcome(r.record_key, SyncStatus.FAILED, error="no result from hubspot")
            for r in records
        ]

    def test_connection(self) -> ConnectionCheck:
        started = time.monotonic()
        self.http.request("GET", "/account-info/v3/details")
        return ConnectionCheck(
            self.name, True, "account details read", int((time.monotonic() - started) * 1000)
        )

    def erase(self, person: Person) -> Outcome:
        key = f"user:{person.user_id}"
        if not person.email:
            return Outcome(key, SyncStatus.SKIPPED, error="no e-mail to identify the contact")
        response = self.http.request(
            "POST",
            "/crm/v3/objects/contacts/gdpr-delete",
            json={"objectId": person.email.strip().lower(), "idProperty": "email"},
            allow_statuses=frozenset({404}),
        )
        if response.status_code == 404:
            return Outcome(key, SyncStatus.UNCHANGED, error="not found")
        return Outcome(key, SyncStatus.ERASED)

    def close(self) -> None:
        self.http.close()


def _properties(fields: dict[str, Any]) -> dict[str, Any]:
    """HubSpot property values are strings or numbers; nulls are left out rather than clearing data."""
    return {name: value for name, value in fields.items() if value is not None}
