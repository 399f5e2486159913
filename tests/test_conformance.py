"""One conformance suite over every registered connector, against its stand-in.

Parametrised over `connectors.registry.CONNECTORS` (nothing here names a vendor) with records the real
mappings make from synthetic host rows (`tests.conformance_support`). Each connector must:

- declare its objects, settings and error table so that the registry, the lint and the README use them;
- push idempotently: the same records again create nothing new at a vendor that upserts, are found by
  `reconcile` where the vendor has no idempotency key, and travel with the same body where the connector
  sends at least once (the receiver de-duplicates by the delivery id in it);
- give one outcome per record, in order, for a mixed batch, refusing only the record its stand-in refuses;
- erase a person it holds, and erase again without error;
- pass its connection test against the stand-in;
- handle every status of its error table (as the stand-in answers it) as the table's action says;
- put no personal value in an error, an outcome or a log line, whatever the vendor answers;
- cost no more requests than it declares (`Connector.expected_requests`) at its batch size.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, get_args

import pytest
import requests

from connectors.base import AmbiguousSends, Connector, HttpConnector, Person
from connectors.errors import Action
from connectors.http import (
    AmbiguousError,
    AuthError,
    ConnectorError,
    PermanentError,
    RetryableError,
    vendor_error_code,
)
from connectors.registry import CONNECTORS
from ennu.db import session_scope
from ennu.models import HealthGoal, SyncStatus, User
from ennu.settings import get_settings
from tests.conformance_support import Batch, batches, personal_values

NAMES = sorted(CONNECTORS)
DELIVERED = {SyncStatus.CREATED, SyncStatus.UPDATED, SyncStatus.UNCHANGED}
EXPECTED_ERROR: dict[Action, type[ConnectorError]] = {
    Action.RETRY: RetryableError,
    Action.RATE_LIMITED: RetryableError,
    Action.LATER: RetryableError,
    Action.AUTH: AuthError,
    Action.BATCH: PermanentError,
}


@pytest.fixture(params=NAMES)
def connector(request: pytest.FixtureRequest, sqlite_database: str, sandbox: Any) -> Iterator[Connector]:
    built = CONNECTORS[request.param].from_settings(get_settings(), rate_limited=False)
    yield built
    built.close()


def stand_in(connector: Connector) -> str:
    """The stand-in's name in the sandbox (its path under the sandbox's URL, its module in sandbox/)."""
    assert isinstance(connector, HttpConnector)
    sandbox_url = get_settings().sandbox_url.rstrip("/")
    base = connector.http.base_url
    assert not base or base.startswith(sandbox_url), "conformance runs against the sandbox only"
    return type(connector).stand_in or connector.name


def first_batches(connector: Connector, people: int = 3) -> list[Batch]:
    """One batch per object the connector is routed (the first route that maps it)."""
    seen: dict[str, Batch] = {}
    for batch in batches(connector.name, people):
        seen.setdefault(batch.object_name, batch)
    assert seen, f"{connector.name}: no route of the routing table maps records to it"
    return list(seen.values())


def prepare_vendor(connector: Connector, sandbox: Any) -> None:
    """The stand-in's own set-up for a push, where it declares one (e.g. a subscribed hook)."""
    module = importlib.import_module(f"sandbox.{stand_in(connector)}")
    setup = getattr(module, "conformance_setup", None)
    if setup is not None:
        setup(sandbox)


def test_declarations_are_complete(connector: Connector) -> None:
    cls = type(connector)
    assert cls.objects and all(spec.batch_size >= 1 for spec in cls.objects)
    assert cls.batch_sizes == {spec.name: spec.batch_size for spec in cls.objects}
    assert cls.settings_class.model_config.get("env_prefix"), "settings need the vendor's prefix"
    assert cls.ambiguous_sends in get_args(AmbiguousSends)
    assert isinstance(connector, HttpConnector) and connector.http.table is cls.table


