"""Chat notices (Slack, Teams): titled and texted by the mapping, no personal data; a batch's records go
as one message each up to DIGEST_LIMIT of them (one message, the title and text once, then each record's
fields), so a burst of notices keeps to a channel's one message a second without holding up the batch.

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

MESSAGES = "messages"  # the one object of a channel: one message (one request) per DIGEST_LIMIT records
# Records in one message: each is a fields section of a Slack message (at most 50 blocks) or a FactSet of
# a Teams card (about 28 KB). At one message a second a channel carries DIGEST_LIMIT notices a second:
# 25 keeps either message well inside its limit, still reads as a list, and leaves a channel room above a
# busy clinic's 10 assessments a second (ten a message was exactly at capacity there).
DIGEST_LIMIT = 25


class NoticeConnector(HttpConnector):
    """A channel webhook: a batch of records becomes one message with their `title`, `text` and each
    record's remaining fields."""

    # One message per request; any field may key it (a notice key, never shown) and the rest are open:
    # shown as the message's fields or the card's facts.
    objects: ClassVar[tuple[ObjectSpec, ...]] = (ObjectSpec(MESSAGES, DIGEST_LIMIT),)
    # A channel webhook has nothing to read back and no idempotency key. The worker that saw its own
    # message's answer lost (a reset, a timeout) posts it again: an alert nobody saw is worse than one a
    # reader sees twice. Each message's deliveries are marked just before it leaves, and a message orphaned
    # by its worker (killed or stopped with the request in flight) is failed with that reason, visible in
    # the status and re-playable, instead of being posted again by another worker: the care team's channel
    # would otherwise show a whole digest twice after every crash mid-post, and the dead letter is what an
    # operator is alerted to and replays.
    ambiguous_sends: ClassVar[AmbiguousSends] = "resend_unless_orphaned"

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

    def notify(self, title: str, text: str, facts: dict[str, Any] | None = None) -> None:
        """Post one notice (alerts call this directly); raises the shared client's errors."""
        self.notify_many(title, text, [facts or {}])

    @abstractmethod
    def notify_many(self, title: str, text: str, fact_sets: Sequence[dict[str, Any]]) -> None:
        """Post one message: the title and text once, then each fact set (one per record) in order."""

    def send(self, object_name: str, upsert_key: str, records: Sequence[Record]) -> list[Outcome]:
        """One message per DIGEST_LIMIT records of one title and text (which one mapping fixes). A refused
        message fails its records with the vendor's code; a refused webhook (`AuthError`) and trouble
        outlasting the client's retries raise for the batch."""
        groups: dict[tuple[str, str], list[tuple[str, dict[str, Any]]]] = {}
        for record in records:
            fields = {k: v for k, v in record.fields.items() if v is not None and k != upsert_key}
            title = str(fields.pop("title", "ENNU notice"))
            text = str(fields.pop("text", ""))
            groups.setdefault((title, text), []).append((record.record_key, fields))
        by_key = {record.record_key: record for record in records}
        outcomes: dict[str, Outcome] = {}
        messages = [
            (title, text, members[start : start + DIGEST_LIMIT])
            for (title, text), members in groups.items()
            for start in range(0, len(members), DIGEST_LIMIT)
        ]
        for title, text, members in messages:
            try:
                with self.sending([by_key[key] for key, _ in members]):
                    self.notify_many(title, text, [fields for _, fields in members])
            except AuthError:
                raise
            except PermanentError as exc:
                error = exc.code or exc.reason
                outcomes.update({key: Outcome(key, SyncStatus.FAILED, error=error) for key, _ in members})
                continue
            outcomes.update({key: Outcome(key, SyncStatus.CREATED) for key, _ in members})
        return [outcomes[record.record_key] for record in records]

    def erase(self, person: Person) -> Outcome:
        return Outcome(f"user:{person.user_id}", SyncStatus.UNCHANGED, error="notices carry no personal data")
