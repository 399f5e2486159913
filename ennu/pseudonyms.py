"""Keyed pseudonyms: HMAC-SHA256 under a secret pepper for every id derived from a person for a vendor.

A plain hash of a host id can be reversed by hashing every id; a keyed one cannot without the pepper. The
pepper comes from ENNU_PSEUDONYM_PEPPER; only while the sandbox is local does a published development pepper
stand in. Rotating it gives everyone new pseudonyms (see the README); ENNU_PSEUDONYM_PEPPER_PREVIOUS keeps
erasures reaching the ids made under the old one.
"""

from __future__ import annotations

import hashlib
import hmac

from ennu.settings import get_settings, is_loopback_url

DEVELOPMENT_PEPPER = "ennu-development-pepper-not-a-secret"  # published: local sandbox only


class PepperMissing(RuntimeError):
    """No ENNU_PSEUDONYM_PEPPER outside a local sandbox: pseudonyms would be guessable."""


def current_pepper() -> str:
    settings = get_settings()
    if settings.pseudonym_pepper is not None and settings.pseudonym_pepper.get_secret_value():
        return settings.pseudonym_pepper.get_secret_value()
    if is_loopback_url(settings.sandbox_url):
        return DEVELOPMENT_PEPPER
    raise PepperMissing("ENNU_PSEUDONYM_PEPPER is not set (required unless the sandbox is local)")


def peppers() -> list[str]:
    """The current pepper, then the previous one when a rotation is under way."""
    previous = get_settings().pseudonym_pepper_previous
    older = previous.get_secret_value() if previous is not None else ""
    return [current_pepper(), *([older] if older else [])]


def pseudonym(value: str, pepper: str | None = None) -> str:
    """The keyed pseudonym of `value`: 64 hex characters, stable under one pepper."""
    key = (pepper if pepper is not None else current_pepper()).encode()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()


def person_pseudonym(user_id: int, pepper: str | None = None) -> str:
    """The pseudonymous id of a host person (what GA4 knows them by, what a Zapier erasure notice names)."""
    return pseudonym(str(user_id), pepper)
