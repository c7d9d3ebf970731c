"""The engine against both emulators in-process (httpx.MockTransport): workflow paths and the
transition cache, failure isolation, ambiguous writes, and absence that must not mean deletion."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.clients.http import RetryPolicy
from bridge.config import Settings
from bridge.connect import open_clients
from bridge.engine import CycleReport, Engine
from bridge.sandbox.http import mock_transport
from bridge.sandbox.sentry_emulator import SentryEmulator
from bridge.sandbox.tracker_emulator import TrackerEmulator
from bridge.store import Store


def transition_lists(tracker: TrackerEmulator) -> int:
    """How often the bridge learned the transitions out of a status (an issue read with
    `expand=transitions`: the status and its transitions seen at the same moment)."""
    return sum(1 for r in tracker.requests("GET", r"/issues/[A-Z]+-\d+$") if ("expand", "transitions") in r.query)


@dataclass
class World:
    sentry: SentryEmulator
    tracker: TrackerEmulator
    engine: Engine
    store: Store

    def pair(self, **sentry_kw: Any) -> tuple[str, str]:
        sid = self.sentry.add_issue("backend", "boom", **sentry_kw)
        key = self.tracker.add_issue("OPS", "boom")
        self.store.add_link(sid, key)
        return sid, key

    def cycle(self, **kw: Any) -> CycleReport:
        return self.engine.run_cycle(**kw)

    def t_status(self, key: str) -> str:
        return str(self.tracker.issue_json(key)["status"]["key"])

    def s_status(self, sid: str) -> str:
        return str(self.sentry.issue_json(sid)["status"])


def make_world(
    tmp_path: Path, *, wrap: Callable[[str, httpx.BaseTransport], httpx.BaseTransport] | None = None,
    **settings_kw: Any,
) -> World:
    """Both emulators in-process; `wrap(side, transport)` may put a transport of the test's own
    between the bridge and an emulator (to watch or hold requests on the wire)."""
    sentry = SentryEmulator(org="acme")
    tracker = TrackerEmulator()
    sentry.add_project("backend")
    for email in ("alice@example.com", "bob@example.com"):
        sentry.add_user(email)
    tracker.add_user("alice", "alice@example.com")
    tracker.add_user("bob", "bob@example.com")
    data: dict[str, Any] = {
        "sentry": {"url": "http://sentry.test", "organization": "acme", "token": "sentry-token"},
        "tracker": {"url": "http://tracker.test", "org_id": "1234567", "token": "tracker-token", "queue": "OPS"},
        "state": {"path": tmp_path / "state.db"},
        **settings_kw,
    }
    settings = Settings(**data)
    store = Store.open(settings.state.path)

    def wrap_(side: str, transport: httpx.BaseTransport) -> httpx.BaseTransport:
        return wrap(side, transport) if wrap else transport

    s_client, t_client = open_clients(
        settings, policy=RetryPolicy(attempts=3, waits=False),
        sentry_transport=wrap_("sentry", mock_transport(sentry, "http://sentry.test")),
        tracker_transport=wrap_("tracker", mock_transport(tracker, "http://tracker.test")),
    )
    return World(sentry, tracker, Engine(settings, store, s_client, t_client), store)


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    w = make_world(tmp_path)
    yield w
    w.store.close()


def test_multi_step_path_and_cached_workflow(tmp_path: Path) -> None:
    w = make_world(tmp_path, mapping={"status": {"to_tracker": {
        "unresolved": "open", "unresolved.regressed": "inProgress",
        "resolved": {"status": "closed", "resolution": "fixed"},
        "ignored": {"status": "closed", "resolution": "wontFix"},
    }}})
    links = [w.pair(status="resolved", substatus=None) for _ in range(3)]
    w.cycle()
    assert all(w.t_status(key) == "closed" for _, key in links)
    # One list of transitions from "open" serves all three links.
    assert transition_lists(w.tracker) == 1
    for sid, _ in links:
        w.sentry.set_status(sid, "unresolved", substatus="regressed")
    w.tracker.clear_log()
    report = w.cycle()
    assert report.ok
    assert all(w.t_status(key) == "inProgress" for _, key in links)
    for _, key in links:  # links run on parallel workers: their requests interleave
        executed = [r.path.split("/")[-2] for r in w.tracker.requests("POST", rf"/{key}/.*/_execute$")]
        assert executed == ["reopen", "start_progress"]
    # Every _execute answer taught the transitions of the status it led to: no list needed now.
    assert transition_lists(w.tracker) == 0
    assert w.cycle().summary()["planned_writes"] == 0


def test_a_stale_transition_cache_costs_one_retry_never_a_wrong_status(world: World) -> None:
    a, b = world.pair(), world.pair()
    world.cycle()
    world.sentry.set_status(a[0], "resolved")
    world.cycle()  # learns open -> close -> closed
    assert world.t_status(a[1]) == "closed"
    # The admin renames the transition in the workflow: the cached id is now refused.
    world.tracker.edit_workflow("OPS", "open", {"start_progress": "inProgress", "finish": "closed"})
    world.tracker.clear_log()
    world.sentry.set_status(b[0], "resolved")
    report = world.cycle()
    assert report.ok, report.summary()
    assert world.t_status(b[1]) == "closed"
    executed = [(r.path.split("/")[-2], r.status) for r in world.tracker.requests("POST", r"/_execute$")]
    assert executed == [("close", 409), ("finish", 200)]
    assert transition_lists(world.tracker) == 1


def test_one_failing_link_does_not_stop_the_others(world: World) -> None:
    good, bad = world.pair(), world.pair()
    world.cycle()
    world.sentry.set_status(good[0], "resolved")
    world.sentry.set_status(bad[0], "resolved")
    world.tracker.inject("status", status=422, method="POST", path=rf"/issues/{bad[1]}/transitions/.*/_execute",
                         times=10, body=b'{"errorMessages":["Resolution is required"],"errors":{},"statusCode":422}')
    report = world.cycle()
    assert not report.ok
    assert [o.sentry_id for o in report.failures] == [bad[0]]
    assert world.t_status(good[1]) == "closed" and world.t_status(bad[1]) == "open"
    failure = world.store.failures()[0]
    assert failure["sentry_id"] == bad[0] and failure["attempts"] == 1 and "422" in failure["error"]
    world.tracker.clear_faults()
    assert world.cycle().ok  # recovers by itself once the cause is gone
    assert world.t_status(bad[1]) == "closed" and world.store.failures() == []


def test_lost_patch_answer_is_adopted_not_repeated(world: World) -> None:
    sid, key = world.pair()
    world.cycle()
    world.sentry.assign(sid, "alice@example.com")
    world.tracker.inject("timeout_after", method="PATCH", path=rf"/issues/{key}$")
    report = world.cycle()
    assert report.ok, report.summary()
    assert world.tracker.issue_json(key)["assignee"]["display"]
    patches = world.tracker.requests("PATCH")
    assert [p.status for p in patches] == ["HangUp", 409]  # retried with the version: refused, not applied twice
    world.tracker.clear_log()
    assert world.cycle().summary()["planned_writes"] == 0
    assert world.tracker.writes() == []


def test_ambiguous_transition_is_not_retried_blindly(world: World) -> None:
    sid, key = world.pair()
    world.cycle()
    world.sentry.set_status(sid, "resolved")
    world.tracker.inject("timeout_after", method="POST", path=r"/_execute$")
    report = world.cycle()
    # Not retried blindly: read back, found landed, adopted as done.
    assert report.ok, report.summary()
    assert len(world.tracker.requests("POST", r"/_execute$")) == 1
    assert world.t_status(key) == "closed"
    world.tracker.clear_log()
    report = world.cycle()
    assert report.ok and world.tracker.writes() == []  # in step: no second transition


def test_ambiguous_transition_that_did_not_land_is_tried_again_now(world: World) -> None:
    sid, key = world.pair()
    world.cycle()
    world.sentry.set_status(sid, "resolved")
    world.tracker.inject("timeout_before", method="POST", path=r"/_execute$")
    report = world.cycle()
    # Read back: it did not land, so the same step is sent again at once (within the budget).
    assert report.ok and world.t_status(key) == "closed"
    assert [r.status for r in world.tracker.requests("POST", r"/_execute$")] == ["HangUp", 200]


def test_a_transition_that_never_lands_fails_after_the_retry_budget(world: World) -> None:
    sid, key = world.pair()
    world.cycle()
    world.sentry.set_status(sid, "resolved")
    world.tracker.inject("status", status=503, method="POST", path=r"/_execute$", times=100)
    report = world.cycle()
    assert not report.ok and world.t_status(key) == "open"
    assert len(world.tracker.requests("POST", r"/_execute$")) == 3  # the client's retry budget (attempts=3)
    assert world.store.pending_links() == set()  # a known outcome: nothing left pending
    world.tracker.clear_faults()
    assert world.cycle().ok and world.t_status(key) == "closed"  # the next cycle carries it


def test_failed_bookmark_search_removes_no_follower(world: World) -> None:
    sid, key = world.pair()
    world.sentry.bookmark(sid, "bob@example.com")
    world.cycle()
    followers_before = world.tracker.issue_json(key)["followers"]
    assert [f["id"] for f in followers_before] == [world.tracker.uid_of("bob")]
    world.sentry.bookmark(sid, "bob@example.com", on=False)
    # The group= refresh and alice's bookmark search pass; bob's search fails.
    world.sentry.inject("status", status=500, method="GET", path=r"/issues/$", times=100, after=2)
    report = world.cycle()
    assert world.tracker.issue_json(key)["followers"] == followers_before
    assert report.writes("tracker") == 0


def test_refresh_failure_means_unknown_never_gone(world: World) -> None:
    links = [world.pair() for _ in range(3)]
    world.cycle()
    world.sentry.inject("status", status=500, method="GET", path=r"/issues/$", times=100)
    world.tracker.set_status(links[0][1], "closed", resolution="fixed")
    report = world.cycle()
    assert not report.ok and len(report.failures) == 3
    assert all(world.s_status(sid) == "unresolved" for sid, _ in links)
    assert world.sentry.writes() == [] and world.store.link_count() == 3


def test_resolved_in_next_release_falls_back_without_releases(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    w.sentry.add_project("norel", has_releases=False)
    sid = w.sentry.add_issue("norel", "x")
    key = w.tracker.add_issue("OPS", "x")
    w.store.add_link(sid, key)
    w.cycle()
    w.tracker.set_status(key, "resolved", resolution="fixed")
    report = w.cycle()
    assert report.ok and w.s_status(sid) == "resolved"
    w.tracker.clear_log()
    w.sentry.clear_log()
    assert w.cycle().summary()["planned_writes"] == 0  # the fallback's read-back is the new baseline


def test_dry_run_writes_nothing_anywhere(world: World) -> None:
    sid, key = world.pair(status="resolved", substatus=None)
    report = world.cycle(dry_run=True)
    assert report.summary()["planned_writes"] == 1
    assert world.tracker.writes() == [] and world.sentry.writes() == []
    assert world.store.baselines() == {} and world.store.cycles() == []


def test_a_done_status_on_the_way_gets_the_resolution_too(tmp_path: Path) -> None:
    w = make_world(tmp_path, tracker={"url": "http://tracker.test", "org_id": "1234567", "token": "tracker-token",
                                      "queue": "FLOW"})
    w.tracker.add_queue("FLOW", workflow={
        "statuses": {"open": "new", "resolved": "done", "closed": "done"},
        "transitions": {"open": {"resolve": "resolved"}, "resolved": {"close": "closed", "reopen": "open"},
                        "closed": {"reopen": "open"}},
    })
    sid = w.sentry.add_issue("backend", "x")
    key = w.tracker.add_issue("FLOW", "x")
    w.store.add_link(sid, key)
    w.cycle()
    w.sentry.set_status(sid, "resolved")  # -> closed / fixed: open -[resolve]-> resolved -[close]-> closed
    report = w.cycle()
    assert report.ok, report.summary()
    assert w.t_status(key) == "closed"
    bodies = [r.body for r in w.tracker.requests("POST", r"/_execute$")]
    assert bodies == [{"resolution": "fixed"}, {"resolution": "fixed"}]
