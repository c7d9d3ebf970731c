"""`conflicts` and `conflicts resolve ID --take sentry|tracker`, end to end over loopback HTTP:
both ways, with and without the immediate sync, and the refusals."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

import pytest

from bridge.store import StateLock, Store

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv


def in_conflict(env: BridgeEnv) -> tuple[str, str, dict[str, dict[str, Any]]]:
    """One synced pair whose status and assignee both changed on both sides, recorded as
    conflicts under the manual policy; returns the conflicts by field."""
    env.config(sync={"conflict": "manual"})
    pair = env.pair()
    env.link(pair)
    env.sync_json()
    sid, key = pair
    env.sentry.set_status(sid, "resolved")
    env.sentry.assign(sid, "alice@example.com")
    env.tracker.set_status(key, "inProgress", by="bob")
    env.tracker.set_assignee(key, "bob", by="bob")
    assert env.sync_json()["conflicts"] == 2
    listed = json.loads(env.expect(0, "conflicts", "--json").out)
    return sid, key, {c["field"]: c for c in listed}


def test_list_shows_open_conflicts(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    assert env.expect(0, "conflicts").out.strip() == "no open conflicts"
    sid, key, conflicts = in_conflict(env)
    assert conflicts["status"]["sentry_value"] == "resolved"
    assert conflicts["status"]["tracker_value"] == "inProgress"
    assert conflicts["assignee"]["tracker_value"] == "bob"
    text = env.expect(0, "conflicts").out
    assert f"#{conflicts['status']['id']} {sid} <-> {key} status: sentry=resolved tracker=inProgress" in text
    assert "conflicts resolve ID --take sentry|tracker" in text


def test_take_sentry_writes_sentry_value_to_tracker_now(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    sid, key, conflicts = in_conflict(env)
    sentry_writes = len(env.sentry.writes())

    result = env.expect(0, "conflicts", "resolve", str(conflicts["status"]["id"]), "--take", "sentry")

    assert "resolved: take sentry" in result.out
    assert env.t_state(key) == ("closed", "fixed")
    assert env.s_state(sid) == ("resolved", None)
    assert len(env.sentry.writes()) == sentry_writes  # nothing went to the taken side
    assert env.t_assignee(key) == "bob"  # the other conflict is untouched
    remaining = env.status_json()["conflicts"]
    assert [c["field"] for c in remaining] == ["assignee"]
    # Settled for good: the next cycle writes nothing and records nothing new.
    report = env.sync_json()
    assert report["writes_sentry"] == report["writes_tracker"] == 0
    assert report["conflicts"] == 1  # the assignee one, still waiting for a person


def test_take_tracker_writes_tracker_value_to_sentry_now(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    sid, key, conflicts = in_conflict(env)
    out = env.expect(0, "conflicts", "resolve", str(conflicts["assignee"]["id"]), "--take", "tracker",
                     "--json").out
    report = json.loads(out[out.index("{"):])
    assert report["writes_sentry"] == 1 and report["writes_tracker"] == 0
    assert env.s_assignee(sid) == "bob@example.com"
    assert env.t_assignee(key) == "bob"

    env.expect(0, "conflicts", "resolve", str(conflicts["status"]["id"]), "--take", "tracker")
    assert env.s_state(sid)[0] == "unresolved"
    assert env.t_state(key) == ("inProgress", None)
    assert env.status_json()["conflicts"] == []
    assert env.sync_json()["planned_writes"] == 0


def test_no_sync_records_the_decision_for_the_next_cycle(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    sid, key, conflicts = in_conflict(env)
    writes = (len(env.sentry.writes()), len(env.tracker.writes()))
    result = env.expect(0, "conflicts", "resolve", str(conflicts["status"]["id"]), "--take", "sentry", "--no-sync")
    assert "the next sync carries it over" in result.out
    assert (len(env.sentry.writes()), len(env.tracker.writes())) == writes
    assert env.t_state(key) == ("inProgress", None)

    report = env.sync_json()
    assert report["writes_tracker"] == 2  # inProgress -[stop_progress]-> open -[close]-> closed
    assert env.t_state(key) == ("closed", "fixed")
    explained = json.loads(env.expect(0, "explain", sid, "--json").out)
    status = next(c for c in explained["conflicts"] if c["field"] == "status")
    assert status["resolution"] == "take_sentry"


def test_a_change_after_the_conflict_is_not_overwritten_blindly(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    sid, key, conflicts = in_conflict(env)
    env.tracker.set_status(key, "needInfo", by="bob")  # after the conflict was recorded
    env.expect(0, "conflicts", "resolve", str(conflicts["status"]["id"]), "--take", "tracker")
    assert env.s_state(sid)[0] == "unresolved"  # needInfo -> unresolved, the value Tracker has now


@pytest.mark.parametrize("problem", ["unknown", "resolved", "direction", "locked"])
def test_refusals(bridge_env: BridgeEnv, problem: str) -> None:
    env = bridge_env
    _sid, _key, conflicts = in_conflict(env)
    cid = str(conflicts["status"]["id"])
    if problem == "unknown":
        assert "no conflict #999" in env.expect(1, "conflicts", "resolve", "999", "--take", "sentry").out
    elif problem == "resolved":
        env.expect(0, "conflicts", "resolve", cid, "--take", "sentry")
        assert "already resolved (take_sentry)" in env.expect(1, "conflicts", "resolve", cid, "--take", "sentry").out
    elif problem == "direction":
        env.config(sync={"fields": {"status": "to_sentry"}})
        result = env.expect(2, "conflicts", "resolve", cid, "--take", "sentry")
        assert "never writes Tracker" in result.err
        assert len(env.status_json()["conflicts"]) == 2
    else:
        with StateLock(env.state_path):
            env.expect(4, "conflicts", "resolve", cid, "--take", "sentry")
        assert len(env.status_json()["conflicts"]) == 2


def test_a_flapping_hold_is_listed_and_resolving_it_takes_a_side_and_lifts_it(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    sid, key = env.pair()
    env.link((sid, key))
    env.sync_json()
    store = Store.open(env.state_path)
    try:
        store.hold(sid, key, "written 6 times in 10 cycles")
    finally:
        store.close()
    env.sentry.set_status(sid, "resolved")
    env.sync_json()
    assert env.t_state(key) == ("open", None)  # held: the cycle leaves it alone
    assert "the link is held back until resolved" in env.expect(0, "conflicts").out
    explained = json.loads(env.expect(0, "explain", sid, "--json").out)
    assert explained["held_back"] is True and explained["planned_writes"] == 0

    [hold] = json.loads(env.expect(0, "conflicts", "--json").out)
    assert hold["id"] == f"hold:{sid}" and hold["field"] == "flapping"
    # A hold is its own state: `status --json` lists it apart from the conflicts.
    assert env.status_json()["conflicts"] == [] and [h["sentry_id"] for h in env.status_json()["held"]] == [sid]
    env.expect(0, "conflicts", "resolve", str(hold["id"]), "--take", "sentry")
    assert env.t_state(key) == ("closed", "fixed")
    assert env.status_json()["conflicts"] == [] and env.status_json()["held"] == []
    env.sentry.set_status(sid, "unresolved")
    env.sync_json()
    assert env.t_state(key)[0] == "open"  # no longer held
