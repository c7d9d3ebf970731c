"""Queues past Tracker's 10,000-row search limit (issue 14, item 2): page pagination ends there (the
emulator refuses the page after it and, like the real API, reports no more than 10,000 rows), so
`relink` and the Tracker poll must scroll to see the rest.

One test runs at the real size, through the real CLI; the others lower the limit on both the
emulator and the client to exercise the same paths on a few dozen issues."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.clients.tracker import TrackerClient
from bridge.core.new_issue import unique_key
from bridge.store import Store
from tests.conftest import PROJECT, QUEUE, BridgeEnv
from tests.test_incremental import world_with_clock

PAGED_LIMIT = 10_000  # the real API's


def test_relink_finds_every_linked_issue_of_a_queue_past_10000(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    # Three Tracker issues of ours: one early in the queue, two past row 10,000.
    sids = [env.sentry.add_issue(PROJECT, f"error {n}") for n in range(3)]
    early = env.tracker.add_issue(QUEUE, "ours, early", unique=unique_key("acme", sids[0]))
    env.tracker.add_issues(QUEUE, (f"filed by hand {n}" for n in range(PAGED_LIMIT)))
    late = [env.tracker.add_issue(QUEUE, f"ours, late {n}", unique=unique_key("acme", sid)) for n, sid in
            enumerate(sids[1:])]
    assert late == [f"{QUEUE}-10002", f"{QUEUE}-10003"]
    result = json.loads(env.expect(0, "relink", "--json").out)
    assert result["scanned_tracker_issues"] == PAGED_LIMIT + 3
    assert result["linked"] == 3 and result["missing_in_sentry"] == [] and result["duplicates"] == []
    store = Store.open(env.state_path)
    try:
        links = {(link.sentry_id, link.tracker_key) for link in store.links()}
    finally:
        store.close()
    assert links == {(sids[0], early), (sids[1], late[0]), (sids[2], late[1])}
    # Read by scroll, never a page past the limit, the scroll released, and nothing written.
    searches = env.tracker.requests("POST", r"/_search$")
    assert all(r.status == 200 for r in searches)
    assert sum("scrollId" in dict(r.query) for r in searches) == 10  # 10,003 rows, 1,000 a page
    assert env.tracker.open_scrolls == 0 and env.tracker.writes() == []


def test_relink_at_a_lowered_limit_finds_the_issues_that_sort_last(bridge_env: BridgeEnv,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """The same story on 62 issues: the CLI builds its own client, so the class default is lowered."""
    env = bridge_env
    env.tracker.paged_limit = 50
    monkeypatch.setattr(TrackerClient, "paged_limit", 50)
    env.tracker.add_issues(QUEUE, (f"filed by hand {n}" for n in range(60)))
    sids = [env.sentry.add_issue(PROJECT, f"error {n}") for n in range(2)]
    for sid in sids:
        env.tracker.add_issue(QUEUE, "ours", unique=unique_key("acme", sid))
    result = json.loads(env.expect(0, "relink", "--json").out)
    assert result["scanned_tracker_issues"] == 62 and result["linked"] == 2
    assert env.tracker.open_scrolls == 0


def test_the_tracker_poll_sees_every_change_of_a_mass_update_past_the_limit(tmp_path: Path) -> None:
    w, clock = world_with_clock(tmp_path)
    # 100, not less: the reads of linked issues by key ask for pages of 100.
    w.tracker.paged_limit = w.engine.tracker.paged_limit = 100
    others = w.tracker.add_issues("OPS", (f"other {n}" for n in range(150)))
    links = [w.pair() for _ in range(3)]  # keys after the 150 others: past row 100 in key order
    assert w.cycle().full
    clock.now += timedelta(minutes=10)
    for key in others:  # a bulk edit touches the whole queue ...
        w.tracker.set_fields(key, {"tags": {"add": ["bulk"]}})
    for _, key in links:  # ... and closes the linked ones
        w.tracker.set_status(key, "closed", resolution="fixed")
    clock.now += timedelta(minutes=1)
    w.tracker.clear_log()
    report = w.cycle()
    assert not report.full and report.ok
    assert [w.s_status(sid) for sid, _ in links] == ["resolved"] * 3
    polls = w.tracker.requests("POST", r"/_search$")
    assert any("scrollType" in dict(r.query) for r in polls) and all(r.status == 200 for r in polls)
    assert w.tracker.open_scrolls == 0
    w.store.close()
