"""devtools.every_event against the demo: every host event of a demo person, through the intake and a delivery
worker to the stand-ins, settles everywhere (delivered, or skipped or waiting with its reason), reaches the
demo's Zaps, and the erasure takes the person's records back out.

The demo as `make up` has it: generated people (devtools.demo) and one Zap a trigger subscribed through our
/zapier/subscribe API (devtools.demo_zaps). A `flow` test (the Prefect harness, a worker on threads).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from devtools.demo import generate_demo
from devtools.demo_zaps import subscribe_demo_zaps
from devtools.every_event import STEPS, every_event
from ennu.settings import get_settings
from tests.engine_support import running_worker
from tests.webhook_signing import SECRETS, intake_with

pytestmark = pytest.mark.usefixtures("prefect_server")
ZAPIER_TOKEN = "zap-demo-token"
INTAKE = {"Authorization": "Bearer dev-intake-token"}


@pytest.fixture()
def api(sqlite_database: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    with intake_with(monkeypatch, {**SECRETS, "ZAPIER_TOKEN": ZAPIER_TOKEN}) as client:
        yield client


def test_every_event_of_a_demo_person_settles_everywhere_and_reaches_the_demos_zaps(
    api: TestClient, sandbox: Any
) -> None:
    generate_demo(get_settings().database_url, people=200, seed=7)
    zaps = subscribe_demo_zaps(
        lambda method, path, body, headers: api.request(method, path, json=body, headers=headers),
        sandbox.base_url,
        ZAPIER_TOKEN,
    )

    def post(body: dict[str, Any]) -> None:
        assert api.post("/events", json=body, headers=INTAKE).status_code in (200, 201, 202)

    with running_worker():
        run = every_event(post, sandbox, timeout=45, show=lambda _: None)

    assert set(run.deliveries) == {*STEPS, "user.deletion_requested"}
    ends = {(step, i): end for step, outcome in run.deliveries.items() for i, end in outcome.items()}
    unsettled = {
        key: end for key, end in ends.items() if end.split(" ")[0] in ("pending", "unknown", "failed")
    }
    assert unsettled == {}
    # Every trigger fired reached its Zap: none is `skipped (no zapier subscription)` any more.
    # (The erasure's Zapier delivery is no trigger: a notice to every hook that the person was erased.)
    zapier = {step: end for (step, i), end in ends.items() if i == "zapier" and step in STEPS}
    assert zapier and set(zapier) <= set(zaps)
    assert {step: end for step, end in zapier.items() if "no zapier subscription" in end} == {}
    delivered = [step for step, end in zapier.items() if end == "delivered"]
    assert run.gained["zapier"]["payloads"] == len(delivered) > 0
    # The CRMs gained the person, and the erasure took them out again.
    assert run.gained["salesforce"].get("Contact") == 1 and run.gained["hubspot"].get("contacts") == 1
    assert "Contact" not in run.after_erasure.get("salesforce", {})
    assert "contacts" not in run.after_erasure.get("hubspot", {})