def test_the_same_records_again_are_nothing_new(connector: Connector, sandbox: Any) -> None:
    prepare_vendor(connector, sandbox)
    vendor = stand_in(connector)
    for batch in first_batches(connector):
        began = datetime.now(UTC) - timedelta(seconds=5)
        first = connector.push(batch.object_name, batch.upsert_key, batch.records)
        assert [o.record_key for o in first] == [r.record_key for r in batch.records]
        assert {o.status for o in first} <= DELIVERED | {SyncStatus.SKIPPED}, [o.error for o in first]
        held = {kind: len(items) for kind, items in sandbox.holdings(vendor).items()}
        bodies = [b["body"] for b in sandbox.bodies(vendor)]
        policy = connector.sends_of(batch.object_name)
        if policy == "idempotent":
            again = connector.push(batch.object_name, batch.upsert_key, batch.records)
            assert SyncStatus.CREATED not in {o.status for o in again}
            assert {k: len(v) for k, v in sandbox.holdings(vendor).items()} == held
        elif policy == "reconcile":
            found = connector.reconcile(batch.object_name, batch.records, began)
            sent = {o.record_key for o in first if o.status in DELIVERED}
            assert sent <= set(found), "an ambiguous repeat would send these again"
        else:  # resend (at least once), an orphaned send excepted: the same body each time
            connector.push(batch.object_name, batch.upsert_key, batch.records)
            repeated = [b["body"] for b in sandbox.bodies(vendor)][len(bodies) :]
            assert repeated and all(body in bodies for body in repeated)


def test_a_mixed_batch_has_one_outcome_per_record(connector: Connector, sandbox: Any) -> None:
    prepare_vendor(connector, sandbox)
    module = importlib.import_module(f"sandbox.{stand_in(connector)}")
    refused_fields: dict[str, dict[str, Any]] = getattr(module, "CONFORMANCE_REFUSED", {})
    for batch in first_batches(connector):
        records = list(batch.records)
        broken = refused_fields.get(batch.object_name)
        if broken is not None:
            records[1] = type(records[1])(
                records[1].record_key,
                records[1].event_id,
                records[1].user_id,
                {**records[1].fields, **broken},
            )
        outcomes = connector.push(batch.object_name, batch.upsert_key, records)
        assert [o.record_key for o in outcomes] == [r.record_key for r in records]
        if broken is not None:
            assert outcomes[1].status in (SyncStatus.FAILED, SyncStatus.REJECTED) and outcomes[1].error
            assert {o.status for i, o in enumerate(outcomes) if i != 1} <= DELIVERED


def person(user_id: int) -> Person:
    with session_scope() as session:
        user = session.get(User, user_id)
        assert user is not None
        goals = tuple(g.id for g in session.query(HealthGoal).filter(HealthGoal.user_id == user_id))
        return Person(user_id=user.id, email=user.email, phone=user.phone, goal_ids=goals)


def test_erase_a_person_held_and_again(connector: Connector, sandbox: Any) -> None:
    prepare_vendor(connector, sandbox)
    batch = first_batches(connector)[0]
    connector.push(batch.object_name, batch.upsert_key, batch.records)
    user_id = batch.records[0].user_id
    assert user_id is not None
    held = person(user_id)
    first = connector.erase(held)
    again = connector.erase(held)
    settled = {SyncStatus.ERASED, SyncStatus.UNCHANGED, SyncStatus.SKIPPED}
    assert first.status in settled and again.status in settled, (first, again)
    assert first.record_key == f"user:{user_id}"


def test_connection_test_passes_against_the_stand_in(connector: Connector) -> None:
    check = connector.test_connection()
    assert check.ok and check.integration == connector.name and check.latency_ms is not None


def answer_to(sandbox: Any, vendor: str, status: int) -> requests.Response:
    """What the stand-in answers, in the vendor's shape, when it is told to answer `status`."""
    sandbox.fail(vendor, mode="status", status=status, count=1)
    answer = requests.post(f"{get_settings().sandbox_url.rstrip('/')}/{vendor}/conformance-probe", timeout=10)
    sandbox.heal(vendor)
    return answer


