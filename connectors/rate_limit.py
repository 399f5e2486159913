"""Per-integration request rates as Prefect global concurrency limits, so they hold across processes.

Slots are taken from the global limit in chunks, not one API round trip per request: each process keeps
the slots it took for a moment (`TAKE_AHEAD_SECONDS`) and hands them to its next requests. A chunk is as
big as the requests of the last moment (at least one, at most the limit's burst), so a lone request costs
one round trip, a stream of them about two a second, and a slot nobody used in time is given up (never
saved for later: the global limit holds across processes within that moment). A chunk is asked for when
the bucket will have room for it, by this process's own takes (`TakenSlots`), and a request is ten of the
bucket's slots (`SLOTS_PER_REQUEST`): Prefect drops the fraction of a slot at every take. An open limit
holds its slots longer (`OPEN_HOLD_SECONDS`, its bucket sized for that). A batch bound for
several destinations takes their first slots together (`take_ahead`), in one round trip.
"""

from __future__ import annotations

import logging
import math
import random
import statistics
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
from prefect.client.orchestration import SyncPrefectClient, get_client
from prefect.exceptions import ObjectAlreadyExists
from prefect.settings import PREFECT_API_URL

from connectors.request_rate import RequestRate

logger = logging.getLogger(__name__)

_ensured: set[tuple[str, int, float]] = set()
_ensure_lock = threading.Lock()
TAKE_AHEAD_SECONDS = 0.5  # how long a slot taken ahead may wait for its request, at most
# A limit that allows this many requests a second even when its slots are held OPEN_HOLD_SECONDS is open
# (no process of ours sends that many): its bucket is sized for that hold, and chunks last that long.
OPEN_RATE = 1000.0
OPEN_HOLD_SECONDS = 10.0
EXPECTED_SECONDS = 5.0  # a push's estimate is forgotten after this long
MAX_WAIT_SECONDS = 5.0  # between tries for one slot, whatever the server suggests
# Prefect decays a bucket by whole slots since its last take and drops the fraction at every take: with a
# slot a request, that cost most of a request a take (8 % of HubSpot's rate at chunks of 8). A request is
# SLOTS_PER_REQUEST slots, so a take drops less than a tenth of one.
SLOTS_PER_REQUEST = 10
EDGE_REQUESTS = 1.5 / SLOTS_PER_REQUEST  # a take is sent this much after the bucket should have room
# ... but never more than this long after: on a slow limit (40 an hour) that margin was 14 s a request.
EDGE_MAX_SECONDS = 0.1
RETRY_REQUESTS = 0.5  # a take refused at the edge is asked for again once this much more has decayed
# A take the server could not write now (503: SQLite "database is locked" under concurrent writes, 502,
# 429, a dropped connection) is tried again within milliseconds: the Prefect client's own back-off (2, 4,
# 8 s) held a lone request for seconds. After these tries (about 3 s) the error stands.
BUSY_TRIES = 8
BUSY_FIRST_WAIT_SECONDS = 0.02
BUSY_MAX_WAIT_SECONDS = 0.5
BUSY = frozenset({httpx.codes.TOO_MANY_REQUESTS, httpx.codes.BAD_GATEWAY, httpx.codes.SERVICE_UNAVAILABLE})


def _edge(limit: RateLimit) -> float:
    """How far past "room by this process's count" a take is sent, in requests (`EDGE_REQUESTS`, at most
    `EDGE_MAX_SECONDS` of the limit's decay)."""
    return min(EDGE_REQUESTS, limit.slots_per_second * EDGE_MAX_SECONDS)


