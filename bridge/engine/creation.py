"""Creating a Tracker issue for each new Sentry issue, exactly once.

Create is not idempotent, so it is journalled: an intent row first (with the followers the
create asks for), then the POST with Tracker's `unique` (a repeat answers 409 and creates
nothing), then the link.  Pending intents are recovered at the start of every cycle.  The create
watermark (the newest first-seen time handled) never passes a Sentry issue that was not handled:
a create that failed before its intent row stays a candidate until it succeeds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

from bridge.clients.sentry import SentryClient
from bridge.clients.tracker import Created, TrackerClient
from bridge.config import Settings
from bridge.core.fields import Lookup, carried_on_create
from bridge.core.linkrun import Link
from bridge.core.mapping import UserMap
from bridge.core.new_issue import issue_fields, reference_tag, route_queue, unique_key
from bridge.core.report import CycleReport
from bridge.core.values import parse_time
from bridge.engine.reading import Reader
from bridge.errors import RemoteError
from bridge.store import Store, intent_followers

log = logging.getLogger("bridge.engine")

# How far Tracker's clock may run behind ours when telling an issue our create made (not older than
# our intent row) from one with our unique made before (a lost state file's).
CREATE_CLOCK_SKEW = timedelta(seconds=30)
# Where the create listing stops: the newest Sentry first-seen time already handled.
CREATE_CURSOR = "create.first_seen"
CREATE_FLOOR = "create.floor_id"

# Syncs a link just created (or adopted) once, so its baselines exist: (report, link, Sentry issue,
# Tracker issue, bookmarks, users, owned followers, whether this call created the Tracker issue).
SyncNew = Callable[[CycleReport, Link, dict[str, Any], dict[str, Any], frozenset[str] | None, UserMap,
                    frozenset[str], bool], None]


class Creator:
    def __init__(self, settings: Settings, store: Store, sentry: SentryClient, tracker: TrackerClient,
                 reader: Reader, clock: Callable[[], datetime], stopping: Callable[[], bool]) -> None:
        self.settings, self.store, self.sentry, self.tracker = settings, store, sentry, tracker
        self.reader, self.clock, self.stopping = reader, clock, stopping

    def _unique(self, sentry_id: str) -> str:
        return unique_key(self.settings.sentry.organization, sentry_id)

    def recover_intents(self, report: CycleReport) -> None:
        """First thing in every cycle: an intent still pending means a run stopped between
        journalling a create and linking its result.  If Tracker has the issue (found by our
        `unique`), link it, owning the followers the create asked for (the link's first sync
        forgets those nobody follows any more); otherwise the create never landed and is tried
        again below."""
        for row in self.store.intents("pending"):
            sid = str(row["sentry_id"])
            try:
                found = self.tracker.find_by_unique(row["unique_key"])
            except RemoteError as exc:
                log.warning("cannot check pending create of %s: %s", sid, exc.describe(),
                            extra={"event": "intent.unknown", "link": sid})
                continue
            if found is None:
                continue
            self.store.complete_intent(sid, str(found["key"]), "created", intent_followers(row), self.clock())
            report.recovered += 1
            log.info("recovered pending create: %s -> %s", sid, found["key"],
                     extra={"event": "intent.recovered", "link": sid})

    def create_new(self, report: CycleReport, users: UserMap, bookmarks: Mapping[str, frozenset[str]] | None,
                   sync_new: SyncNew, *, backfill: bool, dry_run: bool, respect_backoff: bool = False) -> None:
        cap = self.settings.create.max_per_cycle
        candidates, newest_listed = self._candidates(backfill, dry_run, respect_backoff)
        batch, report.deferred = candidates[:cap], max(0, len(candidates) - cap)
        if report.deferred:
            log.warning("create.max_per_cycle = %d: %d more Sentry issues wait for the next cycle",
                        cap, report.deferred, extra={"event": "create.deferred"})
        handled: list[datetime | None] = []
        # Deferred issues wait ahead of the watermark, unless a pending intent keeps them anyway.
        journalled = self.store.known_sentry_ids()
        unhandled: list[datetime | None] = [parse_time(i.get("firstSeen")) for i in candidates[cap:]
                                            if str(i["id"]) not in journalled]
        for issue in batch:
            if self.stopping():
                report.interrupted = True
                unhandled.append(parse_time(issue.get("firstSeen")))
                continue
            sid = str(issue["id"])
            if dry_run:
                report.would_create.append(sid)
                continue
            marks = self.reader.bookmarks_of(sid, issue, bookmarks)
            done = self.create_one(report, issue, users, marks, sync_new)
            (handled if done else unhandled).append(parse_time(issue.get("firstSeen")))
        if not dry_run and not backfill:
            self._advance_watermark(newest_listed, handled, unhandled)

    def _advance_watermark(self, newest_listed: datetime | None, handled: list[datetime | None],
                           unhandled: list[datetime | None]) -> None:
        """Move the watermark over everything listed when nothing waits, else only up to the
        oldest issue still waiting (deferred, stopped, or failed before its intent row): the
        listing stops *before* the watermark, so that issue is listed again next cycle."""
        if unhandled:
            waiting = [t for t in unhandled if t is not None]
            mark = min(waiting) if waiting else None
        else:
            mark = newest_listed or max((t for t in handled if t is not None), default=None)
        if mark is None:
            return
        current = parse_time(self.store.cursor(CREATE_CURSOR))
        if current is None or mark > current:
            self.store.set_cursor(CREATE_CURSOR, mark.isoformat(), self.clock())

    def _candidates(self, backfill: bool, dry_run: bool,
                    respect_backoff: bool) -> tuple[list[dict[str, Any]], datetime | None]:
        """Sentry issues that need a Tracker issue: issues matching `create.query` first seen at
        or after the watermark (all of them with backfill) and pending intents, oldest first, the
        creates that failed before last (so a create refused for good never takes the slots of
        `create.max_per_cycle` from newer issues).  The daemon also lets a failed create wait out
        its backoff.  Also the newest first-seen time listed (where the watermark may move when
        none waits)."""
        cfg = self.settings.create
        known = self.store.known_sentry_ids()
        rows = self.store.intents_due(self.clock()) if respect_backoff else self.store.intents("pending")
        failed_before = {str(row["sentry_id"]): int(row.get("attempts") or 0) for row in rows}
        pending = list(failed_before)
        candidates: dict[str, dict[str, Any]] = {}
        if pending:
            for issue in self.sentry.get_issues(pending):
                candidates[str(issue["id"])] = issue
        watermark = self.store.cursor(CREATE_CURSOR)
        if watermark is None and not backfill:
            # Creation was just switched on: only issues from now on, existing ones need --backfill.
            # "Now" is Sentry's newest first-seen time, not our clock (no skew to worry about).
            newest = next(iter(self.sentry.iter_issues(cfg.query, sort="new", per_page=1)), None)
            mark = parse_time(newest.get("firstSeen")) if newest else None
            if not dry_run:
                self.store.set_cursor(CREATE_CURSOR, (mark or self.clock()).isoformat())
                # Issue ids only grow: everything up to this one existed before creation was on.
                self.store.set_cursor(CREATE_FLOOR, str(newest["id"]) if newest else "0")
            return list(candidates.values()), None
        floor = int(self.store.cursor(CREATE_FLOOR) or 0)
        projects = set(self.settings.sentry.projects)
        since = parse_time(watermark) if watermark and not backfill else None
        newest_listed: datetime | None = None
        for issue in self.sentry.iter_issues(cfg.query, sort="new"):
            first_seen = parse_time(issue.get("firstSeen"))
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
        ordered = sorted(candidates.values(), key=lambda i: (failed_before.get(str(i["id"]), 0),
                                                            str(i.get("firstSeen") or ""), int(str(i["id"]))))
        return ordered, newest_listed

    def create_one(self, report: CycleReport, issue: dict[str, Any], users: UserMap, marks: frozenset[str] | None,
                   sync_new: SyncNew) -> bool:
        """Journal the intent, create with `unique` (a repeat answers 409: the existing issue is
        found and linked instead), link, then sync the new pair once so its baselines exist.
        False when nothing was handled (the issue stays a candidate)."""
        cfg = self.settings.create
        sid = str(issue["id"])
        queue = route_queue(issue, cfg, self.settings.tracker.queue)
        carried = carried_on_create(issue, Lookup(users, self.settings.mapping), self.settings.sync.fields.model_dump())
        fields = issue_fields(issue, cfg, queue, users, marks, carried)
        asked = frozenset(fields.get("followers", []))
        prior = self.store.intent_of(sid)  # an earlier attempt of this state file's, if pending
        created: Created = "existed"
        try:
            existing = self._find_referencing(sid, queue)
            if existing is not None:
                t_issue = existing
            else:
                self.store.add_intent(sid, self._unique(sid), queue, self.clock(), followers=asked)
                t_issue, created = self.tracker.create_issue(fields, unique=self._unique(sid))
        except RemoteError as exc:
            return self._failed(report, sid, exc.describe())
        key = str(t_issue["key"])
        other = self.store.find_link(key)
        if other is not None and other.sentry_id != sid:
            return self._failed(report, sid, f"Tracker issue {key} is already linked to Sentry issue {other.sentry_id}")
        ours = self._ours(sid, t_issue, prior, created if existing is None else "existed")
        intent = self.store.intent_of(sid)
        # Ours: then the followers any attempt of ours asked for are ours (the first sync forgets
        # those nobody follows any more).  Otherwise another state file (or a person) made it:
        # adopted, and nothing of it is owned.
        owned = (asked | intent_followers(intent)) if ours and intent is not None else frozenset()
        self.store.complete_intent(sid, key, "created" if ours else "adopted", owned, self.clock())
        (report.created if ours else report.adopted).append((sid, key))
        log.info("%s Tracker issue %s for Sentry issue %s", "created" if ours else "adopted", key, sid,
                 extra={"event": "create.ok" if ours else "create.adopted", "link": sid, "outcome": "ok"})
        link = Link(sid, key, "created" if ours else "adopted", "")
        wrote = ours and existing is None and created != "existed"  # this cycle's request made it
        sync_new(report, link, issue, t_issue, marks, users, owned, wrote)
        return True

    def _failed(self, report: CycleReport, sid: str, text: str) -> bool:
        """A create that failed.  Handled (True) once its intent row exists: the pending intent
        keeps it a candidate.  Before it nothing remote happened, and the issue stays a candidate
        below the create watermark (False)."""
        report.create_failures[sid] = text
        self.store.intent_error(sid, text, backoff_max_seconds=self.settings.sync.failure_backoff_max_seconds,
                                now=self.clock())
        log.warning("cannot create a Tracker issue for %s: %s", sid, text,
                    extra={"event": "create.failed", "link": sid, "outcome": "failed"})
        return self.store.intent_of(sid) is not None

    def _ours(self, sid: str, t_issue: dict[str, Any], prior: dict[str, Any] | None, how: Created) -> bool:
        """Created by this state file's own attempt.  Certain when this call's request created it.
        After an ambiguous answer (this call's, or an earlier attempt's still pending), it is ours
        when it carries our `unique` and is not older than that attempt's intent row (less
        CREATE_CLOCK_SKEW): an issue with our unique from before (a lost state file's) is adopted
        and nothing of it is owned."""
        if how == "created":
            return True
        if t_issue.get("unique") != self._unique(sid):
            return False
        since_row = prior if prior is not None and prior.get("state") == "pending" else None
        if how == "lost":
            since_row = since_row or self.store.intent_of(sid)
        if since_row is None:
            return False
        created, since = parse_time(t_issue.get("createdAt")), parse_time(since_row.get("created_at"))
        return created is None or since is None or created >= since - CREATE_CLOCK_SKEW

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

    def backlink(self, report: CycleReport) -> None:
        """Show the Tracker key on each linked Sentry issue (an external issue of our Sentry app)."""
        installation = self.settings.sentry.app_installation or ""
        web = self.settings.tracker.web_url.rstrip("/")
        for link in self.store.unbacklinked():
            if self.stopping():
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
