"""Creating Tracker issues for new Sentry issues, exactly once, through the real CLI over loopback
HTTP: crashes at every step of a create, a lost answer, overlapping runs, the flood cap, routing,
the back-link on Sentry, backfill, and `relink` after the state file is lost."""

from __future__ import annotations

from collections import Counter
from datetime import timedelta
from typing import Any

import pytest

from bridge.clients.tracker import TrackerClient
from bridge.core.new_issue import unique_key
from bridge.store import StateLock, Store
from tests.conftest import PROJECT, BridgeEnv


class Crash(BaseException):
    """The process dies here: nothing after this line runs (only `finally` blocks)."""


def enable_create(env: BridgeEnv, **create: Any) -> None:
    env.config(create={"enabled": True, "query": "is:unresolved", "max_per_cycle": 50, **create})
    env.sync_json()  # the first cycle with creation on sets the first-seen watermark


def tracker_issues_for(env: BridgeEnv, sid: str) -> list[str]:
    """Every Tracker issue created for one Sentry issue (by our unique key)."""
    wanted = unique_key("acme", sid)
    return [key for key in env.tracker.issue_keys() if env.t_issue(key).get("unique") == wanted]


def new_issue(env: BridgeEnv, title: str = "boom", **kw: Any) -> str:
    return env.sentry.add_issue(kw.pop("project", PROJECT), title, **kw)


