"""HubSpot's answers (CRM v3 errors: `{category, correlationId, message, errors}`; a 429's `errorType`
RATE_LIMIT with a ten-second or daily `policyName`, which HTTP's defaults already classify)."""

from __future__ import annotations

from connectors.errors import Action, ErrorTable

TABLE = ErrorTable(
    statuses={
        207: Action.RECORD,  # batch upsert with some inputs refused: `errors[].context.ids` say which
    },
    expected={
        "upsert": frozenset({400}),  # read for PROPERTY_DOESNT_EXIST (a portal without our properties)
        "gone": frozenset({404}),  # a GDPR delete of a contact that is not there
        "property exists": frozenset({409}),  # a property or group created meanwhile by another worker
    },
)
