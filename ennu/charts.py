"""The dashboard's pictures: one PNG per integration of its volume, error rate and latency over 7 days.

Rendered with matplotlib's Agg backend (no display, thread-safe per figure object); counts and
milliseconds only. A picture is drawn again only when what it shows changed (`chart_png`): drawing costs
a quarter of a CPU-second, and a dashboard, or anyone with a viewer token, may ask for it often. Chart
links are signed (HMAC, a day) because an image in the Prefect UI cannot send a bearer token.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import math
import threading
import time
from urllib.parse import urlencode

from matplotlib.figure import Figure

from ennu.performance import Figures
from ennu.settings import DEVELOPMENT_CHART_LINK_KEY, get_settings

LINK_SECONDS = 24 * 3600
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _or_nan(value: float | None, scale: float = 1.0) -> float:
    return math.nan if value is None else value * scale


_drawn: dict[str, tuple[tuple[object, ...], bytes]] = {}  # integration -> (what it shows, the PNG)
_drawn_lock = threading.Lock()


def chart_png(fig: Figures) -> bytes:
    """The integration's chart, drawn again only when its days or the alert threshold changed."""
    shown = (tuple(fig.days), get_settings().alert_error_rate)
    with _drawn_lock:
        kept = _drawn.get(fig.integration)
    if kept is not None and kept[0] == shown:
        return kept[1]
    png = render_chart(fig)
    with _drawn_lock:
        _drawn[fig.integration] = (shown, png)
    return png


def render_chart(fig: Figures) -> bytes:
    """Three stacked panels: records a day, error rate a day, p50 and p95 latency a day."""
    days = [d.day.strftime("%a %d") for d in fig.days]
    figure = Figure(figsize=(7, 5.2), dpi=100)  # not pyplot: no global state, safe in a server thread
    volume, errors, latency = figure.subplots(3, 1, sharex=True)
    volume.bar(days, [d.records for d in fig.days], color="#4477aa")
    volume.set_ylabel("records")
    volume.set_title(f"{fig.integration}: last 7 days (UTC)", loc="left", fontsize=11)
    # A day without records has no rate and no latency: a gap in the line, not a zero.
    errors.plot(days, [_or_nan(d.error_rate, 100) for d in fig.days], marker="o", color="#cc3311")
    errors.axhline(100 * get_settings().alert_error_rate, color="#999999", linestyle="--", linewidth=1)
    errors.set_ylabel("error rate %")
    errors.set_ylim(bottom=0)
    latency.plot(days, [_or_nan(d.p50_ms) for d in fig.days], marker="o", label="p50", color="#228833")
    latency.plot(days, [_or_nan(d.p95_ms) for d in fig.days], marker="o", label="p95", color="#ccbb44")
    latency.set_ylabel("latency ms")
    latency.set_ylim(bottom=0)
    latency.legend(loc="upper left", fontsize=8)
    for axes in (volume, errors, latency):
        axes.grid(axis="y", alpha=0.3)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png")
    return out.getvalue()


def _signature(integration: str, expires: int) -> str:
    settings = get_settings()
    key = settings.required(
        settings.chart_link_key, "ENNU_CHART_LINK_KEY", DEVELOPMENT_CHART_LINK_KEY
    ).encode()
    return hmac.new(key, f"{integration}:{expires}".encode(), hashlib.sha256).hexdigest()


def chart_link(integration: str, now: float | None = None) -> str:
    """The intake's URL of an integration's chart, signed for a day."""
    expires = int((now or time.time()) + LINK_SECONDS)
    query = urlencode({"expires": expires, "sig": _signature(integration, expires)})
    base = get_settings().intake_public_url.rstrip("/")
    return f"{base}/integrations/charts/{integration}.png?{query}"


def link_is_valid(integration: str, expires: int, sig: str, now: float | None = None) -> bool:
    if expires < (now or time.time()):
        return False
    return hmac.compare_digest(_signature(integration, expires), sig)