class TakenSlots:
    """The slots of one global limit this process took and has not used yet; one refill at a time.

    It also follows the server's bucket as this process's own takes left it (`level` requests' worth, as
    of `level_at`), so that a chunk is asked for when the bucket will have room for it, counted from the
    last take, rather than at once (refused) and again after a guessed wait (late by a round trip each
    time). Another process's takes are seen only when a take is refused; the bucket is then taken as
    full. A refused take changes nothing at the server (its write is rolled back).
    """

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.refilling = threading.Lock()
        self.ready: deque[list[float]] = deque()  # [use-by time, slots] of each chunk, oldest first
        self.recent: deque[float] = deque()  # when requests asked for a slot, over the last moment
        self.expected = 0  # requests a push said are coming (`expect`), not yet asked for
        self.expected_until = 0.0
        self.level = 0.0  # requests the server's bucket held after this process's last take
        self.level_at = 0.0  # when, on this process's clock (the middle of that round trip)
        self.trips: deque[float] = deque(maxlen=9)  # the last round trips' seconds
        self.round_trips = 0
        # Round trips are made one at a time while requests wait: their sum is how long Prefect held this
        # process's requests up; `waited_seconds`, how long the bucket did (the vendor's limit at work).
        self.round_trip_seconds = 0.0
        self.waited_seconds = 0.0

    @property
    def blocked_seconds(self) -> float:
        """How long requests waited for slots: round trips and the bucket together."""
        return self.round_trip_seconds + self.waited_seconds

    def expect(self, requests: int) -> None:
        """Requests about to be made (a push's estimate): the next chunk may take their slots at once."""
        with self.lock:
            now = time.monotonic()
            if now >= self.expected_until:
                self.expected = 0
            self.expected += requests
            self.expected_until = now + EXPECTED_SECONDS

    def _fresh(self, now: float) -> None:
        while self.ready and self.ready[0][0] <= now:
            self.ready.popleft()
        while self.recent and self.recent[0] <= now - TAKE_AHEAD_SECONDS:
            self.recent.popleft()
        if now >= self.expected_until:
            self.expected = 0

    def _chunk(self, burst: int, stream: int) -> int:
        """Slots to take for this request: as many as asked for over the last moment, or this one and
        those expected, whichever is more; at most the burst."""
        asked = max(len(self.recent), 1 + self.expected)
        if len(self.recent) > 1:  # a stream: as many as it uses within the hold (fewer, larger takes)
            asked = max(asked, stream)
        return max(1, min(burst, asked))

    def _use_ready(self) -> bool:
        """With the lock held: one fresh ready slot used, if there is one."""
        if not self.ready:
            return False
        oldest = self.ready[0]
        oldest[1] -= 1
        if oldest[1] <= 0:
            self.ready.popleft()
        return True

    def _take(self) -> bool:
        with self.lock:
            self._fresh(time.monotonic())
            return self._use_ready()

    def _lead(self) -> float:
        """Seconds from sending a take to the server reading its clock for it: half a round trip (the
        median of the last few). A take is sent that much before the bucket has room for it."""
        return statistics.median(self.trips) / 2 if self.trips else 0.0

    def _level(self, limit: RateLimit, at: float) -> float:
        """The bucket's level at `at` (in requests), by this process's own takes."""
        return max(0.0, self.level - limit.slots_per_second * (at - self.level_at))

    def _room_in(self, limit: RateLimit, requests: int) -> float:
        """Seconds until a take of `requests` should be sent (0: now), by this process's own takes: a
        little after the bucket has room (the server decays in whole slots of a tenth of a request)."""
        counted = time.monotonic() + self._lead()
        level = self._level(limit, counted)
        if level <= 0:  # empty, as far as this process knows: room for a whole burst, no edge to wait out
            return 0.0
        short = level + _edge(limit) + requests - limit.burst
        return max(0.0, short / limit.slots_per_second)

    def _free(self, limit: RateLimit) -> int:
        """Whole requests' slots free when a take sent now is counted, by this process's own takes."""
        counted = time.monotonic() + self._lead()
        return math.floor(limit.burst - self._level(limit, counted) - _edge(limit))

    def _took(self, limit: RateLimit, requests: int, sent: float, back: float, sharing: int = 1) -> None:
        """A take of `requests` came back (with the lock held): its slots, usable up to the hold after
        the server counted them (never later), and the bucket's level after it."""
        middle = (sent + back) / 2
        self.level = self._level(limit, middle) + requests
        self.level_at = middle
        self.trips.append(back - sent)
        self.round_trips += 1
        self.round_trip_seconds += (back - sent) / sharing  # a shared round trip's sum is its time
        self.ready.append([sent + limit.hold_seconds, requests])

    def wanted_ahead(self, burst: int) -> int:
        """Slots to take ahead for the requests expected now (none when enough are ready)."""
        with self.lock:
            self._fresh(time.monotonic())
            return 0 if self.ready else max(1, min(burst, self.expected))

    def took_ahead(self, limit: RateLimit, requests: int, trip: tuple[float, float], sharing: int) -> None:
        """`take_ahead` took `requests` slots in one round trip (`trip`: sent, back) for `sharing` limits."""
        with self.lock:
            self._took(limit, requests, *trip, sharing=sharing)

    def acquire(self, limit: RateLimit) -> None:
        """One slot for one request: a slot taken ahead, or a new chunk, asked for when the bucket has
        room for it (see the class)."""
        with self.lock:
            now = time.monotonic()
            self._fresh(now)
            self.recent.append(now)
            self.expected = max(0, self.expected - 1)
            if self._use_ready():
                return
        with self.refilling:
            if self._take():  # another thread's refill brought enough
                return
            with self.lock:
                chunk = self._chunk(limit.burst, int(limit.hold_seconds * limit.slots_per_second))
                wait = self._room_in(limit, chunk)
                alone = self._room_in(limit, 1)
                if wait > alone + limit.hold_seconds:  # a slow bucket: this request goes when it has room
                    chunk, wait = 1, alone
            refused = 0
            while True:
                if wait > 0:
                    time.sleep(wait)
                    with self.lock:
                        self.waited_seconds += wait
                        if chunk > 1 and not refused:  # a stream held back: every slot there by now
                            chunk = max(chunk, min(limit.burst, self._free(limit)))
                sent = time.monotonic()
                refusal = _increment([limit.name], chunk)
                back = time.monotonic()
                with self.lock:
                    if refusal is None:
                        self._took(limit, chunk, sent, back)
                        self._use_ready()  # this request's
                        return
                    self.trips.append(back - sent)
                    self.round_trips += 1
                    self.round_trip_seconds += back - sent
                    refused += 1
                    if refused == 1:  # short by a fraction of a slot, or another process took some
                        wait = RETRY_REQUESTS / limit.slots_per_second
                    else:  # another process took slots: the bucket is full, as far as we can tell
                        self.level, self.level_at = float(limit.burst), (sent + back) / 2
                        wait = self._room_in(limit, chunk) * random.uniform(1.0, 1.3)
                    wait = min(wait, MAX_WAIT_SECONDS)


