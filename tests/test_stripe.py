"""Stripe connector against its sandbox stand-in: find-or-create, key replay, erasure, per-record errors."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pandas as pd
import pytest
import requests

from connectors.base import Outcome, Person, Record
from connectors.errors import Action
from connectors.http import AuthError, PermanentError, RetryableError
from connectors.registry import CONNECTORS
from connectors.settings import SettingsError
from connectors.stripe import CONNECTOR
from connectors.stripe.connector import StripeConnector, form_pairs, idempotency_key
from connectors.stripe.errors import TABLE
from connectors.stripe.settings import StripeSettings
from ennu.models import SyncStatus
from ennu.settings import get_settings
from mappings.frame import apply_mapping
from mappings.loader import check_file
from sandbox.stripe import SANDBOX_API_KEY

MAPPING = Path(__file__).resolve().parent.parent / "mappings" / "user.registered" / "stripe.yaml"


def customer(n: int, event: str = "evt-1", email: str | None = None, **extra: Any) -> Record:
    fields = {
        "email": email or f"person{n}@example.com",
        "name": "Ada Lovelace",
        "phone": "+14155550100",
        "metadata.ennu_user_id": n,
        **extra,
    }
    return Record(f"user:{n}", event, n, fields)


@pytest.fixture()
def stripe_connector(sandbox: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[StripeConnector]:
    for name in ("STRIPE_API_KEY", "STRIPE_BASE_URL", "STRIPE_API_VERSION"):
        monkeypatch.delenv(name, raising=False)
    connector = StripeConnector.from_settings(get_settings(), rate_limited=False)
    yield connector
    connector.close()


@pytest.fixture()
def stripe_api(sandbox_url: str) -> Iterator[requests.Session]:
    """A plain client of the stand-in, as any Stripe integration would call it."""
    with requests.Session() as session:
        session.headers["Authorization"] = f"Bearer {SANDBOX_API_KEY}"
        yield session


def test_create_then_find_and_update_gives_one_customer(
    stripe_connector: StripeConnector, sandbox: Any
) -> None:
    # Someone else's customer with the same e-mail (another ennu user id) must be left alone.
    stripe_connector.http.request(
        "POST",
        "/customers",
        data=form_pairs({"email": "person1@example.com", "metadata.ennu_user_id": 999}),
        headers={"Idempotency-Key": "someone-else"},
    )
    [created] = stripe_connector.push("customers", "email", [customer(1)])
    assert created.status == SyncStatus.CREATED and str(created.remote_id).startswith("cus_")
    [updated] = stripe_connector.push("customers", "email", [customer(1, event="evt-2", name="Ada King")])
    assert updated == Outcome("user:1", SyncStatus.UPDATED, remote_id=created.remote_id)

    stored = {c["metadata"]["ennu_user_id"]: c for c in sandbox.objects("stripe", "customers")}
    assert set(stored) == {"1", "999"}
    assert stored["1"]["id"] == created.remote_id
    assert stored["1"]["name"] == "Ada King" and stored["1"]["phone"] == "+14155550100"
    assert stored["999"]["name"] is None
    create_body = next(
        b["body"]
        for b in sandbox.bodies("stripe")
        if b["path"] == "/stripe/v1/customers" and "Ada" in b["body"]
    )
    assert dict(parse_qsl(create_body)) == {
        "email": "person1@example.com",
        "name": "Ada Lovelace",
        "phone": "+14155550100",
        "metadata[ennu_user_id]": "1",
    }
    lookups = [r for r in sandbox.requests("stripe") if r["method"] == "GET"]
    assert all(
        dict(parse_qsl(r["query"])) == {"email": "person1@example.com", "limit": "100"} for r in lookups
    )


def test_a_retried_create_with_the_same_key_replays_the_first_answer_and_creates_nothing(
    stripe_api: requests.Session, sandbox_url: str, sandbox: Any
) -> None:
    url = f"{sandbox_url}/stripe/v1/customers"
    body = {"email": "person1@example.com", "metadata[ennu_user_id]": "1"}
    first = stripe_api.post(url, data=body, headers={"Idempotency-Key": "k-1"}, timeout=5)
    again = stripe_api.post(url, data=body, headers={"Idempotency-Key": "k-1"}, timeout=5)
    assert first.status_code == again.status_code == 200
    assert again.json() == first.json()
    assert again.headers["Idempotent-Replayed"] == "true" and "Idempotent-Replayed" not in first.headers
    assert len(sandbox.objects("stripe", "customers")) == 1

    other = stripe_api.post(url, data={**body, "name": "X"}, headers={"Idempotency-Key": "k-1"}, timeout=5)
    assert other.status_code == 400 and other.json()["error"]["type"] == "idempotency_error"

    # An error is replayed too: the declined card stays declined under its key.
    declined = {**body, "source": "tok_chargeDeclined"}
    refused = [
        stripe_api.post(url, data=declined, headers={"Idempotency-Key": "k-2"}, timeout=5) for _ in "ab"
    ]
    assert [r.status_code for r in refused] == [402, 402]
    assert refused[1].headers["Idempotent-Replayed"] == "true"
    assert len(sandbox.objects("stripe", "customers")) == 1


def test_two_racing_deliveries_of_one_event_create_one_customer(
    stripe_connector: StripeConnector, sandbox: Any
) -> None:
    # Both look the customer up before either creates it: only the idempotency key keeps it single.
    sandbox.fail("stripe", "slow", count=4, delay=0.3)
    outcomes: list[Outcome] = []

    def deliver() -> None:
        outcomes.extend(stripe_connector.push("customers", "email", [customer(7)]))

    threads = [threading.Thread(target=deliver) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)
    assert [o.status for o in outcomes] == [SyncStatus.CREATED, SyncStatus.CREATED]
    assert outcomes[0].remote_id == outcomes[1].remote_id
    assert len(sandbox.objects("stripe", "customers")) == 1
    assert [r["method"] for r in sandbox.requests("stripe")] == ["GET", "GET", "POST", "POST"]


def test_an_active_subscription_blocks_erasure(stripe_connector: StripeConnector, sandbox: Any) -> None:
    [created] = stripe_connector.push("customers", "email", [customer(3)])
    subscription = stripe_connector.http.request(
        "POST",
        "/subscriptions",
        data=form_pairs({"customer": created.remote_id, "items": [{"price": "price_monthly"}]}),
        headers={"Idempotency-Key": "sub-1"},
    ).json()
    assert [s["status"] for s in stripe_connector.list_subscriptions(str(created.remote_id))] == ["active"]
    person = Person(user_id=3, email="Person3@example.com")

    kept = stripe_connector.erase(person)
    assert kept.status == SyncStatus.SKIPPED and kept.error == "active subscription: customer kept"
    assert [c["id"] for c in sandbox.objects("stripe", "customers")] == [created.remote_id]

    stripe_connector.http.request("DELETE", f"/subscriptions/{subscription['id']}")
    assert stripe_connector.erase(person) == Outcome(
        "user:3", SyncStatus.ERASED, remote_id="1 customers deleted"
    )
    assert sandbox.objects("stripe", "customers") == []
    assert stripe_connector.erase(person).status == SyncStatus.UNCHANGED


def test_a_declined_card_fails_that_record_only(stripe_connector: StripeConnector, sandbox: Any) -> None:
    outcomes = stripe_connector.push(
        "customers", "email", [customer(4, source="tok_chargeDeclined"), customer(5)]
    )
    assert outcomes[0] == Outcome("user:4", SyncStatus.FAILED, error="card_error:card_declined")
    assert outcomes[1].status == SyncStatus.CREATED
    assert [r["status"] for r in sandbox.requests("stripe") if r["method"] == "POST"] == [402, 200]


def test_invalid_values_fail_with_stripe_codes_and_no_value(stripe_connector: StripeConnector) -> None:
    [outcome] = stripe_connector.push("customers", "email", [customer(6, email="not-an-address")])
    assert outcome == Outcome("user:6", SyncStatus.FAILED, error="invalid_request_error:email_invalid")


@pytest.mark.parametrize("status", [409, 429, 503])
def test_in_flight_rate_limited_and_server_errors_are_sent_again_by_the_client(
    stripe_connector: StripeConnector, sandbox: Any, status: int
) -> None:
    sandbox.fail("stripe", "status", status=status, count=1)
    [outcome] = stripe_connector.push("customers", "email", [customer(8)])
    assert outcome.status == SyncStatus.CREATED
    assert [r["status"] for r in sandbox.requests("stripe")] == [status, 200, 200]  # look-up twice, create
    assert len(sandbox.objects("stripe", "customers")) == 1


def test_trouble_that_outlasts_the_retries_is_left_to_the_engine(
    stripe_connector: StripeConnector, sandbox: Any
) -> None:
    sandbox.fail("stripe", "status", status=503, count=1 + stripe_connector.http.retries)
    with pytest.raises(RetryableError):
        stripe_connector.push("customers", "email", [customer(8)])
    assert stripe_connector.push("customers", "email", [customer(8)])[0].status == SyncStatus.CREATED


def test_stripe_should_retry_overrides_the_status(stripe_connector: StripeConnector) -> None:
    def answer(status: int, should_retry: str | None) -> requests.Response:
        response = requests.Response()
        response.status_code = status
        response._content = b'{"error": {"type": "api_error"}}'
        response.headers["Content-Type"] = "application/json"
        if should_retry is not None:
            response.headers["Stripe-Should-Retry"] = should_retry
        return response

    with pytest.raises(RetryableError):
        stripe_connector.http.classify(answer(400, "true"))
    with pytest.raises(PermanentError) as refused:
        stripe_connector.http.classify(answer(503, "false"))
    assert not isinstance(refused.value, RetryableError)
    with pytest.raises(RetryableError):
        stripe_connector.http.classify(answer(409, None))  # the same idempotency key still in flight


def test_the_error_table_says_what_stripe_answers_mean() -> None:
    assert TABLE.action(409) is Action.RETRY
    assert TABLE.action(429) is Action.RATE_LIMITED
    assert TABLE.action(402) is Action.BATCH  # a card error is read as the record's outcome where expected
    assert TABLE.expect("record") == {400, 402, 404} and TABLE.expect("gone") == {404}
    assert TABLE.should_retry_header == "Stripe-Should-Retry"


def test_the_package_is_the_registered_connector_with_its_objects_as_data(
    stripe_connector: StripeConnector, sandbox: Any
) -> None:
    assert CONNECTORS["stripe"] is CONNECTOR is StripeConnector
    spec = StripeConnector.object_spec("customers")
    assert (spec.batch_size, spec.upsert_keys) == (25, ("email",))
    assert spec.fields is not None and {"email", "name", "phone", "metadata"} <= spec.fields
    with pytest.raises(ValueError, match="has no object 'invoices'"):
        stripe_connector.push("invoices", "email", [customer(1)])
    assert sandbox.requests("stripe") == []


def test_settings_are_typed_and_a_bad_value_names_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_VERSION", "")  # empty is unset
    assert StripeSettings.load().api_version is None
    monkeypatch.setenv("STRIPE_API_VERSION", "2026-10-28.endive")
    assert StripeSettings.load().api_version == "2026-10-28.endive"
    for name, value in (("STRIPE_RATE_LIMIT", "fast"), ("STRIPE_API_VERSION", "latest")):
        with monkeypatch.context() as scoped:
            scoped.setenv(name, value)
            with pytest.raises(SettingsError, match=name) as refused:
                StripeSettings.load()
            assert value not in str(refused.value)


def test_connection_test_reads_the_balance_and_a_wrong_key_is_refused_unechoed(
    stripe_connector: StripeConnector, sandbox: Any, stripe_api: requests.Session, sandbox_url: str
) -> None:
    assert stripe_connector.test_connection().ok
    assert [r["path"] for r in sandbox.requests("stripe")] == ["/stripe/v1/balance"]
    refused = requests.get(
        f"{sandbox_url}/stripe/v1/balance", headers={"Authorization": "Bearer sk_test_wrong-key"}, timeout=5
    )
    assert refused.status_code == 401 and "wrong-key" not in refused.text
    stripe_connector.http.session.headers["Authorization"] = "Bearer sk_test_wrong-key"
    with pytest.raises(AuthError) as refusal:  # the push stage defers, never fails, the records
        stripe_connector.test_connection()
    assert refusal.value.status == 401 and "wrong-key" not in str(refusal.value)


def test_form_pairs_encode_nested_names_as_stripe_does() -> None:
    assert form_pairs(
        {
            "metadata.ennu_user_id": 42,
            "address": {"city": "Oslo", "line2": None},
            "items": [{"price": "p_1"}],
            "tax_exempt": None,
            "livemode": False,
        }
    ) == [
        ("metadata[ennu_user_id]", "42"),
        ("address[city]", "Oslo"),
        ("items[0][price]", "p_1"),
        ("livemode", "false"),
    ]
    assert idempotency_key("evt-1", "user:1", "create") == "ennu:evt-1:user:1:create"
    long_key = idempotency_key("e" * 300, "user:1", "create")
    assert len(long_key) <= 255 and long_key == idempotency_key("e" * 300, "user:1", "create")


def test_the_mapping_passes_the_linter_and_maps_a_person() -> None:
    mapping, errors = check_file(MAPPING)
    assert errors == [] and mapping is not None
    source = pd.DataFrame(
        {
            "event.id": ["evt-1"],
            "user.id": [42],
            "user.email": [" Ada@Example.com "],
            "user.first_name": ["Ada"],
            "user.last_name": ["Lovelace"],
            "user.phone": ["(415) 555-0100"],
        }
    )
    row = apply_mapping(mapping, source).iloc[0].to_dict()
    assert {k: row[k] for k in mapping.fields} == {
        "email": "ada@example.com",
        "name": "Ada Lovelace",
        "phone": "+14155550100",
        "metadata.ennu_user_id": 42,
    }


def test_the_same_customer_again_is_unchanged_without_a_write(
    stripe_connector: StripeConnector, sandbox: Any
) -> None:
    [created] = stripe_connector.push("customers", "email", [customer(2, address={"city": "Oslo"})])
    held = {kind: len(items) for kind, items in sandbox.holdings("stripe").items()}

    [again] = stripe_connector.push(
        "customers", "email", [customer(2, event="evt-2", address={"city": "Oslo"})]
    )

    assert again == Outcome("user:2", SyncStatus.UNCHANGED, remote_id=created.remote_id)
    assert [r["method"] for r in sandbox.requests("stripe")] == ["GET", "POST", "GET"]  # the look-up only
    assert {kind: len(items) for kind, items in sandbox.holdings("stripe").items()} == held  # no new key
    [moved] = stripe_connector.push(
        "customers", "email", [customer(2, event="evt-3", address={"city": "Bergen"})]
    )
    assert moved.status == SyncStatus.UPDATED
