"""Incremental cycles (issue: scale): Tracker is read by `updatedAt` since a cursor, with an
overlap window, between periodic full reads; nothing an incremental pass misses is lost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tests.test_engine import World, make_world


class Clock:
    """One clock for the bridge and the Tracker emulator, moved by hand."""

    def __init__(self) -> None:
        self.now = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        return self.now


def world_with_clock(tmp_path: Path, **sync: object) -> tuple[World, Clock]:
    w = make_world(tmp_path, sync={"full_resync_every": 5, **sync})
    clock = Clock()
    w.tracker.now = clock
    w.engine.clock = clock
    return w, clock


def test_idle_incremental_cycle_reads_only_what_changed(tmp_path: Path) -> None:
    w, clock = world_with_clock(tmp_path)
    links = [w.pair() for _ in range(250)]
    assert w.cycle().full
    clock.now += timedelta(minutes=1)
    assert not w.cycle().full  # still re-reads the 250 just created: they are inside the overlap
    clock.now += timedelta(minutes=5)
    w.cycle()  # the cursor is now past the burst
    clock.now += timedelta(minutes=1)
    w.sentry.clear_log()
    w.tracker.clear_log()
    report = w.cycle()
    assert not report.full and report.ok and report.summary()["planned_writes"] == 0
    # Sentry: 3 group= batches + 2 bookmark searches (alice, bob) + the create listing; users are
    # kept from the full cycle.  Tracker: one search of what changed, nothing per issue.
    assert len(w.sentry.requests()) == 3 + 2 + 1
    assert [r.path for r in w.tracker.requests()] == ["/v3/issues/_search"]
    # A person's change in Tracker is picked up by that one search.
    w.tracker.set_status(links[7][1], "closed", resolution="fixed")
    clock.now += timedelta(minutes=1)
    report = w.cycle()
    assert not report.full and w.s_status(links[7][0]) == "resolved"


def test_overlap_catches_an_update_stamped_exactly_at_the_cursor(tmp_path: Path) -> None:
    w, clock = world_with_clock(tmp_path, overlap_seconds=0)
    sid, key = w.pair()
    w.cycle()  # full: the cursor is this moment
    w.tracker.set_status(key, "closed", resolution="fixed")  # updatedAt == the cursor, to the second
    report = w.cycle()
    assert not report.full and w.s_status(sid) == "resolved"


def test_overlap_window_absorbs_a_clock_behind_ours(tmp_path: Path) -> None:
    w, clock = world_with_clock(tmp_path, overlap_seconds=120)
    sid, key = w.pair()
    w.cycle()
    clock.now += timedelta(minutes=5)
    w.cycle()
    w.tracker.now = lambda: clock.now - timedelta(seconds=90)  # Tracker's clock runs 90 s behind
    w.tracker.set_status(key, "closed", resolution="fixed")
    report = w.cycle()
    assert not report.full and w.s_status(sid) == "resolved"


def test_a_change_the_incremental_poll_missed_arrives_with_the_next_full_resync(tmp_path: Path) -> None:
    w, clock = world_with_clock(tmp_path, overlap_seconds=60, full_resync_every=4)
    sid, key = w.pair()
    w.cycle()
    clock.now += timedelta(hours=1)
    w.cycle()
    # An update stamped far behind the cursor (a badly skewed clock, an import): invisible to
    # the incremental search...
    w.tracker.now = lambda: clock.now - timedelta(hours=2)
    w.tracker.set_status(key, "closed", resolution="fixed")
    w.tracker.now = clock
    fulls = []
    for _ in range(4):
        clock.now += timedelta(minutes=1)
        fulls.append(w.cycle().full)
        if w.s_status(sid) == "resolved":
            break
    # ...but only late, never lost: the periodic full read (every 4th cycle) carries it.
    assert fulls == [False, False, True] and w.s_status(sid) == "resolved"


def test_status_change_costs_one_tracker_request_once_the_workflow_is_known(tmp_path: Path) -> None:
    w, clock = world_with_clock(tmp_path)
    (a, _ka), (b, kb) = w.pair(), w.pair()
    w.cycle()
    w.sentry.set_status(a, "resolved")
    clock.now += timedelta(minutes=1)
    w.cycle()  # learns the transitions from "open"
    w.sentry.set_status(b, "resolved")
    clock.now += timedelta(minutes=1)
    w.tracker.clear_log()
    report = w.cycle()
    assert report.writes("tracker") == 1 and w.t_status(kb) == "closed"
    writes = [r for r in w.tracker.requests() if r.path != "/v3/issues/_search"]
    assert [(r.method, r.path) for r in writes] == [("POST", f"/v3/issues/{kb}/transitions/close/_execute")]


@pytest.mark.parametrize("offset_hours", [-5, 3])
def test_no_change_is_missed_however_the_server_reads_dates_without_an_offset(tmp_path: Path,
                                                                             offset_hours: int) -> None:
    """The reference does not say in which time zone Tracker reads a date sent without an
    offset.  The emulator reads them at UTC-5 and at UTC+3 here; the bridge sends its cursor
    with an explicit offset, so incremental cycles see every change either way."""
    w, clock = world_with_clock(tmp_path, overlap_seconds=0, full_resync_every=1000)
    w.tracker.naive_dates_offset = timedelta(hours=offset_hours)
    links = [w.pair() for _ in range(3)]
    assert w.cycle().full
    for n, (sid, key) in enumerate(links):
        clock.now += timedelta(minutes=2)
        w.tracker.set_status(key, "closed", resolution="fixed")
        report = w.cycle()
        assert not report.full and report.ok
        assert w.s_status(sid) == "resolved", f"change {n} missed by an incremental cycle"
    searches = [r.body for r in w.tracker.requests("POST", r"/_search$")]
    since = searches[-1]["filter"]["updatedAt"]["from"]
    assert since.endswith("+0000") and "." in since, since  # YYYY-MM-DDThh:mm:ss.sss+hhmm
