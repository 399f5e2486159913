"""Stripe stand-in: customers, subscriptions, balance; bearer auth, bracketed form bodies, key replay.

And Stripe's side of its webhooks: `webhook_event` and the object builders make the events Stripe sends
(`invoice.paid`, `invoice.payment_failed`, `charge.refunded`, `customer.subscription.*`, `customer.deleted`)
in the shapes of API version `WEBHOOK_API_VERSION`, and `signed_webhook` signs one as Stripe does.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from sandbox.config import SandboxConfig
from sandbox.state import SandboxState, VendorState

# Where the stand-in is mounted: the vendor's real paths follow (sandbox.app discovers it by this).
MOUNT = "/stripe"

SANDBOX_API_KEY = "sk_test_sandbox"
IDEMPOTENCY_TTL_SECONDS = 24 * 3600
MAX_IDEMPOTENCY_KEY = 255
EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
FORM = "application/x-www-form-urlencoded"
CUSTOMER_PARAMS = frozenset(
    {
        "address",
        "balance",
        "business_name",
        "cash_balance",
        "description",
        "email",
        "expand",
        "individual_name",
        "invoice_prefix",
        "invoice_settings",
        "metadata",
        "name",
        "next_invoice_sequence",
        "payment_method",
        "phone",
        "preferred_locales",
        "shipping",
        "source",
        "tax",
        "tax_exempt",
        "tax_id_data",
        "test_clock",
    }
)
SUBSCRIPTION_STATUSES = frozenset(
    {"active", "trialing", "past_due", "unpaid", "canceled", "incomplete", "incomplete_expired", "paused"}
)
# Stripe's test-mode cards that are declined when attached to a customer.
DECLINED_TOKENS = frozenset({"tok_chargeDeclined", "pm_card_chargeDeclined", "pm_card_visa_chargeDeclined"})


# ----------------------------------------------------------------------------------------- wire shapes


def stripe_error(
    status: int, kind: str, message: str, code: str | None = None, param: str | None = None, **extra: Any
) -> tuple[int, dict[str, Any]]:
    error: dict[str, Any] = {"type": kind, "message": message}
    if code:
        error["code"] = code
        error["doc_url"] = f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}"
    if param is not None:
        error["param"] = param
    error.update(extra)
    return status, {"error": error}


def error_body(status: int, retry_after: int | None) -> tuple[dict[str, Any], str, dict[str, str]]:
    """Stripe's error shapes for injected failures and rate limiting."""
    headers = {"Request-Id": _request_id()}
    if status == 429:
        _, body = stripe_error(
            429,
            "invalid_request_error",
            "Request rate limit exceeded. Learn more about rate limits here https://stripe.com/docs/rate-limits.",
            "rate_limit",
        )
    elif status == 402:
        _, body = stripe_error(
            402, "card_error", "Your card was declined.", "card_declined", decline_code="generic_decline"
        )
    elif status == 409:
        _, body = stripe_error(
            409,
            "idempotency_error",
            "There is currently another in-progress request using this Idempotent Key.",
            "idempotency_key_in_use",
        )
    elif status == 404:
        _, body = stripe_error(404, "invalid_request_error", "Unrecognized request URL.", "resource_missing")
    elif status >= 500:
        _, body = stripe_error(status, "api_error", "An unknown error occurred")
        headers["Stripe-Should-Retry"] = "true"  # it never reached an endpoint: nothing was saved
    else:
        _, body = stripe_error(status, "invalid_request_error", "Invalid request.")
    return body, "application/json", headers


class Unauthorised(Exception):
    """Raised by the auth dependency; the app turns it into Stripe's 401."""


def unauthorised_response() -> JSONResponse:
    # Stripe masks the key it was given; this never repeats any of it.
    _, body = stripe_error(401, "invalid_request_error", "Invalid API Key provided: sk_***")
    return JSONResponse(
        body,
        status_code=401,
        headers={"WWW-Authenticate": 'Basic realm="Stripe"', "Request-Id": _request_id()},
    )


def _request_id() -> str:
    return "req_" + uuid.uuid4().hex[:14]


def _object_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:14]}"


