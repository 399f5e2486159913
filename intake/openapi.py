"""Hints for the OpenAPI document that the types alone do not give."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any


def allowed_values(values: Iterable[str]) -> dict[str, Any]:
    """`json_schema_extra` listing the known values of a string, so clients (and fuzzers) can see them.

    Only documentation: the handler still checks and answers an unknown value with its documented refusal.
    """
    return {"enum": sorted(values)}
