"""Guards against mass changes: a cycle that would change too many links refuses without
--force, a side that suddenly shows none of the linked issues is an outage, and a link the
bridge keeps rewriting is quarantined as a conflict."""

from __future__ import annotations

from pathlib import Path

from bridge.store import Store
from tests.test_engine import make_world


def test_mass_change_refuses_without_force(tmp_path: Path) -> None:
    w = make_world(tmp_path, sync={"max_changes_per_cycle": 2})
    links = [w.pair() for _ in range(4)]
    w.cycle()
    for sid, _ in links[:3]:
        w.sentry.set_status(sid, "resolved")
    w.tracker.clear_log()
    report = w.cycle()
    assert report.refused and "3 links would be changed" in report.refused and not report.ok
    assert w.tracker.writes() == [] and all(w.t_status(key) == "open" for _, key in links)
    assert w.store.cycles()[0]["ok"] == 0
    report = w.cycle(force=True)
    assert report.ok and [w.t_status(key) for _, key in links] == ["closed", "closed", "closed", "open"]


def test_default_limit_is_a_fifth_of_links_at_least_fifty(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    assert w.engine.settings.sync.mass_change_limit(100) == 50
    assert w.engine.settings.sync.mass_change_limit(1000) == 200


def test_a_side_returning_nothing_is_an_outage(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    links = [w.pair() for _ in range(3)]
    w.cycle()
    w.tracker.set_status(links[0][1], "closed", resolution="fixed")
    # Sentry answers the refresh with an empty list (a wrong project scope, a proxy, an outage).
    w.sentry.inject("status", status=200, method="GET", path=r"/issues/$", query=r"(^|&)group=", body=b"[]")
    report = w.cycle()
    assert report.fatal is not None and "outage" in str(report.fatal)
    assert w.store.failures() == [] and w.sentry.writes() == [] and w.store.link_count() == 3


def test_flapping_link_is_quarantined(tmp_path: Path) -> None:
    w = make_world(tmp_path, sync={"flap_limit": 3, "flap_window_cycles": 10})
    (sid, key), (other_sid, other_key) = w.pair(), w.pair()
    w.cycle()
    # Someone (an automation) keeps flipping the Sentry issue: the bridge writes in 3 cycles.
    for state in ("resolved", "unresolved", "resolved"):
        w.sentry.set_status(sid, state)
        report = w.cycle()
        assert report.ok and report.writes("tracker") == 1 and report.quarantined == []
    w.sentry.set_status(sid, "unresolved")
    w.sentry.set_status(other_sid, "resolved")
    report = w.cycle()
    # A 4th write within the window is one too many: held back, the others go on.
    assert report.quarantined == [sid]
    assert w.t_status(key) == "closed" and w.t_status(other_key) == "closed"
    store = Store.open(tmp_path / "state.db")
    # Held back as a state of its own, not as a conflict.
    assert store.held() == {sid} and store.open_conflicts() == []
    # Still held on the next cycles: Sentry says unresolved, Tracker stays closed until an operator acts.
    assert w.cycle().quarantined == [] and w.t_status(key) == "closed"
