"""What the planner may ask for: frozen actions, one per decision about one field of one link.

Writes carry the value they put on the other side (`target`); everything else moves only the
bridge's own state (a baseline, an ownership, a recorded conflict) or says why nothing happens.
`describe` turns any action into the JSON shape that dry runs, `explain`, the journal and the
terminal tables all show, so that no two places word an action differently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from typing import TYPE_CHECKING, Any

from bridge.config import TrackerTarget
from bridge.core.values import Field, Pair, Side, Value, shown

if TYPE_CHECKING:
    from bridge.core.outcomes import Settlement


@dataclass(frozen=True)
class WriteTracker:
    """Put `value` in the Tracker field: a status (walked through transitions, closing ones with
    `resolution`), a login (None unassigns), a priority key."""

    field: Field
    value: Value
    reason: str
    resolution: str | None = None
    side: Side = "tracker"
    # Written by walking the workflow (its JSON always names the resolution, null or not); the
    # declaration decides it, so it takes no part in comparing two writes.
    walk: bool = dataclass_field(default=False, compare=False)

    @property
    def kind(self) -> str:
        return f"WriteTracker{self.field.title()}"

    @property
    def target(self) -> TrackerTarget:
        """The value as a workflow target (for fields written by transitions)."""
        return TrackerTarget(status=str(self.value), resolution=self.resolution)


@dataclass(frozen=True)
class _FollowersWrite:
    """`moves_baseline` is False when a removal follows in the same plan: the followers baseline
    moves only once the last follower write landed, so a failed removal is planned again.  An
    add that lands before it still moves the baseline part of the way: to the bookmarks seen
    now plus `still_seen`, the gone bookmarks whose followers are yet to be removed (so its own
    bookmarks are not new next time, and the removal is planned again)."""

    logins: frozenset[str]
    reason: str
    moves_baseline: bool = True
    still_seen: frozenset[str] = frozenset()
    field: Field = "followers"
    side: Side = "tracker"

    @property
    def value(self) -> Value:
        return self.logins

    @property
    def kind(self) -> str:
        return type(self).__name__


@dataclass(frozen=True)
class AddFollowers(_FollowersWrite):
    """Follow the Tracker issue for people who bookmarked the Sentry issue (`{"add": [...]}`)."""


@dataclass(frozen=True)
class RemoveFollowers(_FollowersWrite):
    """Unfollow people the bridge added whose bookmark is gone (`{"remove": [...]}`)."""


@dataclass(frozen=True)
class WriteSentry:
    """Put `value` in the Sentry field: a state, a person (shown by e-mail, sent by the user id
    in `ref`; None unassigns), a priority."""

    field: Field
    value: Value
    reason: str
    ref: str | None = None
    side: Side = "sentry"

    @property
    def kind(self) -> str:
        return f"WriteSentry{self.field.title()}"


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


@dataclass(frozen=True)
class Hold:
    """Nothing happens to this field this cycle, and why (what `explain` shows)."""

    field: Field
    reason: str


@dataclass(frozen=True)
class Reconcile:
    """An earlier write whose outcome was unknown (answer lost, process stopped) is judged from
    what the sides show now; `settlement` is what the bridge believes from here on."""

    field: Field
    settlement: Settlement
    reason: str


Write = WriteTracker | WriteSentry | AddFollowers | RemoveFollowers
TrackerWrite = WriteTracker | AddFollowers | RemoveFollowers
SentryWrite = WriteSentry
Action = Write | Adopt | RecordConflict | ReportUnmapped | Hold | Reconcile
WRITES: tuple[type, ...] = (WriteTracker, WriteSentry, AddFollowers, RemoveFollowers)


def kind_of(action: Action) -> str:
    """The name the journal, tables and JSON give an action (`WriteTrackerStatus`, `Adopt`)."""
    return action.kind if isinstance(action, WRITES) else type(action).__name__  # type: ignore[union-attr]


def is_write_kind(kind: str) -> bool:
    """Whether a journal's action name is a write (of any declared field)."""
    return kind.startswith(("WriteTracker", "WriteSentry")) or kind in ("AddFollowers", "RemoveFollowers")


def is_write(action: Action) -> bool:
    return isinstance(action, WRITES)


def changes(actions: Iterable[Action]) -> list[Action]:
    """The actions that do something (a write, a baseline moved, a record); `Hold` only explains."""
    return [a for a in actions if not isinstance(a, Hold)]


def describe(action: Action) -> dict[str, Any]:
    """A JSON-friendly description of an action (dry runs, explain, the journal, tables)."""
    data: dict[str, Any] = {"action": kind_of(action), "field": action.field, "reason": action.reason}
    if isinstance(action, WriteTracker) and (action.walk or action.resolution is not None):
        data.update(side="tracker", value=shown(action.value), resolution=action.resolution)
    elif isinstance(action, WRITES):
        data.update(side=action.side, value=shown(action.value))  # type: ignore[union-attr]
    elif isinstance(action, (Adopt, RecordConflict)):
        data.update(sentry=shown(action.pair.sentry), tracker=shown(action.pair.tracker))
    elif isinstance(action, ReportUnmapped):
        data.update(side=action.side, value=action.value)
    elif isinstance(action, Reconcile):
        entry = action.settlement.entry
        data.update(side=entry.side, value=entry.value, outcome=entry.outcome)
    return data
