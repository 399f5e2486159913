"""Keeps local processes running: each in its own process group, restarted with backoff, stopped together."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import TextIO

import requests

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


@dataclass(frozen=True)
class ReadinessCheck:
    """Something to wait for once a part has started, named for the message when it does not happen.

    `check(since)` gets the wall-clock time (`time.time()`) this run of the part started, so that what a
    previous run left behind (a registration in a persistent database) does not count.
    """

    what: str
    check: Callable[[float], bool]


@dataclass(frozen=True)
class Part:
    """One process to keep running: its command, how to tell it is ready, and which parts it needs first."""

    name: str
    argv: Sequence[str]
    health_url: str | None = None
    ready: ReadinessCheck | None = None
    needs: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if isinstance(self.argv, str):
            raise TypeError(f"{self.name}: argv is a sequence of arguments, not a command line")

    @property
    def waiting_for(self) -> str:
        """What readiness means for this part, e.g. `http://127.0.0.1:4200/api/health to answer`."""
        waits = [f"{self.health_url} to answer"] if self.health_url else []
        return " and ".join(waits + ([self.ready.what] if self.ready else [])) or "nothing"


@dataclass(frozen=True)
class Backoff:
    """Restart delay: `first`, doubled on each quick exit up to `maximum`, reset after a stable run."""

    first: float = 1.0
    maximum: float = 30.0
    stable_after: float = 60.0

    def next_delay(self, previous: float | None, uptime: float) -> float:
        """The delay before restarting a part that ran `uptime` seconds after waiting `previous` seconds."""
        if previous is None or uptime >= self.stable_after:
            return self.first
        return min(previous * 2, self.maximum)


@dataclass
class _State:
    part: Part
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    started_wall: float = 0.0
    start_at: float = 0.0
    delay: float | None = None
    restarts: int = 0
    ready: bool = False
    # The group of an exited leader: its children may outlive it until the restart (or the stop) ends them.
    orphan_group: int | None = None


def answers(url: str) -> bool:
    """True when `url` answers over HTTP with anything below 500."""
    try:
        return requests.get(url, timeout=2).status_code < 500
    except requests.RequestException:
        return False


def live_groups(pgids: Iterable[int]) -> set[int]:
    """Which of these process groups still have a process that is not a zombie."""
    wanted = set(pgids)
    proc = Path("/proc")
    if not proc.is_dir():  # not Linux: a group with only zombies left counts as alive
        return {pgid for pgid in wanted if _signal_group(pgid, 0)}
    alive: set[int] = set()
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name may hold spaces and parentheses; the fields after its last ")" are fixed.
        state, _ppid, pgrp = stat[stat.rindex(")") + 2 :].split()[:3]
        if int(pgrp) in wanted and state not in ("Z", "X"):
            alive.add(int(pgrp))
    return alive


def _signal_group(pgid: int, signum: int) -> bool:
    try:
        os.killpg(pgid, signum)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def describe_exit(code: int) -> str:
    """`code 3`, or `code -9 (SIGKILL)` for a process ended by a signal."""
    if code < 0:
        try:
            return f"code {code} ({signal.Signals(-code).name})"
        except ValueError:
            pass
    return f"code {code}"


class Supervisor:
    """Starts parts, restarts any that exits while the others keep running, and stops them all together.

    Args:
        parts: what to run, in start order; a part whose `needs` are not ready yet waits for them.
        env, cwd: the environment and working directory of every part.
        log_dir: where each part's `<name>.log` is appended to.
        backoff: restart delays (default: 1 s doubling to 30 s, reset after 60 s up).
        out: where restarts and stops are reported (default: stdout).
        tick: seconds between two rounds of `poll` in `run`.
    """

    def __init__(
        self,
        parts: Sequence[Part],
        *,
        env: dict[str, str],
        cwd: Path,
        log_dir: Path,
        backoff: Backoff | None = None,
        out: TextIO | None = None,
        tick: float = 0.25,
    ) -> None:
        names = [part.name for part in parts]
        if len(set(names)) != len(names):
            raise ValueError(f"part names must be unique: {names}")
        for part in parts:
            unknown = set(part.needs) - set(names)
            if unknown:
                raise ValueError(f"{part.name} needs unknown parts: {sorted(unknown)}")
        self._states = {part.name: _State(part) for part in parts}
        self._env = env
        self._cwd = cwd
        self._log_dir = log_dir
        self._backoff = backoff or Backoff()
        self._out = out
        self._tick = tick
        self._stop_requested = False
        self._announced = False

    def log_path(self, name: str) -> Path:
        """Where the part's stdout and stderr go: `<log_dir>/<name>.log`, appended across restarts."""
        return self._log_dir / f"{name}.log"

    def pid(self, name: str) -> int | None:
        """The pid of the part's running process (also its process group id), or None between runs."""
        process = self._states[name].process
        return process.pid if process is not None and process.poll() is None else None

    def restarts(self, name: str) -> int:
        """How often the part has exited and been scheduled for a restart."""
        return self._states[name].restarts

    def not_ready(self) -> list[str]:
        """Names of the parts that are not running and ready, in declaration order."""
        return [name for name, state in self._states.items() if not state.ready]

    def request_stop(self, *_signal: object) -> None:
        """Make `run` stop every part and return; safe to call from a signal handler."""
        self._stop_requested = True

    def poll(self) -> None:
        """One round: report and schedule the parts that exited, start the due ones, check readiness."""
        for state in self._states.values():
            if self._stop_requested:
                return
            if state.process is not None and state.process.poll() is not None:
                uptime = time.monotonic() - state.started_at
                self._exited(
                    state, f"exited with {describe_exit(state.process.returncode)} after {uptime:.1f} s"
                )
            if state.process is None and time.monotonic() >= state.start_at and self._needs_ready(state.part):
                self._start(state)
            if state.process is not None and not state.ready and self._is_ready(state):
                state.ready = True
                if self._announced:
                    self._report(f"{state.part.name} is ready")

    def run(
        self, on_started: Callable[[list[str]], None] | None = None, ready_timeout: float = 240.0
    ) -> None:
        """Keep every part running until SIGINT, SIGTERM or SIGHUP, then stop them all.

        Args:
            on_started: called once, when every part is ready or `ready_timeout` has passed, with the
                names of the parts that are not ready (each reported with what it waits for).
            ready_timeout: seconds to wait for readiness before calling `on_started` anyway.
        """
        previous = {signum: signal.signal(signum, self._on_signal) for signum in STOP_SIGNALS}
        try:
            deadline = time.monotonic() + ready_timeout
            while not self._stop_requested:
                self.poll()
                if not self._announced and (not self.not_ready() or time.monotonic() >= deadline):
                    self._announce(ready_timeout, on_started)
                time.sleep(self._tick)
        finally:
            self.stop()
            for signum, handler in previous.items():
                signal.signal(signum, handler)

    def stop(self, timeout: float = 15.0, grace: float = 10.0) -> None:
        """SIGTERM every part's process group, dependents first; SIGKILL what is left after `grace` s.

        A part gets SIGTERM once the parts that need it are gone, or after half the grace at the latest,
        so that e.g. `prefect serve` can still reach the Prefect server while it shuts down. All is over
        within `timeout` seconds.
        """
        started = time.monotonic()
        groups = self._alive(self._groups())
        if not groups:
            return
        self._report(f"stopping {', '.join(groups)}")
        terminated: set[str] = set()

        def terminate_the_unneeded(alive: dict[str, int]) -> None:
            everyone = time.monotonic() >= started + grace / 2
            needed = {need for name in alive for need in self._states[name].part.needs}
            for name, pgid in alive.items():
                if name not in terminated and (everyone or name not in needed):
                    _signal_group(pgid, signal.SIGTERM)
                    terminated.add(name)

        alive = self._wait_for_groups(groups, started + min(grace, timeout), terminate_the_unneeded)
        for name, pgid in alive.items():
            self._report(f"{name} still running after {grace:g} s: SIGKILL to its process group")
            _signal_group(pgid, signal.SIGKILL)
        alive = self._wait_for_groups(alive, started + timeout)
        for name, pgid in alive.items():
            self._report(f"{name}: process group {pgid} still has processes after SIGKILL")
        self._report("all parts stopped" if not alive else "stopped, with the processes named above left")

    def _on_signal(self, signum: int, _frame: FrameType | None) -> None:
        self.request_stop()

    def _announce(self, ready_timeout: float, on_started: Callable[[list[str]], None] | None) -> None:
        not_ready = self.not_ready()
        for name in not_ready:
            part = self._states[name].part
            self._report(
                f"{name} is not ready after {ready_timeout:g} s: still waiting for {part.waiting_for}; "
                f"see {self.log_path(name)} (it is kept running; Ctrl-C stops everything)"
            )
        self._announced = True
        if on_started is not None:
            on_started(not_ready)

    def _needs_ready(self, part: Part) -> bool:
        return all(self._states[need].ready for need in part.needs)

    def _is_ready(self, state: _State) -> bool:
        part = state.part
        if part.health_url and not answers(part.health_url):
            return False
        try:
            return part.ready is None or part.ready.check(state.started_wall)
        except Exception:  # a failing check means "not yet", never the end of the supervisor
            return False

    def _start(self, state: _State) -> None:
        name = state.part.name
        if state.orphan_group is not None:
            if live_groups([state.orphan_group]):
                _signal_group(state.orphan_group, signal.SIGKILL)
            state.orphan_group = None
        path = self.log_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        state.started_at, state.started_wall = time.monotonic(), time.time()
        with path.open("ab") as log:
            log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} start {state.restarts + 1} ===\n".encode())
            log.flush()
            try:
                state.process = subprocess.Popen(  # noqa: S603
                    list(state.part.argv),
                    cwd=self._cwd,
                    env=self._env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as error:
                self._exited(state, f"could not start ({error.strerror or error})")

    def _exited(self, state: _State, how: str) -> None:
        now = time.monotonic()
        if state.process is not None:
            # Whatever the leader left behind in its group is asked to go now and killed at the restart.
            state.orphan_group = state.process.pid
            _signal_group(state.process.pid, signal.SIGTERM)
        state.process = None
        state.ready = False
        state.restarts += 1
        state.delay = self._backoff.next_delay(state.delay, now - state.started_at)
        state.start_at = now + state.delay
        self._report(
            f"{state.part.name} {how}; restart {state.restarts} in {state.delay:g} s; "
            f"log: {self.log_path(state.part.name)}"
        )

    def _groups(self) -> dict[str, int]:
        groups: dict[str, int] = {}
        for name, state in self._states.items():
            if state.process is not None:
                groups[name] = state.process.pid
            elif state.orphan_group is not None:
                groups[name] = state.orphan_group
        return groups

    def _wait_for_groups(
        self,
        groups: dict[str, int],
        deadline: float,
        on_tick: Callable[[dict[str, int]], None] | None = None,
    ) -> dict[str, int]:
        """Wait until the groups have no live process or the deadline passes; the ones still alive."""
        while True:
            alive = self._alive(groups)
            if not alive or time.monotonic() >= deadline:
                return alive
            if on_tick is not None:
                on_tick(alive)
            time.sleep(0.05)

    def _alive(self, groups: dict[str, int]) -> dict[str, int]:
        for state in self._states.values():
            if state.process is not None:
                state.process.poll()  # reap the leader, or its zombie keeps the group "alive"
        alive_ids = live_groups(groups.values())
        return {name: pgid for name, pgid in groups.items() if pgid in alive_ids}

    def _report(self, message: str) -> None:
        out = self._out or sys.stdout
        print(f"{time.strftime('%H:%M:%S')} {message}", file=out, flush=True)
