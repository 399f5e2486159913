"""Twilio's answers (`{code, message, more_info, status}`, the code an integer; Twilio's error dictionary).

- 429 / code 20429 "too many concurrent requests": slow down (the code says it whatever the status).
- 401 / 20003: the credentials are refused (HTTP's default: AUTH).
- 400 to a message or call create is that one record's refusal: 21211 invalid 'To', 21610 unsubscribed
  recipient, 21614 not a mobile number, ... (each create carries one record: "send").
- Canceling a scheduled message (`Status=canceled`) answers 400 / 30409 once it is past canceling (sent, or
  canceled already) and 404 when it is gone ("cancel": both mean there is nothing left to cancel).
- A delete answers 404 for a record that is gone already, 409 / 20009 for one still on its way ("delete").
"""

from __future__ import annotations

from connectors.errors import Action, ErrorTable

TABLE = ErrorTable(
    codes={"20429": Action.RATE_LIMITED},
    expected={
        "send": frozenset({400}),  # one message or call refused: its code becomes the record's error
        "cancel": frozenset({400, 404}),  # 30409 past canceling, 404 gone: nothing left to cancel
        "delete": frozenset({404, 409}),  # 404 gone already; 409 (20009) still on its way, deleted later
    },
)
