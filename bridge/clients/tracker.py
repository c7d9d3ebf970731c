"""The Yandex Tracker API client: paths, parameters and JSON shapes, nothing about the mapping.

Facts it relies on (see `reference/tracker-api.md`):

* `/v3` by default; v2 and v3 answer the same shapes.  `Accept-Language: en` so `display`
  strings are English in logs, but nothing here ever branches on `display`.
* Writes to an issue carry `?version=N` (the documented form).  That makes a PATCH safe to
  retry after a lost answer: a repeat either matches (nothing was applied) or gets 409.
* `_execute` of a transition is not idempotent and takes no version: it is never retried on an
  ambiguous failure; the caller re-reads the issue and decides.
* Create always carries `unique`; a repeat answers 409 and `_findByUnique` gives the issue that
  already exists, so a create can be retried and never duplicates.
* Search pages are recomputed server-side; `iter_search` walks `page=1..X-Total-Pages` itself
  rather than following `Link` URLs, so a request never goes to a host other than the configured
  one (with the token on it), and drops repeats of the same (key, version).
* Page pagination of `_search` ends at row 10,000 ("If it exceeds 10,000, use scrollable
  results"); past it `iter_search` scrolls (`scrollType`, `perScroll`, `scrollId`) and always
  releases the scroll (`POST /system/search/scroll/_clear`).  See `iter_search`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from bridge.clients.http import ApiHttp, RequestStats, RetryPolicy, check_types, require
from bridge.core.workflow import ref_key
from bridge.errors import (
    BadResponseError,
    ConflictError,
    MalformedItemError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    RemoteError,
    TransientError,
    UnreachableError,
)

log = logging.getLogger("bridge.tracker")

Created = Literal["created", "existed", "lost"]
SEARCH_BATCH = 100
PAGE_SIZE = 100
MAX_PAGES = 10_000  # a runaway-pagination guard, far above any real listing (10k rows = 100 pages)
# The deepest row page pagination of `_search` reaches; past it only a scroll goes on.
PAGED_LIMIT = 10_000
SCROLL_SIZE = 1000  # `perScroll`: "The maximum allowed value is 1000" (default 100)
SCROLL_TTL_MILLIS = 60_000  # `scrollTTLMillis`: the documented default, sent so it is not left to chance
SCROLL_RESTARTS = 2  # fresh scrolls after a continuation failed, before the listing gives up
ISSUE_KEYS = ("id", "key", "version")
_NONE = type(None)
# The types of the fields the bridge reads; anything else is a bad response for that issue.
ISSUE_TYPES: dict[str, tuple[type, ...]] = {
    "key": (str,), "status": (dict,), "assignee": (dict, _NONE), "followers": (list, _NONE),
    "queue": (dict, _NONE), "type": (dict, _NONE), "updatedAt": (str, _NONE),
}


class _ScrollLost(Exception):  # noqa: N818 - an internal signal, never leaves the client
    """A scroll continuation failed in a way that a fresh scroll may get past; carries the error."""

    def __init__(self, error: RemoteError) -> None:
        super().__init__(str(error))
        self.error = error


def tracker_time(moment: datetime) -> str:
    """A moment in the documented form of Tracker dates, `YYYY-MM-DDThh:mm:ss.sss±hhmm`, always
    with its offset: how the server reads a date without one is not documented (a server that
    read it west of UTC would skip every change made since, with no error)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def updated_filter(queues: Sequence[str], since: datetime) -> dict[str, Any]:
    """The incremental poll's filter: issues of `queues` updated since `since`.  One place for
    it, so that `doctor`'s probe sends exactly what the engine sends."""
    return {"queue": list(queues), "updatedAt": {"from": tracker_time(since)}}


