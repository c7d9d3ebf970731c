"""`doctor`'s live probes: each behaviour the bridge relies on that the API references leave
open, or that a Sentry-compatible server may do differently, is tried once, read-only, on the
operator's own servers.  Each probe ends in one verdict that says what it proved, or what is off
and what to do.

The probes (each removes one assumption the emulators cannot):
* the incremental Tracker poll, sent exactly as the engine sends it, finds the queue's most
  recently updated issue (the server reads the cursor's date as the bridge means it);
* a `group=` batch read returns exactly the Sentry issues asked for (a server that ignores
  `group=` would make every refresh read the wrong issues);
* a `bookmarks:<email>` search is accepted for each mapped person;
* Sentry's rate-limit headers are present, or the bridge says it paces by its defaults;
* the pagination links of both servers parse, and the next page is a different page.
The workflow path per mapping row is the `workflow definition` check; the robot's right to
edit the queue is the `write access` check.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from itertools import islice
from typing import Any
from urllib.parse import quote

import httpx

from bridge.check import Check
from bridge.clients.sentry import SentryClient, next_cursor
from bridge.clients.tracker import TrackerClient, updated_filter
from bridge.config import Settings
from bridge.core.values import parse_time
from bridge.errors import RemoteError

GROUP_SAMPLE = 3  # issues asked for in the group= probe


class LiveProbes:
    """The probes, against live clients; nothing here writes."""

    def __init__(self, settings: Settings, sentry: SentryClient, tracker: TrackerClient) -> None:
        self.settings = settings
        self.sentry = sentry
        self.tracker = tracker

    def tracker_probes(self, robot: str | None, queues: Sequence[str]) -> list[Check]:
        """`robot`: the token's own login; `queues`: every queue the bridge writes to."""
        found = [self._guard("probe: Tracker incremental poll", self.incremental_poll),
                 self._guard("probe: Tracker pagination", self.tracker_pages)]
        if robot:
            found.append(self._guard("probe: Tracker robot may edit", lambda: self.robot_rights(robot, queues)))
        return found

    def sentry_probes(self, people: Sequence[str], unseen: Sequence[str] = ()) -> list[Check]:
        """`people`: the e-mails of the mapped people whose bookmarks become followers; `unseen`:
        those of them the member list says sign in only through SSO (a search finds nothing for
        them, without an error)."""
        found = [self._guard("probe: Sentry group= batch read", self.group_read),
                 self._guard("probe: Sentry pagination and rate-limit headers", self.sentry_pages)]
        if self.settings.sync.fields.followers == "to_tracker":
            found.append(self._guard("probe: Sentry bookmarks searches",
                                     lambda: self.bookmark_searches(people, unseen)))
        return found

    @staticmethod
    def _guard(name: str, probe: Callable[[], Check]) -> Check:
        """A probe's own read failing is its verdict, never the end of doctor."""
        try:
            return probe()
        except RemoteError as exc:
            return Check(name, "warn", f"could not run: {exc.describe()}", "retry doctor")
        except (ValueError, TypeError, KeyError) as exc:  # an answer of a shape the probe cannot use
            return Check(name, "warn", f"could not run: {type(exc).__name__}: {exc}",
                           "this server answers in a shape the bridge does not expect; report this")

    # -- Tracker -----------------------------------------------------------------------------
    def incremental_poll(self) -> Check:
        name = "probe: Tracker incremental poll"
        queue = self.settings.tracker.queue
        newest = next(iter(self.tracker.iter_search(filter={"queue": queue}, order="-updatedAt", per_page=1)), None)
        stamp = parse_time(newest.get("updatedAt")) if newest else None
        if newest is None or stamp is None:
            return Check(name, "warn", f"no issue in {queue} to prove it with",
                           "run doctor again once the queue has an issue")
        key = str(newest["key"])
        flt = updated_filter([queue], stamp - timedelta(seconds=1))
        seen = {str(issue["key"]) for issue in islice(self.tracker.iter_search(filter=flt), 1000)}
        since = flt["updatedAt"]["from"]
        if key in seen:
            return Check(name, "pass", f"the poll the bridge sends (updatedAt from {since}) found {key}, the "
                                         f"queue's most recently updated issue (updated {newest['updatedAt']})")
        return Check(name, "fail", f"the poll the bridge sends (updatedAt from {since}) did not find {key}, "
                                     f"updated {newest['updatedAt']}: this server reads the cursor differently",
                       "changes made in Tracker would be missed until the next full resync; set "
                       "sync.full_resync_every = 1 meanwhile and report this with doctor's output")

    def tracker_pages(self) -> Check:
        """Pages 1 and 2 of one issue each, asked for directly (not through the client, whose
        de-duplication would hide a repeated page and whose switch to scroll mode would hide a
        server that ignores `page`)."""
        name = "probe: Tracker pagination"
        queue = self.settings.tracker.queue
        path = f"/{self.tracker.api_version}/issues/_search"
        body = {"filter": {"queue": queue}, "order": "+key"}
        answers = [self.tracker.http.request("POST", path, safe=True, json_body=body,
                                             params={"perPage": 1, "page": page}) for page in (1, 2)]
        pages = [self.tracker.http.json(a) for a in answers]
        if not all(isinstance(p, list) for p in pages):
            return Check(name, "fail", "a search page is not a JSON array", "report this")
        total = answers[0].headers.get("x-total-count", "")
        keys = [str(p[0].get("key")) if p and isinstance(p[0], Mapping) else None for p in pages]
        if len(pages[0]) > 1:
            return Check(name, "fail", f"{len(pages[0])} issues on a page of perPage=1",
                           "the bridge would misread every listing; report this")
        if keys[0] is None or (keys[1] is None and not (total.isdigit() and int(total) >= 2)):
            return Check(name, "warn", f"fewer than 2 issues in {queue}: paging cannot be shown",
                           "run doctor again once the queue has two issues")
        if keys[1] is None or keys[1] == keys[0]:
            got = "nothing" if keys[1] is None else f"{keys[1]} again"
            return Check(name, "fail", f"page 2 brought {got} (X-Total-Count {total or 'absent'})",
                           "this server does not page as documented: the bridge would miss or repeat issues; "
                           "report this with doctor's output")
        return Check(name, "pass", f"one issue per page: page 1 {keys[0]}, page 2 {keys[1]}"
                                     + (f" of {total}" if total else ""))

    def robot_rights(self, robot: str, queues: Sequence[str]) -> Check:
        """The token's own rights in each queue: WRITE to edit (fields, transitions, comments),
        CREATE when new issues are created there."""
        name = "probe: Tracker robot may edit"
        creates = self.settings.create.enabled
        fails: list[str] = []
        warns: list[str] = []
        passes: list[str] = []
        for queue in queues:
            try:
                rights = self.tracker.user_rights(queue, robot)
            except RemoteError as exc:
                warns.append(f"{queue}: cannot tell ({exc.describe()}); the first write tells")
                continue
            needed = ("WRITE", "CREATE") if creates else ("WRITE",)
            if rights.get("DENY"):
                fails.append(f"{queue}: access denied to {robot} (DENY)")
                continue
            for right in needed:
                how = rights.get(right)
                if not how:
                    fails.append(f"{queue}: {robot} has no {right} right: every "
                                 f"{'edit' if right == 'WRITE' else 'create'} would be refused (403)")
                elif isinstance(how, Mapping) and not how.get("users") and not how.get("groups"):
                    roles = ", ".join(str(r.get("id") or r.get("display") or r) if isinstance(r, Mapping) else str(r)
                                      for r in how.get("roles") or []) or "a role"
                    warns.append(f"{queue}: {robot} holds {right} only through {roles}: it applies only to issues "
                                 "where the robot has that role")
                else:
                    passes.append(f"{queue}: {right}")
        if fails:
            return Check(name, "fail", "; ".join(fails),
                           f"give {robot} the rights in the queue's access settings", (*warns, *passes))
        if warns:
            return Check(name, "warn", "; ".join(warns), "grant the rights to the robot itself or a group",
                           tuple(passes))
        return Check(name, "pass", f"{robot} may {'edit and create' if creates else 'edit'} issues in "
                                     f"{', '.join(queues)}", "", tuple(passes))

    # -- Sentry ------------------------------------------------------------------------------
    def _sample(self, count: int) -> list[dict[str, Any]]:
        return list(islice(self.sentry.iter_issues("", per_page=count), count))

    def group_read(self) -> Check:
        """Ask for a strict part of a sample by `group=`: what was asked comes back, and what was
        left out does not (a server that ignored `group=` would send its default listing, which
        in a small organisation may be exactly the sample)."""
        name = "probe: Sentry group= batch read"
        sample = sorted(str(issue["id"]) for issue in self._sample(GROUP_SAMPLE))
        if len(sample) < 2:
            return Check(name, "warn", "fewer than 2 issues: a batch read cannot be told from a listing",
                           "run doctor again once the projects have two issues")
        asked = [sample[0], sample[-1]] if len(sample) > 2 else [sample[0]]
        left_out = [i for i in sample if i not in asked]
        got = sorted(str(issue["id"]) for issue in self.sentry.get_issues(asked))
        if got == sorted(asked):
            return Check(name, "pass", f"asked for {', '.join(asked)} by group=, got exactly those "
                                         f"(not {', '.join(left_out)})")
        return Check(name, "fail", f"asked for {', '.join(asked)} by group=, got {', '.join(got[:10]) or 'none'}",
                       "this server does not select issues by group= (a Sentry-compatible server may want id=): "
                       "the bridge would refresh the wrong issues; it needs an adapter for this server")

    def sentry_pages(self) -> Check:
        """One raw listing request of one issue per page: its Link header and its rate-limit
        headers; then the next page, which must be another issue."""
        name = "probe: Sentry pagination and rate-limit headers"
        path = f"/api/0/organizations/{quote(self.sentry.organization, safe='')}/issues/"
        params = [("query", ""), ("sort", "new"), ("limit", "1"), ("project", "-1")]
        first = self.sentry.http.request("GET", path, safe=True, params=params)
        notes = [pacing(first.headers, self.settings.sync.concurrency)]
        cursor = next_cursor(first)
        items = self.sentry.http.json(first)
        if not isinstance(items, list):
            return Check(name, "fail", "the issue listing is not a JSON array", "report this", tuple(notes))
        if cursor is None and len(items) > 1:
            return Check(name, "fail", f"{len(items)} issues on a page of limit=1 and no next cursor in the Link "
                                         f"header ({first.headers.get('link', 'absent')!r})",
                           "the bridge would read only the first page of every listing; report this", tuple(notes))
        if cursor is None and "next" not in first.links:
            return Check(name, "warn", "no Link header with a next link: a server without one shows the bridge "
                                         "only the first page of each listing", "report this", tuple(notes))
        if cursor is None:
            return Check(name, "pass", "the Link header parses (one issue or none: no next page)", "",
                           tuple(notes))
        second = self.sentry.http.request("GET", path, safe=True, params=[*params, ("cursor", cursor)])
        more = self.sentry.http.json(second)
        ids = [str(i.get("id")) for i in (items + (more if isinstance(more, list) else []))
               if isinstance(i, Mapping)]
        if len(ids) == 2 and ids[0] != ids[1]:
            return Check(name, "pass", f"the Link header parses: page 1 issue {ids[0]}, page 2 issue {ids[1]}",
                           "", tuple(notes))
        return Check(name, "fail", f"the next page did not bring another issue ({', '.join(ids)})",
                       "report this with doctor's output", tuple(notes))

    def bookmark_searches(self, people: Sequence[str], unseen: Sequence[str]) -> Check:
        name = "probe: Sentry bookmarks searches"
        if not people:
            return Check(name, "warn", "nobody mapped to search the bookmarks of",
                           "map Sentry members to Tracker users ([mapping.users] or same e-mail)")
        refused: list[str] = []
        for email in people:
            try:
                self.sentry.bookmarked_issue_ids(email)
            except RemoteError as exc:
                refused.append(f"{email}: {exc.describe()}")
        hidden = [f"{email}: signs in only through SSO; Sentry's search finds nothing for them, without an error"
                  for email in unseen]
        if refused:
            return Check(name, "fail", f"{len(refused)} of {len(people)} bookmarks: searches refused",
                           "their bookmarks never become followers; check that they are members of the "
                           "organization", (*refused, *hidden))
        if hidden:
            return Check(name, "warn", f"the search works, but {len(hidden)} of {len(people)} people cannot be "
                                         f"seen by it: {', '.join(unseen)}",
                           "a password on their Sentry account makes their bookmarks visible", tuple(hidden))
        return Check(name, "pass", f"a bookmarks: search works for each of the {len(people)} mapped people")


def pacing(headers: httpx.Headers | Mapping[str, str], concurrency: int) -> str:
    """What the bridge paces Sentry requests by, judged from one answer's headers."""
    limit = headers.get("x-sentry-rate-limit-limit")
    if headers.get("x-sentry-rate-limit-remaining") is not None and headers.get("x-sentry-rate-limit-reset"):
        return (f"rate-limit headers present (limit {limit or '?'} per window on this endpoint): the bridge "
                "spends the advertised budget and waits for the window to turn")
    return (f"no rate-limit headers (self-hosted Sentry sends none): the bridge paces by its defaults, at most "
            f"{concurrency} request(s) at once (sync.concurrency), and on a 429 it waits Retry-After, else "
            "backs off exponentially")


__all__ = ["LiveProbes", "pacing"]
