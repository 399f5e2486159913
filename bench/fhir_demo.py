"""What the FHIR stand-in holds after every demo biomarker went through `biomarker-updated`, then corrections.

  .venv/bin/python -m bench.fhir_demo [--people 500] [--batch 250] [--bundle PATH]

Demo people (synthetic) and every one of their biomarker results are announced as `biomarker.updated`
events and run through the real flow in batches, against its own SQLite database, sandbox and Prefect test
harness. Then three results are corrected and announced again in one batch: a systolic pressure (now
critical), a glucose (normal to high) and one more glucose (now critically low). Prints one JSON object:
Observations held by code and status, interpretation flags (of Observations and of panel components),
values held as `N.0`, the latest sync-log outcome per record and destination; and writes the transaction
Bundle(s) of the correction batch to `--bundle` (values are synthetic demo data).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench.harness import bench_environment, workspace

bench_environment()  # before Prefect is imported

from sqlalchemy import func, select, update  # noqa: E402

from bench.seed import demo_people, events_for  # noqa: E402
from ennu.db import session_scope  # noqa: E402
from ennu.events import HostEvent  # noqa: E402
from ennu.models import Biomarker, SyncLog  # noqa: E402
from flows.biomarker_updated import biomarker_updated  # noqa: E402
from tasks.ingest import ingest  # noqa: E402

PANEL = "85354-9"


def corrections() -> list[str]:
    """Correct three results in the host and announce them again: one batch of events."""
    changes: list[tuple[str, float]] = [("blood_pressure_systolic", 186), ("glucose", 131), ("glucose", 35)]
    events = []
    with session_scope() as session:
        taken: set[int] = set()
        for name, value in changes:
            row = session.execute(
                select(Biomarker)
                .where(Biomarker.name == name, Biomarker.unit != "mmol/L", Biomarker.id.not_in(taken or {0}))
                .order_by(Biomarker.id)
                .limit(1)
            ).scalar_one()
            taken.add(row.id)
            session.execute(update(Biomarker).where(Biomarker.id == row.id).values(value=value))
            events.append((row.user_id, row.id))
    return [
        ingest(
            HostEvent(
                id=f"correction-{biomarker}",
                type="biomarker.updated",
                occurred_at=datetime.now(UTC),
                subject=user,
                resource=str(biomarker),
            ),
            emit=False,
        ).event_id
        for user, biomarker in events
    ]


def flags_of(element: dict[str, Any]) -> list[str]:
    return [c["code"] for i in element.get("interpretation") or [] for c in i.get("coding") or []]


def trailing_zero_values(observations: list[dict[str, Any]]) -> tuple[int, int, int]:
    """(values held as `N.0`, of them reported without decimals, values held). JSON keeps 76 and 76.0
    apart, and so does the stand-in; `N.0` is right only where the lab reported one decimal (hba1c 5.0)."""
    with session_scope() as session:
        reported = {i: d for i, d in session.execute(select(Biomarker.id, Biomarker.value_decimals)).all()}
    zero = wrong = total = 0
    for resource in observations:
        ids = [int(i) for i in resource["identifier"][0]["value"].removeprefix("biomarker-").split("-")]
        elements = resource.get("component") or [resource]
        for biomarker_id, element in zip(ids, elements, strict=False):
            value = (element.get("valueQuantity") or {}).get("value")
            if value is None:
                continue
            total += 1
            if isinstance(value, float) and value.is_integer():
                zero += 1
                wrong += not reported.get(biomarker_id)
    return zero, wrong, total


def summary(observations: list[dict[str, Any]]) -> dict[str, Any]:
    codes = Counter(o["code"]["coding"][0]["code"] for o in observations)
    zero, wrong, total = trailing_zero_values(observations)
    with session_scope() as session:
        latest = select(func.max(SyncLog.id)).group_by(SyncLog.connector, SyncLog.record_key)
        outcomes = session.execute(
            select(SyncLog.connector, SyncLog.status, func.count())
            .where(SyncLog.id.in_(latest))
            .group_by(SyncLog.connector, SyncLog.status)
        ).all()
    per_destination: dict[str, dict[str, int]] = {}
    for connector, status, count in outcomes:
        per_destination.setdefault(connector, {})[status] = int(count)
    with session_scope() as session:
        molar = session.execute(select(func.count()).where(Biomarker.unit == "mmol/L")).scalar_one()
    return {
        "observations": len(observations),
        "by_loinc": dict(sorted(codes.items())),
        "host_results_in_mmol_l": int(molar),  # sent converted to mg/dL
        "panels": codes[PANEL],
        "halves_alone": codes["8480-6"] + codes["8462-4"],
        "by_status": dict(Counter(o["status"] for o in observations)),
        "corrected": sum(o["status"] == "corrected" for o in observations),
        "flags_of_observations": dict(Counter(f for o in observations for f in flags_of(o))),
        "flags_of_components": dict(
            Counter(f for o in observations for c in o.get("component") or [] for f in flags_of(c))
        ),
        "unflagged_with_range": sum(1 for o in observations if o.get("referenceRange") and not flags_of(o)),
        "values_held": total,
        "values_held_as_n_point_0": zero,
        "of_them_reported_without_decimals": wrong,
        "latest_outcome_per_record": per_destination,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.fhir_demo", description=__doc__)
    parser.add_argument("--people", type=int, default=500)
    parser.add_argument("--batch", type=int, default=250, help="events per flow run")
    parser.add_argument("--bundle", type=Path, default=Path("fhir-demo-bundle.json"))
    args = parser.parse_args(argv)
    with workspace() as ws:
        demo_people(args.people)
        events = events_for("biomarker.updated", 10**9)
        for start in range(0, len(events), args.batch):
            biomarker_updated(event_ids=events[start : start + args.batch])
        before = len([b for b in ws.sandbox.bodies("fhir") if b["path"] == "/fhir/r4"])
        biomarker_updated(event_ids=corrections())
        bundles = [b["body"] for b in ws.sandbox.bodies("fhir") if b["path"] == "/fhir/r4"]
        args.bundle.write_text(json.dumps(bundles[before:], indent=2))
        figures = summary(ws.sandbox.objects("fhir", "Observation"))
        print(json.dumps({"people": args.people, "events": len(events), **figures}, indent=2))


if __name__ == "__main__":
    main()
