"""Epic FHIR R4's answers (what HTTP's defaults do not already say), and its SMART token endpoint's.

FHIR refuses a resource with an OperationOutcome (`issue[].code`, an IssueType). A write's refusal is per
resource: a transaction's or a single write's 400/404/409/410/412/422 is read by the connector and fails
(or, for a transient issue type, defers) the Observations or the Patient it names, never the whole batch.
A 401 means the bearer token expired or was revoked: `smart_auth.SmartBackendAuth` fetches a new one and
sends the request once more; a second 401 (and any 403) is an auth failure for an operator.
"""

from __future__ import annotations

from typing import Any

from connectors.errors import Action, ErrorTable

# IssueTypes under `transient` (http://hl7.org/fhir/valueset-issue-type.html): the same request may
# succeed later. Read from the OperationOutcome of a refusal (`issue_code`, the table's code reader).
TRANSIENT = {
    "transient": Action.RETRY,
    "lock-error": Action.RETRY,
    "no-store": Action.RETRY,
    "exception": Action.RETRY,
    "timeout": Action.RETRY,
    "incomplete": Action.RETRY,
    "throttled": Action.RATE_LIMITED,
}


def issue_code(body: Any) -> str | None:
    """The code of the first error or fatal issue of an OperationOutcome (never its diagnostics)."""
    if not isinstance(body, dict) or body.get("resourceType") != "OperationOutcome":
        return None
    issues = [i for i in body.get("issue") or [] if isinstance(i, dict)]
    serious = [i for i in issues if i.get("severity") in ("error", "fatal")] or issues
    code = serious[0].get("code") if serious else None
    return str(code) if code else None


TABLE = ErrorTable(
    codes=TRANSIENT,
    code_reader=issue_code,
    expected={
        # Refusals of a write (transaction, create, conditional update, Patient create), per resource:
        # 400 structure, 404 not-found, 409 conflict, 410 gone, 412 several matches, 422 invariant/rules.
        "refused": frozenset({400, 404, 409, 410, 412, 422}),
    },
)

# The token endpoint (RFC 6749 §5.2): a 400 (invalid_client, invalid_grant, invalid_scope,
# unauthorized_client) or 401 refuses our registration, key or scopes: nothing goes until an operator
# fixes them. Its client is separate from the FHIR one, so that a refused key never reads as a FHIR 400.
TOKEN_TABLE = ErrorTable(statuses={400: Action.AUTH})
