"""Hostile review of 38b1b53 (issue 13 item 1: mapping targets checked against the queue's defined
workflow before any step; `unmapped_over` journal entries).  Every test here FAILS on 38b1b53 and
shows one defect; the docstring says what the correct behaviour is."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tests.test_engine import make_world

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv

EXECUTE = r"/transitions/[^/]+/_execute/?$"
QUEUE_WORKFLOWS = r"/queues/OPS/workflows/?$"


def rows(env: BridgeEnv, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(env.state_path) as db:
        return [tuple(r) for r in db.execute(sql, params)]


def _type_key(ref: Any) -> Any:
    return ref.get("key") if isinstance(ref, dict) else ref


# -- 1. an issue type missing from the queue's workflows map: silently no check at all -------------


def test_an_issue_type_missing_from_the_workflows_map_still_never_walks_towards_a_status_the_queue_lacks(
        bridge_env: BridgeEnv) -> None:
    """`GET /queues/OPS/workflows` lists the queue's workflows and their issue types; an issue
    whose type is not listed (a type later removed from the queue's settings, a type given by
    id only) gets `None` from `QueueDefinitions.of` and the walk silently falls back to the old
    organisation-wide check: `testing` exists in DEV, so the bridge walks a real OPS ticket
    around looking for it.  The queue has no `testing` in ANY of its workflows: that alone is
    enough to refuse."""
    env = bridge_env
    env.tracker.add_queue("DEV", workflow={"statuses": {"open": "new", "testing": "inProgress", "closed": "done"},
                                           "transitions": {"open": {"test": "testing"}}})
    env.tracker.inject("mangle", method="GET", path=QUEUE_WORKFLOWS, times=10_000,
                       mangle=lambda doc: {wid: [t for t in types if _type_key(t) != "task"]
                                           for wid, types in doc.items()})
    sid, key = env.pair(status="resolved", substatus=None, tracker={"status": "closed", "resolution": "fixed"})
    env.link((sid, key))
    env.sync_json()
    env.config(mapping={"status": {"to_tracker": {"unresolved": "testing", "unresolved.regressed": "testing"}}})
    env.sentry.set_status(sid, "unresolved", substatus="ongoing")
    env.run("sync", "--json")
    steps = [r.path.split("/transitions/")[1].split("/")[0] for r in env.tracker.requests("POST", EXECUTE)]
    assert steps == [], f"ticket walked around OPS looking for a status OPS has not: {steps}, now {env.t_state(key)}"


# -- 2. the definition overrides the per-issue transitions list (the API's authoritative answer) ----


def test_a_definition_that_disagrees_with_the_live_transitions_never_blocks_a_move_the_issue_offers(
        bridge_env: BridgeEnv) -> None:
    """The reference (tracker-api.md §8) calls the per-issue transitions list THE authoritative
    answer to "where can this issue go now".  When the defined workflow omits a transition the
    issue does offer (a transition available from any status, a definition the parser reads
    differently), the walker refuses before it ever looks at the issue, every cycle, forever:
    'queue OPS's workflow has no way from closed to open' while `reopen` is right there."""
    env = bridge_env

    def closed_is_final(doc: dict[str, Any]) -> dict[str, Any]:
        for step in doc["steps"]:
            if _type_key(step["status"]) == "closed":
                step["actions"] = []
        return doc

    env.tracker.inject("mangle", method="GET", path=r"/workflows/opsWorkflow/?$", times=10_000, mangle=closed_is_final)
    sid, key = env.pair(status="resolved", substatus=None, tracker={"status": "closed", "resolution": "fixed"})
    env.link((sid, key))
    env.sync_json()
    env.sentry.set_status(sid, "unresolved", substatus="ongoing")
    for _ in range(3):
        env.run("sync", "--json")
    failures = [f["error"] for f in env.status_json()["failures"]]
    assert env.t_state(key)[0] == "open", f"the issue offers reopen, yet after 3 cycles: {env.t_state(key)} {failures}"


# -- 3. a stale cached definition refuses a legit move for up to 10 minutes -----------------------


