"""Teams' webhook answers: a Workflows (Power Automate) trigger answers 202, a legacy connector 200.

- 400 a card the trigger or Teams refuses (`{"error": {"code": "InvalidRequestContent", ...}}`), 413 too
  large: this message is refused (HTTP's default for a 4xx).
- 401 / 403: the URL's signature is refused or the flow is off: the destination waits for an operator.
- 429 with Retry-After (the flow's throttling), 5xx: try later (the defaults).
HTTP's defaults say all of this; the table is declared so that Teams has one, like every vendor.
"""

from __future__ import annotations

from connectors.errors import ErrorTable

TABLE = ErrorTable()
