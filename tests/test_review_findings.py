"""Regression tests for the review of issue 11 (write outcomes in the core, the engine split): each
test demonstrated one defect found in review, failing on an assertion about behaviour, before
its fix.

In-process tests use `make_world` (both emulators behind httpx.MockTransport, one Engine kept
across cycles as the daemon keeps it); CLI tests use `bridge_env` (loopback HTTP, the real CLI).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.clients.tracker import TrackerClient
from bridge.core.mapping import sentry_state, status_in_step
from bridge.sandbox.http import EmuRequest, EmuResponse
from tests.conftest import PROJECT, BridgeEnv
from tests.test_engine import World, make_world

EXECUTE = r"/_execute/?$"


class Crash(BaseException):
    """The process dies here: nothing after this line runs (only `finally` blocks)."""


# -- helpers -------------------------------------------------------------------------------------


def hook_tracker(monkeypatch: pytest.MonkeyPatch, w: World,
                 hook: Callable[[EmuRequest, Callable[[EmuRequest], EmuResponse]], EmuResponse]) -> None:
    """Put `hook(req, serve)` in front of the Tracker emulator's router (a person acting while a
    request is on the wire)."""
    serve = w.tracker.route
    monkeypatch.setattr(w.tracker, "route", lambda req: hook(req, serve))


def linked(w: World, *, t_status: str | None = None, **sentry_kw: Any) -> tuple[str, str]:
    sid = w.sentry.add_issue("backend", "boom", **sentry_kw)
    key = w.tracker.add_issue("OPS", "boom", status=t_status)
    w.store.add_link(sid, key)
    return sid, key


def executed(w: World, key: str) -> list[tuple[str, Any]]:
    return [(r.path.split("/")[-2], r.status) for r in w.tracker.requests("POST", rf"/{key}/transitions/.*_execute")]


def open_conflict_fields(w: World) -> list[tuple[str, str]]:
    return [(c["sentry_id"], c["field"]) for c in w.store.open_conflicts()]


def follower_logins(w: World, key: str) -> set[str]:
    logins = {w.tracker.uid_of(login): login for login in ("alice", "bob")}
    return {logins.get(str(ref["id"]), str(ref["id"])) for ref in w.tracker.issue_json(key).get("followers") or []}


# == 1. A cached transition refused because a PERSON moved the issue: the relearn reads the
# ==    transitions of the person's status and files them under the old one ====================


def test_cached_transition_refused_after_a_persons_move_never_walks_over_their_move(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = make_world(tmp_path, sync={"conflict": "manual", "concurrency": 1})
    a, b = linked(w), linked(w)
    w.cycle()
    w.sentry.set_status(a[0], "resolved")
    w.cycle()  # learns open -> close -> closed (cached for the engine's life)
    assert w.t_status(a[1]) == "closed"

    w.sentry.set_status(b[0], "resolved")
    moved: list[str] = []

    def person_starts_work(req: EmuRequest, serve: Callable[[EmuRequest], EmuResponse]) -> EmuResponse:
        if req.method == "POST" and f"/{b[1]}/transitions/" in req.path and not moved:
            moved.append(req.path)
            w.tracker.set_status(b[1], "inProgress", by="bob")  # just before the bridge's close
        return serve(req)

    hook_tracker(monkeypatch, w, person_starts_work)
    w.cycle()
    assert moved
    # A person's status change made meanwhile wins (design §3: a conflict re-reads and re-plans;
    # under `manual` both-changed is recorded, never written over).
    assert w.t_status(b[1]) == "inProgress", executed(w, b[1])
    assert (b[0], "status") in open_conflict_fields(w)


# == 2. The same relearn poisons the workflow cache: a later walk from that status is refused for
# ==    the life of the engine (the daemon), although the workflow offers a path ================


def test_a_poisoned_workflow_cache_never_blocks_later_walks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    w = make_world(tmp_path, sync={"conflict": "manual", "concurrency": 1})
    w.tracker.edit_workflow("OPS", "open", {"start_progress": "inProgress"})
    w.tracker.edit_workflow("OPS", "inProgress", {"stop_progress": "open", "need_info": "needInfo",
                                                   "close": "closed"})
    a = linked(w)
    b = linked(w, t_status="inProgress")
    w.cycle()
    w.sentry.set_status(a[0], "resolved")
    moved: list[str] = []

    def person_needs_info(req: EmuRequest, serve: Callable[[EmuRequest], EmuResponse]) -> EmuResponse:
        response = serve(req)
        if req.method == "POST" and req.path.endswith("/start_progress/_execute") and not moved:
            moved.append(req.path)
            w.tracker.set_status(a[1], "needInfo", by="bob")  # after step 1, before step 2
        return response

    hook_tracker(monkeypatch, w, person_needs_info)
    w.cycle()
    assert moved
    monkeypatch.undo()

    # Another link, plainly in inProgress, must be closable: inProgress -> close -> closed exists.
    w.sentry.set_status(b[0], "resolved")
    w.cycle()
    w.cycle()
    assert w.t_status(b[1]) == "closed", (executed(w, b[1]), w.store.failures())


# == 3. One failed GET /statuses is cached as "no status is done" for the engine's life: every
# ==    path through an intermediate done status is refused (422) from then on ================


def test_a_failed_status_list_is_not_cached_for_good(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    w.tracker.edit_workflow("OPS", "inProgress", {"resolve": "resolved"})  # inProgress -> resolved -> closed
    sid, key = linked(w, t_status="inProgress")
    w.cycle()
    w.sentry.set_status(sid, "resolved")
    w.tracker.inject("status", status=503, method="GET", path=r"/statuses/?$", times=3)  # one outage
    w.cycle()
    w.tracker.clear_faults()
    w.cycle()
    w.cycle()
    assert w.t_status(key) == "closed", (executed(w, key), w.store.failures())


# == 4. A target the workflow cannot reach: every cycle walks the issue around again =============


def test_an_unreachable_target_is_not_walked_around_every_cycle(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    # closed cannot be reached from open: open -> inProgress <-> needInfo, inProgress -> open.
    w.tracker.edit_workflow("OPS", "open", {"start_progress": "inProgress"})
    w.tracker.edit_workflow("OPS", "inProgress", {"need_info": "needInfo", "stop_progress": "open"})
    w.tracker.edit_workflow("OPS", "needInfo", {"provide_info": "inProgress"})
    sid, key = linked(w)
    w.cycle()
    w.sentry.set_status(sid, "resolved")
    w.cycle()  # learns the whole workflow: there is no way to closed
    first = len(executed(w, key))
    w.cycle()
    w.cycle()
    # Nothing is learned by walking the same known graph again: the issue must not be moved on.
    assert len(executed(w, key)) == first, executed(w, key)


# == 5. A path stopped halfway, then the person goes back: the link stays out of step for good ===


def test_a_partial_path_never_leaves_the_link_out_of_step_for_good(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    w.tracker.edit_workflow("OPS", "inProgress", {"resolve": "resolved"})  # inProgress -> resolved -> closed
    # A regressed Sentry issue someone is working on: in step (inProgress -> unresolved).
    sid, key = linked(w, t_status="inProgress", substatus="regressed")
    w.cycle()
    w.sentry.set_status(sid, "resolved")
    w.tracker.inject("status", status=503, method="POST", path=r"/close/_execute/?$", times=100)
    w.cycle()
    assert w.t_status(key) == "resolved"  # step 1 of 2 landed: the bridge's own doing
    w.tracker.clear_faults()
    w.sentry.add_event(sid)  # a new event: the resolved issue regresses before the next cycle
    w.cycle()
    w.cycle()
    # Tracker "resolved" was put there by the bridge alone, and Sentry says unresolved: the bridge
    # must bring them back in step (nobody asked for "resolved"), not hold "not in step" forever.
    s_state = sentry_state(w.sentry.issue_json(sid))
    assert status_in_step(s_state, w.t_status(key), w.engine.policy.status_table), (s_state, w.t_status(key))


# == 6. A re-plan after a 409 keeps the conflict recorded by the first plan ====================


def test_a_replan_does_not_keep_a_conflict_the_fresh_read_shows_is_over(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w = make_world(tmp_path, sync={"conflict": "manual", "concurrency": 1})
    sid, key = linked(w)
    w.cycle()
    # status: both changed, not in step -> recorded (manual); assignee: Sentry changed -> written.
    w.sentry.set_status(sid, "resolved")
    w.tracker.set_status(key, "inProgress", by="bob")
    w.sentry.assign(sid, "alice@example.com")
    closed: list[str] = []

    def person_closes(req: EmuRequest, serve: Callable[[EmuRequest], EmuResponse]) -> EmuResponse:
        if req.method == "PATCH" and not closed:
            closed.append(req.path)
            w.tracker.set_status(key, "closed", resolution="fixed", by="bob")  # now in step with resolved
        return serve(req)

    hook_tracker(monkeypatch, w, person_closes)
    report = w.cycle()
    assert closed
    assert w.t_status(key) == "closed"
    # The re-read after the 409 shows status in step (resolved / closed): no conflict is open.
    assert open_conflict_fields(w) == [], report.summary()


# == 7. A transition that landed but whose answer is malformed is taken as REFUSED; on a path, the
# ==    step it reached is then taken for a person's edit: a false conflict / a reverted resolve ==


@pytest.mark.parametrize("policy", ["tracker", "manual"])
def test_a_landed_step_with_a_malformed_answer_is_the_bridges_own_doing(tmp_path: Path, policy: str) -> None:
    w = make_world(tmp_path, sync={"conflict": policy})
    w.tracker.edit_workflow("OPS", "open", {"start_progress": "inProgress"})
    w.tracker.edit_workflow("OPS", "inProgress", {"stop_progress": "open", "close": "closed"})
    sid, key = linked(w)
    w.cycle()
    w.sentry.set_status(sid, "resolved")
    # A proxy corrupts the answer of step 1 on its way back; the transition itself was applied.
    w.tracker.inject("mangle", method="POST", path=r"/start_progress/_execute/?$", mangle=lambda _d: {"oops": 1})
    w.cycle()  # read back: step 1 landed, so the walk goes on (in this cycle or the next)
    w.cycle()
    w.cycle()
    assert str(w.sentry.issue_json(sid)["status"]) == "resolved"  # the person's resolve stands
    assert open_conflict_fields(w) == []
    assert w.t_status(key) == "closed"


# == 8. A followers PATCH that landed but whose answer is malformed: ownership never recorded ====


def test_a_follower_added_with_a_malformed_answer_is_removed_with_the_bookmark(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    sid, key = linked(w)
    w.cycle()
    w.sentry.bookmark(sid, "bob@example.com")
    w.tracker.inject("mangle", method="PATCH", path=rf"/issues/{key}/?$", mangle=lambda _d: {"oops": 1})
    w.cycle()
    assert follower_logins(w, key) == {"bob"}  # the PATCH was applied
    w.cycle()
    w.sentry.bookmark(sid, "bob@example.com", on=False)
    w.cycle()
    w.cycle()
    assert follower_logins(w, key) == set()  # the bridge added bob, so it removes him


# == 9. Sentry's fallback (resolvedInNextRelease refused -> resolved) with a lost answer: the
# ==    bridge's own write is judged "a person's change", and the person's Tracker edit is overwritten


def test_the_no_release_fallback_with_a_lost_answer_is_not_a_persons_change(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    for project in w.sentry.projects.values():
        project.releases.clear()  # a project without releases: Sentry refuses resolvedInNextRelease
    sid, key = linked(w)
    w.cycle()
    w.tracker.set_status(key, "resolved", resolution="fixed", by="bob")  # -> resolvedInNextRelease
    # The first PUT is refused (400, no release); the fallback PUT lands, its answers are lost.
    w.tracker.clear_log()
    w.sentry.inject("timeout_after", method="PUT", path=rf"/issues/{sid}/$", after=1, times=100)
    w.cycle()
    w.sentry.clear_faults()
    w.cycle()
    assert str(w.sentry.issue_json(sid)["status"]) == "resolved"
    # The person's Tracker "resolved" is not overwritten (the bridge wrote Sentry, not Tracker).
    assert w.t_status(key) == "resolved", executed(w, key)
    assert open_conflict_fields(w) == []


# == 10. A bug mid-walk (any non-remote exception after step 1 landed) drops the statuses the walk
# ==     reached from the pending note: the next cycle takes the bridge's own step for a person's


@pytest.mark.parametrize("policy", ["tracker", "manual"])
def test_a_bug_mid_walk_keeps_the_steps_already_taken(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    w = make_world(tmp_path, sync={"conflict": policy})
    w.tracker.edit_workflow("OPS", "open", {"start_progress": "inProgress"})
    w.tracker.edit_workflow("OPS", "inProgress", {"stop_progress": "open", "close": "closed"})
    sid, key = linked(w)
    w.cycle()
    w.sentry.set_status(sid, "resolved")
    real = w.engine.walker._resolution_for

    def buggy(status: str, target: Any) -> str | None:
        if status == "closed":  # step 2 of 2 (step 1, open -> inProgress, has landed)
            raise RuntimeError("dictionary changed size during iteration")
        return real(status, target)

    monkeypatch.setattr(w.engine.walker, "_resolution_for", buggy)
    w.cycle()
    monkeypatch.undo()
    assert w.t_status(key) == "inProgress"
    # The pending note knew the walk had reached inProgress; the commit overwrote it with reached=().
    w.cycle()
    w.cycle()
    assert str(w.sentry.issue_json(sid)["status"]) == "resolved"  # the person's resolve stands
    assert open_conflict_fields(w) == []
    assert w.t_status(key) == "closed"


# == 11. The bridge's write landed, the process died before the commit, and a person undid the
# ==     write before the next cycle: "value == planned" is judged "did not land" and re-written



def test_a_persons_revert_of_a_landed_write_is_not_rewritten_after_a_crash(
    bridge_env: BridgeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = bridge_env
    env.config(sync={"concurrency": 1})
    sid, key = env.pair()
    env.link((sid, key))
    env.sync_json()
    env.sentry.set_status(sid, "resolved", by="alice@example.com")
    real = TrackerClient.execute_transition

    def lands_then_dies(self: TrackerClient, *args: Any, **kw: Any) -> Any:
        real(self, *args, **kw)
        raise Crash

    monkeypatch.setattr(TrackerClient, "execute_transition", lands_then_dies)
    with pytest.raises(Crash):
        env.run("sync")
    monkeypatch.setattr(TrackerClient, "execute_transition", real)
    assert env.t_state(key)[0] == "closed"
    # A person reopens the ticket before the next cycle (they disagree with the close).
    env.tracker.set_status(key, "open", by="bob")
    env.sync_json()
    # Without the crash this is "Tracker changed" and is carried to Sentry; it must never be undone.
    assert env.t_state(key)[0] == "open", [j for j in env.tracker.requests("POST", EXECUTE)]
    assert env.s_state(sid)[0] == "unresolved"  # ... and it is carried, as it would have been


# == 12. A follower add noted, the process died before sending it, and the person followed by hand:
# ==     the next cycle takes the hand-added follower for the bridge's own and later removes it


def test_a_hand_added_follower_is_not_owned_because_of_an_unsent_note(
    bridge_env: BridgeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = bridge_env
    env.config(sync={"concurrency": 1})
    sid, key = env.pair()
    env.link((sid, key))
    env.sync_json()
    env.sentry.bookmark(sid, "bob@example.com")

    real = TrackerClient.update_issue

    def dies_before_sending(self: TrackerClient, key: str, fields: dict[str, Any], **kw: Any) -> Any:
        if "followers" in fields:
            raise Crash
        return real(self, key, fields, **kw)

    monkeypatch.setattr(TrackerClient, "update_issue", dies_before_sending)
    with pytest.raises(Crash):
        env.run("sync")
    monkeypatch.undo()
    assert env.t_followers(key) == set()  # nothing was sent
    env.tracker.add_follower(key, "bob", by="bob")  # bob follows the ticket himself
    env.sync_json()
    env.sentry.bookmark(sid, "bob@example.com", on=False)
    env.sync_json()
    assert env.t_followers(key) == {"bob"}  # only followers the bridge added are ever removed


# == 13. `sync --backfill` on a fresh state file: a create answered 409 (our unique, an issue made
# ==     long ago) is "ours", and so are followers people added by hand since


def test_backfill_on_a_fresh_state_never_owns_followers_people_added(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(create={"enabled": True, "query": "is:unresolved", "max_per_cycle": 50})
    env.sync_json()  # sets the create watermark
    sid = env.sentry.add_issue(PROJECT, "boom")
    real_now = env.tracker.now
    env.tracker.now = lambda: real_now() - timedelta(hours=1)  # the issue is made long before the loss
    env.sync_json()
    env.tracker.now = real_now
    [key] = [k for k in env.tracker.issue_keys() if env.t_issue(k).get("unique", "").endswith(f":{sid}")]
    env.tracker.add_follower(key, "bob", by="bob")  # bob follows by hand ...
    env.sentry.bookmark(sid, "bob@example.com")  # ... and bookmarks it too
    env.sync_json()
    assert env.t_followers(key) == {"bob"}
    for suffix in ("", "-wal", "-shm"):  # the state file is lost
        (env.folder / f"bridge.db{suffix}").unlink(missing_ok=True)
    env.sync_json("--backfill")
    assert [k for k in env.tracker.issue_keys() if env.t_issue(k).get("unique", "").endswith(f":{sid}")] == [key]
    env.sentry.bookmark(sid, "bob@example.com", on=False)
    env.sync_json()
    assert env.t_followers(key) == {"bob"}  # the bridge never added bob: never removed


# == 14. The transition retry budget multiplies: the client retries a 429 `attempts` times, and the
# ==     walker retries the step `attempts` times around that (attempts² requests, and as many waits)


def test_a_rate_limited_transition_stays_within_the_retry_budget(tmp_path: Path) -> None:
    w = make_world(tmp_path)  # RetryPolicy(attempts=3)
    sid, key = linked(w)
    w.cycle()
    w.sentry.set_status(sid, "resolved")
    w.tracker.inject("status", status=429, method="POST", path=EXECUTE, times=100)
    w.cycle()
    sent = executed(w, key)
    assert len(sent) <= 3, sent  # one step, one budget of 3 attempts
