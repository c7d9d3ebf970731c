"""A write whose outcome stayed unknown is judged next cycle; the Tracker changelog is read for it
only when the issue moved since, and a history that cannot be read leaves the judging to the value
(engine against both emulators, in-process)."""

from __future__ import annotations

from pathlib import Path

from tests.test_engine import World, make_world


def unknown_close(w: World, kind: str) -> tuple[str, str]:
    """A linked pair whose Sentry issue was resolved and whose close went out with its answer lost
    (`timeout_after`) or never applied (`timeout_before`), the read-back failing too: pending."""
    sid, key = w.pair()
    w.cycle()
    w.sentry.set_status(sid, "resolved")
    w.tracker.inject(kind, method="POST", path=r"/_execute$", times=10)
    # The read-back fails (learning the transitions, with expand=, still works).
    w.tracker.inject("status", status=503, method="GET", path=rf"/issues/{key}$", query=r"^$", times=100)
    report = w.cycle()
    assert not report.ok and w.store.pending_links() == {sid}
    w.tracker.clear_faults()
    w.tracker.clear_log()
    return sid, key


def changelog_reads(w: World) -> int:
    return len(w.tracker.requests("GET", r"/changelog/?$"))


def test_a_write_that_landed_is_confirmed_by_the_history(tmp_path: Path) -> None:
    w = make_world(tmp_path, sync={"concurrency": 1})
    sid, key = unknown_close(w, "timeout_after")
    assert w.t_status(key) == "closed"
    report = w.cycle()
    assert report.ok and w.tracker.writes() == [] and w.store.pending_links() == set()
    assert changelog_reads(w) == 1  # the version moved since the plan: the history was read
    assert [j["outcome"] for j in w.store.journal(sid) if j["field"] == "status"][0] == "landed"


def test_an_issue_that_did_not_move_needs_no_history(tmp_path: Path) -> None:
    w = make_world(tmp_path, sync={"concurrency": 1})
    _sid, key = unknown_close(w, "timeout_before")
    assert w.t_status(key) == "open"
    assert w.cycle().ok and w.t_status(key) == "closed"
    assert changelog_reads(w) == 0  # the same version: nothing happened, the value tells


def test_a_history_that_cannot_be_read_leaves_it_to_the_value(tmp_path: Path) -> None:
    w = make_world(tmp_path, sync={"concurrency": 1})
    sid, key = unknown_close(w, "timeout_after")
    w.tracker.inject("status", status=500, method="GET", path=r"/changelog/?$", times=100)
    report = w.cycle()
    assert report.ok and w.tracker.writes() == [] and w.t_status(key) == "closed"
    assert changelog_reads(w) >= 1 and w.store.pending_links() == set()
