"""The test tiers: `e2e` tests start processes of their own (servers, workers, subprocesses); `flow` tests
run flows on the session's one Prefect test harness; the others are the fast tier
(`-m "not e2e and not flow"`): connectors against the sandbox, the intake in process, both databases.

A fixture that starts processes is declared with `@e2e_fixture`, and every test using it is marked `e2e`
at collection. A test that starts a process and is not marked fails, naming what it started: an audit hook
sees every `subprocess.Popen`, `os.system`, `os.posix_spawn` and fork, so the marker cannot be forgotten.
"""

from __future__ import annotations

import os
import sys
from collections import Counter
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import pytest

F = TypeVar("F", bound=Callable[..., Any])
E2E = "e2e"
E2E_FIXTURES: set[str] = set()
PROCESS_EVENTS = frozenset({"subprocess.Popen", "os.system", "os.posix_spawn", "os.fork", "os.forkpty"})
# What libraries run to learn about the machine (`platform.architecture()` at croniter's import,
# `ctypes.util.find_library`, Prefect's `to_deployment` reading the commit): probes, not parts of a test.
PROBES = frozenset({"file", "uname", "ldconfig", "gcc", "cc", "ld", "objdump", "git"})


def e2e_fixture(fixture_function: F) -> F:
    """Mark the (undecorated) fixture function as one that starts processes: its users are `e2e` tests."""
    E2E_FIXTURES.add(fixture_function.__name__)
    return fixture_function


class _ProcessWatch:
    """What the running test started; off outside a test's set-up, call and teardown."""

    def __init__(self) -> None:
        self.on = False
        self.shared_depth = 0
        self.started: list[str] = []

    def audit(self, event: str, args: tuple[Any, ...]) -> None:
        if event in PROCESS_EVENTS and self.on and not self.shared_depth and not _is_probe(event, args):
            self.started.append(_describe(event, args))

    def take(self) -> list[str]:
        started, self.started = self.started, []
        return started


def _is_probe(event: str, args: tuple[Any, ...]) -> bool:
    argv = args[1] if event == "subprocess.Popen" and len(args) >= 2 else None
    return isinstance(argv, list | tuple) and bool(argv) and os.path.basename(str(argv[0])) in PROBES


def _describe(event: str, args: tuple[Any, ...]) -> str:
    if event in ("subprocess.Popen", "os.posix_spawn") and len(args) >= 2:
        argv = args[1]
        if isinstance(argv, list | tuple):
            return " ".join(str(a) for a in argv)[:120]
        return str(argv)[:120]
    return event


WATCH = _ProcessWatch()
sys.addaudithook(WATCH.audit)


FLOW = "flow"
FLOW_FIXTURES = frozenset({"prefect_server"})  # the session's Prefect test harness


def mark_e2e_by_fixture(items: list[pytest.Item]) -> None:
    """`e2e`: the test uses a fixture that starts processes; else `flow`: it uses the Prefect harness."""
    for item in items:
        names = set(getattr(item, "fixturenames", ()))
        if names & E2E_FIXTURES and item.get_closest_marker(E2E) is None:
            item.add_marker(pytest.mark.e2e)
        if item.get_closest_marker(E2E) is None and names & FLOW_FIXTURES:
            item.add_marker(pytest.mark.flow)


def refuse_duplicate_ids(items: list[pytest.Item]) -> None:
    """Every collected test has its own id: pytest-xdist schedules by id, so tests sharing one run once.

    (pytest 9.2 with Schemathesis 4.32 gave the 19 operations of the OpenAPI fuzz test one id, and 18 of
    them never ran under `-n 2`, with nothing failed or skipped.)"""
    counts = Counter(item.nodeid for item in items)
    shared = {nodeid: n for nodeid, n in counts.items() if n > 1}
    if shared:
        named = "; ".join(f"{nodeid} ({n} tests)" for nodeid, n in sorted(shared.items()))
        raise pytest.UsageError(f"tests share an id, and pytest-xdist would run only one of each: {named}")


def slow_first(items: list[pytest.Item]) -> None:
    """Order `e2e` tests first, then `flow`, then the fast tier (each keeping its order), and keep a module's
    `e2e` tests on one pytest-xdist worker (`--dist loadgroup`, scripts/test.sh).

    The slowest tests (a minute and more each on a loaded machine) start while the other worker carries the
    rest instead of landing last on one worker; a module's e2e tests share its module-scoped server or
    served deployments, which a split across workers would start twice."""

    def tier(item: pytest.Item) -> int:
        return 0 if item.get_closest_marker(E2E) else 1 if item.get_closest_marker(FLOW) else 2

    items.sort(key=tier)  # stable: the collection's order within a tier
    for item in items:
        if item.get_closest_marker(E2E) is not None and item.get_closest_marker("xdist_group") is None:
            item.add_marker(pytest.mark.xdist_group("e2e " + item.nodeid.split("::", 1)[0]))


@contextmanager
def shared_processes() -> Iterator[None]:
    """Processes started inside are a session-wide part every tier shares (the Prefect test harness)."""
    WATCH.shared_depth += 1
    try:
        yield
    finally:
        WATCH.shared_depth -= 1


def watch_runtest() -> Generator[None, Any, Any]:
    WATCH.on = True
    WATCH.take()
    try:
        return (yield)
    finally:
        WATCH.on = False


def fail_unmarked_process_starts(item: pytest.Item, report: pytest.TestReport) -> pytest.TestReport:
    started = WATCH.take()
    if started and item.get_closest_marker(E2E) is None and not report.failed:
        report.outcome = "failed"
        report.longrepr = (
            f"{item.nodeid} started {len(started)} process(es) in its {report.when} but is not marked "
            f"`e2e` (mark it, or use an `@e2e_fixture`; see tests/tiers.py): " + "; ".join(started[:5])
        )
    return report
