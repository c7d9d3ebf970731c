"""The whole bridge end to end: the real CLI over loopback HTTP against both emulators.

Every test checks the emulators' state (the truth) and, where it matters, their request logs;
the CLI's own output is only a second witness.  The harness is `bridge_env` in conftest.py.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bridge.sandbox.http import EmuRequest, EmuResponse
from bridge.store import StateLock

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv

ROOT = Path(__file__).resolve().parent.parent
EXECUTE = r"/transitions/[^/]+/_execute/?$"


def synced(env: BridgeEnv, count: int = 1, **sentry_kw: Any) -> list[tuple[str, str]]:
    """`count` new pairs, linked and through a first sync (so every link has a baseline)."""
    pairs = [env.pair(**sentry_kw) for _ in range(count)]
    env.link(*pairs)
    env.sync_json()
    return pairs


def state_dump(path: Path) -> list[str]:
    with sqlite3.connect(path) as db:
        return list(db.iterdump())


def executed_transitions(env: BridgeEnv, key: str) -> list[str]:
    return [r.path.rstrip("/").split("/")[-2] for r in env.tracker.requests("POST", f"/issues/{key}{EXECUTE}")
            if r.status == 200]


# -- 1-3: status ---------------------------------------------------------------------------------


def test_status_travels_both_ways(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    [(sid, key)] = synced(env)

    env.sentry.set_status(sid, "resolved")
    report = env.sync_json()
    assert env.t_state(key) == ("closed", "fixed")
    assert (report["writes_sentry"], report["writes_tracker"]) == (0, 1)
    assert executed_transitions(env, key) == ["close"]

    # A person reopens the ticket, then closes it again: Sentry follows each time.
    env.tracker.set_status(key, "open", by="bob")
    env.sync_json()
    assert env.s_state(sid)[0] == "unresolved"
    env.tracker.set_status(key, "closed", resolution="fixed", by="bob")
    env.sync_json()
    assert env.s_state(sid) == ("resolved", None)
    assert env.t_state(key) == ("closed", "fixed")
    assert len(env.sentry.requests("PUT", f"/issues/{sid}/")) == 2


def test_ignored_issue_stays_ignored_when_its_ticket_is_closed(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    [(sid, key)] = synced(env)

    env.sentry.set_status(sid, "ignored", substatus="archived_forever")
    env.sync_json()
    assert env.t_state(key) == ("closed", "wontFix")
    # closed maps back to resolved, but an ignored issue is already in step with it.
    for _ in range(2):
        report = env.sync_json()
        assert report["planned_writes"] == 0
    assert env.s_state(sid) == ("ignored", "archived_forever")
    assert env.sentry.requests("PUT") == []

    # Even when Tracker is the source of new links, an ignored issue and a closed ticket agree.
    env.config(sync={"link_source": "tracker"})
    sid2, key2 = env.pair(status="ignored", substatus="archived_until_escalating",
                          tracker={"status": "closed", "resolution": "fixed"})
    env.link((sid2, key2))
    env.sync_json()
    env.sync_json()
    assert env.s_state(sid2) == ("ignored", "archived_until_escalating")
    assert env.t_state(key2) == ("closed", "fixed")
    assert env.sentry.requests("PUT") == []
    assert [r for r in env.tracker.writes() if f"/{key2}/" in r.path + "/"] == []


def test_regression_reopens_and_walks_a_multi_step_path(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    [(sid, key)] = synced(env)
    env.sentry.set_status(sid, "resolved")
    env.sync_json()
    assert env.t_state(key) == ("closed", "fixed")

    env.sentry.set_status(sid, "unresolved", substatus="regressed")
    env.sync_json()
    assert env.t_state(key) == ("open", None)
    assert env.s_state(sid) == ("unresolved", "regressed")

    # With regressions mapped to inProgress, closed -> inProgress needs two transitions.
    env.config(mapping={"status": {"to_tracker": {"unresolved.regressed": "inProgress"}}})
    env.sentry.set_status(sid, "resolved")
    env.sync_json()
    assert env.t_state(key) == ("closed", "fixed")
    env.tracker.clear_log()
    env.sentry.set_status(sid, "unresolved", substatus="regressed")
    report = env.sync_json()
    assert env.t_state(key) == ("inProgress", None)
    assert executed_transitions(env, key) == ["reopen", "start_progress"]
    assert report["writes_tracker"] == 2
    assert env.s_state(sid) == ("unresolved", "regressed")


# -- 4-5: people ---------------------------------------------------------------------------------


def test_assignee_both_ways_with_override_unassign_and_unmapped(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    (s1, t1), (s2, t2), (s3, t3), (s4, t4), (s5, t5) = synced(env, 5)

    env.sentry.assign(s1, "alice@example.com")  # matched by e-mail
    env.tracker.set_assignee(t2, "bob", by="bob")
    env.sentry.assign(s3, "carol@corp.example")  # matched by the [mapping.users] override
    env.tracker.set_assignee(t4, "carol", by="carol")
    env.sync_json()
    assert env.t_assignee(t1) == "alice"
    assert env.s_assignee(s2) == "bob@example.com"
    assert env.t_assignee(t3) == "carol"
    assert env.s_assignee(s4) == "carol@corp.example"

    # Unassigning travels too, in both directions.
    env.sentry.assign(s1, None)
    env.tracker.set_assignee(t4, None, by="carol")
    env.sync_json()
    assert env.t_assignee(t1) is None
    assert env.s_assignee(s4) is None

    # dan has no Tracker account: reported, never guessed, nothing written.
    env.sentry.assign(s5, "dan@example.com")
    tracker_writes = len(env.tracker.writes())
    for _ in range(2):
        report = env.sync_json(expect=0)
        assert report["unmapped"] == 1
        [detail] = report["links_detail"]
        assert detail["unmapped"] == ["assignee:sentry:dan@example.com"]
    assert len(env.tracker.writes()) == tracker_writes
    assert env.t_assignee(t5) is None
    assert env.s_assignee(s5) == "dan@example.com"
    # The other links kept their values.
    assert (env.t_assignee(t2), env.t_assignee(t3)) == ("bob", "carol")


def test_bookmarks_become_followers_and_only_bridge_followers_are_removed(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    [(sid, key)] = synced(env)
    env.tracker.add_follower(key, "carol", by="carol")  # by hand, no bookmark
    env.tracker.add_follower(key, "alice", by="alice")  # by hand, and she bookmarks too
    env.sentry.bookmark(sid, "bob@example.com")
    env.sentry.bookmark(sid, "alice@example.com")
    env.sync_json()
    assert env.t_followers(key) == {"alice", "bob", "carol"}

    env.sentry.bookmark(sid, "bob@example.com", on=False)
    env.sentry.bookmark(sid, "alice@example.com", on=False)
    env.sync_json()
    assert env.t_followers(key) == {"alice", "carol"}

    bodies = [r.body for r in env.tracker.requests("PATCH", f"/issues/{key}")]
    assert bodies == [{"followers": {"add": ["bob"]}}, {"followers": {"remove": ["bob"]}}]


# -- 6: conflicts --------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["sentry", "tracker", "manual"])
def test_both_sides_changed_follows_the_conflict_policy(bridge_env: BridgeEnv, policy: str) -> None:
    env = bridge_env
    env.config(sync={"conflict": policy})
    [(sid, key)] = synced(env)
    env.sentry.set_status(sid, "resolved")
    env.sentry.assign(sid, "alice@example.com")
    env.tracker.set_status(key, "inProgress", by="bob")
    env.tracker.set_assignee(key, "bob", by="bob")
    writes_before = (len(env.sentry.writes()), len(env.tracker.writes()))

    report = env.sync_json(expect=0)

    if policy == "sentry":
        assert env.t_state(key) == ("closed", "fixed")
        assert env.t_assignee(key) == "alice"
        assert env.s_state(sid) == ("resolved", None)
        assert env.s_assignee(sid) == "alice@example.com"
    elif policy == "tracker":
        assert env.s_state(sid)[0] == "unresolved"
        assert env.s_assignee(sid) == "bob@example.com"
        assert env.t_state(key) == ("inProgress", None)
        assert env.t_assignee(key) == "bob"
    else:
        assert (len(env.sentry.writes()), len(env.tracker.writes())) == writes_before
        assert env.s_state(sid) == ("resolved", None)
        assert env.t_state(key) == ("inProgress", None)
        assert report["conflicts"] == 2
        conflicts = {c["field"]: c for c in env.status_json()["conflicts"]}
        assert set(conflicts) == {"status", "assignee"}
        for field, s_value, t_value in (("status", "resolved", "inProgress"),
                                        ("assignee", "alice@example.com", "bob")):
            shown = {k: conflicts[field][k] for k in ("sentry_id", "tracker_key", "sentry_value", "tracker_value")}
            assert shown == {"sentry_id": sid, "tracker_key": key, "sentry_value": s_value, "tracker_value": t_value}
    if policy != "manual":
        assert report["conflicts"] == 0
        assert env.status_json()["conflicts"] == []


# -- 7: quiet when in step ---------------------------------------------------------------------


def test_second_sync_over_50_links_writes_nothing(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    people = ["alice@example.com", "bob@example.com", "carol@corp.example"]
    pairs = []
    for i in range(50):
        sentry_kw: dict[str, Any] = {}
        tracker_kw: dict[str, Any] = {}
        if i % 5 == 1:
            sentry_kw["status"] = "resolved"
        elif i % 5 == 2:
            sentry_kw.update(status="ignored", substatus="archived_until_escalating")
        elif i % 5 == 3:
            tracker_kw.update(status="inProgress", assignee="bob")
        if i % 3 == 0:
            sentry_kw["assignee"] = people[i % len(people)]
        if i % 11 == 0:
            sentry_kw["assignee"] = "dan@example.com"  # unmapped: reported every cycle
        if i % 7 == 0:
            tracker_kw["followers"] = ["carol"]
        pairs.append(env.pair(tracker=tracker_kw, **sentry_kw))
    for i, (sid, _) in enumerate(pairs):
        if i % 4 == 0:
            env.sentry.bookmark(sid, people[i % len(people)])
    env.link(*pairs)
    first = env.sync_json()
    assert first["writes_tracker"] > 20  # the seed really needed work
    assert env.t_state(pairs[1][1]) == ("closed", "fixed")
    assert env.t_state(pairs[2][1]) == ("closed", "wontFix")

    writes = (len(env.sentry.writes()), len(env.tracker.writes()))
    logged = (len(env.sentry.requests()), len(env.tracker.requests()))
    second = env.sync_json()
    assert (len(env.sentry.writes()), len(env.tracker.writes())) == writes
    assert (second["writes_sentry"], second["writes_tracker"], second["planned_writes"]) == (0, 0, 0)
    per_side = (len(env.sentry.requests()) - logged[0], len(env.tracker.requests()) - logged[1])
    print(f"\nsecond sync over {len(pairs)} links: requests sentry={per_side[0]} tracker={per_side[1]} "
          f"(bridge counted sentry={second['requests']['sentry']} tracker={second['requests']['tracker']})")
    assert per_side == (second["requests"]["sentry"], second["requests"]["tracker"])


# -- 8-9: the network pushes back -----------------------------------------------------------------


def test_version_conflict_rereads_and_keeps_the_persons_edit(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    [(sid, key)] = synced(env)
    env.sentry.assign(sid, "alice@example.com")

    route = env.tracker.route
    edited: list[str] = []

    def person_edits_first(req: EmuRequest) -> EmuResponse:
        # bob edits the ticket after the bridge read it and before its PATCH lands.
        if req.method == "PATCH" and req.path.rstrip("/").endswith(f"/issues/{key}") and not edited:
            edited.append(key)
            env.tracker.set_fields(key, {"summary": "edited by bob"}, by="bob")
            env.tracker.set_status(key, "inProgress", by="bob")
        return route(req)

    env.tracker.route = person_edits_first  # type: ignore[method-assign]
    env.sync_json(expect=0)

    assert [r.status for r in env.tracker.requests("PATCH", f"/issues/{key}")] == [409, 200]
    issue = env.t_issue(key)
    assert issue["summary"] == "edited by bob"
    assert env.t_state(key) == ("inProgress", None)
    assert env.t_assignee(key) == "alice"
    assert env.s_state(sid)[0] == "unresolved"  # inProgress is in step with unresolved
    assert env.sentry.requests("PUT") == []
    assert env.status_json()["failures"] == []


@pytest.mark.parametrize("retry_after", [False, True], ids=["no-retry-after", "retry-after"])
def test_rate_limits_and_server_errors_are_retried(bridge_env: BridgeEnv, retry_after: bool) -> None:
    env = bridge_env
    (s1, t1), (s2, t2) = synced(env, 2)
    env.sentry.set_status(s1, "resolved")
    env.sentry.assign(s1, "alice@example.com")
    env.tracker.set_status(t2, "closed", resolution="fixed", by="bob")
    env.tracker.set_assignee(t2, "bob", by="bob")

    env.sentry.retry_after_on_429 = retry_after
    wait = {"Retry-After": "1"} if retry_after else {}
    faults = [
        env.sentry.inject("status", status=429, method="GET", path=r"/organizations/acme/issues/$"),
        env.sentry.inject("status", status=500, method="GET", path=r"/members/$"),
        env.sentry.inject("status", status=503, method="PUT", path=rf"/issues/{s2}/$"),
        env.sentry.inject("status", status=429, method="PUT", path=rf"/issues/{s2}/$", after=1),
        env.tracker.inject("status", status=429, headers=wait, method="POST", path=r"/issues/_search$"),
        env.tracker.inject("status", status=503, method="GET", path=r"/users/?$"),
        env.tracker.inject("status", status=500, method="PATCH", path=rf"/issues/{t1}$"),
        env.tracker.inject("status", status=429, headers=wait, method="POST", path=EXECUTE),
    ]

    report = env.sync_json(expect=0)

    assert [f.times for f in faults] == [0] * len(faults)  # every fault really hit
    assert report["failures"] == 0
    assert env.t_state(t1) == ("closed", "fixed")
    assert env.t_assignee(t1) == "alice"
    assert env.s_state(s2) == ("resolved", None)
    assert env.s_assignee(s2) == "bob@example.com"
    statuses = [r.status for r in env.tracker.requests("PATCH", f"/issues/{t1}")]
    assert statuses == [500, 200]
    assert env.status_json()["failures"] == []


# -- 10-11: operator contract --------------------------------------------------------------------


def test_malformed_config_lists_every_problem_without_a_traceback(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.path.write_text(
        '[sentry]\norganization = "acme"\ncolour = "blue"\n\n'
        '[tracker]\nqueue = "OPS"\ntoken = "t"\n\n'
        '[sync]\nconflict = "whoever"\ninterval_seconds = 0\n\n'
        '[mapping.users]\n"not-an-email" = "bob"\n',
        encoding="utf-8",
    )
    code, out, err = env.run("sync")
    assert code == 2
    assert "Traceback" not in err and out == ""
    problems = [line for line in err.splitlines() if line.startswith("  - ")]
    for key_path in ("sentry.colour", "sentry.token", "tracker.org_id", "sync.conflict", "sync.interval_seconds",
                     "mapping.users.not-an-email"):
        assert any(line.startswith(f"  - {key_path}:") for line in problems), (key_path, err)
    assert env.sentry.requests() == [] and env.tracker.requests() == []


def test_status_json_has_the_contract_keys(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    synced(env, 2)
    status = env.status_json()
    assert {"links", "conflicts", "failures", "pending_intents", "last_cycle", "last_success"} <= set(status)
    assert status["links"] == 2
    assert status["conflicts"] == [] and status["failures"] == [] and status["pending_intents"] == 0
    assert set(status["last_cycle"]) >= {"started", "finished", "ok", "writes"}
    assert status["last_cycle"]["ok"] is True and status["last_cycle"]["writes"] == 0
    assert status["last_success"] == status["last_cycle"]["finished"]


def test_a_failing_link_is_recorded_and_the_others_go_on(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    (s1, t1), (s2, t2), (s3, t3) = synced(env, 3)
    env.sentry.delete_issue(s1)
    env.sentry.set_status(s2, "resolved")
    env.tracker.set_assignee(t3, "alice", by="alice")

    report = env.sync_json(expect=1)
    assert report["failures"] == 1
    assert env.t_state(t2) == ("closed", "fixed")
    assert env.s_assignee(s3) == "alice@example.com"
    [failure] = env.status_json()["failures"]
    assert (failure["sentry_id"], failure["tracker_key"], failure["attempts"]) == (s1, t1, 1)
    assert "not found" in failure["error"]
    assert env.status_json()["last_cycle"]["ok"] is False

    env.sync_json(expect=1)
    [failure] = env.status_json()["failures"]
    assert failure["attempts"] == 2


def test_dry_run_writes_nothing(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    [(sid, key)] = synced(env)
    env.sentry.set_status(sid, "resolved")
    env.tracker.set_assignee(key, "bob", by="bob")
    writes = (len(env.sentry.writes()), len(env.tracker.writes()))
    state = state_dump(env.state_path)

    plan = env.sync_json("--dry-run")
    assert plan["dry_run"] is True and plan["planned_writes"] == 2
    assert (len(env.sentry.writes()), len(env.tracker.writes())) == writes
    assert state_dump(env.state_path) == state
    assert env.t_state(key) == ("open", None) and env.s_assignee(sid) is None

    env.sync_json()  # the plan was not adopted: the real run still has the work to do
    assert env.t_state(key) == ("closed", "fixed") and env.s_assignee(sid) == "bob@example.com"


def test_second_instance_is_refused_while_the_lock_is_held(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    [(sid, key)] = synced(env)
    env.sentry.set_status(sid, "resolved")
    with StateLock(env.state_path):
        code, _, err = env.run("sync")
    assert code == 4
    assert "another instance" in err
    assert env.t_state(key) == ("open", None)


@pytest.mark.parametrize("side", ["sentry", "tracker"])
def test_a_refused_token_exits_3(bridge_env: BridgeEnv, side: str) -> None:
    env = bridge_env
    synced(env)
    env.config(**{side: {"token": "not-the-right-token-123"}})
    code, out, err = env.run("sync")
    assert code == 3
    assert "advice:" in err and "Traceback" not in err
    assert "not-the-right-token-123" not in err + out
    assert env.sentry.writes() == [] and env.tracker.writes() == []


# -- 12: the installed program -------------------------------------------------------------------


def test_python_dash_m_bridge_syncs_over_loopback(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    [(sid, key)] = synced(env)
    env.sentry.set_status(sid, "resolved")
    clean_env = {k: v for k, v in os.environ.items() if not k.startswith("BRIDGE_")}
    clean_env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), clean_env.get("PYTHONPATH")]))
    done = subprocess.run(
        [sys.executable, "-m", "bridge", "-q", "--config", str(env.path), "sync", "--json"],
        cwd=env.folder, env=clean_env, capture_output=True, text=True, timeout=30, check=False,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["writes_tracker"] == 1
    assert env.t_state(key) == ("closed", "fixed")
