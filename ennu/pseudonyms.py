"""Keyed pseudonyms: HMAC-SHA256 under a secret pepper for every id derived from a person for a vendor.

A plain hash of a host id can be reversed by hashing every id; a keyed one cannot without the pepper. The
pepper comes from ENNU_PSEUDONYM_PEPPER; only in local mode (ENNU_ENV=local) does a published development
pepper stand in. Rotating it gives everyone new pseudonyms (see the README); ENNU_PSEUDONYM_PEPPER_PREVIOUS
keeps erasures reaching the ids made under the old one.
"""

from __future__ import annotations

import hashlib
import hmac

from ennu.settings import SecretMissing, get_settings

DEVELOPMENT_PEPPER = "ennu-development-pepper-not-a-secret"  # published: local mode only


class PepperMissing(SecretMissing):
    """No ENNU_PSEUDONYM_PEPPER in production: pseudonyms would be guessable."""


def current_pepper() -> str:
    settings = get_settings()
    try:
        return settings.required(settings.pseudonym_pepper, "ENNU_PSEUDONYM_PEPPER", DEVELOPMENT_PEPPER)
    except SecretMissing:
        raise PepperMissing("ENNU_PSEUDONYM_PEPPER") from None


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
