"""Which links a focused cycle reads (design §10, issue 15 item 2).

Sentry has no "changed since" query, so a plain incremental cycle re-reads every linked Sentry
issue (N/100 requests).  With healthy hooks most of that is waste: a person's change to a status
or an assignment sends a hook.  A *focused* cycle therefore reads only the links something points
at, plus a rotating slice of the rest:

- the links a hook named (either side);
- the links whose Tracker issue the incremental poll shows updated (the poll is one cheap read
  and catches what Tracker's trigger missed);
- the links whose bookmarks changed between two searches (Sentry sends nothing for bookmarks);
- the links with a write whose outcome is unknown, and failing links due for a retry;
- the links whose Sentry issue had an event since the last scheduled cycle and is unresolved now
  while the bridge last knew it resolved or ignored (a regression or an escalation: Sentry sends
  no hook for those);
- a slice of `ceil(N / full_resync_every)` links in id order, resumed after the last one read, so
  every link is read at least once every `full_resync_every` cycles even if no full cycle runs,
  which bounds the delay of the changes hooks never announce (an unassignment, the last bookmark
  taken off an issue, a priority).

Everything here is pure: the engine gathers the inputs and persists the slice's resume point.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bridge.core.fields import FIELDS
from bridge.core.mapping import base_state
from bridge.core.plan import LinkState
from bridge.core.values import Pair


@dataclass(frozen=True)
class Focus:
    """What the hooks named since the last cycle: Sentry issue ids and Tracker issue keys.
    `hinted`: a cycle hooks brought forward, which reads only what is pointed at (no slice, no
    bookmark searches) and leaves the schedule of scheduled cycles (slices, full resyncs) alone,
    so a stream of hints costs reads in proportion to the hints, never a full read per hint."""

    sentry_ids: frozenset[str] = frozenset()
    tracker_keys: frozenset[str] = frozenset()
    hinted: bool = False


@dataclass(frozen=True)
class Selection:
    """The links a focused cycle reads, why, and where the next slice starts."""

    pointed: frozenset[str]  # sentry ids something points at (hooks, the poll, bookmarks, retries)
    sliced: frozenset[str]  # sentry ids read only because the slice reached them
    slice_after: str | None  # the last id of this slice: the next one starts after it
    reasons: Mapping[str, int] = field(default_factory=dict)  # how many links each reason named
    hinted: bool = False  # a cycle hooks brought forward
    hooked_keys: frozenset[str] = frozenset()  # Tracker keys hooks named (never taken from a cache)

    @property
    def ids(self) -> frozenset[str]:
        return self.pointed | self.sliced


def slice_size(links: int, every: int) -> int:
    """Links per slice so that `every` consecutive slices cover all `links`."""
    return math.ceil(links / max(every, 1)) if links else 0


def rotating_slice(ids: Sequence[str], after: str | None, size: int) -> tuple[list[str], str | None]:
    """The `size` ids (of the sorted `ids`) that follow `after`, wrapping round to the start; and
    the last one taken, where the next slice resumes.  Resuming after an id rather than at an
    index keeps the rotation fair when links come and go between cycles."""
    if not ids or size <= 0:
        return [], after
    size = min(size, len(ids))
    start = 0 if after is None else bisect.bisect_right(ids, after)
    taken = [ids[(start + i) % len(ids)] for i in range(size)]
    return taken, taken[-1]


def bookmark_changes(before: Mapping[str, frozenset[str]], after: Mapping[str, frozenset[str]]) -> set[str]:
    """Issue ids whose set of bookmarking people differs between two searches (added, removed,
    or gone from the search altogether)."""
    return {sid for sid in before.keys() | after.keys() if before.get(sid, frozenset()) != after.get(sid, frozenset())}


def select(
    linked: Sequence[tuple[str, str]],
    focus: Focus,
    *,
    updated_keys: Collection[str] = (),
    bookmarks_changed: Collection[str] = (),
    retry: Collection[str] = (),
    reopened: Collection[str] = (),
    slice_after: str | None,
    every: int,
) -> Selection:
    """The links to read this cycle, from `linked` = (sentry id, Tracker key) pairs sorted by id
    (the links the cycle may touch: not held, not waiting for a back-off).  A hinted cycle takes
    no slice."""
    by_key: dict[str, str] = {key: sid for sid, key in linked}
    ids = [sid for sid, _key in linked]
    present = set(ids)
    reasons: dict[str, set[str]] = {
        "hook": {sid for sid in focus.sentry_ids if sid in present}
        | {by_key[key] for key in focus.tracker_keys if key in by_key},
        "poll": {by_key[key] for key in updated_keys if key in by_key},
        "bookmarks": {sid for sid in bookmarks_changed if sid in present},
        "retry": {sid for sid in retry if sid in present},
        "reopened": {sid for sid in reopened if sid in present},
    }
    pointed = frozenset().union(*reasons.values())
    size = 0 if focus.hinted else slice_size(len(ids), every)
    sliced, after = rotating_slice(ids, slice_after, size)
    return Selection(pointed=pointed, sliced=frozenset(sliced) - pointed, slice_after=after,
                     reasons={name: len(found) for name, found in reasons.items()}, hinted=focus.hinted,
                     hooked_keys=frozenset(key for key in focus.tracker_keys if key in by_key))


def ordered(links: Iterable[tuple[str, str]]) -> list[tuple[str, str]]:
    """(sentry id, key) pairs in the order slices walk them."""
    return sorted(links)


def reopened_ids(seen_unresolved: Iterable[str], baselines: Mapping[str, Mapping[str, Pair]]) -> set[str]:
    """Of the linked issues seen unresolved with a recent event, those the bridge last knew
    resolved or ignored (or never knew): a regression or an escalation, which no hook announces."""
    found = set()
    for sid in seen_unresolved:
        pair = baselines.get(sid, {}).get("status")
        state = pair.sentry if pair is not None else None
        if not (isinstance(state, str) and base_state(state) == "unresolved"):
            found.add(sid)
    return found


def hooked_change(state: LinkState, issue: Mapping[str, Any]) -> bool:
    """Whether the Sentry side moved from its baseline in a way Sentry sends a hook for (a slice
    that finds such a change no hook named is a sign hooks are missing)."""
    for spec in FIELDS:
        pair = state.baseline.get(spec.name)
        if pair is not None and spec.sentry_hooked(pair.sentry, spec.read_sentry(issue)):
            return True
    return False
