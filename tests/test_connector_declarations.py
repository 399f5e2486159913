"""What the registry derives from the connectors' declarations: the lint's checks, the README's table,
typed settings that fail one way."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connectors.config_table import README, render, rewritten
from connectors.hubspot.settings import HubSpotSettings
from connectors.registry import CONNECTORS, validate_settings
from connectors.settings import SettingsError
from deployments.lint import main as lint
from ennu.db import session_scope
from ennu.models import SyncLog
from ennu.settings import reload_settings
from flows.user_registered import user_registered
from tests.factories import add_event, add_person

REPO_MAPPINGS = Path(__file__).resolve().parent.parent / "mappings"


def test_every_connector_package_is_registered() -> None:
    packages = {p.parent.name for p in (REPO_MAPPINGS.parent / "connectors").glob("*/__init__.py")}
    assert set(CONNECTORS) <= packages
    assert all(CONNECTORS[name].name == name for name in CONNECTORS)


def test_the_readme_table_is_the_settings_classes() -> None:
    text = README.read_text()
    assert rewritten(text) == text, "run python -m connectors.config_table"
    for cls in CONNECTORS.values():
        for variable, _, meaning in cls.settings_class.documented():
            assert f"`{variable}`" in render() and meaning, f"{variable} needs a description"


def test_an_empty_variable_is_unset_and_a_bad_one_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUBSPOT_RATE_LIMIT", "")
    assert HubSpotSettings.load().rate_limit == HubSpotSettings.model_fields["rate_limit"].default
    monkeypatch.setenv("HUBSPOT_RATE_LIMIT", "lots-4711")
    with pytest.raises(SettingsError) as caught:
        validate_settings()
    assert "HUBSPOT_RATE_LIMIT" in str(caught.value) and "4711" not in str(caught.value)


@pytest.fixture()
def mappings_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "mappings"
    shutil.copytree(REPO_MAPPINGS, copy, ignore=shutil.ignore_patterns("*.py", "__pycache__"))
    return copy


@pytest.mark.parametrize(
    ("old", "new", "reason"),
    [
        ("connector: hubspot", "connector: hubspots", "unknown connector 'hubspots'"),
        ("object: contacts", "object: contact", "hubspot has no object 'contact'"),
        (
            "upsert_key: email",
            "upsert_key: ennu_last_login_date",
            "is not upserted by 'ennu_last_login_date'",
        ),
    ],
)
def test_the_lint_names_file_line_and_reason(
    mappings_copy: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, reason: str
) -> None:
    path = mappings_copy / "user.login" / "hubspot.yaml"
    lines = path.read_text().splitlines()
    line = next(n for n, text in enumerate(lines, start=1) if text.startswith(old))
    path.write_text(path.read_text().replace(old, new, 1))
    if old.startswith("connector:"):  # a mapping file is named by its connector
        path = path.rename(path.with_name("hubspots.yaml"))
    assert lint([str(mappings_copy)]) == 1
    out = capsys.readouterr().out
    assert f"{path}:{line}: " in out and reason in out


def test_a_route_to_an_undeclared_object_fails_alone_with_its_reason(
    sqlite_database: str,
    sandbox: Any,
    prefect_server: None,
    mappings_copy: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A mapping the lint refuses, deployed anyway: its records fail, named; every other route goes."""
    path = mappings_copy / "user.registered" / "hubspot.yaml"
    path.write_text(path.read_text().replace("object: contacts", "object: contact", 1))
    monkeypatch.setenv("ENNU_MAPPINGS_DIR", str(mappings_copy))
    reload_settings()
    event_ids = [add_event("user.registered", add_person()) for _ in range(2)]

    state = user_registered(event_ids=event_ids, return_state=True)

    assert state.is_failed()  # dead letters fail the run, visibly
    with session_scope() as session:
        rows = session.execute(select(SyncLog.connector, SyncLog.status, SyncLog.error)).tuples().all()
    hubspot = [(status, error) for connector, status, error in rows if connector == "hubspot"]
    assert hubspot == [("failed", "hubspot has no object 'contact'")] * 2
    assert {s for c, s, _ in rows if c == "mailchimp"} == {"created"}
    assert sandbox.requests("hubspot") == []


def test_every_hub_setting_is_in_the_readme() -> None:
    """The hub's own settings (ennu/settings.py) are described by hand in README's Configuration."""
    from ennu.settings import Settings

    configuration = README.read_text().split("## Configuration", 1)[1].split("\n## ", 1)[0]
    missing = [f.alias for f in Settings.model_fields.values() if f.alias and f.alias not in configuration]
    assert not missing, f"README's Configuration lacks {missing}"
