"""`explain` against both emulators over loopback HTTP: the decision per field and why, agreement
with what `sync --dry-run` plans, and proof that it writes nothing anywhere (no remote write,
state file byte-identical, works while another instance holds the lock)."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bridge.store import StateLock

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv


def synced(env: BridgeEnv, **sentry_kw: Any) -> tuple[str, str]:
    pair = env.pair(**sentry_kw)
    env.link(pair)
    env.sync_json()
    return pair


def explain(env: BridgeEnv, ref: str, expect: int = 0) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(env.expect(expect, "explain", ref, "--json").out)
    return data


def fields(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {f["field"]: f for f in data["fields"]}


def state_dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return list(db.iterdump())


def test_pending_changes_are_explained_and_nothing_is_written(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    sid, key = synced(env)
    env.sentry.set_status(sid, "resolved")
    env.tracker.set_assignee(key, "bob", by="bob")
    env.sentry.bookmark(sid, "alice@example.com")
    env.sentry.clear_log()
    env.tracker.clear_log()
    before_bytes = env.state_path.read_bytes()
    before_dump = state_dump(env.state_path)

    data = explain(env, sid)

    assert env.sentry.writes() == [] and env.tracker.writes() == []
    assert env.state_path.read_bytes() == before_bytes
    assert state_dump(env.state_path) == before_dump
    assert data["link"]["sentry_id"] == sid and data["link"]["tracker_key"] == key
    assert data["sentry"]["state"] == "resolved" and data["sentry"]["bookmarks"] == ["alice@example.com"]
    assert data["tracker"]["status"] == "open" and data["tracker"]["assignee"] == "bob"
    f = fields(data)
    status = f["status"]
    assert status["decision"] == "write tracker"
    assert status["why"] == "sentry changed, tracker unchanged: resolved -> closed"
    assert status["baseline"]["sentry"] == "unresolved.ongoing" and status["baseline"]["tracker"] == "open"
    assert status["sentry_changed"] is True and status["tracker_changed"] is False and status["in_step"] is False
    assert "to_tracker['resolved'] = closed/fixed" in status["rows"]
    assert status["actions"][0]["resolution"] == "fixed"
    assignee = f["assignee"]
    assert assignee["decision"] == "write sentry"
    assert assignee["why"] == "tracker changed, sentry unchanged: bob -> bob@example.com"
    assert "bob -> bob@example.com" in assignee["rows"]
    followers = f["followers"]
    assert followers["decision"] == "write tracker" and followers["actions"][0]["value"] == ["alice"]
    assert data["planned_writes"] == 3
    assert data["policy"]["conflict"] == "sentry"
    assert data["journal"] == []  # the first sync found both sides in step: nothing was written

    # What explain says is what the next cycle plans.
    plan = env.sync_json("--dry-run")["links_detail"][0]["actions"]
    explained = [a for fd in data["fields"] for a in fd["actions"]]
    assert plan == explained


def test_in_step_link_by_tracker_key_with_journal(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    sid, key = synced(env, status="resolved", substatus=None)  # the first sync closes the ticket
    data = explain(env, key.lower())
    assert data["link"]["sentry_id"] == sid
    for name in ("status", "assignee"):
        fd = fields(data)[name]
        assert fd["decision"] == "nothing"
        assert fd["why"] == "in step, and unchanged on both sides since the baseline"
        assert fd["in_step"] is True
    assert data["planned_writes"] == 0
    assert data["journal"][0]["action"] == "WriteTrackerStatus" and data["journal"][0]["outcome"] == "ok"

    text = env.expect(0, "explain", key).out
    assert f"link {sid} <-> {key}" in text
    assert "decision  nothing: in step, and unchanged on both sides since the baseline" in text
    assert "WriteTrackerStatus closed -> ok" in text


def test_direction_off_and_unknown_bookmarks_are_said(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    old = datetime.now(UTC) - timedelta(days=120)
    sid, _key = synced(env, first_seen=old, last_seen=old)
    env.config(sync={"fields": {"assignee": "off"}})
    env.sentry.assign(sid, "alice@example.com")
    f = fields(explain(env, sid))
    assert f["assignee"]["decision"] == "nothing"
    assert f["assignee"]["why"] == "sync.fields.assignee = off: never touched"
    assert f["followers"]["decision"] == "nothing"
    assert "90-day search window" in f["followers"]["why"]

    env.config(sync={"fields": {"followers": "off"}})
    f = fields(explain(env, sid))
    assert f["followers"]["why"] == "sync.fields.followers = off: followers are never touched"


def test_recorded_conflict_and_failure_show_up(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(sync={"conflict": "manual"})
    sid, key = synced(env)
    env.sentry.set_status(sid, "resolved")
    env.tracker.set_status(key, "inProgress", by="bob")
    env.sync_json()
    data = explain(env, sid)
    status = fields(data)["status"]
    assert status["decision"] == "conflict: recorded, nothing written"
    assert status["why"] == "both changed; sync.conflict = manual"
    assert data["conflicts"][0]["field"] == "status" and data["conflicts"][0]["resolved_at"] is None
    assert data["failure"] is None

    env.tracker.inject("status", status=500, method="POST", path=r"/_search$", times=10)
    env.sync_json(expect=1)
    env.tracker.clear_faults()
    data = explain(env, sid)
    assert data["failure"]["attempts"] == 1 and "tracker" in data["failure"]["error"]


def test_runs_beside_a_lock_holder_and_refuses_unknown_refs(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    sid, _key = synced(env)
    with StateLock(env.state_path):
        assert explain(env, sid)["link"]["sentry_id"] == sid
    result = env.expect(1, "explain", "12345")
    assert "not linked: 12345" in result.out


def test_without_a_state_file_it_creates_none(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    result = env.expect(1, "explain", "12345")
    assert "no state file" in result.out
    assert not env.state_path.exists()
