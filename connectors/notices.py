"""Chat notices (Slack, Teams): one message per record, titled and texted by the mapping, no personal data."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

from connectors.base import Connector, Outcome, Person, Record
from connectors.endpoint import resolve_endpoint
from connectors.http import PermanentError, VendorHttp
from ennu.models import SyncStatus


class NoticeConnector(Connector):
    """A channel webhook: each record becomes one message with its `title`, `text` and remaining fields."""

    def __init__(self, http: VendorHttp) -> None:
        self.http = http

    @classmethod
    def webhook_url(cls, credential_env: str, vendor_base_url: str, sandbox_path: str) -> str:
        """The channel's webhook URL: the configured one (the URL is the secret), else the sandbox's."""
        endpoint = resolve_endpoint(
            cls.name,
            credential_env=credential_env,
            vendor_base_url=vendor_base_url,
            configured_base_url=None,
            sandbox_path=sandbox_path,
            sandbox_secret="",
        )
        return endpoint.base_url if endpoint.sandbox else endpoint.secret.get_secret_value()

    @abstractmethod
    def send(self, title: str, text: str, facts: dict[str, Any] | None = None) -> None:
        """Post one notice (alerts call this directly)."""

    def push(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        outcomes = []
        for record in records:
            fields = {k: v for k, v in record.fields.items() if v is not None and k != upsert_key}
            title = str(fields.pop("title", "ENNU notice"))
            text = str(fields.pop("text", ""))
            try:
                self.send(title, text, fields)
            except PermanentError as exc:
                outcomes.append(Outcome(record.record_key, SyncStatus.FAILED, error=exc.code or exc.reason))
                continue
            outcomes.append(Outcome(record.record_key, SyncStatus.CREATED))
        return outcomes

    def erase(self, person: Person) -> Outcome:
        return Outcome(f"user:{person.user_id}", SyncStatus.UNCHANGED, error="notices carry no personal data")

    def close(self) -> None:
        self.http.close()