def test_a_cached_definition_made_stale_by_an_admin_edit_does_not_refuse_a_move_the_issue_offers(
        tmp_path: Path) -> None:
    """The daemon keeps definitions 600 s and refuses from the cache without looking at the
    issue.  An admin makes `closed` reopenable again; the issue offers `reopen`; the bridge
    refuses (REFUSED, a failure with backoff and an error blaming the mapping) until the cache
    expires.  A "no way" verdict from a cached definition should be checked once against a
    fresh read (or the issue's own transitions) before the move is refused."""
    w = make_world(tmp_path)
    moment = [0.0]
    w.engine.walker.definitions.clock = lambda: moment[0]
    w.tracker.edit_workflow("OPS", "closed", {})  # closed is final for now
    sid, key = w.pair(status="resolved", substatus=None)
    w.cycle()
    assert w.t_status(key) == "closed"
    w.tracker.edit_workflow("OPS", "closed", {"reopen": "open"})  # the admin allows a reopen again
    w.sentry.set_status(sid, "unresolved", substatus="ongoing")
    moment[0] = 60.0  # one minute later: a daemon's next cycle
    report = w.cycle()
    errors = [run.error for run in report.outcomes if run.error]
    assert w.t_status(key) == "open", f"still {w.t_status(key)}: {errors}"
    w.store.close()


# -- 4. a failing definition read is retried by every walk of the cycle ---------------------------


def test_a_failing_definition_read_is_not_repeated_by_every_walk_of_the_cycle(bridge_env: BridgeEnv) -> None:
    """`QueueDefinitions.of` caches nothing when a read fails transiently, so every walk of the
    cycle (each on its own, under the lock) reads again with the client's full retry budget:
    N links -> N x the retry budget of failing requests (and, with waits, N x the
    retry deadline of stall: the read holds the lock every worker waits on) to a service that is already struggling.
    One failed read should hold for the rest of the cycle (or a short negative TTL)."""
    env = bridge_env
    pairs = [env.pair() for _ in range(5)]
    env.link(*pairs)
    env.sync_json()
    for sid, _ in pairs:
        env.sentry.set_status(sid, "resolved")
    env.tracker.inject("status", status=503, method="GET", path=QUEUE_WORKFLOWS, times=10_000)
    env.tracker.clear_log()
    env.run("sync", "--json")
    reads = len(env.tracker.requests("GET", QUEUE_WORKFLOWS))
    # The harness's RetryPolicy makes 5 attempts per read: one read's budget is 5 requests.
    assert reads <= 5, f"{reads} GET /queues/OPS/workflows in one cycle for {len(pairs)} links (5 per read)"


# -- 5. an unmapped value journaled as 'over' while it is still there ------------------------------


def test_an_unmapped_value_is_not_journaled_as_gone_when_its_field_was_not_evaluated(
        bridge_env: BridgeEnv) -> None:
    """dan (no Tracker account) stays assigned in Sentry.  The operator switches assignee sync
    off for a while; another field of the link is written, so the run is committed, and
    `_unmapped_over` sees no 'unmapped' entry for assignee in this run and journals
    "the value without a counterpart is gone" though dan never left.  When assignee sync is
    switched back on, the same unchanged value is warned about again as news."""
    env = bridge_env
    sid, key = env.pair(assignee="dan@example.com")
    env.link((sid, key))
    assert "assignee not synced" in env.expect(0, "sync").err
    env.config(sync={"fields": {"assignee": "off"}})
    env.sentry.set_status(sid, "resolved")  # a write on another field: the run is committed
    env.expect(0, "sync")
    assert env.s_assignee(sid) == "dan@example.com"
    journal = rows(env, "SELECT action, outcome, detail FROM journal WHERE field = 'assignee' ORDER BY id")
    assert ("unmapped_over", "settled", "the value without a counterpart is gone") not in journal, journal
    env.config(sync={"fields": {"assignee": "both"}})
    err = env.expect(0, "sync").err
    assert "assignee not synced" not in err, f"an unchanged unmapped value warned about again:\n{err}"


# -- 6. a status reference without `key` is read as if its numeric id were a key ------------------


