"""What a subscribed hook answers (Zapier REST hooks; a catch hook answers success to anything).

- 410 Gone: the Zap was turned off or deleted: the subscription is removed ("per hook").
- Any other 4xx is that hook's refusal of that record ("per hook": the record fails, the other hooks
  still get it). A hook's 401 or 403 is the hook's own answer, not a refusal of our credentials (we
  have none: the URL is the hook's), so it never stops the destination.
- 408, 425, 429 (with Retry-After) and 5xx: try later (HTTP's defaults).
"""

from __future__ import annotations

from connectors.errors import HTTP_DEFAULTS, RETRYING, Action, ErrorTable

GONE = 410

_PER_HOOK = frozenset(s for s in range(400, 500) if HTTP_DEFAULTS.get(s) not in RETRYING)

TABLE = ErrorTable(
    statuses={401: Action.BATCH, 403: Action.BATCH},
    expected={"per hook": _PER_HOOK},
)
