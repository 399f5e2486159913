"""`make up`: the whole system on embedded defaults: Prefect server, sandbox, intake API, flows, demo data."""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import requests

from ennu.settings import PROJECT_ROOT, STATE_DIR

LOOPBACK = "127.0.0.1"


def local_environment(prefect_port: int, sandbox_port: int) -> dict[str, str]:
    """Defaults for a one-machine start; anything already set in the environment wins."""
    prefect_home = STATE_DIR / "prefect"
    defaults = {
        "PREFECT_HOME": str(prefect_home),
        "PREFECT_API_URL": f"http://{LOOPBACK}:{prefect_port}/api",
        "PREFECT_SERVER_API_HOST": LOOPBACK,
        "PREFECT_SERVER_API_PORT": str(prefect_port),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_ENABLED": "true",
        "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        "PREFECT_LOGGING_LOG_PRINTS": "false",
        "PREFECT_RESULTS_PERSIST_BY_DEFAULT": "false",
        # Prefect's own vacuum removes old flow runs, logs, artifacts and events; we never delete them.
        "PREFECT_SERVER_SERVICES_DB_VACUUM_ENABLED": "true",
        "PREFECT_SERVER_SERVICES_DB_VACUUM_RETENTION_PERIOD": str(30 * 24 * 3600),
        "ENNU_SANDBOX_URL": f"http://{LOOPBACK}:{sandbox_port}",
        # Local-only tokens for the demo's viewer and operator (the host app's is dev-intake-token).
        "ENNU_VIEWER_TOKENS": "dev-viewer-token",
        "ENNU_OPERATOR_TOKENS": "dev-operator-token",
    }
    env = dict(os.environ)
    for key, value in defaults.items():
        env.setdefault(key, value)
    prefect_home.mkdir(parents=True, exist_ok=True)
    return env


def wait_until_up(url: str, name: str, process: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{name} exited with code {process.returncode}; see {log_path(name)}")
        try:
            if requests.get(url, timeout=2).status_code < 500:
                return
        except requests.RequestException:
            pass
        time.sleep(0.5)
    raise SystemExit(f"{name} did not answer at {url} within {timeout:.0f} s; see {log_path(name)}")


def wait_for_triggers(api_url: str, process: subprocess.Popen[bytes], timeout: float = 180.0) -> None:
    """Events fired before the deployments' trigger automations exist would wait for the hourly drain."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            log = log_path("deployments")
            raise SystemExit(f"deployments exited with code {process.returncode}; see {log}")
        try:
            automations = requests.post(f"{api_url}/automations/filter", json={}, timeout=5).json()
            names = {a.get("name") for a in automations} if isinstance(automations, list) else set()
            if "on ennu.assessment.completed" in names:
                return
        except (requests.RequestException, ValueError):
            pass
        time.sleep(1)
    log = log_path("deployments")
    raise SystemExit(f"the deployments' triggers did not appear within {timeout:.0f} s; see {log}")


def log_path(name: str) -> Path:
    return STATE_DIR / "logs" / f"{name}.log"


def start(name: str, args: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    log_path(name).parent.mkdir(parents=True, exist_ok=True)
    log = log_path(name).open("ab")
    return subprocess.Popen(args, cwd=PROJECT_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)  # noqa: S603


def prepare_demo_database(people: int) -> str:
    """Migrate, and fill the host tables with synthetic people the first time."""
    from sqlalchemy import func, select

    from ennu.db import migrate, session_scope
    from ennu.demo import generate_demo
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
    parser.add_argument("--demo-people", type=int, default=1000)
    args = parser.parse_args()

    env = local_environment(args.prefect_port, args.sandbox_port)
    os.environ.update(env)
    print(f"demo database: {prepare_demo_database(args.demo_people)}", flush=True)

    py = sys.executable
    processes: list[tuple[str, subprocess.Popen[bytes]]] = []

    def stop(*_signal: object) -> None:
        for _name, process in reversed(processes):
            if process.poll() is None:
                process.terminate()
        for _name, process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        raise SystemExit(0)

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)

    prefect = start(
        "prefect-server",
        [py, "-m", "prefect", "server", "start", "--host", LOOPBACK, "--port", str(args.prefect_port)],
        env,
    )
    processes.append(("prefect-server", prefect))
    sandbox = start(
        "sandbox", [py, "-m", "sandbox", "--host", LOOPBACK, "--port", str(args.sandbox_port)], env
    )
    processes.append(("sandbox", sandbox))
    intake = start(
        "intake",
        [
            py,
            "-m",
            "uvicorn",
            "intake.app:app",
            "--host",
            LOOPBACK,
            "--port",
            str(args.intake_port),
            "--no-access-log",
        ],
        env,
    )
    processes.append(("intake", intake))
    wait_until_up(f"http://{LOOPBACK}:{args.sandbox_port}/_sandbox/health", "sandbox", sandbox)
    wait_until_up(f"http://{LOOPBACK}:{args.prefect_port}/api/health", "prefect-server", prefect, timeout=180)
    wait_until_up(f"http://{LOOPBACK}:{args.intake_port}/health", "intake", intake)
    served = start("deployments", [py, "-m", "deployments.serve"], env)
    processes.append(("deployments", served))
    wait_for_triggers(env["PREFECT_API_URL"], served)

    print(
        "\nENNU Integrations is up:\n"
        f"  Prefect UI     http://{LOOPBACK}:{args.prefect_port}\n"
        f"  Intake API     http://{LOOPBACK}:{args.intake_port}   (docs at /docs)\n"
        f"  Sandbox        http://{LOOPBACK}:{args.sandbox_port}"
        "  (what it received: /_sandbox/hubspot/objects/contacts)\n"
        f"  Logs           {STATE_DIR / 'logs'}\n"
        "Fire the README's curl event and watch the flow run appear in the UI. Ctrl-C stops everything.",
        flush=True,
    )
    while True:
        for name, process in processes:
            if process.poll() is not None:
                print(f"{name} stopped (exit {process.returncode}); see {log_path(name)}", flush=True)
                stop()
        time.sleep(1)


if __name__ == "__main__":
    main()
