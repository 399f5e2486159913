"""`make up`: the whole system on embedded defaults: Prefect server, sandbox, intake API, flows, demo data."""

from __future__ import annotations

import argparse
import os
import sys
from datetime import datetime

import requests

from devtools.demo_zaps import DEVELOPMENT_ZAPIER_TOKEN, over_http, subscribe_demo_zaps
from devtools.supervisor import Part, ReadinessCheck, Supervisor
from ennu.prefect_api import prefect_api_headers
from ennu.prefect_server import SERVER_SETTINGS
from ennu.settings import PROJECT_ROOT, STATE_DIR

LOOPBACK = "127.0.0.1"
# The Prefect settings that say where a server of make up listens.
LOOPBACK_BINDS = ("PREFECT_SERVER_API_HOST", "PREFECT_RUNNER_SERVER_HOST")


def local_environment(
    prefect_port: int, sandbox_port: int, smtp_port: int = 8025, intake_port: int = 8000
) -> dict[str, str]:
    """Defaults for a one-machine start; anything already set in the environment wins."""
    prefect_home = STATE_DIR / "prefect"
    defaults = {
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": f"http://{LOOPBACK}:{prefect_port}/api",
        "PREFECT_SERVER_API_PORT": str(prefect_port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_LOGGING_LOG_PRINTS": "false",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        **SERVER_SETTINGS,
        # Prefect's own vacuum removes old flow runs, logs, artifacts and events; we never delete them.
        "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "true",
        "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": str(30 * 24 * 3600),
        # Local mode: connectors without credentials reach the sandbox; the development keys stand in.
        "ENNU_ENV": "local",
        "ENNU_SANDBOX_URL": f"http://{LOOPBACK}:{sandbox_port}",
        # Local-only tokens of the demo's host app, viewer and operator: set here, so no request waits on a
        # Secret-block lookup while the Prefect server is still starting.
        "ENNU_INTAKE_TOKEN": "dev-intake-token",
        "ENNU_VIEWER_TOKENS": "dev-viewer-token",
        "ENNU_OPERATOR_TOKENS": "dev-operator-token",
        # The demo's Zapier app token for /zapier/subscribe (devtools.demo_zaps subscribes the demo's Zaps).
        "ZAPIER_TOKEN": DEVELOPMENT_ZAPIER_TOKEN,
        # Operator alerts: Slack and Teams reach their stand-ins (routing.yaml: `enabled: sandbox`), e-mail
        # the sandbox's SMTP stand-in; the dashboard's chart links point at this intake.
        "ENNU_ALERT_EMAIL_TO": "ops@example.org",
        "ENNU_SMTP_HOST": LOOPBACK,
        "ENNU_SMTP_PORT": str(smtp_port),
        "ENNU_SMTP_TYPE": "INSECURE",
        "ENNU_INTAKE_PUBLIC_URL": f"http://{LOOPBACK}:{intake_port}",
    }
    env = dict(os.environ)
    for key, value in defaults.items():
        env.setdefault(key, value)
    # One machine: whatever the shell says, every server make up starts listens on loopback only (the
    # parts' `--host` says the same; the runner's webserver, should someone switch it on, too).
    env.update({name: LOOPBACK for name in LOOPBACK_BINDS})
    prefect_home.mkdir(parents=True, exist_ok=True)
    return env


def deployment_registered(api_url: str, name: str) -> ReadinessCheck:
    """`drain/hourly` was registered (created or updated) in the Prefect API since `prefect serve` started."""

    def check(since: float) -> bool:
        try:
            response = requests.get(
                f"{api_url}/deployments/name/{name}", headers=prefect_api_headers(), timeout=5
            )
            # The Prefect database outlives a run: only a registration by this run counts.
            return response.status_code == 200 and _timestamp(response.json()["updated"]) >= since
        except (requests.RequestException, ValueError, KeyError, TypeError):
            return False

    return ReadinessCheck(f"the deployment {name} to be registered at {api_url}", check)


def worker_warm() -> ReadinessCheck:
    """A delivery worker started by this run has warmed up (its heartbeat in the hub database)."""

    def check(since: float) -> bool:
        from ennu.heartbeats import live_workers

        try:
            return any(w.warm_at is not None and w.warm_at.timestamp() >= since for w in live_workers())
        except Exception:  # the database is being migrated by the worker itself: not yet
            return False

    return ReadinessCheck("a delivery worker to warm up", check)


def _timestamp(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def parts(
    prefect_port: int, intake_port: int, sandbox_port: int, api_url: str, smtp_port: int = 8025
) -> list[Part]:
    """Everything `make up` keeps running, one `Part` each; a part starts once the parts it needs are up."""
    py = sys.executable
    return [
        Part(
            "prefect-server",
            (py, "-m", "prefect", "server", "start", "--host", LOOPBACK, "--port", str(prefect_port)),
            health_url=f"http://{LOOPBACK}:{prefect_port}/api/health",
        ),
        Part(
            "sandbox",
            (
                py,
                "-m",
                "sandbox",
                "--host",
                LOOPBACK,
                "--port",
                str(sandbox_port),
                "--smtp-port",
                str(smtp_port),
            ),
            health_url=f"http://{LOOPBACK}:{sandbox_port}/_sandbox/health",
        ),
        Part(
            "intake",
            (
                py,
                "-m",
                "intake",
                "--host",
                LOOPBACK,
                "--port",
                str(intake_port),
            ),
            health_url=f"http://{LOOPBACK}:{intake_port}/health",
        ),
        Part(
            "deployments",
            (py, "-m", "deployments.serve"),
            ready=deployment_registered(api_url, "drain/hourly"),
            needs=("prefect-server",),
        ),
        Part("delivery-worker", (py, "-m", "engine"), ready=worker_warm(), needs=("prefect-server",)),
    ]


def prepare_demo_database(people: int) -> str:
    """Migrate, and fill the host tables with synthetic people the first time."""
    from sqlalchemy import func, select

    from devtools.demo import generate_demo
    from ennu.db import migrate, session_scope
    from ennu.models import User

    migrate()
    with session_scope() as session:
        existing = session.execute(select(func.count()).select_from(User)).scalar_one()
    if existing:
        return f"{existing} people already there"
    summary = generate_demo(people=people)
    return f"{summary.users} synthetic people created"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefect-port", type=int, default=int(os.environ.get("ENNU_PREFECT_PORT", 4200)))
    parser.add_argument("--intake-port", type=int, default=int(os.environ.get("ENNU_INTAKE_PORT", 8000)))
    parser.add_argument("--sandbox-port", type=int, default=int(os.environ.get("ENNU_SANDBOX_PORT", 8765)))
    parser.add_argument("--smtp-port", type=int, default=int(os.environ.get("ENNU_SANDBOX_SMTP_PORT", 8025)))
    parser.add_argument("--demo-people", type=int, default=1000)
    args = parser.parse_args()

    env = local_environment(args.prefect_port, args.sandbox_port, args.smtp_port, args.intake_port)
    os.environ.update(env)
    from connectors.registry import validate_settings
    from connectors.settings import SettingsError

    try:  # a setting that does not parse stops the start here, named, not a part restarting forever
        validate_settings()
    except SettingsError as exc:
        raise SystemExit(f"make up: {exc}") from None
    print(f"demo database: {prepare_demo_database(args.demo_people)}", flush=True)

    supervisor = Supervisor(
        parts(args.prefect_port, args.intake_port, args.sandbox_port, env["PREFECT_API_URL"], args.smtp_port),
        env=env,
        cwd=PROJECT_ROOT,
        log_dir=STATE_DIR / "logs",
    )

    def print_summary(not_ready: list[str]) -> None:
        headline = "is up" if not not_ready else f"is up except {', '.join(not_ready)} (see above)"
        zaps = "not subscribed (the intake is not up)"
        if "intake" not in not_ready:
            try:  # one Zap a trigger at the Zapier stand-in, through our subscribe API
                intake = over_http(f"http://{LOOPBACK}:{args.intake_port}")
                hooks = subscribe_demo_zaps(intake, env["ENNU_SANDBOX_URL"], env["ZAPIER_TOKEN"])
                zaps = f"{len(hooks)} hooks"
            except (requests.RequestException, RuntimeError) as exc:
                zaps = f"not subscribed ({exc})"
        print(
            f"\nENNU Integrations {headline}:\n"
            f"  Prefect UI     http://{LOOPBACK}:{args.prefect_port}\n"
            f"  Intake API     http://{LOOPBACK}:{args.intake_port}   (docs at /docs)\n"
            f"  Sandbox        http://{LOOPBACK}:{args.sandbox_port}"
            "  (what it received: /_sandbox/hubspot/objects/contacts)\n"
            f"  Alerts         Slack, Teams and e-mail stand-ins: /_sandbox/email/objects/messages\n"
            f"  Zapier         the demo's Zaps: {zaps} (/_sandbox/zapier/objects/payloads)\n"
            f"  Logs           {STATE_DIR / 'logs'}\n"
            "Fire the README's curl event and watch the flow run appear in the UI. Ctrl-C stops everything.",
            flush=True,
        )

    supervisor.run(on_started=print_summary)


if __name__ == "__main__":
    main()