class TrackerClient:
    """One Tracker organization, one token."""

    # The deepest row page pagination of `_search` reaches (10,000 on the real API).  Tests lower
    # it, with the emulator's `paged_limit`, to exercise the switch to scroll on a few dozen issues.
    paged_limit: int = PAGED_LIMIT

    def __init__(self, http: ApiHttp, api_version: str = "v3") -> None:
        if api_version not in ("v2", "v3"):
            raise ValueError(f"unsupported Tracker API version {api_version!r} (v2 or v3)")
        self.http = http
        self.api_version = api_version

    @classmethod
    def create(
        cls,
        url: str,
        token: str,
        *,
        org_id: str | None = None,
        cloud_org_id: str | None = None,
        auth_scheme: str = "OAuth",
        api_version: str = "v3",
        policy: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        verify: bool = True,
        max_in_flight: int | None = None,
    ) -> TrackerClient:
        """Build the client; exactly one of `org_id` (Yandex 360) / `cloud_org_id` (Cloud)."""
        if bool(org_id) == bool(cloud_org_id):
            raise ValueError("give exactly one of org_id (X-Org-ID) and cloud_org_id (X-Cloud-Org-ID)")
        if auth_scheme not in ("OAuth", "Bearer"):
            raise ValueError(f"auth_scheme must be OAuth or Bearer, not {auth_scheme!r}")
        if auth_scheme == "Bearer" and not cloud_org_id:
            raise ValueError("an IAM (Bearer) token works only with cloud_org_id")
        headers = {"Authorization": f"{auth_scheme} {token}", "Accept-Language": "en"}
        if org_id:
            headers["X-Org-ID"] = org_id
        else:
            headers["X-Cloud-Org-ID"] = str(cloud_org_id)
        http = ApiHttp("tracker", url, headers, policy=policy, transport=transport, timeout=timeout,
                       verify=verify, max_in_flight=max_in_flight)
        return cls(http, api_version)

    @property
    def stats(self) -> RequestStats:
        return self.http.stats

    def close(self) -> None:
        self.http.close()

    def __repr__(self) -> str:
        return f"TrackerClient({self.http!r}, {self.api_version!r})"

    # -- helpers ----------------------------------------------------------------------------

    def _path(self, *parts: str) -> str:
        return "/" + "/".join([self.api_version, *(quote(p, safe="") for p in parts)])

    def _object(self, response: httpx.Response, keys: tuple[str, ...]) -> dict[str, Any]:
        return require(self.http.json(response), keys, self.http, response)

    def _list(self, response: httpx.Response, keys: tuple[str, ...]) -> list[dict[str, Any]]:
        data = self.http.json(response)
        if not isinstance(data, list):
            raise self.http.bad(response, f"expected a JSON array, got {type(data).__name__}")
        return [require(item, keys, self.http, response) for item in data]

    def _issue(self, response: httpx.Response) -> dict[str, Any]:
        return self._checked(self._object(response, ISSUE_KEYS), response)

    def _checked(self, issue: dict[str, Any], response: httpx.Response) -> dict[str, Any]:
        if isinstance(issue["version"], bool) or not isinstance(issue["version"], int):
            raise self.http.bad(response, "issue version is not an integer")
        check_types(issue, ISSUE_TYPES, self.http, response)
        if any(not isinstance(ref, dict) for ref in issue.get("followers") or []):
            raise self.http.bad(response, "a follower is not an object")
        return issue

    def _issues(self, response: httpx.Response) -> list[dict[str, Any]]:
        items = self._list(response, ())
        try:
            return [self._checked(require(issue, ISSUE_KEYS, self.http, response), response) for issue in items]
        except BadResponseError as exc:
            raise MalformedItemError.of(exc) from None

    @staticmethod
    def _has_next(response: httpx.Response, page: int) -> bool:
        """More pages: a `rel="next"` link, or `X-Total-Pages` beyond this page."""
        if "next" in response.links:
            return True
        total = response.headers.get("x-total-pages")
        return bool(total and total.isdigit() and int(total) > page)

    def _pages(self, method: str, path: str, *, json_body: Any = None, per_page: int = PAGE_SIZE,
               keys: tuple[str, ...] = ()) -> Iterator[tuple[httpx.Response, list[dict[str, Any]]]]:
        page = 0
        while True:
            page += 1
            response = self.http.request(method, path, safe=True, params={"perPage": per_page, "page": page},
                                         json_body=json_body)
            items = self._issues(response) if keys == ISSUE_KEYS else self._list(response, keys)
            yield response, items
            if not items or not self._has_next(response, page):
                return
            if page >= MAX_PAGES:
                raise self.http.bad(response, f"more than {MAX_PAGES} pages")

    # -- issues: read -----------------------------------------------------------------------

    def get_issue(self, key: str) -> dict[str, Any]:
        return self._issue(self.http.request("GET", self._path("issues", key), safe=True))

    def issue_with_transitions(self, key: str) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """The issue and the transitions available from its status, in one answer
        (`expand=transitions`): the status and its transitions are seen at the same moment."""
        response = self.http.request("GET", self._path("issues", key), safe=True, params={"expand": "transitions"})
        issue = self._issue(response)
        items = issue.get("transitions")
        if not isinstance(items, list) or any(not isinstance(item, dict) or not isinstance(item.get("to"), dict)
                                              or "key" not in item["to"] or "id" not in item for item in items):
            raise self.http.bad(response, "expand=transitions without a list of transitions with to.key")
        return issue, items

    def get_issues(self, keys: Sequence[str]) -> list[dict[str, Any]]:
        """The issues among `keys` that exist (missing keys are simply absent), in batches of 100."""
        wanted = list(dict.fromkeys(keys))
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(wanted), SEARCH_BATCH):
            body = {"keys": wanted[start : start + SEARCH_BATCH]}
            for _, issues in self._pages("POST", self._path("issues", "_search"), json_body=body,
                                         keys=ISSUE_KEYS):
                for issue in issues:
                    found[str(issue["key"])] = issue
        return list(found.values())

    def iter_search(
        self,
        *,
        filter: dict[str, Any] | None = None,  # noqa: A002 - the API's own name
        query: str | None = None,
        queue: str | None = None,
        order: str | list[str] | None = None,
        per_page: int = PAGE_SIZE,
        per_scroll: int = SCROLL_SIZE,
    ) -> Iterator[dict[str, Any]]:
        """Stream the issues of one search.  Exactly one of filter/query/queue.

        Page pagination first, because it is the cheap way ("Scrollable search results consume
        more resources than paginated output") and almost every listing of the bridge (the
        incremental poll, a doctor sample, a reference lookup) is small.  Page pagination stops
        at row `paged_limit` (10,000): the API refuses a page past it, and its `X-Total-Count`
        is reported to stop at 10,000 instead of growing past it (yandex_tracker_client#13), so
        the first page cannot tell 10,000 rows from 100,000.  Hence: when a page's
        `X-Total-Count` reaches the limit, or the next page would reach past it (the listing
        grew while it was read), the rows seen so far stand and a scroll reads the whole
        listing again, with repeats of the same (key, version) dropped.  A small listing costs
        what it always did; a big one costs one wasted page.  A `queue` search becomes
        `filter: {queue}` for the scroll ("Scroll is not supported" with `queue` or `keys`);
        without `order` or `query` the scroll is unsorted, the one the docs advise for many rows,
        so the order of a big listing is not the queue's key order.  See `_scroll` for how a
        scroll is read, repeated and always released, also when the consumer stops early.
        """
        selectors = {"filter": filter, "query": query, "queue": queue}
        given = {k: v for k, v in selectors.items() if v is not None}
        if len(given) != 1:
            raise ValueError("give exactly one of filter, query and queue")
        if not 1 <= per_scroll <= SCROLL_SIZE:
            raise ValueError(f"per_scroll must be 1..{SCROLL_SIZE} (the API's maximum)")
        body: dict[str, Any] = dict(given)
        if order is not None:
            body["order"] = order
        return self._stream(body, per_page, per_scroll)

    def _stream(self, body: dict[str, Any], per_page: int, per_scroll: int) -> Iterator[dict[str, Any]]:
        seen: set[tuple[str, int]] = set()

        def fresh(issues: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
            for issue in issues:
                mark = (str(issue["key"]), int(issue["version"]))
                if mark not in seen:  # pages are recomputed: the same row may show up twice
                    seen.add(mark)
                    yield issue

        path = self._path("issues", "_search")
        page = 1
        while page * per_page <= self.paged_limit:
            response = self.http.request("POST", path, safe=True, params={"perPage": per_page, "page": page},
                                         json_body=body)
            issues = self._issues(response)
            yield from fresh(issues)
            if self._total(response) >= self.paged_limit:
                break  # maybe more rows than page pagination reaches: scroll
            if not issues or not self._has_next(response, page):
                return
            page += 1
        scroll_body = dict(body)
        if "queue" in scroll_body:
            scroll_body["filter"] = {"queue": scroll_body.pop("queue")}
        sort = "sorted" if "order" in body or "query" in body else "unsorted"
        yield from self._scroll(scroll_body, sort, per_scroll, fresh)

    @staticmethod
    def _total(response: httpx.Response) -> int:
        """`X-Total-Count`, or 0 when it is missing or not a number (then `Link`/`X-Total-Pages` decide)."""
        total = response.headers.get("x-total-count", "")
        return int(total) if total.isdigit() else 0

    def _scroll(self, body: dict[str, Any], sort: str, per_scroll: int,
                fresh: Callable[[Iterable[dict[str, Any]]], Iterator[dict[str, Any]]]) -> Iterator[dict[str, Any]]:
        """Read one listing by scroll, to the end.

        The first request (`scrollType`, `perScroll`, `scrollTTLMillis`) is a read and is
        retried like one: a repeat after a lost answer only leaves an unnamed snapshot behind,
        which expires after its TTL.  A continuation (`scrollId` from the last `X-Scroll-Id`,
        the same body) is *not* retried after an ambiguous failure (a timeout, a dropped
        connection, a 5xx).  The docs do not say what a repeated id gets, but the ids in their
        `_clear` example are Elasticsearch scroll ids (base64 of `queryThenFetch;...`), whose
        cursor moves on the server when a page is served: sending the id again after a lost
        answer would get the page after the lost one and drop a page without a word.  Instead the scroll
        starts over (at most `SCROLL_RESTARTS` times) and the rows already passed on are
        skipped; the same happens when the scroll is gone (expired, or released by the server),
        which the docs do not give a code for (404 or another 4xx).  Requests that surely did
        not reach the server (refused connection, 429) are retried as everywhere.

        Every scroll this reads is released at the end with `POST /system/search/scroll/_clear`
        and one `{X-Scroll-Id: X-Scroll-Token}` pair per page ("pass all pairs"), in a `finally`,
        when it stopped before its last page: the consumer stopped early (closing the
        generator) or a page failed.  A scroll read to its last page (no `X-Scroll-Id` on it) is
        let go by the server, so releasing it would cost a request for nothing.  The token "certifies that
        the request belongs to the current user": it goes only into that request's body, never
        into a URL, a log line or an error.
        """
        for restart in range(SCROLL_RESTARTS + 1):
            pairs: dict[str, str] = {}
            try:
                yield from self._scroll_once(body, sort, per_scroll, fresh, pairs)
                return
            except _ScrollLost as lost:
                if restart == SCROLL_RESTARTS:
                    raise lost.error from None
                log.info("tracker: a scroll page failed (%s); reading the listing again from the start",
                         lost.error.describe(body=False), extra={"event": "tracker.scroll_restart"})
            finally:
                self._release(pairs)

    def _scroll_once(self, body: dict[str, Any], sort: str, per_scroll: int,
                     fresh: Callable[[Iterable[dict[str, Any]]], Iterator[dict[str, Any]]],
                     pairs: dict[str, str]) -> Iterator[dict[str, Any]]:
        path = self._path("issues", "_search")
        params: dict[str, Any] = {"scrollType": sort, "perScroll": per_scroll, "scrollTTLMillis": SCROLL_TTL_MILLIS}
        response = self.http.request("POST", path, safe=True, params=params, json_body=body)
        for _ in range(MAX_PAGES):
            issues = self._issues(response)
            scroll_id = response.headers.get("x-scroll-id")
            if scroll_id:
                pairs[scroll_id] = response.headers.get("x-scroll-token", "")
            yield from fresh(issues)
            if not scroll_id or not issues:  # X-Scroll-Id comes "if the requested page is not the last one"
                pairs.clear()  # read to its end: the server lets the scroll go, nothing to release
                return
            try:
                response = self.http.request("POST", path, safe=False, json_body=body,
                                             params={"scrollId": scroll_id, "scrollTTLMillis": SCROLL_TTL_MILLIS})
            except (UnreachableError, RateLimitedError):
                raise  # retried already as everywhere (it never reached the server): a new scroll would not help
            except (TransientError, NotFoundError, RejectedError) as exc:
                raise _ScrollLost(exc) from None
        raise self.http.bad(response, f"a scroll of more than {MAX_PAGES} pages")

    def _release(self, pairs: dict[str, str]) -> None:
        """Release scroll contexts; a failure is only logged: the snapshot expires by its TTL anyway,
        and the listing (or the error that ended it) matters more than the cleanup."""
        if not pairs:
            return
        try:
            self.http.request("POST", self._path("system", "search", "scroll", "_clear"), safe=True,
                              json_body=pairs)
        except RemoteError as exc:
            log.warning("tracker: could not release a search scroll (it expires in %d s): %s",
                        SCROLL_TTL_MILLIS // 1000, exc.describe(body=False), extra={"event": "tracker.scroll_clear"})

    def find_by_unique(self, unique: str) -> dict[str, Any] | None:
        """The issue created with `unique`, or None.  (Undocumented; what the official client uses.)"""
        try:
            response = self.http.request("POST", self._path("issues", "_findByUnique"), safe=True,
                                         params={"unique": unique})
        except NotFoundError:
            return None
        return self._issue(response)

    # -- issues: write ----------------------------------------------------------------------

    def update_issue(self, key: str, fields: dict[str, Any], *, version: int) -> dict[str, Any]:
        """PATCH `fields` if the issue is still at `version`; a 409/412 raises ConflictError.
        Array fields take `{"add": [...]}` / `{"remove": [...]}` (never a whole new list, which
        would drop what people added by hand); `{"assignee": None}` unassigns."""
        if not fields:
            raise ValueError("nothing to update: PATCH only real changes (each one costs a version)")
        response = self.http.request("PATCH", self._path("issues", key), safe=True,
                                     params={"version": version}, json_body=fields)
        return self._issue(response)

    def transitions(self, key: str) -> list[dict[str, Any]]:
        """The transitions available from the issue's current status: `[{id, to: {key}, ...}]`."""
        response = self.http.request("GET", self._path("issues", key, "transitions"), safe=True)
        return self._transitions(response)

    def _transitions(self, response: httpx.Response) -> list[dict[str, Any]]:
        items = self._list(response, ("id", "to"))
        for item in items:
            if not isinstance(item["to"], dict) or "key" not in item["to"]:
                raise self.http.bad(response, "transition without to.key")
        return items

    def execute_transition(self, key: str, transition_id: str, *, resolution: str | None = None,
                           comment: str | None = None) -> list[dict[str, Any]]:
        """Execute a transition; returns the transitions available from the new status.

        Not idempotent: an ambiguous failure (timeout, 5xx) is raised, never retried here.
        """
        body: dict[str, Any] = {}
        if resolution is not None:
            body["resolution"] = resolution
        if comment is not None:
            body["comment"] = comment
        response = self.http.request(
            "POST", self._path("issues", key, "transitions", transition_id, "_execute"), safe=False,
            json_body=body,
        )
        return self._transitions(response)

    def create_issue(self, fields: dict[str, Any], *, unique: str) -> tuple[dict[str, Any], Created]:
        """Create with `unique`; returns (issue, how): "created" by this call's request; "existed"
        when the unique key was taken before this call (a repeat: the existing issue); "lost" when
        an attempt of this call had an ambiguous answer (a timeout, a reset, a 5xx) and the retry
        met the key taken: most likely that attempt created it, unless the issue is older than the
        call (the caller tells by its `createdAt`)."""
        try:
            response = self.http.request("POST", self._path("issues") + "/", safe=True,
                                         json_body={**fields, "unique": unique})
        except ConflictError as exc:
            found = self.find_by_unique(unique)
            if found is None:
                raise
            return found, "lost" if exc.after_lost_answer else "existed"
        return self._issue(response), "created"

    def add_comment(self, key: str, text: str, *, add_to_followers: bool = False) -> dict[str, Any]:
        """Comment on an issue.  By default without `isAddToFollowers`, which would otherwise make the
        robot a follower (and bump the version).  Not idempotent."""
        response = self.http.request(
            "POST", self._path("issues", key, "comments"), safe=False,
            params={"isAddToFollowers": "true" if add_to_followers else "false"}, json_body={"text": text},
        )
        return self._object(response, ("id",))

    def changelog(self, key: str, *, fields: Sequence[str] = (), types: Sequence[str] = (),
                  per_page: int = 50) -> Iterator[dict[str, Any]]:
        """The issue's changes, oldest first.  The cursor is the `id` of the `rel="next"` link."""
        params: dict[str, Any] = {"perPage": per_page, "field": list(fields), "type": list(types)}
        for _ in range(MAX_PAGES):
            response = self.http.request("GET", self._path("issues", key, "changelog"), safe=True,
                                         params=params)
            yield from self._list(response, ("id", "type"))
            link = response.links.get("next", {}).get("url")
            cursor = parse_qs(urlsplit(link).query).get("id") if link else None
            if not cursor:
                return
            params = {**params, "id": cursor[0]}

    # -- users and reference data -----------------------------------------------------------

    def list_users(self) -> list[dict[str, Any]]:
        """Every user of the organization (`uid`, `login`, `email`, ...), all pages."""
        users: list[dict[str, Any]] = []
        for _, page in self._pages("GET", self._path("users"), keys=("uid", "login")):
            users.extend(page)
        return users

    def get_user(self, uid_or_login: str) -> dict[str, Any] | None:
        try:
            response = self.http.request("GET", self._path("users", uid_or_login), safe=True)
        except NotFoundError:
            return None
        return self._object(response, ("uid", "login"))

    def myself(self) -> dict[str, Any]:
        """The token's own user; its `uid` tells the bridge's own changes apart (echo suppression)."""
        return self._object(self.http.request("GET", self._path("myself"), safe=True), ("uid", "login"))

    def catalog(self, name: str) -> list[dict[str, Any]]:
        """A reference list whose entries have a `key`: statuses, resolutions, priorities, ..."""
        if not name.isalpha():
            raise ValueError(f"not a catalog name: {name!r}")
        return self._list(self.http.request("GET", self._path(name), safe=True), ("key",))

    def statuses(self) -> list[dict[str, Any]]:
        return self.catalog("statuses")

    def resolutions(self) -> list[dict[str, Any]]:
        return self.catalog("resolutions")

    def get_queue(self, key: str, expand: str | None = None) -> dict[str, Any]:
        params = {"expand": expand} if expand else None
        return self._object(self.http.request("GET", self._path("queues", key), safe=True, params=params),
                            ("key",))

    def queue_workflows(self, queue: str) -> dict[str, list[str]]:
        """Workflow id -> the issue types (keys) that follow it in `queue`
        (`GET /queues/{queue}/workflows`, documented: keys are workflow ids, values arrays of issue
        types).  A type given as a reference or as a bare key is accepted alike."""
        response = self.http.request("GET", self._path("queues", queue, "workflows"), safe=True)
        data = self.http.json(response)
        if not isinstance(data, dict):
            raise self.http.bad(response, f"expected a JSON object, got {type(data).__name__}")
        result: dict[str, list[str]] = {}
        for workflow_id, types in data.items():
            if not isinstance(types, list):
                raise self.http.bad(response, f"issue types of workflow {workflow_id!r} are not a list")
            result[str(workflow_id)] = [key for key in (ref_key(t) for t in types) if key]
        return result

    def user_rights(self, queue: str, user: str) -> dict[str, Any]:
        """`user`'s rights in `queue` (`GET /queues/{q}/permissions/users/{login or uid}`,
        documented): right name (READ, WRITE, CREATE, GRANT, DENY) -> the users, groups and
        roles it is held through."""
        response = self.http.request("GET", self._path("queues", queue, "permissions", "users", user), safe=True)
        rights = self._object(response, ("permissions",))["permissions"]
        if not isinstance(rights, dict):
            raise self.http.bad(response, "permissions is not an object")
        return rights

    def workflow(self, workflow_id: str) -> dict[str, Any]:
        """One workflow as its admin defined it: `steps`, each a status with the actions leaving it
        (`GET /workflows/{id}`)."""
        return self._object(self.http.request("GET", self._path("workflows", workflow_id), safe=True),
                            ("steps",))

    # -- queue triggers (push hints; reference §13) -------------------------------------------

    def create_trigger(self, queue: str, trigger: dict[str, Any]) -> dict[str, Any]:
        """Create a trigger in `queue` (`POST /{ver}/queues/{q}/triggers`; needs queue
        administration rights).  There is no `unique` key for triggers and no documented listing
        to look one up afterwards, so a create is not idempotent: an ambiguous failure (a
        timeout, a 5xx) is raised, never retried; the caller cannot tell whether it landed."""
        response = self.http.request("POST", self._path("queues", queue, "triggers"), safe=False,
                                     json_body=trigger)
        return self._trigger(response)

    def get_trigger(self, queue: str, trigger_id: str) -> dict[str, Any] | None:
        """One trigger (`GET .../triggers/{id}`), or None when it is gone (an admin deleted it)."""
        try:
            response = self.http.request("GET", self._path("queues", queue, "triggers", trigger_id), safe=True)
        except NotFoundError:
            return None
        return self._trigger(response)

    def update_trigger(self, queue: str, trigger_id: str, fields: dict[str, Any], *, version: int) -> dict[str, Any]:
        """Change a trigger if it is still at `version` (`PATCH .../triggers/{id}?version=N`;
        each change bumps the version).  Version-guarded, so safe to retry after a lost answer:
        a repeat either matches or meets a 409 (ConflictError)."""
        if not fields:
            raise ValueError("nothing to update: PATCH only real changes (each one bumps the version)")
        response = self.http.request("PATCH", self._path("queues", queue, "triggers", trigger_id), safe=True,
                                     params={"version": version}, json_body=fields)
        return self._trigger(response)

    def trigger_deliveries(self, queue: str, trigger_id: str, *, limit: int = 10) -> list[dict[str, Any]]:
        """The latest requests a trigger's HTTP action sent, newest first (`GET /v3/queues/{q}/
        triggers/{id}/webhooks/log`, documented for v3 only, whatever `api_version` says; 10
        entries by default, at most 100).  The shape of an entry is not documented: they are
        returned as they come, for an operator to read."""
        if not 1 <= limit <= 100:
            raise ValueError("limit must be 1..100 (the API's maximum)")
        path = "/" + "/".join(["v3", *(quote(p, safe="") for p in ("queues", queue, "triggers", trigger_id))])
        response = self.http.request("GET", path + "/webhooks/log", safe=True, params={"limit": limit})
        return self._list(response, ())

    def _trigger(self, response: httpx.Response) -> dict[str, Any]:
        trigger = self._object(response, ("id", "version"))
        if isinstance(trigger["id"], bool) or not isinstance(trigger["id"], (int, str)) or not str(trigger["id"]):
            raise self.http.bad(response, "trigger id is neither a number nor a string")
        if isinstance(trigger["version"], bool) or not isinstance(trigger["version"], int):
            raise self.http.bad(response, "trigger version is not an integer")
        if not isinstance(trigger.get("actions", []), list) or not isinstance(trigger.get("conditions", []), list):
            raise self.http.bad(response, "trigger actions or conditions are not lists")
        return trigger


__all__ = ["TrackerClient"]
