"""The supervisor behind `make up`, with real processes: restarts with backoff, a stop that leaves nothing."""

from __future__ import annotations

import io
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from devtools import launcher
from devtools.launcher import LOOPBACK_BINDS, deployment_registered, local_environment, parts
from devtools.supervisor import Backoff, Part, ReadinessCheck, Supervisor
from ennu.settings import is_loopback_host, is_loopback_url
from tests.engine_support import wait_for
from tests.tiers import e2e_fixture

ROOT = Path(__file__).resolve().parent.parent
SLEEPER = (sys.executable, "-c", "import time; time.sleep(600)")
# A tiny backoff keeps the tests fast; the launcher uses 1 s doubling to 30 s.
FAST = Backoff(first=0.2, maximum=0.8, stable_after=30)
REGISTERED_AT = "2026-12-01T10:00:00.123000Z"


def wait_until(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    wait_for(condition, what, timeout, every=0.05)  # no Prefect here: a minute is generous


def alive(pid: int) -> bool:
    """The process exists and is not a zombie waiting for its parent (or init) to reap it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rindex(")") + 2] not in "ZX"


def writes_pid(pid_file: Path, then: str = "time.sleep(600)") -> tuple[str, ...]:
    """A part that writes its pid to `pid_file` (one line per run) and then runs `then`."""
    imports = "import os, signal, subprocess, sys, time\n"
    code = f"{imports}open({str(pid_file)!r}, 'a').write(f'{{os.getpid()}}\\n')\n{then}"
    return (sys.executable, "-c", code)


def pids(pid_file: Path) -> list[int]:
    return [int(line) for line in pid_file.read_text().split()] if pid_file.exists() else []


def kill_leftovers(tmp_path: Path) -> None:
    """A safety net on a shared machine: should a stop ever fail, its processes do not outlive the test."""
    for pid_file in tmp_path.glob("*.pids"):
        for pid in pids(pid_file):
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture()
@e2e_fixture
def make_supervisor(tmp_path: Path) -> Iterator[Callable[..., tuple[Supervisor, io.StringIO]]]:
    made: list[Supervisor] = []

    def make(*parts: Part, backoff: Backoff = FAST) -> tuple[Supervisor, io.StringIO]:
        out = io.StringIO()
        supervisor = Supervisor(
            parts, env=dict(os.environ), cwd=tmp_path, log_dir=tmp_path / "logs", backoff=backoff, out=out
        )
        made.append(supervisor)
        return supervisor, out

    yield make
    for supervisor in made:
        supervisor.stop()
    kill_leftovers(tmp_path)


def poll_until(
    supervisor: Supervisor, condition: Callable[[], object], what: str, timeout: float = 60.0
) -> None:
    def polled() -> object:
        supervisor.poll()
        return condition()

    wait_until(polled, what, timeout)


def test_a_part_that_exits_is_restarted_and_reported_while_its_sibling_keeps_running(
    tmp_path: Path, make_supervisor: Callable[..., tuple[Supervisor, io.StringIO]]
) -> None:
    flaky_pids = tmp_path / "flaky.pids"
    exit_once = f"sys.exit(3) if len(open({str(flaky_pids)!r}).read().split()) == 1 else time.sleep(600)"
    supervisor, out = make_supervisor(
        Part("steady", SLEEPER), Part("flaky", writes_pid(flaky_pids, exit_once))
    )

    supervisor.poll()
    steady = supervisor.pid("steady")
    assert steady is not None
    poll_until(supervisor, lambda: len(pids(flaky_pids)) == 2 and supervisor.pid("flaky"), "flaky restarted")

    assert supervisor.pid("steady") == steady and alive(steady)
    assert supervisor.pid("flaky") == pids(flaky_pids)[1] and supervisor.restarts("flaky") == 1
    log = tmp_path / "logs" / "flaky.log"
    assert re.search(
        rf"flaky exited with code 3 after [\d.]+ s; restart 1 in 0.2 s; log: {re.escape(str(log))}",
        out.getvalue(),
    )
    assert "steady" not in out.getvalue()
    assert log.read_text().count(" start ") == 2, "both runs append to the same log"


def test_what_an_exited_part_left_in_its_process_group_is_gone_before_it_restarts(
    tmp_path: Path, make_supervisor: Callable[..., tuple[Supervisor, io.StringIO]]
) -> None:
    leaky_pids, orphan_pids = tmp_path / "leaky.pids", tmp_path / "orphan.pids"
    # The first run leaves a child behind that ignores SIGTERM (as a server's worker might), then exits.
    leave_an_orphan_once = f"""
if len(open({str(leaky_pids)!r}).read().split()) == 1:
    ignore = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    child = subprocess.Popen([sys.executable, "-c", ignore])
    open({str(orphan_pids)!r}, "w").write(str(child.pid))
    status = f"/proc/{{child.pid}}/status"
    while not int(open(status).read().split("SigIgn:")[1].split()[0], 16) & (1 << (signal.SIGTERM - 1)):
        time.sleep(0.01)
    sys.exit(4)
time.sleep(600)
"""
    supervisor, out = make_supervisor(Part("leaky", writes_pid(leaky_pids, leave_an_orphan_once)))
    poll_until(supervisor, lambda: len(pids(leaky_pids)) == 2, "leaky restarted")

    assert "leaky exited with code 4" in out.getvalue()
    wait_until(lambda: not alive(pids(orphan_pids)[0]), "the orphan was killed at the restart", 30)


@pytest.mark.parametrize(
    ("argv", "reported"),
    [
        ((sys.executable, "-c", "import sys; sys.exit(1)"), "crasher exited with code 1"),
        (("/nonexistent/ennu-part",), "crasher could not start (No such file or directory)"),
    ],
    ids=["exits-at-once", "cannot-start"],
)
def test_a_part_that_keeps_crashing_backs_off_and_never_takes_the_others_down(
    argv: tuple[str, ...], reported: str, make_supervisor: Callable[..., tuple[Supervisor, io.StringIO]]
) -> None:
    supervisor, out = make_supervisor(Part("steady", SLEEPER), Part("crasher", argv))
    supervisor.poll()
    steady = supervisor.pid("steady")
    exits_seen_at: list[float] = []

    def five_exits() -> bool:
        if supervisor.restarts("crasher") > len(exits_seen_at):
            exits_seen_at.append(time.monotonic())
        return len(exits_seen_at) >= 5

    poll_until(supervisor, five_exits, "five restarts of crasher")

    delays = [float(d) for d in re.findall(r"crasher .*; restart \d+ in ([\d.]+) s", out.getvalue())]
    assert delays[:5] == [0.2, 0.4, 0.8, 0.8, 0.8]
    gaps = [later - earlier for earlier, later in itertools.pairwise(exits_seen_at)]
    # Each restart waited its delay (less the few microseconds between an exit and the test seeing it).
    assert all(gap >= delay - 0.02 for gap, delay in zip(gaps, delays, strict=False)), (gaps, delays)
    assert out.getvalue().count(reported) >= 5
    assert steady is not None and supervisor.pid("steady") == steady and alive(steady)


def test_backoff_doubles_on_quick_exits_up_to_its_ceiling_and_resets_after_a_stable_run() -> None:
    backoff = Backoff(first=1, maximum=30, stable_after=60)
    delays = [backoff.next_delay(None, 0)]
    for _ in range(6):
        delays.append(backoff.next_delay(delays[-1], uptime=2))
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert backoff.next_delay(30, uptime=61) == 1


SUPERVISED = """
import os, sys
from pathlib import Path
from devtools.supervisor import Part, Supervisor

tmp = Path(sys.argv[1])
spawner = (
    "import os, subprocess, sys, time\\n"
    "child = subprocess.Popen(['sleep', '600'])\\n"
    "open(sys.argv[1], 'w').write(f'{os.getpid()} {child.pid}')\\n"
    "time.sleep(600)\\n"
)
parts = [
    Part("spawner", (sys.executable, "-c", spawner, str(tmp / "spawner.pids"))),
    Part("steady", (sys.executable, "-c", "import time; time.sleep(600)")),
]
supervisor = Supervisor(parts, env=dict(os.environ), cwd=tmp, log_dir=tmp / "logs")
supervisor.run(on_started=lambda not_ready: print("started", not_ready, supervisor.pid("steady"), flush=True))
"""


@pytest.mark.e2e
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_stop_signal_ends_every_part_and_the_grandchildren_within_15_s(tmp_path: Path, signum: int) -> None:
    out = tmp_path / "supervisor.out"
    with out.open("w") as stdout:
        process = subprocess.Popen(
            [sys.executable, "-c", SUPERVISED, str(tmp_path)],
            cwd=ROOT,
            stdout=stdout,
            stderr=subprocess.STDOUT,
        )
    try:
        spawner_pids = tmp_path / "spawner.pids"
        wait_until(lambda: "started []" in out.read_text() and spawner_pids.exists(), "parts started")
        wait_until(lambda: len(spawner_pids.read_text().split()) == 2, "the spawner wrote both pids")
        steady = int(re.findall(r"started \[\] (\d+)", out.read_text())[0])
        spawner, grandchild = (int(pid) for pid in spawner_pids.read_text().split())
        assert all(alive(pid) for pid in (steady, spawner, grandchild))

        sent = time.monotonic()
        process.send_signal(signum)
        assert process.wait(timeout=30) == 0
        wait_until(lambda: not any(alive(pid) for pid in (steady, spawner, grandchild)), "parts gone", 30)
        assert time.monotonic() - sent < 15
        assert "all parts stopped" in out.read_text()
    finally:
        if process.poll() is None:
            process.kill()
        kill_leftovers(tmp_path)


def test_a_group_that_ignores_sigterm_is_killed_after_the_grace_period(
    tmp_path: Path, make_supervisor: Callable[..., tuple[Supervisor, io.StringIO]]
) -> None:
    ignoring = tmp_path / "ignoring.pids"
    ignore_sigterm = "signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(600)"
    stubborn = Part("stubborn", writes_pid(ignoring, ignore_sigterm))
    # This leader goes on SIGTERM, but the child it started does not: the group is what has to go.
    spawn_stubborn_child = (
        f"subprocess.Popen({list(writes_pid(ignoring, ignore_sigterm))!r}); time.sleep(600)"
    )
    parent = Part("parent", writes_pid(tmp_path / "parent.pids", spawn_stubborn_child))
    supervisor, out = make_supervisor(stubborn, parent)
    poll_until(supervisor, lambda: len(pids(ignoring)) == 2, "two processes that ignore SIGTERM")
    # The pid is written before the handler is set: wait until both really ignore SIGTERM.
    wait_until(lambda: all(ignores_sigterm(pid) for pid in pids(ignoring)), "SIGTERM ignored")

    started = time.monotonic()
    supervisor.stop(timeout=6, grace=0.5)

    assert time.monotonic() - started < 6
    assert not any(alive(pid) for pid in pids(ignoring) + pids(tmp_path / "parent.pids"))
    report = out.getvalue()
    assert "stubborn still running after 0.5 s: SIGKILL to its process group" in report
    assert "parent still running after 0.5 s: SIGKILL to its process group" in report
    assert "all parts stopped" in report


def test_a_part_is_stopped_only_after_the_parts_that_need_it(
    tmp_path: Path, make_supervisor: Callable[..., tuple[Supervisor, io.StringIO]]
) -> None:
    stops = tmp_path / "stops"
    on_sigterm = (
        "def stop(*_):\n"
        "    time.sleep(float(sys.argv[2]))\n"
        f"    open({str(stops)!r}, 'a').write(sys.argv[1] + '\\n')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "time.sleep(600)\n"
    )
    base_pids = tmp_path / "base.pids"
    base = Part(
        "base",
        (*writes_pid(base_pids, on_sigterm), "base", "0"),
        ready=ReadinessCheck("its pid file", lambda _since: base_pids.exists()),
    )
    # The dependent takes its time to stop, as `prefect serve` does while it tells the server.
    dependent_argv = (*writes_pid(tmp_path / "dependent.pids", on_sigterm), "dependent", "0.3")
    dependent = Part("dependent", dependent_argv, needs=("base",))
    supervisor, _ = make_supervisor(base, dependent)
    poll_until(supervisor, lambda: (tmp_path / "dependent.pids").exists(), "dependent started")
    wait_until(
        lambda: all(handles_sigterm(pid) for pid in pids(base_pids) + pids(tmp_path / "dependent.pids")),
        "both handle SIGTERM",
    )

    supervisor.stop()

    assert stops.read_text().split() == ["dependent", "base"]


def handles_sigterm(pid: int) -> bool:
    caught = Path(f"/proc/{pid}/status").read_text().split("SigCgt:")[1].split()[0]
    return bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))


def ignores_sigterm(pid: int) -> bool:
    ignored = Path(f"/proc/{pid}/status").read_text().split("SigIgn:")[1].split()[0]
    return bool(int(ignored, 16) & (1 << (signal.SIGTERM - 1)))


def test_a_part_waits_for_the_parts_it_needs_and_an_unready_part_is_named_when_the_wait_ends(
    tmp_path: Path, make_supervisor: Callable[..., tuple[Supervisor, io.StringIO]]
) -> None:
    flag = tmp_path / "base-ready"
    base = Part(
        "base", SLEEPER, ready=ReadinessCheck("the flag file to appear", lambda _since: flag.exists())
    )
    dependent = Part("dependent", SLEEPER, needs=("base",))
    supervisor, out = make_supervisor(base, dependent)
    started: list[list[str]] = []

    def on_started(not_ready: list[str]) -> None:
        started.append(not_ready)
        supervisor.request_stop()

    supervisor.run(on_started=on_started, ready_timeout=0.5)  # returns once on_started asked it to stop

    assert started == [["base", "dependent"]]
    assert "base is not ready after 0.5 s: still waiting for the flag file to appear" in out.getvalue()
    assert "dependent is not ready" in out.getvalue()
    assert "stopping base\n" in out.getvalue(), "dependent never started: base was not ready"

    again, _ = make_supervisor(base, dependent)
    poll_until(again, lambda: again.pid("base"), "base started")
    flag.touch()
    poll_until(again, lambda: again.pid("dependent"), "dependent started once base was ready")


class _PrefectApiStandIn(BaseHTTPRequestHandler):
    """Knows one deployment, drain/hourly, last registered at 2026-12-01 10:00 UTC."""

    def do_GET(self) -> None:
        known = self.path == "/api/deployments/name/drain/hourly"
        body = json.dumps({"name": "hourly", "updated": REGISTERED_AT} if known else {"detail": "Not Found"})
        self.send_response(200 if known else 404)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *_args: object) -> None:
        pass


def test_the_launcher_part_table_waits_for_prefect_and_for_the_served_deployments() -> None:
    table = parts(prefect_port=4201, intake_port=8001, sandbox_port=8766, api_url="http://127.0.0.1:1/api")
    names = [part.name for part in table]
    assert names == ["prefect-server", "sandbox", "intake", "deployments", "delivery-worker"]
    deployments = table[names.index("deployments")]
    worker = table[names.index("delivery-worker")]
    assert worker.needs == ("prefect-server",) and worker.ready is not None
    assert deployments.needs == ("prefect-server",)
    assert deployments.ready is not None and "drain/hourly" in deployments.ready.what
    Supervisor(table, env={}, cwd=ROOT, log_dir=ROOT / ".ennu" / "logs")  # the table is consistent

    server = ThreadingHTTPServer(("127.0.0.1", 0), _PrefectApiStandIn)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        api_url = f"http://127.0.0.1:{server.server_address[1]}/api"
        registered = datetime.fromisoformat(REGISTERED_AT).timestamp()
        assert deployment_registered(api_url, "drain/hourly").check(registered - 1)
        assert not deployment_registered(api_url, "drain/hourly").check(registered + 1), "a previous run's"
        assert not deployment_registered(api_url, "drain/daily").check(registered - 1)
    finally:
        server.shutdown()
        server.server_close()
    nothing_there = "http://127.0.0.1:1/api"
    assert not deployment_registered(nothing_there, "drain/hourly").check(0), "no answer: not registered"


def test_make_up_binds_every_server_it_starts_to_loopback_whatever_the_shell_says(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(launcher, "STATE_DIR", tmp_path)
    for name in LOOPBACK_BINDS:  # an operator's shell set up for the multi-machine recipe
        monkeypatch.setenv(name, "0.0.0.0")  # noqa: S104
    env = local_environment(prefect_port=4201, sandbox_port=8766, smtp_port=8026, intake_port=8001)
    assert {name: env[name] for name in LOOPBACK_BINDS} == dict.fromkeys(LOOPBACK_BINDS, "127.0.0.1")
    table = parts(4201, 8001, 8766, env["PREFECT_API_URL"], smtp_port=8026)

    # The parts that serve: each says where it listens; the sandbox serves its SMTP stand-in on the same
    # `--host` (sandbox/__main__.py) and refuses anything else without `--allow-remote`.
    servers = {part.name: list(part.argv) for part in table if part.health_url}
    assert set(servers) == {"prefect-server", "sandbox", "intake"}
    for name, argv in servers.items():
        assert argv.count("--host") == 1 and "--allow-remote" not in argv, name
        assert is_loopback_host(argv[argv.index("--host") + 1]), name
    assert "--smtp-port" in servers["sandbox"]
    assert all(is_loopback_url(part.health_url) for part in table if part.health_url)
    # The others (`prefect serve`, the delivery worker) serve nothing unless Prefect's runner webserver is
    # switched on, and it would listen on PREFECT_RUNNER_SERVER_HOST (loopback, above).
    assert [part.argv[1:3] for part in table if not part.health_url] == [
        ("-m", "deployments.serve"),
        ("-m", "engine"),
    ]
    # What the parts are told to reach is this machine too.
    for name in ("PREFECT_API_URL", "ENNU_SANDBOX_URL", "ENNU_INTAKE_PUBLIC_URL"):
        assert is_loopback_url(env[name]), name
    assert is_loopback_host(env["ENNU_SMTP_HOST"])
