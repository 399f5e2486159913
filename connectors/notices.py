"""Chat notices (Slack, Teams): one message per record, titled and texted by the mapping, no personal data.

Shared by the channel connectors and by the operators' alerts (`flows/ops_alert.py`, which call `notify`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any, ClassVar

from connectors.base import AmbiguousSends, HttpConnector, ObjectSpec, Outcome, Person, Record
from connectors.endpoint import resolve_endpoint
from connectors.http import AuthError, PermanentError
from ennu.models import SyncStatus

MESSAGES = "messages"  # the one object of a channel: a message per record, one request each


class NoticeConnector(HttpConnector):
    """A channel webhook: each record becomes one message with its `title`, `text` and remaining fields."""

    # One message per request; any field may key it (a notice key, never shown) and the rest are open:
    # shown as the message's fields or the card's facts.
    objects: ClassVar[tuple[ObjectSpec, ...]] = (ObjectSpec(MESSAGES, 1),)
    # A lost answer is posted again: a channel webhook has nothing to read back, so this errs toward a
    # notice shown twice, which a reader sees through, rather than an alert nobody saw.
    ambiguous_sends: ClassVar[AmbiguousSends] = "resend"

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
    def notify(self, title: str, text: str, facts: dict[str, Any] | None = None) -> None:
        """Post one notice (alerts call this directly); raises the shared client's errors."""

    def send(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        """One message per record. A refusal of one message fails that record with the vendor's code; a
        refused webhook (`AuthError`) and trouble outlasting the client's retries raise for the batch."""
        outcomes = []
        for record in records:
            fields = {k: v for k, v in record.fields.items() if v is not None and k != upsert_key}
            title = str(fields.pop("title", "ENNU notice"))
            text = str(fields.pop("text", ""))
            try:
                self.notify(title, text, fields)
            except AuthError:
                raise
            except PermanentError as exc:
                outcomes.append(Outcome(record.record_key, SyncStatus.FAILED, error=exc.code or exc.reason))
                continue
            outcomes.append(Outcome(record.record_key, SyncStatus.CREATED))
        return outcomes

    def erase(self, person: Person) -> Outcome:
        return Outcome(f"user:{person.user_id}", SyncStatus.UNCHANGED, error="notices carry no personal data")
