"""The basic e-mail shape the stand-ins accept, roughly as the vendors' own validators do."""

from __future__ import annotations

import re

_LOCAL = r"[^@\s\"(),:;<>\[\]\\]+"
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?"
EMAIL = re.compile(rf"^{_LOCAL}@(?:{_LABEL}\.)+[A-Za-z]{{2,}}$")


def looks_like_email(value: object) -> bool:
    return isinstance(value, str) and len(value) <= 254 and EMAIL.match(value) is not None
