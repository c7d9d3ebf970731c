"""The planner: design §3 as a pure function.

`plan_link` takes only values (the baseline pair per field, both sides now, the followers the
bridge owns, the user map and the policy) and returns a list of frozen actions.  No clock, no
network, no database: the engine executes the actions and moves the baseline to what the
servers answered.

The baseline pair `(sentry, tracker)` per field holds the raw values of both sides the last time
they were known to be in step.  Keeping both raw values makes many-to-one mappings safe: a
Tracker `closed` that maps from both `resolved` and `ignored` never flips an ignored issue.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from bridge.config import StatusMapping, TrackerTarget
from bridge.mapping import (
    UserMap,
    assignee_in_step,
    status_in_step,
    status_to_sentry,
    status_to_tracker,
)

Field = Literal["status", "assignee", "followers"]
Direction = Literal["both", "to_tracker", "to_sentry", "off"]
Side = Literal["sentry", "tracker"]
Value = str | frozenset[str] | None
FIELDS: tuple[Field, ...] = ("status", "assignee", "followers")


@dataclass(frozen=True)
class Pair:
    """One field's values on both sides (a baseline, or what the sides hold now)."""

    sentry: Value
    tracker: Value


@dataclass(frozen=True)
class Snapshot:
    """Both sides of one link now.  `followers.sentry` is the set of e-mails of mapped people
    who bookmarked the issue, or None when that is unknown this cycle."""

    status: Pair
    assignee: Pair
    followers: Pair

    def get(self, name: Field) -> Pair:
        return {"status": self.status, "assignee": self.assignee, "followers": self.followers}[name]


@dataclass(frozen=True)
class Policy:
    directions: Mapping[Field, Direction]
    conflict: Literal["sentry", "tracker", "manual"]
    link_source: Side
    status_table: StatusMapping

    def allows(self, name: Field, to: Side) -> bool:
        direction = self.directions.get(name, "off")
        return direction == "both" or direction == f"to_{to}"


# -- actions -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class WriteTrackerStatus:
    target: TrackerTarget
    reason: str
    field: Field = "status"


@dataclass(frozen=True)
class WriteTrackerAssignee:
    login: str | None
    reason: str
    field: Field = "assignee"


@dataclass(frozen=True)
class AddFollowers:
    logins: frozenset[str]
    reason: str
    field: Field = "followers"


@dataclass(frozen=True)
class RemoveFollowers:
    logins: frozenset[str]
    reason: str
    field: Field = "followers"


@dataclass(frozen=True)
class WriteSentryStatus:
    state: str
    reason: str
    field: Field = "status"


@dataclass(frozen=True)
class WriteSentryAssignee:
    user_id: str | None
    email: str | None
    reason: str
    field: Field = "assignee"


@dataclass(frozen=True)
class Adopt:
    """Both sides are in step (or one side may not be written): the baseline moves, no write."""

    field: Field
    pair: Pair
    reason: str


@dataclass(frozen=True)
class RecordConflict:
    field: Field
    pair: Pair
    reason: str


@dataclass(frozen=True)
class ReportUnmapped:
    """A value that has no counterpart (a user without a match, a state without a row)."""

    field: Field
    side: Side
    value: str
    reason: str


TrackerWrite = WriteTrackerStatus | WriteTrackerAssignee | AddFollowers | RemoveFollowers
SentryWrite = WriteSentryStatus | WriteSentryAssignee
Action = TrackerWrite | SentryWrite | Adopt | RecordConflict | ReportUnmapped
WRITES = (WriteTrackerStatus, WriteTrackerAssignee, AddFollowers, RemoveFollowers, WriteSentryStatus,
          WriteSentryAssignee)


def is_write(action: Action) -> bool:
    return isinstance(action, WRITES)


# -- the planner -------------------------------------------------------------------------------


def plan_link(
    baseline: Mapping[Field, Pair],
    now: Snapshot,
    owned_followers: frozenset[str],
    users: UserMap,
    policy: Policy,
    open_conflicts: frozenset[str] = frozenset(),
) -> list[Action]:
    """Every action one link needs this cycle, in the order the engine should run them.
    `open_conflicts` names the fields with a conflict still recorded for this link."""
    actions: list[Action] = []
    for name in ("status", "assignee"):
        planned = _plan_scalar(name, baseline.get(name), now.get(name), users, policy)
        if not planned and name in open_conflicts and _in_step(name, now.get(name), users, policy):
            # People put both sides back in step (even back to the baseline): the recorded
            # conflict is over; adopting settles it.
            planned = [Adopt(name, now.get(name), "conflict settled by hand: both sides in step")]
        actions.extend(planned)
    actions.extend(_plan_followers(baseline.get("followers"), now.followers, owned_followers, users, policy))
    return actions


def _in_step(name: Field, pair: Pair, users: UserMap, policy: Policy) -> bool:
    if name == "status":
        return (
            isinstance(pair.sentry, str)
            and isinstance(pair.tracker, str)
            and status_in_step(pair.sentry, pair.tracker, policy.status_table)
        )
    return assignee_in_step(_text(pair.sentry), _text(pair.tracker), users)


def _text(value: Value) -> str | None:
    return value if isinstance(value, str) else None


