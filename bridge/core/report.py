"""What one cycle did: the per-link runs worth keeping, creations, and the totals that `sync`,
the daemon's status line, the metrics and the state file's cycle history show."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from bridge.core.actions import changes
from bridge.core.focus import Selection
from bridge.core.linkrun import LinkRun
from bridge.errors import RemoteError

# Summary keys carried as fields of the cycle's log line (JSON logs); none may clash with LogRecord.
SUMMARY_LOG_FIELDS = ("ok", "dry_run", "cycle_kind", "links", "links_read", "writes_sentry", "writes_tracker",
                      "failures", "conflicts", "duration_seconds")


@dataclass
class CycleReport:
    dry_run: bool
    started: datetime
    finished: datetime | None = None
    cycle_id: int | None = None
    links: int = 0
    outcomes: list[LinkRun] = field(default_factory=list)
    fatal: RemoteError | None = None
    requests: dict[str, int] = field(default_factory=dict)
    interrupted: bool = False
    created: list[tuple[str, str]] = field(default_factory=list)
    adopted: list[tuple[str, str]] = field(default_factory=list)
    would_create: list[str] = field(default_factory=list)
    deferred: int = 0
    create_failures: dict[str, str] = field(default_factory=dict)
    recovered: int = 0
    backlinked: int = 0
    refused: str | None = None
    quarantined: list[str] = field(default_factory=list)
    full: bool = True
    quiet: int = 0  # links whose baselines moved without any write or report
    poll_error: str | None = None  # the incremental Tracker poll failed (then every link was read)
    # A focused cycle (healthy hooks): the links read, and why; None when every link was read.
    focus: Selection | None = None
    # Links read only by the rotating slice whose Sentry side showed a change hooks announce (a
    # status change, an assignment): the daemon checks whether a hook named them after all.
    unhinted: list[str] = field(default_factory=list)

    @property
    def kind(self) -> str:
        """full (every issue of both sides read), incremental (every linked Sentry issue, Tracker's
        updates), focused (what hooks and polls point at plus a slice), or hinted (brought
        forward by hooks: only what they point at)."""
        if self.full:
            return "full"
        if self.focus is None:
            return "incremental"
        return "hinted" if self.focus.hinted else "focused"

    @property
    def failures(self) -> list[LinkRun]:
        return [o for o in self.outcomes if o.error]

    @property
    def ok(self) -> bool:
        # An interrupted cycle left links unread: not a success, whatever it did before the stop.
        return (self.fatal is None and self.refused is None and not self.failures and not self.create_failures
                and not self.interrupted)

    def writes(self, side: str) -> int:
        return sum(o.writes_sentry if side == "sentry" else o.writes_tracker for o in self.outcomes)

    def summary(self) -> dict[str, Any]:
        duration = (self.finished - self.started).total_seconds() if self.finished else None
        return {
            "ok": self.ok,
            "dry_run": self.dry_run,
            "links": self.links,
            "writes_sentry": self.writes("sentry"),
            "writes_tracker": self.writes("tracker"),
            "planned_writes": sum(o.planned_writes for o in self.outcomes),
            "failures": len(self.failures),
            "conflicts": sum(len(o.conflicts) for o in self.outcomes),
            "unmapped": sum(len(o.unmapped) for o in self.outcomes),
            "pending": sum(len(o.pending) for o in self.outcomes),
            "requests": dict(self.requests),
            "duration_seconds": round(duration, 3) if duration is not None else None,
            "fatal": self.fatal.describe() if self.fatal else None,
            "interrupted": self.interrupted,
            "created": len(self.created),
            "adopted": len(self.adopted),
            "would_create": len(self.would_create),
            "deferred": self.deferred,
            "create_failures": len(self.create_failures),
            "recovered_intents": self.recovered,
            "backlinked": self.backlinked,
            "refused": self.refused,
            "quarantined": len(self.quarantined),
            "full": self.full,
            "cycle_kind": self.kind,
            # Links read this cycle: all of them unless the cycle was focused by hooks.
            "links_read": len(self.focus.ids) if self.focus is not None else self.links,
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "started": self.started.isoformat(timespec="seconds"),
            "finished": self.finished.isoformat(timespec="seconds") if self.finished else None,
            "links_detail": [o.to_json() for o in self.outcomes if changes(o.actions) or o.error],
            "created_detail": [{"sentry_id": sid, "tracker_key": key} for sid, key in self.created],
            "adopted_detail": [{"sentry_id": sid, "tracker_key": key} for sid, key in self.adopted],
            "would_create_detail": self.would_create,
            "create_failures_detail": self.create_failures,
        }
