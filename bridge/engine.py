"""The engine: the only module that talks to both clients and the store.

One cycle: load who is who on both sides, refresh every linked issue in batches, learn the
bookmarks, then for each link build a snapshot, ask the pure planner what to do, run the writes,
read the result back and commit the new baselines for that link in one transaction.  A link
that fails is recorded with its error and retried later; the cycle goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.clients.sentry import SentryClient
from bridge.clients.tracker import TrackerClient
from bridge.config import Settings, TrackerTarget
from bridge.create import (
    issue_fields,
    reference_tag,
    route_queue,
    sentry_id_from_tags,
    sentry_id_from_unique,
    unique_key,
)
from bridge.errors import (
    AuthError,
    BridgeError,
    ConflictError,
    MalformedItemError,
    NotFoundError,
    RejectedError,
    RemoteError,
    TransientError,
    UnreachableError,
)
from bridge.guard import MassChangeGuard
from bridge.mapping import (
    UserMap,
    assignee_in_step,
    build_user_map,
    outside_search_window,
    parse_sentry_time,
    sentry_assignee,
    sentry_state,
    status_in_step,
    tracker_assignee,
    tracker_followers,
    tracker_status,
)
from bridge.plan import (
    Action,
    AddFollowers,
    Adopt,
    Field,
    Pair,
    Policy,
    RecordConflict,
    RemoveFollowers,
    ReportUnmapped,
    Snapshot,
    WriteSentryAssignee,
    WriteSentryStatus,
    WriteTrackerAssignee,
    WriteTrackerStatus,
    is_write,
    plan_link,
)
from bridge.store import JournalEntry, Link, LinkCommit, Store, slim_tracker
from bridge.workflow import WorkflowCache, next_transition, parse_transitions

log = logging.getLogger("bridge.engine")

BATCH = 100
MAX_TRANSITION_STEPS = 6
# Where the incremental Tracker poll resumes: the newest `updatedAt` seen (minus the overlap).
TRACKER_CURSOR = "tracker.updated_at"
# Where the create listing stops: the newest Sentry first-seen time already handled.
CREATE_CURSOR = "create.first_seen"
CREATE_FLOOR = "create.floor_id"
# With at least this many links, a side returning none of them is an outage.
EMPTY_SIDE_MIN = 3
# Summary keys carried as fields of the cycle's log line (JSON logs); none may clash with LogRecord.
SUMMARY_LOG_FIELDS = ("ok", "dry_run", "links", "writes_sentry", "writes_tracker", "failures", "conflicts",
                      "duration_seconds")


@dataclass
class LinkOutcome:
    """What happened to one link in one cycle."""

    sentry_id: str
    tracker_key: str
    actions: list[Action] = field(default_factory=list)
    writes_sentry: int = 0
    writes_tracker: int = 0
    error: str | None = None
    conflicts: list[str] = field(default_factory=list)
    unmapped: list[str] = field(default_factory=list)
    # Every remote write tried and its outcome (side, field, action, outcome): the metrics' source.
    journal: list[JournalEntry] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "sentry_id": self.sentry_id,
            "tracker_key": self.tracker_key,
            "actions": [describe_action(a) for a in self.actions],
            "writes": {"sentry": self.writes_sentry, "tracker": self.writes_tracker},
            "error": self.error,
            "conflicts": self.conflicts,
            "unmapped": self.unmapped,
        }


@dataclass
class CycleReport:
    dry_run: bool
    started: datetime
    finished: datetime | None = None
    cycle_id: int | None = None
    links: int = 0
    outcomes: list[LinkOutcome] = field(default_factory=list)
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

    @property
    def failures(self) -> list[LinkOutcome]:
        return [o for o in self.outcomes if o.error]

    @property
    def ok(self) -> bool:
        return self.fatal is None and self.refused is None and not self.failures and not self.create_failures

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
            "planned_writes": sum(1 for o in self.outcomes for a in o.actions if is_write(a)),
            "failures": len(self.failures),
            "conflicts": sum(len(o.conflicts) for o in self.outcomes),
            "unmapped": sum(len(o.unmapped) for o in self.outcomes),
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
        }

    def to_json(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "started": self.started.isoformat(timespec="seconds"),
            "finished": self.finished.isoformat(timespec="seconds") if self.finished else None,
            "links_detail": [o.to_json() for o in self.outcomes if o.actions or o.error],
            "created_detail": [{"sentry_id": sid, "tracker_key": key} for sid, key in self.created],
            "adopted_detail": [{"sentry_id": sid, "tracker_key": key} for sid, key in self.adopted],
            "would_create_detail": self.would_create,
            "create_failures_detail": self.create_failures,
        }


def describe_action(action: Action) -> dict[str, Any]:
    """A JSON-friendly description of a planned action (dry-run output, explain, journal)."""
    kind = type(action).__name__
    data: dict[str, Any] = {"action": kind, "field": action.field, "reason": action.reason}
    if isinstance(action, WriteTrackerStatus):
        data.update(side="tracker", value=action.target.status, resolution=action.target.resolution)
    elif isinstance(action, WriteTrackerAssignee):
        data.update(side="tracker", value=action.login)
    elif isinstance(action, (AddFollowers, RemoveFollowers)):
        data.update(side="tracker", value=sorted(action.logins))
    elif isinstance(action, WriteSentryStatus):
        data.update(side="sentry", value=action.state)
    elif isinstance(action, WriteSentryAssignee):
        data.update(side="sentry", value=action.email)
    elif isinstance(action, (Adopt, RecordConflict)):
        data.update(sentry=_shown(action.pair.sentry), tracker=_shown(action.pair.tracker))
    elif isinstance(action, ReportUnmapped):
        data.update(side=action.side, value=action.value)
    return data


def _shown(value: object) -> object:
    return sorted(value) if isinstance(value, frozenset) else value


def policy_from(settings: Settings) -> Policy:
    fields = settings.sync.fields
    return Policy(
        directions={"status": fields.status, "assignee": fields.assignee, "followers": fields.followers},
        conflict=settings.sync.conflict,
        link_source=settings.sync.link_source,
        status_table=settings.mapping.status,
    )


@dataclass
class _Applied:
    """What the writes of one link achieved so far (committed even when a later write fails)."""

    baselines: dict[Field, Pair] = field(default_factory=dict)
    owned_added: set[str] = field(default_factory=set)
    owned_removed: set[str] = field(default_factory=set)
    journal: list[JournalEntry] = field(default_factory=list)
    conflicts: dict[Field, Pair] = field(default_factory=dict)
    settled: set[str] = field(default_factory=set)

    def merge(self, other: _Applied) -> None:
        self.baselines.update(other.baselines)
        self.owned_added |= other.owned_added
        self.owned_removed |= other.owned_removed
        self.journal.extend(other.journal)
        self.conflicts.update(other.conflicts)
        self.settled |= other.settled


@dataclass
class _Work:
    """One link with something to do: what pass 1 read and planned."""

    link: Link
    s_issue: dict[str, Any]
    t_issue: dict[str, Any]
    marks: frozenset[str] | None
    baseline: Mapping[Field, Pair]
    owned: frozenset[str]
    actions: list[Action]
    open_conflicts: frozenset[str] = frozenset()


@dataclass
class _Batch:
    sentry: dict[str, dict[str, Any]]
    sentry_errors: dict[str, BridgeError]
    tracker: dict[str, dict[str, Any]]
    tracker_errors: dict[str, BridgeError]
    fetched: list[dict[str, Any]]


@dataclass
class _Tally:
    """How much of each side answered, to tell an outage from a few missing issues."""

    wanted: int = 0
    sentry_found: int = 0
    sentry_failed: int = 0
    tracker_found: int = 0
    tracker_failed: int = 0

    def add(self, wanted: int, batch: _Batch) -> None:
        self.wanted += wanted
        self.sentry_found += len(batch.sentry)
        self.sentry_failed += len(batch.sentry_errors)
        self.tracker_found += len(batch.tracker)
        self.tracker_failed += len(batch.tracker_errors)


class _Silent:
    def advance(self, n: int = 1) -> None:
        """No progress display."""


@contextmanager
def _no_progress(label: str, total: int) -> Iterator[_Silent]:
    yield _Silent()


@dataclass
class _LinkResult:
    outcome: LinkOutcome
    applied: _Applied
    owned: frozenset[str]
    now: Snapshot
    error: RemoteError | None
    tracker_seen: dict[str, Any] | None


class _WritePool:
    """Pass 2: links with writes run on `sync.concurrency` workers (HTTP only); each result is
    committed on the main thread, in one transaction per link, as it comes in."""

    def __init__(self, engine: Engine, report: CycleReport, users: UserMap) -> None:
        self._engine, self._report, self._users = engine, report, users
        self._pool: ThreadPoolExecutor | None = None
        self._running: dict[Future[_LinkResult | None], _Work] = {}

    def start(self, works: Sequence[_Work]) -> None:
        if not works:
            return  # most cycles write nothing: no threads for them
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._engine.settings.sync.concurrency,
                                            thread_name_prefix="write")
        for work in works:
            self._running[self._pool.submit(self._engine._run_link_unless_stopping, work, self._users)] = work

    def commit_done(self) -> None:
        """Commit the links whose writes have finished, without waiting for the others."""
        self._commit([f for f in self._running if f.done()])

    def drain(self) -> None:
        """Wait for every write started and commit it: a write that reached a server is never
        left without its baseline, whatever ended the cycle."""
        try:
            self._commit(as_completed(list(self._running)))
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def _commit(self, futures: Iterable[Future[_LinkResult | None]]) -> None:
        for future in futures:
            work = self._running.pop(future)
            result = future.result()
            if result is None:
                self._report.interrupted = True
                continue
            self._engine._finish(self._report, work, result)


def _describe_outcome(outcome: LinkOutcome, actions: list[Action]) -> None:
    outcome.actions = actions
    outcome.conflicts = [a.field for a in actions if isinstance(a, RecordConflict)]
    outcome.unmapped = [f"{a.field}:{a.side}:{a.value}" for a in actions if isinstance(a, ReportUnmapped)]


class Engine:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        sentry: SentryClient,
        tracker: TrackerClient,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self.settings = settings
        self.store = store
        self.sentry = sentry
        self.tracker = tracker
        self.clock = clock
        self.policy = policy_from(settings)
        self.workflows = WorkflowCache()
        # Set from a signal handler: the link in progress finishes, no new link starts.
        self.stop_requested = threading.Event()
        self._users: UserMap | None = None
        self._status_types: dict[str, str] | None = None
        # Long phases report here (a progress bar on a terminal); silent by default.
        self.progress: Callable[[str, int], AbstractContextManager[Any]] = _no_progress
        # Cycles since the last full read of Tracker (None: none yet, so the next one is full).
        self._since_full: int | None = None

    def _full_due(self) -> bool:
        """Full: read every linked Tracker issue.  Otherwise only those updated since the cursor.
        The first cycle of a process (every one-shot `sync`) and every `full_resync_every`-th is full."""
        if self._since_full is None or self.store.cursor(TRACKER_CURSOR) is None:
            return True
        return self._since_full + 1 >= self.settings.sync.full_resync_every

    def users(self, *, refresh: bool) -> UserMap:
        """Who is who; re-read on full cycles, kept in memory between them."""
        if refresh or self._users is None:
            self._users = self.load_users()
        return self._users

    # -- the cycle --------------------------------------------------------------------------
    def run_cycle(
        self, *, dry_run: bool = False, respect_backoff: bool = False, backfill: bool = False, force: bool = False,
        full: bool | None = None,
    ) -> CycleReport:
        """One full cycle: recover pending creates, sync every link, create issues for new
        Sentry issues, show Tracker keys on Sentry.  Never raises for a single link's trouble; a
        failure to learn the users (auth, outage) ends the cycle early as `report.fatal`."""
        report = CycleReport(dry_run=dry_run, started=self.clock())
        sentry_before, tracker_before = self.sentry.stats.total, self.tracker.stats.total
        started_cpu = time.process_time()
        if not dry_run:
            report.cycle_id = self.store.begin_cycle(dry_run, report.started)
        try:
            full = self._full_due() if full is None else full
            report.full = full
            self._cycle(report, dry_run=dry_run, respect_backoff=respect_backoff, backfill=backfill, force=force,
                        full=full)
            if not dry_run and not report.interrupted:
                self._since_full = 0 if full else (self._since_full or 0) + 1
        except RemoteError as exc:
            # A read the whole cycle depends on failed (auth, outage, a malformed member list):
            # the cycle ends here, recorded; the next one is the retry.
            report.fatal = exc
            log.error("cycle aborted: %s", exc.describe(), extra={"event": "cycle.aborted"})
        except BaseException:
            # A bug or a kill: still close the cycle's row, so `status` never shows it running.
            report.finished = self.clock()
            if report.cycle_id is not None:
                self.store.finish_cycle(report.cycle_id, {**report.summary(), "ok": False}, report.finished)
            raise
        report.finished = self.clock()
        report.requests = {
            "sentry": self.sentry.stats.total - sentry_before,
            "tracker": self.tracker.stats.total - tracker_before,
        }
        summary = report.summary()
        if report.cycle_id is not None:
            self.store.finish_cycle(report.cycle_id, summary, report.finished)
        log.info(
            "cycle %s: %d links, writes sentry=%d tracker=%d, %d failed, %d conflicts, %.2fs (cpu %.2fs)",
            "planned" if dry_run else "done",
            summary["links"], summary["writes_sentry"], summary["writes_tracker"], summary["failures"],
            summary["conflicts"], summary["duration_seconds"] or 0.0, time.process_time() - started_cpu,
            extra={"event": "cycle.summary", **{k: summary[k] for k in SUMMARY_LOG_FIELDS}},
        )
        return report

    def _cycle(
        self, report: CycleReport, *, dry_run: bool, respect_backoff: bool, backfill: bool, force: bool,
        full: bool,
    ) -> None:
        creating = self.settings.create.enabled or backfill
        if not dry_run:
            self._recover_intents(report)
        links = self.store.links()
        report.links = len(links)
        if not links and not creating:
            return
        users = self.users(refresh=full)
        bookmarks = self._fetch_bookmarks(users) if self.policy.allows("followers", "tracker") else None
        waiting = self.store.not_due(self.clock()) if respect_backoff else set()
        held = self.store.quarantined()
        active = [link for link in links if link.sentry_id not in waiting and link.sentry_id not in held]
        # A full read sees everything as of now: the next incremental poll starts here (the
        # overlap window absorbs clock skew between us and Tracker).
        updates, cursor = ({}, report.started.isoformat()) if full else self._tracker_updates(links)
        guard = MassChangeGuard(self.settings.sync.mass_change_limit(len(links)), len(active), force=force)
        missing = self._sync_links(report, active, users, bookmarks, updates, guard, full=full, dry_run=dry_run)
        if report.interrupted:
            log.info("stop requested: links not read or not started are left for the next run",
                     extra={"event": "cycle.interrupted"})
        if report.refused or report.interrupted:
            return
        for link, error in missing:
            self._fail(report, self._outcome(report, link), link, error, dry_run)
        if dry_run:
            return
        if cursor is not None:
            self.store.set_cursor(TRACKER_CURSOR, cursor, self.clock())
        if creating and not self.stop_requested.is_set():
            self._create_new(report, users, bookmarks, backfill=backfill, dry_run=dry_run)
        if self.settings.sentry.app_installation and not self.stop_requested.is_set():
            self._backlink(report)

    def _outcome(self, report: CycleReport, link: Link) -> LinkOutcome:
        outcome = LinkOutcome(link.sentry_id, link.tracker_key)
        report.outcomes.append(outcome)
        return outcome

    def _sync_links(
        self, report: CycleReport, active: Sequence[Link], users: UserMap,
        bookmarks: Mapping[str, frozenset[str]] | None, updates: Mapping[str, dict[str, Any]],
        guard: MassChangeGuard, *, full: bool, dry_run: bool,
    ) -> list[tuple[Link, BridgeError]]:
        """Read both sides in batches, plan every link, write.  Links with nothing to write are
        committed as they are planned, so memory follows the changes, not N.  Links with writes
        wait for the mass-change guard; once it can no longer be crossed they run on
        `sync.concurrency` workers while later batches are still being read, so a rate-limited
        read and rate-limited writes overlap.  Returns the links one side could not show."""
        missing: list[tuple[Link, BridgeError]] = []
        held: list[_Work] = []
        tally = _Tally()
        flaps = {} if dry_run else self.store.cycles_writing(self.settings.sync.flap_window_cycles)
        writes = _WritePool(self, report, users)
        try:
            with self.progress("reading linked issues", len(active)) as bar:
                for chunk, batch in self._read_batches(active, updates, full=full, remember=not dry_run):
                    bar.advance(len(chunk))
                    tally.add(len(chunk), batch)
                    works = self._plan_batch(chunk, batch, users, bookmarks, missing, dry_run=dry_run)
                    guard.planned(len(chunk), self._hold_writes(report, works, users, held, dry_run=dry_run))
                    if guard.releasable and held and not dry_run:
                        writes.start(self._unless_flapping(report, held, flaps))
                        held = []
                    writes.commit_done()
                    if self.stop_requested.is_set():
                        report.interrupted = True
                        return missing
            _refuse_empty_side("sentry", tally.wanted, tally.sentry_found, tally.sentry_failed)
            _refuse_empty_side("tracker", tally.wanted, tally.tracker_found, tally.tracker_failed)
            if guard.refused:
                report.refused = (f"{guard.changing} links would be changed this cycle, more than the limit of "
                                  f"{guard.limit} (sync.max_changes_per_cycle); check with `sync --dry-run`, "
                                  "then run `sync --force`")
                log.error("refused: %s", report.refused, extra={"event": "cycle.refused"})
                return missing
            if dry_run:
                for work in held:
                    _describe_outcome(self._outcome(report, work.link), work.actions)
                return missing
            writes.start(self._unless_flapping(report, held, flaps))
        finally:
            writes.drain()
        return missing

    def _hold_writes(
        self, report: CycleReport, works: Sequence[_Work], users: UserMap, held: list[_Work], *, dry_run: bool
    ) -> int:
        """Links with writes go to `held` for the guard (their count is returned); the rest
        (adopt, conflict, unmapped) are committed now, or only described in a dry run."""
        changing = 0
        for work in works:
            if any(is_write(a) for a in work.actions):
                held.append(work)
                changing += 1
            elif dry_run:
                _describe_outcome(self._outcome(report, work.link), work.actions)
            else:
                self._finish(report, work, self._run_link(work, users))
        return changing

    def _plan_batch(
        self, chunk: list[Link], batch: _Batch, users: UserMap, bookmarks: Mapping[str, frozenset[str]] | None,
        missing: list[tuple[Link, BridgeError]], *, dry_run: bool,
    ) -> list[_Work]:
        ids = [link.sentry_id for link in chunk]
        baselines = self.store.baselines_for(ids)
        owned = self.store.owned_followers_for(ids)
        failing = self.store.failing(ids)
        conflicted = self.store.conflicted_fields(ids)
        works: list[_Work] = []
        for link in chunk:
            error = batch.sentry_errors.get(link.sentry_id) or batch.tracker_errors.get(link.tracker_key)
            s_issue, t_issue = batch.sentry.get(link.sentry_id), batch.tracker.get(link.tracker_key)
            if error is None and s_issue is None:
                error = NotFoundError(
                    f"issue {link.sentry_id} not found (deleted, merged, or not visible to the token)",
                    service="sentry",
                )
            if error is None and t_issue is None:
                error = NotFoundError(f"issue {link.tracker_key} not found", service="tracker")
            if error is not None or s_issue is None or t_issue is None:
                missing.append((link, error or NotFoundError("not found", service="sentry")))
                continue
            marks = self._bookmarks_of(link.sentry_id, s_issue, bookmarks)
            base = baselines.get(link.sentry_id, {})
            own = owned.get(link.sentry_id, frozenset())
            open_fields = conflicted.get(link.sentry_id, frozenset())
            actions = plan_link(base, self.snapshot(s_issue, t_issue, marks, users), own, users, self.policy,
                                open_fields)
            if actions:
                works.append(_Work(link, _slim_sentry(s_issue), slim_tracker(t_issue), marks, base, own, actions,
                                   open_fields))
            elif link.sentry_id in failing and not dry_run:
                self.store.clear_failure(link.sentry_id)  # readable again and nothing to do: recovered
        return works

    def _read_batches(
        self, links: Sequence[Link], updates: Mapping[str, dict[str, Any]], *, full: bool, remember: bool
    ) -> Iterator[tuple[list[Link], _Batch]]:
        """Batches of 100 links with both sides read, up to `sync.concurrency` batches in flight.
        Worker threads do HTTP only; the store is read and written here, on the main thread."""
        chunks = [list(links[i : i + BATCH]) for i in range(0, len(links), BATCH)]
        if not chunks:
            return
        width = self.settings.sync.concurrency
        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="read") as pool:
            pending: deque[tuple[list[Link], Future[_Batch]]] = deque()
            for chunk in chunks:
                known: dict[str, dict[str, Any]] = {}
                if not full:
                    keys = [link.tracker_key for link in chunk]
                    known = self.store.cached_tracker(keys)
                    known.update({key: updates[key] for key in keys if key in updates})
                pending.append((chunk, pool.submit(self._read_batch, chunk, known, full)))
                if len(pending) >= width:
                    yield self._take(pending, remember)
            while pending:
                yield self._take(pending, remember)

    def _take(
        self, pending: deque[tuple[list[Link], Future[_Batch]]], remember: bool
    ) -> tuple[list[Link], _Batch]:
        chunk, future = pending.popleft()
        batch = future.result()
        if batch.fetched and remember:  # a dry run writes nothing, not even this cache
            self.store.cache_tracker(batch.fetched, self.clock())
        return chunk, batch

    def _read_batch(self, chunk: list[Link], known: Mapping[str, dict[str, Any]], full: bool) -> _Batch:
        s_map, s_err = self._fetch_sentry([link.sentry_id for link in chunk])
        keys = [link.tracker_key for link in chunk]
        if full:
            t_map, t_err = self._fetch_tracker(keys)
            return _Batch(s_map, s_err, t_map, t_err, list({v["key"]: v for v in t_map.values()}.values()))
        t_map = {key: known[key] for key in keys if key in known}
        unseen = [key for key in keys if key not in t_map]
        if not unseen:
            return _Batch(s_map, s_err, t_map, {}, [])
        # Linked since the last full read (or never cached): read those now.
        extra, t_err = self._fetch_tracker(unseen)
        t_map.update(extra)
        return _Batch(s_map, s_err, t_map, t_err, list(extra.values()))

    def _tracker_updates(self, links: Sequence[Link]) -> tuple[dict[str, dict[str, Any]], str | None]:
        """Tracker issues of the linked queues updated since the cursor minus the overlap window
        (an update stamped exactly at the cursor, or a clock a little off, is still caught).
        Returns the linked ones by key (and old key, after a move) and the next cursor."""
        started = self.clock()
        since = parse_sentry_time(self.store.cursor(TRACKER_CURSOR)) or started
        since -= timedelta(seconds=self.settings.sync.overlap_seconds)
        linked = {link.tracker_key for link in links}
        queues = sorted({key.rsplit("-", 1)[0] for key in linked} | {self.settings.tracker.queue})
        found: dict[str, dict[str, Any]] = {}
        newest: datetime | None = None
        flt = {"queue": queues, "updatedAt": {"from": since.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S")}}
        for issue in self.tracker.iter_search(filter=flt):
            stamp = _parse_tracker_time(issue.get("updatedAt"))
            if stamp is not None and (newest is None or stamp > newest):
                newest = stamp
            for key in (issue.get("key"), *(issue.get("aliases") or [])):
                if key in linked:
                    found[str(key)] = issue
        self.store.cache_tracker(found.values(), self.clock())
        # Everything up to this cycle's start has been seen; an update stamped later (or a little
        # earlier, by a clock behind ours) falls inside the next poll's overlap window.
        cursor = max(started, newest) if newest is not None else started
        return found, cursor.isoformat()

    def _run_link_unless_stopping(self, work: _Work, users: UserMap) -> _LinkResult | None:
        if self.stop_requested.is_set():
            return None
        return self._run_link(work, users)

    def _unless_flapping(
        self, report: CycleReport, works: Sequence[_Work], flaps: Mapping[str, int]
    ) -> list[_Work]:
        """Quarantine links the bridge keeps rewriting (flapping) instead of writing them again;
        `flaps` counts the cycles before this one, so the cycle's own writes never count."""
        window, limit = self.settings.sync.flap_window_cycles, self.settings.sync.flap_limit
        kept: list[_Work] = []
        for work in works:
            link = work.link
            if flaps.get(link.sentry_id, 0) < limit:
                kept.append(work)
                continue
            detail = (f"written in {flaps[link.sentry_id]} of the last {window} cycles; held back until "
                      "resolved (`conflicts`)")
            self.store.quarantine(link.sentry_id, link.tracker_key, detail, self.clock())
            report.quarantined.append(link.sentry_id)
            log.error("quarantined %s <-> %s: %s", link.sentry_id, link.tracker_key, detail,
                      extra={"event": "link.quarantined", "link": link.sentry_id})
        return kept

    # -- reading ----------------------------------------------------------------------------
    def load_users(self) -> UserMap:
        members = self.sentry.list_members()
        tracker_users = self.tracker.list_users()
        return build_user_map(members, tracker_users, self.settings.mapping.users)

    def _fetch_sentry(self, ids: Sequence[str]) -> tuple[dict[str, dict[str, Any]], dict[str, BridgeError]]:
        return self._fetch(ids, self.sentry.get_issues, self.sentry.get_issue, "id")

    def _fetch_tracker(self, keys: Sequence[str]) -> tuple[dict[str, dict[str, Any]], dict[str, BridgeError]]:
        return self._fetch(keys, self.tracker.get_issues, self.tracker.get_issue, "key")

    def _fetch(
        self,
        refs: Sequence[str],
        many: Callable[[list[str]], list[dict[str, Any]]],
        one: Callable[[str], dict[str, Any]],
        id_field: str,
    ) -> tuple[dict[str, dict[str, Any]], dict[str, BridgeError]]:
        """Read issues in batches.  A batch that fails is unknown this cycle, never "gone"; a
        batch that comes back malformed is read again one issue at a time, so only the issue
        that is really malformed fails its link."""
        issues: dict[str, dict[str, Any]] = {}
        errors: dict[str, BridgeError] = {}
        wanted = set(refs)

        def keep(issue: dict[str, Any]) -> None:
            issues[str(issue[id_field])] = issue
            for alias in issue.get("aliases") or []:
                if alias in wanted:
                    issues[str(alias)] = issue  # a Tracker issue moved queues: its old key still links

        for chunk in _chunks(refs, BATCH):
            try:
                for issue in many(chunk):
                    keep(issue)
            except (AuthError, UnreachableError):
                raise  # the side refuses us or cannot be reached: nothing more to learn
            except MalformedItemError as exc:
                if len(chunk) == 1:
                    errors[chunk[0]] = exc
                    continue
                log.warning("a batch answer had a malformed issue; reading its issues one by one: %s",
                            exc.describe(), extra={"event": "batch.malformed"})
                for ref in chunk:
                    try:
                        keep(one(ref))
                    except NotFoundError:
                        pass  # absent, as it would have been from the batch
                    except (AuthError, UnreachableError):
                        raise
                    except RemoteError as single:
                        errors[ref] = single
            except RemoteError as exc:
                errors.update({ref: exc for ref in chunk})
        return issues, errors

    def _fetch_bookmarks(self, users: UserMap) -> dict[str, frozenset[str]] | None:
        """issue id -> e-mails of mapped people who bookmarked it; None when any search failed."""
        found: dict[str, set[str]] = {}
        for person in users.mapped_people():
            try:
                ids = self.sentry.bookmarked_issue_ids(person.email)
            except RemoteError as exc:
                log.warning("bookmarks unknown this cycle: %s", exc.describe(), extra={"event": "bookmarks.unknown"})
                return None
            for issue_id in ids:
                found.setdefault(issue_id, set()).add(person.email)
        return {key: frozenset(value) for key, value in found.items()}

    def _bookmarks_of(
        self, sentry_id: str, issue: Mapping[str, Any], bookmarks: Mapping[str, frozenset[str]] | None
    ) -> frozenset[str] | None:
        if bookmarks is None:
            return None
        if outside_search_window(issue, self.clock()):
            return None  # the search cannot see it, so we do not know
        return bookmarks.get(sentry_id, frozenset())

    # -- one link ---------------------------------------------------------------------------
    def snapshot(
        self, s_issue: Mapping[str, Any], t_issue: Mapping[str, Any], marks: frozenset[str] | None, users: UserMap
    ) -> Snapshot:
        return Snapshot(
            status=Pair(sentry_state(s_issue), tracker_status(t_issue)),
            assignee=Pair(sentry_assignee(s_issue), tracker_assignee(t_issue, users)),
            followers=Pair(marks, tracker_followers(t_issue, users)),
        )

    def sync_link(
        self,
        report: CycleReport,
        outcome: LinkOutcome,
        link: Link,
        s_issue: dict[str, Any],
        t_issue: dict[str, Any],
        marks: frozenset[str] | None,
        users: UserMap,
        baseline: Mapping[Field, Pair],
        owned: frozenset[str],
        *,
        dry_run: bool,
    ) -> None:
        """Plan and run one link now, on this thread (creation, operator commands)."""
        actions = plan_link(baseline, self.snapshot(s_issue, t_issue, marks, users), owned, users, self.policy)
        work = _Work(link, s_issue, t_issue, marks, dict(baseline), owned, actions)
        if dry_run:
            _describe_outcome(outcome, actions)
            return
        self._finish(report, work, self._run_link(work, users, outcome), append=False)

    def _run_link(self, work: _Work, users: UserMap, outcome: LinkOutcome | None = None) -> _LinkResult:
        """Run one link's writes (HTTP only: safe on a worker thread).  A version conflict means
        a person changed the Tracker issue meanwhile: re-read both sides and plan once more."""
        link = work.link
        outcome = outcome or LinkOutcome(link.sentry_id, link.tracker_key)
        baseline, owned = dict(work.baseline), work.owned
        s_issue, t_issue = work.s_issue, work.t_issue
        total = _Applied()
        actions = work.actions
        now = self.snapshot(s_issue, t_issue, work.marks, users)
        for attempt in (1, 2):
            if attempt == 2:
                now = self.snapshot(s_issue, t_issue, work.marks, users)
                actions = plan_link(baseline, now, owned, users, self.policy, work.open_conflicts)
            _describe_outcome(outcome, actions)
            step = _Applied()
            error: RemoteError | None = None
            seen: dict[str, Any] | None = None
            try:
                seen = self._execute(link, actions, now, s_issue, t_issue, users, step, outcome)
            except RemoteError as exc:
                error = exc
            total.merge(step)
            if not (isinstance(error, ConflictError) and attempt == 1):
                return _LinkResult(outcome, total, work.owned, now, error, seen)
            log.info("version conflict on %s; re-reading", link.tracker_key,
                     extra={"event": "link.conflict_retry", "link": link.sentry_id})
            baseline.update(step.baselines)
            owned = (owned | step.owned_added) - step.owned_removed
            try:
                s_issue = self.sentry.get_issue(link.sentry_id)
                t_issue = self.tracker.get_issue(link.tracker_key)
            except RemoteError as exc:
                return _LinkResult(outcome, total, work.owned, now, exc, None)
        return _LinkResult(outcome, total, work.owned, now, None, None)

    def _finish(self, report: CycleReport, work: _Work, result: _LinkResult, *, append: bool = True) -> None:
        """Main thread: commit one link's result in one transaction, remember what Tracker showed."""
        result.outcome.journal.extend(result.applied.journal)
        outcome = result.outcome
        if append and (result.error or outcome.writes_sentry or outcome.writes_tracker or outcome.journal):
            # Links that only adopted baselines are counted, not kept: a first sync of 100,000
            # links must not hold 100,000 outcomes.
            report.outcomes.append(outcome)
        elif append:
            report.quiet += 1
        self._commit(work.link, result.applied, result.owned, result.now, report,
                     clear_failure=result.error is None)
        if result.tracker_seen is not None:
            self.store.cache_tracker([result.tracker_seen], self.clock())
        if result.error is not None:
            self._fail(report, result.outcome, work.link, result.error, False)

    def _execute(
        self,
        link: Link,
        actions: Iterable[Action],
        now: Snapshot,
        s_issue: dict[str, Any],
        t_issue: dict[str, Any],
        users: UserMap,
        applied: _Applied,
        outcome: LinkOutcome,
    ) -> dict[str, Any]:
        """Run the writes in order; each success moves that field's baseline to what the server
        answered.  The first failure stops the link (the rest waits for the next cycle).
        Returns the Tracker issue as last seen."""
        t_cur, s_cur = t_issue, s_issue
        actions = list(actions)
        for index, action in enumerate(actions):
            if isinstance(action, Adopt):
                applied.baselines[action.field] = action.pair
                applied.settled.add(action.field)
                continue
            if isinstance(action, RecordConflict):
                applied.conflicts[action.field] = action.pair
                applied.journal.append(JournalEntry("both", action.field, "conflict", "", "recorded", action.reason))
                log.warning("conflict on %s %s: %s", link.sentry_id, action.field, action.reason,
                            extra={"event": "link.conflict", "link": link.sentry_id, "field": action.field})
                continue
            if isinstance(action, ReportUnmapped):
                applied.journal.append(
                    JournalEntry(action.side, action.field, "unmapped", action.value, "skipped", action.reason)
                )
                log.warning("not synced, %s", action.reason,
                            extra={"event": "link.unmapped", "link": link.sentry_id, "field": action.field})
                continue
            desc = describe_action(action)
            entry_value = str(desc.get("value"))
            try:
                if isinstance(action, WriteTrackerStatus):
                    outcome.writes_tracker += self.move_tracker_status(t_cur, action.target)
                    if any(isinstance(a, (WriteTrackerAssignee, AddFollowers, RemoveFollowers))
                           for a in actions[index + 1 :]):
                        t_cur = self.tracker.get_issue(link.tracker_key)  # the next PATCH needs the version
                        if (tracker_assignee(t_cur, users), tracker_followers(t_cur, users)) != (
                                now.assignee.tracker, now.followers.tracker):
                            # A person edited the issue since we read it: the fresh version would
                            # let the planned PATCH overwrite that edit, so plan again instead.
                            raise ConflictError("changed meanwhile (seen after a transition)",
                                                service="tracker", endpoint=f"GET {link.tracker_key}")
                    else:
                        # The transition's 200 is the server's word: one request per status change.
                        t_cur = {**t_cur, "status": {"key": action.target.status}}
                    applied.baselines["status"] = Pair(now.status.sentry, tracker_status(t_cur))
                elif isinstance(action, WriteTrackerAssignee):
                    t_cur = self.tracker.set_assignee(link.tracker_key, action.login, version=int(t_cur["version"]))
                    outcome.writes_tracker += 1
                    applied.baselines["assignee"] = Pair(now.assignee.sentry, tracker_assignee(t_cur, users))
                elif isinstance(action, (AddFollowers, RemoveFollowers)):
                    logins = sorted(action.logins)
                    if isinstance(action, AddFollowers):
                        t_cur = self.tracker.add_followers(link.tracker_key, logins, version=int(t_cur["version"]))
                        applied.owned_added |= action.logins
                    else:
                        t_cur = self.tracker.remove_followers(link.tracker_key, logins, version=int(t_cur["version"]))
                        applied.owned_removed |= action.logins
                    outcome.writes_tracker += 1
                    if not any(isinstance(a, (AddFollowers, RemoveFollowers)) for a in actions[index + 1 :]):
                        # Only once the last follower write landed: a failed removal after a
                        # successful add must be planned (and tried) again.
                        applied.baselines["followers"] = Pair(now.followers.sentry,
                                                              tracker_followers(t_cur, users))
                elif isinstance(action, WriteSentryStatus):
                    s_cur = self.sentry.set_status(link.sentry_id, action.state)
                    outcome.writes_sentry += 1
                    applied.baselines["status"] = Pair(sentry_state(s_cur), now.status.tracker)
                elif isinstance(action, WriteSentryAssignee):
                    s_cur = self.sentry.set_assignee(link.sentry_id, action.user_id)
                    outcome.writes_sentry += 1
                    applied.baselines["assignee"] = Pair(sentry_assignee(s_cur), now.assignee.tracker)
            except RemoteError as exc:
                applied.journal.append(
                    JournalEntry(desc.get("side", ""), action.field, type(action).__name__, entry_value, "failed",
                                 exc.describe())
                )
                raise
            applied.settled.add(action.field)
            applied.journal.append(
                JournalEntry(desc.get("side", ""), action.field, type(action).__name__, entry_value, "ok",
                             action.reason)
            )
            log.info("%s %s %s -> %s", link.sentry_id, action.field, desc.get("side"), entry_value,
                     extra={"event": "link.write", "link": link.sentry_id, "side": desc.get("side"),
                            "field": action.field, "outcome": "ok"})
        return t_cur

    def move_tracker_status(self, issue: Mapping[str, Any], target: TrackerTarget) -> int:
        """Walk the workflow to `target.status`; returns the number of transitions executed.

        Known transitions come from the cache; a stale cache (the transition is refused) costs
        one fresh list and one more try, never a wrong status."""
        key = str(issue["key"])
        queue = str((issue.get("queue") or {}).get("key") or key.split("-")[0])
        itype = str((issue.get("type") or {}).get("key") or "")
        current = tracker_status(issue)
        visited = {current}
        executed = 0
        while current != target.status:
            if executed >= MAX_TRANSITION_STEPS:
                raise RejectedError(f"no path from {current} to {target.status} within {executed} steps",
                                    service="tracker", endpoint=f"transitions of {key}")
            from_cache = self.workflows.get(queue, itype, current) is not None
            if not from_cache:
                self.workflows.learn(queue, itype, current, parse_transitions(self.tracker.transitions(key)))
            step = next_transition(self.workflows.graph(queue, itype), current, target.status, visited)
            if step is None:
                raise RejectedError(f"the workflow offers no way from {current} to {target.status}",
                                    service="tracker", endpoint=f"transitions of {key}")
            resolution = self._resolution_for(step.to, target)
            try:
                after = self._execute_step(key, step.id, step.to, resolution)
            except (RejectedError, ConflictError, NotFoundError):
                if not from_cache:
                    raise
                # The cached list was stale (workflow edited, or the status moved): relearn once.
                self.workflows.forget(queue, itype, current)
                self.workflows.learn(queue, itype, current, parse_transitions(self.tracker.transitions(key)))
                step = next_transition(self.workflows.graph(queue, itype), current, target.status, visited)
                if step is None:
                    raise
                resolution = self._resolution_for(step.to, target)
                after = self._execute_step(key, step.id, step.to, resolution)
            executed += 1
            current = step.to
            visited.add(current)
            if after is not None:
                self.workflows.learn(queue, itype, current, parse_transitions(after))
        return executed

    def _resolution_for(self, status: str, target: TrackerTarget) -> str | None:
        """The target's resolution on the last step, and on any step through a done-type status
        on the way (Tracker requires one to enter it, e.g. open -> resolved -> closed)."""
        if status == target.status:
            return target.resolution
        if self._status_types is None:
            types: dict[str, str] = {}
            try:
                for item in self.tracker.statuses():
                    types[str(item.get("key"))] = str(item.get("type") or "")
            except RemoteError as exc:
                log.warning("cannot read Tracker status types: %s", exc.describe(), extra={"event": "statuses"})
            self._status_types = types
        return target.resolution if self._status_types.get(status) in ("done", "cancelled") else None

    def _execute_step(
        self, key: str, transition_id: str, to: str, resolution: str | None
    ) -> list[dict[str, Any]] | None:
        """Execute one transition.  Transitions are not idempotent, so an ambiguous failure
        (timeout, 5xx) is never retried blindly: the issue is read back, and a transition that
        landed counts as done (None: the answer, the next status's transitions, was lost)."""
        try:
            return self.tracker.execute_transition(key, transition_id, resolution=resolution)
        except TransientError:
            try:
                landed = tracker_status(self.tracker.get_issue(key)) == to
            except RemoteError:
                landed = False
            if not landed:
                raise
            log.info("transition %s of %s timed out but landed", transition_id, key,
                     extra={"event": "write.ambiguous_landed", "side": "tracker", "field": "status"})
            return None

    # -- creating issues exactly once -------------------------------------------------------
    def _unique(self, sentry_id: str) -> str:
        return unique_key(self.settings.sentry.organization, sentry_id)

    def _recover_intents(self, report: CycleReport) -> None:
        """First thing in every cycle: an intent still pending means a run stopped between
        journalling a create and linking its result.  If Tracker has the issue (found by our
        `unique`), link it; otherwise the create never landed and is tried again below."""
        for row in self.store.intents("pending"):
            try:
                found = self.tracker.find_by_unique(row["unique_key"])
            except RemoteError as exc:
                log.warning("cannot check pending create of %s: %s", row["sentry_id"], exc.describe(),
                            extra={"event": "intent.unknown", "link": row["sentry_id"]})
                continue
            if found is not None:
                self.store.complete_intent(row["sentry_id"], str(found["key"]), "created", now=self.clock())
                report.recovered += 1
                log.info("recovered pending create: %s -> %s", row["sentry_id"], found["key"],
                         extra={"event": "intent.recovered", "link": row["sentry_id"]})

    def _create_candidates(
        self, backfill: bool, dry_run: bool
    ) -> tuple[list[dict[str, Any]], datetime | None]:
        """Sentry issues that need a Tracker issue, oldest first: pending intents, then issues
        matching `create.query` first seen after the watermark (all of them with backfill).
        Also the newest first-seen time listed (where the watermark may move when none waits)."""
        cfg = self.settings.create
        known = self.store.known_sentry_ids()
        pending = [row["sentry_id"] for row in self.store.intents("pending")]
        candidates: dict[str, dict[str, Any]] = {}
        if pending:
            for issue in self.sentry.get_issues(pending):
                candidates[str(issue["id"])] = issue
        watermark = self.store.cursor(CREATE_CURSOR)
        newest_listed: datetime | None = None
        if watermark is None and not backfill:
            # Creation was just switched on: only issues from now on, existing ones need --backfill.
            # "Now" is Sentry's newest first-seen time, not our clock (no skew to worry about).
            newest = next(iter(self.sentry.iter_issues(cfg.query, sort="new", per_page=1)), None)
            mark = parse_sentry_time(newest.get("firstSeen")) if newest else None
            if not dry_run:
                self.store.set_cursor(CREATE_CURSOR, (mark or self.clock()).isoformat())
                # Issue ids only grow: everything up to this one existed before creation was on.
                self.store.set_cursor(CREATE_FLOOR, str(newest["id"]) if newest else "0")
            return list(candidates.values()), None
        floor = int(self.store.cursor(CREATE_FLOOR) or 0)
        projects = set(self.settings.sentry.projects)
        since = parse_sentry_time(watermark) if watermark and not backfill else None
        for issue in self.sentry.iter_issues(cfg.query, sort="new"):
            first_seen = parse_sentry_time(issue.get("firstSeen"))
            if since is not None and first_seen is not None and first_seen < since:
                break  # sorted by first seen, newest first: everything further is older
            if first_seen is not None and (newest_listed is None or first_seen > newest_listed):
                newest_listed = first_seen
            slug = str((issue.get("project") or {}).get("slug") or "")
            if projects and slug not in projects:
                continue
            if not backfill and int(str(issue["id"])) <= floor:
                continue  # existed before creation was switched on: only --backfill creates it
            if str(issue["id"]) not in known:
                candidates.setdefault(str(issue["id"]), issue)
        ordered = sorted(candidates.values(), key=lambda i: (str(i.get("firstSeen") or ""), int(str(i["id"]))))
        return ordered, newest_listed

    def _create_new(
        self, report: CycleReport, users: UserMap, bookmarks: Mapping[str, frozenset[str]] | None,
        *, backfill: bool, dry_run: bool,
    ) -> None:
        cap = self.settings.create.max_per_cycle
        candidates, newest_listed = self._create_candidates(backfill, dry_run)
        batch, report.deferred = candidates[:cap], max(0, len(candidates) - cap)
        if report.deferred:
            log.warning("create.max_per_cycle = %d: %d more Sentry issues wait for the next cycle",
                        cap, report.deferred, extra={"event": "create.deferred"})
        handled_first_seen: str | None = None
        with self.progress("creating Tracker issues", len(batch)) as bar:
            for issue in batch:
                if self.stop_requested.is_set():
                    report.interrupted = True
                    break
                sid = str(issue["id"])
                bar.advance()
                if dry_run:
                    report.would_create.append(sid)
                    continue
                marks = self._bookmarks_of(sid, issue, bookmarks)
                self.create_one(report, issue, users, marks)
                handled_first_seen = str(issue.get("firstSeen") or "") or handled_first_seen
        # Move the watermark over everything listed when nothing waits (created, or known and
        # linked), else only over what was handled: deferred issues stay ahead of it.
        handled = newest_listed if not report.deferred and not report.interrupted else (
            parse_sentry_time(handled_first_seen))
        if handled is not None and not dry_run and not backfill:
            current = parse_sentry_time(self.store.cursor(CREATE_CURSOR))
            if current is None or handled > current:
                self.store.set_cursor(CREATE_CURSOR, handled.isoformat(), self.clock())

    def create_one(
        self, report: CycleReport, issue: dict[str, Any], users: UserMap, marks: frozenset[str] | None
    ) -> None:
        """Journal the intent, create with `unique` (a repeat answers 409: the existing issue is
        found and linked instead), link, then sync the new pair once so its baselines exist."""
        cfg = self.settings.create
        sid = str(issue["id"])
        queue = route_queue(issue, cfg, self.settings.tracker.queue)
        fields = issue_fields(issue, cfg, queue, users, marks)
        try:
            existing = self._find_referencing(sid, queue)
            if existing is not None:
                t_issue, created = existing, False
            else:
                self.store.add_intent(sid, self._unique(sid), queue, self.clock())
                t_issue, created = self.tracker.create_issue(fields, unique=self._unique(sid))
        except RemoteError as exc:
            text = exc.describe()
            report.create_failures[sid] = text
            self.store.intent_error(sid, text)
            log.warning("cannot create a Tracker issue for %s: %s", sid, text,
                        extra={"event": "create.failed", "link": sid, "outcome": "failed"})
            return
        key = str(t_issue["key"])
        owned = frozenset(fields.get("followers", [])) if created else frozenset()
        self.store.complete_intent(sid, key, "created" if created else "adopted", owned, self.clock())
        (report.created if created else report.adopted).append((sid, key))
        log.info("%s Tracker issue %s for Sentry issue %s", "created" if created else "adopted", key, sid,
                 extra={"event": "create.ok" if created else "create.adopted", "link": sid, "outcome": "ok"})
        link = Link(sid, key, "created" if created else "adopted", "")
        outcome = LinkOutcome(sid, key, writes_tracker=1 if created else 0)
        report.outcomes.append(outcome)
        self.sync_link(report, outcome, link, issue, t_issue, marks, users, {}, owned, dry_run=False)

    def _find_referencing(self, sentry_id: str, queue: str) -> dict[str, Any] | None:
        """A Tracker issue that already names this Sentry issue, in `create.reference_field` or
        by `create.reference_tag`."""
        cfg = self.settings.create
        filters = []
        if cfg.reference_field:
            filters.append({"queue": queue, cfg.reference_field: sentry_id})
        if cfg.reference_tag:
            filters.append({"queue": queue, "tags": reference_tag(cfg.reference_tag, sentry_id)})
        for flt in filters:
            for issue in self.tracker.iter_search(filter=flt):
                return issue
        return None

    def _backlink(self, report: CycleReport) -> None:
        """Show the Tracker key on each linked Sentry issue (an external issue of our Sentry app)."""
        installation = self.settings.sentry.app_installation or ""
        web = self.settings.tracker.web_url.rstrip("/")
        for link in self.store.unbacklinked():
            if self.stop_requested.is_set():
                return
            try:
                self.sentry.upsert_external_issue(
                    installation, link.sentry_id, web_url=f"{web}/{link.tracker_key}",
                    project=link.tracker_key.rsplit("-", 1)[0], identifier=link.tracker_key,
                )
            except RemoteError as exc:
                log.warning("cannot show %s on Sentry issue %s: %s", link.tracker_key, link.sentry_id,
                            exc.describe(), extra={"event": "backlink.failed", "link": link.sentry_id})
                continue
            self.store.mark_backlinked(link.sentry_id)
            report.backlinked += 1

    # -- relink: rebuild lost state from both sides ------------------------------------------
    def relink(self) -> dict[str, Any]:
        """Rebuild links and baselines from what both sides show, writing nothing remote.

        Links come from Tracker issues that carry our `unique` (or `create.reference_field`);
        each field's baseline becomes what the two sides hold now, so the next sync writes
        nothing.  Fields that disagree are recorded as conflicts for the operator.  Followers
        the bridge added before cannot be told from hand-added ones any more, so none are owned."""
        org = self.settings.sentry.organization
        field_key = self.settings.create.reference_field
        queues = sorted({self.settings.tracker.queue, *self.settings.create.routes.values()})
        found: dict[str, dict[str, Any]] = {}
        duplicates: list[str] = []
        scanned = 0
        for queue in queues:
            for t_issue in self.tracker.iter_search(queue=queue):
                scanned += 1
                sid = sentry_id_from_unique(org, t_issue.get("unique"))
                if sid is None and field_key and str(t_issue.get(field_key) or "").isdigit():
                    sid = str(t_issue[field_key])
                if sid is None and self.settings.create.reference_tag:
                    sid = sentry_id_from_tags(self.settings.create.reference_tag, t_issue.get("tags"))
                if sid is None:
                    continue
                if sid in found:
                    duplicates.append(str(t_issue["key"]))
                    continue
                found[sid] = t_issue
        existing = {link.sentry_id for link in self.store.links()}
        todo = {sid: t for sid, t in found.items() if sid not in existing}
        users = self.load_users()
        bookmarks = self._fetch_bookmarks(users) if self.policy.allows("followers", "tracker") else None
        sentry_issues, _errors = self._fetch_sentry(sorted(todo, key=int))
        linked, disagreeing, missing = 0, 0, []
        for sid, t_issue in todo.items():
            s_issue = sentry_issues.get(sid)
            if s_issue is None:
                missing.append(sid)
                continue
            key = str(t_issue["key"])
            now = self.snapshot(s_issue, t_issue, self._bookmarks_of(sid, s_issue, bookmarks), users)
            baselines: dict[Field, Pair] = {"status": now.status, "assignee": now.assignee}
            if isinstance(now.followers.sentry, frozenset):
                baselines["followers"] = now.followers
            conflicts: dict[Field, Pair] = {}
            if not status_in_step(str(now.status.sentry), str(now.status.tracker), self.policy.status_table):
                conflicts["status"] = now.status
            if not assignee_in_step(_as_text(now.assignee.sentry), _as_text(now.assignee.tracker), users):
                conflicts["assignee"] = now.assignee
            disagreeing += bool(conflicts)
            self.store.add_link(sid, key, origin="relink")
            self.store.commit_link(LinkCommit(sid, key, baselines, conflicts=conflicts), None, self.clock())
            if any(key in str(a.get("url") or "") or key in str(a.get("displayName") or "")
                   for a in s_issue.get("annotations") or [] if isinstance(a, Mapping)):
                self.store.mark_backlinked(sid)
            linked += 1
        return {
            "scanned_tracker_issues": scanned,
            "linked": linked,
            "already_linked": len(found) - len(todo),
            "disagreeing": disagreeing,
            "missing_in_sentry": missing,
            "duplicates": duplicates,
            "requests": {"sentry": self.sentry.stats.total, "tracker": self.tracker.stats.total},
        }

    # -- bookkeeping ------------------------------------------------------------------------
    def _commit(
        self, link: Link, applied: _Applied, owned: frozenset[str], now: Snapshot, report: CycleReport,
        *, clear_failure: bool,
    ) -> None:
        followers_now = applied.baselines.get("followers", now.followers).tracker
        keep = followers_now if isinstance(followers_now, frozenset) else None
        self.store.commit_link(
            LinkCommit(
                sentry_id=link.sentry_id,
                tracker_key=link.tracker_key,
                baselines=applied.baselines,
                owned_added=frozenset(applied.owned_added),
                owned_removed=frozenset(applied.owned_removed),
                # A bridge-added follower who unfollowed by hand is no longer ours to manage.
                owned_keep_only=keep if owned else None,
                journal=tuple(applied.journal),
                conflicts=applied.conflicts,
                settled_fields=frozenset(applied.settled),
                clear_failure=clear_failure,
            ),
            report.cycle_id,
            self.clock(),
        )

    def _fail(
        self, report: CycleReport, outcome: LinkOutcome, link: Link, error: BridgeError | None, dry_run: bool
    ) -> None:
        text = error.describe() if isinstance(error, RemoteError) else str(error)
        outcome.error = text
        log.warning("link %s <-> %s failed: %s", link.sentry_id, link.tracker_key, text,
                    extra={"event": "link.failed", "link": link.sentry_id, "outcome": "failed"})
        if not dry_run:
            self.store.record_failure(
                link.sentry_id, link.tracker_key, text,
                backoff_max_seconds=self.settings.sync.failure_backoff_max_seconds,
                cycle_id=report.cycle_id, now=self.clock(),
            )


