"""The fault suite: every scenario against an isolated system, counted at the vendors' stand-ins.

Starts its own system (bench/system.py: hub database and Prefect server on PostgreSQL, sandbox, intake
API, two delivery workers), runs the scenarios one after another and prints one row per scenario and
destination:

  expected    people the destination should hold a record (or a message) for
  delivered   of them, how many it holds
  duplicated  extra copies: a record created more than once for one person, a message or event
              sent more than once for one event
  lost        expected but absent when the scenario's ceiling passed, and not visibly failed
  failed      expected but absent, its delivery a visible dead letter with its reason (in the status,
              re-playable): a destination without a look-up errs this way for a send its worker was
              killed with in flight (it is never sent twice); not lost, but shown
  stray       objects nobody asked for (or requests to a stand-in nothing was asked of)
  recovery_s  from the scenario's reference moment (the kill, the heal, Prefect's return; the first
              post when there is no trouble) to the last expected record at the stand-in; negative:
              done before the trouble ended
  log≠        people whose sync log disagrees with the stand-in

and the load average (1, 5, 15 min) at each scenario's start and end. Exit code 0 when every row has
lost = 0, duplicated = 0 and stray = 0.

    .venv/bin/python -m bench.faults --quick
    .venv/bin/python -m bench.faults --scenarios a,b --json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict

from bench import hub
from bench.fault_scenarios import QUICK, SCENARIOS, Run, Scenario, Sizes, run_scenario
from bench.system import Options, load, running_system
from bench.tally import Row, observe, rows_for, visibly_failed

COLUMNS = (
    "scenario",
    "destination",
    "expected",
    "delivered",
    "duplicated",
    "lost",
    "failed",
    "stray",
    "recovery_s",
    "log≠",
    "load",
)
WIDTHS = (15, 22, 8, 9, 10, 5, 6, 5, 10, 4, 12)


def chosen(text: str | None) -> list[Scenario]:
    if not text:
        return list(SCENARIOS)
    wanted = [w.strip() for w in text.split(",") if w.strip()]
    picked = [s for s in SCENARIOS if any(s.key == w or s.key.split("-", 1)[0] == w for w in wanted)]
    unknown = [w for w in wanted if not any(s.key == w or s.key.split("-", 1)[0] == w for s in SCENARIOS)]
    if unknown:
        raise SystemExit(f"unknown scenarios {unknown}; known: {', '.join(s.key for s in SCENARIOS)}")
    return picked


def cells(row: Row, run: Run) -> list[str]:
    recovery = "-" if row.recovery_s is None else f"{row.recovery_s:.1f}"
    mismatch = "-" if row.log_mismatch is None else str(row.log_mismatch)
    loads = f"{run.load_start[0]:.1f}→{(run.load_end or load())[0]:.1f}"
    return [
        row.scenario,
        row.destination,
        str(row.expected),
        str(row.delivered),
        str(row.duplicated),
        str(row.lost),
        str(row.failed),
        str(row.stray),
        recovery,
        mismatch,
        loads,
    ]


def line(values: list[str] | tuple[str, ...]) -> str:
    return "  ".join(
        str(v).ljust(w) if i < 2 else str(v).rjust(w)
        for i, (v, w) in enumerate(zip(values, WIDTHS, strict=True))
    ).rstrip()


def as_json(row: Row, run: Run) -> str:
    body = asdict(row)
    body.update(
        title=run.title,
        reference=run.reference_label,
        load_start=run.load_start,
        load_end=run.load_end,
        ok=row.ok,
    )
    return json.dumps(body)


def recount(judged: list[tuple[Run, list[Row]]]) -> list[str]:
    """At the end of the suite, count every scenario again: what arrived after its ceiling, or twice later."""
    changes = []
    for run, rows in judged:
        again = {
            r.destination: r
            for r in rows_for(
                run.key,
                run.expected,
                observe(run.system.sandbox, run.index),
                {},
                {},
                {},
                run.index.events_per_person(),
                visibly_failed(hub.failed(run.event_ids), run.index),
            )
        }
        for row in rows:
            now = again.get(row.destination)
            if now is None:
                continue
            if now.duplicated > row.duplicated or now.stray > row.stray:
                changes.append(
                    f"{run.key} {row.destination}: {now.duplicated - row.duplicated} more duplicated, "
                    f"{now.stray - row.stray} more stray by the end of the suite"
                )
            if now.lost < row.lost:
                changes.append(
                    f"{run.key} {row.destination}: {row.lost - now.lost} of the lost arrived after "
                    "the ceiling"
                )
    return changes or ["recount at the end of the suite: no scenario changed after it was judged"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.faults",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--scenarios", help="comma-separated keys or letters (default: all), e.g. a,b,e")
    parser.add_argument("--quick", action="store_true", help="small sizes (the trouble lasts as long)")
    parser.add_argument("--json", action="store_true", help="JSON lines instead of the table")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--database",
        choices=("postgresql", "sqlite"),
        default="postgresql",
        help="the hub database (the Prefect server runs on PostgreSQL either way)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the run's directory and logs")
    args = parser.parse_args(argv)
    scenarios = chosen(args.scenarios)
    sizes: Sizes = QUICK if args.quick else Sizes()
    started, first_load = time.monotonic(), load()
    print(f"# load average at start: {first_load}", file=sys.stderr, flush=True)
    failed = 0
    options = Options(workers=args.workers, database=args.database, keep=args.keep)
    with running_system(options) as system:
        if not args.json:
            print(line(COLUMNS), flush=True)
        notes: list[str] = []
        judged: list[tuple[Run, list[Row]]] = []
        for scenario in scenarios:
            print(f"# {scenario.key}: {scenario.title} …", file=sys.stderr, flush=True)
            run, rows = run_scenario(system, scenario, sizes)
            judged.append((run, rows))
            failed += sum(1 for r in rows if not r.ok)
            for row in rows:
                print(as_json(row, run) if args.json else line(cells(row, run)), flush=True)
            notes += [f"{scenario.key} ({run.reference_label}): {n}" for n in run.notes]
            if args.json:
                print(json.dumps({"scenario": run.key, "notes": run.notes}), flush=True)
            for note in run.notes:
                print(f"#   {note}", file=sys.stderr, flush=True)
        late = recount(judged)
        failed += sum(1 for n in late if "more" in n)
        notes += late
        if args.json:
            print(json.dumps({"recount": late}), flush=True)
        else:
            print("\n" + "\n".join(notes), flush=True)
    summary = (
        f"{len(scenarios)} scenarios in {time.monotonic() - started:.0f} s; rows not ok: {failed}; "
        f"load average {first_load} → {load()}"
    )
    print(f"# {summary}", file=sys.stderr if args.json else sys.stdout, flush=True)
    return 0 if failed == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
