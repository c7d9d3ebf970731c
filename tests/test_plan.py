"""The planner against design §3: one test per row of the table, the safety rules, and
hypothesis properties (planning again after applying a plan yields no write; a field whose sides
are in step is never written)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bridge.config import MappingSettings, StatusMapping, TrackerTarget
from bridge.core.actions import (
    Action,
    AddFollowers,
    Adopt,
    Hold,
    RecordConflict,
    RemoveFollowers,
    ReportUnmapped,
    WriteTracker,
    changes,
    is_write,
    kind_of,
)
from bridge.core.fields import FIELD_NAMES
from bridge.core.mapping import build_user_map, sentry_state_satisfies, status_in_step
from bridge.core.plan import Policy
from bridge.core.plan import plan_link as plan_everything
from bridge.core.values import Pair, Snapshot

TABLE = StatusMapping()


def plan_link(*args: object, **kwargs: object) -> list[Action]:
    """What the planner asks for, without the `Hold`s that only say why nothing happens."""
    return changes(plan_everything(*args, **kwargs))  # type: ignore[arg-type]

USERS = build_user_map(
    members=[
        {"id": "m1", "email": "alice@example.com", "user": {"id": "1", "email": "alice@example.com"}},
        {"id": "m2", "email": "bob@example.com", "user": {"id": "2", "email": "bob@example.com",
                                                           "emails": [{"email": "Bob@Old.example"}]}},
        {"id": "m3", "email": "carol@example.com", "user": {"id": "3", "email": "carol@example.com"}},
        {"id": "m4", "email": "dan@example.com", "user": {"id": "4", "email": "dan@example.com"}},
    ],
    tracker_users=[
        {"uid": 11, "login": "alice-t", "email": "someone-else@example.com"},
        {"uid": 12, "login": "bob", "email": "bob@old.example"},
        {"uid": 13, "login": "carol", "email": "carol@example.com"},
        {"uid": 14, "login": "erin", "email": "erin@example.com"},
    ],
    overrides={"alice@example.com": "alice-t"},
)


def policy(conflict: str = "sentry", source: str = "sentry", **directions: str) -> Policy:
    dirs = {"status": "both", "assignee": "both", "followers": "to_tracker", **directions}
    return Policy(directions=dirs, conflict=conflict, link_source=source, mapping=MappingSettings(status=TABLE))  # type: ignore[arg-type]


def snap(status: tuple[str, str] = ("unresolved.ongoing", "open"),
         assignee: tuple[str | None, str | None] = (None, None),
         followers: tuple[frozenset[str] | None, frozenset[str]] = (frozenset(), frozenset())) -> Snapshot:
    return Snapshot({"status": Pair(*status), "assignee": Pair(*assignee), "followers": Pair(*followers)})


def base(status: tuple[str, str] = ("unresolved.ongoing", "open"),
         assignee: tuple[str | None, str | None] = (None, None),
         followers: tuple[frozenset[str], frozenset[str]] = (frozenset(), frozenset())) -> dict:
    return {"status": Pair(*status), "assignee": Pair(*assignee), "followers": Pair(*followers)}


def status_actions(actions: list) -> list:
    return [a for a in actions if a.field == "status"]


# -- design §3, row by row ----------------------------------------------------------------------


def test_row_same_same_does_nothing() -> None:
    assert plan_link(base(), snap(), frozenset(), USERS, policy()) == []


def test_row_sentry_changed_tracker_same_in_step_adopts() -> None:
    # A regression on Sentry maps onto "open", which Tracker already shows.
    actions = plan_link(base(), snap(("unresolved.regressed", "open")), frozenset(), USERS, policy())
    assert actions == [Adopt("status", Pair("unresolved.regressed", "open"), "changed into step")]


def test_row_sentry_changed_tracker_same_not_in_step_writes_tracker() -> None:
    actions = plan_link(base(), snap(("resolved", "open")), frozenset(), USERS, policy())
    assert len(actions) == 1 and kind_of(actions[0]) == "WriteTrackerStatus"
    assert actions[0].target == TrackerTarget(status="closed", resolution="fixed")


def test_row_sentry_same_tracker_changed_not_in_step_writes_sentry() -> None:
    actions = plan_link(base(), snap(("unresolved.ongoing", "closed")), frozenset(), USERS, policy())
    assert len(actions) == 1 and kind_of(actions[0]) == "WriteSentryStatus"
    assert actions[0].value == "resolved"


def test_row_sentry_same_tracker_changed_in_step_adopts() -> None:
    actions = plan_link(base(), snap(("unresolved.ongoing", "inProgress")), frozenset(), USERS, policy())
    assert [type(a) for a in actions] == [Adopt]


def test_row_both_changed_in_step_adopts() -> None:
    actions = plan_link(base(), snap(("resolved", "closed")), frozenset(), USERS, policy())
    assert [type(a) for a in actions] == [Adopt]
    assert actions[0].reason == "both changed and converged"


@pytest.mark.parametrize(
    ("conflict", "expected"),
    [("sentry", "WriteTrackerStatus"), ("tracker", "WriteSentryStatus"), ("manual", "RecordConflict")],
)
def test_row_both_changed_not_in_step_follows_policy(conflict: str, expected: str) -> None:
    actions = plan_link(base(), snap(("ignored.archived_forever", "inProgress")), frozenset(), USERS,
                        policy(conflict=conflict))
    assert [kind_of(a) for a in actions] == [expected]
    if expected == "WriteTrackerStatus":
        assert actions[0].target == TrackerTarget(status="closed", resolution="wontFix")
    if expected == "WriteSentryStatus":
        assert actions[0].value == "unresolved"


def test_row_new_link_sentry_is_the_source() -> None:
    actions = plan_link({}, snap(("resolved", "open")), frozenset(), USERS, policy())
    assert [kind_of(a) for a in status_actions(actions)] == ["WriteTrackerStatus"]


def test_row_new_link_tracker_source_when_configured() -> None:
    actions = plan_link({}, snap(("resolved", "open")), frozenset(), USERS, policy(source="tracker"))
    assert [kind_of(a) for a in status_actions(actions)] == ["WriteSentryStatus"]


def test_row_new_link_in_step_adopts() -> None:
    actions = plan_link({}, snap(("ignored.archived_forever", "closed")), frozenset(), USERS, policy())
    assert [type(a) for a in status_actions(actions)] == [Adopt]


# -- many-to-one mappings and directions -------------------------------------------------------


def test_ignored_issue_is_not_resolved_when_tracker_closes_for_it() -> None:
    # closed maps back to "resolved", but closed is also what "ignored" maps to: in step.
    b = base(("ignored.archived_forever", "closed"))
    assert plan_link(b, snap(("ignored.archived_forever", "closed")), frozenset(), USERS, policy()) == []
    assert status_in_step("ignored.archived_forever", "closed", TABLE)


def test_to_tracker_only_field_adopts_tracker_changes() -> None:
    actions = plan_link(base(), snap(("unresolved.ongoing", "closed")), frozenset(), USERS,
                        policy(status="to_tracker"))
    assert [type(a) for a in actions] == [Adopt]


def test_off_field_is_never_touched() -> None:
    assert plan_link(base(), snap(("resolved", "open")), frozenset(), USERS, policy(status="off")) == []


def test_state_without_a_row_is_reported_not_written() -> None:
    table = StatusMapping(to_tracker={"resolved": TrackerTarget(status="closed")}, to_sentry={"closed": "resolved"})
    pol = Policy({"status": "both"}, "sentry", "sentry", MappingSettings(status=table))
    actions = plan_link(base(("resolved", "closed")), snap(("ignored", "closed")), frozenset(), USERS, pol)
    assert [type(a) for a in actions] == [ReportUnmapped]


# -- assignee ----------------------------------------------------------------------------------


def test_assignee_by_override_and_by_any_email() -> None:
    actions = plan_link(base(), snap(assignee=("alice@example.com", None)), frozenset(), USERS, policy())
    assert actions == [WriteTracker("assignee", "alice-t", actions[0].reason)]
    actions = plan_link(base(), snap(assignee=(None, "bob")), frozenset(), USERS, policy())
    assert kind_of(actions[0]) == "WriteSentryAssignee" and actions[0].ref == "2"
    assert plan_link(base(assignee=("bob@example.com", "bob")), snap(assignee=("bob@example.com", "bob")),
                     frozenset(), USERS, policy()) == []


def test_unmapped_user_is_reported_never_guessed() -> None:
    actions = plan_link(base(), snap(assignee=("dan@example.com", None)), frozenset(), USERS, policy())
    assert [type(a) for a in actions] == [ReportUnmapped]
    actions = plan_link(base(), snap(assignee=(None, "erin")), frozenset(), USERS, policy())
    assert [type(a) for a in actions] == [ReportUnmapped]


def test_unassign_travels_both_ways() -> None:
    actions = plan_link(base(assignee=("carol@example.com", "carol")), snap(assignee=(None, "carol")),
                        frozenset(), USERS, policy())
    assert actions == [WriteTracker("assignee", None, actions[0].reason)]


# -- followers ---------------------------------------------------------------------------------


def test_bookmark_adds_a_follower() -> None:
    actions = plan_link(base(), snap(followers=(frozenset({"carol@example.com"}), frozenset())), frozenset(),
                        USERS, policy())
    assert actions == [AddFollowers(frozenset({"carol"}), actions[0].reason)]


def test_removed_bookmark_removes_only_the_owned_follower() -> None:
    b = base(followers=(frozenset({"carol@example.com", "bob@example.com"}), frozenset({"carol", "bob", "erin"})))
    now = snap(followers=(frozenset(), frozenset({"carol", "bob", "erin"})))
    actions = plan_link(b, now, frozenset({"carol"}), USERS, policy())
    assert actions == [RemoveFollowers(frozenset({"carol"}), actions[0].reason)]


def test_unknown_bookmarks_change_nothing() -> None:
    b = base(followers=(frozenset({"carol@example.com"}), frozenset({"carol"})))
    assert plan_link(b, snap(followers=(None, frozenset({"carol"}))), frozenset({"carol"}), USERS, policy()) == []


def test_hand_removed_follower_is_not_re_added() -> None:
    b = base(followers=(frozenset({"carol@example.com"}), frozenset({"carol"})))
    now = snap(followers=(frozenset({"carol@example.com"}), frozenset()))
    actions = plan_link(b, now, frozenset({"carol"}), USERS, policy())
    # Not written again; the baseline is adopted so the commit forgets carol as the bridge's.
    assert actions == [Adopt("followers", now.get("followers"), actions[0].reason)]
    assert "carol unfollowed by hand" in actions[0].reason


def test_the_first_look_at_bookmarks_becomes_the_baseline() -> None:
    """No baseline yet: the owned followers stand for the bookmarks seen; when they match, the
    bookmarks are recorded (an Adopt), so an owned follower unfollowing later changes nothing."""
    now = snap(followers=(frozenset({"carol@example.com"}), frozenset({"carol", "erin"})))
    actions = plan_link({}, now, frozenset({"carol"}), USERS, policy())
    followers = [a for a in actions if getattr(a, "field", None) == "followers"]
    assert followers == [Adopt("followers", now.get("followers"), followers[0].reason)]


def test_followers_to_sentry_is_never_planned() -> None:
    now = snap(followers=(frozenset({"carol@example.com"}), frozenset()))
    assert plan_link(base(), now, frozenset(), USERS, policy(followers="off")) == []


# -- properties --------------------------------------------------------------------------------

STATES = ["unresolved.ongoing", "unresolved.regressed", "unresolved.new", "resolved", "resolvedInNextRelease",
          "ignored.archived_forever", "ignored.archived_until_escalating"]
STATUSES = ["open", "inProgress", "needInfo", "resolved", "closed", "review"]
EMAILS = [None, "alice@example.com", "bob@example.com", "carol@example.com", "dan@example.com"]
LOGINS = [None, "alice-t", "bob", "carol", "erin"]
MAPPED = ["alice@example.com", "bob@example.com", "carol@example.com"]
DIRECTIONS = ["both", "to_tracker", "to_sentry", "off"]

pairs_status = st.tuples(st.sampled_from(STATES), st.sampled_from(STATUSES))
pairs_assignee = st.tuples(st.sampled_from(EMAILS), st.sampled_from(LOGINS))
bookmark_sets = st.frozensets(st.sampled_from(MAPPED))
login_sets = st.frozensets(st.sampled_from(["alice-t", "bob", "carol", "erin"]))
policies = st.builds(
    policy,
    conflict=st.sampled_from(["sentry", "tracker", "manual"]),
    source=st.sampled_from(["sentry", "tracker"]),
    status=st.sampled_from(DIRECTIONS),
    assignee=st.sampled_from(DIRECTIONS),
    followers=st.sampled_from(["to_tracker", "off"]),
)


@st.composite
def worlds(draw: st.DrawFn) -> tuple[dict, Snapshot, frozenset[str], Policy]:
    baseline: dict = {}
    if draw(st.booleans()):
        baseline["status"] = Pair(*draw(pairs_status))
    if draw(st.booleans()):
        baseline["assignee"] = Pair(*draw(pairs_assignee))
    if draw(st.booleans()):
        baseline["followers"] = Pair(draw(bookmark_sets), draw(login_sets))
    now = Snapshot({"status": Pair(*draw(pairs_status)), "assignee": Pair(*draw(pairs_assignee)),
                    "followers": Pair(draw(st.one_of(st.none(), bookmark_sets)), draw(login_sets))})
    return baseline, now, draw(login_sets), draw(policies)


def apply(actions: list, baseline: dict, now: Snapshot, owned: frozenset[str]) -> tuple[dict, Snapshot, frozenset[str]]:
    """A model of the servers and the engine: each write lands as a real server would store it,
    and the baseline moves to what was read back."""
    status, assignee, followers = now.get("status"), now.get("assignee"), now.get("followers")
    new_base = dict(baseline)
    for a in actions:
        if isinstance(a, Adopt):
            new_base[a.field] = a.pair
        elif kind_of(a) == "WriteTrackerStatus":
            status = Pair(status.sentry, a.target.status)
            new_base["status"] = status
        elif kind_of(a) == "WriteSentryStatus":
            state = {"unresolved": "unresolved.ongoing", "ignored": "ignored.archived_forever"}.get(a.value, a.value)
            status = Pair(state, status.tracker)
            new_base["status"] = status
        elif kind_of(a) == "WriteTrackerAssignee":
            assignee = Pair(assignee.sentry, a.value)
            new_base["assignee"] = assignee
        elif kind_of(a) == "WriteSentryAssignee":
            assignee = Pair(a.value, assignee.tracker)
            new_base["assignee"] = assignee
        elif isinstance(a, AddFollowers):
            followers = Pair(followers.sentry, followers.tracker | a.logins)
            owned = owned | a.logins
            new_base["followers"] = followers
        elif isinstance(a, RemoveFollowers):
            followers = Pair(followers.sentry, followers.tracker - a.logins)
            owned = owned - a.logins
            new_base["followers"] = followers
    looked = new_base.get("followers")
    if changes(actions) and looked is not None and isinstance(looked.sentry, frozenset):
        # The commit forgets owned followers who no longer follow (`Store.commit_run`).
        owned = owned & followers.tracker if isinstance(followers.tracker, frozenset) else owned
    return new_base, Snapshot({"status": status, "assignee": assignee, "followers": followers}), owned


@settings(max_examples=400, deadline=None)
@given(worlds())
def test_planning_again_after_applying_yields_no_write(world: tuple) -> None:
    baseline, now, owned, pol = world
    first = plan_link(baseline, now, owned, USERS, pol)
    new_base, new_now, new_owned = apply(first, baseline, now, owned)
    second = plan_link(new_base, new_now, new_owned, USERS, pol)
    assert [a for a in second if is_write(a)] == []
    assert [a for a in second if isinstance(a, Adopt)] == []


@settings(max_examples=400, deadline=None)
@given(worlds())
def test_a_field_in_step_is_never_written(world: tuple) -> None:
    baseline, now, owned, pol = world
    actions = plan_link(baseline, now, owned, USERS, pol)
    if status_in_step(now.get("status").sentry, now.get("status").tracker, TABLE):
        assert not [a for a in actions if is_write(a) and a.field == "status"]
    from bridge.core.mapping import assignee_in_step

    if assignee_in_step(now.get("assignee").sentry, now.get("assignee").tracker, USERS):
        assert not [a for a in actions if is_write(a) and a.field == "assignee"]


@settings(max_examples=300, deadline=None)
@given(worlds())
def test_only_owned_followers_are_removed_and_writes_respect_directions(world: tuple) -> None:
    baseline, now, owned, pol = world
    for a in plan_link(baseline, now, owned, USERS, pol):
        if isinstance(a, RemoveFollowers):
            assert a.logins <= owned
        if is_write(a) and a.side == "tracker":
            assert pol.allows(a.field, "tracker")
        if is_write(a) and a.side == "sentry":
            assert pol.allows(a.field, "sentry")
        if kind_of(a) == "WriteSentryStatus":
            assert not sentry_state_satisfies(now.get("status").sentry, a.value)


def test_open_conflict_settles_when_people_put_both_sides_back() -> None:
    # A conflict was recorded; then people set both sides back to what the baseline holds.
    b = base(assignee=("bob@example.com", "bob"))
    now = snap(assignee=("bob@example.com", "bob"))
    assert plan_link(b, now, frozenset(), USERS, policy(conflict="manual")) == []
    actions = plan_link(b, now, frozenset(), USERS, policy(conflict="manual"), frozenset({"assignee"}))
    assert [(type(a), a.field) for a in actions] == [(Adopt, "assignee")]
    # Still apart: the conflict stays (no adopt, no write).
    apart = snap(assignee=("dan@example.com", None))
    assert plan_link(b, apart, frozenset(), USERS, policy(conflict="manual"), frozenset({"assignee"})) == [
        RecordConflict("assignee", Pair("dan@example.com", None), "both changed; sync.conflict = manual")]


def test_a_winner_without_a_counterpart_records_the_conflict() -> None:
    # Both changed; sync.conflict = sentry, but Sentry's new assignee is a team (no Tracker user):
    # nothing can be carried, so the Tracker edit stays and a person gets a conflict to settle.
    b = base(assignee=(None, None))
    now = snap(assignee=("team:backend", "bob"))
    actions = plan_link(b, now, frozenset(), USERS, policy(conflict="sentry"))
    assert [type(a) for a in actions if a.field == "assignee"] == [RecordConflict]
    assert "'team:backend' has no counterpart in Tracker" in actions[0].reason
    # The same with the winner on the other side: erin has no Sentry account.
    now = snap(assignee=("bob@example.com", "erin"))
    actions = plan_link(b, now, frozenset(), USERS, policy(conflict="tracker"))
    assert [type(a) for a in actions if a.field == "assignee"] == [RecordConflict]


def test_every_field_says_why_nothing_happens() -> None:
    b = base()
    reasons = {a.field: a.reason for a in plan_everything(b, snap(), frozenset(), USERS, policy())
               if isinstance(a, Hold)}
    assert reasons == {
        "status": "in step, and unchanged on both sides since the baseline",
        "assignee": "in step, and unchanged on both sides since the baseline",
        "followers": "no bookmark came or went since the baseline; followers people added or removed by hand "
                     "are left alone",
        "priority": "sync.fields.priority = off: never touched",
    }
    unknown = snap(followers=(None, frozenset()))
    held = plan_everything(b, unknown, frozenset(), USERS, policy(status="off", followers="off"))
    assert [(a.field, a.reason) for a in held if isinstance(a, Hold)] == [
        ("status", "sync.fields.status = off: never touched"),
        ("assignee", "in step, and unchanged on both sides since the baseline"),
        ("followers", "sync.fields.followers = off: followers are never touched"),
        ("priority", "sync.fields.priority = off: never touched"),
    ]
    # Every field gets exactly one decision: a Hold, or something that acts.
    for actions in (plan_everything(b, snap(status=("resolved", "open")), frozenset(), USERS, policy()),):
        assert {a.field for a in actions} == set(FIELD_NAMES)