def test_new_issue_gets_one_tracker_issue_with_its_details(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    enable_create(env)
    sid = new_issue(env, "KeyError: 'user' " + "x" * 300, level="fatal", assignee="alice@example.com",
                    culprit="app.views.login")
    env.sentry.bookmark(sid, "bob@example.com")
    data = env.sync_json()
    assert data["created"] == 1
    [key] = tracker_issues_for(env, sid)
    issue = env.t_issue(key)
    assert len(issue["summary"]) == 255 and issue["summary"].endswith("…")
    assert "app.views.login" in issue["description"] and "fatal" in issue["description"]
    assert issue["type"]["key"] == "bug" and issue["priority"]["key"] == "critical"
    assert issue["tags"] == ["sentry"]
    assert env.t_assignee(key) == "alice" and env.t_followers(key) == {"bob"}
    assert env.status_json()["links"] == 1
    # The follower came from a bookmark: the bridge owns it and removes it with the bookmark.
    env.sentry.bookmark(sid, "bob@example.com", on=False)
    env.sync_json()
    assert env.t_followers(key) == set()
    before = len(env.tracker.writes()) + len(env.sentry.writes())
    env.sync_json()
    assert len(env.tracker.writes()) + len(env.sentry.writes()) == before


def test_crash_right_after_the_intent_row(bridge_env: BridgeEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    env = bridge_env
    enable_create(env)
    sid = new_issue(env)
    real = Store.add_intent

    def crash(self: Store, *args: Any, **kw: Any) -> None:
        real(self, *args, **kw)
        raise Crash

    monkeypatch.setattr(Store, "add_intent", crash)
    with pytest.raises(Crash):
        env.run("sync")
    monkeypatch.setattr(Store, "add_intent", real)
    assert tracker_issues_for(env, sid) == []
    assert env.status_json()["pending_intents"] == 1
    data = env.sync_json()
    assert data["created"] == 1 and data["recovered_intents"] == 0
    assert len(tracker_issues_for(env, sid)) == 1
    assert env.status_json()["pending_intents"] == 0


def test_crash_after_the_create_before_the_link(bridge_env: BridgeEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    env = bridge_env
    enable_create(env)
    sid = new_issue(env)
    real = TrackerClient.create_issue

    def crash(self: TrackerClient, *args: Any, **kw: Any) -> Any:
        real(self, *args, **kw)
        raise Crash

    monkeypatch.setattr(TrackerClient, "create_issue", crash)
    with pytest.raises(Crash):
        env.run("sync")
    monkeypatch.setattr(TrackerClient, "create_issue", real)
    assert len(tracker_issues_for(env, sid)) == 1
    assert env.status_json()["links"] == 0
    data = env.sync_json()
    assert data["recovered_intents"] == 1 and data["created"] == 0
    assert len(tracker_issues_for(env, sid)) == 1
    assert env.status_json()["links"] == 1 and env.status_json()["pending_intents"] == 0


def test_lost_answer_after_the_server_created(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(tracker={"timeout_seconds": 0.3})
    enable_create(env)
    sid = new_issue(env)
    env.tracker.inject("timeout_after", method="POST", path=r"/issues/?$")
    data = env.sync_json()
    assert data["created"] + data["adopted"] == 1
    assert len(tracker_issues_for(env, sid)) == 1
    creates = [r.status for r in env.tracker.requests("POST", r"/issues/?$")]
    assert creates == ["HangUp", 409]  # the retry carried the same unique: refused, nothing duplicated


def test_overlapping_runs_cannot_duplicate(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    enable_create(env)
    sid = new_issue(env)
    with StateLock(env.state_path):
        result = env.run("sync")
    assert result.code == 4 and tracker_issues_for(env, sid) == []
    # Even a second bridge with its own state file (no shared lock) cannot make a duplicate:
    other = env.folder / "other"
    other.mkdir()
    env.sync_json()
    env.config(state={"path": str(other / "bridge.db")})
    env.config(create={"enabled": True})
    env.sync_json()  # its own watermark
    env.sync_json("--backfill")
    assert len(tracker_issues_for(env, sid)) == 1


def test_flood_cap_defers_the_rest_oldest_first(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    enable_create(env, max_per_cycle=3)
    start = env.sentry.now()
    # Distinct first-seen times, none in the future (Sentry lists only issues seen up to now).
    ids = [new_issue(env, f"e{i}", first_seen=start + timedelta(microseconds=100 * i),
                     last_seen=start + timedelta(microseconds=100 * i)) for i in range(7)]
    created: list[str] = []
    for expected, deferred in ((3, 4), (3, 1), (1, 0)):
        data = env.sync_json()
        assert (data["created"], data["deferred"]) == (expected, deferred)
        created += [row["sentry_id"] for row in data["created_detail"]]
    assert created == ids  # oldest first, each once
    assert all(len(tracker_issues_for(env, sid)) == 1 for sid in ids)


def test_routes_send_projects_to_their_queues(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.sentry.add_project("web")
    env.tracker.add_queue("WEB")
    env.config(sentry={"projects": [PROJECT, "web"]})
    enable_create(env, routes={"web": "WEB"})
    a, b = new_issue(env), new_issue(env, project="web")
    env.sync_json()
    assert [k.split("-")[0] for k in tracker_issues_for(env, a)] == ["OPS"]
    assert [k.split("-")[0] for k in tracker_issues_for(env, b)] == ["WEB"]


def test_backlink_shows_the_tracker_key_on_sentry(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    installation = env.sentry.add_app("tracker-bridge")
    env.sentry.add_token("app-token", app="tracker-bridge")
    env.config(sentry={"app_installation": installation, "token": "app-token"})
    enable_create(env, query="is:unresolved is:unlinked")
    sid = new_issue(env)
    data = env.sync_json()
    [key] = tracker_issues_for(env, sid)
    assert data["backlinked"] == 1
    annotations = env.s_issue(sid)["annotations"]
    assert any(key in str(a.get("displayName")) for a in annotations)
    # is:unlinked now excludes it: the next cycles neither create nor back-link again.
    writes = len(env.sentry.writes()) + len(env.tracker.writes())
    again = env.sync_json("--backfill")
    assert again["created"] == 0 and again["backlinked"] == 0
    assert len(env.sentry.writes()) + len(env.tracker.writes()) == writes


def test_existing_issues_wait_for_backfill(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    start = env.sentry.now() - timedelta(days=3)
    old = [new_issue(env, f"old{i}", first_seen=start + timedelta(hours=i)) for i in range(3)]
    enable_create(env)
    assert env.sync_json()["created"] == 0
    env.sentry.set_status(old[1], "resolved")  # no longer matches is:unresolved
    data = env.sync_json("--backfill")
    assert [row["sentry_id"] for row in data["created_detail"]] == [old[0], old[2]]


def test_relink_after_the_state_file_is_lost(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    enable_create(env)
    ids = [new_issue(env, f"e{i}", assignee="alice@example.com") for i in range(4)]
    env.sentry.bookmark(ids[0], "bob@example.com")
    env.sync_json()
    keys = {sid: tracker_issues_for(env, sid)[0] for sid in ids}
    env.sentry.set_status(ids[1], "resolved")
    env.sync_json()
    env.tracker.set_assignee(keys[ids[2]], "bob", by="bob")  # the sides now disagree until synced
    for suffix in ("", "-wal", "-shm"):
        (env.folder / f"bridge.db{suffix}").unlink(missing_ok=True)
    writes = len(env.sentry.writes()) + len(env.tracker.writes())
    result = env.expect(0, "relink")
    assert "4 links rebuilt" in result.out and "1 with fields that disagree" in result.out
    assert len(env.sentry.writes()) + len(env.tracker.writes()) == writes  # relink wrote nothing remote
    status = env.status_json()
    assert status["links"] == 4
    assert [(c["sentry_id"], c["field"]) for c in status["conflicts"]] == [(ids[2], "assignee")]
    data = env.sync_json()
    assert data["created"] == 0 and data["writes_sentry"] == data["writes_tracker"] == 0
    assert len(env.sentry.writes()) + len(env.tracker.writes()) == writes
    assert Counter(len(tracker_issues_for(env, sid)) for sid in ids) == {1: 4}


def test_issue_carrying_the_reference_field_is_adopted_not_duplicated(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    field = env.tracker.add_local_field("OPS", "sentryIssue")
    sid = new_issue(env)
    # Someone already filed a ticket by hand and filled in the Sentry issue id.
    key = env.tracker.add_issue("OPS", "filed by hand")
    env.tracker.set_fields(key, {field: sid})
    enable_create(env, reference_field=field)
    data = env.sync_json("--backfill")
    assert data["adopted"] == 1 and data["created"] == 0
    assert env.status_json()["links"] == 1 and tracker_issues_for(env, sid) == []
    assert [r.status for r in env.tracker.requests("POST", r"/issues/?$")] == []
    # New issues get the reference filled in, so a lost state file is rebuilt from it too.
    other = new_issue(env)
    env.sync_json()
    [created] = tracker_issues_for(env, other)
    assert env.t_issue(created)[field] == other


def test_issue_carrying_the_reference_tag_is_adopted_and_relink_finds_it(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    sid = new_issue(env)
    # Someone filed a ticket by hand and tagged it with the Sentry issue.
    key = env.tracker.add_issue("OPS", "filed by hand", tags=[f"sentry-{sid}"])
    enable_create(env, reference_tag="sentry-{sentry_id}")
    data = env.sync_json("--backfill")
    assert data["adopted"] == 1 and data["created"] == 0
    assert [row["tracker_key"] for row in data["adopted_detail"]] == [key]
    assert [r.status for r in env.tracker.requests("POST", r"/issues/?$")] == []
    other = new_issue(env)
    env.sync_json()
    [created] = tracker_issues_for(env, other)
    assert env.t_issue(created)["tags"] == ["sentry", f"sentry-{other}"]
    # The hand-filed ticket has no unique key of ours: relink finds it by its tag.
    for suffix in ("", "-wal", "-shm"):
        (env.folder / f"bridge.db{suffix}").unlink(missing_ok=True)
    assert "2 links rebuilt" in env.expect(0, "relink").out


def test_reference_tag_must_name_the_sentry_issue(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(create={"reference_tag": "sentry-issue"})
    result = env.expect(2, "status")
    assert "create.reference_tag" in result.err and "{sentry_id}" in result.err
