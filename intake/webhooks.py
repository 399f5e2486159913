"""`POST /webhooks/{integration}`: verify the vendor's signature, store the receipt once, answer fast.

The work happens later: each new receipt becomes the Prefect event `ennu.webhook.<integration>` that the
`webhook-received` flow handles, so the vendor's call returns before any of it runs.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, HTTPException, Path, Request
from fastapi.responses import Response
from prefect.events import emit_event
from pydantic import BaseModel

from ennu import receipts
from ennu.receipts import CALLBACK_ID_PREFIX, CALLBACK_IDS
from ennu.secrets import read_secret
from ennu.settings import get_settings
from intake.auth import refuse_credentials
from intake.errors import error_responses
from intake.limits import loads_finite
from intake.openapi import allowed_values
from intake.signatures import (
    SignatureError,
    verify_hubspot_legacy,
    verify_hubspot_v3,
    verify_mandrill,
    verify_stripe,
    verify_twilio,
    verify_url_secret,
)

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/webhooks", tags=["webhooks"])
SECRET_NAMES = {
    "stripe": "STRIPE_WEBHOOK_SECRETS",
    "hubspot": "HUBSPOT_CLIENT_SECRETS",
    "mailchimp": "MAILCHIMP_WEBHOOK_SECRETS",
    "mailchimp-transactional": "MANDRILL_WEBHOOK_KEYS",
    "twilio": "TWILIO_AUTH_TOKENS",
}
SIGNATURE_REFUSED = "Missing, wrong or stale signature, or no webhook secret configured."
# Vendors whose webhooks carry no signature, only a secret in the URL: a wrong one is a guess at a
# credential, throttled per client like a wrong bearer token (a signed body is not guessable that way).
URL_SECRET_VENDORS = frozenset({"mailchimp"})
# The body is the vendor's, read raw (the signature covers its bytes), so it is described here, not parsed.
WEBHOOK_OPENAPI: dict[str, Any] = {
    "parameters": [
        {
            "name": "secret",
            "in": "query",
            "required": False,
            "schema": {"type": "string", "maxLength": 200},
            "description": "Mailchimp marketing only: the secret in the webhook URL.",
        }
    ],
    "requestBody": {
        "required": False,
        "description": (
            "Exactly as the vendor sent it: JSON (Stripe, HubSpot) or form fields (Mailchimp, Mailchimp "
            "transactional, Twilio). Signed with Stripe-Signature, X-HubSpot-Signature-v3 (v1/v2 only when "
            "ENNU_WEBHOOK_HUBSPOT_LEGACY_SIGNATURES is on), "
            "X-Mandrill-Signature, X-Twilio-Signature, or the URL secret (Mailchimp)."
        ),
        "content": {
            "application/json": {"schema": {}},
            "application/x-www-form-urlencoded": {"schema": {"type": "object"}},
        },
    },
}


class WebhookAck(BaseModel):
    """What a delivery held: its vendor events, those new and those already received."""

    received: int
    new: int
    duplicates: int


@dataclass(frozen=True)
class Delivery:
    vendor_event_id: str
    kind: str
    payload: dict[str, Any]


def secrets_for(integration: str) -> list[str]:
    secret = read_secret(SECRET_NAMES[integration])
    values = secret.get_secret_value().split(",") if secret is not None else []
    if not values:
        # Unconfigured: nothing can verify, so nothing is accepted.
        raise HTTPException(401, "webhook secret not configured")
    return [v.strip() for v in values if v.strip()]


def public_url(request: Request) -> str:
    """The URL the vendor signed: configured (behind a proxy) or as received."""
    base = read_secret("ENNU_PUBLIC_BASE_URL", use_blocks=False)
    if base is not None:
        query = f"?{request.url.query}" if request.url.query else ""
        return base.get_secret_value().rstrip("/") + request.url.path + query
    return str(request.url)


def _json(body: bytes) -> Any:
    try:
        return loads_finite(body)
    except (ValueError, RecursionError):  # not UTF-8, not JSON, non-finite numbers, or nested too deeply
        raise HTTPException(422, "body is not JSON") from None


def _digest(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:40]


async def stripe(request: Request, body: bytes) -> list[Delivery]:
    verify_stripe(body, request.headers.get("stripe-signature"), secrets_for("stripe"))
    event = _json(body)
    if not isinstance(event, dict) or not isinstance(event.get("id"), str):
        raise HTTPException(422, "not a Stripe event")
    return [Delivery(event["id"], str(event.get("type", "")), event)]


async def hubspot(request: Request, body: bytes) -> list[Delivery]:
    secrets = secrets_for("hubspot")
    url = public_url(request)
    if request.headers.get("x-hubspot-signature-v3") or not get_settings().webhook_hubspot_legacy_signatures:
        verify_hubspot_v3(
            request.method,
            url,
            body,
            request.headers.get("x-hubspot-signature-v3"),
            request.headers.get("x-hubspot-request-timestamp"),
            secrets,
        )
    else:
        verify_hubspot_legacy(
            request.headers.get("x-hubspot-signature-version", "v1"),
            request.method,
            url,
            body,
            request.headers.get("x-hubspot-signature"),
            secrets,
        )
    events = _json(body)
    if not isinstance(events, list) or not all(isinstance(e, dict) and "eventId" in e for e in events):
        raise HTTPException(422, "not a list of HubSpot events")
    return [Delivery(str(e["eventId"]), str(e.get("subscriptionType", "")), e) for e in events]


async def mailchimp(request: Request, body: bytes) -> list[Delivery]:
    verify_url_secret(request.query_params.get("secret"), secrets_for("mailchimp"))
    fields = dict(parse_qsl(body.decode(errors="replace"), keep_blank_values=True))
    kind = fields.get("type", "")
    if not kind:
        raise HTTPException(422, "not a Mailchimp audience webhook")
    member = fields.get("data[id]") or fields.get("data[email]", "")
    return [Delivery(_digest(kind, fields.get("fired_at", ""), member), kind, fields)]


async def mailchimp_transactional(request: Request, body: bytes) -> list[Delivery]:
    pairs = parse_qsl(body.decode(errors="replace"), keep_blank_values=True)
    verify_mandrill(
        public_url(request),
        pairs,
        request.headers.get("x-mandrill-signature"),
        secrets_for("mailchimp-transactional"),
    )
    events = _json(dict(pairs).get("mandrill_events", "").encode())
    if not isinstance(events, list):
        raise HTTPException(422, "mandrill_events is not a list")
    return [
        Delivery(str(e.get("_id") or _digest(json.dumps(e, sort_keys=True))), str(e.get("event", "")), e)
        for e in events
        if isinstance(e, dict)
    ]


async def twilio(request: Request, body: bytes) -> list[Delivery]:
    pairs = parse_qsl(body.decode(errors="replace"), keep_blank_values=True)
    verify_twilio(
        public_url(request), pairs, request.headers.get("x-twilio-signature"), secrets_for("twilio")
    )
    fields = dict(pairs)
    sid = fields.get("MessageSid") or fields.get("SmsSid") or fields.get("CallSid")
    if not sid:
        raise HTTPException(422, "not a Twilio callback")
    kind = (
        fields.get("MessageStatus") or fields.get("CallStatus") or ("inbound" if fields.get("Body") else "")
    )
    # A status callback's URL carries the delivery's own ids (connectors/twilio: StatusCallback), signed
    # with the rest: they say which delivery the status is about, even for a send whose SID was lost.
    ids = {f"{CALLBACK_ID_PREFIX}{k}": v for k, v in request.query_params.items() if k in CALLBACK_IDS}
    return [Delivery(f"{sid}:{kind}", kind, {**fields, **ids})]


VERIFIERS = {
    "stripe": stripe,
    "hubspot": hubspot,
    "mailchimp": mailchimp,
    "mailchimp-transactional": mailchimp_transactional,
    "twilio": twilio,
}


@router.get(
    "/mailchimp",
    response_class=Response,
    responses={
        200: {"description": "The URL secret is known: Mailchimp may send to this URL."},
        **error_responses(401, 422, e401="Unknown URL secret, or no webhook secret configured."),
    },
)
def mailchimp_validation(request: Request, secret: str | None = None) -> Response:
    """Mailchimp checks a webhook URL with a GET before it sends anything."""
    try:
        verify_url_secret(secret, secrets_for("mailchimp"))
    except SignatureError:
        raise refuse_credentials(request, bool(secret), "unknown webhook secret", {}) from None
    return Response(status_code=200)


@router.post(
    "/{integration}",
    response_model=WebhookAck,
    responses={
        200: {"description": "Accepted, or a redelivery acknowledged and not processed twice."},
        **error_responses(
            401,
            404,
            413,
            422,
            e401=SIGNATURE_REFUSED,
            e429="Too many wrong URL secrets from this client (Mailchimp's webhooks carry no signature); "
            "retry after `Retry-After` seconds.",
            e404="No webhook for this integration.",
            e422="The body is not what this vendor sends.",
        ),
    },
    openapi_extra=WEBHOOK_OPENAPI,
)
async def receive(
    integration: Annotated[str, Path(json_schema_extra=allowed_values(SECRET_NAMES))], request: Request
) -> WebhookAck:
    """Verify, store once per vendor event id (remembered past the payload's clean-up), announce, answer."""
    verifier = VERIFIERS.get(integration)
    if verifier is None:
        raise HTTPException(404, "no webhook for this integration")
    body = await request.body()
    try:
        deliveries = await verifier(request, body)
    except SignatureError as exc:
        logger.warning("%s webhook refused: %s", integration, exc)
        if integration in URL_SECRET_VENDORS:
            presented = bool(request.query_params.get("secret"))
            raise refuse_credentials(request, presented, "signature refused", {}) from None
        raise HTTPException(401, "signature refused") from None
    new = [
        (d, receipt_id)
        for d in deliveries
        if (receipt_id := receipts.record(integration, d.vendor_event_id, d.kind, d.payload)) is not None
    ]
    for delivery, receipt_id in new:
        emit_event(
            event=f"ennu.webhook.{integration}",
            resource={
                "prefect.resource.id": f"ennu.webhook-receipt.{receipt_id}",
                "ennu.integration": integration,
            },
            payload={"receipt_id": receipt_id, "kind": delivery.kind},
        )
    return WebhookAck(received=len(deliveries), new=len(new), duplicates=len(deliveries) - len(new))