def test_every_declared_status_is_handled_as_its_action_says(connector: Connector, sandbox: Any) -> None:
    """A push that meets each status of the table (in the shape the stand-in gives it, vendor code
    included): vendor trouble raises a retryable error or defers; refused credentials raise the auth
    error; a refusal fails the batch or its records, and none of them is taken for a delivery."""
    assert isinstance(connector, HttpConnector)
    prepare_vendor(connector, sandbox)
    vendor = stand_in(connector)
    table = type(connector).table
    batch = first_batches(connector)[0]
    connector.push(batch.object_name, batch.upsert_key, batch.records)  # warm: tokens, ensured properties
    connector.http.retries = 0  # one answer each: the classification, not the retry, is under test
    checked = []
    for status in sorted(s for s in table.declared() if s >= 400):
        answer = answer_to(sandbox, vendor, status)
        action = table.action(status, vendor_error_code(answer))
        sandbox.fail(vendor, mode="status", status=status, count=20)
        raised: BaseException | None = None
        outcomes = []
        try:
            outcomes = connector.push(batch.object_name, batch.upsert_key, batch.records)
        except ConnectorError as exc:
            raised = exc
        sandbox.heal(vendor)
        statuses = {o.status for o in outcomes}
        said = (status, action, type(raised).__name__, statuses)
        if action in (Action.RETRY, Action.RATE_LIMITED, Action.LATER):
            assert isinstance(raised, RetryableError) or (
                statuses and statuses <= {SyncStatus.DEFERRED, SyncStatus.UNKNOWN}
            ), said
        elif action is Action.AUTH:
            assert isinstance(raised, AuthError) or (statuses and statuses <= {SyncStatus.DEFERRED}), said
        else:
            assert (isinstance(raised, PermanentError) and not isinstance(raised, AuthError)) or (
                statuses and statuses <= {SyncStatus.FAILED, SyncStatus.REJECTED}
            ), said
        checked.append(status)
    for code, action in table.codes.items():
        response = requests.Response()
        response.status_code, response._content = 400, f'{{"code": "{code}"}}'.encode()
        response.headers["Content-Type"] = "application/json"
        if action in EXPECTED_ERROR and vendor_error_code(response, table.code_reader) == code:
            with pytest.raises(EXPECTED_ERROR[action]):
                connector.http.classify(response)
    assert checked, "the table declares no status"


@pytest.mark.parametrize(
    "fault",
    [{"mode": "status", "status": 400}, {"mode": "status", "status": 500}, {"mode": "commit_then_reset"}],
    ids=["refused", "server-error", "lost-answer"],
)
def test_no_personal_value_in_errors_outcomes_or_logs(
    connector: Connector, sandbox: Any, fault: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    assert isinstance(connector, HttpConnector)
    connector.http.retries = 0
    connector.http.timeout = 2.0
    prepare_vendor(connector, sandbox)
    vendor = stand_in(connector)
    said: list[str] = []
    caplog.set_level(logging.DEBUG)
    for batch in first_batches(connector):
        sandbox.fail(vendor, count=50, **fault)
        try:
            said += [
                o.error or "" for o in connector.push(batch.object_name, batch.upsert_key, batch.records)
            ]
        except (ConnectorError, AmbiguousError) as exc:
            said.append(str(exc))
        sandbox.heal(vendor)
        said += [r.getMessage() for r in caplog.records]
        for value in personal_values(batch.records):
            leaked = [line for line in said if value in line]
            assert not leaked, f"{connector.name}: a record's value in {len(leaked)} messages"


def test_requests_at_the_declared_batch_floor(connector: Connector, sandbox: Any) -> None:
    prepare_vendor(connector, sandbox)
    vendor = stand_in(connector)
    warm = first_batches(connector, people=1)  # one-off costs (a token, ensured properties) first
    for batch in warm:
        connector.push(batch.object_name, batch.upsert_key, batch.records)
    for spec in type(connector).objects:
        wanted = [b for b in warm if b.object_name == spec.name]
        if not wanted:
            continue  # an object no route maps today (declared for the mappings to come)
        size = min(spec.batch_size, 25)
        full = [
            b for b in batches(connector.name, size, [wanted[0].event_type]) if b.object_name == spec.name
        ]
        records = full[0].records[:size]
        before = len(sandbox.requests(vendor))
        connector.push(spec.name, full[0].upsert_key, records)
        cost = len(sandbox.requests(vendor)) - before
        assert cost <= connector.expected_requests(spec.name, len(records)), (spec.name, len(records), cost)
