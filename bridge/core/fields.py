"""The synced fields, each declared once.

Everything that differs from one field to the next lives in its `FieldSpec`: how to read it on
each side, when two values are in step, how a value is carried across (and when it has no
counterpart), what a write sends, when a write has landed, which keys of an issue the bridge
keeps for it, and how `explain` shows its mapping.  The planner, the executor, the store's cache,
`explain`, `conflicts` and `doctor` iterate over `FIELDS`; none of them names a field.

How to add a field (priority was added this way):

1. Declare it here: a `FieldSpec` with its readers, `in_step`, `carry`, the request bodies
   (`tracker_body`, `sentry_body`) and the keys it reads.  A field whose values map through a
   table gets `TableField` helpers for all of that.  Append it to `FIELDS`.
2. In `bridge/config.py`: its direction in `FieldsSettings` (default `off` for a new field,
   so that an upgrade changes nothing), and its tables in `MappingSettings` when it has any.
3. If Tracker keeps its values in a catalog (`/v2/priorities`), name it in `tracker_catalog`:
   `doctor` then checks every mapped value exists.
4. The emulators, if they do not serve the field yet, and tests through the CLI.

Nothing else changes: the baseline, the journal, pending writes, outcomes, `explain`, the
conflicts table and the cache all work from the declaration.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from bridge.config import MappingSettings
from bridge.core.actions import WriteSentry, WriteTracker
from bridge.core.mapping import (
    UserMap,
    assignee_in_step,
    base_state,
    sentry_assignee,
    sentry_state,
    sentry_state_satisfies,
    status_in_step,
    status_to_sentry,
    status_to_tracker,
    tracker_assignee,
    tracker_followers,
)
from bridge.core.values import Pair, Side, Snapshot, Value, scalar, text


@dataclass(frozen=True)
class Lookup:
    """What carrying a value needs besides the value: who is who, and the `[mapping.*]` tables."""

    users: UserMap
    mapping: MappingSettings


@dataclass(frozen=True)
class Carried:
    """A value carried to the other side: what that side will show (`value`), the reference the
    request needs when it differs (a Sentry user id), a Tracker resolution, and how it was
    translated, for the reason."""

    value: Value
    note: str
    ref: str | None = None
    resolution: str | None = None


@dataclass(frozen=True)
class NoCounterpart:
    """The value has no counterpart on the other side: reported, never guessed."""

    value: str
    why: str


Carry = Carried | NoCounterpart


def _equal(now: Value, wanted: Value) -> bool:
    return now == wanted


@dataclass(frozen=True)
class FieldSpec:
    """One synced field.  `set_valued` fields (followers) are planned by their own rule (design
    §3: only Sentry bookmarks flow, and only followers the bridge added are removed); every other
    field is a scalar planned by the shared rule."""

    name: str
    sentry_word: str  # what `explain` calls the Sentry side ("state", "bookmarks")
    tracker_word: str
    sentry_keys: tuple[str, ...]  # the keys of an issue the field is read from (kept in caches)
    tracker_keys: tuple[str, ...]
    read_sentry: Callable[[Mapping[str, Any]], Value]
    read_tracker: Callable[[Mapping[str, Any], UserMap], Value]
    in_step: Callable[[Pair, Lookup], bool]
    carry: Callable[[Side, Value, Lookup], Carry]  # the source side and its value
    rows: Callable[[Pair, Lookup], list[str]]  # the mapping rows that apply, for `explain`
    # The PATCH body of a Tracker write; None: written by walking the workflow's transitions.
    tracker_body: Callable[[WriteTracker], dict[str, Any]] | None = None
    # The PUT body of a Sentry write; None: never written to Sentry.
    sentry_body: Callable[[WriteSentry], dict[str, Any]] | None = None
    # Whether the Sentry side already shows what a write of `wanted` would produce.
    sentry_landed: Callable[[Value, Value], bool] = _equal
    tracker_catalog: str | None = None  # `/v2/<catalog>` that must hold every mapped Tracker value
    # The Tracker values the config names for this field, each with where it is named (doctor).
    tracker_values: Callable[[MappingSettings], list[tuple[str, str]]] = lambda _mapping: []
    set_valued: bool = False
    # Whether Sentry sends a hook when a person moves its side from one value to the other (design
    # §10: a status change or an assignment does; an unassignment, bookmarks, priority do not).  A
    # focused cycle that finds such a change no hook named takes it as a sign hooks are missing.
    sentry_hooked: Callable[[Value, Value], bool] = lambda _before, _after: False

    @property
    def walks(self) -> bool:
        """Written on Tracker by transitions (a path of steps), not by a PATCH."""
        return self.tracker_body is None and not self.set_valued

    def writable(self, side: Side) -> bool:
        return self.sentry_body is not None if side == "sentry" else True


# -- status ------------------------------------------------------------------------------------


def _status_in_step(pair: Pair, lookup: Lookup) -> bool:
    state, status = scalar(pair.sentry), scalar(pair.tracker)
    return state is not None and status is not None and status_in_step(state, status, lookup.mapping.status)


def _status_carry(source: Side, value: Value, lookup: Lookup) -> Carry:
    table = lookup.mapping.status
    if source == "sentry":
        state = scalar(value) or ""
        target = status_to_tracker(state, table)
        if target is None:
            return NoCounterpart(state, f"no to_tracker row for {state!r}")
        return Carried(target.status, f"{state} -> {target.status}", resolution=target.resolution)
    status = scalar(value) or ""
    wanted = status_to_sentry(status, table)
    if wanted is None:
        return NoCounterpart(status, f"no to_sentry row for {status!r}")
    return Carried(wanted, f"{status} -> {wanted}")


def _status_rows(pair: Pair, lookup: Lookup) -> list[str]:
    table = lookup.mapping.status
    rows: list[str] = []
    state = scalar(pair.sentry)
    if state is not None:
        key = state if state in table.to_tracker else base_state(state)
        target = table.to_tracker.get(key)
        rows.append(f"to_tracker[{key!r}] = {target.status}" + (f"/{target.resolution}" if target.resolution else "")
                    if target else f"no to_tracker row for {state!r}")
    status = scalar(pair.tracker)
    if status is not None:
        wanted = table.to_sentry.get(status)
        rows.append(f"to_sentry[{status!r}] = {wanted}" if wanted else f"no to_sentry row for {status!r}")
    return rows


def _status_hooked(before: Value, after: Value) -> bool:
    """Resolved, unresolved and ignored (archived) send hooks; a substatus moving on alone, or
    "resolved" becoming "resolved in the next release", is not counted."""
    def base(value: Value) -> str | None:
        state = scalar(value)
        return None if state is None else "resolved" if state == "resolvedInNextRelease" else base_state(state)

    return before is not None and base(before) != base(after)


def _status_landed(now: Value, wanted: Value) -> bool:
    if not isinstance(now, str) or not isinstance(wanted, str):
        return False
    # A project without releases refuses "resolved in the next release"; the client then
    # resolves plainly, so a plain resolve is that write having landed.
    return sentry_state_satisfies(now, "resolved" if wanted == "resolvedInNextRelease" else wanted)


STATUS = FieldSpec(
    name="status", sentry_word="state", tracker_word="status",
    sentry_keys=("status", "substatus", "statusDetails"), tracker_keys=("status",),
    read_sentry=sentry_state, read_tracker=lambda issue, _users: _key_of(issue.get("status")),
    in_step=_status_in_step, carry=_status_carry, rows=_status_rows,
    tracker_body=None, sentry_body=lambda w: {"status": w.value}, sentry_landed=_status_landed,
    sentry_hooked=_status_hooked,
)


# -- assignee ----------------------------------------------------------------------------------


def _assignee_in_step(pair: Pair, lookup: Lookup) -> bool:
    return assignee_in_step(scalar(pair.sentry), scalar(pair.tracker), lookup.users)


def _assignee_carry(source: Side, value: Value, lookup: Lookup) -> Carry:
    users = lookup.users
    if source == "sentry":
        email = scalar(value)
        if email is None:
            return Carried(None, "unassigned")
        login = users.login_for(email)
        if login is None:
            return NoCounterpart(email, f"no Tracker user for {email}")
        return Carried(login, f"{email} -> {login}")
    login_now = scalar(value)
    if login_now is None:
        return Carried(None, "unassigned")
    person = users.person_for(login_now)
    if person is None:
        return NoCounterpart(login_now, f"no Sentry user for {login_now}")
    return Carried(person.email, f"{login_now} -> {person.email}", ref=person.user_id)


def _assignee_rows(pair: Pair, lookup: Lookup) -> list[str]:
    users, overrides = lookup.users, lookup.mapping.users
    rows: list[str] = []
    email = scalar(pair.sentry)
    if email is not None:
        login = users.login_for(email)
        how = "[mapping.users]" if email.lower() in overrides else "same e-mail"
        rows.append(f"{email} -> {login} ({how})" if login else f"{email} -> no Tracker user")
    login_now = scalar(pair.tracker)
    if login_now is not None:
        person = users.person_for(login_now)
        rows.append(f"{login_now} -> {person.email}" if person else f"{login_now} -> no Sentry member")
    return rows


ASSIGNEE = FieldSpec(
    name="assignee", sentry_word="assignee", tracker_word="assignee",
    sentry_keys=("assignedTo",), tracker_keys=("assignee",),
    read_sentry=sentry_assignee, read_tracker=tracker_assignee,
    in_step=_assignee_in_step, carry=_assignee_carry, rows=_assignee_rows,
    # Sentry assigns by user id (`user:<id>`) and unassigns with "" (it refuses null).
    tracker_body=lambda w: {"assignee": w.value},
    sentry_body=lambda w: {"assignedTo": f"user:{w.ref}" if w.ref else ""},
    # Sentry sends `assigned` on an assignment; nothing on an unassignment.
    sentry_hooked=lambda before, after: after is not None and after != before,
)


# -- followers (Sentry bookmarks -> Tracker followers) -------------------------------------------


def _followers_carry(source: Side, value: Value, lookup: Lookup) -> Carry:
    # Only ever planned by the followers rule; a set has no single counterpart.
    return NoCounterpart(text(value), "followers are planned by bookmarks, never carried as a value")


def _followers_rows(pair: Pair, lookup: Lookup) -> list[str]:
    if not isinstance(pair.sentry, frozenset):
        return []
    return [f"bookmark {e} -> {lookup.users.login_for(e) or 'no Tracker user'}" for e in sorted(pair.sentry)]


FOLLOWERS = FieldSpec(
    name="followers", sentry_word="bookmarks", tracker_word="followers",
    sentry_keys=(), tracker_keys=("followers",),
    read_sentry=lambda _issue: None,  # bookmarks come from per-person searches, not the issue
    read_tracker=tracker_followers,
    in_step=lambda pair, lookup: pair.sentry is not None and frozenset(
        login for login in (lookup.users.login_for(e) for e in pair.sentry or ()) if login) <= (
        pair.tracker if isinstance(pair.tracker, frozenset) else frozenset()),
    carry=_followers_carry, rows=_followers_rows,
    tracker_body=lambda w: {"followers": {"add" if w.kind == "AddFollowers" else "remove": sorted(w.value or ())}},
    set_valued=True,
)


# -- fields whose values map through a `[mapping.<field>]` table -------------------------------


@dataclass(frozen=True)
class TableField:
    """A field whose values translate through `[mapping.<name>.to_tracker]` (Sentry value ->
    Tracker key) and `[mapping.<name>.to_sentry]` (Tracker key -> Sentry value).  Many-to-one
    tables are safe: values are in step when either table maps one onto the other, and the
    baseline keeps both raw values, so a Tracker `blocker` read back as Sentry `high` is never
    flipped to the `critical` that `high` would map to."""

    name: str

    def tables(self, lookup: Lookup) -> tuple[Mapping[str, str], Mapping[str, str]]:
        table = getattr(lookup.mapping, self.name)
        return table.to_tracker, table.to_sentry

    def in_step(self, pair: Pair, lookup: Lookup) -> bool:
        to_tracker, to_sentry = self.tables(lookup)
        mine, theirs = scalar(pair.sentry), scalar(pair.tracker)
        if mine is None or theirs is None:
            return mine is None and theirs is None
        return to_tracker.get(mine) == theirs or to_sentry.get(theirs) == mine

    def carry(self, source: Side, value: Value, lookup: Lookup) -> Carry:
        to_tracker, to_sentry = self.tables(lookup)
        table, direction = (to_tracker, "to_tracker") if source == "sentry" else (to_sentry, "to_sentry")
        key = scalar(value)
        if key is None:
            return NoCounterpart("-", f"no {self.name} on the {source.title()} issue")
        if key not in table:
            return NoCounterpart(key, f"no {direction} row for {key!r} in [mapping.{self.name}]")
        return Carried(table[key], f"{key} -> {table[key]}")

    def named(self, mapping: MappingSettings) -> list[tuple[str, str]]:
        """Every Tracker value the tables name, with where: `to_tracker` values, `to_sentry` keys."""
        table = getattr(mapping, self.name)
        where = f"mapping.{self.name}"
        return [(f'{where}.to_tracker.{k} = "{v}"', v) for k, v in sorted(table.to_tracker.items())] + \
            [(f"{where}.to_sentry.{k}", k) for k in sorted(table.to_sentry)]

    def rows(self, pair: Pair, lookup: Lookup) -> list[str]:
        to_tracker, to_sentry = self.tables(lookup)
        rows: list[str] = []
        for value, table, way in ((pair.sentry, to_tracker, "to_tracker"), (pair.tracker, to_sentry, "to_sentry")):
            key = scalar(value)
            if key is not None:
                rows.append(f"{way}[{key!r}] = {table[key]}" if key in table else f"no {way} row for {key!r}")
        return rows


def _key_of(ref: Any) -> str | None:
    """A Tracker catalog reference `{self, id, key, display}` as its key."""
    if isinstance(ref, Mapping):
        return str(ref["key"]) if ref.get("key") is not None else None
    return str(ref) if isinstance(ref, str) and ref else None


_PRIORITY = TableField("priority")
PRIORITY = FieldSpec(
    name="priority", sentry_word="priority", tracker_word="priority",
    sentry_keys=("priority",), tracker_keys=("priority",),
    read_sentry=lambda issue: scalar(issue.get("priority")),
    read_tracker=lambda issue, _users: _key_of(issue.get("priority")),
    in_step=_PRIORITY.in_step, carry=_PRIORITY.carry, rows=_PRIORITY.rows,
    tracker_body=lambda w: {"priority": w.value}, sentry_body=lambda w: {"priority": w.value},
    tracker_catalog="priorities", tracker_values=_PRIORITY.named,
)


FIELDS: tuple[FieldSpec, ...] = (STATUS, ASSIGNEE, FOLLOWERS, PRIORITY)
FIELD_NAMES: tuple[str, ...] = tuple(spec.name for spec in FIELDS)
SCALAR_FIELDS: tuple[str, ...] = tuple(spec.name for spec in FIELDS if not spec.set_valued)
_BY_NAME = {spec.name: spec for spec in FIELDS}


def spec_of(name: str) -> FieldSpec:
    """The declaration of a field by name; KeyError for a name nobody declared."""
    return _BY_NAME[name]


def snapshot(s_issue: Mapping[str, Any], t_issue: Mapping[str, Any], marks: frozenset[str] | None,
             users: UserMap) -> Snapshot:
    """Both sides of one link as the planner compares them (bookmarks come from searches)."""
    return Snapshot({
        spec.name: Pair(marks if spec.set_valued else spec.read_sentry(s_issue), spec.read_tracker(t_issue, users))
        for spec in FIELDS
    })


def carried_on_create(s_issue: Mapping[str, Any], lookup: Lookup, directions: Mapping[str, str]) -> dict[str, Any]:
    """What a new Tracker issue starts with so that it starts in step with its Sentry issue: each
    field written by a PATCH and synced at all (in any direction: a new issue has no value of its
    own yet), whose Sentry value has a counterpart.  Fields walked through the workflow start at
    the queue's initial status; bookmarks become followers by the create itself."""
    body: dict[str, Any] = {}
    for spec in FIELDS:
        if spec.set_valued or spec.tracker_body is None or directions.get(spec.name, "off") == "off":
            continue
        carried = spec.carry("sentry", spec.read_sentry(s_issue), lookup)
        if isinstance(carried, Carried) and carried.value is not None:
            body.update(spec.tracker_body(WriteTracker(spec.name, carried.value, "new issue")))
    return body


def sentry_kept() -> tuple[str, ...]:
    """The keys of a Sentry issue the declared fields read."""
    return tuple(dict.fromkeys(key for spec in FIELDS for key in spec.sentry_keys))


def tracker_kept() -> tuple[str, ...]:
    """The keys of a Tracker issue the declared fields read."""
    return tuple(dict.fromkeys(key for spec in FIELDS for key in spec.tracker_keys))