def test_a_definition_naming_statuses_by_numeric_id_does_not_block_every_move(bridge_env: BridgeEnv) -> None:
    """`ref_key` falls back to a reference's `id`; Tracker's status ids are numbers ("1", "2",
    ... as /v3/statuses and the emulator show), not keys (the unit test REFS uses
    `{"id": "closed"}`, an id that equals the key, which no real status has).  A definition
    whose references carry only `self` and `id` becomes a workflow of statuses "1".."5": every
    target is "missing" and every status move of the queue is refused, forever.  A reference
    without a key must make the definition unreadable (fall back), never a set of keys."""
    env = bridge_env
    ids = {key: ident for key, (ident, _) in env.tracker._statuses.items()}  # noqa: SLF001 - as /v3/statuses shows

    def by_id(doc: dict[str, Any]) -> dict[str, Any]:
        def ref(value: Any) -> dict[str, str]:
            key = _type_key(value)
            return {"self": f"{env.tracker_url}/v3/statuses/{ids[key]}", "id": ids[key]}
        for step in doc["steps"]:
            step["status"] = ref(step["status"])
            for action in step.get("actions", []):
                action["target"] = ref(action["target"])
        return doc

    env.tracker.inject("mangle", method="GET", path=r"/workflows/opsWorkflow/?$", times=10_000, mangle=by_id)
    sid, key = env.pair()
    env.link((sid, key))
    env.sync_json()
    env.sentry.set_status(sid, "resolved")
    env.run("sync", "--json")
    failures = [f["error"] for f in env.status_json()["failures"]]
    assert env.t_state(key) == ("closed", "fixed"), f"{env.t_state(key)}: {failures}"


# -- 7. doctor: a to_sentry key judged against the queues it could read only ----------------------


def test_doctor_does_not_fail_a_to_sentry_key_of_a_queue_whose_definition_it_could_not_read(
        bridge_env: BridgeEnv) -> None:
    """New issues are routed to DEV; OPS is the main queue.  The robot may not read OPS's
    settings (403: a 'warn', and the bridge falls back, works fine).  `every` is then built
    from DEV alone and the operator's `to_sentry.inProgress` (an OPS status) fails doctor with
    'no queue the bridge uses (DEV) has status "inProgress"': exit 1 on a working setup, and a
    sentence naming DEV as every queue the bridge uses."""
    env = bridge_env
    env.tracker.add_queue("DEV", workflow={
        "statuses": {"open": "new", "resolved": "done", "closed": "done"},
        "transitions": {"open": {"close": "closed", "resolve": "resolved"},
                        "resolved": {"close": "closed", "reopen": "open"}, "closed": {"reopen": "open"}}})
    env.config(create={"enabled": True, "routes": {"backend": "DEV"}},
               mapping={"status": {"to_sentry": {"open": "unresolved", "inProgress": "unresolved",
                                                 "resolved": "resolvedInNextRelease", "closed": "resolved"}}})
    assert env.run("doctor", "--json").code == 0  # both readable: pass
    env.tracker.inject("status", status=403, method="GET", path=QUEUE_WORKFLOWS, times=100)
    result = env.run("doctor", "--json")
    checks = {c["name"]: c for c in json.loads(result.out)["checks"]}
    definition = checks["tracker: workflow definition"]
    assert definition["level"] != "fail", (result.code, definition["notes"])


# -- 8. a definition endpoint that keeps failing stops every status move, forever ------------------


def test_a_definition_read_that_keeps_failing_does_not_stop_status_sync_for_good(bridge_env: BridgeEnv) -> None:
    """The definition is an extra check: the organisation's statuses still catch a typo, and
    the per-issue transitions are authoritative.  Yet a 5xx on `GET /workflows/{id}` (one broken
    workflow, an endpoint down) blocks every status move in the queue for as long as it lasts,
    while a 403 on the same read falls back and works.  After some failed cycles the walk
    should fall back as for a refusal (and say so), not wait for ever."""
    env = bridge_env
    sid, key = env.pair()
    env.link((sid, key))
    env.sync_json()
    env.sentry.set_status(sid, "resolved")
    env.tracker.inject("status", status=500, method="GET", path=r"/workflows/opsWorkflow/?$", times=10_000)
    for _ in range(5):
        env.run("sync", "--json")
    failures = [f["error"] for f in env.status_json()["failures"]]
    assert env.t_state(key) == ("closed", "fixed"), f"after 5 cycles still {env.t_state(key)}: {failures}"
