"""`GET /integrations/charts/{integration}.png`: the dashboard's picture of one integration, drawn now.

The link is signed (`ennu.charts.chart_link`, good for a day) so that the Prefect UI can show it as an
image; a viewer token works too. Aggregates only: records, error rate and latency per day.
"""

from __future__ import annotations

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from ennu.charts import chart_png, link_is_valid
from ennu.performance import figures
from intake.audit import AUDIT_RESPONSES, open_for
from intake.auth import GRANTS, Principal, Role, bearer, principal_of, refuse_credentials
from intake.errors import error_responses
from intake.integrations import IntegrationPath, known

router = APIRouter(prefix="/integrations", tags=["integrations"])
# Who reads a chart through a signed link (the dashboard in the Prefect UI) is not known: the link is.
SIGNED_LINK = Principal(Role.VIEWER, "signed-link")


@router.get(
    "/charts/{integration}.png",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}}, "description": "7 days of volume, error rate and latency"},
        **AUDIT_RESPONSES,
        **error_responses(401, 404, 422, e404="Unknown integration."),
    },
)
async def chart(
    integration: IntegrationPath,
    request: Request,
    expires: int | None = Query(default=None, ge=0, le=2**40),
    sig: str | None = Query(default=None, max_length=64, pattern=r"^[0-9a-f]+$"),
) -> Response:
    """One integration's PNG chart; a signed link from the dashboard artifact, or a viewer's token."""
    known(integration)
    signed = expires is not None and sig is not None and link_is_valid(integration, expires, sig)
    if signed:
        principal = SIGNED_LINK
    else:
        credentials = await bearer(request)
        found = principal_of(credentials.credentials) if credentials else None
        if found is None or Role.VIEWER not in GRANTS[found.role]:
            guessed = found is None and (credentials is not None or sig is not None)
            raise refuse_credentials(request, guessed, "a valid signed link or a viewer token is needed", {})
        principal = found
    # Only the path's integration: the link's expiry and signature are not the target.
    await open_for(request, principal, target=f"integration={integration}")
    # Off the event loop: reading the figures and drawing would hold every other request (POST /events).
    png = await run_in_threadpool(lambda: chart_png(figures([integration])[integration]))
    return Response(png, media_type="image/png", headers={"Cache-Control": "private, max-age=60"})
