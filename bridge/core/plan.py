"""The planner: design §3 as a pure function.

`plan_link` takes only values (the baseline pair per field, both sides now, the followers the
bridge owns, the open conflicts, the writes still pending, the user map and the policy) and
returns a list of frozen actions (`bridge.core.actions`).  No clock, no
network, no database: the engine executes the actions and moves the baseline to what the
servers answered.

The baseline pair `(sentry, tracker)` per field holds the raw values of both sides the last time
they were known to be in step.  Keeping both raw values makes many-to-one mappings safe: a
Tracker `closed` that maps from both `resolved` and `ignored` never flips an ignored issue.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from bridge.config import MappingSettings, Settings, StatusMapping
from bridge.core.actions import (
    Action,
    AddFollowers,
    Adopt,
    Hold,
    Reconcile,
    RecordConflict,
    RemoveFollowers,
    ReportUnmapped,
    WriteSentry,
    WriteTracker,
    changes,
)
from bridge.core.fields import FIELDS, Carried, FieldSpec, Lookup
from bridge.core.mapping import UserMap
from bridge.core.outcomes import Pending, observe_later, settle
from bridge.core.values import Field, Pair, Side, Snapshot, Value, other

Direction = Literal["both", "to_tracker", "to_sentry", "off"]


@dataclass(frozen=True)
class Policy:
    """Which way each field flows, who wins a conflict, the source side of a new link, and the
    value tables (`[mapping.*]`)."""

    directions: Mapping[Field, Direction]
    conflict: Literal["sentry", "tracker", "manual"]
    link_source: Side
    mapping: MappingSettings = field(default_factory=MappingSettings)

    def allows(self, name: Field, to: Side) -> bool:
        direction = self.directions.get(name, "off")
        return direction == "both" or direction == f"to_{to}"

    @property
    def needs_bookmarks(self) -> bool:
        """Whether a set-valued field fed by Sentry bookmarks flows (bookmarks cost searches)."""
        return any(spec.set_valued and self.allows(spec.name, "tracker") for spec in FIELDS)

    @property
    def status_table(self) -> StatusMapping:
        return self.mapping.status

    def lookup(self, users: UserMap) -> Lookup:
        return Lookup(users, self.mapping)

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        return cls(
            directions=dict(settings.sync.fields.model_dump()),
            conflict=settings.sync.conflict,
            link_source=settings.sync.link_source,
            mapping=settings.mapping,
        )


@dataclass(frozen=True)
class LinkState:
    """What the store knows of one link, as the planner needs it: the baseline pair per field,
    the followers the bridge added, the fields with an open conflict, and the writes whose
    outcome is still unknown.  The engine and `explain` build it the same way."""

    baseline: Mapping[Field, Pair] = field(default_factory=dict)
    owned: frozenset[str] = frozenset()
    open_conflicts: frozenset[str] = frozenset()
    pending: tuple[Pending, ...] = ()
    # Per pending write (by its note key): what the bridge's own account did to its field since,
    # from the history, when that was looked up (see `outcomes.observe_later`).
    history: Mapping[str, tuple[Value, ...]] = field(default_factory=dict)


# -- the planner -------------------------------------------------------------------------------


def bookmark_baseline(base: Pair | None) -> frozenset[str] | None:
    """The bookmarks a link's followers baseline holds; None before the link's first look at
    them (or when `relink` could not see them): the planner, `bookmarks_seen` and the commit's
    pruning of owned followers all turn on this."""
    return base.sentry if base is not None and isinstance(base.sentry, frozenset) else None


def bookmarks_seen(marks: frozenset[str] | None, state: LinkState, users: UserMap) -> frozenset[str] | None:
    """The bookmarks a link is planned with: those the searches found, plus those of the
    baseline held by people whose bookmarks no search can tell now: mapped to nobody (an e-mail
    two Tracker accounts share, a person taken out of the mapping) or SSO-only.  Whether they
    still have them is unknown, not "gone": carried as they were, they neither drop a follower
    nor, once they can be searched again, come back as new (re-following someone who
    unfollowed by hand)."""
    seen = bookmark_baseline(state.baseline.get("followers"))
    if marks is None or seen is None:
        return marks
    return marks | frozenset(email for email in seen if not users.bookmarks_known(email))


def plan_for(state: LinkState, now: Snapshot, users: UserMap, policy: Policy) -> list[Action]:
    """Every action one link needs this cycle, from what the store knows of it (the one entry
    point of the engine, `explain` and dry runs alike)."""
    return plan_link(state.baseline, now, state.owned, users, policy, state.open_conflicts, state.pending,
                     state.history)


def plan_link(
    baseline: Mapping[Field, Pair],
    now: Snapshot,
    owned_followers: frozenset[str],
    users: UserMap,
    policy: Policy,
    open_conflicts: frozenset[str] = frozenset(),
    pending: Sequence[Pending] = (),
    history: Mapping[str, tuple[Value, ...]] | None = None,
) -> list[Action]:
    """Every action one link needs this cycle, in the order the engine should run them: first
    the settlement of writes whose outcome was unknown (judged from what the sides show now),
    then per field a write, a baseline move, a record, or a `Hold` saying why nothing happens."""
    actions: list[Action] = []
    base = dict(baseline)
    owned = owned_followers
    for item in pending:
        # An earlier write's answer was lost (or the process stopped): what the side shows now
        # tells whether it landed; the bridge's own doing is never taken for a person's edit.
        seen = observe_later(item, now.get(item.field), (history or {}).get(item.key))
        settled = settle(item.attempt, seen)
        actions.append(Reconcile(item.field, settled, settled.entry.detail))
        if settled.baseline is not None:
            base[item.field] = settled.baseline
        owned = (owned | settled.owned_added) - settled.owned_removed
    lookup = policy.lookup(users)
    for spec in FIELDS:
        name = spec.name
        if spec.set_valued:
            actions.extend(_plan_followers(spec, base.get(name), now.get(name), owned, users, policy))
            continue
        planned = _plan_scalar(spec, base.get(name), now.get(name), lookup, policy)
        if not changes(planned) and name in open_conflicts and spec.in_step(now.get(name), lookup):
            # People put both sides back in step (even back to the baseline): the recorded
            # conflict is over; adopting settles it.
            planned = [Adopt(name, now.get(name), "conflict settled by hand: both sides in step")]
        actions.extend(planned)
    return actions


def _plan_scalar(spec: FieldSpec, base: Pair | None, now: Pair, lookup: Lookup, policy: Policy) -> list[Action]:
    name = spec.name
    if policy.directions.get(name, "off") == "off":
        # The operator switched this field off: never touch it.
        return [Hold(name, f"sync.fields.{name} = off: never touched")]
    in_step = spec.in_step(now, lookup)
    if base is None:
        return _plan_new(spec, now, in_step, lookup, policy)

    sentry_changed = now.sentry != base.sentry
    tracker_changed = now.tracker != base.tracker
    if not sentry_changed and not tracker_changed:
        # Nothing moved since the last sync (including our own echoes).
        if in_step:
            return [Hold(name, "in step, and unchanged on both sides since the baseline")]
        return [Hold(name, "unchanged on both sides since the baseline, but not in step: waits for a change on "
                           "either side (or `conflicts resolve`)")]
    if in_step:
        # One side changed to something that already matches, or people converged by hand.
        why = "both changed and converged" if sentry_changed and tracker_changed else "changed into step"
        return [Adopt(name, now, why)]
    if sentry_changed != tracker_changed:
        changed: Side = "sentry" if sentry_changed else "tracker"
        if policy.allows(name, other(changed)):
            # A person changed one side: carry it to the other.
            return _write(spec, changed, now, lookup, f"{changed} changed, {other(changed)} unchanged")
        # That side changed but this field never flows from it: remember it, so that a later
        # change of the other side is not mistaken for a conflict.
        return [Adopt(name, now, f"{changed} changed; direction is to_{changed} only")]
    # Both sides changed to values that do not match: a real conflict.
    winner = policy.conflict
    why = f"both changed; sync.conflict = {winner}"
    if winner != "manual" and policy.allows(name, other(winner)):
        # sync.conflict names the side that wins; its value is written to the other.
        planned = _write(spec, winner, now, lookup, why)
        unmapped = planned[0]
        if not isinstance(unmapped, ReportUnmapped):
            return planned
        # The winner's value has no counterpart (a team, an unmapped person or state): nothing
        # can be carried, so the other side's edit stays and the conflict is recorded for a person.
        return [RecordConflict(name, now, f"{why}, but {winner}'s {unmapped.value!r} has no counterpart in "
                                          f"{other(winner).title()}")]
    # manual policy (or the winner may not be written): record, write nothing.
    return [RecordConflict(name, now, why)]


def _plan_new(spec: FieldSpec, now: Pair, in_step: bool, lookup: Lookup, policy: Policy) -> list[Action]:
    """A field with no baseline yet (a new link, or a field just switched on)."""
    name = spec.name
    if in_step:
        # Both sides already agree: remember them.
        return [Adopt(name, now, "new link, both sides already in step")]
    # They disagree: the configured source side wins (Sentry by default).
    sources = [s for s in (policy.link_source, other(policy.link_source)) if policy.allows(name, other(s))]
    if not sources:
        # No direction may write this field: just remember what both sides hold.
        return [Adopt(name, now, "new link, no direction allowed for this field")]
    first = _write(spec, sources[0], now, lookup, f"new link, {sources[0]} is the source")
    if not isinstance(first[0], ReportUnmapped):
        return first
    if now.side(sources[0]) is None and len(sources) > 1:
        # The source side has no value at all (a Sentry issue from before priorities): the
        # other side's value is the only one there is.
        second = _write(spec, sources[1], now, lookup, f"new link, {sources[0]} has none, {sources[1]} is taken")
        if not isinstance(second[0], ReportUnmapped):
            return second
    # Nothing can be carried: reported, and no baseline, so that a mapping added later (a user,
    # a table row) carries the value then.
    return first


def _write(spec: FieldSpec, source: Side, now: Pair, lookup: Lookup, why: str) -> list[Action]:
    """The write that carries `source`'s value to the other side, or a report when the value
    has no counterpart (never a guess)."""
    carried = spec.carry(source, now.side(source), lookup)
    if not isinstance(carried, Carried):
        return [ReportUnmapped(spec.name, source, carried.value, f"{why}; {carried.why}")]
    reason = f"{why}: {carried.note}"
    if source == "sentry":
        return [WriteTracker(spec.name, carried.value, reason, resolution=carried.resolution, walk=spec.walks)]
    return [WriteSentry(spec.name, carried.value, reason, ref=carried.ref)]


def _plan_followers(
    spec: FieldSpec, base: Pair | None, now: Pair, owned: frozenset[str], users: UserMap, policy: Policy
) -> list[Action]:
    name = spec.name
    if not policy.allows(name, "tracker"):
        # Followers only ever flow from Sentry bookmarks to Tracker.
        direction = policy.directions.get(name, "off")
        return [Hold(name, f"sync.fields.{name} = {direction}: followers are never touched")]
    bookmarks = now.sentry
    followers = now.tracker if isinstance(now.tracker, frozenset) else frozenset()
    seen = bookmark_baseline(base)
    looked = seen is not None
    # No bookmark seen yet (a new link): the followers the bridge already owns were added for
    # bookmarks (a create that asked for them), so those bookmarks count as seen: one dropped
    # before this first look drops its follower.
    before = seen if seen is not None else frozenset(
        p.email for p in (users.person_for(login) for login in owned) if p is not None)
    # Owned followers who no longer follow unfollowed by hand: from now on they are not the
    # bridge's (the commit forgets them), so a later follow of their own is left alone.  The
    # bookmarks seen are recorded first: without a baseline they are what the owned stand for.
    unfollowed = owned - followers if isinstance(now.tracker, frozenset) else frozenset()
    disowned = f"{', '.join(sorted(unfollowed))} unfollowed by hand: no longer the bridge's to manage"
    # Before the first look, an owned follower who is nobody's now (unmapped since) stands for a
    # bookmark nobody can name: the first look waits for them, or it would record that bookmark
    # as absent and take it for new once they are mapped again.
    unnamed = sorted(login for login in owned if users.person_for(login) is None) if not looked else []
    if unnamed:
        return [Hold(name, f"the first look at the bookmarks waits: {', '.join(unnamed)} (followed by the bridge) "
                           "is mapped to no Sentry person now")]
    if not isinstance(bookmarks, frozenset):
        # Bookmarks could not be learned this cycle: unknown is not "nobody".
        if unfollowed:
            return [Adopt(name, Pair(before, followers), f"{disowned} (bookmarks unknown this cycle)")]
        return [Hold(name, "bookmarks unknown this cycle: unknown is not 'nobody'")]
    if base is not None and base.sentry is None:
        # Linked by `relink` while its bookmarks could not be seen: what it holds now counts as
        # seen, as every other field's value did then (old bookmarks are not new; a person who
        # unfollowed by hand long ago stays unfollowed).
        return [Adopt(name, now, "first look at the bookmarks since relink: they are the baseline, nothing added")]
    # People, not addresses, bookmark: one seen under another of their e-mails (a primary address
    # changed) neither came nor went.
    people_before, people_now = _logins(before, users), _logins(bookmarks, users)
    if people_now == people_before:
        if not looked:
            # The first look at this link's bookmarks: they become its baseline.  Until then
            # `before` comes from the owned followers, and those shrink when a person unfollows
            # by hand: the old bookmark would look new and the person would be followed again.
            return [Adopt(name, now, "first look at the bookmarks: they are the baseline from now on")]
        if unfollowed:
            return [Adopt(name, now, disowned)]
        if bookmarks != before:
            return [Adopt(name, now, "the same people's bookmarks, seen under other e-mails of theirs")]
        # No bookmark came or went; hand-made follower changes in Tracker are left alone.
        return [Hold(name, "no bookmark came or went since the baseline; followers people added or "
                           "removed by hand are left alone")]
    actions: list[Action] = []
    to_add = people_now - people_before - followers
    # Only followers the bridge itself added are ever removed.
    to_remove = (people_before - people_now) & owned & followers
    if to_add:
        # Someone bookmarked the Sentry issue: follow the Tracker issue for them.  The baseline
        # moves with the last follower write, so a failed removal after it is planned again.
        still_seen = frozenset(e for e in before if users.login_for(e) in to_remove)
        actions.append(AddFollowers(to_add, f"new bookmark(s): {', '.join(sorted(to_add))}",
                                    moves_baseline=not to_remove, still_seen=still_seen))
    if to_remove:
        # Someone dropped a bookmark: drop the follower the bridge added for them.
        actions.append(RemoveFollowers(to_remove, f"bookmark(s) removed: {', '.join(sorted(to_remove))}"))
    if not actions:
        # Bookmarks changed but Tracker already shows it (or the person unfollowed by hand).
        actions.append(Adopt(name, now, "bookmarks changed; followers already match"))
    return actions


def _logins(emails: frozenset[str], users: UserMap) -> frozenset[str]:
    """The Tracker logins of the people behind some bookmarks' e-mails (unmapped ones left out:
    `bookmarks_seen` keeps their bookmarks as they were)."""
    return frozenset(login for login in (users.login_for(email) for email in emails) if login)
