"""Webhook receipts at rest and against replays: only what a handler reads, only as ciphertext, its id
remembered past the payload's clean-up; on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from cryptography.fernet import Fernet
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from ennu import crypto, receipts
from ennu.db import MIGRATIONS_DIR, get_engine, session_scope
from ennu.models import ReceivedWebhookId, User, WebhookReceipt, utcnow
from ennu.settings import reload_settings
from flows.cleanup import cleanup
from flows.webhook_received import webhook_received
from tests.factories import add_person
from tests.webhook_signing import (
    FORM,
    hubspot_v3_headers,
    intake_with,
    mandrill_form,
    stripe_headers,
    twilio_form,
)

EMAIL, PHONE = "leaver@example.com", "+15550109999"
# Anything that would show an e-mail address or a phone number in a raw column.
PERSONAL = re.compile(r"@|example\.com|5550109999|leaver", re.IGNORECASE)


@pytest.fixture()
def api(database: str, monkeypatch: pytest.MonkeyPatch, prefect_server: None) -> Iterator[TestClient]:
    with intake_with(monkeypatch) as client:
        yield client


def post_all(api: TestClient) -> dict[str, dict[str, int]]:
    """One delivery of each vendor, each naming the person (e-mail or phone) as vendors do."""
    answers = {}
    form = (
        f"type=unsubscribe&fired_at=2026-11-29+10%3A00%3A00&data%5Bemail%5D={EMAIL}"
        "&data%5Bmerges%5D%5BPHONE%5D=5550109999&data%5Bmerges%5D%5BFNAME%5D=Leaver"
    )
    answers["mailchimp"] = api.post(
        "/webhooks/mailchimp?secret=mc-url-secret", content=form, headers={"Content-Type": FORM}
    ).json()
    body, headers = mandrill_form(
        [{"_id": "md-1", "event": "unsub", "msg": {"email": EMAIL, "subject": "Your leaver results"}}]
    )
    answers["mailchimp-transactional"] = api.post(
        "/webhooks/mailchimp-transactional", content=body, headers=headers
    ).json()
    body, headers = twilio_form({"MessageSid": "SMstop", "From": PHONE, "To": "+15550100000", "Body": "STOP"})
    answers["twilio"] = api.post("/webhooks/twilio", content=body, headers=headers).json()
    event = [{"eventId": 31, "subscriptionType": "contact.propertyChange", "propertyValue": EMAIL}]
    raw = json.dumps(event).encode()
    answers["hubspot"] = api.post("/webhooks/hubspot", content=raw, headers=hubspot_v3_headers(raw)).json()
    stripe_event = {
        "id": "evt_at_rest",
        "type": "customer.updated",
        "created": 1_764_000_000,
        "data": {
            "object": {"id": "cus_1", "email": EMAIL, "phone": PHONE, "metadata": {"ennu_user_id": "7"}}
        },
    }
    raw = json.dumps(stripe_event).encode()
    answers["stripe"] = api.post("/webhooks/stripe", content=raw, headers=stripe_headers(raw)).json()
    return answers


def raw_payloads(url: str) -> list[str]:
    with get_engine(url).connect() as conn:
        return list(conn.execute(text("SELECT payload FROM webhook_receipts ORDER BY id")).scalars())


def test_the_database_holds_only_ciphertext_of_what_each_handler_reads(
    api: TestClient, database: str
) -> None:
    answers = post_all(api)
    assert all(a["new"] == 1 for a in answers.values()), answers
    stored = raw_payloads(database)
    assert len(stored) == 5
    for token in stored:
        assert not PERSONAL.search(token)
        assert crypto.decrypt(token)  # a Fernet token under the data key, not a document
    with get_engine(database).connect() as conn:
        digests = list(conn.execute(text("SELECT digest FROM webhook_receipt_ids")).scalars())
    assert len(digests) == 5 and not any(PERSONAL.search(d) or "SMstop" in d for d in digests)

    with session_scope() as session:
        kept = {r.integration: r.payload for r in session.execute(select(WebhookReceipt)).scalars()}
    assert kept == {
        "mailchimp": {"type": "unsubscribe", "data[email]": EMAIL},
        "mailchimp-transactional": {"event": "unsub", "msg": {"email": EMAIL}},
        "twilio": {"Body": "stop", "From": PHONE},
        "hubspot": {"subscriptionType": "contact.propertyChange"},  # nothing it applies: type only
        "stripe": {
            "id": "evt_at_rest",
            "type": "customer.updated",
            "created": 1_764_000_000,
            "data": {"object": {"id": "cus_1", "metadata": {"ennu_user_id": "7"}}},
        },
    }


def test_rotation_re_encrypts_receipts_and_they_still_read(
    api: TestClient, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    monkeypatch.setenv("ENNU_DATA_KEY", old)
    reload_settings()
    post_all(api)
    before = raw_payloads(database)

    monkeypatch.setenv("ENNU_DATA_KEY", new)
    reload_settings()
    with pytest.raises(crypto.UndecryptableValue):  # the new key alone cannot read them yet
        crypto.decrypt(before[0])
    monkeypatch.setenv("ENNU_DATA_KEYS_PREVIOUS", old)
    reload_settings()
    assert crypto.main(["rotate"]) == 0  # `python -m ennu.crypto rotate`, on DATABASE_URL

    monkeypatch.delenv("ENNU_DATA_KEYS_PREVIOUS")
    reload_settings()
    after = raw_payloads(database)
    assert len(after) == 5 and not set(after) & set(before)
    assert all(isinstance(json.loads(Fernet(new.encode()).decrypt(t.encode())), dict) for t in after)
    with session_scope() as session:
        twilio = session.execute(
            select(WebhookReceipt).where(WebhookReceipt.integration == "twilio")
        ).scalar_one()
        assert twilio.payload == {"Body": "stop", "From": PHONE}


def test_a_replay_after_the_payload_clean_up_is_refused_and_consent_not_withdrawn_again(
    api: TestClient, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    person = add_person(email=EMAIL, phone="+1 555 010 9999")
    mailchimp = f"type=unsubscribe&fired_at=2026-11-29+10%3A00%3A00&data%5Bemail%5D={EMAIL}"
    mandrill = mandrill_form([{"_id": "md-replay", "event": "unsub", "msg": {"email": EMAIL}}])
    twilio = twilio_form({"MessageSid": "SMreplay", "From": PHONE, "To": "+15550100000", "Body": "STOP"})

    def deliver() -> list[dict[str, int]]:
        return [
            api.post(
                "/webhooks/mailchimp?secret=mc-url-secret", content=mailchimp, headers={"Content-Type": FORM}
            ).json(),
            api.post("/webhooks/mailchimp-transactional", content=mandrill[0], headers=mandrill[1]).json(),
            api.post("/webhooks/twilio", content=twilio[0], headers=twilio[1]).json(),
        ]

    assert [a["new"] for a in deliver()] == [1, 1, 1]
    with session_scope() as session:
        ids = list(session.execute(select(WebhookReceipt.id)).scalars())
    assert webhook_received(receipt_ids=ids) == {"consent withdrawn": 3}

    # The person consents again; the payloads age past ENNU_RETENTION_RECEIPTS_DAYS and are cleaned up.
    with session_scope() as session:
        session.execute(update(User).values(marketing_consent=True, communication_consent=True))
        aged = utcnow() - timedelta(days=31)
        session.execute(update(WebhookReceipt).values(received_at=aged))
        session.execute(update(ReceivedWebhookId).values(received_at=aged))
    removed = cleanup()
    assert removed["webhook_receipts"] == 3 and removed["webhook_receipt_ids"] == 0

    replays = deliver()  # a captured STOP and unsubscribes, sent again
    assert [(a["new"], a["duplicates"]) for a in replays] == [(0, 1), (0, 1), (0, 1)]
    with session_scope() as session:
        assert session.execute(select(sa.func.count()).select_from(WebhookReceipt)).scalar_one() == 0
        user = session.get(User, person)
        assert user is not None and (user.marketing_consent, user.communication_consent) == (True, True)


def test_remembered_ids_go_after_each_vendors_window_and_the_window_is_configurable(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    for integration in ("stripe", "twilio", "hubspot"):
        assert receipts.record(integration, f"{integration}-old", "x", {}) is not None
    now = utcnow()
    ages = {"stripe": 31, "twilio": 31, "hubspot": 6}  # Stripe's window 30 days, Twilio's 400, HubSpot's 7
    with session_scope() as session:
        for integration, days in ages.items():
            session.execute(
                update(ReceivedWebhookId)
                .where(ReceivedWebhookId.integration == integration)
                .values(received_at=now - timedelta(days=days))
            )
    assert receipts.forget_replay_ids() == 1
    with session_scope() as session:
        left = set(session.execute(select(ReceivedWebhookId.integration)).scalars())
    assert left == {"twilio", "hubspot"}

    monkeypatch.setenv("ENNU_WEBHOOK_REPLAY_DAYS", '{"twilio": 30}')
    reload_settings()
    assert receipts.replay_window_days("twilio") == 30 and receipts.replay_window_days("hubspot") == 7
    assert receipts.forget_replay_ids() == 1
    monkeypatch.undo()
    reload_settings()
    with session_scope() as session:
        assert set(session.execute(select(ReceivedWebhookId.integration)).scalars()) == {"hubspot"}


# --------------------------------------------------------------- the migration of existing receipts


def alembic(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["engine"] = get_engine(url)
    return config


def test_the_migration_minimises_and_encrypts_stored_receipts_and_remembers_their_ids(
    blank_database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = alembic(blank_database)
    before = ScriptDirectory.from_config(config).get_revision("0006_receipts").down_revision
    assert isinstance(before, str)
    command.upgrade(config, before)
    plain = sa.table(
        "webhook_receipts",
        sa.column("integration", sa.String()),
        sa.column("vendor_event_id", sa.String()),
        sa.column("kind", sa.String()),
        sa.column("payload", sa.JSON()),
        sa.column("status", sa.String()),
        sa.column("received_at", sa.DateTime(timezone=True)),
        sa.column("attempts", sa.Integer()),
    )
    stop = {"MessageSid": "SMold", "From": PHONE, "To": "+15550100000", "Body": "STOP", "FromCity": "Leaver"}
    with get_engine(blank_database).begin() as conn:
        for row in (
            {"integration": "twilio", "vendor_event_id": "SMold:inbound", "kind": "inbound", "payload": stop},
            {
                "integration": "mailchimp",
                "vendor_event_id": "mc-old",
                "kind": "unsubscribe",
                "payload": {"type": "unsubscribe", "data[email]": EMAIL, "data[merges][FNAME]": "Leaver"},
            },
        ):
            conn.execute(plain.insert().values(status="received", received_at=utcnow(), attempts=0, **row))

    command.upgrade(config, "head")

    stored = raw_payloads(blank_database)
    assert len(stored) == 2 and not any(PERSONAL.search(t) for t in stored)
    with session_scope(blank_database) as session:
        kept = {r.integration: r.payload for r in session.execute(select(WebhookReceipt)).scalars()}
        remembered = session.execute(select(sa.func.count()).select_from(ReceivedWebhookId)).scalar_one()
    assert kept == {"twilio": {"Body": "stop", "From": PHONE}, "mailchimp": kept["mailchimp"]}
    assert kept["mailchimp"] == {"type": "unsubscribe", "data[email]": EMAIL}
    assert remembered == 2

    # With the payloads gone, the ids the migration remembered still refuse the old deliveries.
    monkeypatch.setenv("DATABASE_URL", blank_database)
    reload_settings()
    with session_scope() as session:
        session.execute(sa.delete(WebhookReceipt))
    assert receipts.record("twilio", "SMold:inbound", "inbound", stop) is None
    assert receipts.record("mailchimp", "mc-old", "unsubscribe", {}) is None
    assert receipts.record("twilio", "SMnew:inbound", "inbound", stop) is not None
    monkeypatch.undo()
    reload_settings()

    command.downgrade(config, before)  # and back: the payloads are JSON documents again
    with get_engine(blank_database).connect() as conn:
        documents = [
            p if isinstance(p, dict) else json.loads(p)  # psycopg parses a json column itself
            for p in conn.execute(text("SELECT payload FROM webhook_receipts")).scalars()
        ]
    assert documents == [{"Body": "stop", "From": PHONE}]


def test_a_pepper_rotation_keeps_refusing_replays_of_ids_remembered_under_the_old_pepper(
    database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ENNU_PSEUDONYM_PEPPER", "pepper-before")
    reload_settings()
    assert receipts.record("twilio", "SMrot:inbound", "inbound", {}) is not None
    monkeypatch.setenv("ENNU_PSEUDONYM_PEPPER", "pepper-after")
    monkeypatch.setenv("ENNU_PSEUDONYM_PEPPER_PREVIOUS", "pepper-before")
    reload_settings()
    with session_scope() as session:
        session.execute(sa.delete(WebhookReceipt))  # the payload's clean-up
    assert receipts.record("twilio", "SMrot:inbound", "inbound", {}) is None
    assert receipts.record("twilio", "SMrot2:inbound", "inbound", {}) is not None
    monkeypatch.undo()
    reload_settings()
