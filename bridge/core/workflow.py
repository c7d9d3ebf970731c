"""Finding a way through a Tracker queue's workflow, from what the API has shown us.

Tracker changes status only through transitions, and lists only those available from an
issue's current status.  `WorkflowCache` remembers every list it has seen per
(queue, issue type, status); `next_transition` picks the first step of the shortest known path
to the target, or, when the known graph has no path yet, the first step towards the nearest
status whose transitions are not known yet (each answer to `_execute` then teaches them).  Once
every status reachable from here is known and none leads to the target, there is no way: the
walk stops before moving the issue any further.

`Definition` is the other source: the workflow as the queue's admin defined it (documented
`GET /queues/{q}/workflows` and `GET /workflows/{id}`).  It names every status of the workflow and
which statuses each one's actions lead to, so a target the queue lacks, or cannot reach from
where an issue stands, is known before any step is taken, and exploring never wanders into a
status from which the target cannot be reached.  Transition ids still come from the per-issue
lists: the definition only says where paths exist.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Transition:
    id: str
    to: str


def ref_key(value: Any) -> str | None:
    """The key of a reference (`{"key": ...}`) or a bare string key: the API's documented bodies
    use both forms for statuses and issue types.  A reference without a key is not guessed at
    (its `id` is a number, not a key)."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, Mapping) and isinstance(value.get("key"), str) and value["key"]:
        return str(value["key"])
    return None


@dataclass(frozen=True)
class Definition:
    """One workflow as defined: status -> the statuses its actions lead to."""

    moves: Mapping[str, frozenset[str]]

    @property
    def statuses(self) -> frozenset[str]:
        return frozenset(self.moves) | frozenset(s for targets in self.moves.values() for s in targets)

    def leading_to(self, target: str) -> frozenset[str]:
        """Every status from which `target` can be reached (the target itself included)."""
        back: dict[str, set[str]] = {}
        for source, targets in self.moves.items():
            for to in targets:
                back.setdefault(to, set()).add(source)
        seen = {target}
        queue = deque([target])
        while queue:
            for source in back.get(queue.popleft(), ()):
                if source not in seen:
                    seen.add(source)
                    queue.append(source)
        return frozenset(seen)


def parse_definition(doc: Mapping[str, Any]) -> Definition | None:
    """`{steps: [{status, actions: [{id, target}]}]}` as a Definition; None when the document does
    not have that shape (then nothing is concluded from it)."""
    steps = doc.get("steps")
    if not isinstance(steps, list) or not steps:
        return None
    moves: dict[str, set[str]] = {}
    for step in steps:
        status = ref_key(step.get("status")) if isinstance(step, Mapping) else None
        actions = step.get("actions", []) if isinstance(step, Mapping) else None
        if status is None or not isinstance(actions, list):
            return None
        targets = moves.setdefault(status, set())
        for action in actions:
            target = ref_key(action.get("target")) if isinstance(action, Mapping) else None
            if target is None:
                return None
            targets.add(target)
    return Definition({status: frozenset(targets) for status, targets in moves.items()})


def definition_problem(definition: Definition, queue: str, current: str, target: str,
                       rows: Sequence[str]) -> str | None:
    """Why no step may be taken towards `target` (None when a path exists).  `rows` are the
    mapping rows that name the target, e.g. `mapping.status.to_tracker.unresolved = "opened"`."""
    named = " and ".join(rows) or f"target {target!r}"
    if target not in definition.statuses:
        known = sorted(definition.statuses)
        shown = ", ".join(known[:12]) + (", ..." if len(known) > 12 else "")
        return f'{named}: queue {queue} has no status "{target}" (it has {shown})'
    if current not in definition.leading_to(target):
        return f'{named}: queue {queue}\'s workflow has no way from {current} to {target}'
    return None


