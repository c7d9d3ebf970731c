"""Issue 11, item 2: what the bridge believes after a write that landed halfway, lost its answer,
met a concurrent edit or blew up, through the real CLI over loopback HTTP (`bridge_env`).

Each test asserts the correct behaviour (design §3 and §9).  Each one failed on the engine before
the outcomes were moved into the core (issue 11), on an assertion about behaviour:

* a: tracker policy: the person's resolve reverted, `('unresolved', 'regressed') == ('resolved', None)`;
  manual: a false conflict recorded;
* b: `{'bob'} == set()`: a follower added with a lost answer (PATCH or create) outlived its bookmark;
* c: `0 == 1`: the create watermark passed an issue whose reference look-up failed;
* d: `('tracker', 'ok') in [('tracker', 'failed')]`: a landed transition journalled as failed;
* e: `[] == [(..., 'assignee')]`: a winning team assignee neither carried nor recorded;
* f: `{} == {'assignee': ['Adopt']}`: explain planned without the open conflicts;
* g: a crash between relink's two transactions left a link without baselines, written to next;
* h: the whole cycle ended with `ValueError("Sentry user ids are numeric, ...")`.

Only the CLI, the emulators' public methods and their request logs are used: no engine, plan,
store or explain internals, so the tests stay valid across the rewrite.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
import sqlite_utils

from bridge.sandbox.http import EmuRequest, EmuResponse, Fault
from tests.conftest import PROJECT, QUEUE, BridgeEnv, Result

EXECUTE = r"/transitions/[^/]+/_execute/?$"
UNIQUE_PREFIX = "sentry-tracker-bridge:acme:"  # design §3: unique = sentry-tracker-bridge:<org>:<issue id>


# -- helpers -------------------------------------------------------------------------------------


def synced(env: BridgeEnv, count: int = 1, *, tracker: dict[str, Any] | None = None,
           **sentry_kw: Any) -> list[tuple[str, str]]:
    """`count` new pairs, linked and through a first sync (every link has its baselines)."""
    pairs = [env.pair(tracker=tracker, **sentry_kw) for _ in range(count)]
    env.link(*pairs)
    env.sync_json()
    return pairs


def run_cli(env: BridgeEnv, *args: str) -> Result | BaseException:
    """The CLI's result, or the exception that escaped it (a traceback is a wrong answer, and the
    test must say so with an assertion, not by erroring)."""
    try:
        return env.run(*args)
    except Exception as exc:  # noqa: BLE001 - reported by the caller's assertion
        return exc


def planned_actions(plan: dict[str, Any]) -> dict[str, dict[str, list[str]]]:
    """sentry id -> field -> the action kinds a `sync --dry-run --json` plans for it."""
    found: dict[str, dict[str, list[str]]] = {}
    for link in plan["links_detail"]:
        fields = found.setdefault(str(link["sentry_id"]), {})
        for action in link["actions"]:
            fields.setdefault(action["field"], []).append(action["action"])
    return found


def dry_run_actions(env: BridgeEnv) -> dict[str, dict[str, list[str]]]:
    return planned_actions(env.sync_json("--dry-run"))


def explain(env: BridgeEnv, ref: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(env.expect(0, "explain", "--json", ref).out)
    return data


def conflicts(env: BridgeEnv) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads(env.expect(0, "conflicts", "--json").out)
    return data


def bridge_writes(env: BridgeEnv) -> int:
    return len(env.sentry.writes()) + len(env.tracker.writes())


def tracker_issues_for(env: BridgeEnv, sid: str) -> list[str]:
    wanted = UNIQUE_PREFIX + sid
    return [key for key in env.tracker.issue_keys() if env.t_issue(key).get("unique") == wanted]


def enable_create(env: BridgeEnv, **create: Any) -> None:
    env.config(create={"enabled": True, "query": "is:unresolved", "max_per_cycle": 50, **create})
    env.sync_json()  # the first cycle with creation on sets the first-seen watermark


def wrap_route(monkeypatch: pytest.MonkeyPatch, emulator: Any,
               hook: Callable[[EmuRequest, Callable[[EmuRequest], EmuResponse]], EmuResponse]) -> None:
    serve = emulator.route
    monkeypatch.setattr(emulator, "route", lambda req: hook(req, serve))


def sentry_put_as(env: BridgeEnv, email: str, sid: str, body: dict[str, Any]) -> None:
    """A person changes a Sentry issue through the API with their own token (as the UI does)."""
    token = f"token-of-{email}"
    if token not in env.sentry.tokens:
        env.sentry.add_token(token, user_email=email)
    response = httpx.put(f"{env.sentry_url}/api/0/organizations/acme/issues/{sid}/", json=body,
                         headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200, response.text


def drop_state(env: BridgeEnv) -> None:
    for suffix in ("", "-wal", "-shm"):
        (env.folder / f"bridge.db{suffix}").unlink(missing_ok=True)


# -- a: a transition path stopped after step 1 of 2 ---------------------------------------------------


def two_step_close(env: BridgeEnv, workflow: str) -> tuple[str, str, str]:
    """A synced pair whose Tracker issue needs two transitions to reach `closed`, and the status
    it starts from.  The last step (`close`) is refused with 503 for a whole cycle."""
    if workflow == "open, inProgress, closed":
        # The issue's own example: open -> inProgress (lands), inProgress -> closed (503).
        env.tracker.edit_workflow(QUEUE, "open", {"start_progress": "inProgress"})
        env.tracker.edit_workflow(QUEUE, "inProgress", {"stop_progress": "open", "close": "closed"})
        [(sid, key)] = synced(env)
        return sid, key, "open"
    # The default workflow: inProgress -> open or resolved (lands), then -> closed (503).
    [(sid, key)] = synced(env, tracker={"status": "inProgress"})
    return sid, key, "inProgress"


@pytest.mark.parametrize("workflow", ["open, inProgress, closed", "inProgress, ?, closed"])
@pytest.mark.parametrize("policy", ["tracker", "manual"])
def test_a_transition_path_stopped_halfway_is_finished_next_cycle(
    bridge_env: BridgeEnv, policy: str, workflow: str
) -> None:
    env = bridge_env
    env.config(sync={"conflict": policy})
    sid, key, start = two_step_close(env, workflow)
    env.sentry.set_status(sid, "resolved", by="alice@example.com")
    env.tracker.inject("status", status=503, method="POST", path=r"/transitions/close/_execute/?$", times=1000)

    stopped = env.run("sync", "--json")
    assert stopped.code == 1, stopped.err  # the link failed this cycle and is retried
    assert env.t_state(key)[0] not in (start, "closed")  # step 1 landed, step 2 did not
    assert [r.status for r in env.tracker.requests("POST", EXECUTE)].count(200) == 1
    env.tracker.clear_faults()
    sentry_puts = len(env.sentry.writes())

    report = env.sync_json()
    # The next cycle finishes the path: Tracker reaches the target, the person's resolve stands.
    assert env.s_state(sid) == ("resolved", None)
    assert len(env.sentry.writes()) == sentry_puts  # nothing written back to Sentry
    assert conflicts(env) == []
    assert env.t_state(key) == ("closed", "fixed")
    assert report["conflicts"] == 0 and report["writes_sentry"] == 0 and report["writes_tracker"] == 1
    assert env.status_json()["failures"] == []
    # ... and then everything is in step: the next cycle plans nothing.
    again = env.sync_json("--dry-run")
    assert again["planned_writes"] == 0 and again["conflicts"] == 0


# -- b: a followers write that landed but whose answer was lost ---------------------------------------


@pytest.mark.parametrize("lost", ["once", "every attempt"])
def test_b_follower_added_with_a_lost_answer_is_removed_with_the_bookmark(bridge_env: BridgeEnv, lost: str) -> None:
    env = bridge_env
    env.config(tracker={"timeout_seconds": 0.3})
    [(sid, key)] = synced(env)
    env.sentry.bookmark(sid, "bob@example.com")
    # The PATCH adds the follower, then the answer is lost (once: the version-guarded retry gets
    # 409; every attempt: the retries also time out).
    env.tracker.inject("timeout_after", method="PATCH", path=rf"/issues/{key}/?$",
                       times=1 if lost == "once" else 1000)
    env.run("sync", "--json")
    assert env.t_followers(key) == {"bob"}
    assert any(r.status == "HangUp" for r in env.tracker.requests("PATCH", rf"/issues/{key}/?$"))
    env.tracker.clear_faults()

    env.sentry.bookmark(sid, "bob@example.com", on=False)
    env.sync_json()
    env.sync_json()
    assert env.t_followers(key) == set()  # the bridge added bob, so the bridge removes him
    assert env.status_json()["failures"] == []
    assert env.sync_json("--dry-run")["planned_writes"] == 0


def test_b_follower_of_a_create_with_a_lost_answer_is_removed_with_the_bookmark(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(tracker={"timeout_seconds": 0.3})
    enable_create(env)
    sid = env.sentry.add_issue(PROJECT, "boom")
    env.sentry.bookmark(sid, "bob@example.com")
    env.tracker.inject("timeout_after", method="POST", path=r"/issues/?$")  # created, answer lost
    env.sync_json()
    [key] = tracker_issues_for(env, sid)
    assert env.t_followers(key) == {"bob"}
    assert [r.status for r in env.tracker.requests("POST", r"/issues/?$")][0] == "HangUp"
    env.tracker.clear_faults()

    env.sentry.bookmark(sid, "bob@example.com", on=False)
    env.sync_json()
    env.sync_json()
    assert env.t_followers(key) == set()  # the bridge created the issue with bob: it removes him
    assert tracker_issues_for(env, sid) == [key]
    assert env.sync_json("--dry-run")["planned_writes"] == 0


# -- c: a create whose reference look-up failed ----------------------------------------------------


@pytest.mark.parametrize("reference", ["field", "tag"])
def test_c_failed_reference_lookup_still_creates_the_issue_exactly_once(
    bridge_env: BridgeEnv, monkeypatch: pytest.MonkeyPatch, reference: str
) -> None:
    env = bridge_env
    if reference == "field":
        enable_create(env, reference_field=env.tracker.add_local_field(QUEUE, "sentryIssue"))
    else:
        enable_create(env, reference_tag="sentry-{sentry_id}")
    start = env.sentry.now()
    # Two new issues in one cycle; the look-up for the older one fails all cycle long.
    older = env.sentry.add_issue(PROJECT, "older", first_seen=start, last_seen=start)
    newer = env.sentry.add_issue(PROJECT, "newer", first_seen=start + timedelta(milliseconds=1),
                                 last_seen=start + timedelta(milliseconds=1))
    failing = [True]

    def lookup(req: EmuRequest, serve: Callable[[EmuRequest], EmuResponse]) -> EmuResponse:
        if failing[0] and req.method == "POST" and req.path.endswith("/_search") and older in req.body.decode():
            return env.tracker.fault_response(Fault("status", status=503))
        return serve(req)

    wrap_route(monkeypatch, env.tracker, lookup)
    env.run("sync", "--json")
    assert tracker_issues_for(env, older) == []
    assert any(r.status == 503 for r in env.tracker.requests("POST", r"/_search$"))
    failing[0] = False

    for _ in range(3):
        env.sync_json()
    created = tracker_issues_for(env, older)
    assert len(created) == 1  # created exactly once, once the look-up answers again
    assert len(tracker_issues_for(env, newer)) == 1
    assert env.status_json()["links"] == 2 and env.status_json()["pending_intents"] == 0
    assert explain(env, older)["link"]["tracker_key"] == created[0]


# -- d: a transition that landed, then a concurrent edit before the read-back -------------------------


def test_d_transition_that_landed_is_journalled_ok_despite_a_concurrent_edit(
    bridge_env: BridgeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = bridge_env
    env.config(sync={"conflict": "manual", "concurrency": 1})
    [(sid, key)] = synced(env)
    env.sentry.set_status(sid, "resolved")
    env.sentry.assign(sid, "alice@example.com")
    edited: list[str] = []

    def person_edits_after_the_transition(req: EmuRequest, serve: Callable[[EmuRequest], EmuResponse]) -> EmuResponse:
        response = serve(req)
        if req.method == "POST" and req.path.rstrip("/").endswith("/_execute") and not edited:
            edited.append(key)
            env.tracker.set_assignee(key, "bob", by="bob")  # between the transition and the read-back
        return response

    wrap_route(monkeypatch, env.tracker, person_edits_after_the_transition)
    report = env.sync_json()
    assert edited
    assert env.t_state(key) == ("closed", "fixed")
    assert env.t_assignee(key) == "bob"  # the person's edit is not overwritten
    # The transition landed: it is a write of this cycle, and the journal says so.
    assert report["writes_tracker"] >= 1
    assert env.status_json()["cycles"][0]["writes_tracker"] >= 1
    status_entries = [(j["side"], j["outcome"]) for j in explain(env, sid)["journal"] if j["field"] == "status"]
    assert ("tracker", "ok") in status_entries and all(outcome != "failed" for _, outcome in status_entries), \
        status_entries
    # The assignee is a real conflict (both changed, manual): recorded (by this cycle or the next),
    # never written.
    env.sync_json()
    assert env.t_state(key) == ("closed", "fixed") and env.t_assignee(key) == "bob"
    assert [(c["sentry_id"], c["field"]) for c in conflicts(env)] == [(sid, "assignee")]
    assert env.s_state(sid) == ("resolved", None) and env.s_assignee(sid) == "alice@example.com"


# -- e: the winning side's value has no counterpart ------------------------------------------------


def test_e_conflict_with_a_team_on_the_winning_side_is_recorded(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(sync={"conflict": "sentry"})
    [(sid, key)] = synced(env)
    # Both sides change the assignee: Sentry to a team (no Tracker counterpart), Tracker to bob.
    sentry_put_as(env, "alice@example.com", sid, {"assignedTo": f"team:{env.sentry.team_id(PROJECT)}"})
    env.tracker.set_assignee(key, "bob", by="bob")
    assert env.s_issue(sid)["assignedTo"]["type"] == "team"
    writes = bridge_writes(env)

    report = env.sync_json()
    assert bridge_writes(env) == writes  # nothing written either way
    assert env.t_assignee(key) == "bob"  # the Tracker person's edit is not overwritten
    assert env.s_issue(sid)["assignedTo"]["type"] == "team"
    open_ = [c for c in conflicts(env) if c["sentry_id"] == sid]
    assert [(c["sentry_id"], c["tracker_key"], c["field"]) for c in open_] == [(sid, key, "assignee")]
    assert open_[0]["tracker_value"] == "bob" and PROJECT in str(open_[0]["sentry_value"])
    assert report["conflicts"] == 1
    # ... an operator can see it and settle it: taking Tracker's side carries bob to Sentry.
    env.expect(0, "conflicts", "resolve", str(open_[0]["id"]), "--take", "tracker")
    assert env.s_assignee(sid) == "bob@example.com" and env.t_assignee(key) == "bob"
    assert conflicts(env) == []
    assert env.sync_json("--dry-run")["planned_writes"] == 0


# -- f: explain plans with the open conflicts ------------------------------------------------------


def test_f_explain_shows_the_settling_adopt_the_next_cycle_performs(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(sync={"conflict": "manual"})
    [(sid, key)] = synced(env)
    env.sentry.assign(sid, "alice@example.com")
    env.tracker.set_assignee(key, "bob", by="bob")
    env.sync_json()
    assert [(c["sentry_id"], c["field"]) for c in conflicts(env)] == [(sid, "assignee")]
    # People put both sides back in step by hand (back to where they were).
    env.sentry.assign(sid, None)
    env.tracker.set_assignee(key, None, by="bob")

    planned = dry_run_actions(env).get(sid, {})
    shown = explain(env, sid)
    explained = {f["field"]: [a["action"] for a in f["actions"]] for f in shown["fields"] if f["actions"]}
    assert explained == planned  # explain plans exactly what the next cycle plans
    assert explained == {"assignee": ["Adopt"]}
    assert next(f for f in shown["fields"] if f["field"] == "assignee")["decision"] != "nothing"
    # ... and the next cycle does settle it, writing nothing.
    writes = bridge_writes(env)
    env.sync_json()
    assert conflicts(env) == [] and bridge_writes(env) == writes


# -- g: relink crashes between its transactions ----------------------------------------------------


class Crash(BaseException):
    """The process dies here: nothing after this line runs (only `finally` blocks)."""


def relink_with(monkeypatch: pytest.MonkeyPatch, env: BridgeEnv, crash_at: int | None) -> int:
    """Run `relink` with `Database.atomic` wrapped: count the transactions it opens, and die on
    entering number `crash_at`.  Returns how many transactions were entered."""
    real = sqlite_utils.Database.atomic
    entered = [0]

    def atomic(self: sqlite_utils.Database) -> Any:
        entered[0] += 1
        if entered[0] == crash_at:
            raise Crash
        return real(self)

    monkeypatch.setattr(sqlite_utils.Database, "atomic", atomic)
    try:
        if crash_at is None:
            env.expect(0, "relink")
        else:
            with pytest.raises(Crash):
                env.run("relink")
    finally:
        monkeypatch.setattr(sqlite_utils.Database, "atomic", real)
    return entered[0]


def test_g_relink_crash_between_transactions_never_leaves_a_link_without_baselines(
    bridge_env: BridgeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = bridge_env
    env.config(sync={"fields": {"followers": "off"}})  # fewer requests per command: the loop runs many
    enable_create(env)
    ids = [env.sentry.add_issue(PROJECT, f"e{i}", assignee="alice@example.com") for i in range(2)]
    env.sync_json()
    keys = {sid: tracker_issues_for(env, sid)[0] for sid in ids}
    # The first pair disagrees when the state file is lost: relink must record it, never write it.
    env.tracker.set_assignee(keys[ids[0]], "bob", by="bob")
    drop_state(env)
    total = relink_with(monkeypatch, env, None)
    assert total >= 2
    writes = bridge_writes(env)

    broken: dict[int, list[str]] = {}
    for crash_at in range(1, total + 1):
        drop_state(env)
        relink_with(monkeypatch, env, crash_at)
        # A fresh process after the crash: every link that exists has its baselines, so the
        # next cycle writes nothing (relink records disagreement as a conflict, never writes).
        problems: list[str] = []
        # (The dry run opens the state file for writing first, which finishes a set-up the crash
        # cut short; `status` and `explain` only ever read it.)
        plan = env.sync_json("--dry-run")
        if plan["planned_writes"]:
            problems.append(f"the next cycle writes: {planned_actions(plan)}")
        if env.status_json()["links"]:
            for sid in ids:
                shown = env.run("explain", "--json", sid)
                if shown.code == 0 and not {"status", "assignee"} <= set(json.loads(shown.out)["baselines"]):
                    problems.append(f"{sid} has no baselines")
        # Relinking again after the crash completes the state, and still nothing is to be written.
        env.expect(0, "relink")
        plan = env.sync_json("--dry-run")
        if plan["planned_writes"] or env.status_json()["links"] != len(ids):
            problems.append(f"after relinking again, the next cycle writes: {planned_actions(plan)}")
        if problems:
            broken[crash_at] = problems
    assert broken == {}, f"crash points (of {total} transactions) that leave a link to be written to: {broken}"
    drop_state(env)
    relink_with(monkeypatch, env, None)
    data = env.sync_json()
    assert data["writes_sentry"] == data["writes_tracker"] == 0 and data["planned_writes"] == 0
    assert bridge_writes(env) == writes
    assert [env.t_assignee(keys[sid]) for sid in ids] == ["bob", "alice"]
    assert [(c["sentry_id"], c["field"]) for c in conflicts(env)] == [(ids[0], "assignee")]


# -- h: a non-remote exception in a write worker ---------------------------------------------------


def non_numeric_user_id_for(email: str) -> Callable[[Any], Any]:
    def mangle(members: Any) -> Any:
        for member in members if isinstance(members, list) else []:
            if isinstance(member, dict) and member.get("email") == email and isinstance(member.get("user"), dict):
                member["user"]["id"] = "not-a-number"
        return members
    return mangle


@pytest.mark.parametrize("concurrency", [1, 2])
def test_h_a_link_whose_write_raises_fails_alone(bridge_env: BridgeEnv, concurrency: int) -> None:
    env = bridge_env
    env.config(sync={"concurrency": concurrency})
    (a_sid, a_key), (bad_sid, bad_key), (c_sid, c_key) = synced(env, 3)
    env.sentry.inject("mangle", method="GET", path=r"/organizations/acme/members/$", times=1000,
                      mangle=non_numeric_user_id_for("bob@example.com"))
    # The bad link: bob is assigned in Tracker, so the bridge assigns bob's (bad) user id in Sentry.
    env.tracker.set_assignee(bad_key, "bob", by="bob")
    # Two ordinary writes in the same cycle, before and after the bad link.
    env.sentry.set_status(a_sid, "resolved")
    env.sentry.set_status(c_sid, "resolved")

    result = run_cli(env, "sync", "--json")
    assert not isinstance(result, BaseException), f"the cycle ended with {result!r}"
    assert result.code == 1, result.err
    report = json.loads(result.out)
    assert report["failures"] == 1 and report["writes_tracker"] == 2
    assert [d["sentry_id"] for d in report["links_detail"] if d["error"]] == [bad_sid]
    assert env.t_state(a_key) == ("closed", "fixed") and env.t_state(c_key) == ("closed", "fixed")
    assert env.s_assignee(bad_sid) is None and env.t_assignee(bad_key) == "bob"
    status = env.status_json()
    assert [f["sentry_id"] for f in status["failures"]] == [bad_sid]
    assert status["cycles"][0]["finished"] is not None
    # The other links' writes were committed: the next cycle plans nothing for them.
    planned = dry_run_actions(env)
    assert a_sid not in planned and c_sid not in planned, planned
    # The bad write's outcome is unknown (it raised mid-write): judged first, then tried again.
    assert planned.get(bad_sid) == {"assignee": ["Reconcile", "WriteSentryAssignee"]}, planned
