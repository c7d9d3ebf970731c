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
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, Literal
from urllib.parse import parse_qs, quote, urlsplit

import httpx

from bridge.clients.http import ApiHttp, RequestStats, RetryPolicy, check_types, require
from bridge.core.workflow import ref_key
from bridge.errors import BadResponseError, ConflictError, MalformedItemError, NotFoundError

Created = Literal["created", "existed", "lost"]
SEARCH_BATCH = 100
PAGE_SIZE = 100
MAX_PAGES = 10_000  # a runaway-pagination guard, far above any real listing (10k rows = 100 pages)
ISSUE_KEYS = ("id", "key", "version")
_NONE = type(None)
# The types of the fields the bridge reads; anything else is a bad response for that issue.
ISSUE_TYPES: dict[str, tuple[type, ...]] = {
    "key": (str,), "status": (dict,), "assignee": (dict, _NONE), "followers": (list, _NONE),
    "queue": (dict, _NONE), "type": (dict, _NONE), "updatedAt": (str, _NONE),
}


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
    ) -> Iterator[dict[str, Any]]:
        """Stream the issues of one search, page by page.  Exactly one of filter/query/queue."""
        selectors = {"filter": filter, "query": query, "queue": queue}
        given = {k: v for k, v in selectors.items() if v is not None}
        if len(given) != 1:
            raise ValueError("give exactly one of filter, query and queue")
        body: dict[str, Any] = dict(given)
        if order is not None:
            body["order"] = order
        return self._stream(body, per_page)

    def _stream(self, body: dict[str, Any], per_page: int) -> Iterator[dict[str, Any]]:
        seen: set[tuple[str, int]] = set()
        for _, issues in self._pages("POST", self._path("issues", "_search"), json_body=body,
                                     per_page=per_page, keys=ISSUE_KEYS):
            for issue in issues:
                mark = (str(issue["key"]), int(issue["version"]))
                if mark not in seen:  # pages are recomputed: the same row may show up twice
                    seen.add(mark)
                    yield issue

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


__all__ = ["TrackerClient"]