def parse_transitions(items: Iterable[Mapping[str, Any]]) -> tuple[Transition, ...]:
    """`[{id, to: {key}}]` as returned by the transitions list and by `_execute`."""
    result = []
    for item in items:
        to = item.get("to")
        if isinstance(to, Mapping) and item.get("id") is not None and to.get("key"):
            result.append(Transition(str(item["id"]), str(to["key"])))
    return tuple(result)


@dataclass
class WorkflowCache:
    """Transitions seen per (queue, type, status).  Lives as long as the engine; write workers
    share it, so every access holds the lock."""

    _known: dict[tuple[str, str, str], tuple[Transition, ...]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    version: int = 0  # moves with every change: what the store has saved is compared against it

    def get(self, queue: str, issue_type: str, status: str) -> tuple[Transition, ...] | None:
        with self._lock:
            return self._known.get((queue, issue_type, status))

    def learn(self, queue: str, issue_type: str, status: str, transitions: tuple[Transition, ...]) -> None:
        with self._lock:
            if self._known.get((queue, issue_type, status)) != transitions:
                self._known[(queue, issue_type, status)] = transitions
                self.version += 1

    def forget(self, queue: str, issue_type: str, status: str) -> None:
        with self._lock:
            if self._known.pop((queue, issue_type, status), None) is not None:
                self.version += 1

    def items(self) -> list[tuple[tuple[str, str, str], tuple[Transition, ...]]]:
        """Everything known, as (queue, type, status) -> transitions (a copy)."""
        with self._lock:
            return list(self._known.items())

    def graph(self, queue: str, issue_type: str) -> dict[str, tuple[Transition, ...]]:
        """A copy: the known part of one workflow (status -> transitions out of it)."""
        with self._lock:
            return {s: t for (q, it, s), t in self._known.items() if q == queue and it == issue_type}

    def __len__(self) -> int:
        with self._lock:
            return len(self._known)


def shortest_path(
    graph: Mapping[str, Sequence[Transition]], start: str, target: str, avoid: frozenset[str] = frozenset()
) -> list[Transition] | None:
    """Breadth-first search over the known part of the workflow, never through `avoid`."""
    if start == target:
        return []
    queue: deque[tuple[str, list[Transition]]] = deque([(start, [])])
    seen = {start}
    while queue:
        status, path = queue.popleft()
        for transition in graph.get(status, ()):
            if transition.to in seen:
                continue
            step = [*path, transition]
            if transition.to == target:
                return step
            seen.add(transition.to)
            if transition.to not in avoid:
                queue.append((transition.to, step))
    return None


def next_transition(graph: Mapping[str, Sequence[Transition]], current: str, target: str,
                    avoid: frozenset[str] = frozenset(), never: frozenset[str] = frozenset()) -> Transition | None:
    """The step to take now.  In order: the shortest known path that passes through no status in
    `avoid` (the done and cancelled statuses other than the target: entering one closes the
    ticket, sets a resolution and tells people); the shortest known path; a step towards the
    nearest status whose transitions are not known yet (the only way to learn them is to stand
    there), first around `avoid`, then through it; else None: nothing reachable leads there.
    `never` is never explored: the statuses the workflow's definition says lead nowhere near
    the target (a path the issues themselves have shown is taken whatever the definition says:
    the per-issue lists are the authority, a definition may be stale)."""
    for detour in (avoid, frozenset()):
        path = shortest_path(graph, current, target, detour - {target})
        if path:
            return path[0]
    for detour in (avoid | never, never):
        step = _towards_the_unknown(graph, current, detour - {target})
        if step is not None:
            return step
    return None


def _towards_the_unknown(graph: Mapping[str, Sequence[Transition]], current: str,
                         avoid: frozenset[str]) -> Transition | None:
    queue: deque[tuple[str, Transition | None]] = deque([(current, None)])
    seen = {current}
    while queue:
        status, first = queue.popleft()
        for transition in graph.get(status, ()):
            if transition.to in seen or transition.to in avoid:
                continue
            step = first or transition
            if transition.to not in graph:
                return step  # unexplored: go and learn where it leads
            seen.add(transition.to)
            queue.append((transition.to, step))
    return None
