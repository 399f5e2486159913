"""`GET /integrations/erasures/{person}`: an operator's view of one erasure, destination by destination."""

from __future__ import annotations

from datetime import datetime

from fastapi import APIRouter, Depends, HTTPException, Path
from pydantic import BaseModel, Field

from ennu.erasure_report import erasure_report
from intake.audit import AUDIT_RESPONSES, AUDITED
from intake.auth import require_operator
from intake.errors import error_responses

router = APIRouter(prefix="/integrations", tags=["erasures"], dependencies=AUDITED, responses=AUDIT_RESPONSES)
ID_MAX = 2_147_483_647


class DestinationErasureOut(BaseModel):
    destination: str
    outcome: str = Field(description="erased, not held, retained, pending, failed, cancelled or skipped")
    state: str = Field(description="the erasure's delivery state at this destination")
    at: datetime | None = Field(description="when the latest outcome was recorded")
    reference: str | None = Field(description="the vendor's reference: a count or a request time, no ids")
    reason: str | None = Field(description="why it is pending, failed, skipped or retained (fixed wording)")
    outstanding: bool = Field(description="something of the person may still be at the destination")


class ErasureOut(BaseModel):
    person: int = Field(description="the host user id on the erasure list")
    erased_at: datetime
    request_event_id: str | None
    destinations: list[DestinationErasureOut]
    outstanding: list[str] = Field(description="destinations where the erasure is not finished")


@router.get(
    "/erasures/{person}",
    response_model=ErasureOut,
    dependencies=[Depends(require_operator)],
    responses=error_responses(401, 403, 404, 422, e404="The person is not on the erasure list."),
)
def erasure(person: int = Path(gt=0, le=ID_MAX, description="the host user id")) -> ErasureOut:
    """Each destination's erasure outcome, its time and vendor reference, and what is still outstanding."""
    report = erasure_report(person)
    if report is None:
        raise HTTPException(404, "not on the erasure list")
    return ErasureOut(
        person=report.person,
        erased_at=report.erased_at,
        request_event_id=report.request_event_id,
        destinations=[DestinationErasureOut(**vars(d)) for d in report.destinations],
        outstanding=report.outstanding,
    )
