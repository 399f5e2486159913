"""Mailchimp's answers: `application/problem+json` `{type, title, status, detail, instance}`.

HTTP's defaults say it: 401 "API Key Invalid" and 403 "Forbidden" (a disabled key, a role without access)
wait for an operator; 429 "Too Many Requests" (more than 10 connections at once) slows down; 5xx is tried
again; 400 "Invalid Resource" and 404 "Resource Not Found" refuse the request. A batch subscribe answers 200
with each refused member in `errors[]`. The calls about one member read their own refusals (below).
"""

from __future__ import annotations

from connectors.errors import ErrorTable


def problem_title(body: object) -> str | None:
    """The problem's `title` ("Member Exists", "Invalid Resource"): its `type` is a docs URL, the same
    for many problems, and `detail` may quote the request (an address)."""
    title = body.get("title") if isinstance(body, dict) else None
    return str(title) if isinstance(title, str) and title else None


TABLE = ErrorTable(
    code_reader=problem_title,
    expected={
        # An archive or permanent delete of a member who is not in the audience (any more).
        "gone": frozenset({404}),
        # A journey trigger refused for that person: 400, not subscribed to the journey's audience;
        # 404, no such journey or step (a configuration mistake, reported on every person's outcome).
        "journey": frozenset({400, 404}),
        # A member event refused for that person: 400 (an invalid event name), 404 (the member is not in
        # the audience, erased meanwhile).
        "event": frozenset({400, 404}),
        # A tag taken off many members (`POST .../segments/{tag id}`): 400 a refused body, 404 the tag
        # deleted since it was looked up.
        "tag segment": frozenset({400, 404}),
        # A segment or tag refused at creation (most often: created meanwhile by another worker).
        "segment": frozenset({400}),
        # A merge field created meanwhile by another worker ("A Merge Field with the tag ... already exists").
        "merge field": frozenset({400}),
    },
)