def _chunks(items: Sequence[str], size: int) -> Iterable[list[str]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])



def _as_text(value: object) -> str | None:
    return value if isinstance(value, str) else None


def _refuse_empty_side(side: str, wanted: int, found: int, failed: int) -> None:
    """A side that suddenly returns none of many linked issues is down or misconfigured: an
    outage, never a mass deletion (one or two missing issues are per-link failures instead)."""
    if wanted >= EMPTY_SIDE_MIN and found == 0 and failed == 0:
        raise TransientError(
            f"returned none of the {wanted} linked issues; treated as an outage, not as {wanted} deletions",
            service=side, endpoint="refresh of linked issues",
        )


def _parse_tracker_time(value: Any) -> datetime | None:
    """Tracker writes `2017-07-18T13:33:44.291+0000` (no colon in the offset)."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%dT%H:%M:%S.%f%z")
    except ValueError:
        return parse_sentry_time(value)


# What planning and writing need of a Sentry issue (pass 2 keeps only this for changed links).
SENTRY_KEPT = ("id", "status", "substatus", "statusDetails", "assignedTo", "lastSeen", "firstSeen", "project")


def _slim_sentry(issue: Mapping[str, Any]) -> dict[str, Any]:
    slim = {key: issue[key] for key in SENTRY_KEPT if key in issue}
    details = slim.get("statusDetails")
    if isinstance(details, Mapping):
        slim["statusDetails"] = {"inNextRelease": details["inNextRelease"]} if "inNextRelease" in details else {}
    project = slim.get("project")
    if isinstance(project, Mapping):
        slim["project"] = {"slug": project.get("slug")}
    return slim
