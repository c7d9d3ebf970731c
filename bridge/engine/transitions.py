"""Moving a Tracker issue to a status by walking its queue's workflow, one transition at a time,
and saying exactly how far it got.

Transitions are not idempotent and carry no version, so an ambiguous failure (timeout, dropped
connection, 5xx) is never retried blindly: the issue is read back.  A step that landed counts as
done; one that did not is tried again now, within the retry budget; one whose read-back fails is
*unknown*.  Every step is noted before it is sent, so that a walk cut short (an answer lost, the
process stopped) is recognised later as the bridge's own doing, never as a person's edit.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.clients.tracker import TrackerClient
from bridge.config import TrackerTarget
from bridge.core.mapping import tracker_status
from bridge.core.outcomes import Observation, Seen
from bridge.core.workflow import Transition, WorkflowCache, next_transition, parse_transitions
from bridge.errors import ConflictError, NotFoundError, RejectedError, RemoteError, TransientError

log = logging.getLogger("bridge.engine")

MAX_TRANSITION_STEPS = 6
# A refusal of a cached transition may only mean the cache is stale (workflow edited).
STALE = (RejectedError, ConflictError, NotFoundError)


@dataclass
class Walk:
    """How far a walk towards a status got."""

    target: TrackerTarget
    reached: list[str] = field(default_factory=list)  # statuses the bridge surely brought the issue to
    in_flight: str | None = None  # a step whose outcome is unknown (answer lost, no read-back)
    moved_to: str | None = None  # a read-back showed a status nobody on the path chose: a person's
    error: RemoteError | None = None  # why it stopped before the target (None: it arrived)
    lost_answers: int = 0  # steps whose answer was lost but whose read-back showed them landed

    @property
    def executed(self) -> int:
        return len(self.reached)

    @property
    def noted(self) -> tuple[str, ...]:
        """What a pending note must remember: every status the walk may have put the issue in."""
        return (*self.reached, self.in_flight) if self.in_flight else tuple(self.reached)

    def observation(self) -> Observation:
        """The walk as one write's outcome (design §9)."""
        last = self.reached[-1] if self.reached else None
        if self.error is None:
            lost = f"{self.lost_answers} answer(s) lost on the way, read back as landed" if self.lost_answers else ""
            return Observation(Seen.APPLIED, self.target.status, lost)
        why = self.error.describe()
        if self.in_flight is not None:
            return Observation(Seen.UNKNOWN, last, f"the step to {self.in_flight} may have landed: {why}")
        if last is not None:
            return Observation(Seen.PARTIAL, last, f"stopped at {last} on the way to {self.target.status}: {why}")
        if self.moved_to is not None or isinstance(self.error, ConflictError):
            return Observation(Seen.CONFLICT, None, why)
        if isinstance(self.error, TransientError):
            return Observation(Seen.NOT_LANDED, None, why)
        return Observation(Seen.REFUSED, None, why)


class StatusWalker:
    """Walks issues through their workflows; the transitions learned are shared by all walks."""

    def __init__(self, tracker: TrackerClient, workflows: WorkflowCache, attempts: int) -> None:
        self.tracker = tracker
        self.workflows = workflows
        self.attempts = max(1, attempts)
        self._status_types: dict[str, str] | None = None
        self._types_lock = threading.Lock()

    def walk(self, issue: Mapping[str, Any], target: TrackerTarget,
             note: Callable[[tuple[str, ...]], None]) -> Walk:
        """Move `issue` to `target.status`.  `note(statuses)` is called before every step with
        every status the walk may have put the issue in, the step about to be sent included."""
        key = str(issue["key"])
        queue = str((issue.get("queue") or {}).get("key") or key.split("-")[0])
        itype = str((issue.get("type") or {}).get("key") or "")
        walk = Walk(target)
        current = tracker_status(issue)
        visited = {current}
        while current != target.status:
            if walk.executed >= MAX_TRANSITION_STEPS:
                walk.error = RejectedError(f"no path from {current} to {target.status} within {walk.executed} steps",
                                           service="tracker", endpoint=f"transitions of {key}")
                return walk
            try:
                arrived = self._one_step(walk, key, queue, itype, current, visited, note)
            except RemoteError as exc:
                walk.error = exc
                return walk
            if arrived is None:
                return walk
            current = arrived
            visited.add(current)
        return walk

    def _one_step(self, walk: Walk, key: str, queue: str, itype: str, current: str, visited: set[str],
                  note: Callable[[tuple[str, ...]], None]) -> str | None:
        """Take the next step; the status reached, or None when the walk stops (walk says why)."""
        from_cache = self.workflows.get(queue, itype, current) is not None
        if not from_cache:
            self.workflows.learn(queue, itype, current, parse_transitions(self.tracker.transitions(key)))
        for relearned in (False, True):
            step = next_transition(self.workflows.graph(queue, itype), current, walk.target.status, visited)
            if step is None:
                walk.error = RejectedError(f"the workflow offers no way from {current} to {walk.target.status}",
                                           service="tracker", endpoint=f"transitions of {key}")
                return None
            note((*walk.reached, step.to))
            try:
                after = self._execute(walk, key, current, step)
            except STALE:
                if not from_cache or relearned:
                    raise
                # The cached list was stale (workflow edited, or the status moved): relearn once.
                self.workflows.forget(queue, itype, current)
                self.workflows.learn(queue, itype, current, parse_transitions(self.tracker.transitions(key)))
                continue
            if walk.error is not None:
                return None
            walk.reached.append(step.to)
            if after is not None:
                self.workflows.learn(queue, itype, step.to, parse_transitions(after))
            return step.to
        return None  # unreachable: the second round either returns or raises

    def _execute(self, walk: Walk, key: str, current: str, step: Transition) -> list[dict[str, Any]] | None:
        """Execute one transition; an ambiguous failure is read back and, when it did not land,
        tried again now.  Returns the next status's transitions (None when the answer was lost);
        sets `walk.error` (and `in_flight` or `moved_to`) when the step cannot be confirmed."""
        resolution = self._resolution_for(step.to, walk.target)
        failure: TransientError | None = None
        for _ in range(self.attempts):
            try:
                return self.tracker.execute_transition(key, step.id, resolution=resolution)
            except TransientError as exc:
                failure = exc
            try:
                now = tracker_status(self.tracker.get_issue(key))
            except RemoteError:
                walk.error, walk.in_flight = failure, step.to
                return None
            if now == step.to:
                walk.lost_answers += 1
                log.info("transition %s of %s: the answer was lost but it landed", step.id, key,
                         extra={"event": "write.ambiguous_landed", "side": "tracker", "field": "status"})
                return None
            if now != current:
                walk.error, walk.moved_to = failure, now
                return None
            # It did not land: nothing changed, so the same step may be tried again at once.
        walk.error = failure
        return None

    def _resolution_for(self, status: str, target: TrackerTarget) -> str | None:
        """The target's resolution on the last step, and on any step through a done-type status
        on the way (Tracker requires one to enter it, e.g. open -> resolved -> closed)."""
        if status == target.status:
            return target.resolution
        with self._types_lock:
            if self._status_types is None:
                types: dict[str, str] = {}
                try:
                    for item in self.tracker.statuses():
                        types[str(item.get("key"))] = str(item.get("type") or "")
                except RemoteError as exc:
                    log.warning("cannot read Tracker status types: %s", exc.describe(), extra={"event": "statuses"})
                self._status_types = types
        return target.resolution if self._status_types.get(status) in ("done", "cancelled") else None
