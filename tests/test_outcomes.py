"""Design §9 as a pure function: one test per row of the outcome table, the judging of pending
writes from a later read, their JSON, and hypothesis properties tying outcomes to the planner (a
path cut short is finished, never taken for a person's edit; a write that landed is never
written again)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import MappingSettings, StatusMapping
from bridge.core.actions import (
    AddFollowers,
    Reconcile,
    RemoveFollowers,
    WriteSentry,
    WriteTracker,
    changes,
    is_write,
    kind_of,
)
from bridge.core.mapping import build_user_map, status_to_tracker
from bridge.core.outcomes import (
    CUT_SHORT,
    Attempt,
    Observation,
    Pending,
    Seen,
    Then,
    observe_later,
    pending_from_json,
    pending_to_json,
    settle,
)
from bridge.core.plan import Policy, plan_link
from bridge.core.values import Pair, Snapshot

TABLE = StatusMapping()
USERS = build_user_map(
    [{"id": "m1", "email": "bob@example.com", "user": {"id": "2", "email": "bob@example.com"}}],
    [{"uid": 12, "login": "bob", "email": "bob@example.com"}],
    {},
)
CLOSE = WriteTracker("status", "closed", "sentry changed", resolution="fixed")
# A person resolved the Sentry issue; the bridge closes the Tracker issue.
PLANNED = Pair("resolved", "open")
BASE = Pair("unresolved.ongoing", "open")


def attempt(action: object = CLOSE, planned: Pair = PLANNED, baseline: Pair | None = BASE) -> Attempt:
    return Attempt(action, planned, baseline)  # type: ignore[arg-type]


def only_status(status: Pair) -> Snapshot:
    return Snapshot({"status": status, "assignee": Pair(None, None), "followers": Pair(None, frozenset())})


def policy(conflict: str = "tracker") -> Policy:
    return Policy(directions={"status": "both", "assignee": "both", "followers": "to_tracker"},
                  conflict=conflict, link_source="sentry", mapping=MappingSettings(status=TABLE))  # type: ignore[arg-type]


# -- the table, row by row ----------------------------------------------------------------------


def test_applied_answer_read_moves_the_baseline_to_written_and_read_back() -> None:
    s = settle(attempt(), Observation(Seen.APPLIED, "closed"))
    assert s.baseline == Pair("resolved", "closed")
    assert (s.then, s.wrote, s.pending) == (Then.DONE, True, None)
    assert (s.entry.side, s.entry.outcome, s.entry.value) == ("tracker", "ok", "closed")


def test_refused_for_good_leaves_the_baseline_and_is_retried_later() -> None:
    s = settle(attempt(), Observation(Seen.REFUSED, None, "tracker: request refused (422)"))
    assert s.baseline is None and s.then is Then.RETRY_LATER and not s.wrote
    assert s.entry.outcome == "failed" and "422" in s.entry.detail


def test_version_conflict_leaves_the_baseline_and_replans_now() -> None:
    patch = WriteTracker("assignee", "bob", "sentry changed")
    s = settle(attempt(patch, Pair("bob@example.com", None), Pair(None, None)), Observation(Seen.CONFLICT))
    assert s.baseline is None and s.then is Then.REPLAN and not s.wrote


def test_did_not_land_leaves_the_baseline_and_is_retried_later() -> None:
    # The engine already retried it in the cycle; what is left is a recorded failure.
    s = settle(attempt(), Observation(Seen.NOT_LANDED, None, "tracker: server error 503"))
    assert s.baseline is None and s.then is Then.RETRY_LATER and s.entry.outcome == "failed"


def test_answer_lost_but_landed_counts_as_applied_and_records_ownership() -> None:
    add = AddFollowers(frozenset({"bob"}), "new bookmark")
    planned = Pair(frozenset({"bob@example.com"}), frozenset())
    s = settle(attempt(add, planned, Pair(frozenset(), frozenset())),
               Observation(Seen.LANDED, frozenset({"bob", "erin"}), "the answer was lost; read back: it landed"))
    assert s.baseline == Pair(frozenset({"bob@example.com"}), frozenset({"bob", "erin"}))
    assert s.owned_added == {"bob"}  # ours; erin was added by a person
    assert (s.then, s.wrote, s.entry.outcome) == (Then.DONE, True, "landed")


def test_answer_lost_and_no_read_back_keeps_the_write_pending() -> None:
    s = settle(attempt(), Observation(Seen.UNKNOWN, None, "timed out"), reached=("closed",))
    assert s.baseline is None and s.then is Then.READ_FIRST and not s.wrote
    assert s.pending == Pending(attempt(), ("closed",)) and s.entry.outcome == "unknown"


def test_a_path_stopped_after_step_k_moves_only_the_tracker_side() -> None:
    s = settle(attempt(), Observation(Seen.PARTIAL, "inProgress", "stopped at inProgress: 503"))
    # Tracker side: where the bridge itself brought the issue; Sentry side: a mark no state
    # equals, so the next cycle carries whatever Sentry holds then.
    assert s.baseline == Pair(CUT_SHORT, "inProgress")
    assert s.then is Then.RETRY_LATER and s.wrote and s.entry.outcome == "partial"


def test_a_path_with_an_unknown_step_after_landed_ones_keeps_both() -> None:
    s = settle(attempt(), Observation(Seen.UNKNOWN, "inProgress", "timed out"), reached=("inProgress", "closed"))
    assert s.baseline == Pair(CUT_SHORT, "inProgress")
    assert s.pending is not None and s.pending.reached == ("inProgress", "closed") and s.wrote


def test_a_removal_releases_only_the_logins_that_are_gone() -> None:
    remove = RemoveFollowers(frozenset({"bob", "carol"}), "bookmarks removed")
    s = settle(attempt(remove, Pair(frozenset(), frozenset({"bob", "carol"})), None),
               Observation(Seen.APPLIED, frozenset({"carol"})))
    assert s.owned_removed == {"bob"} and s.owned_added == frozenset()


def test_an_add_followed_by_a_removal_leaves_the_baseline_to_the_last_write() -> None:
    add = AddFollowers(frozenset({"bob"}), "new bookmark", moves_baseline=False)
    s = settle(attempt(add, Pair(frozenset(), frozenset()), None), Observation(Seen.APPLIED, frozenset({"bob"})))
    assert s.baseline is None and s.owned_added == {"bob"}


# -- pending writes judged later ------------------------------------------------------------------


def test_a_pending_transition_is_judged_from_the_status_read_later() -> None:
    pending = Pending(attempt(), ("inProgress", "closed"))
    assert observe_later(pending, Pair("resolved", "closed")).seen is Seen.LANDED
    assert observe_later(pending, Pair("resolved", "inProgress")) == Observation(
        Seen.PARTIAL, "inProgress", observe_later(pending, Pair("resolved", "inProgress")).detail)
    assert observe_later(pending, Pair("resolved", "open")).seen is Seen.NOT_LANDED
    assert observe_later(pending, Pair("resolved", "needInfo")).seen is Seen.SUPERSEDED


def test_a_pending_sentry_write_is_judged_by_what_satisfies_it() -> None:
    resolve = WriteSentry("status", "resolved", "tracker changed")
    pending = Pending(attempt(resolve, Pair("unresolved.ongoing", "closed"), Pair("unresolved.ongoing", "open")))
    assert observe_later(pending, Pair("resolvedInNextRelease", "closed")).seen is Seen.LANDED
    assert observe_later(pending, Pair("unresolved.ongoing", "closed")).seen is Seen.NOT_LANDED
    assert observe_later(pending, Pair("ignored.archived_forever", "closed")).seen is Seen.SUPERSEDED
    assign = WriteSentry("assignee", "bob@example.com", "tracker changed", ref="2")
    pending = Pending(attempt(assign, Pair(None, "bob"), Pair(None, None)))
    assert observe_later(pending, Pair("bob@example.com", "bob")).seen is Seen.LANDED


def test_a_pending_follower_add_owns_what_landed() -> None:
    add = AddFollowers(frozenset({"bob", "carol"}), "new bookmarks")
    pending = Pending(attempt(add, Pair(frozenset({"b@x", "c@x"}), frozenset()), None))
    seen = observe_later(pending, Pair(frozenset({"b@x", "c@x"}), frozenset({"bob"})))
    assert seen.seen is Seen.LANDED
    assert settle(pending.attempt, seen).owned_added == {"bob"}
    assert observe_later(pending, Pair(frozenset(), frozenset())).seen is Seen.NOT_LANDED


@given(st.sampled_from([
    CLOSE, WriteTracker("assignee", None, "r"), WriteTracker("assignee", "bob", "r"),
    AddFollowers(frozenset({"a", "b"}), "r", moves_baseline=False), RemoveFollowers(frozenset({"a"}), "r"),
    AddFollowers(frozenset({"a"}), "r", moves_baseline=False, still_seen=frozenset({"c@x"})),
    WriteSentry("status", "resolvedInNextRelease", "r"), WriteSentry("assignee", None, "r"),
    WriteSentry("assignee", "x@example.com", "r", ref="7"),
]), st.sampled_from([None, Pair(None, None), Pair(frozenset({"a"}), frozenset()), Pair("ignored", "closed")]),
    st.lists(st.sampled_from(["open", "inProgress", "closed"]), max_size=3))
def test_pending_writes_round_trip_through_json(action: object, baseline: Pair | None, reached: list[str]) -> None:
    pending = Pending(attempt(action, Pair(frozenset({"x"}), "open"), baseline), tuple(reached))
    assert pending_from_json(pending_to_json(pending)) == pending


# -- outcomes and the planner together -------------------------------------------------------------

STATES = ["unresolved.ongoing", "unresolved.regressed", "resolved", "resolvedInNextRelease", "ignored.archived_forever"]
STATUSES = ["open", "inProgress", "needInfo", "resolved", "closed"]


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(STATES), st.sampled_from(STATES), st.sampled_from(STATUSES), st.sampled_from(STATUSES),
       st.sampled_from(["sentry", "tracker", "manual"]), st.booleans())
def test_a_path_cut_short_is_finished_and_never_taken_for_a_persons_edit(
    base_state: str, state: str, base_status: str, intermediate: str, conflict: str, later: bool,
) -> None:
    """Whatever the states, the policy, and whether the cut is learned now (PARTIAL) or next
    cycle from a pending note: the next plan writes nothing to Sentry and records no conflict;
    it continues towards the target (or finds the sides in step)."""
    pol = policy(conflict)
    base = Pair(base_state, base_status)
    now = only_status(Pair(state, base_status))
    actions = plan_link({"status": base}, now, frozenset(), USERS, pol)
    writes = [a for a in actions if kind_of(a) == "WriteTrackerStatus"]
    if not writes or intermediate in (base_status, writes[0].target.status):
        return
    step = attempt(writes[0], now.get("status"), base)
    cut = Snapshot({**now.pairs, "status": Pair(state, intermediate)})
    if later:  # the answer was lost: the next cycle judges the pending note from what it reads
        pending = (Pending(step, (intermediate,)),)
        again = plan_link({"status": base}, cut, frozenset(), USERS, pol, frozenset(), pending)
        assert [type(a) for a in again if a.field == "status"][0] is Reconcile
    else:
        moved = settle(step, Observation(Seen.PARTIAL, intermediate)).baseline
        assert moved is not None
        again = plan_link({"status": moved}, cut, frozenset(), USERS, pol)
    status = [a for a in changes(again) if a.field == "status" and not isinstance(a, Reconcile)]
    assert not any(kind_of(a) in ("WriteSentryStatus", "RecordConflict") for a in status), status
    target = status_to_tracker(state, TABLE)
    assert all(a.target == target for a in status if kind_of(a) == "WriteTrackerStatus")


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(STATES), st.sampled_from(STATUSES), st.sampled_from(STATES),
       st.sampled_from(["sentry", "tracker", "manual"]), st.sampled_from([Seen.APPLIED, Seen.LANDED]))
def test_a_write_that_landed_is_never_planned_again(
    base_state: str, base_status: str, state: str, conflict: str, seen: Seen,
) -> None:
    pol = policy(conflict)
    base = {"status": Pair(base_state, base_status)}
    now = only_status(Pair(state, base_status))
    for action in [a for a in plan_link(base, now, frozenset(), USERS, pol) if is_write(a)]:
        assert kind_of(action) == "WriteTrackerStatus"
        landed = settle(attempt(action, now.get("status"), base["status"]), Observation(seen, action.target.status))
        assert landed.baseline is not None
        after = Snapshot({**now.pairs, "status": Pair(state, action.target.status)})
        assert [a for a in plan_link({"status": landed.baseline}, after, frozenset(), USERS, pol) if is_write(a)] == []


def test_a_plain_resolve_is_the_no_release_fallback_only_when_the_issue_was_not_resolved() -> None:
    # A project without releases refuses "resolved in the next release": the client resolves
    # plainly, and that is the write having landed ...
    in_next = WriteSentry("status", "resolvedInNextRelease", "tracker changed")
    pending = Pending(attempt(in_next, Pair("unresolved.ongoing", "resolved"), Pair("unresolved.ongoing", "open")))
    assert observe_later(pending, Pair("resolved", "resolved")).seen is Seen.LANDED
    # ... but an issue that was resolved already and still is has not moved: nothing landed.
    pending = Pending(attempt(in_next, Pair("resolved", "resolved"), Pair("resolved", "closed")))
    assert observe_later(pending, Pair("resolved", "resolved")).seen is Seen.NOT_LANDED


# -- pending writes judged by the issue's history (what the bridge's own account did) -----------


def test_history_shows_a_landed_write_that_a_person_undid() -> None:
    pending = Pending(attempt(), ("inProgress", "closed"))
    # The issue shows the value the write was planned from, but the history has our close: it
    # landed, and the person's reopen after it is a change of its own (carried, not overwritten).
    seen = observe_later(pending, Pair("resolved", "open"), history=("closed",))
    assert (seen.seen, seen.value) == (Seen.LANDED, "closed")
    moved = settle(pending.attempt, seen).baseline
    assert moved == Pair("resolved", "closed")
    again = plan_link({"status": moved}, only_status(Pair("resolved", "open")), frozenset(), USERS, policy("manual"))
    assert [type(a) for a in again if a.field == "status"] == [WriteSentry]
    # A step of the path in the history, not the target: the bridge's own partial walk.
    assert observe_later(pending, Pair("resolved", "needInfo"), history=("inProgress",)).seen is Seen.PARTIAL
    # Nothing of ours in the history: it never reached the issue.
    assert observe_later(pending, Pair("resolved", "open"), history=()).seen is Seen.NOT_LANDED
    assert observe_later(pending, Pair("resolved", "closed"), history=()).seen is Seen.SUPERSEDED


def test_history_decides_who_added_a_follower() -> None:
    add = AddFollowers(frozenset({"bob"}), "new bookmark")
    pending = Pending(attempt(add, Pair(frozenset({"bob@example.com"}), frozenset()), None))
    # bob follows, but nothing of ours is in the history: a person added him; never owned.
    seen = observe_later(pending, Pair(frozenset({"bob@example.com"}), frozenset({"bob"})), history=())
    assert seen.seen is Seen.NOT_LANDED and settle(pending.attempt, seen).owned_added == frozenset()
    # Ours is in the history: owned while he follows ...
    seen = observe_later(pending, Pair(frozenset({"bob@example.com"}), frozenset({"bob"})),
                         history=(frozenset({"bob"}),))
    assert seen.seen is Seen.LANDED and settle(pending.attempt, seen).owned_added == {"bob"}
    # ... and not once he unfollowed by hand since.
    seen = observe_later(pending, Pair(frozenset({"bob@example.com"}), frozenset()), history=(frozenset({"bob"}),))
    assert seen.seen is Seen.LANDED and settle(pending.attempt, seen).owned_added == frozenset()


def test_notes_written_before_fields_were_data_are_still_read() -> None:
    """A state file upgraded in the middle of an unsettled write keeps its note."""
    old = ('{"action": {"kind": "WriteSentryAssignee", "reason": "r", "user_id": "7", "email": "x@example.com"}, '
           '"planned": [null, "bob"], "baseline": null, "version": null, "at": "", "id": "a1", "reached": []}')
    pending = pending_from_json(old)
    assert pending.attempt.action == WriteSentry("assignee", "x@example.com", "r", ref="7")
    assert pending.kind == "WriteSentryAssignee"
    old = ('{"action": {"kind": "WriteTrackerStatus", "reason": "r", "status": "closed", "resolution": "fixed"}, '
           '"planned": ["resolved", "open"], "baseline": null, "version": 3, "at": "", "id": "a2", '
           '"reached": ["inProgress"]}')
    assert pending_from_json(old) == Pending(Attempt(WriteTracker("status", "closed", "r", resolution="fixed"),
                                                     Pair("resolved", "open"), None, 3, "", "a2"), ("inProgress",))
    with pytest.raises(ValueError, match="not a pending write"):
        pending_from_json(old.replace('"kind": "WriteTrackerStatus"', '"kind": "WriteTrackerColour"'))
    # An add noted before `still_seen`: read, and when it lands the baseline waits for the removal.
    old = ('{"action": {"kind": "AddFollowers", "field": "followers", "reason": "r", "logins": ["bob"], '
           '"moves_baseline": false}, "planned": [{"set": ["b@x"]}, {"set": []}], "baseline": null, "version": 3, '
           '"at": "", "id": "a3", "reached": []}')
    add = pending_from_json(old)
    assert add.attempt.action == AddFollowers(frozenset({"bob"}), "r", moves_baseline=False)
    assert add.attempt.planned == Pair(frozenset({"b@x"}), frozenset())
    assert settle(add.attempt, observe_later(add, Pair(frozenset({"b@x"}), frozenset({"bob"})))).baseline is None
