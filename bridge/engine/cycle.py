"""The engine: the only place that talks to both clients and the store.

One cycle: recover pending creates, learn who is who, read every linked issue in batches (or,
incrementally, only the Tracker issues updated since the cursor), learn the bookmarks, plan each
link with the pure planner, and run the links with writes on workers while later batches are
still being read.  Each link's run is committed in one transaction as it finishes; a link that
fails is recorded with its error and retried later; the cycle goes on.  Then new Sentry issues
get their Tracker issues, and linked Sentry issues show their Tracker keys.

The parts live beside this module: `reading` (the reads), `executor` and `transitions` (writes
and what was observed of them), `creation`, `relink`, and `report` (what a cycle did).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime, timedelta
from typing import Any

from bridge.clients.sentry import SentryClient
from bridge.clients.tracker import TrackerClient
from bridge.config import Settings
from bridge.core.actions import changes
from bridge.core.fields import FOLLOWERS, snapshot
from bridge.core.focus import Focus, Selection, bookmark_changes, hooked_change, ordered, reopened_ids, select
from bridge.core.guard import MassChangeGuard
from bridge.core.linkrun import Link, LinkRun
from bridge.core.mapping import UserMap
from bridge.core.outcomes import JournalEntry, Pending
from bridge.core.plan import LinkState, Policy, bookmark_baseline, bookmarks_seen, plan_for
from bridge.core.report import SUMMARY_LOG_FIELDS, CycleReport
from bridge.core.workflow import WorkflowCache
from bridge.engine.creation import Creator
from bridge.engine.executor import Executor
from bridge.engine.pool import WritePool
from bridge.engine.reading import TRACKER_CURSOR, Batch, Issues, Reader, Tally, slim_sentry
from bridge.engine.relink import relink
from bridge.engine.transitions import StatusWalker
from bridge.errors import BridgeError, RemoteError
from bridge.history import TrackerHistory
from bridge.store import REPEATABLE, Store, slim_tracker

log = logging.getLogger("bridge.engine")

Bookmarks = Mapping[str, frozenset[str]] | None


class _Silent:
    def advance(self, n: int = 1) -> None:
        """No progress display."""


@contextmanager
def _no_progress(label: str, total: int) -> Iterator[_Silent]:
    yield _Silent()


# How long learned workflow transitions are trusted across runs.
WORKFLOW_KEPT = timedelta(days=1)
SINCE_FULL = "cycles.since_full"  # incremental cycles since the last full one, across processes
SLICE_AFTER = "focus.slice_after"  # the last link a focused cycle's rotating slice read


class Engine:
    def __init__(self, settings: Settings, store: Store, sentry: SentryClient, tracker: TrackerClient, *,
                 clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.settings = settings
        self.clock = clock
        self.policy = Policy.from_settings(settings)
        self.workflows = WorkflowCache()
        # What earlier runs learned of the queues' workflows (a day at most: workflows get edited).
        for key, moves in store.workflow(self.clock() - WORKFLOW_KEPT):
            self.workflows.learn(*key, moves)
        self._workflow_saved = self.workflows.version
        # Set from a signal handler: the link in progress finishes, no new link starts.
        self.stop_requested = threading.Event()
        self._pruned_at: datetime | None = None
        self._store, self._sentry, self._tracker = store, sentry, tracker
        self._wire()
        self._users: UserMap | None = None
        # Long phases report here (a progress bar on a terminal); silent by default.
        self.progress: Callable[[str, int], AbstractContextManager[Any]] = _no_progress
        # Cycles since the last full read of Tracker (None: none yet, so the next one is full).
        self._since_full: int | None = None
        # Focused cycles (healthy hooks) need a cycle of this process to have completed: its
        # bookmark searches are what the next search is compared with.
        self._focus_ready = False
        self._marks_seen: dict[str, frozenset[str]] | None = None
        # Where the next scheduled focused cycle looks for reopened issues (the last scheduled
        # cycle's start); None until one completed in this process.
        self._seen_since: datetime | None = None

    # The clients and the store may be swapped (a reload, a test's fault wrapper): the parts follow.
    @property
    def store(self) -> Store:
        return self._store

    @store.setter
    def store(self, store: Store) -> None:
        self._store = store
        self._wire()

    @property
    def sentry(self) -> SentryClient:
        return self._sentry

    @sentry.setter
    def sentry(self, client: SentryClient) -> None:
        self._sentry = client
        self._wire()

    @property
    def tracker(self) -> TrackerClient:
        return self._tracker

    @tracker.setter
    def tracker(self, client: TrackerClient) -> None:
        self._tracker = client
        self._wire()

    def _wire(self) -> None:
        def now() -> datetime:
            return self.clock()

        self.reader = Reader(self.settings, self._sentry, self._tracker, now)
        self.walker = StatusWalker(self._tracker, self.workflows, self._tracker.http.policy.attempts,
                                   self.settings.mapping.status)
        self.creator = Creator(self.settings, self._store, self._sentry, self._tracker, self.reader, now,
                               lambda: self.stop_requested.is_set())  # late: the daemon swaps the flag
        self.history = TrackerHistory(self._tracker, self.settings.sync.overlap_seconds)

    def users(self, *, refresh: bool) -> UserMap:
        """Who is who; re-read on full cycles, kept in memory between them."""
        if refresh or self._users is None:
            self._users = self.reader.users()
        return self._users

    def load_users(self) -> UserMap:
        return self.reader.users()

    def executor(self, users: UserMap, *, notes: bool = True) -> Executor:
        """Runs links' writes; notes each write before it is sent (unless a dry run)."""
        def note(sentry_id: str, pending: Pending) -> None:
            self.store.pending_log.note(sentry_id, pending, self.clock())

        return Executor(self.sentry, self.tracker, self.walker, users, self.policy, note if notes else None,
                        clock=lambda: self.clock(), history=self.history)

    def relink(self) -> dict[str, Any]:
        return relink(self.reader, self.store, self.policy)

    # -- the cycle ------------------------------------------------------------------------------
    def _full_due(self) -> bool:
        """Full: read every linked Tracker issue.  Otherwise only those updated since the cursor.
        Every `full_resync_every`-th cycle is full, counted across processes (the count is kept
        in the state file), so a one-shot `sync` from a timer follows the same schedule as `run`
        and costs what the daemon's cycle costs.  Without a cursor or a count (a new state file,
        a state file from before the count) the cycle is full."""
        if self._since_full is None:
            stored = self.store.cursor(SINCE_FULL)
            self._since_full = int(stored) if stored is not None and stored.isdigit() else None
        if self._since_full is None or self.store.cursor(TRACKER_CURSOR) is None:
            return True
        return self._since_full + 1 >= self.settings.sync.full_resync_every

    def _prune(self, now: datetime) -> None:
        """Journal and cycle history older than state.keep_days go, at most once an hour."""
        if self._pruned_at is not None and now - self._pruned_at < timedelta(hours=1):
            return
        self._pruned_at = now
        gone = self.store.prune(now - timedelta(days=self.settings.state.keep_days))
        if any(gone.values()):
            log.info("pruned %d journal entries and %d cycles older than %d days", gone["journal"], gone["cycles"],
                     self.settings.state.keep_days, extra={"event": "state.pruned"})

    def run_cycle(self, *, dry_run: bool = False, respect_backoff: bool = False, backfill: bool = False,
                  force: bool = False, full: bool | None = None, focus: Focus | None = None) -> CycleReport:
        """One cycle.  Never raises for a single link's trouble; a failure to learn the users
        (auth, outage) ends the cycle early as `report.fatal`.  `focus` (healthy hooks: what
        they named since the last cycle) lets an incremental cycle read only the links something
        points at plus a rotating slice (`bridge.core.focus`); None reads every link."""
        report = CycleReport(dry_run=dry_run, started=self.clock())
        before = self.sentry.stats.total, self.tracker.stats.total
        started_cpu = time.process_time()
        if not dry_run:
            report.cycle_id = self.store.begin_cycle(dry_run, report.started)
        hinted = focus is not None and focus.hinted
        try:
            # A hinted cycle is never the full one: that waits for the next scheduled cycle.
            full = False if hinted else self._full_due() if full is None else full
            report.full = full
            self._focus_ready, ready = False, self._focus_ready  # until this cycle completes
            self._cycle(report, dry_run=dry_run, respect_backoff=respect_backoff, backfill=backfill, force=force,
                        full=full, focus=focus if ready or hinted else None)
            if self.stop_requested.is_set():
                report.interrupted = True  # asked to stop during the cycle: what ran is committed, not all ran
            if not dry_run and not report.interrupted and report.refused is None:
                if not hinted:  # hinted cycles leave the schedule alone
                    self._since_full = 0 if full else (self._since_full or 0) + 1
                    self.store.set_cursor(SINCE_FULL, str(self._since_full), self.clock())
                    if report.focus is not None:
                        self.store.set_cursor(SLICE_AFTER, report.focus.slice_after or "", self.clock())
                self._focus_ready = ready or not hinted  # a hinted cycle searches no bookmarks
                if not hinted:
                    self._seen_since = report.started
            elif dry_run:
                self._focus_ready = ready  # a dry run changes nothing a focused cycle relies on
        except RemoteError as exc:
            # A read the whole cycle depends on failed (auth, outage, a malformed member list):
            # the cycle ends here, recorded; the next one is the retry.
            report.fatal = exc
            log.error("cycle aborted: %s", exc.describe(), extra={"event": "cycle.aborted"})
        except BaseException as exc:
            # A bug or a kill: still close the cycle's row, so `status` never shows it running.
            report.interrupted = report.interrupted or isinstance(exc, KeyboardInterrupt)
            report.finished = self.clock()
            if report.cycle_id is not None:
                self.store.finish_cycle(report.cycle_id, {**report.summary(), "ok": False}, report.finished)
            raise
        report.finished = self.clock()
        report.requests = {"sentry": self.sentry.stats.total - before[0],
                           "tracker": self.tracker.stats.total - before[1]}
        summary = report.summary()
        if report.cycle_id is not None:
            self.store.finish_cycle(report.cycle_id, summary, report.finished)
            self._prune(report.finished)
            if self.workflows.version != self._workflow_saved:
                self._workflow_saved = self.workflows.version
                self.store.save_workflow(self.workflows.items(), report.finished)
        log.info(
            "cycle %s: %d links, writes sentry=%d tracker=%d, %d failed, %d conflicts, %.2fs (cpu %.2fs)",
            "planned" if dry_run else "done",
            summary["links"], summary["writes_sentry"], summary["writes_tracker"], summary["failures"],
            summary["conflicts"], summary["duration_seconds"] or 0.0, time.process_time() - started_cpu,
            extra={"event": "cycle.summary", **{k: summary[k] for k in SUMMARY_LOG_FIELDS}},
        )
        return report

    def _cycle(self, report: CycleReport, *, dry_run: bool, respect_backoff: bool, backfill: bool, force: bool,
               full: bool, focus: Focus | None) -> None:
        creating = self.settings.create.enabled or backfill
        if not dry_run:
            self.creator.recover_intents(report)
        links = self.store.links()
        report.links = len(links)
        if not links and not creating:
            return
        users = self.users(refresh=full)
        hinted = focus is not None and focus.hinted
        # A hinted cycle looks for new Sentry issues only when a hook named one not linked yet (an
        # `issue.created`); otherwise the scheduled cycles find them, as without hooks.
        news = hinted and focus is not None and bool(focus.sentry_ids - {link.sentry_id for link in links})
        # Sentry sends no hook for bookmarks: a hinted cycle leaves them to the scheduled ones
        # (None: unknown, so no follower is added or removed by this cycle), unless it creates:
        # a new ticket gets its followers at once, as a scheduled creation gives them.
        search = self.policy.needs_bookmarks and (not hinted or news)
        bookmarks = self.reader.bookmarks(users) if search else None
        waiting = self.store.not_due(self.clock()) if respect_backoff else set()
        held = self.store.held()
        active = [link for link in links if link.sentry_id not in waiting and link.sentry_id not in held]
        # A full read sees everything as of now: the next incremental poll starts here (the
        # overlap window absorbs clock skew between us and Tracker).
        updates: Issues = {}
        moved: set[str] = set()  # Tracker keys whose issue moved since last seen
        cursor: str | None = report.started.isoformat()
        if not full:
            try:
                updates, cursor, moved = self.reader.tracker_updates(links, self.store, remember=not dry_run)
            except RemoteError as exc:
                report.poll_error = exc.describe(body=False)
                if hinted:  # read what the hooks named; the cursor stays for the next poll
                    log.warning("the incremental Tracker poll failed (%s): this hinted cycle reads what hooks "
                                "named", exc.describe(), extra={"event": "cycle.poll_failed"})
                    cursor = None
                else:
                    # The poll is one read for every link: rather than lose the cycle, read each
                    # linked issue (a failure there is that link's, recorded and retried).
                    log.warning("the incremental Tracker poll failed (%s): reading every linked issue instead",
                                exc.describe(), extra={"event": "cycle.poll_failed"})
                    full = report.full = True
        marks_before, reading = self._marks_seen, active
        if bookmarks is not None and not dry_run and not hinted:
            # Only a scheduled cycle's search is what the next one compares with: a hinted
            # cycle reads few links, and a change it saw but did not read must still show.
            self._marks_seen = dict(bookmarks)
        focusable = focus is not None and not full and (hinted or marks_before is not None
                                                          or not self.policy.needs_bookmarks)
        # Reopened issues are the scheduled cycles' to find (None: unknown, so every link is read).
        reopened = self._reopened(active) if focusable and not hinted else set()
        if focus is not None and focusable and reopened is not None:
            report.focus = self._select(active, focus, moved, marks_before, bookmarks, reopened)
            # What is pointed at first: a hinted change is written before the slice is read.
            pointed, sliced = report.focus.pointed, report.focus.sliced
            reading = [link for link in active if link.sentry_id in pointed]
            reading += [link for link in active if link.sentry_id in sliced]
            log.debug("focused cycle: %d of %d links read (%s)", len(reading), len(links),
                      ", ".join(f"{k} {v}" for k, v in report.focus.reasons.items()), extra={"event": "cycle.focus"})
        guard = MassChangeGuard(self.settings.sync.mass_change_limit(len(links)), len(reading), force=force)
        missing = self._sync_links(report, reading, users, bookmarks, updates, guard, full=full, dry_run=dry_run)
        if report.interrupted:
            log.info("stop requested: links not read or not started are left for the next run",
                     extra={"event": "cycle.interrupted"})
        if report.refused or report.interrupted:
            return
        for link, error in missing:
            run = LinkRun(link)
            report.outcomes.append(run)
            self._fail(report, run, error.describe() if isinstance(error, RemoteError) else str(error), dry_run)
        if dry_run:
            return
        if cursor is not None:
            self.store.set_cursor(TRACKER_CURSOR, cursor, self.clock())
        if creating and not self.stop_requested.is_set() and (not hinted or news):
            self.creator.create_new(report, users, bookmarks, self.sync_new, backfill=backfill, dry_run=dry_run,
                                    respect_backoff=respect_backoff)
        if self.settings.sentry.app_installation and not self.stop_requested.is_set():
            self.creator.backlink(report)

    def _reopened(self, active: Sequence[Link]) -> set[str] | None:
        """Linked issues unresolved again (a regression, an escalation) since the last scheduled
        cycle, which the bridge last knew resolved or ignored; None when that cannot be known."""
        since = self._seen_since
        if since is None:
            return None
        try:
            seen = self.reader.seen_unresolved_since(since - timedelta(seconds=self.settings.sync.overlap_seconds))
        except RemoteError as exc:
            log.warning("reopened issues unknown this cycle (%s): reading every link", exc.describe(),
                        extra={"event": "cycle.reopened_unknown"})
            return None
        linked = [link.sentry_id for link in active if link.sentry_id in seen]
        return reopened_ids(linked, self.store.baselines_for(linked) if linked else {})

    def _select(self, active: Sequence[Link], focus: Focus, moved: set[str],
                marks_before: Mapping[str, frozenset[str]] | None, bookmarks: Bookmarks,
                reopened: set[str]) -> Selection:
        """The links a focused cycle reads: those hooks, the poll, the bookmark searches or a
        retry point at, and the rotating slice (`bridge.core.focus`)."""
        changed = bookmark_changes(marks_before, bookmarks) if marks_before is not None and bookmarks is not None \
            else set()
        retry = self.store.pending_links() | {row["sentry_id"] for row in self.store.failures()}
        after = self.store.cursor(SLICE_AFTER) or None
        return select(ordered((link.sentry_id, link.tracker_key) for link in active), focus,
                      updated_keys=moved, bookmarks_changed=changed, retry=retry, reopened=reopened,
                      slice_after=after,
                      every=self.settings.sync.full_resync_every)

    def _sync_links(self, report: CycleReport, active: Sequence[Link], users: UserMap, bookmarks: Bookmarks,
                    updates: Issues, guard: MassChangeGuard, *, full: bool, dry_run: bool,
                    ) -> list[tuple[Link, BridgeError]]:
        """Read both sides in batches, plan every link, write.  Links with nothing to write are
        committed as they are planned, so memory follows the changes, not N.  Links with writes
        wait for the mass-change guard; once it can no longer be crossed they run on
        `sync.concurrency` workers while later batches are still being read, so a rate-limited
        read and rate-limited writes overlap.  Returns the links one side could not show."""
        missing: list[tuple[Link, BridgeError]] = []
        held: list[LinkRun] = []
        tally = Tally()
        flaps = {} if dry_run else self.store.cycles_writing(self.settings.sync.flap_window_cycles)
        executor = self.executor(users, notes=not dry_run)
        writes = WritePool(self, report, executor, users)
        fresh = self.store.pending_links()  # a write still pending: read it, never take the cache
        # A Tracker issue a hook named changed after anything cached: this cycle's poll shows it,
        # or (the poll failed, or lags) it is read; never the cached copy.
        hooked = report.focus.hooked_keys if report.focus is not None else frozenset()

        def known(chunk: list[Link]) -> Issues:
            keys = [link.tracker_key for link in chunk if link.sentry_id not in fresh]
            found = self.store.cached_tracker([key for key in keys if key not in hooked])
            found.update({key: updates[key] for key in keys if key in updates})
            return found

        def taken(batch: Batch) -> None:
            if batch.fetched and not dry_run:  # a dry run writes nothing, not even this cache
                self.store.cache_tracker(batch.fetched, self.clock())

        try:
            with self.progress("reading linked issues", len(active)) as bar:
                for chunk, batch in self.reader.batches(active, known, full=full, taken=taken):
                    bar.advance(len(chunk))
                    tally.add(len(chunk), batch)
                    runs = self._plan_batch(chunk, batch, users, bookmarks, missing, dry_run=dry_run,
                                            unhinted=report.unhinted if report.focus is not None else None,
                                            sliced=report.focus.sliced if report.focus is not None else frozenset())
                    guard.planned(len(chunk), self._hold_writes(report, runs, executor, users, held,
                                                                dry_run=dry_run))
                    if guard.releasable and held and not dry_run:
                        writes.start(self._unless_flapping(report, held, flaps))
                        held = []
                    writes.commit_done()
                    if self.stop_requested.is_set():
                        report.interrupted = True
                        return missing
            tally.refuse_an_empty_side()
            if guard.refused:
                report.refused = (f"{guard.changing} links would be changed this cycle, more than the limit of "
                                  f"{guard.limit} (sync.max_changes_per_cycle); check with `sync --dry-run`, "
                                  "then run `sync --force`")
                log.error("refused: %s", report.refused, extra={"event": "cycle.refused"})
                return missing
            if dry_run:
                report.outcomes.extend(held)
                return missing
            writes.start(self._unless_flapping(report, held, flaps))
        finally:
            writes.drain()
        return missing

    def _plan_batch(self, chunk: list[Link], batch: Batch, users: UserMap, bookmarks: Bookmarks,
                    missing: list[tuple[Link, BridgeError]], *, dry_run: bool,
                    unhinted: list[str] | None = None, sliced: frozenset[str] = frozenset()) -> list[LinkRun]:
        """Plan each link of a batch; the runs with something to do (others need nothing).  In a
        focused cycle, a link only the slice reached whose Sentry side moved in a way hooks
        announce goes to `unhinted`."""
        ids = [link.sentry_id for link in chunk]
        states = self.store.link_states(ids)
        failing = self.store.failing(ids)
        runs: list[LinkRun] = []
        for link in chunk:
            got = batch.issues_of(link)
            if isinstance(got, BridgeError):
                missing.append((link, got))
                continue
            s_issue, t_issue = got
            if unhinted is not None and link.sentry_id in sliced and hooked_change(states[link.sentry_id], s_issue):
                unhinted.append(link.sentry_id)
            run = self.planned(link, states[link.sentry_id], s_issue, t_issue,
                               self.reader.bookmarks_of(link.sentry_id, s_issue, bookmarks), users)
            if changes(run.actions):
                run.sentry, run.tracker = slim_sentry(s_issue), slim_tracker(t_issue)
                runs.append(run)
            elif link.sentry_id in failing and not dry_run:
                self.store.clear_failure(link.sentry_id)  # readable again and nothing to do: recovered
        return runs

    def planned(self, link: Link, state: LinkState, s_issue: dict[str, Any], t_issue: dict[str, Any],
                marks: frozenset[str] | None, users: UserMap) -> LinkRun:
        """A link's run with its plan: the one way every caller (cycle, creation, `conflicts
        resolve`, `explain`) turns what the store knows and what the sides show into actions."""
        if state.pending:  # writes whose outcome is unknown: the issue's history may tell
            state = self.history.with_history(state, t_issue, users)
        marks = bookmarks_seen(marks, state, users)
        run = LinkRun(link, state, s_issue, t_issue, marks)
        run.actions = plan_for(state, snapshot(s_issue, t_issue, marks, users), users, self.policy)
        return run

    def _hold_writes(self, report: CycleReport, runs: Sequence[LinkRun], executor: Executor, users: UserMap,
                     held: list[LinkRun], *, dry_run: bool) -> int:
        """Runs with writes go to `held` for the guard (their count is returned); the rest
        (adopt, conflict, unmapped, settling a pending write) are committed now, or only
        described in a dry run."""
        changing = 0
        for run in runs:
            if run.planned_writes:
                held.append(run)
                changing += 1
            elif dry_run:
                report.outcomes.append(run)
            else:
                executor.run(run)
                self.finish(report, run, users)
        return changing

    def _unless_flapping(self, report: CycleReport, runs: Sequence[LinkRun], flaps: Mapping[str, int],
                         ) -> list[LinkRun]:
        """Hold back links the bridge keeps rewriting (flapping) instead of writing them again;
        `flaps` counts the cycles before this one, so the cycle's own writes never count."""
        window, limit = self.settings.sync.flap_window_cycles, self.settings.sync.flap_limit
        kept: list[LinkRun] = []
        for run in runs:
            if flaps.get(run.sentry_id, 0) < limit:
                kept.append(run)
                continue
            detail = (f"written in {flaps[run.sentry_id]} of the last {window} cycles; held back until "
                      "lifted (`conflicts resolve`)")
            self.store.hold(run.sentry_id, run.tracker_key, detail, self.clock())
            report.quarantined.append(run.sentry_id)
            log.error("held back %s <-> %s: %s", run.sentry_id, run.tracker_key, detail,
                      extra={"event": "link.quarantined", "link": run.sentry_id})
        return kept

    # -- one link now (creation, operator commands) ---------------------------------------------
    def sync_new(self, report: CycleReport, link: Link, s_issue: dict[str, Any], t_issue: dict[str, Any],
                 marks: frozenset[str] | None, users: UserMap, owned: frozenset[str], created: bool) -> None:
        """Sync a link just created (or adopted) once, so its baselines exist."""
        run = self.planned(link, LinkState(owned=owned), s_issue, t_issue, marks, users)
        run.writes_tracker += int(created)
        report.outcomes.append(run)
        self.executor(users).run(run)
        self.finish(report, run, users, append=False)

    def sync_one(self, report: CycleReport, run: LinkRun, users: UserMap) -> None:
        """Run one planned link now, on this thread, and commit it."""
        report.outcomes.append(run)
        self.executor(users).run(run)
        self.finish(report, run, users, append=False)

    def finish(self, report: CycleReport, run: LinkRun, users: UserMap, *, append: bool = True) -> None:
        """Main thread: commit one link's run in one transaction, remember what Tracker showed."""
        if append and run.noteworthy:
            report.outcomes.append(run)
        elif append:
            # Links that only moved baselines are counted, not kept: a first sync of 100,000
            # links must not hold 100,000 runs.
            report.quiet += 1
        # Owned followers who no longer follow are forgotten, once the link has a bookmark
        # baseline: before it, the owned ones stand for the bookmarks seen (`plan`), and
        # forgetting one would make its old bookmark look new.
        looked = bookmark_baseline(run.base(FOLLOWERS.name)) is not None
        owns = looked and bool(run.tracker) and bool(run.state.owned or run.owned_added)
        read = FOLLOWERS.read_tracker(run.tracker, users) if owns else None
        seen = read if isinstance(read, frozenset) else None
        repeats = self.store.commit_run(run, report.cycle_id, self.clock(), followers_seen=seen)
        self._warn_news(run, repeats)
        if run.tracker_seen is not None:
            self.store.cache_tracker([run.tracker_seen], self.clock())
        if run.error is not None:
            self._fail(report, run, run.error, False)

    @staticmethod
    def _warn_news(run: LinkRun, repeats: list[JournalEntry]) -> None:
        """A conflict or a value without a counterpart is warned about once: while it stays the
        same, later cycles neither journal it nor warn again (debug level only)."""
        for entry in run.journal:
            if entry.action not in REPEATABLE:
                continue
            event = "link.conflict" if entry.action == "conflict" else "link.unmapped"
            level = logging.DEBUG if entry in repeats else logging.WARNING
            what = "conflict" if entry.action == "conflict" else "not synced"
            log.log(level, "%s <-> %s %s %s: %s", run.sentry_id, run.tracker_key, entry.field, what, entry.detail,
                    extra={"event": event, "link": run.sentry_id, "field": entry.field})

    def _fail(self, report: CycleReport, run: LinkRun, text: str, dry_run: bool) -> None:
        run.error = text
        log.warning("link %s <-> %s failed: %s", run.sentry_id, run.tracker_key, text,
                    extra={"event": "link.failed", "link": run.sentry_id, "outcome": "failed"})
        if not dry_run:
            self.store.record_failure(run.sentry_id, run.tracker_key, text,
                                      backoff_max_seconds=self.settings.sync.failure_backoff_max_seconds,
                                      cycle_id=report.cycle_id, now=self.clock())
