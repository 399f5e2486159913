"""Mailchimp Marketing: list members by batch subscribe (500 a request), basic auth with the API key."""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from typing import Any, ClassVar, Self

from connectors.base import ConnectionCheck, Connector, Outcome, Person, Record
from connectors.endpoint import resolve_endpoint
from connectors.http import ErrorPolicy, VendorHttp
from connectors.rate_limit import RateLimit
from ennu.models import SyncStatus
from ennu.settings import Settings

SANDBOX_API_KEY = "sandbox-key-us1"
POLICY = ErrorPolicy()


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: MD5 of the lower-cased e-mail address."""
    return hashlib.md5(email.strip().lower().encode(), usedforsecurity=False).hexdigest()


def vendor_base_url(api_key: str) -> str | None:
    """`https://{dc}.api.mailchimp.com/3.0`, with `dc` the suffix after the API key's dash."""
    _, _, dc = api_key.rpartition("-")
    return f"https://{dc}.api.mailchimp.com/3.0" if dc and dc.isalnum() else None


def nest(fields: dict[str, Any]) -> dict[str, Any]:
    """`{"merge_fields.FNAME": "Ann"}` → `{"merge_fields": {"FNAME": "Ann"}}`; nulls are left out."""
    nested: dict[str, Any] = {}
    for name, value in fields.items():
        if value is None:
            continue
        head, _, tail = name.partition(".")
        if tail:
            nested.setdefault(head, {})[tail] = value
        else:
            nested[name] = value
    return nested


class MailchimpConnector(Connector):
    """Members of one audience (list), upserted by batch subscribe with `update_existing`."""

    name: ClassVar[str] = "mailchimp"
    consent_category: ClassVar[str] = "marketing"
    batch_sizes: ClassVar[dict[str, int]] = {"members": 500}

    def __init__(self, http: VendorHttp, list_id: str) -> None:
        self.http = http
        self.list_id = list_id

    @classmethod
    def from_settings(cls, settings: Settings, *, rate_limited: bool = True) -> Self:
        from ennu.secrets import read_secret

        configured_key = read_secret("MAILCHIMP_API_KEY")
        endpoint = resolve_endpoint(
            cls.name,
            credential_env="MAILCHIMP_API_KEY",
            vendor_base_url=vendor_base_url(configured_key.get_secret_value()) if configured_key else None,
            configured_base_url=settings.mailchimp_base_url,
            sandbox_path="mailchimp/3.0",
            sandbox_secret=SANDBOX_API_KEY,
        )
        http = VendorHttp(
            cls.name,
            endpoint.base_url,
            auth=("ennu", endpoint.secret.get_secret_value()),
            timeout=settings.http_timeout_seconds,
            policy=POLICY,
            rate_limit=RateLimit(cls.name, settings.mailchimp_requests_per_hour) if rate_limited else None,
        )
        return cls(http, settings.mailchimp_list_id)

    def push(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        if object_name != "members":
            raise ValueError(f"mailchimp: unsupported object {object_name!r}")
        members = [_member(r.fields, upsert_key) for r in records]
        response = self.http.request(
            "POST", f"/lists/{self.list_id}", json={"members": members, "update_existing": True}
        )
        body: dict[str, Any] = response.json()
        by_hash = {subscriber_hash(str(r.fields[upsert_key])): r for r in records}
        outcomes: dict[str, Outcome] = {}
        for kind, status in (("new_members", SyncStatus.CREATED), ("updated_members", SyncStatus.UPDATED)):
            for member in body.get(kind, []):
                record = by_hash.get(
                    str(member.get("id") or subscriber_hash(str(member.get("email_address", ""))))
                )
                if record is not None:
                    outcomes[record.record_key] = Outcome(
                        record.record_key, status, remote_id=str(member.get("id"))
                    )
        for error in body.get("errors", []):
            record = by_hash.get(subscriber_hash(str(error.get("email_address", ""))))
            if record is not None:
                code = str(error.get("error_code") or "error")
                outcomes[record.record_key] = Outcome(record.record_key, SyncStatus.FAILED, error=code)
        return [
            outcomes.get(r.record_key)
            or Outcome(r.record_key, SyncStatus.FAILED, error="no result from mailchimp")
            for r in records
        ]

    def test_connection(self) -> ConnectionCheck:
        started = time.monotonic()
        self.http.request("GET", "/ping")
        return ConnectionCheck(self.name, True, "ping answered", int((time.monotonic() - started) * 1000))

    def erase(self, person: Person) -> Outcome:
        key = f"user:{person.user_id}"
        if not person.email:
            return Outcome(key, SyncStatus.SKIPPED, error="no e-mail to identify the member")
        member = subscriber_hash(person.email)
        response = self.http.request(
            "POST",
            f"/lists/{self.list_id}/members/{member}/actions/delete-permanent",
            allow_statuses=frozenset({404}),
        )
        if response.status_code == 404:
            return Outcome(key, SyncStatus.UNCHANGED, error="not found")
        return Outcome(key, SyncStatus.ERASED, remote_id=member)

    def close(self) -> None:
        self.http.close()


def _member(fields: dict[str, Any], upsert_key: str) -> dict[str, Any]:
    member = nest(fields)
    member["email_address"] = member.pop(upsert_key)
    # Batch subscribe takes `status`; a mapping may say `status_if_new` as the member PUT does.
    member["status"] = member.pop("status_if_new", None) or member.get("status") or "subscribed"
    tags = member.get("tags")
    if isinstance(tags, str):
        member["tags"] = [tags]
    return member