def decode_form(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """`metadata[a]=1&items[0][price]=p` → `{"metadata": {"a": "1"}, "items": [{"price": "p"}]}`."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        head, _, tail = key.partition("[")
        parts = [head] + (tail.rstrip("]").split("][") if tail else [])
        node = root
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if part == "":  # `expand[]=a`: append
                part = str(len(node))
            if last:
                node[part] = value
            else:
                child = node.get(part)
                if not isinstance(child, dict):
                    child = {}
                    node[part] = child
                node = child
    return _lists(root)


def _lists(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _lists(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        return [converted[k] for k in sorted(converted, key=int)]
    return converted


def _page(
    items: list[dict[str, Any]], url: str, limit_raw: str | None, starting_after: str | None
) -> tuple[int, dict[str, Any]]:
    try:
        limit = int(limit_raw) if limit_raw is not None else 10
    except ValueError:
        return stripe_error(
            400, "invalid_request_error", "Invalid integer: limit", "parameter_invalid_integer", "limit"
        )
    if not 1 <= limit <= 100:
        return stripe_error(
            400,
            "invalid_request_error",
            "This value must be greater than or equal to 1 and less than or equal to 100.",
            "parameter_invalid_integer",
            "limit",
        )
    if starting_after:
        ids = [i["id"] for i in items]
        if starting_after not in ids:
            return stripe_error(
                400,
                "invalid_request_error",
                "No such object for starting_after.",
                "resource_missing",
                "starting_after",
            )
        items = items[ids.index(starting_after) + 1 :]
    return 200, {"object": "list", "url": url, "has_more": len(items) > limit, "data": items[:limit]}


# ----------------------------------------------------------------------------------------- objects


def _new_customer(params: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": _object_id("cus"),
        "object": "customer",
        "address": None,
        "balance": 0,
        "created": int(time.time()),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": None,
        "email": None,
        "invoice_prefix": uuid.uuid4().hex[:8].upper(),
        "invoice_settings": {"custom_fields": None, "default_payment_method": None, "footer": None},
        "livemode": False,
        "metadata": {},
        "name": None,
        "phone": None,
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": None,
    }


def _check_customer_params(params: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """A validation error (never saved under an idempotency key), or None."""
    for name in params:
        if name not in CUSTOMER_PARAMS:
            return stripe_error(
                400, "invalid_request_error", f"Received unknown parameter: {name}", "parameter_unknown", name
            )
    email = params.get("email")
    if email not in (None, "") and (not isinstance(email, str) or len(email) > 512 or not EMAIL.match(email)):
        return stripe_error(400, "invalid_request_error", "Invalid email address.", "email_invalid", "email")
    name_value = params.get("name")
    if isinstance(name_value, str) and len(name_value) > 256:
        return stripe_error(
            400, "invalid_request_error", "Name is too long.", "string_length_exceeded", "name"
        )
    metadata = params.get("metadata")
    if metadata not in (None, ""):
        if not isinstance(metadata, dict):
            return stripe_error(
                400, "invalid_request_error", "Invalid hash", "parameter_invalid_hash", "metadata"
            )
        if len(metadata) > 50:
            return stripe_error(
                400,
                "invalid_request_error",
                "Metadata can have up to 50 keys.",
                "parameter_invalid_hash",
                "metadata",
            )
        for key, value in metadata.items():
            if len(key) > 40 or not isinstance(value, str) or len(value) > 500:
                return stripe_error(
                    400,
                    "invalid_request_error",
                    "Metadata keys are at most 40 characters and values strings of at most 500.",
                    "parameter_invalid_string",
                    f"metadata[{key[:40]}]",
                )
    return None


def _apply_customer(customer: dict[str, Any], params: dict[str, Any]) -> tuple[int, dict[str, Any]] | None:
    """Stripe's update semantics: an empty string unsets, metadata merges key by key."""
    for token_param in ("source", "payment_method"):
        token = params.get(token_param)
        if token in DECLINED_TOKENS:
            return stripe_error(
                402,
                "card_error",
                "Your card was declined.",
                "card_declined",
                token_param,
                decline_code="generic_decline",
            )
    for name, value in params.items():
        if name == "metadata":
            if value == "":
                customer["metadata"] = {}
                continue
            for key, item in value.items():
                if item == "":
                    customer["metadata"].pop(key, None)
                else:
                    customer["metadata"][key] = item
        elif name in ("source", "payment_method"):
            card = _object_id("card" if name == "source" else "pm")
            if name == "source":
                customer["default_source"] = card
            else:
                customer["invoice_settings"]["default_payment_method"] = card
        elif name == "expand":
            continue
        else:
            customer[name] = None if value == "" else value
    return None


def _new_subscription(customer_id: str, params: dict[str, Any]) -> dict[str, Any]:
    now = int(time.time())
    trial_days = int(params.get("trial_period_days") or 0)
    items = params.get("items") or []
    return {
        "id": _object_id("sub"),
        "object": "subscription",
        "customer": customer_id,
        # The sandbox has no payment flow: a subscription starts active (or trialing with a trial).
        "status": "trialing" if trial_days > 0 else "active",
        "cancel_at_period_end": False,
        "canceled_at": None,
        "created": now,
        "start_date": now,
        "trial_end": now + trial_days * 86400 if trial_days else None,
        "items": {
            "object": "list",
            "data": [
                {
                    "id": _object_id("si"),
                    "object": "subscription_item",
                    "price": {"id": item.get("price")},
                    "quantity": int(item.get("quantity") or 1),
                }
                for item in items
                if isinstance(item, dict)
            ],
        },
        "livemode": False,
        "metadata": dict(params.get("metadata") or {}),
    }


# ----------------------------------------------------------------------------------------- webhooks

# The API version the events below are shaped for (the pinned stripe-python's: the contract test checks
# every field against its resource classes). Before 2025-03-31 an invoice named its `charge` and a charge its
# `invoice`; `legacy_link` adds that field for the tests of older webhook endpoints.
WEBHOOK_API_VERSION = "2026-10-28.endive"


def webhook_event(kind: str, data_object: dict[str, Any], *, created: int | None = None) -> dict[str, Any]:
    """An Event as Stripe POSTs it to a webhook endpoint: a unique `id`, `created`, `type`, the object."""
    return {
        "id": _object_id("evt"),
        "object": "event",
        "api_version": WEBHOOK_API_VERSION,
        "created": int(time.time()) if created is None else created,
        "data": {"object": data_object},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": kind,
    }


def invoice(
    customer: str,
    *,
    paid: bool,
    amount: int,
    currency: str = "usd",
    subscription: str | None = None,
    legacy_link: str | None = None,
) -> dict[str, Any]:
    """An invoice of `amount` (smallest currency unit) as `invoice.paid` (paid) or `invoice.payment_failed`
    (still open, attempted) carry it. Stripe puts the customer's e-mail and name on it too: never kept."""
    now = int(time.time())
    found: dict[str, Any] = {
        "id": _object_id("in"),
        "object": "invoice",
        "amount_due": amount,
        "amount_paid": amount if paid else 0,
        "amount_remaining": 0 if paid else amount,
        "attempt_count": 1,
        "attempted": True,
        "billing_reason": "subscription_cycle" if subscription else "manual",
        "collection_method": "charge_automatically",
        "created": now,
        "currency": currency,
        "customer": customer,
        "customer_email": "payer@example.com",
        "customer_name": "Pat Payer",
        "livemode": False,
        "metadata": {},
        "parent": (
            {"type": "subscription_details", "subscription_details": {"subscription": subscription}}
            if subscription
            else None
        ),
        "period_end": now,
        "period_start": now - 30 * 86400,
        "status": "paid" if paid else "open",
        "status_transitions": {"finalized_at": now, "paid_at": now if paid else None},
        "subtotal": amount,
        "total": amount,
    }
    if legacy_link is not None:
        found["charge"] = legacy_link
    return found


def charge(
    customer: str | None,
    *,
    amount: int,
    amount_refunded: int,
    currency: str = "usd",
    legacy_link: str | None = None,
) -> dict[str, Any]:
    """A card charge as `charge.refunded` carries it (card and billing details included: never kept)."""
    found: dict[str, Any] = {
        "id": _object_id("ch"),
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "billing_details": {"email": "payer@example.com", "name": "Pat Payer", "phone": None},
        "captured": True,
        "created": int(time.time()),
        "currency": currency,
        "customer": customer,
        "livemode": False,
        "metadata": {},
        "paid": True,
        "payment_intent": _object_id("pi"),
        "payment_method_details": {
            "type": "card",
            "card": {"brand": "visa", "last4": "4242", "exp_month": 12, "exp_year": 2030},
        },
        "receipt_email": "payer@example.com",
        "refunded": amount_refunded >= amount,
        "status": "succeeded",
    }
    if legacy_link is not None:
        found["invoice"] = legacy_link
    return found


def signature_header(payload: bytes, secret: str, timestamp: int | None = None) -> str:
    """`Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<raw body>")>`, as Stripe signs."""
    at = int(time.time()) if timestamp is None else timestamp
    digest = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def signed_webhook(
    event: dict[str, Any], secret: str, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of Stripe's POST of `event` to an endpoint whose signing secret is `secret`."""
    body = json.dumps(event).encode()
    headers = {
        "Content-Type": "application/json; charset=utf-8",
        "Stripe-Signature": signature_header(body, secret, timestamp),
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
    }
    return body, headers


# ----------------------------------------------------------------------------------------- router


def build_router(state: SandboxState, config: SandboxConfig) -> APIRouter:
    api_key = str(getattr(config, "stripe_api_key", SANDBOX_API_KEY))

    def authorised(request: Request) -> None:
        header = request.headers.get("authorization", "")
        scheme, _, credential = header.partition(" ")
        if scheme.lower() == "basic":  # `curl -u sk_test_...:` sends the key as the user name
            try:
                credential = base64.b64decode(credential).decode().partition(":")[0]
            except (ValueError, UnicodeDecodeError):
                credential = ""
        elif scheme.lower() != "bearer":
            credential = ""
        if credential != api_key:
            raise Unauthorised

    router = APIRouter(dependencies=[Depends(authorised)])

    def stripe() -> VendorState:
        return state.vendor("stripe")

    def answer(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
        return JSONResponse(
            body, status_code=status, headers={"Request-Id": _request_id(), **(headers or {})}
        )

    async def form(request: Request) -> list[tuple[str, str]] | JSONResponse:
        raw = await request.body()
        content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if raw and content_type != FORM:
            return answer(
                *stripe_error(
                    400,
                    "invalid_request_error",
                    f"Invalid request: unsupported Content-Type {content_type or 'none'}. "
                    "Requests are form-encoded.",
                )
            )
        return parse_qsl(raw.decode(), keep_blank_values=True)

    async def idempotent_post(
        request: Request, run: Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]
    ) -> Response:
        """Run a POST once per Idempotency-Key: the first answer (errors too) is replayed for 24 h.

        Parameter validation errors are not saved (no endpoint began executing), as at Stripe.
        """
        pairs = await form(request)
        if isinstance(pairs, Response):
            return pairs
        key = request.headers.get("idempotency-key")
        if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
            return answer(
                *stripe_error(
                    400,
                    "invalid_request_error",
                    f"Idempotency keys can be no longer than {MAX_IDEMPOTENCY_KEY} characters.",
                )
            )
        fingerprint = [request.method, request.url.path, [list(p) for p in sorted(pairs)]]
        echo = {"Idempotency-Key": key} if key else {}
        with state.lock:
            saved_store = stripe().kind("idempotency")
            saved = saved_store.get(key) if key else None
            if key and saved is not None and time.time() - saved["at"] > IDEMPOTENCY_TTL_SECONDS:
                del saved_store[key]
                saved = None
            if saved is not None:
                if saved["fingerprint"] != fingerprint:
                    return answer(
                        *stripe_error(
                            400,
                            "idempotency_error",
                            "Keys for idempotent requests can only be used with the same parameters they "
                            f"were first used with. Try using a key other than '{key}' if you meant to "
                            "execute a different request.",
                        ),
                        echo,
                    )
                return answer(saved["status"], saved["body"], {**echo, "Idempotent-Replayed": "true"})
            status, body = run(decode_form(pairs))
            validation_error = status == 400 and body.get("error", {}).get("type") == "invalid_request_error"
            if key and not validation_error:
                saved_store[key] = {
                    "fingerprint": fingerprint,
                    "status": status,
                    "body": body,
                    "at": time.time(),
                }
        return answer(status, body, echo)

    def customers() -> dict[str, Any]:
        return stripe().kind("customers")

    def missing_customer(customer_id: str, param: str = "id") -> tuple[int, dict[str, Any]]:
        return stripe_error(
            404, "invalid_request_error", f"No such customer: '{customer_id}'", "resource_missing", param
        )

    @router.get("/v1/customers")
    async def list_customers(request: Request) -> Response:
        query = request.query_params
        with state.lock:
            items = list(reversed(customers().values()))  # newest first
        email = query.get("email")
        if email is not None:
            items = [c for c in items if c.get("email") == email]  # exact and case-sensitive, as at Stripe
        return answer(*_page(items, "/v1/customers", query.get("limit"), query.get("starting_after")))

    @router.post("/v1/customers")
    async def create_customer(request: Request) -> Response:
        def run(params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            problem = _check_customer_params(params)
            if problem:
                return problem
            customer = _new_customer(params)
            declined = _apply_customer(customer, params)
            if declined:
                return declined
            customers()[customer["id"]] = customer
            return 200, dict(customer)

        return await idempotent_post(request, run)

    @router.get("/v1/customers/{customer_id}")
    async def retrieve_customer(customer_id: str) -> Response:
        with state.lock:
            found = customers().get(customer_id)
            gone = customer_id in stripe().kind("deleted_customers")
        if found is not None:
            return answer(200, found)
        if gone:
            return answer(200, {"id": customer_id, "object": "customer", "deleted": True})
        return answer(*missing_customer(customer_id))

    @router.post("/v1/customers/{customer_id}")
    async def update_customer(customer_id: str, request: Request) -> Response:
        def run(params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            customer = customers().get(customer_id)
            if customer is None:
                return missing_customer(customer_id)
            problem = _check_customer_params(params)
            if problem:
                return problem
            updated = {**customer, "metadata": dict(customer["metadata"])}
            declined = _apply_customer(updated, params)
            if declined:
                return declined
            customers()[customer_id] = updated
            return 200, dict(updated)

        return await idempotent_post(request, run)

    @router.delete("/v1/customers/{customer_id}")
    async def delete_customer(customer_id: str) -> Response:
        with state.lock:
            removed = customers().pop(customer_id, None)
            if removed is None:
                return answer(*missing_customer(customer_id))
            stripe().kind("deleted_customers")[customer_id] = {"id": customer_id, "deleted": True}
            # Deleting a customer cancels its subscriptions at once.
            for subscription in stripe().kind("subscriptions").values():
                if subscription["customer"] == customer_id and subscription["status"] != "canceled":
                    subscription.update(status="canceled", canceled_at=int(time.time()))
        return answer(200, {"id": customer_id, "object": "customer", "deleted": True})

    @router.get("/v1/subscriptions")
    async def list_subscriptions(request: Request) -> Response:
        query = request.query_params
        status = query.get("status")
        if status is not None and status != "all" and status not in SUBSCRIPTION_STATUSES:
            return answer(
                *stripe_error(
                    400, "invalid_request_error", "Invalid status.", "parameter_invalid_string", "status"
                )
            )
        with state.lock:
            items = list(reversed(stripe().kind("subscriptions").values()))
        if query.get("customer"):
            items = [s for s in items if s["customer"] == query["customer"]]
        if status is None:  # Stripe's default leaves canceled subscriptions out
            items = [s for s in items if s["status"] != "canceled"]
        elif status != "all":
            items = [s for s in items if s["status"] == status]
        return answer(*_page(items, "/v1/subscriptions", query.get("limit"), query.get("starting_after")))

    @router.post("/v1/subscriptions")
    async def create_subscription(request: Request) -> Response:
        def run(params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
            customer_id = params.get("customer")
            if not customer_id:
                return stripe_error(
                    400,
                    "invalid_request_error",
                    "Missing required param: customer.",
                    "parameter_missing",
                    "customer",
                )
            if not params.get("items"):
                return stripe_error(
                    400,
                    "invalid_request_error",
                    "Missing required param: items.",
                    "parameter_missing",
                    "items",
                )
            if customer_id not in customers():
                return missing_customer(str(customer_id), "customer")
            subscription = _new_subscription(str(customer_id), params)
            stripe().kind("subscriptions")[subscription["id"]] = subscription
            return 200, dict(subscription)

        return await idempotent_post(request, run)

    @router.delete("/v1/subscriptions/{subscription_id}")
    async def cancel_subscription(subscription_id: str) -> Response:
        with state.lock:
            subscription = stripe().kind("subscriptions").get(subscription_id)
            if subscription is None:
                return answer(
                    *stripe_error(
                        404,
                        "invalid_request_error",
                        f"No such subscription: '{subscription_id}'",
                        "resource_missing",
                        "id",
                    )
                )
            subscription.update(status="canceled", canceled_at=int(time.time()))
            return answer(200, dict(subscription))

    @router.get("/v1/balance")
    async def balance() -> Response:
        money = [{"amount": 0, "currency": "usd", "source_types": {"card": 0}}]
        return answer(200, {"object": "balance", "available": money, "pending": money, "livemode": False})

    return router
