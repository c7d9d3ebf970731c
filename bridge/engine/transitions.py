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
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from bridge.clients.tracker import TrackerClient
from bridge.config import StatusMapping, TrackerTarget
from bridge.core.mapping import tracker_status
from bridge.core.outcomes import Observation, Seen
from bridge.core.workflow import (
    Definition,
    Transition,
    WorkflowCache,
    definition_problem,
    next_transition,
    parse_definition,
    parse_transitions,
)
from bridge.errors import (
    BadResponseError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    RemoteError,
    TransientError,
    UnreachableError,
)

log = logging.getLogger("bridge.engine")

MAX_TRANSITION_STEPS = 6
# A refusal of a cached transition may only mean the cache is stale (workflow edited).
STALE = (RejectedError, ConflictError, NotFoundError)
CLOSING = ("done", "cancelled")
DEFINITIONS_KEPT = 600.0  # seconds: an admin's workflow edit is seen within ten minutes
FAILED_KEPT = 30.0  # seconds before a failed definition read is tried again


@dataclass
class Walk:
    """How far a walk towards a status got."""

    target: TrackerTarget
    reached: list[str] = field(default_factory=list)  # statuses the bridge surely brought the issue to
    in_flight: str | None = None  # a step sent whose outcome is not known (answer lost, no read-back)
    moved_to: str | None = None  # a read showed a status nobody on the path chose: a person's
    error: BaseException | None = None  # why it stopped before the target (None: it arrived)
    lost_answers: list[str] = field(default_factory=list)  # answers lost or unusable, of steps that landed

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
        if self.error is None and self.lost_answers:
            return Observation(Seen.LANDED, self.target.status, f"{len(self.lost_answers)} answer(s) lost or "
                                                                f"unusable ({self.lost_answers[0]}); read back: landed")
        if self.error is None:
            return Observation(Seen.APPLIED, self.target.status)
        why = self.error.describe() if isinstance(self.error, RemoteError) else \
            f"{type(self.error).__name__}: {self.error}"
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

    def __init__(self, tracker: TrackerClient, workflows: WorkflowCache, attempts: int,
                 table: StatusMapping | None = None) -> None:
        self.tracker = tracker
        self.workflows = workflows
        self.attempts = max(1, attempts)
        self.table = table  # [mapping.status]: to name the rows behind a target Tracker lacks
        self._status_types: dict[str, str] | None = None
        self._types_lock = threading.Lock()
        self.definitions = QueueDefinitions(tracker)
        self._learning_locks: dict[tuple[str, str, str], threading.Lock] = {}

    def walk(self, issue: Mapping[str, Any], target: TrackerTarget,
             note: Callable[[tuple[str, ...]], None]) -> Walk:
        """Move `issue` to `target.status`.  `note(statuses)` is called before every step with
        every status the walk may have put the issue in, the step about to be sent included.
        Never raises for the walk's own trouble: the Walk says how far it got and why it stopped
        (a bug or a failed note mid-step leaves that step's outcome unknown, never forgotten)."""
        key = str(issue["key"])
        at = _Where(key, str((issue.get("queue") or {}).get("key") or key.split("-")[0]),
                    str((issue.get("type") or {}).get("key") or ""))
        walk = Walk(target)
        current = tracker_status(issue)
        if current != target.status:
            if self._types() is None:
                # Without the status list a typo cannot be told from a real target: no step now.
                walk.error = TransientError("cannot read Tracker's statuses to check the target; tried again next "
                                            "cycle", service="tracker", endpoint="GET statuses")
                return walk
            missing = self.unknown_target(target.status)
            if missing is None:
                try:
                    missing = self._definition_problem(walk, at, current)
                except RemoteError as exc:
                    walk.error = exc  # the issue could not be read to confirm: no step now
                    return walk
                if walk.error is not None:
                    return walk  # a person moved the issue meanwhile: their move wins
            if missing is not None:
                # A typo in the mapping must never walk a real ticket around looking for it.
                walk.error = RejectedError(missing, service="tracker", endpoint=f"transitions of {key}")
                return walk
        try:
            while current != target.status:
                if walk.executed >= MAX_TRANSITION_STEPS:
                    walk.error = RejectedError(f"no path from {current} to {target.status} within "
                                               f"{walk.executed} steps", service="tracker",
                                               endpoint=f"transitions of {key}")
                    return walk
                arrived = self._one_step(walk, at, current, note)
                if arrived is None:
                    return walk
                current = arrived
        except Exception as exc:  # noqa: BLE001 - the Walk carries it, with what is known of the steps
            walk.error = exc
        return walk

    def _learning(self, key: tuple[str, str, str]) -> threading.Lock:
        with self._types_lock:
            return self._learning_locks.setdefault(key, threading.Lock())

    def _definition_problem(self, walk: Walk, at: _Where, current: str) -> str | None:
        """Why the queue's defined workflow rules out the target from here (None: it does not,
        or it is unknown).  A refusal is confirmed against the issue's own transition list
        first, the authority: a definition it contradicts is stale and read again."""
        definition = self.definitions.of(at.queue, at.itype)
        if definition is None:
            return None
        target = walk.target.status
        problem = definition_problem(definition, at.queue, current, target, self._rows(target))
        if problem is None:
            return None
        if not self._learn(walk, at, current):
            return None
        if not self._contradicts(definition, at, current):
            return problem
        definition = self.definitions.of(at.queue, at.itype)  # _learn forgot the stale one
        if definition is None or self._contradicts(definition, at, current):
            return None  # read again and still at odds with the issue: the issue is believed
        return definition_problem(definition, at.queue, current, target, self._rows(target))

    def _contradicts(self, definition: Definition, at: _Where, status: str) -> bool:
        """The issue offers a move out of `status` that the definition does not have."""
        live = self.workflows.get(at.queue, at.itype, status)
        if live is None:
            return False
        return status not in definition.statuses or bool({t.to for t in live} - definition.moves.get(status, set()))

    def _learned(self, at: _Where, status: str, transitions: tuple[Transition, ...]) -> None:
        """Remember the transitions out of `status`; a definition they contradict is forgotten."""
        self.workflows.learn(at.queue, at.itype, status, transitions)
        definition = self.definitions.peek(at.queue, at.itype)
        if definition is not None and self._contradicts(definition, at, status):
            log.info("the workflow definition of queue %s is stale (%s offers more): read again", at.queue, status,
                     extra={"event": "workflow.definitions"})
            self.definitions.forget(at.queue)

    def _one_step(self, walk: Walk, at: _Where, current: str, note: Callable[[tuple[str, ...]], None]) -> str | None:
        """Take the next step; the status reached, or None when the walk stops (walk says why).
        A list of transitions from the cache may be stale (the workflow was edited): a refusal,
        or no way found through it, relearns it once from the issue itself."""
        from_cache = self.workflows.get(at.queue, at.itype, current) is not None
        if not from_cache:
            # One walk learns a status's transitions; parallel walks from the same status wait
            # for it and use what it learned (one list read instead of one per link).
            with self._learning((at.queue, at.itype, current)):
                from_cache = self.workflows.get(at.queue, at.itype, current) is not None
                if not from_cache and not self._learn(walk, at, current):
                    return None
        avoid = self._closing_statuses()
        definition = self.definitions.of(at.queue, at.itype)
        never = definition.statuses - definition.leading_to(walk.target.status) if definition else frozenset()
        for last_try in (not from_cache, True):
            step = next_transition(self.workflows.graph(at.queue, at.itype), current, walk.target.status, avoid,
                                   never)
            if step is None and not last_try:
                if not self._learn(walk, at, current):
                    return None
                continue
            if step is None:
                walk.error = RejectedError(f"the workflow offers no way from {current} to {walk.target.status}",
                                           service="tracker", endpoint=f"transitions of {at.key}")
                return None
            note((*walk.reached, step.to))
            walk.in_flight = step.to
            try:
                after = self._execute(walk, at.key, current, step)
            except STALE:
                walk.in_flight = None
                if last_try:
                    raise
                # Refused: the cached list was stale, or a person moved the issue meanwhile.
                if not self._learn(walk, at, current):
                    return None
                continue
            except RemoteError:
                walk.in_flight = None  # refused (401, 403, another 4xx): it did not land
                raise
            if walk.error is not None:
                return None
            walk.in_flight = None
            walk.reached.append(step.to)
            if after is not None:
                self._learned(at, step.to, parse_transitions(after))
            return step.to
        return None

    def _learn(self, walk: Walk, at: _Where, current: str) -> bool:
        """Learn the transitions out of `current` from the issue itself (its status and its
        transitions in one answer).  False when the issue is no longer at `current`: a person
        moved it, and their move wins."""
        issue, transitions = self.tracker.issue_with_transitions(at.key)
        status = tracker_status(issue)
        if status != current:
            walk.moved_to = status
            walk.error = ConflictError(f"the status changed to {status} meanwhile", service="tracker",
                                       endpoint=f"GET {at.key}")
            return False
        self._learned(at, current, parse_transitions(transitions))
        return True

    def _execute(self, walk: Walk, key: str, current: str, step: Transition) -> list[dict[str, Any]] | None:
        """Execute one transition; an ambiguous failure is read back and, when it did not land,
        tried again now, within the retry budget.  Returns the next status's transitions (None
        when the answer was lost or unusable); sets `walk.error` (keeping `in_flight`, or setting
        `moved_to`) when the step cannot be confirmed."""
        resolution = self._resolution_for(step.to, walk.target)
        for attempt in range(1, self.attempts + 1):
            try:
                return self.tracker.execute_transition(key, step.id, resolution=resolution)
            except (RateLimitedError, UnreachableError) as exc:
                # Never reached the server, or refused before acting: the client already spent
                # its retries on these; the step did not land.
                walk.error, walk.in_flight = exc, None
                return None
            except (TransientError, BadResponseError) as exc:
                failure: RemoteError = exc  # it may have landed with its answer lost or garbled
            try:
                now = tracker_status(self.tracker.get_issue(key))
            except RemoteError:
                walk.error = failure  # in_flight stays: the outcome is unknown
                return None
            if now == step.to:
                walk.lost_answers.append(failure.describe())
                log.info("transition %s of %s: the answer was lost but it landed", step.id, key,
                         extra={"event": "write.ambiguous_landed", "side": "tracker", "field": "status"})
                return None
            if now != current:
                walk.error, walk.moved_to, walk.in_flight = failure, now, None
                return None
            if attempt == self.attempts:
                walk.error, walk.in_flight = failure, None  # did not land, budget spent
                return None
            # It did not land: nothing changed, so the same step may be tried again at once.
        return None

    def unknown_target(self, status: str) -> str | None:
        """The operator's sentence when Tracker has no status `status` at all (None when it has,
        or when the statuses cannot be read: the walk then finds out step by step)."""
        types = self._types()
        if types is None or status in types:
            return None
        known = ", ".join(sorted(types)[:12]) + (", ..." if len(types) > 12 else "")
        rows = self._rows(status)
        return f'{" and ".join(rows) or f"target {status!r}"}: Tracker has no status "{status}" (it has {known})'

    def _rows(self, status: str) -> list[str]:
        """The mapping rows that send issues to `status`, as the operator wrote them."""
        return [f'mapping.status.to_tracker.{state} = "{t.status}"'
                for state, t in sorted((self.table.to_tracker if self.table else {}).items()) if t.status == status]

    def _resolution_for(self, status: str, target: TrackerTarget) -> str | None:
        """The target's resolution on the last step, and on any step through a done-type status
        on the way (Tracker requires one to enter it, e.g. open -> resolved -> closed)."""
        if status == target.status:
            return target.resolution
        types = self._types()
        # Without the types this step goes without a resolution (a done status may refuse it).
        return target.resolution if types is not None and types.get(status) in CLOSING else None

    def _closing_statuses(self) -> frozenset[str]:
        """The done and cancelled statuses: a walk passes through one only when it must."""
        types = self._types()
        return frozenset(key for key, kind in (types or {}).items() if kind in CLOSING)

    def _types(self) -> dict[str, str] | None:
        """Status key -> type, read once; a failed read is tried again next time, never
        remembered as "no types"."""
        with self._types_lock:
            if self._status_types is None:
                try:
                    self._status_types = {str(item.get("key")): str(item.get("type") or "")
                                          for item in self.tracker.statuses()}
                except RemoteError as exc:
                    log.warning("cannot read Tracker status types: %s", exc.describe(), extra={"event": "statuses"})
                    return None
            return self._status_types


