"""The executor: one link's actions -> requests -> what was observed -> `settle` (design §9).

It runs on a write worker and does HTTP only (plus the write-ahead notes, which have their own
connection).  It never decides where a baseline goes: each write becomes an `Observation` and
`bridge.core.outcomes.settle` says what to believe.  Before a write is sent it is noted as
pending, so that an answer lost, or a process stopped, leaves a trace the next cycle judges
from what it reads.  Whatever goes wrong with one link (a remote refusal, a bug, an answer of
a shape nobody expected) stays with that link: it is recorded and the cycle goes on.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from bridge.clients.sentry import SentryClient
from bridge.clients.tracker import TrackerClient
from bridge.core.actions import (
    AddFollowers,
    Adopt,
    Hold,
    Reconcile,
    RecordConflict,
    RemoveFollowers,
    ReportUnmapped,
    Write,
    WriteSentry,
    WriteTracker,
    describe,
    is_write,
)
from bridge.core.fields import FIELDS, snapshot, spec_of
from bridge.core.linkrun import LinkRun
from bridge.core.mapping import UserMap
from bridge.core.outcomes import Attempt, JournalEntry, Observation, Pending, Seen, Then, observe_later, settle
from bridge.core.plan import LinkState, Policy, plan_for
from bridge.core.values import Snapshot
from bridge.engine.transitions import StatusWalker
from bridge.errors import BadResponseError, ConflictError, RemoteError, TransientError
from bridge.history import TrackerHistory

log = logging.getLogger("bridge.engine")

Note = Callable[[str, Pending], None]
Patch = WriteTracker | AddFollowers | RemoveFollowers


def is_patch(action: Write) -> bool:
    """A version-guarded Tracker PATCH (after a transition of the same link it needs the issue's
    new version), as opposed to a walk through transitions or a Sentry PUT."""
    return isinstance(action, (AddFollowers, RemoveFollowers)) or (
        isinstance(action, WriteTracker) and not spec_of(action.field).walks)


def walks(action: Write) -> bool:
    return isinstance(action, WriteTracker) and spec_of(action.field).walks


class Executor:
    """Runs links' writes; one instance per cycle (or per operator command), shared by workers."""

    def __init__(self, sentry: SentryClient, tracker: TrackerClient, walker: StatusWalker, users: UserMap,
                 policy: Policy, note: Note | None = None, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC),
                 history: TrackerHistory | None = None) -> None:
        self.sentry, self.tracker, self.walker = sentry, tracker, walker
        self.users, self.policy = users, policy
        self._note = note or (lambda _sid, _pending: None)
        self._clock = clock
        self._history = history

    def run(self, run: LinkRun) -> None:
        """Execute the run's plan.  A version conflict means a person changed the Tracker issue
        meanwhile: re-read both sides and plan once more (a person's edit wins).  Never raises
        for the link's own trouble: `run.error` says what failed."""
        for attempt in (1, 2):
            try:
                then, detail = self._execute(run)
            except RemoteError as exc:  # a read between writes failed
                run.error = exc.describe()
                return
            except Exception as exc:  # noqa: BLE001 - one link fails alone, whatever the error
                log.exception("link %s <-> %s: unexpected error", run.sentry_id, run.tracker_key,
                              extra={"event": "link.internal_error", "link": run.sentry_id})
                run.error = f"internal error: {type(exc).__name__}: {exc}"
                return
            if then is Then.DONE:
                return
            if then is not Then.REPLAN or attempt == 2:
                run.error = detail
                return
            log.info("version conflict on %s; re-reading", run.tracker_key,
                     extra={"event": "link.conflict_retry", "link": run.sentry_id})
            try:
                self._replan(run)
            except RemoteError as exc:
                run.error = exc.describe()
                return

    def _replan(self, run: LinkRun) -> None:
        # What the first plan recorded (conflicts, unmapped values) is for the second to say again.
        run.conflicts.clear()
        run.journal = [e for e in run.journal if e.action not in ("conflict", "unmapped")]
        run.sentry = self.sentry.get_issue(run.sentry_id)
        run.tracker = run.tracker_seen = self.tracker.get_issue(run.tracker_key)
        state = LinkState({**run.state.baseline, **run.baselines}, run.owned,
                          run.state.open_conflicts - run.settled, ())
        run.actions = plan_for(state, self.now(run), self.users, self.policy)

    def now(self, run: LinkRun) -> Snapshot:
        return snapshot(run.sentry, run.tracker, run.marks, self.users)

    def _execute(self, run: LinkRun) -> tuple[Then, str]:
        """Run the actions: first everything that writes nothing (settlements, baseline moves,
        records), then the writes in order; the first write that does not end DONE stops the
        link (the rest waits for the next cycle).  What writes nothing concerns its own field
        alone and holds whatever the writes do: a failed status write must not throw away what
        the plan saw of the followers.  Returns what comes next and why."""
        planned_from = self.now(run)
        stale_version = False  # a transition moved the issue on: a PATCH needs its new version
        for action in sorted(run.actions, key=is_write):  # stable: each group keeps its order
            if isinstance(action, Hold):
                continue
            if isinstance(action, Reconcile):
                run.apply(action.settlement)
            elif isinstance(action, Adopt):
                run.adopt(action.field, action.pair)
            elif isinstance(action, RecordConflict):
                run.record(action)  # warned about when committed, and only when it is news
            elif isinstance(action, ReportUnmapped):
                run.journal.append(JournalEntry(action.side, action.field, "unmapped", action.value, "skipped",
                                                action.reason))
            else:
                if is_patch(action) and stale_version:
                    stale_version = False
                    moved = self._fresh_version(run, planned_from)
                    if moved:
                        return Then.REPLAN, moved
                written = run.writes_tracker
                then = self._write(run, action, planned_from)
                stale_version = stale_version or (walks(action) and run.writes_tracker > written)
                if then is not Then.DONE:
                    return then, run.journal[-1].detail
        return Then.DONE, ""

    def _fresh_version(self, run: LinkRun, planned_from: Snapshot) -> str:
        """After a transition the issue has a new version: read it.  When a person edited the
        fields still to be written since the plan, say so (the rest is planned again)."""
        run.tracker = run.tracker_seen = self.tracker.get_issue(run.tracker_key)
        for spec in FIELDS:
            if not spec.walks and spec.read_tracker(run.tracker, self.users) != planned_from.get(spec.name).tracker:
                return "changed meanwhile (seen after a transition)"
        return ""

    def _write(self, run: LinkRun, action: Write, planned_from: Snapshot) -> Then:
        """Send one write, observe it, settle it."""
        version = run.tracker.get("version") if action.side == "tracker" else None
        attempt = Attempt(action, planned_from.get(action.field), run.base(action.field),
                          int(version) if isinstance(version, int) else None, self._clock().isoformat(),
                          uuid.uuid4().hex)
        self._note(run.sentry_id, Pending(attempt))
        reached: tuple[str, ...] = ()
        try:
            if walks(action):
                walk = self.walker.walk(run.tracker, action.target,  # type: ignore[union-attr]
                                        lambda statuses: self._note(run.sentry_id, Pending(attempt, statuses)))
                observed, reached = walk.observation(), walk.noted
                run.writes_tracker += walk.executed
                if walk.executed:
                    # The transition's answer is the server's word: no read just to see the status.
                    key = spec_of(action.field).tracker_keys[0]
                    run.tracker = run.tracker_seen = {**run.tracker, key: {"key": walk.reached[-1]}}
            elif isinstance(action, WriteSentry):
                observed = self._sentry_write(run, action, attempt)
            elif is_patch(action):
                observed = self._tracker_patch(run, action, attempt)
            else:
                raise TypeError(f"not a write: {action!r}")
        except Exception as exc:
            # Whatever it was, the write may have reached the server: its outcome is unknown.
            settled = settle(attempt, Observation(Seen.UNKNOWN, None, f"{type(exc).__name__}: {exc}"))
            run.apply(settled)
            raise
        if not walks(action) and observed.seen in (Seen.APPLIED, Seen.LANDED):
            run.writes_sentry += action.side == "sentry"
            run.writes_tracker += action.side == "tracker"
        settled = settle(attempt, observed, reached)
        run.apply(settled)
        self._log(run, action, settled.entry)
        return settled.then

    def _tracker_patch(self, run: LinkRun, action: Patch, attempt: Attempt) -> Observation:
        version = int(run.tracker["version"])
        key = run.tracker_key
        body = spec_of(action.field).tracker_body
        if body is None:
            raise TypeError(f"{action.field} is not written by a PATCH")
        try:
            answer = self.tracker.update_issue(key, body(action), version=version)  # type: ignore[arg-type]
        except ConflictError as exc:
            if not exc.after_lost_answer:
                return Observation(Seen.CONFLICT, None, exc.describe())
            # A retry met our own earlier attempt (its answer was lost)?  Read back and see.
            return self._read_back(run, attempt, exc, reader=self.tracker.get_issue)
        except (TransientError, BadResponseError) as exc:  # may have landed: the answer is lost or unusable
            return self._read_back(run, attempt, exc, reader=self.tracker.get_issue)
        except RemoteError as exc:
            return Observation(Seen.REFUSED, None, exc.describe())
        run.tracker = run.tracker_seen = answer
        return Observation(Seen.APPLIED, self.now(run).get(action.field).tracker, action.reason)

    def _sentry_write(self, run: LinkRun, action: WriteSentry, attempt: Attempt) -> Observation:
        body = spec_of(action.field).sentry_body
        if body is None:
            raise TypeError(f"{action.field} is never written to Sentry")
        try:
            answer = self.sentry.update_issue(run.sentry_id, body(action))
        except (TransientError, BadResponseError) as exc:  # may have landed: the answer is lost or unusable
            return self._read_back(run, attempt, exc, reader=self.sentry.get_issue)
        except RemoteError as exc:
            return Observation(Seen.REFUSED, None, exc.describe())
        run.sentry = answer
        return Observation(Seen.APPLIED, self.now(run).get(action.field).sentry, action.reason)

    def _read_back(self, run: LinkRun, attempt: Attempt, error: RemoteError,
                   reader: Callable[[str], dict[str, Any]]) -> Observation:
        """After an ambiguous answer: read the issue and judge the write by what it shows (the same
        rule a later cycle applies to a pending write).  No read: the outcome is unknown."""
        action = attempt.action
        ref = run.sentry_id if action.side == "sentry" else run.tracker_key
        try:
            issue = reader(ref)
        except RemoteError:
            return Observation(Seen.UNKNOWN, None, error.describe())
        if action.side == "sentry":
            run.sentry = issue
        else:
            run.tracker = run.tracker_seen = issue
        history = None
        if is_patch(action) and self._history is not None and issue.get("version") != attempt.version:
            # Who made the change matters for followers (ownership): the issue's history tells.
            history = self._history.lookup(run.tracker_key, Pending(attempt), self.users)
        seen = observe_later(Pending(attempt), self.now(run).get(action.field), history)
        if seen.seen is Seen.LANDED:
            return replace(seen, detail=f"the answer was lost ({error.describe()}); read back: it landed")
        if seen.seen is Seen.NOT_LANDED:
            return Observation(Seen.NOT_LANDED, None, error.describe())
        # Neither ours nor as planned: a person changed it meanwhile.
        return Observation(Seen.CONFLICT, None, f"changed meanwhile ({error.describe()})")

    @staticmethod
    def _log(run: LinkRun, action: Write, entry: JournalEntry) -> None:
        desc = describe(action)
        log.info("%s %s %s -> %s: %s", run.sentry_id, action.field, action.side, desc.get("value"), entry.outcome,
                 extra={"event": "link.write", "link": run.sentry_id, "side": action.side, "field": action.field,
                        "outcome": entry.outcome})
