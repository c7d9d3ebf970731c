"""Issue 12: priority, declared once in `bridge.core.fields`, synced both ways through the real
CLI over loopback HTTP against both emulators.

Sentry priorities are `low`, `medium`, `high`; Tracker's are catalog keys (`trivial` ... `blocker`).
The default tables map high -> critical, medium -> normal, low -> minor one way, and blocker and
critical -> high, normal -> medium, minor and trivial -> low the other way (many-to-one).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import PROJECT

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv


def s_priority(env: BridgeEnv, sid: str) -> str | None:
    return env.s_issue(sid).get("priority")


def t_priority(env: BridgeEnv, key: str) -> str | None:
    return (env.t_issue(key).get("priority") or {}).get("key")


def priority_writes(env: BridgeEnv, key: str, sid: str) -> tuple[list[Any], list[Any]]:
    """The bodies of the priority writes each emulator answered 200 to."""
    tracker = [r.body for r in env.tracker.requests("PATCH", rf"/issues/{key}/?$")
               if r.status == 200 and isinstance(r.body, dict) and "priority" in r.body]
    sentry = [r.body for r in env.sentry.requests("PUT", rf"/issues/{sid}/$")
              if r.status == 200 and isinstance(r.body, dict) and "priority" in r.body]
    return tracker, sentry


def journal(env: BridgeEnv, sid: str) -> list[tuple[str, str, str, str]]:
    import sqlite3

    with sqlite3.connect(env.state_path) as db:
        rows = db.execute("SELECT field, action, value, outcome FROM journal WHERE sentry_id = ? ORDER BY id",
                          [sid]).fetchall()
    return [tuple(r) for r in rows]


@pytest.fixture
def env(bridge_env: BridgeEnv) -> BridgeEnv:
    bridge_env.config(sync={"fields": {"priority": "both"}})
    return bridge_env


def linked(env: BridgeEnv, *, priority: str = "medium", tracker_priority: str | None = None) -> tuple[str, str]:
    sid, key = env.pair(priority=priority)
    if tracker_priority is not None:
        env.tracker.set_fields(key, {"priority": tracker_priority})
    env.link((sid, key))
    return sid, key


def test_a_new_link_takes_the_sentry_priority(env: BridgeEnv) -> None:
    sid, key = linked(env, priority="high")
    assert t_priority(env, key) == "normal"
    report = env.sync_json()
    assert t_priority(env, key) == "critical"
    assert report["writes_tracker"] == 1 and report["writes_sentry"] == 0
    assert ("priority", "WriteTrackerPriority", "critical", "ok") in journal(env, sid)
    # In step now: the next cycle writes nothing.
    again = env.sync_json()
    assert (again["writes_tracker"], again["writes_sentry"]) == (0, 0)


def test_a_new_link_already_in_step_writes_nothing(env: BridgeEnv) -> None:
    sid, key = linked(env, priority="medium")  # Tracker's default is normal: in step
    report = env.sync_json()
    assert (report["writes_tracker"], report["writes_sentry"]) == (0, 0)
    assert priority_writes(env, key, sid) == ([], [])


def test_sentry_priority_changes_reach_tracker(env: BridgeEnv) -> None:
    sid, key = linked(env)
    env.sync_json()
    env.sentry.set_priority(sid, "low")
    env.sync_json()
    assert t_priority(env, key) == "minor"
    env.sentry.set_priority(sid, "high")
    env.sync_json()
    assert t_priority(env, key) == "critical"
    assert priority_writes(env, key, sid) == ([{"priority": "minor"}, {"priority": "critical"}], [])


def test_tracker_priority_changes_reach_sentry(env: BridgeEnv) -> None:
    sid, key = linked(env)
    env.sync_json()
    env.tracker.set_fields(key, {"priority": "minor"}, by="bob")
    env.sync_json()
    assert s_priority(env, sid) == "low"
    assert priority_writes(env, key, sid) == ([], [{"priority": "low"}])


def test_many_to_one_never_flips_the_tracker_value_back(env: BridgeEnv) -> None:
    sid, key = linked(env)
    env.sync_json()
    # blocker -> high in Sentry; high would map to critical, but blocker already means high.
    env.tracker.set_fields(key, {"priority": "blocker"}, by="bob")
    env.sync_json()
    assert (s_priority(env, sid), t_priority(env, key)) == ("high", "blocker")
    for _ in range(2):
        report = env.sync_json()
        assert (report["writes_tracker"], report["writes_sentry"]) == (0, 0)
    assert t_priority(env, key) == "blocker"
    assert priority_writes(env, key, sid) == ([], [{"priority": "high"}])
    # The same from the other side: trivial and minor both mean low.
    env.tracker.set_fields(key, {"priority": "trivial"}, by="bob")
    env.sync_json()
    assert (s_priority(env, sid), t_priority(env, key)) == ("low", "trivial")
    env.sync_json()
    assert t_priority(env, key) == "trivial"


def test_a_conflict_follows_sync_conflict(env: BridgeEnv) -> None:
    env.config(sync={"conflict": "manual"})
    sid, key = linked(env)
    env.sync_json()
    env.sentry.set_priority(sid, "high")
    env.tracker.set_fields(key, {"priority": "minor"}, by="bob")
    report = env.sync_json()
    assert (report["writes_tracker"], report["writes_sentry"]) == (0, 0)
    assert (s_priority(env, sid), t_priority(env, key)) == ("high", "minor")
    rows = json.loads(env.expect(0, "conflicts", "--json").out)
    assert [(r["field"], r["sentry_value"], r["tracker_value"]) for r in rows] == [("priority", "high", "minor")]
    # The operator takes Sentry's side: Tracker gets critical, the conflict is over.
    env.expect(0, "conflicts", "resolve", str(rows[0]["id"]), "--take", "sentry")
    assert t_priority(env, key) == "critical"
    assert json.loads(env.expect(0, "conflicts", "--json").out) == []


def test_sentry_wins_a_conflict_when_configured(env: BridgeEnv) -> None:
    sid, key = linked(env)  # base config: sync.conflict = sentry
    env.sync_json()
    env.sentry.set_priority(sid, "low")
    env.tracker.set_fields(key, {"priority": "blocker"}, by="bob")
    env.sync_json()
    assert (s_priority(env, sid), t_priority(env, key)) == ("low", "minor")


def test_an_unmapped_value_is_reported_and_left_alone(env: BridgeEnv) -> None:
    env.config(mapping={"priority": {"to_sentry": {"normal": "medium", "minor": "low"}}})
    sid, key = linked(env)
    env.sync_json()
    env.tracker.set_fields(key, {"priority": "blocker"}, by="bob")
    report = env.sync_json()
    assert s_priority(env, sid) == "medium"  # never guessed
    assert report["unmapped"] == 1
    assert ("priority", "unmapped", "blocker", "skipped") in journal(env, sid)
    explained = json.loads(env.expect(0, "explain", sid, "--json").out)
    field = next(f for f in explained["fields"] if f["field"] == "priority")
    assert field["decision"] == "not synced: no counterpart"
    assert "no to_sentry row for 'blocker'" in field["why"]


def test_the_field_off_never_touches_priority(bridge_env: BridgeEnv) -> None:
    env = bridge_env  # priority is off by default
    sid, key = env.pair(priority="high")
    env.link((sid, key))
    env.sync_json()
    env.sentry.set_priority(sid, "low")
    env.tracker.set_fields(key, {"priority": "blocker"}, by="bob")
    env.sync_json()
    assert (s_priority(env, sid), t_priority(env, key)) == ("low", "blocker")
    assert priority_writes(env, key, sid) == ([], [])
    assert not [j for j in journal(env, sid) if j[0] == "priority"]


def test_one_direction_only(env: BridgeEnv) -> None:
    env.config(sync={"fields": {"priority": "to_tracker"}})
    sid, key = linked(env)
    env.sync_json()
    env.tracker.set_fields(key, {"priority": "blocker"}, by="bob")
    env.sync_json()
    assert s_priority(env, sid) == "medium"  # Tracker's change is remembered, not carried
    env.sentry.set_priority(sid, "low")
    env.sync_json()
    assert t_priority(env, key) == "minor"


def test_explain_shows_priority(env: BridgeEnv) -> None:
    sid, key = linked(env, priority="high")
    text = env.expect(0, "explain", sid).out
    assert "priority [both]" in text
    assert "to_tracker['high'] = critical" in text
    assert "priority high" in text and "priority normal" in text
    data = json.loads(env.expect(0, "explain", sid, "--json").out)
    field = next(f for f in data["fields"] if f["field"] == "priority")
    assert field["now"] == {"sentry": "high", "tracker": "normal"}
    assert field["actions"][0]["action"] == "WriteTrackerPriority"
    assert data["sentry"]["priority"] == "high" and data["tracker"]["priority"] == "normal"


@pytest.mark.parametrize("side", ["tracker", "sentry"])
def test_a_priority_write_whose_answer_was_lost_is_not_written_twice(env: BridgeEnv, side: str) -> None:
    sid, key = linked(env)
    env.sync_json()
    if side == "tracker":
        env.sentry.set_priority(sid, "high")
        env.tracker.inject("timeout_after", method="PATCH", path=rf"/issues/{key}/?$", times=1000)
    else:
        env.tracker.set_fields(key, {"priority": "blocker"}, by="bob")
        env.sentry.inject("timeout_after", method="PUT", path=rf"/issues/{sid}/$", times=1000)
    env.run("sync", "--json")
    env.tracker.clear_faults()
    env.sentry.clear_faults()
    assert (s_priority(env, sid), t_priority(env, key)) == (("high", "critical") if side == "tracker"
                                                            else ("high", "blocker"))
    report = env.sync_json()
    assert (report["writes_tracker"], report["writes_sentry"]) == (0, 0)
    outcomes = [j[3] for j in journal(env, sid) if j[0] == "priority"]
    assert outcomes and outcomes[-1] in ("landed", "ok"), outcomes
    # A person's later change is still carried: the baseline is where the write landed.
    if side == "tracker":
        env.tracker.set_fields(key, {"priority": "minor"}, by="bob")
        env.sync_json()
        assert s_priority(env, sid) == "low"
    else:
        env.sentry.set_priority(sid, "low")
        env.sync_json()
        assert t_priority(env, key) == "minor"


def doctor_checks(env: BridgeEnv) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in json.loads(env.run("doctor", "--json").out)["checks"]}


def test_doctor_checks_mapped_priorities_exist(env: BridgeEnv) -> None:
    assert doctor_checks(env)["tracker: priorities"]["level"] == "pass"  # the default tables
    env.config(mapping={"priority": {"to_tracker": {"high": "urgent"}, "to_sentry": {"major": "high"}}})
    check = doctor_checks(env)["tracker: priorities"]
    assert check["level"] == "fail"
    notes = "\n".join(check["notes"])
    assert "mapping.priority.to_tracker.high = \"urgent\"" in notes
    assert "mapping.priority.to_sentry.major" in notes
    assert "blocker" in notes  # what Tracker has
    env.config(sync={"fields": {"priority": "off"}})  # not synced: not checked
    assert "tracker: priorities" not in doctor_checks(env)


def test_config_refuses_a_sentry_priority_that_does_not_exist(env: BridgeEnv) -> None:
    env.config(mapping={"priority": {"to_sentry": {"blocker": "urgent"}, "to_tracker": {"critical": "high"}}})
    result = env.expect(2, "sync")
    assert "mapping.priority.to_sentry.blocker" in result.err
    assert "mapping.priority.to_tracker.critical" in result.err
    assert "Traceback" not in result.err


def test_a_new_issue_is_created_with_the_mapped_priority(env: BridgeEnv) -> None:
    env.config(create={"enabled": True, "query": "is:unresolved"})
    env.sync_json()  # the first cycle with creation on sets the first-seen watermark
    sid = env.sentry.add_issue(PROJECT, "Brand new", level="warning", priority="high")
    assert env.sync_json()["created"] == 1
    [key] = env.tracker.issue_keys()
    assert t_priority(env, key) == "critical"  # not [create.levels] warning's minor
    assert priority_writes(env, key, sid) == ([], [])  # it was created so, not set afterwards
    report = env.sync_json()
    assert (report["writes_tracker"], report["writes_sentry"]) == (0, 0)
    assert s_priority(env, sid) == "high"
