"""The Sentry web API as the bridge uses it: paths and JSON shapes, never the mapping.

Facts this client is built around (see `reference/sentry-api.md`):

* org-scoped paths only (`/api/0/organizations/{org}/issues/...`); the top-level
  `/api/0/issues/{id}/` is deprecated and browns out with 410s;
* every search sends `query` explicitly: an absent `query` means the default
  `is:unresolved issue.priority:[high, medium]`, which would silently hide issues;
* `project=-1` on every list, because an integration token's "member projects" are unconfirmed;
* pages are followed while the `Link` header's `rel="next"` says `results="true"`, never by
  counting items (pages can be short); the cursor is opaque and is re-sent on *our* URL, so a
  self-hosted Sentry with a wrong `system.url-prefix` cannot send us (and the token) elsewhere;
* known issues are refreshed with `?group=<id>&group=<id>...`, at most 100 per request;
* a PUT carries absolute values (status, assignee), so repeating it is harmless: `safe=True`.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Iterator
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from bridge.clients.http import ApiHttp, RequestStats, RetryPolicy, check_types, require
from bridge.core.values import SENTRY_WRITABLE_STATES
from bridge.errors import BadResponseError, MalformedItemError, RejectedError

log = logging.getLogger("bridge.sentry")

GROUP_BATCH = 100
MAX_PER_PAGE = 100
NO_RELEASE_MARKER = "No release data"
ISSUE_KEYS = ("id", "status", "project")
_NONE = type(None)
# The types of the fields the bridge reads; anything else is a bad response for that issue.
ISSUE_TYPES: dict[str, tuple[type, ...]] = {
    "id": (str, int), "status": (str,), "substatus": (str, _NONE), "statusDetails": (dict, _NONE),
    "assignedTo": (dict, _NONE), "project": (dict,), "lastSeen": (str, _NONE), "firstSeen": (str, _NONE),
}
USER_AGENT = "sentry-tracker-bridge"

def next_cursor(response: httpx.Response) -> str | None:
    """The cursor of the next page, or None on the last one.  Sentry's `Link` header reads
    `<url&cursor=C>; rel="next"; results="true"; cursor="C"` (previous first); httpx parses it
    (`response.links`).  A `next` link with `results="false"` is the end; one without a
    `cursor` attribute takes it from its URL; one without `results` counts as having results."""
    nxt = response.links.get("next")
    if nxt is None or str(nxt.get("results", "true")).lower() != "true":
        return None
    cursor = nxt.get("cursor")
    if cursor is None:
        cursor = (parse_qs(urlsplit(nxt.get("url", "")).query).get("cursor") or [""])[0]
    return cursor


class SentryClient:
    """One organization of one Sentry server."""

    def __init__(self, http: ApiHttp, organization: str) -> None:
        self.http = http
        self.organization = organization
        self._org = f"/api/0/organizations/{quote(organization, safe='')}"
        # Told the id of every issue about to be written (the daemon's echo book; push).
        self.on_write: Callable[[str], None] | None = None

    @classmethod
    def create(
        cls,
        url: str,
        organization: str,
        token: str,
        *,
        policy: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        verify: bool = True,
        max_in_flight: int | None = None,
    ) -> SentryClient:
        headers = {
            "Authorization": f"Bearer {token}",
            "Accept": "application/json",
            "User-Agent": USER_AGENT,
        }
        http = ApiHttp(
            "sentry", url, headers, policy=policy, transport=transport, timeout=timeout, verify=verify,
            max_in_flight=max_in_flight,
        )
        return cls(http, organization)

    def __repr__(self) -> str:
        return f"SentryClient({self.http.base_url!r}, {self.organization!r})"

    @property
    def stats(self) -> RequestStats:
        return self.http.stats

    def close(self) -> None:
        self.http.close()

    # -- reading issues -----------------------------------------------------------------

    def get_issues(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        """The current state of known issues, `GROUP_BATCH` per request.  `group=` ignores the
        query, the event window and the status, so old and resolved issues come back too; ids
        that no longer exist (deleted, merged away) are simply absent from the result."""
        wanted = list(dict.fromkeys(str(i).strip() for i in ids))
        bad = [i for i in wanted if not i.isdigit()]
        if bad:
            raise ValueError(f"Sentry issue ids are numeric, got {bad[:5]!r}")
        issues: list[dict[str, Any]] = []
        for start in range(0, len(wanted), GROUP_BATCH):
            batch = wanted[start : start + GROUP_BATCH]
            params = [("group", i) for i in batch] + [("project", "-1")]
            response = self.http.request("GET", f"{self._org}/issues/", safe=True, params=params)
            issues.extend(self._issue_list(response))
        return issues

    def iter_issues(
        self,
        query: str,
        *,
        sort: str = "new",
        stats_period: str | None = None,
        per_page: int = MAX_PER_PAGE,
    ) -> Iterator[dict[str, Any]]:
        """Every issue matching `query` (sent even when empty: empty means all statuses), page
        by page as they arrive.  `sort="new"` (first seen) keeps the order stable during a scan;
        `stats_period` widens or narrows the default 90-day event window."""
        params: list[tuple[str, str]] = [
            ("query", query),
            ("sort", sort),
            ("limit", str(max(1, min(per_page, MAX_PER_PAGE)))),
            ("project", "-1"),
        ]
        if stats_period:
            params.append(("statsPeriod", stats_period))
        yield from self._pages(f"{self._org}/issues/", params, self._issue_list)

    def get_issue(self, issue_id: str) -> dict[str, Any]:
        response = self.http.request("GET", self._issue_path(issue_id), safe=True)
        return self._checked(require(self.http.json(response), ISSUE_KEYS, self.http, response), response)

    def bookmarked_issue_ids(self, email: str, *, stats_period: str | None = None) -> set[str]:
        """The ids of the issues `email` has bookmarked: one `bookmarks:` search.  The query
        names no status, so resolved and ignored bookmarks count too.  Sentry finds nothing for
        users without a usable password (SSO-only), without saying so."""
        query = f"bookmarks:{_search_value(email)}"
        return {str(issue["id"]) for issue in self.iter_issues(query, stats_period=stats_period)}

    def get_activities(self, issue_id: str) -> list[dict[str, Any]]:
        """The newest 100 activity entries of one issue, newest first."""
        response = self.http.request("GET", self._issue_path(issue_id) + "activities/", safe=True)
        data = require(self.http.json(response), ("activity",), self.http, response)
        activity = data["activity"]
        if not isinstance(activity, list) or not all(isinstance(a, dict) for a in activity):
            raise self.http.bad(response, "expected a list of activity objects")
        return activity

    # -- writing issues -----------------------------------------------------------------

    def update_issue(self, issue_id: str, body: dict[str, Any]) -> dict[str, Any]:
        """PUT absolute values (`status`, `assignedTo`, `priority`); returns the full issue.

        Sentry refuses `resolvedInNextRelease` (400, "No release data ...") in a project that has
        no releases; then the issue is resolved plainly and a warning says so."""
        status = body.get("status")
        if status is not None and status not in SENTRY_WRITABLE_STATES:
            raise ValueError(f"unknown Sentry status {status!r}; expected one of {SENTRY_WRITABLE_STATES}")
        assigned = body.get("assignedTo")
        if assigned and not (isinstance(assigned, str) and assigned.startswith("user:") and assigned[5:].isdigit()):
            raise ValueError(f"Sentry assigns by numeric user id (user:<id>), got {assigned!r}")
        try:
            return self._put(issue_id, body)
        except RejectedError as exc:
            if status != "resolvedInNextRelease" or exc.status != 400 or NO_RELEASE_MARKER not in exc.excerpt:
                raise
        log.warning(
            "Sentry issue %s: its project has no releases, so it cannot be resolved in the next "
            "release; resolved it instead",
            issue_id,
        )
        return self._put(issue_id, {**body, "status": "resolved"})

    def upsert_external_issue(
        self, installation: str, issue_id: str, *, web_url: str, project: str, identifier: str
    ) -> dict[str, Any]:
        """Show a Tracker link on the Sentry issue (`project#identifier`).  Sentry keeps one link
        per (issue, app) and updates it on a repeat, so retrying is safe."""
        if not str(issue_id).isdigit():
            raise ValueError(f"Sentry issue ids are numeric, got {issue_id!r}")
        body = {"issueId": int(issue_id), "webUrl": web_url, "project": project, "identifier": identifier}
        path = f"/api/0/sentry-app-installations/{quote(installation, safe='')}/external-issues/"
        response = self.http.request("POST", path, safe=True, json_body=body)
        return require(self.http.json(response), ("id", "issueId", "displayName"), self.http, response)

    # -- people and apps ----------------------------------------------------------------

    def list_members(self) -> list[dict[str, Any]]:
        """Every member, all pages.  `id` is the member id; `user.id` (null for pending
        invites) is what assignment takes; `user.emails[]` holds every address of the user."""
        params = [("per_page", str(MAX_PER_PAGE))]
        return list(self._pages(f"{self._org}/members/", params, self._member_list))

    def list_installations(self) -> list[dict[str, Any]]:
        """The org's Sentry App installations (`uuid`, `app.slug`): where external issues go."""
        response = self.http.request("GET", f"{self._org}/sentry-app-installations/", safe=True)
        data = self.http.json(response)
        if not isinstance(data, list):
            raise self.http.bad(response, "expected a list of installations")
        return [require(item, ("uuid", "app"), self.http, response) for item in data]

    # -- internals ----------------------------------------------------------------------

    def _issue_path(self, issue_id: str) -> str:
        ident = str(issue_id).strip()
        if not ident or "/" in ident:
            raise ValueError(f"bad Sentry issue id {issue_id!r}")
        return f"{self._org}/issues/{quote(ident, safe='')}/"

    def _put(self, issue_id: str, body: dict[str, Any]) -> dict[str, Any]:
        # absolute values: sending twice leaves the same state, so retries are allowed
        if self.on_write is not None:
            self.on_write(str(issue_id))  # before sending: the hook it causes may beat the answer
        response = self.http.request("PUT", self._issue_path(issue_id), safe=True, json_body=body)
        return self._checked(require(self.http.json(response), ISSUE_KEYS, self.http, response), response)

    def _issue_list(self, response: httpx.Response) -> list[dict[str, Any]]:
        data = self.http.json(response)
        if not isinstance(data, list):
            raise self.http.bad(response, f"expected a list of issues, got {type(data).__name__}")
        try:
            return [self._checked(require(item, ISSUE_KEYS, self.http, response), response) for item in data]
        except BadResponseError as exc:
            raise MalformedItemError.of(exc) from None

    def _checked(self, issue: dict[str, Any], response: httpx.Response) -> dict[str, Any]:
        check_types(issue, ISSUE_TYPES, self.http, response)
        return issue

    def _member_list(self, response: httpx.Response) -> list[dict[str, Any]]:
        data = self.http.json(response)
        if not isinstance(data, list):
            raise self.http.bad(response, f"expected a list of members, got {type(data).__name__}")
        members = [require(item, ("id", "email", "user"), self.http, response) for item in data]
        for member in members:
            user = member["user"]
            if user is not None and (not isinstance(user, dict) or "id" not in user):
                raise self.http.bad(response, "member.user has no id")
        return members

    def _pages(
        self,
        path: str,
        params: list[tuple[str, str]],
        parse: Callable[[httpx.Response], list[dict[str, Any]]],
    ) -> Iterator[dict[str, Any]]:
        """Follow `rel="next"` while it says `results="true"`, re-sending our own URL with the
        server's (opaque) cursor.  A cursor that does not move is a server bug, not a loop."""
        seen: set[str] = set()
        cursor: str | None = None
        while True:
            page_params = params + ([("cursor", cursor)] if cursor is not None else [])
            response = self.http.request("GET", path, safe=True, params=page_params)
            yield from parse(response)
            nxt = next_cursor(response)
            if nxt is None:
                return
            if not nxt or nxt in seen:
                raise self.http.bad(response, f"pagination does not advance (cursor {nxt!r})")
            seen.add(nxt)
            cursor = nxt


def _search_value(text: str) -> str:
    """A search value, quoted when it holds blanks, quotes or brackets."""
    if re.fullmatch(r"[^\s\"\[\]()]+", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


__all__ = ["SentryClient", "next_cursor"]
