"""`drain`: an operator's "retry everything now": every open delivery, made due and carried in batches.

The delivery workers already pick up every due delivery within a second; the drain is for after a fix
(a vendor back, a credential set): it routes unrouted events, pulls deferred deliveries forward to now,
and carries the open ones through their event type's flow in this run, most urgent first.
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from sqlalchemy import update

from ennu import deliveries
from ennu.audit import audited_run
from ennu.db import session_scope
from ennu.models import OPEN_DELIVERY, Delivery, utcnow
from ennu.settings import get_settings
from flows.registry import EVENT_FLOWS
from tasks.admit import admit
from tasks.run_state import raise_unless_recorded


def make_due_now() -> int:
    """Deferred (and ambiguous) deliveries become due now; those leased by a live worker stay its own."""
    now = utcnow()
    with session_scope() as session:
        result = session.execute(
            update(Delivery)
            .where(Delivery.status.in_([s.value for s in OPEN_DELIVERY]), Delivery.not_before > now)
            .values(not_before=now)
            .execution_options(synchronize_session=False)
        )
        return int(getattr(result, "rowcount", 0) or 0)


@flow(name="drain", log_prints=False)
def drain(batch_size: int | None = None, max_events: int = 100_000) -> dict[str, int]:
    """Carry every open delivery now, `batch_size` events per subflow run of their type's flow.

    Args:
        batch_size: events per flow run (default ENNU_DRAIN_BATCH_SIZE, 50).
        max_events: at most this many events in one drain run.
    """
    # Started by hand from the Prefect UI (an operator's "retry everything now"): audited; the schedule's
    # runs are not (ennu/audit.py).
    with audited_run("drain", None):
        logger = get_run_logger()
        size = batch_size or get_settings().drain_batch_size
        while admit():
            pass
        pulled = make_due_now()
        owner = deliveries.current_owner()
        processed: dict[str, int] = {}
        total = 0
        while total < max_events:
            claim = deliveries.claim(owner, min(size, max_events - total))
            if claim is None:
                break
            event_flow = EVENT_FLOWS.get(claim.event_type)
            if event_flow is None:
                logger.warning(
                    "%d %s events wait for a flow that does not exist", len(claim.event_ids), claim.event_type
                )
                deliveries.release(owner, claim.event_ids)
                break
            raise_unless_recorded(event_flow(event_ids=claim.event_ids, return_state=True))
            processed[claim.event_type] = processed.get(claim.event_type, 0) + len(claim.event_ids)
            total += len(claim.event_ids)
        logger.info("drained %s (%d deferred deliveries pulled forward)", processed, pulled)
        return processed
