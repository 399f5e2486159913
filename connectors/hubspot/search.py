"""Recently modified HubSpot objects through the CRM search API, past its 10,000-results-a-query cap.

HubSpot's search answers at most 10,000 results for one query (paging beyond answers 400), so a long
backlog is read as a chain of queries: when a query's offset reaches the cap, the next query starts at the
last modification time seen (GTE, with the ids already read at that instant skipped). The search API has
its own limit of 5 requests a second per account, besides the app's burst limit; the connector's shared
rate limit spaces these requests with the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from connectors.http import VendorHttp

SEARCH_RESULT_CAP = 10_000  # HubSpot: results one search query can page through
SEARCH_PAGE_LIMIT = 200  # HubSpot: the largest `limit` a search request takes


def epoch_ms(when: datetime) -> int:
    if when.tzinfo is None:
        raise ValueError("an aware datetime is needed (HubSpot compares UTC instants)")
    return int(when.timestamp() * 1000)


def parse_hubspot_time(value: str) -> datetime:
    """HubSpot's ISO instants ("2024-05-01T12:00:00.123Z") or epoch milliseconds, as aware UTC."""
    if value.isdigit():
        return datetime.fromtimestamp(int(value) / 1000, UTC)
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


def search_modified(
    http: VendorHttp,
    object_type: str,
    modified_property: str,
    since: datetime,
    properties: Sequence[str],
    *,
    page_limit: int = SEARCH_PAGE_LIMIT,
    result_cap: int = SEARCH_RESULT_CAP,
) -> list[dict[str, Any]]:
    """Objects with `modified_property` > `since`, oldest first, every page of every query followed."""
    wanted = list(dict.fromkeys([*properties, modified_property]))
    found: list[dict[str, Any]] = []
    operator, start = "GT", epoch_ms(since)
    seen_at_start: set[str] = set()  # ids already read whose modification time is `start`
    while True:
        last_ms: int | None = None
        seen_at_last: set[str] = set()
        after: str | None = None
        progressed = False
        while True:
            body: dict[str, Any] = {
                "filterGroups": [
                    {
                        "filters": [
                            {"propertyName": modified_property, "operator": operator, "value": str(start)}
                        ]
                    }
                ],
                "sorts": [{"propertyName": modified_property, "direction": "ASCENDING"}],
                "properties": wanted,
                "limit": page_limit,
            }
            if after is not None:
                body["after"] = after
            page = http.request("POST", f"/crm/v3/objects/{object_type}/search", json=body).json()
            for result in page.get("results", []):
                object_id = str(result.get("id"))
                modified = result.get("properties", {}).get(modified_property) or result.get("updatedAt")
                modified_ms = epoch_ms(parse_hubspot_time(str(modified)))
                if operator == "GTE" and modified_ms == start and object_id in seen_at_start:
                    continue
                progressed = True
                found.append(result)
                if modified_ms != last_ms:
                    last_ms, seen_at_last = modified_ms, set()
                seen_at_last.add(object_id)
            after = ((page.get("paging") or {}).get("next") or {}).get("after")
            if after is None:
                return found
            if int(after) >= result_cap:
                break  # the next page is past the cap: start a new query at the last instant seen
        if last_ms is None or not progressed:
            raise RuntimeError(
                f"hubspot search: more than {result_cap} {object_type} modified at one instant"
            )
        if operator == "GTE" and last_ms == start:
            seen_at_last |= seen_at_start
        operator, start, seen_at_start = "GTE", last_ms, seen_at_last
