"""Inbound webhook signatures of each vendor, checked in constant time; several secrets during rotation.

Every vendor that signs a timestamp (Stripe, HubSpot v3, Slack) is held to one tolerance,
ENNU_WEBHOOK_TOLERANCE_SECONDS (300 s: what Stripe and HubSpot recommend), unless a caller passes its own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping, Sequence

from ennu.settings import get_settings


class SignatureError(Exception):
    """Why a delivery was refused; never carries the body or a secret."""


def _any_equal(expected: Iterable[str], given: Iterable[str]) -> bool:
    """Compare every pair in constant time and without short-circuiting on the first match."""
    matched = False
    for a in expected:
        for b in given:
            matched |= hmac.compare_digest(a.encode(), b.encode())
    return matched


def _fresh(timestamp: float, now: float | None, tolerance: float | None) -> None:
    """Refuse a timestamp too far from now, in either direction (a replay, or a forged future one)."""
    limit = tolerance if tolerance is not None else get_settings().webhook_tolerance_seconds
    if abs((now if now is not None else time.time()) - timestamp) > limit:
        raise SignatureError("timestamp outside the tolerance window")


def verify_stripe(
    body: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    now: float | None = None,
    tolerance: float | None = None,
) -> None:
    """`Stripe-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "{t}.{body}")>[,v1=...]`."""
    if not header:
        raise SignatureError("missing Stripe-Signature header")
    parts = [p.split("=", 1) for p in header.split(",") if "=" in p]
    timestamps = [v for k, v in parts if k.strip() == "t"]
    signatures = [v.strip() for k, v in parts if k.strip() == "v1"]
    if len(timestamps) != 1 or not timestamps[0].strip().isdigit() or not signatures:
        raise SignatureError("malformed Stripe-Signature header")
    timestamp = timestamps[0].strip()
    signed = timestamp.encode() + b"." + body
    expected = [hmac.new(s.encode(), signed, hashlib.sha256).hexdigest() for s in secrets]
    if not _any_equal(expected, signatures):
        raise SignatureError("no matching v1 signature")
    _fresh(float(timestamp), now, tolerance)


def verify_hubspot_v3(
    method: str,
    uri: str,
    body: bytes,
    signature: str | None,
    timestamp_ms: str | None,
    secrets: Sequence[str],
    *,
    now: float | None = None,
    tolerance: float | None = None,
) -> None:
    """`X-HubSpot-Signature-v3` = base64(HMAC-SHA256(secret, method + uri + body + timestamp in ms))."""
    if not signature or not timestamp_ms:
        raise SignatureError("missing X-HubSpot-Signature-v3 or X-HubSpot-Request-Timestamp header")
    if not timestamp_ms.isdigit():
        raise SignatureError("malformed X-HubSpot-Request-Timestamp header")
    _fresh(int(timestamp_ms) / 1000, now, tolerance)
    message = method.upper().encode() + uri.encode() + body + timestamp_ms.encode()
    expected = [
        base64.b64encode(hmac.new(s.encode(), message, hashlib.sha256).digest()).decode() for s in secrets
    ]
    if not _any_equal(expected, [signature]):
        raise SignatureError("signature does not match")


def verify_hubspot_legacy(
    version: str, method: str, uri: str, body: bytes, signature: str | None, secrets: Sequence[str]
) -> None:
    """Older apps: v1 = hex(SHA256(secret + body)); v2 = hex(SHA256(secret + method + uri + body)).

    Neither carries a timestamp, so a captured delivery verifies forever: the intake calls this only with
    ENNU_WEBHOOK_HUBSPOT_LEGACY_SIGNATURES on.
    """
    if not signature:
        raise SignatureError("missing X-HubSpot-Signature header")
    if version == "v1":
        sources = [s.encode() + body for s in secrets]
    elif version == "v2":
        sources = [s.encode() + method.upper().encode() + uri.encode() + body for s in secrets]
    else:
        raise SignatureError("unsupported X-HubSpot-Signature-Version")
    if not _any_equal([hashlib.sha256(src).hexdigest() for src in sources], [signature]):
        raise SignatureError("signature does not match")


def _sorted_params(params: Mapping[str, str] | Sequence[tuple[str, str]]) -> str:
    pairs = list(params.items()) if isinstance(params, Mapping) else list(params)
    return "".join(k + v for k, v in sorted(pairs))


def verify_twilio(
    url: str,
    params: Mapping[str, str] | Sequence[tuple[str, str]],
    signature: str | None,
    tokens: Sequence[str],
) -> None:
    """`X-Twilio-Signature` = base64(HMAC-SHA1(auth token, full URL + POST params sorted by name))."""
    if not signature:
        raise SignatureError("missing X-Twilio-Signature header")
    message = (url + _sorted_params(params)).encode()
    expected = [
        base64.b64encode(hmac.new(t.encode(), message, hashlib.sha1).digest()).decode() for t in tokens
    ]
    if not _any_equal(expected, [signature]):
        raise SignatureError("signature does not match")


def verify_mandrill(
    url: str,
    params: Mapping[str, str] | Sequence[tuple[str, str]],
    signature: str | None,
    keys: Sequence[str],
) -> None:
    """`X-Mandrill-Signature` = base64(HMAC-SHA1(key, configured URL + POST keys and values, sorted))."""
    if not signature:
        raise SignatureError("missing X-Mandrill-Signature header")
    message = (url + _sorted_params(params)).encode()
    expected = [base64.b64encode(hmac.new(k.encode(), message, hashlib.sha1).digest()).decode() for k in keys]
    if not _any_equal(expected, [signature]):
        raise SignatureError("signature does not match")


def verify_slack(
    body: bytes,
    signature: str | None,
    timestamp: str | None,
    secrets: Sequence[str],
    *,
    now: float | None = None,
    tolerance: float | None = None,
) -> None:
    """`X-Slack-Signature: v0=hex(HMAC-SHA256(secret, "v0:{timestamp}:{body}"))`."""
    if not signature or not timestamp or not timestamp.isdigit():
        raise SignatureError("missing or malformed X-Slack-Signature / X-Slack-Request-Timestamp header")
    _fresh(float(timestamp), now, tolerance)
    message = b"v0:" + timestamp.encode() + b":" + body
    expected = ["v0=" + hmac.new(s.encode(), message, hashlib.sha256).hexdigest() for s in secrets]
    if not _any_equal(expected, [signature]):
        raise SignatureError("signature does not match")


def verify_url_secret(given: str | None, secrets: Sequence[str]) -> None:
    """Mailchimp audience webhooks and Zapier catch hooks are unsigned: the secret is part of the URL."""
    if not given or not _any_equal(secrets, [given]):
        raise SignatureError("unknown webhook secret")