def _plan_scalar(
    name: Field, base: Pair | None, now: Pair, users: UserMap, policy: Policy
) -> list[Action]:
    if policy.directions.get(name, "off") == "off":
        # The operator switched this field off: never touch it.
        return []
    in_step = _in_step(name, now, users, policy)
    if base is None:
        if in_step:
            # A new link whose sides already agree: remember them.
            return [Adopt(name, now, "new link, both sides already in step")]
        # A new link that disagrees: the configured source side wins (Sentry by default).
        first: Side = policy.link_source
        second: Side = "tracker" if first == "sentry" else "sentry"
        for source in (first, second):
            target: Side = "tracker" if source == "sentry" else "sentry"
            if policy.allows(name, target):
                return _write(name, source, now, users, policy, f"new link, {source} is the source")
        # A new link on a field no direction may write: just remember what both sides hold.
        return [Adopt(name, now, "new link, no direction allowed for this field")]

    sentry_changed = now.sentry != base.sentry
    tracker_changed = now.tracker != base.tracker
    if not sentry_changed and not tracker_changed:
        # Nothing moved since the last sync (including our own echoes).
        return []
    if in_step:
        # One side changed to something that already matches, or people converged by hand.
        why = "both changed and converged" if sentry_changed and tracker_changed else "changed into step"
        return [Adopt(name, now, why)]
    if sentry_changed and not tracker_changed:
        if policy.allows(name, "tracker"):
            # Someone changed Sentry: carry it to Tracker.
            return _write(name, "sentry", now, users, policy, "sentry changed, tracker unchanged")
        # Sentry changed but this field never flows to Tracker: remember it so that a later
        # Tracker change is not mistaken for a conflict.
        return [Adopt(name, now, "sentry changed; direction is to_sentry only")]
    if tracker_changed and not sentry_changed:
        if policy.allows(name, "sentry"):
            # Someone changed Tracker: carry it to Sentry.
            return _write(name, "tracker", now, users, policy, "tracker changed, sentry unchanged")
        # Tracker changed but this field never flows to Sentry.
        return [Adopt(name, now, "tracker changed; direction is to_tracker only")]
    # Both sides changed to values that do not match: a real conflict.
    winner = policy.conflict
    if winner != "manual":
        loser: Side = "tracker" if winner == "sentry" else "sentry"
        if policy.allows(name, loser):
            # sync.conflict names the side that wins; its value is written to the other.
            return _write(name, winner, now, users, policy, f"both changed; sync.conflict = {winner}")
    # manual policy (or the winner may not be written): record, write nothing.
    return [RecordConflict(name, now, f"both changed; sync.conflict = {winner}")]


def _write(name: Field, source: Side, now: Pair, users: UserMap, policy: Policy, why: str) -> list[Action]:
    """The write that carries `source`'s value to the other side, or a report when the value
    has no counterpart (never a guess)."""
    if name == "status":
        if source == "sentry":
            state = _text(now.sentry) or ""
            target = status_to_tracker(state, policy.status_table)
            if target is None:
                return [ReportUnmapped(name, "sentry", state, f"{why}; no to_tracker row for {state!r}")]
            return [WriteTrackerStatus(target, f"{why}: {state} -> {target.status}")]
        status = _text(now.tracker) or ""
        wanted = status_to_sentry(status, policy.status_table)
        if wanted is None:
            return [ReportUnmapped(name, "tracker", status, f"{why}; no to_sentry row for {status!r}")]
        return [WriteSentryStatus(wanted, f"{why}: {status} -> {wanted}")]

    if source == "sentry":
        email = _text(now.sentry)
        if email is None:
            return [WriteTrackerAssignee(None, f"{why}: unassigned")]
        login = users.login_for(email)
        if login is None:
            return [ReportUnmapped(name, "sentry", email, f"{why}; no Tracker user for {email}")]
        return [WriteTrackerAssignee(login, f"{why}: {email} -> {login}")]
    login_now = _text(now.tracker)
    if login_now is None:
        return [WriteSentryAssignee(None, None, f"{why}: unassigned")]
    person = users.person_for(login_now)
    if person is None:
        return [ReportUnmapped(name, "tracker", login_now, f"{why}; no Sentry user for {login_now}")]
    return [WriteSentryAssignee(person.user_id, person.email, f"{why}: {login_now} -> {person.email}")]


def _plan_followers(
    base: Pair | None, now: Pair, owned: frozenset[str], users: UserMap, policy: Policy
) -> list[Action]:
    if not policy.allows("followers", "tracker"):
        # Followers only ever flow from Sentry bookmarks to Tracker.
        return []
    bookmarks = now.sentry
    if not isinstance(bookmarks, frozenset):
        # Bookmarks could not be learned this cycle: unknown is not "nobody".
        return []
    followers = now.tracker if isinstance(now.tracker, frozenset) else frozenset()
    before = base.sentry if base is not None and isinstance(base.sentry, frozenset) else frozenset()
    if bookmarks == before:
        # No bookmark came or went; hand-made follower changes in Tracker are left alone.
        return []
    actions: list[Action] = []
    added = {users.login_for(e) for e in bookmarks - before}
    removed = {users.login_for(e) for e in before - bookmarks}
    to_add = frozenset(login for login in added if login) - followers
    # Only followers the bridge itself added are ever removed.
    to_remove = frozenset(login for login in removed if login) & owned & followers
    if to_add:
        # Someone bookmarked the Sentry issue: follow the Tracker issue for them.
        actions.append(AddFollowers(to_add, f"new bookmark(s): {', '.join(sorted(to_add))}"))
    if to_remove:
        # Someone dropped a bookmark: drop the follower the bridge added for them.
        actions.append(RemoveFollowers(to_remove, f"bookmark(s) removed: {', '.join(sorted(to_remove))}"))
    if not actions:
        # Bookmarks changed but Tracker already shows it (or the person unfollowed by hand).
        actions.append(Adopt("followers", now, "bookmarks changed; followers already match"))
    return actions
