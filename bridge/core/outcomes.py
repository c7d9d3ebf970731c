"""Design §9: what the bridge believes after a write, as one pure function.

The planner (design §3) decides what to write.  This module decides where a field's baseline goes
once the engine has tried a write and observed what happened, and what follows: nothing, a
retry with backoff, a re-plan, or a read first next cycle.  Every outcome has one rule here:

| observed (`Seen`)  | baseline afterwards                               | then          |
|--------------------|---------------------------------------------------|---------------|
| APPLIED            | (value written, value read back)                  | done          |
| REFUSED (4xx)      | unchanged                                         | retry later   |
| CONFLICT (409/412) | unchanged                                         | re-plan now   |
| NOT_LANDED         | unchanged (the engine already retried in-cycle)   | retry later   |
| LANDED             | as if applied; ownership recorded                 | done          |
| UNKNOWN            | unchanged (or the status a path surely reached);  | read first    |
|                    | the write stays pending                           |               |
| PARTIAL            | Tracker side = the status the bridge reached,     | retry later:  |
|                    | Sentry side = CUT_SHORT, a mark no state equals   | the next cycle|
|                    | (so the next cycle sees only Sentry changed)      | continues     |
| SUPERSEDED         | unchanged: a person moved that side since         | done          |

A write whose outcome is unknown stays *pending*: the engine notes it before sending (so a crash
is covered too) and forgets it only once settled.  The next cycle judges a pending write from
what it reads (`observe_later`) before planning, and settles it with the same `settle`.

Ownership of followers follows what the server shows: an add owns the logins it asked for that
are there afterwards; a remove releases the logins that are gone afterwards.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from bridge.core.actions import AddFollowers, RemoveFollowers, Write, WriteSentry, WriteTracker, kind_of
from bridge.core.fields import spec_of
from bridge.core.values import Field, Pair, Value, decode_value, encode_value, text


@dataclass(frozen=True)
class JournalEntry:
    """One line of the audit log: a write tried and its outcome, or a record made."""

    side: str
    field: str
    action: str
    value: str
    outcome: str
    detail: str = ""


# The Sentry side of a status baseline after a transition path was cut short (see `settle`).
CUT_SHORT = "(a transition path cut short)"


class Seen(StrEnum):
    APPLIED = "applied"  # the answer came back and was read
    LANDED = "landed"  # the answer was lost; a read shows the write took effect
    PARTIAL = "partial"  # a transition path stopped after some of its steps
    NOT_LANDED = "not_landed"  # 5xx / timeout, and a read shows nothing changed
    REFUSED = "refused"  # 4xx other than 409/412: refused for good
    CONFLICT = "conflict"  # 409/412: a person changed the issue meanwhile
    UNKNOWN = "unknown"  # the answer was lost and nothing could be read back
    SUPERSEDED = "superseded"  # (a pending write, judged later) the side holds a third value


class Then(StrEnum):
    DONE = "done"
    RETRY_LATER = "retry_later"  # recorded failure, retried with backoff
    REPLAN = "replan"  # re-read both sides and plan once more, now
    READ_FIRST = "read_first"  # the outcome is unknown: the next cycle reads, then decides


@dataclass(frozen=True)
class Observation:
    """What the engine saw of one write.  `value` is the written side's value read back (APPLIED,
    LANDED), or the last status a transition path surely reached (PARTIAL, and UNKNOWN when
    some steps are known to have landed).  `effect`, when known from the issue's history, is the
    logins a followers write of ours added or removed (ownership follows it, not presence)."""

    seen: Seen
    value: Value = None
    detail: str = ""
    effect: frozenset[str] | None = None


@dataclass(frozen=True)
class Attempt:
    """One write as planned: the action, the field's pair it was planned from (both sides
    then), the field's baseline then, and for a Tracker write the issue's `version` then and
    when the write began (where to look in the issue's history for it)."""

    action: Write
    planned: Pair
    baseline: Pair | None
    version: int | None = None
    at: str = ""
    id: str = ""  # one per attempt: a newer write's note never replaces an older unsettled one


@dataclass(frozen=True)
class Pending:
    """A write begun and not settled.  `reached`: the statuses a transition path may have put
    the issue in so far (the step in flight included), all of them the bridge's own doing."""

    attempt: Attempt
    reached: tuple[str, ...] = ()

    @property
    def field(self) -> Field:
        return self.attempt.action.field

    @property
    def kind(self) -> str:
        return kind_of(self.attempt.action)

    @property
    def walks(self) -> bool:
        """A write made by walking transitions: a path can be cut short after some steps."""
        action = self.attempt.action
        return isinstance(action, WriteTracker) and spec_of(action.field).walks

    @property
    def key(self) -> str:
        """Which note this is among a link's notes (the attempt's id; its kind for old notes)."""
        return self.attempt.id or self.kind


@dataclass(frozen=True)
class Settlement:
    """Where one write leaves the bridge's beliefs about its field."""

    field: Field
    baseline: Pair | None  # the field's new baseline; None: unchanged
    owned_added: frozenset[str]
    owned_removed: frozenset[str]
    entry: JournalEntry
    then: Then
    wrote: bool  # a change of ours took effect on a server (write counts, the flap guard)
    pending: Pending | None = None  # still unknown: judged again next cycle
    attempt: Attempt | None = None  # the write this settles


OUTCOME_TEXT = {
    Seen.APPLIED: "ok", Seen.LANDED: "landed", Seen.PARTIAL: "partial", Seen.NOT_LANDED: "failed",
    Seen.REFUSED: "failed", Seen.CONFLICT: "conflict", Seen.UNKNOWN: "unknown", Seen.SUPERSEDED: "superseded",
}
# Journal outcomes of writes that changed a server (the flap guard counts these).
WROTE_OUTCOMES = ("ok", "landed", "partial")
THEN_OF = {
    Seen.APPLIED: Then.DONE, Seen.LANDED: Then.DONE, Seen.PARTIAL: Then.RETRY_LATER,
    Seen.NOT_LANDED: Then.RETRY_LATER, Seen.REFUSED: Then.RETRY_LATER, Seen.CONFLICT: Then.REPLAN,
    Seen.UNKNOWN: Then.READ_FIRST, Seen.SUPERSEDED: Then.DONE,
}


def settle(attempt: Attempt, observed: Observation, reached: tuple[str, ...] = ()) -> Settlement:
    """Design §9: the baseline, ownership, journal entry and next step after one write.
    `reached` (transitions) is what a pending marker must remember when the outcome is unknown."""
    action = attempt.action
    seen = observed.seen
    baseline: Pair | None = None
    added: frozenset[str] = frozenset()
    removed: frozenset[str] = frozenset()
    if seen in (Seen.APPLIED, Seen.LANDED):
        # The write took effect: the written side is what the server shows, the other side what
        # the plan was made from (an edit made there since is then seen as a change next cycle).
        baseline = _moved(attempt, observed.value)
        added, removed = _ownership(action, observed.value, observed.effect)
    elif seen in (Seen.PARTIAL, Seen.UNKNOWN) and observed.value is not None:
        # Some steps of a transition path surely landed: the Tracker side is where the bridge
        # itself brought the issue, so that status is never taken for a person's edit.  The
        # Sentry side is a mark no state equals: the next cycle sees Sentry "changed" and carries
        # whatever Sentry holds then (finishing the path, or walking back if Sentry went back).
        baseline = Pair(CUT_SHORT, observed.value)
    wrote = seen in (Seen.APPLIED, Seen.LANDED) or (seen in (Seen.PARTIAL, Seen.UNKNOWN)
                                                     and observed.value is not None)
    entry = JournalEntry(action.side, action.field, kind_of(action), _target_text(action),
                         OUTCOME_TEXT[seen], observed.detail or action.reason)
    pending = Pending(attempt, reached) if seen is Seen.UNKNOWN else None
    return Settlement(action.field, baseline, added, removed, entry, THEN_OF[seen], wrote, pending, attempt)


def observe_later(pending: Pending, now: Pair, history: tuple[Value, ...] | None = None) -> Observation:
    """Judge a pending write from what its field shows now (read at the start of a later cycle):
    landed, landed part of the way, did not land, or overtaken by a person's change.

    `history`, when given, is what the bridge's own account did to the field since the write
    began, from the issue's history (a Tracker changelog: statuses and assignees it set, follower
    sets it added or removed).  It decides where the value alone cannot: a write that landed and
    was then undone by a person, or a follower a person added while the bridge's write never
    went out."""
    if history is not None:
        return _judged_by_history(pending, now, history)
    action = pending.attempt.action
    planned = pending.attempt.planned.side(action.side)
    value = now.side(action.side)
    if isinstance(action, (AddFollowers, RemoveFollowers)):
        shown = value if isinstance(value, frozenset) else frozenset()
        effect = action.logins & shown if isinstance(action, AddFollowers) else action.logins - shown
        if effect:
            return Observation(Seen.LANDED, value, f"an earlier write landed: {text(effect)} (read back later)")
        return Observation(Seen.NOT_LANDED, None, "an earlier write did not land (read back later)")
    if value == planned:
        return Observation(Seen.NOT_LANDED, None, "an earlier write did not land (read back later)")
    if _reached_target(action, value):
        return Observation(Seen.LANDED, value, "an earlier write landed (read back later)")
    if pending.walks and value in pending.reached:
        return Observation(Seen.PARTIAL, value, f"an earlier transition path stopped at {value}, on the way to "
                                                f"{text(action.value)} (read back later)")
    return Observation(Seen.SUPERSEDED, None, f"changed to {text(value)} since an earlier write of "
                                              f"{_target_text(action)}: taken as a person's change")


def _judged_by_history(pending: Pending, now: Pair, ours: tuple[Value, ...]) -> Observation:
    action = pending.attempt.action
    value = now.side(action.side)
    if isinstance(action, (AddFollowers, RemoveFollowers)):
        done = frozenset().union(*(v for v in ours if isinstance(v, frozenset))) & action.logins
        if done:
            return Observation(Seen.LANDED, value, f"an earlier write landed: {text(done)} (the issue's history)",
                               effect=done)
        return Observation(Seen.NOT_LANDED, None, "an earlier write never reached the issue (its history)")
    if action.value in ours:
        # Ours landed (whatever happened after it is a later change, seen as such by the plan).
        return Observation(Seen.LANDED, action.value, "an earlier write landed (the issue's history)")
    reached = [v for v in ours if isinstance(v, str) and v in pending.reached]
    if pending.walks and reached:
        return Observation(Seen.PARTIAL, reached[-1], f"an earlier transition path stopped at {reached[-1]}, on "
                                                      f"the way to {text(action.value)} (the issue's history)")
    if value == pending.attempt.planned.side(action.side):
        return Observation(Seen.NOT_LANDED, None, "an earlier write never reached the issue (its history)")
    return Observation(Seen.SUPERSEDED, None, f"changed to {text(value)} by someone else since an earlier write "
                                              f"of {_target_text(action)} (the issue's history)")


def _reached_target(action: Write, value: Value) -> bool:
    if isinstance(action, WriteSentry):
        return spec_of(action.field).sentry_landed(value, action.value)
    return value == action.value


def _moved(attempt: Attempt, value: Value) -> Pair | None:
    action = attempt.action
    if isinstance(action, (AddFollowers, RemoveFollowers)) and not action.moves_baseline:
        # A later follower write of the same plan moves it, once it landed too; until then the
        # bookmarks it was for are seen, those still to be removed stay seen (see _FollowersWrite).
        seen = attempt.planned.sentry
        if not action.still_seen or not isinstance(seen, frozenset):
            return None  # a note from before `still_seen`: the baseline waits, as it did then
        return Pair(seen | action.still_seen, value)
    return attempt.planned.with_side(action.side, value)


def _ownership(action: Write, value: Value, effect: frozenset[str] | None) -> tuple[frozenset[str], frozenset[str]]:
    shown = value if isinstance(value, frozenset) else frozenset()
    if isinstance(action, AddFollowers):
        return action.logins & (shown if effect is None else effect & shown), frozenset()
    if isinstance(action, RemoveFollowers):
        return frozenset(), action.logins - shown if effect is None else effect
    return frozenset(), frozenset()


def _target_text(action: Write) -> str:
    return text(action.value)


# -- pending writes as JSON (the store keeps them between cycles) -------------------------------


def _pair_json(pair: Pair | None) -> Any:
    return None if pair is None else [encode_value(pair.sentry), encode_value(pair.tracker)]


def _pair_of(data: Any) -> Pair | None:
    return None if data is None else Pair(decode_value(data[0]), decode_value(data[1]))


# Notes written before fields were declared as data name their values by kind.
_OLD_NOTES = {"WriteTrackerStatus": ("status", "status"), "WriteTrackerAssignee": ("assignee", "login"),
              "WriteSentryStatus": ("status", "state"), "WriteSentryAssignee": ("assignee", "email")}


def pending_to_json(pending: Pending) -> str:
    action = pending.attempt.action
    body: dict[str, Any] = {"kind": kind_of(action), "field": action.field, "reason": action.reason}
    if isinstance(action, (AddFollowers, RemoveFollowers)):
        body.update(logins=sorted(action.logins), moves_baseline=action.moves_baseline,
                    still_seen=sorted(action.still_seen))
    elif isinstance(action, WriteTracker):
        body.update(value=action.value, resolution=action.resolution)
    else:
        body.update(value=action.value, ref=action.ref)
    if body["kind"] in _OLD_NOTES:
        # Also under the previous version's keys: a rollback still reads the note.
        body[_OLD_NOTES[body["kind"]][1]] = action.value if isinstance(action, (WriteTracker, WriteSentry)) else None
        if isinstance(action, WriteSentry):
            body["user_id"] = action.ref
    attempt = pending.attempt
    return json.dumps({"action": body, "planned": _pair_json(attempt.planned), "baseline": _pair_json(attempt.baseline),
                       "version": attempt.version, "at": attempt.at, "id": attempt.id,
                       "reached": list(pending.reached)})


def _action_of(body: dict[str, Any]) -> Write:
    kind, reason = body["kind"], body["reason"]
    if kind in ("AddFollowers", "RemoveFollowers"):
        kind_of_write = AddFollowers if kind == "AddFollowers" else RemoveFollowers
        return kind_of_write(frozenset(body["logins"]), reason, moves_baseline=bool(body["moves_baseline"]),
                             still_seen=frozenset(body.get("still_seen") or ()))
    name, key = (body["field"], "value") if "field" in body else _OLD_NOTES[kind]
    spec = spec_of(str(name))  # KeyError: a field nobody declares (any more) is not a pending write
    if kind.startswith("WriteTracker"):
        return WriteTracker(spec.name, body[key], reason, resolution=body.get("resolution"), walk=spec.walks)
    if kind.startswith("WriteSentry"):
        return WriteSentry(spec.name, body[key], reason, ref=body.get("ref", body.get("user_id")))
    raise ValueError(f"unknown write kind {kind!r}")


def pending_from_json(raw: str) -> Pending:
    """The inverse of `pending_to_json` (and of the notes older versions wrote); raises
    ValueError for anything else."""
    try:
        data = json.loads(raw)
        action = _action_of(data["action"])
        planned = _pair_of(data["planned"])
        if planned is None:
            raise ValueError("a pending write without the pair it was planned from")
        version = data.get("version")
        attempt = Attempt(action, planned, _pair_of(data["baseline"]), int(version) if version is not None else None,
                          str(data.get("at") or ""), str(data.get("id") or ""))
        return Pending(attempt, tuple(data["reached"]))
    except (KeyError, TypeError, IndexError, ValueError) as exc:
        raise ValueError(f"not a pending write: {exc}") from None
