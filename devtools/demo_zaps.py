"""The demo's Zaps: one REST hook at the sandbox's Zapier stand-in for every trigger, subscribed through our
own `/zapier/subscribe` API as a Zap's owner turning it on would (`make up` does it once the intake is up),
so that every event fired in the demo reaches Zapier instead of `skipped (no zapier subscription)`.

Subscribing again is harmless (the same hook for the same event keeps its first id).

    .venv/bin/python -m devtools.demo_zaps    # against a running `make up`
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from typing import Any, Protocol

import requests

DEVELOPMENT_ZAPIER_TOKEN = "dev-zapier-token"  # noqa: S105 - make up's local-only token (devtools.launcher)


class Answer(Protocol):
    status_code: int

    def json(self) -> Any: ...


# (method, path, json, headers) -> the intake's answer: requests against a URL, or a test's client
IntakeCall = Callable[[str, str, dict[str, Any] | None, dict[str, str]], Answer]


def hook_id(event_type: str) -> str:
    """The stand-in's hook of one trigger: `demo-user-registered`."""
    return "demo-" + event_type.replace(".", "-").replace("_", "-")


def subscribe_demo_zaps(
    call: IntakeCall, sandbox_url: str, token: str = DEVELOPMENT_ZAPIER_TOKEN
) -> dict[str, str]:
    """Every trigger the intake lists (GET /zapier/triggers) subscribed to its own sandbox hook: trigger ->
    subscription id. Raises RuntimeError naming the trigger whose subscription was refused."""
    headers = {"X-Zapier-Token": token}
    listed = call("GET", "/zapier/triggers", None, headers)
    if listed.status_code != 200:
        raise RuntimeError(f"GET /zapier/triggers answered {listed.status_code}")
    subscribed: dict[str, str] = {}
    for event_type in listed.json():
        body = {
            "target_url": f"{sandbox_url.rstrip('/')}/zapier/hooks/{hook_id(event_type)}",
            "event": event_type,
        }
        answer = call("POST", "/zapier/subscribe", body, headers)
        if answer.status_code != 201:
            raise RuntimeError(f"subscribing {event_type} answered {answer.status_code}")
        subscribed[event_type] = str(answer.json()["id"])
    return subscribed


def over_http(intake_url: str) -> IntakeCall:
    def call(method: str, path: str, body: dict[str, Any] | None, headers: dict[str, str]) -> Answer:
        return requests.request(
            method, f"{intake_url.rstrip('/')}{path}", json=body, headers=headers, timeout=30
        )

    return call


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--intake-url", default="http://127.0.0.1:8000")
    parser.add_argument("--sandbox-url", default="http://127.0.0.1:8765")
    parser.add_argument("--zapier-token", default=DEVELOPMENT_ZAPIER_TOKEN)
    args = parser.parse_args()
    subscribed = subscribe_demo_zaps(over_http(args.intake_url), args.sandbox_url, args.zapier_token)
    print(json.dumps({"zapier hooks subscribed": len(subscribed)}))


if __name__ == "__main__":
    main()
