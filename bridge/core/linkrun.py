"""One link through one cycle, as one record.

A `LinkRun` is made when a link is planned, carried to a write worker, filled in by the executor
with what it observed, and committed by the store in one transaction.  The cycle report keeps
the runs that wrote, failed or recorded something; quiet links are only counted.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bridge.core.actions import Action, RecordConflict, ReportUnmapped, changes, describe, is_write
from bridge.core.outcomes import JournalEntry, Pending, Settlement
from bridge.core.plan import LinkState
from bridge.core.values import Field, Pair, text


@dataclass(frozen=True, slots=True)
class Link:
    sentry_id: str
    tracker_key: str
    origin: str
    created_at: str
    backlinked: int = 0


@dataclass
class LinkRun:
    """What one link read, planned, wrote and observed in one cycle, and what it leaves behind."""

    link: Link
    state: LinkState = field(default_factory=LinkState)
    sentry: dict[str, Any] = field(default_factory=dict)
    tracker: dict[str, Any] = field(default_factory=dict)
    marks: frozenset[str] | None = None
    actions: list[Action] = field(default_factory=list)
    # -- what the run leaves behind (committed in one transaction) --
    baselines: dict[Field, Pair] = field(default_factory=dict)
    owned_added: set[str] = field(default_factory=set)
    owned_removed: set[str] = field(default_factory=set)
    journal: list[JournalEntry] = field(default_factory=list)
    conflicts: dict[Field, Pair] = field(default_factory=dict)  # recorded now
    settled: set[Field] = field(default_factory=set)  # fields whose open conflict is over
    pending: dict[str, Pending] = field(default_factory=dict)  # a write of this run still unknown, by note key
    writes_sentry: int = 0
    writes_tracker: int = 0
    error: str | None = None
    tracker_seen: dict[str, Any] | None = None  # the Tracker issue as last seen (the cache)

    @property
    def sentry_id(self) -> str:
        return self.link.sentry_id

    @property
    def tracker_key(self) -> str:
        return self.link.tracker_key

    @property
    def owned(self) -> frozenset[str]:
        """The followers the bridge owns after what this run did so far."""
        return frozenset((self.state.owned | self.owned_added) - self.owned_removed)

    @property
    def unmapped(self) -> list[str]:
        return [f"{a.field}:{a.side}:{a.value}" for a in self.actions if isinstance(a, ReportUnmapped)]

    @property
    def planned_writes(self) -> int:
        return sum(1 for a in self.actions if is_write(a))

    @property
    def noteworthy(self) -> bool:
        """Worth keeping in the cycle report: it wrote, failed, or recorded something."""
        return bool(self.error or self.writes_sentry or self.writes_tracker or self.journal)

    def apply(self, settlement: Settlement) -> None:
        """Take one write's settlement (or a pending write's, judged later) into the run."""
        name = settlement.field
        if settlement.baseline is not None:
            self.baselines[name] = settlement.baseline
        self.owned_added = (self.owned_added | settlement.owned_added) - settlement.owned_removed
        self.owned_removed = (self.owned_removed | settlement.owned_removed) - settlement.owned_added
        self.journal.append(settlement.entry)
        if settlement.pending is not None:
            self.pending[settlement.pending.key] = settlement.pending
        elif settlement.attempt is not None:
            self.pending.pop(settlement.attempt.id, None)
        if settlement.wrote:
            self.settled.add(name)

    def adopt(self, name: Field, pair: Pair) -> None:
        self.baselines[name] = pair
        self.settled.add(name)

    def record(self, action: RecordConflict) -> None:
        self.conflicts[action.field] = action.pair
        both = f"sentry={text(action.pair.sentry)} tracker={text(action.pair.tracker)}"
        self.journal.append(JournalEntry("both", action.field, "conflict", both, "recorded", action.reason))

    def base(self, name: Field) -> Pair | None:
        """The field's baseline as it stands now (moved by this run, or as loaded)."""
        return self.baselines.get(name, self.state.baseline.get(name))

    def to_json(self) -> dict[str, Any]:
        return {
            "sentry_id": self.sentry_id,
            "tracker_key": self.tracker_key,
            "actions": [describe(a) for a in changes(self.actions)],
            "writes": {"sentry": self.writes_sentry, "tracker": self.writes_tracker},
            "error": self.error,
            "conflicts": sorted(self.conflicts),
            "unmapped": self.unmapped,
            "pending": sorted(p.kind for p in self.pending.values()),
        }
