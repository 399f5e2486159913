"""Reported precision of a result: its decimals, significant digits, and the JSON number that keeps them."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

MAX_DECIMALS = 6


def reported(value: float | int | Decimal, decimals: int | None = None) -> Decimal:
    """The value with the decimals the lab reported; unknown decimals are read off the stored number.

    A float keeps no trailing zeros, so 76.0 was reported as 76 and 5.55 as 5.55: the shortest repr of the
    stored number, with a trailing `.0` dropped, is what was reported when nothing better is known.
    """
    exact = value if isinstance(value, Decimal) else Decimal(repr(float(value)))
    if decimals is None:
        exponent = exact.normalize().as_tuple().exponent
        decimals = max(0, -exponent) if isinstance(exponent, int) else 0
    decimals = min(max(decimals, 0), MAX_DECIMALS)
    return exact.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_UP)


def decimals_of(value: Decimal) -> int:
    exponent = value.as_tuple().exponent
    return max(0, -exponent) if isinstance(exponent, int) else 0


def significant_digits(value: Decimal) -> int:
    """Digits that carry information: 5.55 → 3, 0.05 → 1, 100 → 3 (an integer's zeros are counted)."""
    digits = value.as_tuple().digits
    stripped = list(digits)
    while len(stripped) > 1 and stripped[0] == 0:
        stripped.pop(0)
    return max(1, len(stripped))


def round_significant(exact: Decimal, digits: int, max_decimals: int) -> Decimal:
    """`exact` to `digits` significant digits, and to no more than `max_decimals` decimals."""
    if exact == 0:
        return Decimal(0).quantize(Decimal(1).scaleb(-min(max_decimals, digits - 1)))
    exponent = max(exact.adjusted() - digits + 1, -max_decimals)
    rounded = exact.quantize(Decimal(1).scaleb(exponent), rounding=ROUND_HALF_UP)
    return rounded.quantize(Decimal(1)) if exponent > 0 else rounded


def json_number(value: Decimal) -> int | float:
    """The JSON number for a value: an int when it has no decimals (76, never 76.0), else its decimals.

    Python's JSON writes floats by their shortest repr, so 5.55 goes out as 5.55; a trailing zero the lab
    reported (5.50) cannot survive a float and goes out as 5.5.
    """
    return int(value) if decimals_of(value) == 0 else float(value)