_clients: dict[str, SyncPrefectClient] = {}
_clients_lock = threading.Lock()
_increments = 0


def _api() -> SyncPrefectClient:
    """This process's Prefect client for the limits, one per API URL, kept open: a new client for every
    chunk cost about 47 ms a take against 10 ms on an open one (a test harness, quiet machine)."""
    url = str(PREFECT_API_URL.value() or "")
    with _clients_lock:
        client = _clients.get(url)
        if client is None:
            client = get_client(sync_client=True)
            client.__enter__()
            _clients[url] = client
        return client


def increments() -> int:
    """Takes this process asked the Prefect API for (each one call, however many limits it names)."""
    return _increments


def _increment(names: Sequence[str], requests: int) -> float | None:
    """The slots of `requests` in each named limit, all or none (the server's increment): None when
    taken, else the seconds to wait. A busy server is asked again at once, a few times, never with seconds
    of back-off."""
    global _increments
    http = _api()._client  # the client's own connection, base URL, auth and TLS settings
    body = {"names": list(names), "slots": requests * SLOTS_PER_REQUEST, "mode": "rate_limit"}
    with _clients_lock:
        _increments += 1
    for attempt in range(BUSY_TRIES):
        # httpx's plain send, past Prefect's retrying one: a busy answer comes back here at once.
        request = http.build_request("POST", "/v2/concurrency_limits/increment", json=body)
        last = attempt == BUSY_TRIES - 1
        try:
            response = httpx.Client.send(http, request)
        except httpx.TransportError:
            if last:
                raise
            _busy_wait(attempt)
            continue
        if response.status_code == httpx.codes.LOCKED:
            try:
                return max(0.01, float(response.headers.get("Retry-After", "0.1")))
            except ValueError:
                return 0.1
        if response.status_code in BUSY and not last:
            _busy_wait(attempt)
            continue
        response.raise_for_status()
        return None
    raise AssertionError("unreachable")


