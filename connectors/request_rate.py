"""A vendor's published request limit, `190/10s` — at most 190 requests in any 10 seconds — as a setting.

Vendors state limits over a window (HubSpot 100 or 190 per 10 s, Stripe 100 a second, a Salesforce org
15,000 and up per rolling 24 hours). The global limit that enforces it (connectors/rate_limit.py) is a
token bucket: a burst, then a steady rate. A bucket holding the whole window's count and refilling at
count/window would allow nearly twice the limit in one window (a full burst, then a window's refill), so the
bucket holds a twentieth of it and refills at what is left over the window plus the moment a process may
hold a slot before it uses it (a quarter of the window, at most half a second): no window ever sees
more than the limit, and the bucket's rate is about 91 % of it (HubSpot 190/10s: 9 at once, then 17.3 a
second). Prefect decays a bucket by whole slots since its last take; a request is ten slots, so a stream
achieves nearly the bucket's rate (bench/vendor_pace.py measures it against the stand-in's window).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import BeforeValidator, PlainSerializer
from pydantic_settings import NoDecode

UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
PATTERN = re.compile(r"^\s*(\d+)\s*/\s*(\d*(?:\.\d+)?)\s*([smhd])\s*$")
BURST_SHARE = 20  # the bucket holds 1/20 of the window's count (at least one)


@dataclass(frozen=True)
class RequestRate:
    requests: int
    seconds: float

    def __str__(self) -> str:
        for unit in ("h", "m", "s"):
            count = self.seconds / UNITS[unit]
            if count >= 1 and count == int(count):
                return f"{self.requests}/{int(count)}{unit}"
        return f"{self.requests}/{self.seconds:g}s"

    @property
    def per_second(self) -> float:
        return self.requests / self.seconds

    def bucket(self, hold_seconds: float) -> tuple[int, float]:
        """(burst, slots a second) of a token bucket that never exceeds this limit in any window, for a
        client that may hold a slot up to `hold_seconds` before its request: burst + rate · (window + hold)
        stays below the limit plus one."""
        burst = max(1, self.requests // BURST_SHARE)
        rate = (self.requests - burst + 0.9) / (self.seconds + hold_seconds)
        return burst, rate


def parse_rate(value: Any) -> RequestRate:
    """`190/10s`, `100/s`, `15000/24h`, `6000/1h`, `10/1m`: requests per window (s, m, h or d)."""
    if isinstance(value, RequestRate):
        return value
    match = PATTERN.match(str(value))
    if match is None:
        raise ValueError("not a rate like 190/10s (requests / window in s, m, h or d)")
    requests, count, unit = int(match[1]), float(match[2] or 1), match[3]
    seconds = count * UNITS[unit]
    if requests < 1 or seconds <= 0 or not math.isfinite(seconds):
        raise ValueError("a rate needs at least one request over a window longer than zero")
    return RequestRate(requests, seconds)


# A setting's type: read as the text `190/10s` (NoDecode: not as JSON), serialised back the same way.
Rate = Annotated[RequestRate, NoDecode, BeforeValidator(parse_rate), PlainSerializer(str, return_type=str)]
