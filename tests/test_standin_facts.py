"""The stand-ins' vendor facts agree with the connectors': limits, batch sizes, reserved names (VENDORS.md).

Each stand-in (sandbox/) and its connector (connectors/) state the vendor's documented limits on their own,
on purpose: the stand-in plays the vendor and must catch a connector that is wrong. This keeps the two
equal where both state a fact, and checks behaviour where they state it differently.
"""

from __future__ import annotations

import importlib
import json
from types import ModuleType

import pytest

import sandbox.ga4 as ga4_standin
import sandbox.hubspot as hubspot_standin
import sandbox.mailchimp as mailchimp_standin
import sandbox.salesforce as salesforce_standin
import sandbox.slack as slack_standin
import sandbox.stripe as stripe_standin
import sandbox.twilio as twilio_standin
from connectors.base import Connector
from connectors.errors import RETRYING
from connectors.registry import CONNECTORS


def connector_module(name: str) -> ModuleType:
    """The module of a connector's class: the registry's package, or `connectors/<name>.py` until the
    vendor is a package (issue 12 moves them one by one)."""
    cls = CONNECTORS.get(name)
    return importlib.import_module(cls.__module__ if cls is not None else f"connectors.{name}")


def batch_sizes(name: str) -> dict[str, int]:
    classes = [v for v in vars(connector_module(name)).values() if isinstance(v, type)]
    cls = CONNECTORS.get(name) or next(c for c in classes if issubclass(c, Connector) and c.name == name)
    return dict(cls.batch_sizes)


# --------------------------------------------------------------------------- GA4 Measurement Protocol


def test_ga4_limits_are_the_same_on_both_sides() -> None:
    ga4 = connector_module("ga4")
    assert batch_sizes("ga4")["events"] == ga4.MAX_EVENTS_PER_REQUEST == ga4_standin.MAX_EVENTS
    assert ga4.MAX_PARAMS_PER_EVENT == ga4_standin.MAX_PARAMS
    assert ga4.MAX_NAME_LENGTH == ga4_standin.MAX_NAME
    assert ga4.MAX_PARAM_VALUE_LENGTH == ga4_standin.MAX_PARAM_VALUE
    assert ga4.MAX_USER_ID_LENGTH == ga4_standin.MAX_USER_ID
    assert ga4.MAX_BODY_BYTES == ga4_standin.MAX_BODY_BYTES
    assert ga4.NAME.pattern == ga4_standin.NAME.pattern
    assert ga4.RESERVED_EVENT_NAMES == ga4_standin.RESERVED_EVENT_NAMES


def test_ga4_reserved_prefixes_the_connector_knows_are_those_the_stand_in_refuses() -> None:
    ga4 = connector_module("ga4")
    stand_in = {*ga4_standin.RESERVED_PREFIXES, *ga4_standin.RESERVED_PARAM_PREFIXES}
    assert set(ga4.RESERVED_PREFIXES) <= stand_in
    # A prefix only the stand-in lists cannot start a name that passes the name rule: nothing to predict.
    assert all(not ga4.NAME.match(f"{prefix}x") for prefix in stand_in - set(ga4.RESERVED_PREFIXES))


def _stand_in_code(fields: dict[str, object]) -> str | None:
    ga4 = connector_module("ga4")
    event = {"name": fields["name"], "params": ga4.event_params(fields)}
    body = json.dumps({"client_id": "c1", "events": [event]}).encode()
    codes = [m["validationCode"] for m in ga4_standin.request_problems("G-SANDBOX01", body)]
    return codes[0] if codes else None


NAMES = [
    "assessment_completed",
    "x" * 40,
    "x" * 41,
    "1st_event",
    "has space",
    "session_start",
    "user_engagement",
    *(f"{prefix}thing" for prefix in ("google_", "ga_", "firebase_", "gtag.", "_")),
]


@pytest.mark.parametrize("name", NAMES)
def test_ga4_the_connector_predicts_the_stand_in_s_verdict_on_an_event_name(name: str) -> None:
    ga4 = connector_module("ga4")
    fields: dict[str, object] = {"client_id": "c1", "name": name}
    assert ga4.wire_problem(fields) == _stand_in_code(fields)


