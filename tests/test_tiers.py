"""The tiers hold: an unmarked test that starts a process fails; the users of an `@e2e_fixture` are e2e."""

from __future__ import annotations

import subprocess

import pytest

from tests import tiers


def test_a_process_started_by_an_unmarked_test_fails_it_naming_the_process(
    request: pytest.FixtureRequest,
) -> None:
    subprocess.run(["true"], check=True)
    started = tiers.WATCH.take()  # taken here, so that this test itself is not failed for it
    assert started == ["true"]

    tiers.WATCH.started = started
    passed = pytest.TestReport(request.node.nodeid, ("", 0, ""), {}, "passed", None, "call")
    report = tiers.fail_unmarked_process_starts(request.node, passed)
    assert report.failed and str(report.longrepr).endswith(
        "is not marked `e2e` (mark it, or use an `@e2e_fixture`; see tests/tiers.py): true"
    )
    assert tiers.WATCH.started == []


def test_the_users_of_an_e2e_fixture_are_marked_at_collection(request: pytest.FixtureRequest) -> None:
    """Over the collected session (the whole suite, or only this file when run alone)."""
    e2e = {item.nodeid for item in request.session.items if item.get_closest_marker("e2e")}
    using = {item.nodeid for item in request.session.items if set(item.fixturenames) & tiers.E2E_FIXTURES}
    assert using <= e2e
    assert request.node.nodeid not in e2e


def test_e2e_tests_come_first_then_flow_tests_and_a_modules_e2e_tests_share_one_worker(
    request: pytest.FixtureRequest,
) -> None:
    """Over the collected session, as above: the slowest tier starts first instead of landing last on one
    pytest-xdist worker, and a module's e2e tests are one `loadgroup` unit (they share its server)."""

    def tier(item: pytest.Item) -> int:
        return 0 if item.get_closest_marker("e2e") else 1 if item.get_closest_marker("flow") else 2

    tiers_in_order = [tier(item) for item in request.session.items]
    assert tiers_in_order == sorted(tiers_in_order)
    grouping = request.config.getoption("dist", "no") == "loadgroup"
    for item in request.session.items:
        if item.get_closest_marker("e2e"):
            module = item.nodeid.split("::", 1)[0]
            group = item.get_closest_marker("xdist_group")
            assert group is not None and group.args == ("e2e " + module.split("@")[0],)
            if grouping:  # the scheduler sees the group only as the id's suffix (pytest-xdist sets it)
                assert item.nodeid.endswith("@e2e " + module), item.nodeid


def test_tests_sharing_an_id_stop_the_session_naming_it(request: pytest.FixtureRequest) -> None:
    items = [item for item in request.session.items if item.nodeid == request.node.nodeid]
    tiers.refuse_duplicate_ids(items)
    with pytest.raises(pytest.UsageError, match=r"share an id.*\(2 tests\)") as refused:
        tiers.refuse_duplicate_ids(items * 2)
    assert request.node.nodeid in str(refused.value)
