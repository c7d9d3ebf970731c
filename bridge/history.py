"""What the bridge itself did to a Tracker issue, from the issue's changelog.

A write whose outcome was unknown (its answer lost with no read-back, or the process stopped) is
judged by the next cycle.  Most of the time the value tells: the target is there, or the value it
was planned from is.  But the value alone cannot tell a write that landed and was then undone by
a person from one that never landed, nor a follower the bridge added from one a person added by
hand.  The changelog can: every entry names who made it (`updatedBy`) and what changed
(`fields[{field, from, to}]`), and the bridge knows its own account (`/myself`).  It is read only
for such a pending write, and only when the issue's version moved since the write was planned
(an unmoved version means nothing happened at all).  If it cannot be read, the value decides.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import replace
from datetime import timedelta
from typing import Any

from bridge.clients.tracker import TrackerClient
from bridge.core.actions import AddFollowers, RemoveFollowers
from bridge.core.fields import FieldSpec, spec_of
from bridge.core.mapping import UserMap
from bridge.core.outcomes import Pending
from bridge.core.plan import LinkState
from bridge.core.values import Value, parse_time
from bridge.errors import RemoteError

log = logging.getLogger("bridge.history")

class TrackerHistory:
    def __init__(self, tracker: TrackerClient, overlap_seconds: float) -> None:
        self.tracker = tracker
        self.overlap = timedelta(seconds=overlap_seconds)
        self._ours: frozenset[str] | None = None
        self._lock = threading.Lock()

    def with_history(self, state: LinkState, t_issue: Mapping[str, Any], users: UserMap) -> LinkState:
        """`state` with the history of each pending Tracker write whose issue moved on since."""
        found: dict[str, tuple[Value, ...]] = {}
        for pending in state.pending:
            attempt = pending.attempt
            if attempt.action.side != "tracker" or attempt.version is None:
                continue
            if t_issue.get("version") == attempt.version:
                continue  # nothing happened to the issue since: the value is the whole story
            ours = self.lookup(str(t_issue["key"]), pending, users)
            if ours is not None:
                found[pending.key] = ours
        return replace(state, history=found) if found else state

    def _account(self) -> frozenset[str] | None:
        """The ids the bridge's own account shows up with in `updatedBy` (read once)."""
        with self._lock:
            if self._ours is None:
                try:
                    me = self.tracker.myself()
                except RemoteError as exc:
                    log.warning("cannot tell the bridge's own account (%s): pending writes are judged by value",
                                exc.describe(), extra={"event": "history.unknown"})
                    return None
                self._ours = frozenset(str(me[k]) for k in ("uid", "passportUid", "cloudUid", "id") if me.get(k))
            return self._ours

    def lookup(self, key: str, pending: Pending, users: UserMap) -> tuple[Value, ...] | None:
        """What the bridge's own account did to the pending write's field since the write began;
        None when that cannot be known (the account or the changelog cannot be read)."""
        ours = self._account()
        if not ours:
            return None
        spec = spec_of(pending.field)
        try:
            entries = list(self.tracker.changelog(key, fields=list(spec.tracker_keys)))
        except RemoteError as exc:
            log.warning("cannot read the history of %s (%s): its pending write is judged by value", key,
                        exc.describe(), extra={"event": "history.unknown"})
            return None
        return _since_the_write(entries, spec, pending, ours, users, self.overlap)


def _since_the_write(entries: list[dict[str, Any]], spec: FieldSpec, pending: Pending, ours: frozenset[str],
                     users: UserMap, overlap: timedelta) -> tuple[Value, ...]:
    """The effects of the bridge's own changes to `field` that can be the pending write's: made
    after it began (less the clock-skew allowance), and after the last change, by anyone, that
    left the field at the value the write was planned from before it began; so an earlier write
    of the same value that was undone since is never taken for this one."""
    began = parse_time(pending.attempt.at)
    planned = pending.attempt.planned.side("tracker")
    changes: list[tuple[dict[str, Any], Mapping[str, Any]]] = [
        (entry, change) for entry in entries for change in entry.get("fields") or []
        if isinstance(change, Mapping) and (change.get("field") or {}).get("id") in spec.tracker_keys]
    start = 0
    for index, (entry, change) in enumerate(changes):
        at = parse_time(entry.get("updatedAt"))
        if began is not None and at is not None and at <= began and _value_after(spec, change, users) == planned:
            start = index + 1
    done: list[Value] = []
    for entry, change in changes[start:]:
        who = str((entry.get("updatedBy") or {}).get("id") or "")
        at = parse_time(entry.get("updatedAt"))
        if who in ours and (began is None or at is None or at >= began - overlap):
            done.append(_effect(spec, pending, change, users))
    return tuple(done)


def _value_after(spec: FieldSpec, change: Mapping[str, Any], users: UserMap) -> Value:
    """The field's value after one changelog change, read as the field reads an issue."""
    return spec.read_tracker({key: change.get("to") for key in spec.tracker_keys}, users)


def _effect(spec: FieldSpec, pending: Pending, change: Mapping[str, Any], users: UserMap) -> Value:
    """What one changelog change did, in the terms of the pending write: the value it left, or
    for a followers write the logins it added or removed."""
    after = _value_after(spec, change, users)
    action = pending.attempt.action
    if isinstance(action, (AddFollowers, RemoveFollowers)):
        before = spec.read_tracker({key: change.get("from") for key in spec.tracker_keys}, users)
        old = before if isinstance(before, frozenset) else frozenset()
        new = after if isinstance(after, frozenset) else frozenset()
        return new - old if isinstance(action, AddFollowers) else old - new
    return after
