"""Writes overlap the reads of one cycle, and the mass-change guard still holds: a cycle that
ends over the limit writes nothing, whatever its first batches planned.  Also: the per-API cap
on requests in flight holds while readers and writers run together, and a stop asked for in the
middle of the read ends the cycle there."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from hypothesis import given
from hypothesis import strategies as st

from bridge.clients.http import ApiHttp, RetryPolicy
from bridge.core.guard import MassChangeGuard
from bridge.engine import TRACKER_CURSOR, Engine
from bridge.sandbox.http import may_write
from tests.test_engine import World, make_world


class Wire(httpx.BaseTransport):
    """Between the bridge and an emulator: notes every request in one shared order and may
    hold a request until something else happened (`hold(request)` is called before sending)."""

    def __init__(self, side: str, inner: httpx.BaseTransport, sent: list[tuple[str, httpx.Request]],
                 lock: threading.Lock, hold: Callable[[str, httpx.Request], None] | None = None) -> None:
        self.side, self.inner, self.sent, self.lock, self.hold = side, inner, sent, lock, hold

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if self.hold is not None:
            self.hold(self.side, request)
        with self.lock:
            self.sent.append((self.side, request))
        return self.inner.handle_request(request)


def is_read_batch(side: str, request: httpx.Request) -> bool:
    return side == "sentry" and request.method == "GET" and "group" in request.url.params


def wired_world(tmp_path: Path, hold: Callable[[str, httpx.Request], None] | None = None, **settings: object
                ) -> tuple[World, list[tuple[str, httpx.Request]]]:
    sent: list[tuple[str, httpx.Request]] = []
    lock = threading.Lock()
    world = make_world(tmp_path, wrap=lambda side, inner: Wire(side, inner, sent, lock, hold), **settings)
    return world, sent


def test_writes_start_while_later_batches_are_still_read(tmp_path: Path) -> None:
    """With a limit that 300 links cannot cross, the write planned from the first batch goes out
    while the third batch is still being read: the read is held on the wire until the write has
    arrived, so without the overlap it would wait out its timeout."""
    write_seen = threading.Event()
    armed = threading.Event()
    reads = []
    outcome: dict[str, bool] = {}

    def hold(side: str, request: httpx.Request) -> None:
        if not armed.is_set():
            return
        if side == "sentry" and request.method == "PUT":
            write_seen.set()
        elif is_read_batch(side, request):
            reads.append(request)
            if len(reads) == 3:
                outcome["write_before_last_read"] = write_seen.wait(timeout=5)

    w, _ = wired_world(tmp_path, hold, sync={"max_changes_per_cycle": 10_000, "concurrency": 2})
    links = [w.pair() for _ in range(300)]
    assert w.cycle().ok
    w.tracker.set_status(links[0][1], "closed", resolution="fixed")
    armed.set()
    report = w.cycle()
    assert report.ok and report.writes("sentry") == 1
    assert len(reads) == 3 and outcome == {"write_before_last_read": True}
    assert w.s_status(links[0][0]) == "resolved"


def test_no_write_before_the_guard_can_no_longer_be_crossed(tmp_path: Path) -> None:
    """Limit 50, 300 links: changes planned in the first batch wait until the end of the read
    (the last batch could still carry the cycle over the limit), then all go out.  The third
    read is slowed on the wire, so a write released early would be seen before it."""
    armed = threading.Event()

    def slow_third_read(side: str, request: httpx.Request) -> None:
        if armed.is_set() and is_read_batch(side, request):
            with lock:
                reads.append(request)
                third = len(reads) == 3
            if third:
                time.sleep(0.3)

    reads: list[httpx.Request] = []
    lock = threading.Lock()
    w, sent = wired_world(tmp_path, slow_third_read, sync={"max_changes_per_cycle": 50, "concurrency": 2})
    links = [w.pair() for _ in range(300)]
    assert w.cycle().ok
    for sid, _ in links[:2] + links[-10:]:
        w.sentry.set_status(sid, "resolved")
    sent.clear()
    armed.set()
    report = w.cycle()
    assert report.ok and report.writes("tracker") == 12
    last_read = max(i for i, (side, r) in enumerate(sent) if is_read_batch(side, r))
    first_write = min(i for i, (_, r) in enumerate(sent) if may_write(r.method, r.url.path))
    assert first_write > last_read


def test_a_cycle_that_ends_over_the_limit_has_written_nothing(tmp_path: Path) -> None:
    """Changes in the first batch look harmless; the last batch carries the cycle over the
    limit.  Nothing may have been written by then, on either side."""
    w = make_world(tmp_path, sync={"max_changes_per_cycle": 50})
    links = [w.pair() for _ in range(300)]
    assert w.cycle().ok
    w.tracker.set_status(links[0][1], "closed", resolution="fixed")
    w.sentry.set_status(links[1][0], "resolved")
    for sid, _ in links[-60:]:
        w.sentry.set_status(sid, "resolved")
    w.sentry.clear_log()
    w.tracker.clear_log()
    report = w.cycle()
    assert report.refused and "62 links would be changed" in report.refused
    assert w.sentry.writes() == [] and w.tracker.writes() == []
    assert w.s_status(links[0][0]) == "unresolved" and w.t_status(links[1][1]) == "open"
    assert w.cycle(force=True).ok
    assert w.s_status(links[0][0]) == "resolved" and w.t_status(links[-1][1]) == "closed"


def test_writes_in_flight_are_committed_when_a_later_read_ends_the_cycle(tmp_path: Path) -> None:
    """The first batch's write is on its way when the third batch's read is refused (a revoked
    token): the cycle ends as fatal, and the write that happened is still journaled with its
    baseline, never left as a change nobody recorded."""
    def slow_put(side: str, request: httpx.Request) -> None:
        if side == "sentry" and request.method == "PUT":
            time.sleep(0.3)  # still on the wire when the refused read ends the cycle

    w, _ = wired_world(tmp_path, slow_put, sync={"max_changes_per_cycle": 10_000, "concurrency": 2})
    links = [w.pair() for _ in range(300)]
    assert w.cycle().ok
    w.tracker.set_status(links[0][1], "closed", resolution="fixed")
    w.sentry.inject("status", status=401, method="GET", path=r"/issues/$", query=r"(^|&)group=", after=2,
                    times=10, body=b'{"detail": "Invalid token"}')
    report = w.cycle()
    assert report.fatal is not None and "credentials refused" in str(report.fatal)
    assert report.writes("sentry") == 1 and w.s_status(links[0][0]) == "resolved"
    assert [(e["side"], e["field"], e["outcome"]) for e in w.store.journal(links[0][0])][:1] == [
        ("sentry", "status", "ok")]
    w.sentry.clear_faults()
    w.sentry.clear_log()
    assert w.cycle().ok and w.sentry.writes() == [] and w.tracker.writes() == []


def test_a_stop_during_the_read_ends_the_cycle_there(tmp_path: Path) -> None:
    stopping = threading.Event()
    engine: list[Engine] = []

    def stop_at_first_read(side: str, request: httpx.Request) -> None:
        if stopping.is_set() and is_read_batch(side, request):
            engine[0].stop_requested.set()

    w, sent = wired_world(tmp_path, stop_at_first_read, sync={"concurrency": 2})
    engine.append(w.engine)
    links = [w.pair() for _ in range(500)]
    assert w.cycle().ok
    cursor = w.store.cursor(TRACKER_CURSOR)
    for sid, _ in links:
        w.sentry.set_status(sid, "resolved")
    sent.clear()
    stopping.set()
    report = w.cycle(force=True)
    assert report.interrupted
    reads = [r for side, r in sent if is_read_batch(side, r)]
    assert 1 <= len(reads) <= 3  # the batch in hand and those already in flight; 5 without the stop
    assert w.store.cursor(TRACKER_CURSOR) == cursor  # the next cycle looks again from the same place
    stopping.clear()
    w.engine.stop_requested.clear()
    assert w.cycle(force=True).ok
    assert all(w.t_status(key) == "closed" for _, key in links)


def test_requests_in_flight_per_api_stay_within_the_cap() -> None:
    active, peak = 0, 0
    lock = threading.Lock()

    def handler(request: httpx.Request) -> httpx.Response:
        nonlocal active, peak
        with lock:
            active += 1
            peak = max(peak, active)
        time.sleep(0.02)
        with lock:
            active -= 1
        return httpx.Response(200, json={})

    http = ApiHttp("sentry", "http://sentry.test", {}, policy=RetryPolicy(waits=False),
                   transport=httpx.MockTransport(handler), max_in_flight=2)
    threads = [threading.Thread(target=lambda: [http.request("GET", "/x/", safe=True) for _ in range(3)])
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert peak == 2 and http.stats.total == 24


batches = st.lists(st.integers(min_value=0, max_value=100).flatmap(
    lambda n: st.tuples(st.just(n), st.integers(min_value=0, max_value=n))), max_size=30)


@given(batches, st.integers(min_value=1, max_value=2000), st.booleans())
def test_guard_releases_only_what_can_never_cross_the_limit(
    plan: list[tuple[int, int]], limit: int, force: bool
) -> None:
    guard = MassChangeGuard(limit=limit, unplanned=sum(n for n, _ in plan), force=force)
    released_early = False
    was_releasable = False
    for links, changing in plan:
        guard.planned(links, changing)
        if was_releasable:
            assert guard.releasable  # once safe, safe for the rest of the cycle
        was_releasable = guard.releasable
        released_early |= guard.releasable
    total = sum(c for _, c in plan)
    assert guard.unplanned == 0 and guard.changing == total
    assert guard.refused == (total > limit and not force)
    if released_early and not force:
        assert total <= limit  # nothing written in a cycle the guard refuses
    if not guard.refused:
        assert guard.releasable  # nothing held back at the end of a cycle it allows