@pytest.mark.parametrize("name", [n for n in NAMES if n not in ga4_standin.RESERVED_EVENT_NAMES])
def test_ga4_the_connector_predicts_the_stand_in_s_verdict_on_a_parameter_name(name: str) -> None:
    ga4 = connector_module("ga4")
    fields: dict[str, object] = {"client_id": "c1", "name": "assessment_completed", f"params.{name}": "v"}
    assert ga4.wire_problem(fields) == _stand_in_code(fields)


def test_ga4_the_connector_predicts_the_stand_in_s_verdict_on_long_values_and_many_params() -> None:
    ga4 = connector_module("ga4")
    for fields in (
        {"client_id": "c1", "name": "e", "params.p": "v" * 100},
        {"client_id": "c1", "name": "e", "params.p": "v" * 101},
        {"client_id": "c1", "name": "e", **{f"params.p{i}": i for i in range(25)}},
        {"client_id": "c1", "name": "e", **{f"params.p{i}": i for i in range(26)}},
    ):
        assert ga4.wire_problem(fields) == _stand_in_code(fields)


# --------------------------------------------------------------------------- batch sizes and page sizes


def test_hubspot_batches_and_search_pages_fit_the_stand_in() -> None:
    hubspot = connector_module("hubspot")
    assert hubspot.BATCH_LIMIT == hubspot_standin.BATCH_LIMIT
    assert max(batch_sizes("hubspot").values()) <= hubspot_standin.BATCH_LIMIT
    assert hubspot.SEARCH_PAGE_LIMIT == hubspot_standin.SEARCH_LIMIT_MAX


def test_mailchimp_batches_and_merge_field_pages_fit_the_stand_in() -> None:
    mailchimp_merge_fields = importlib.import_module("connectors.mailchimp.merge_fields")
    assert max(batch_sizes("mailchimp").values()) == mailchimp_standin.BATCH_LIMIT
    assert mailchimp_merge_fields.MAX_COUNT <= mailchimp_standin.MERGE_FIELD_LIMIT


def test_salesforce_collections_fit_and_the_api_limit_is_a_retry() -> None:
    salesforce = connector_module("salesforce")
    assert salesforce.COLLECTION_LIMIT == salesforce_standin.COLLECTION_LIMIT
    assert max(batch_sizes("salesforce").values()) <= salesforce_standin.COLLECTION_LIMIT
    # The stand-in answers the daily API limit as Salesforce does (403 REQUEST_LIMIT_EXCEEDED, not 429).
    assert salesforce_standin.RATE_LIMIT_STATUS == 403
    assert salesforce.TABLE.codes["REQUEST_LIMIT_EXCEEDED"] in RETRYING


def test_stripe_idempotency_keys_fit_the_stand_in() -> None:
    stripe = connector_module("stripe")
    assert stripe.MAX_IDEMPOTENCY_KEY == stripe_standin.MAX_IDEMPOTENCY_KEY
    assert len(stripe.idempotency_key("e" * 300, "r" * 300, "create")) <= stripe_standin.MAX_IDEMPOTENCY_KEY


def test_twilio_list_pages_fit_the_stand_in() -> None:
    twilio = connector_module("twilio")
    assert 1 <= twilio.LIST_PAGE_SIZE <= twilio_standin.MAX_PAGE_SIZE


def test_slack_notices_fit_the_stand_in() -> None:
    slack = connector_module("slack")
    largest = slack.blocks("t" * 500, "x" * 10_000, {f"f{i}": i for i in range(100)})
    assert len(largest) <= slack_standin.MAX_BLOCKS


def test_stripes_customer_fields_are_the_params_its_stand_in_accepts() -> None:
    """The connector's declared customer fields (which the lint checks mappings against) are parameters
    Stripe's Create Customer takes, as the stand-in knows them (it also takes `expand`, no field)."""
    from connectors.stripe.connector import CUSTOMER_FIELDS

    assert set(CUSTOMER_FIELDS) == set(stripe_standin.CUSTOMER_PARAMS) - {"expand"}