def read_definitions(tracker: TrackerClient, queue: str) -> dict[str, Definition]:
    """Issue type -> its workflow as defined, for one queue; a workflow whose steps cannot be
    read makes the whole answer unusable (BadResponseError): half a picture would refuse
    legitimate moves.  Shared by the walk and `doctor`, so both judge alike."""
    by_type: dict[str, Definition] = {}
    for workflow_id, types in tracker.queue_workflows(queue).items():
        definition = parse_definition(tracker.workflow(workflow_id))
        if definition is None:
            raise BadResponseError(f"workflow {workflow_id} has no steps the bridge can read", service="tracker",
                                   endpoint=f"GET workflows/{workflow_id}")
        by_type.update((itype, definition) for itype in types)
    if not by_type:
        raise BadResponseError(f"queue {queue} lists no workflow", service="tracker",
                               endpoint=f"GET queues/{queue}/workflows")
    return by_type


class QueueDefinitions:
    """The workflow definitions of the queues walked, re-read after `DEFINITIONS_KEPT` seconds,
    or at once when an issue's own transition list shows them stale (`forget`).

    The definitions are a guard, not the source of truth: the per-issue transition lists are.
    So a queue whose definitions cannot be read (refused, another shape, or failing just now)
    gives None, the walk relies on the organisation's statuses and the per-issue lists as
    before, and the operator is told once per queue; a failed read is tried again after
    `FAILED_KEPT` seconds, never by every walk of a cycle.  An issue type the queue's map does
    not list gets every workflow of the queue merged: a status none of them has is still
    refused, and a path any of them has is not."""

    def __init__(self, tracker: TrackerClient, clock: Callable[[], float] = time.monotonic) -> None:
        self.tracker = tracker
        self.clock = clock
        self._known: dict[str, tuple[float, dict[str, Definition] | None]] = {}
        self._warned: set[str] = set()
        self._lock = threading.Lock()
        self._queue_locks: dict[str, threading.Lock] = {}

    def of(self, queue: str, issue_type: str) -> Definition | None:
        with self._lock:
            queue_lock = self._queue_locks.setdefault(queue, threading.Lock())
        with queue_lock:  # one read per queue at a time; other queues' walks go on
            read_at, by_type = self._known.get(queue, (None, None))
            kept = DEFINITIONS_KEPT if by_type is not None else FAILED_KEPT
            if read_at is None or self.clock() - read_at > kept:
                by_type = self._read(queue)
                self._known[queue] = (self.clock(), by_type)
        return _pick(by_type, issue_type)

    def peek(self, queue: str, issue_type: str) -> Definition | None:
        """What is known now, without reading."""
        with self._lock:
            by_type = self._known.get(queue, (None, None))[1]
        return _pick(by_type, issue_type)

    def forget(self, queue: str) -> None:
        """The definitions of `queue` disagree with what an issue offers: read them again."""
        with self._lock:
            self._known.pop(queue, None)

    def _read(self, queue: str) -> dict[str, Definition] | None:
        try:
            found = read_definitions(self.tracker, queue)
        except RemoteError as exc:
            if queue not in self._warned:
                self._warned.add(queue)
                log.warning("cannot read the workflow definitions of queue %s (%s): mapping targets are checked "
                            "against the organisation's statuses only, and paths are found step by step",
                            queue, exc.describe(), extra={"event": "workflow.definitions"})
            return None
        self._warned.discard(queue)
        return found


def _pick(by_type: Mapping[str, Definition] | None, issue_type: str) -> Definition | None:
    """The type's workflow; a type the queue's map does not list gets all of them merged."""
    if by_type is None:
        return None
    return by_type.get(issue_type) or merged(by_type.values())


def merged(definitions: Iterable[Definition]) -> Definition:
    """Every workflow of a queue as one: what any of them allows."""
    moves: dict[str, set[str]] = {}
    for definition in definitions:
        for status, targets in definition.moves.items():
            moves.setdefault(status, set()).update(targets)
        for status in definition.statuses:
            moves.setdefault(status, set())
    return Definition({status: frozenset(targets) for status, targets in moves.items()})


@dataclass(frozen=True)
class _Where:
    key: str
    queue: str
    itype: str
