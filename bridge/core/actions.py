"""What the planner may ask for: frozen actions, one per decision about one field of one link.

Writes carry the value they put on the other side (`target`); everything else moves only the
bridge's own state (a baseline, an ownership, a recorded conflict) or says why nothing happens.
`describe` turns any action into the JSON shape that dry runs, `explain`, the journal and the
terminal tables all show, so that no two places word an action differently.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from bridge.config import TrackerTarget
from bridge.core.values import Field, Pair, Side, Value, shown

if TYPE_CHECKING:
    from bridge.core.outcomes import Settlement


@dataclass(frozen=True)
class WriteTrackerStatus:
    target: TrackerTarget
    reason: str
    field: Field = "status"
    side: Side = "tracker"

    @property
    def value(self) -> Value:
        return self.target.status


@dataclass(frozen=True)
class WriteTrackerAssignee:
    login: str | None
    reason: str
    field: Field = "assignee"
    side: Side = "tracker"

    @property
    def value(self) -> Value:
        return self.login


@dataclass(frozen=True)
class _FollowersWrite:
    """`moves_baseline` is False when a removal follows in the same plan: the followers baseline
    moves only once the last follower write landed, so a failed removal is planned again."""

    logins: frozenset[str]
    reason: str
    moves_baseline: bool = True
    field: Field = "followers"
    side: Side = "tracker"

    @property
    def value(self) -> Value:
        return self.logins


@dataclass(frozen=True)
class AddFollowers(_FollowersWrite):
    """Follow the Tracker issue for people who bookmarked the Sentry issue (`{"add": [...]}`)."""


@dataclass(frozen=True)
class RemoveFollowers(_FollowersWrite):
    """Unfollow people the bridge added whose bookmark is gone (`{"remove": [...]}`)."""


@dataclass(frozen=True)
class WriteSentryStatus:
    state: str
    reason: str
    field: Field = "status"
    side: Side = "sentry"

    @property
    def value(self) -> Value:
        return self.state


@dataclass(frozen=True)
class WriteSentryAssignee:
    user_id: str | None
    email: str | None
    reason: str
    field: Field = "assignee"
    side: Side = "sentry"

    @property
    def value(self) -> Value:
        return self.email


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


Write = WriteTrackerStatus | WriteTrackerAssignee | AddFollowers | RemoveFollowers | WriteSentryStatus | \
    WriteSentryAssignee
TrackerWrite = WriteTrackerStatus | WriteTrackerAssignee | AddFollowers | RemoveFollowers
SentryWrite = WriteSentryStatus | WriteSentryAssignee
Action = Write | Adopt | RecordConflict | ReportUnmapped | Hold | Reconcile
WRITES: tuple[type, ...] = (WriteTrackerStatus, WriteTrackerAssignee, AddFollowers, RemoveFollowers,
                            WriteSentryStatus, WriteSentryAssignee)
WRITE_KINDS = frozenset(kind.__name__ for kind in WRITES)


def is_write(action: Action) -> bool:
    return isinstance(action, WRITES)


def changes(actions: Iterable[Action]) -> list[Action]:
    """The actions that do something (a write, a baseline moved, a record); `Hold` only explains."""
    return [a for a in actions if not isinstance(a, Hold)]


def describe(action: Action) -> dict[str, Any]:
    """A JSON-friendly description of an action (dry runs, explain, the journal, tables)."""
    data: dict[str, Any] = {"action": type(action).__name__, "field": action.field, "reason": action.reason}
    if isinstance(action, WriteTrackerStatus):
        data.update(side="tracker", value=action.target.status, resolution=action.target.resolution)
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
