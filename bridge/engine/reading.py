"""Reading both sides for a cycle: who is who, linked issues in batches, bookmarks, and the
Tracker issues updated since the incremental cursor.

Worker threads here do HTTP only; the store is read and written by the caller, on the main
thread.  A batch that fails is *unknown* this cycle, never "gone": nothing is closed, unlinked or
emptied because it was missing from a page that failed.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bridge.clients.sentry import SentryClient
from bridge.clients.tracker import TrackerClient, updated_filter
from bridge.config import Settings
from bridge.core.fields import sentry_kept
from bridge.core.linkrun import Link
from bridge.core.mapping import UserMap, build_user_map, outside_search_window
from bridge.core.values import parse_time
from bridge.errors import (
    AuthError,
    BridgeError,
    MalformedItemError,
    NotFoundError,
    RemoteError,
    TransientError,
    UnreachableError,
)
from bridge.store import Store

log = logging.getLogger("bridge.engine")

BATCH = 100
# With at least this many links, a side returning none of them is an outage.
EMPTY_SIDE_MIN = 3
# Where the incremental Tracker poll resumes: the newest `updatedAt` seen (minus the overlap).
TRACKER_CURSOR = "tracker.updated_at"

Issues = dict[str, dict[str, Any]]
Errors = dict[str, BridgeError]


@dataclass
class Batch:
    """Both sides of up to `BATCH` links, as read (or the error for each one that could not be)."""

    sentry: Issues
    sentry_errors: Errors
    tracker: Issues
    tracker_errors: Errors
    fetched: list[dict[str, Any]]  # Tracker issues read from the server (to cache)

    def issues_of(self, link: Link) -> tuple[dict[str, Any], dict[str, Any]] | BridgeError:
        """Both issues of a link, or why they are not known this cycle."""
        error = self.sentry_errors.get(link.sentry_id) or self.tracker_errors.get(link.tracker_key)
        if error is not None:
            return error
        s_issue, t_issue = self.sentry.get(link.sentry_id), self.tracker.get(link.tracker_key)
        if s_issue is None:
            return NotFoundError(f"issue {link.sentry_id} not found (deleted, merged, or not visible to the token)",
                                 service="sentry")
        if t_issue is None:
            return NotFoundError(f"issue {link.tracker_key} not found", service="tracker")
        return s_issue, t_issue


@dataclass
class Tally:
    """How much of each side answered, to tell an outage from a few missing issues."""

    wanted: int = 0
    sentry_found: int = 0
    sentry_failed: int = 0
    tracker_found: int = 0
    tracker_failed: int = 0

    def add(self, wanted: int, batch: Batch) -> None:
        self.wanted += wanted
        self.sentry_found += len(batch.sentry)
        self.sentry_failed += len(batch.sentry_errors)
        self.tracker_found += len(batch.tracker)
        self.tracker_failed += len(batch.tracker_errors)

    def refuse_an_empty_side(self) -> None:
        """A side that suddenly returns none of many linked issues is down or misconfigured: an
        outage, never a mass deletion (one or two missing issues are per-link failures instead)."""
        for side, found, failed in (("sentry", self.sentry_found, self.sentry_failed),
                                    ("tracker", self.tracker_found, self.tracker_failed)):
            if self.wanted >= EMPTY_SIDE_MIN and found == 0 and failed == 0:
                raise TransientError(
                    f"returned none of the {self.wanted} linked issues; treated as an outage, not as "
                    f"{self.wanted} deletions", service=side, endpoint="refresh of linked issues")


class Reader:
    """The reads of a cycle, over both clients."""

    def __init__(self, settings: Settings, sentry: SentryClient, tracker: TrackerClient,
                 clock: Callable[[], datetime]) -> None:
        self.settings, self.sentry, self.tracker, self.clock = settings, sentry, tracker, clock

    def users(self) -> UserMap:
        return build_user_map(self.sentry.list_members(), self.tracker.list_users(), self.settings.mapping.users)

    # -- linked issues ------------------------------------------------------------------------
    def batches(
        self, links: Sequence[Link], known: Callable[[list[Link]], Issues], *, full: bool,
        taken: Callable[[Batch], None],
    ) -> Iterator[tuple[list[Link], Batch]]:
        """Batches of `BATCH` links with both sides read, up to `sync.concurrency` batches in
        flight.  `known(chunk)` gives the Tracker issues already known for an incremental cycle
        (called on this thread: it may read the store); `taken(batch)` sees each batch as it is
        handed out (to cache what was fetched)."""
        chunks = [list(links[i : i + BATCH]) for i in range(0, len(links), BATCH)]
        if not chunks:
            return
        width = self.settings.sync.concurrency
        with ThreadPoolExecutor(max_workers=width, thread_name_prefix="read") as pool:
            pending: deque[tuple[list[Link], Future[Batch]]] = deque()
            for chunk in chunks:
                pending.append((chunk, pool.submit(self.batch, chunk, {} if full else known(chunk), full)))
                if len(pending) >= width:
                    yield self._take(pending, taken)
            while pending:
                yield self._take(pending, taken)

    @staticmethod
    def _take(pending: deque[tuple[list[Link], Future[Batch]]],
              taken: Callable[[Batch], None]) -> tuple[list[Link], Batch]:
        chunk, future = pending.popleft()
        batch = future.result()
        taken(batch)
        return chunk, batch

    def batch(self, chunk: list[Link], known: Mapping[str, dict[str, Any]], full: bool) -> Batch:
        s_map, s_err = self.fetch_sentry([link.sentry_id for link in chunk])
        keys = [link.tracker_key for link in chunk]
        if full:
            t_map, t_err = self.fetch_tracker(keys)
            return Batch(s_map, s_err, t_map, t_err, list({v["key"]: v for v in t_map.values()}.values()))
        t_map = {key: known[key] for key in keys if key in known}
        unseen = [key for key in keys if key not in t_map]
        if not unseen:
            return Batch(s_map, s_err, t_map, {}, [])
        # Linked since the last full read, never cached, or with a write pending: read those now.
        extra, t_err = self.fetch_tracker(unseen)
        t_map.update(extra)
        return Batch(s_map, s_err, t_map, t_err, list(extra.values()))

    def fetch_sentry(self, ids: Sequence[str]) -> tuple[Issues, Errors]:
        return self._fetch(ids, self.sentry.get_issues, self.sentry.get_issue, "id")

    def fetch_tracker(self, keys: Sequence[str]) -> tuple[Issues, Errors]:
        return self._fetch(keys, self.tracker.get_issues, self.tracker.get_issue, "key")

    def _fetch(
        self, refs: Sequence[str], many: Callable[[list[str]], list[dict[str, Any]]],
        one: Callable[[str], dict[str, Any]], id_field: str,
    ) -> tuple[Issues, Errors]:
        """Read issues in batches.  A batch that comes back malformed is read again one issue at a
        time, so only the issue that is really malformed fails its link."""
        issues: Issues = {}
        errors: Errors = {}
        wanted = set(refs)

        def keep(issue: dict[str, Any]) -> None:
            issues[str(issue[id_field])] = issue
            for alias in issue.get("aliases") or []:
                if alias in wanted:
                    issues[str(alias)] = issue  # a Tracker issue moved queues: its old key still links

        for start in range(0, len(refs), BATCH):
            chunk = list(refs[start : start + BATCH])
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

    # -- bookmarks ----------------------------------------------------------------------------
    def bookmarks(self, users: UserMap) -> dict[str, frozenset[str]] | None:
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

    def bookmarks_of(
        self, sentry_id: str, issue: Mapping[str, Any], bookmarks: Mapping[str, frozenset[str]] | None
    ) -> frozenset[str] | None:
        if bookmarks is None:
            return None
        if outside_search_window(issue, self.clock()):
            return None  # the search cannot see it, so we do not know
        return bookmarks.get(sentry_id, frozenset())

    # -- the incremental Tracker poll ---------------------------------------------------------
    def tracker_updates(self, links: Sequence[Link], store: Store, *,
                        remember: bool = True) -> tuple[Issues, str, set[str]]:
        """Tracker issues of the linked queues updated since the cursor minus the overlap window
        (an update stamped exactly at the cursor, or a clock a little off, is still caught).
        Returns the linked ones by key (and old key, after a move), the next cursor, and the keys
        whose version differs from the one last seen (the overlap shows an issue again for a
        while; a focused cycle reads a link only when its issue really moved).  A dry run
        (`remember=False`) leaves the state file's cache as it was."""
        started = self.clock()
        since = parse_time(store.cursor(TRACKER_CURSOR)) or started
        since -= timedelta(seconds=self.settings.sync.overlap_seconds)
        linked = {link.tracker_key for link in links}
        queues = sorted({key.rsplit("-", 1)[0] for key in linked} | {self.settings.tracker.queue})
        found: Issues = {}
        flt = updated_filter(queues, since)
        for issue in self.tracker.iter_search(filter=flt):
            for key in (issue.get("key"), *(issue.get("aliases") or [])):
                seen = found.get(str(key))
                if key in linked and (seen is None or int(seen["version"]) <= int(issue["version"])):
                    found[str(key)] = issue  # shown twice (pages recomputed): the newer copy
        seen = store.cached_tracker(list(found))
        moved = {key for key, issue in found.items()
                 if key not in seen or str(seen[key].get("version")) != str(issue.get("version"))}
        if remember:
            store.cache_tracker(found.values(), self.clock())
        # Everything up to this cycle's start has been seen; an update stamped later (or a little
        # earlier, by a clock behind ours) falls inside the next poll's overlap window.  Never
        # the newest stamp seen: a listing is not a snapshot (pages are recomputed, a scroll's
        # set is fixed when it starts), and a later stamp shown on a later page would carry the
        # cursor past a change the listing could not show.
        return found, started.isoformat(), moved


# What planning and writing need of a Sentry issue (a changed link keeps only this while it waits).
# The synced fields' keys come from their declarations.
SENTRY_KEPT = ("id", *sentry_kept(), "lastSeen", "firstSeen", "project")


def slim_sentry(issue: Mapping[str, Any]) -> dict[str, Any]:
    slim = {key: issue[key] for key in SENTRY_KEPT if key in issue}
    details = slim.get("statusDetails")
    if isinstance(details, Mapping):
        slim["statusDetails"] = {"inNextRelease": details["inNextRelease"]} if "inNextRelease" in details else {}
    project = slim.get("project")
    if isinstance(project, Mapping):
        slim["project"] = {"slug": project.get("slug")}
    return slim