def _busy_wait(attempt: int) -> None:
    wait = min(BUSY_MAX_WAIT_SECONDS, BUSY_FIRST_WAIT_SECONDS * 2**attempt)
    time.sleep(wait * random.uniform(0.5, 1.5))


_taken: dict[str, TakenSlots] = {}
_taken_lock = threading.Lock()


def taken_slots(name: str) -> TakenSlots:
    with _taken_lock:
        return _taken.setdefault(name, TakenSlots())


def expect_requests(integration: str, requests: int) -> None:
    """A push to `integration` is about to make about `requests` requests (see `TakenSlots.expect`)."""
    taken_slots(limit_name(integration)).expect(requests)


def limit_name(integration: str) -> str:
    return f"ennu-rate-{integration}"


@dataclass(frozen=True)
class RateLimit:
    """One integration's vendor limit (`190/10s`) as a token bucket no window can exceed (see
    connectors/request_rate.py): `burst` slots at once, then `slots_per_second`."""

    integration: str
    rate: RequestRate

    @property
    def name(self) -> str:
        return limit_name(self.integration)

    @property
    def hold_seconds(self) -> float:
        """How long a slot taken ahead may wait for its request: at most a quarter of the window (a
        shorter hold would cost a Prefect round trip every few requests; a longer one, rate). An open limit
        (`OPEN_RATE` requests a second even with a hold of `OPEN_HOLD_SECONDS`) holds its slots that long:
        a busy Prefect server's round trip took as long as the short hold (0.2 s at load 7), so every push
        thread waited on one at every chunk."""
        if self.rate.bucket(OPEN_HOLD_SECONDS)[1] >= OPEN_RATE:
            return OPEN_HOLD_SECONDS
        return min(TAKE_AHEAD_SECONDS, self.rate.seconds / 4)

    @property
    def burst(self) -> int:
        return self.rate.bucket(self.hold_seconds)[0]

    @property
    def slots_per_second(self) -> float:
        return self.rate.bucket(self.hold_seconds)[1]

    def ensure(self) -> None:
        """Create or update the global limit once per process (two processes racing is fine): the bucket
        in slots of a tenth of a request (`SLOTS_PER_REQUEST`)."""
        key = (self.name, self.burst, self.slots_per_second)
        with _ensure_lock:
            if key in _ensured:
                return
            with get_client(sync_client=True) as client:
                try:
                    client.upsert_global_concurrency_limit_by_name(
                        self.name,
                        self.burst * SLOTS_PER_REQUEST,
                        slot_decay_per_second=self.slots_per_second * SLOTS_PER_REQUEST,
                    )
                except ObjectAlreadyExists:
                    logger.debug("rate limit %s created concurrently", self.name)
            _ensured.add(key)

    def acquire(self) -> None:
        """Block until one request may be sent (a slot this process took a moment ago, or a new chunk)."""
        self.ensure()
        taken_slots(self.name).acquire(self)


def take_ahead(limits: Sequence[RateLimit]) -> None:
    """The slots a batch's pushes to several destinations expect (`expect_requests`), taken for all of them
    in as few Prefect round trips as there are distinct counts, instead of one per destination, each push
    waiting on its own. The server takes all of a call's limits or none: when one is full, each push takes
    its own as before."""
    wanted: dict[int, list[RateLimit]] = {}
    for limit in limits:
        limit.ensure()
        slots = taken_slots(limit.name).wanted_ahead(limit.burst)
        if slots:
            wanted.setdefault(slots, []).append(limit)
    for slots, group in wanted.items():
        if len(group) < 2:  # a lone limit is taken by its push, as early
            continue
        sent = time.monotonic()
        try:
            if _increment([limit.name for limit in group], slots) is not None:
                continue  # one is full: each push waits for its own
        except httpx.HTTPError:
            logger.warning("rate-limit slots not taken ahead; each push takes its own", exc_info=True)
            continue
        back = time.monotonic()
        for limit in group:
            taken_slots(limit.name).took_ahead(limit, slots, (sent, back), len(group))


def forget_ensured_limits() -> None:
    """For tests that point the process at another Prefect server."""
    with _ensure_lock:
        _ensured.clear()
    with _taken_lock:
        _taken.clear()
    with _clients_lock:
        for client in _clients.values():
            client.__exit__(None, None, None)
        _clients.clear()
