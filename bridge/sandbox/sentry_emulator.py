"""An in-memory Sentry (one organization) that answers like the real web API where the bridge can
tell the difference.

The spec is "What a faithful test fake must reproduce" in `reference/sentry-api.md` (items 1-10
and 12; webhooks are not sent).  The points that matter most for the bridge, and are therefore
strict here:

* a missing `query` means the *default* query (`is:unresolved issue.priority:[high, medium]`), so
  a client that forgets to send it silently loses issues, as against the real server;
* the event window defaults to 90 days on `lastSeen`; `group=` ignores query, window and status;
* pagination follows `Link` with `results="true"`/`"false"`, with Sentry's score-based cursors
  (`value:offset:is_prev`), and pages can be short (the auto-resolve "HACK");
* `isBookmarked`, `hasSeen` and `isSubscribed` are relative to the caller; another user's
  bookmarks are visible only through a `bookmarks:<email>` search, which finds nothing for users
  who sign in only through SSO;
* `status:"archived"` is refused; `resolvedInNextRelease` needs releases; `assignedTo: null` is
  refused while `""` unassigns; assignees must be in a team that has the issue's project;
* with `rate_limit_per_second` set, every answer carries the five `X-Sentry-Rate-Limit-*`
  headers and a 429 is a bare JSON string served as `text/html`, without `Retry-After`;
  `rate_limit_headers = False` plays a self-hosted Sentry, where no answer carries them;
* besides the org-scoped paths the bridge uses, the deprecated project-scoped list and bulk
  mutate (`/api/0/projects/{org}/{project}/issues/`) answer as `sentry-cli issues` needs them,
  and `GET /api/0/organizations/{org}/releases/` lists each project's releases (doctor asks it;
  it wants `project:read`, which the bridge's default token does not have).

Besides the HTTP API there is a "people" API (`add_issue`, `set_status`, `assign`, `bookmark`,
`add_event`, ...) for tests and the demo: it plays a person in the Sentry UI (no rate limits, and
activity is recorded with that person as the actor).

Inspectable state: `issues` (id -> `SentryIssue`), `users`, `members`, `projects`, `teams`,
`apps`, plus the request log of `EmulatorBase`.  Knobs are plain attributes, set after
construction; they are listed in `SentryEmulator.__init__`.
"""

from __future__ import annotations

import hashlib
import hmac
import html
import itertools
import json
import queue
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from bridge.sandbox.http import EmulatorBase, EmuRequest, EmuResponse, Fault, json_response

DEFAULT_SCOPES: tuple[str, ...] = ("event:read", "event:write", "member:read", "org:read", "team:read")
DEFAULT_TOKEN = "sentry-token"  # noqa: S105 - the emulator's well-known test token
DEFAULT_QUERY = "is:unresolved issue.priority:[high, medium]"
DEFAULT_APP_SLUG = "sentry-tracker-bridge"
MAX_LIMIT = 100
MAX_HITS = 1000
DEFAULT_WINDOW = timedelta(days=90)
CONCURRENT_LIMIT = 25
DEPRECATION_DATE = "2025-01-01T00:00:00Z"  # the real value (CELL_API_DEPRECATION_DATE) is unknown

NOT_FOUND = {"detail": "The requested resource does not exist"}
NO_PERMISSION = {"detail": "You do not have permission to perform this action."}
BAD_ACTOR = "Could not parse actor. Format should be `type:id` where type is `team` or `user`."
NO_RELEASE_MESSAGE = "No release data present in the system to form a basis for 'Next Release'"

EVENT_READ = frozenset({"event:read", "event:write", "event:admin"})
EVENT_WRITE = frozenset({"event:write", "event:admin"})
EVENT_ADMIN = frozenset({"event:admin"})
MEMBER_READ = frozenset({"member:read", "member:write", "member:admin"})
ORG_READ = frozenset({"org:read", "org:write", "org:admin"})
TEAM_READ = frozenset({"team:read", "team:write", "team:admin"})
INSTALLATIONS_READ = frozenset({"org:read", "org:integrations"})
# OrganizationReleasePermission, GET: not among the bridge's default scopes
# Activity kind -> the `issue` webhook action it sends (unassign, bookmarks and priority send none).
HOOK_ACTIONS = {"set_resolved": "resolved", "set_resolved_in_release": "resolved", "set_unresolved": "unresolved",
                "set_ignored": "ignored", "assigned": "assigned"}
RELEASES_READ = frozenset({"project:read", "project:write", "project:admin", "project:releases", "org:ci"})

STATUS_UPDATE_CHOICES = ("resolved", "unresolved", "ignored", "resolvedInNextRelease", "muted")
STORED_STATUSES = ("unresolved", "resolved", "ignored", "reprocessing", "pending_deletion", "pending_merge")
HIDDEN_STATUSES = frozenset({"pending_deletion", "pending_merge"})
IGNORED_SUBSTATUSES = ("archived_until_escalating", "archived_until_condition_met", "archived_forever")
UNRESOLVED_SUBSTATUSES = ("escalating", "ongoing", "regressed", "new")
DEPRECATED_SUBSTATUSES = {
    "until_escalating": "archived_until_escalating",
    "until_condition_met": "archived_until_condition_met",
    "forever": "archived_forever",
}
LEVELS = ("sample", "debug", "info", "warning", "error", "fatal", "unknown")
PRIORITIES = ("low", "medium", "high")
SUBSCRIPTION_REASONS = {
    "bookmark": "bookmarked",
    "assigned": "assigned",
    "status_change": "changed_status",
    "comment": "commented",
    "unknown": "unknown",
}
IS_STATUS = {
    "unresolved": "unresolved",
    "resolved": "resolved",
    "ignored": "ignored",
    "archived": "ignored",
    "muted": "ignored",
    "reprocessing": "reprocessing",
}
IS_FLAGS = ("assigned", "unassigned", "linked", "unlinked", "for_review")
IGNORE_KEYS = ("ignoreDuration", "ignoreCount", "ignoreWindow", "ignoreUserCount", "ignoreUserWindow")
SORTS = ("date", "new", "freq", "user", "trends", "recommended", "priority", "inbox")
_RELATIVE = re.compile(r"([+-])(\d+)([smhdw])")
_PERIOD = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_SHORT_ID_ALPHABET = "0123456789ABCDEFGHJKLMNPQRSTUVWXYZ"


# -- small pure helpers ------------------------------------------------------------------------


def format_dt(moment: datetime) -> str:
    """Sentry's JSON encoder: UTC, always with microseconds, `Z`."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_dt(text: str) -> datetime:
    """An ISO-8601 date or date-time; naive values are UTC (as Sentry reads them)."""
    value = text.strip()
    if value.endswith("Z"):
        value = value[:-1] + "+00:00"
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def parse_period(text: str) -> timedelta | None:
    """`24h`, `14d`, `30m`, `2w`, `10s`; None when the text is not one."""
    match = _PERIOD.fullmatch(text.strip())
    if not match:
        return None
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def ms(moment: datetime) -> int:
    return int(moment.timestamp() * 1000)


def short_id_suffix(number: int) -> str:
    digits = ""
    while True:
        number, rest = divmod(number, len(_SHORT_ID_ALPHABET))
        digits = _SHORT_ID_ALPHABET[rest] + digits
        if number == 0:
            return digits


@dataclass(frozen=True)
class Cursor:
    """Sentry's cursor `value:offset:is_prev`; `has_results` is what the Link header reports."""

    value: int
    offset: int
    is_prev: bool
    has_results: bool = False

    def __str__(self) -> str:
        return f"{self.value}:{self.offset}:{int(self.is_prev)}"

    @classmethod
    def parse(cls, text: str) -> Cursor:
        """Raises `ValueError` for anything but three colon-separated numbers."""
        bits = text.split(":")
        if len(bits) != 3:
            raise ValueError(text)
        value = int(float(bits[0])) if "." in bits[0] else int(bits[0])
        return cls(value, int(bits[1]), bool(int(bits[2])))


def reverse_bisect_left(scores: Sequence[int], x: int, lo: int = 0, hi: int | None = None) -> int:
    """`bisect_left` for a descending list: the first index whose score is <= x."""
    hi = len(scores) if hi is None or hi > len(scores) else hi
    while lo < hi:
        mid = (lo + hi) // 2
        if scores[mid] > x:
            lo = mid + 1
        else:
            hi = mid
    return lo


def sequence_page(
    scores: Sequence[int], limit: int, cursor: Cursor | None
) -> tuple[int, int, Cursor, Cursor]:
    """Sentry's `SequencePaginator` over descending scores: (lo, hi, prev, next).

    Cursors carry a score and an offset among equal scores, so a page boundary stays put when new
    items arrive above it (what makes `sort=new` safe for full scans)."""
    cursor = cursor or Cursor(0, 0, False)
    total = len(scores)
    start_of_list = total if cursor.is_prev else 0
    position = start_of_list if cursor.value == 0 else reverse_bisect_left(scores, cursor.value)
    position += cursor.offset
    if cursor.is_prev:
        hi = min(position, total)
        lo = max(hi - limit, 0)
    else:
        lo = max(position, 0)
        hi = min(lo + limit, total)
    if not scores:
        return lo, hi, Cursor(cursor.value, cursor.offset, True, False), Cursor(
            cursor.value, cursor.offset, False, False
        )
    prev_score = scores[min(lo, total - 1)]
    prev = Cursor(prev_score, lo - reverse_bisect_left(scores, prev_score, hi=lo), True, lo > 0)
    next_score = scores[min(hi, total - 1)]
    nxt = Cursor(next_score, hi - reverse_bisect_left(scores, next_score, hi=hi), False, hi < total)
    return lo, hi, prev, nxt


def offset_page(total: int, limit: int, cursor: Cursor | None) -> tuple[int, int, Cursor, Cursor]:
    """Sentry's `OffsetPaginator` (members, teams): value = page size, offset = page number."""
    cursor = cursor or Cursor(0, 0, False)
    page = cursor.offset
    start = page * cursor.value
    if start < 0:
        raise ValueError("Pagination offset cannot be negative")
    stop = start + (cursor.value or limit) + 1
    window = list(range(start, min(stop, total)))
    if cursor.value != limit:
        window = window[-(limit + 1) :]
    nxt = Cursor(limit, page + 1, False, len(window) > limit)
    prev = Cursor(limit, page - 1, True, page > 0)
    window = window[:limit]
    if not window:
        return start, start, prev, nxt
    return window[0], window[-1] + 1, prev, nxt


def link_header(req: EmuRequest, prev: Cursor, nxt: Cursor) -> str:
    """The exact `Link` of `add_cursor_headers`: previous first; the query minus `cursor`."""
    query = urlencode([(k, v) for k, v in req.query if k != "cursor"])
    uri = f"{req.base_url}{req.path}?{query}"

    def one(name: str, cursor: Cursor) -> str:
        results = "true" if cursor.has_results else "false"
        return f'<{uri}&cursor={cursor}>; rel="{name}"; results="{results}"; cursor="{cursor}"'

    return ", ".join([one("previous", prev), one("next", nxt)])


# -- the search language -----------------------------------------------------------------------


class QueryError(ValueError):
    """A search query Sentry would refuse with `Error parsing search query: ...`."""


@dataclass(frozen=True)
class Term:
    """One search term.  `key` is "" for free text; `values` has several items for `[a, b]`."""

    key: str
    op: str
    values: tuple[str, ...]
    negated: bool = False


def _unquote(text: str) -> str:
    if len(text) >= 2 and text.startswith('"') and text.endswith('"'):
        return re.sub(r"\\(.)", r"\1", text[1:-1])
    if text.startswith('"'):
        raise QueryError(f"Unterminated quote in {text!r}")
    return text


def tokenize(text: str) -> list[str]:
    """Split on blanks outside quotes and brackets."""
    tokens: list[str] = []
    i, n = 0, len(text)
    while i < n:
        if text[i].isspace():
            i += 1
            continue
        start, in_quote, depth = i, False, 0
        while i < n:
            char = text[i]
            if in_quote:
                if char == "\\":
                    i += 2
                    continue
                if char == '"':
                    in_quote = False
            elif char == '"':
                in_quote = True
            elif char == "[":
                depth += 1
            elif char == "]":
                depth -= 1
                if depth < 0:
                    raise QueryError("Unexpected ']'")
            elif char.isspace() and depth == 0:
                break
            i += 1
        if in_quote:
            raise QueryError('Expected \'"\' but end of input found')
        if depth:
            raise QueryError("Expected ']' but end of input found")
        tokens.append(text[start:i])
    return tokens


def parse_query(text: str) -> list[Term]:
    """The subset of Sentry's issue search the bridge and the tests use."""
    terms: list[Term] = []
    for token in tokenize(text):
        if token in ("OR", "AND"):
            raise QueryError('Boolean statements containing "OR" or "AND" are not supported in this search')
        match = re.fullmatch(r"(!?)([A-Za-z_][A-Za-z0-9_.]*):(.*)", token, re.S)
        if not match:
            terms.append(Term("", "=", (_unquote(token),)))
            continue
        negated, key, raw = match.group(1) == "!", match.group(2), match.group(3)
        if raw == "":
            raise QueryError(f"Empty string after '{key}:'")
        op = "="
        for candidate in (">=", "<=", ">", "<"):
            if raw.startswith(candidate):
                op, raw = candidate, raw[len(candidate) :]
                break
        if raw.startswith("["):
            if not raw.endswith("]"):
                raise QueryError(f"Invalid list in {token!r}")
            values = tuple(_unquote(part.strip()) for part in raw[1:-1].split(","))
            if not values or any(not v for v in values):
                raise QueryError(f"Invalid list in {token!r}")
        else:
            values = (_unquote(raw),)
        terms.append(Term(key, op, values, negated))
    return terms


# -- state -------------------------------------------------------------------------------------


@dataclass
class SentryUser:
    id: str
    email: str
    name: str
    username: str
    emails: list[tuple[str, str, bool]]  # (UserEmail id, address, verified); the primary included
    date_joined: datetime
    sso_only: bool = False
    app_uuid: str | None = None  # set for a Sentry App proxy user


@dataclass
class SentryMember:
    id: str
    email: str
    user_id: str | None  # None: a pending invite
    date_created: datetime
    role: str = "member"


@dataclass
class SentryProject:
    id: str
    slug: str
    name: str
    releases: list[str]
    auto_resolve_hours: int | None
    date_created: datetime
    platform: str = "python"
    short_counter: int = 0


@dataclass
class SentryTeam:
    id: str
    slug: str
    name: str
    project_ids: set[str]
    user_ids: set[str]
    date_created: datetime
    all_projects: bool = False  # the organization-wide team: has every project, present and future


@dataclass
class SentryApp:
    id: int
    uuid: str
    slug: str
    name: str
    installation_uuid: str
    proxy_user_id: str


@dataclass
class SentryToken:
    scopes: frozenset[str]
    user_id: str | None  # None: an organization auth token (`org:ci`)
    app_uuid: str | None


@dataclass
class ExternalIssue:
    id: str
    issue_id: str
    app_uuid: str
    service_type: str
    display_name: str
    web_url: str


@dataclass
class Activity:
    id: str
    type: str
    user_id: str | None
    data: dict[str, Any]
    created: datetime


@dataclass
class SentryIssue:
    """One issue (a Group).  `status`/`substatus`/`status_details` are the stored values; what
    the API shows can differ (expired snoozes, auto-resolve), see `SentryEmulator.issue_json`."""

    id: str
    project_id: str
    short_id: str
    title: str
    culprit: str
    level: str
    status: str
    substatus: str | None
    first_seen: datetime
    last_seen: datetime
    active_at: datetime
    count: int
    user_count: int
    priority: str | None
    status_details: dict[str, Any] = field(default_factory=dict)
    status_actor_id: str | None = None
    priority_locked_at: datetime | None = None
    assignee: tuple[str, str] | None = None  # ("user", user id) or ("team", team id)
    bookmarks: dict[str, datetime] = field(default_factory=dict)  # user id -> when
    subscriptions: dict[str, tuple[bool, str]] = field(default_factory=dict)  # user id -> (active, reason)
    seen: dict[str, datetime] = field(default_factory=dict)  # user id -> last view
    activity: list[Activity] = field(default_factory=list)
    external: dict[str, ExternalIssue] = field(default_factory=dict)  # app uuid -> link
    share_id: str | None = None
    inbox: bool = True
    resolved_at: datetime | None = None


@dataclass
class Caller:
    token: str
    scopes: frozenset[str]
    user: SentryUser | None
    app: SentryApp | None


class _Fail(Exception):  # noqa: N818 - internal signal turned into an error response
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body


@dataclass
class _Update:
    """A validated PUT body (GroupValidator, partial)."""

    status: str | None = None  # resolved | resolvedInNextRelease | inRelease | unresolved | ignored
    substatus: str | None = None
    substatus_given: bool = False
    release: str | None = None
    ignore: dict[str, Any] = field(default_factory=dict)
    until_escalating: bool = False
    assign_given: bool = False
    assign: tuple[str, str] | None = None
    flags: dict[str, bool] = field(default_factory=dict)  # isBookmarked, isSubscribed, hasSeen, ...
    priority: str | None = None


_TRUE = {True, "1", "true", "True", "TRUE", "t", "yes", "y", "on"}
_FALSE = {False, "0", "false", "False", "FALSE", "f", "no", "n", "off"}


def _boolean(value: Any) -> bool | None:
    if isinstance(value, (bool, int, str)):
        if value in _TRUE:
            return True
        if value in _FALSE:
            return False
    return None


# -- the emulator ------------------------------------------------------------------------------


class SentryEmulator(EmulatorBase):
    """One organization of a Sentry server, in memory."""

    def __init__(
        self,
        org: str = "acme",
        *,
        rate_limit_per_second: int | None = None,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__()
        self.org = org
        self.org_id = "1"
        self._clock = now or (lambda: datetime.now(UTC))
        # -- knobs --------------------------------------------------------------------------
        self.rate_limit_per_second = rate_limit_per_second  # None: no limiter (and no headers on 2xx)
        # False: a self-hosted Sentry, whose rate-limit middleware returns early, so *no* answer carries
        # the five X-Sentry-Rate-Limit-* headers, not even a 429 that a proxy in front of it (or the
        # limiter above, standing in for one) sends; Retry-After is still added when asked for.
        self.rate_limit_headers = True
        self.rate_limits: dict[str, int] = {}  # per endpoint name ("issue", "issues", ...) overrides
        self.retry_after_on_429 = False  # an edge proxy that adds Retry-After (unconfirmed on sentry.io)
        self.open_membership = True  # members may read every project (Sentry's default)
        self.brownout = False  # the deprecated /api/0/issues/{id}/ answers 410
        # A Sentry-compatible server that selects by another parameter: group= is silently ignored
        # and the listing answers as if it were absent (doctor's group= probe must catch it).
        self.group_ignored = False
        self.stale_id_search_fallback = False  # bulk PUT with unknown ids mutates the search instead
        # resolvedInNextRelease in a project without releases: "400" (the validator's message),
        # "500" (older versions: IndexError) or "accept" (newest source: resolves anyway)
        self.no_release_behaviour = "400"
        # -- state --------------------------------------------------------------------------
        self.users: dict[str, SentryUser] = {}
        self.members: dict[str, SentryMember] = {}
        self.projects: dict[str, SentryProject] = {}
        self.teams: dict[str, SentryTeam] = {}
        self.apps: dict[str, SentryApp] = {}  # by uuid
        self.tokens: dict[str, SentryToken] = {}
        self.issues: dict[str, SentryIssue] = {}
        self.merged: dict[str, str] = {}  # merged issue id -> surviving issue id
        # Releases are organization objects tied to projects; which project has which version is
        # each project's `releases` list; this keeps a release's id and creation time.
        self.release_meta: dict[str, tuple[int, datetime]] = {}
        self._release_ids = itertools.count(1)
        self._ids = itertools.count(10001)
        self._issue_ids = itertools.count(5000000001)
        self._windows: dict[tuple[str, str, str], tuple[int, int]] = {}
        t0 = self.now()
        org_team = SentryTeam(self._next_id(), org, org.title(), set(), set(), t0, all_projects=True)
        self.teams[org_team.id] = org_team
        self.webhooks: dict[str, tuple[str, str]] = {}  # app uuid -> (url, client secret)
        self.hook_deliveries: list[tuple[str, int | str]] = []  # (url, status or error), in order
        self._hooks: queue.Queue[tuple[str, bytes, dict[str, str]]] | None = None
        self.installation_uuid = self.add_app(DEFAULT_APP_SLUG, "Sentry Tracker Bridge")
        self.add_token(DEFAULT_TOKEN, scopes=DEFAULT_SCOPES)
        self._routes()

    # -- people API: seeding --------------------------------------------------------------------

    def now(self) -> datetime:
        return self._clock()

    def add_project(
        self, slug: str, *, has_releases: bool = True, auto_resolve_hours: int | None = None
    ) -> str:
        """A project (and a team of that name for `add_user(projects=...)`); returns its id.
        `auto_resolve_hours` makes stale unresolved issues *look* resolved (and drop out of
        `is:unresolved` pages after the search, so pages come back short)."""
        with self.lock:
            if any(p.slug == slug for p in self.projects.values()):
                raise ValueError(f"project {slug!r} exists")
            project = SentryProject(
                self._next_id(), slug, slug.replace("-", " ").title(), ["1.0.0"] if has_releases else [],
                auto_resolve_hours, self.now(),
            )
            self.projects[project.id] = project
            for version in project.releases:
                self._release_record(version)
            team = SentryTeam(self._next_id(), slug, project.name, {project.id}, set(), self.now())
            self.teams[team.id] = team
            return project.id

    def add_release(self, project: str, version: str) -> None:
        """A release of `project` created now (a version already known elsewhere in the org is the
        same release, now also in this project)."""
        with self.lock:
            self._project(project).releases.append(version)
            self._release_record(version)

    def _release_record(self, version: str) -> tuple[int, datetime]:
        """The id and creation time of the org's release `version`, made on first sight."""
        if version not in self.release_meta:
            self.release_meta[version] = (next(self._release_ids), self.now())
        return self.release_meta[version]

    def add_app(self, slug: str, name: str | None = None) -> str:
        """An internal integration installed in the org, with its proxy user; returns the
        installation uuid."""
        with self.lock:
            app_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sentry-app:{self.org}:{slug}"))
            install = str(uuid.uuid5(uuid.NAMESPACE_URL, f"sentry-app-installation:{self.org}:{slug}"))
            proxy = SentryUser(
                self._next_id(), "", name or slug, uuid.uuid5(uuid.NAMESPACE_URL, f"proxy:{slug}").hex, [],
                self.now(), app_uuid=app_uuid,
            )
            self.users[proxy.id] = proxy
            app = SentryApp(len(self.apps) + 1, app_uuid, slug, name or slug, install, proxy.id)
            self.apps[app_uuid] = app
            return install

    def add_token(
        self,
        token: str,
        *,
        scopes: Iterable[str] = DEFAULT_SCOPES,
        user_email: str | None = None,
        app: str | None = None,
    ) -> None:
        """`user_email` None: an integration token of `app` (a slug; default: the bridge's own
        app), authenticating as that app's proxy user.  Scopes `["org:ci"]` make an org auth token
        (no user at all)."""
        with self.lock:
            scope_set = frozenset(scopes)
            if user_email is not None:
                user = self._user_by_email(user_email)
                if user is None:
                    raise ValueError(f"no user {user_email!r}")
                self.tokens[token] = SentryToken(scope_set, user.id, None)
            elif scope_set == {"org:ci"}:
                self.tokens[token] = SentryToken(scope_set, None, None)
            else:
                slug = app or DEFAULT_APP_SLUG
                the_app = next((a for a in self.apps.values() if a.slug == slug), None)
                if the_app is None:
                    raise ValueError(f"no app {slug!r}")
                self.tokens[token] = SentryToken(scope_set, the_app.proxy_user_id, the_app.uuid)

    def add_user(
        self,
        email: str,
        name: str | None = None,
        *,
        extra_emails: Sequence[str] = (),
        sso_only: bool = False,
        projects: Sequence[str] | None = None,
        pending_invite: bool = False,
    ) -> str:
        """An org member; returns the *user* id (for a pending invite, which has no user yet, the
        member id).  The user joins the org-wide team (`projects=None`) or the team of each
        project slug given."""
        with self.lock:
            if any(m.email.lower() == email.lower() for m in self.members.values()):
                raise ValueError(f"member {email!r} exists")
            if pending_invite:
                member = SentryMember(self._next_id(), email, None, self.now())
                self.members[member.id] = member
                return member.id
            user = SentryUser(
                self._next_id(), email, name or email, email,
                [(self._next_id(), address, True) for address in [email, *extra_emails]],
                self.now(), sso_only=sso_only,
            )
            self.users[user.id] = user
            member = SentryMember(self._next_id(), email, user.id, self.now())
            self.members[member.id] = member
            if projects is None:
                self._org_team().user_ids.add(user.id)
            else:
                for slug in projects:
                    self._project_team(self._project(slug).id).user_ids.add(user.id)
            return user.id

    def add_issue(
        self,
        project: str,
        title: str,
        *,
        status: str = "unresolved",
        substatus: str | None = "ongoing",
        level: str = "error",
        culprit: str = "",
        first_seen: datetime | None = None,
        last_seen: datetime | None = None,
        assignee: str | None = None,
        count: int = 1,
        user_count: int = 1,
        priority: str | None = None,
    ) -> str:
        """A new issue in `project` (a slug); returns its numeric id.  `priority` defaults from
        the level the way Sentry does without a severity score (error/fatal high, warning
        medium, else low).  Seeding records no activity."""
        with self.lock:
            proj = self._project(project)
            if status not in STORED_STATUSES:
                raise ValueError(f"bad status {status!r}")
            if level not in LEVELS:
                raise ValueError(f"bad level {level!r}")
            now = self.now()
            first = first_seen or now
            last = last_seen or (first if first_seen else now)
            if status == "resolved":
                substatus = None
            elif status == "ignored" and substatus not in IGNORED_SUBSTATUSES:
                substatus = "archived_forever"
            proj.short_counter += 1
            issue = SentryIssue(
                id=str(next(self._issue_ids)),
                project_id=proj.id,
                short_id=f"{proj.slug.upper()}-{short_id_suffix(proj.short_counter)}",
                title=title,
                culprit=culprit,
                level=level,
                status=status,
                substatus=substatus,
                first_seen=first,
                last_seen=last,
                active_at=first,
                count=count,
                user_count=user_count,
                priority=priority or self._initial_priority(level),
                inbox=status == "unresolved",
                resolved_at=now if status == "resolved" else None,
            )
            self.issues[issue.id] = issue
            if assignee is not None:
                user = self._user_by_email(assignee)
                if user is None:
                    raise ValueError(f"no user {assignee!r}")
                issue.assignee = ("user", user.id)
                issue.subscriptions[user.id] = (True, "assigned")
            return issue.id

    # -- people API: a person in the UI ---------------------------------------------------------

    def set_status(
        self,
        issue_id: str,
        status: str,
        *,
        substatus: str | None = None,
        in_next_release: bool = False,
        by: str | None = None,
    ) -> None:
        """status: unresolved | resolved | ignored; substatus inferred like the real PUT when None."""
        with self.lock:
            issue = self._issue(issue_id)
            actor = self._actor(by)
            if status not in ("unresolved", "resolved", "ignored"):
                raise ValueError(f"bad status {status!r}")
            upd = _Update(status="resolvedInNextRelease" if in_next_release else status)
            if substatus is not None:
                upd.substatus, upd.substatus_given = substatus, True
            if in_next_release and not self.projects[issue.project_id].releases:
                raise ValueError(NO_RELEASE_MESSAGE)
            self._apply_status(issue, upd, actor)

    def assign(self, issue_id: str, email: str | None, *, by: str | None = None) -> None:
        with self.lock:
            issue = self._issue(issue_id)
            actor = self._actor(by)
            target: tuple[str, str] | None = None
            if email is not None:
                user = self._user_by_email(email)
                if user is None:
                    raise ValueError(f"no user {email!r}")
                if issue.project_id not in self._team_projects(user.id):
                    raise ValueError("Cannot assign to non-team member")
                target = ("user", user.id)
            self._assign(issue, target, actor)

    def set_priority(self, issue_id: str, priority: str) -> None:
        """A person sets the priority in the UI (which locks it against Sentry's own changes)."""
        with self.lock:
            issue = self._issue(issue_id)
            if priority not in PRIORITIES:
                raise ValueError(f"bad priority {priority!r}")
            issue.priority, issue.priority_locked_at = priority, self.now()

    def bookmark(self, issue_id: str, email: str, on: bool = True) -> None:
        with self.lock:
            user = self._user_by_email(email)
            if user is None:
                raise ValueError(f"no user {email!r}")
            self._bookmark(self._issue(issue_id), user.id, on)

    def add_event(self, issue_id: str, *, at: datetime | None = None) -> None:
        """A new event: `lastSeen` and `count` move; a resolved issue regresses."""
        with self.lock:
            issue = self._issue(issue_id)
            when = at or self.now()
            issue.last_seen = max(issue.last_seen, when)
            issue.count += 1
            if issue.status == "resolved":
                issue.status, issue.substatus, issue.status_details = "unresolved", "regressed", {}
                issue.status_actor_id, issue.active_at, issue.inbox = None, when, True
                self._record(issue, "set_regression", None, {})

    def merge(self, child_ids: Sequence[str], into: str) -> None:
        """Merge issues into `into`; the merged ids keep resolving to it on the detail paths."""
        with self.lock:
            parent = self._issue(into)
            for child_id in child_ids:
                child = self.issues.pop(self._issue(child_id).id)
                parent.count += child.count
                self.merged[child.id] = parent.id

    def delete_issue(self, issue_id: str) -> None:
        with self.lock:
            self.issues.pop(self._issue(issue_id).id)

    def issue_json(self, issue_id: str) -> dict[str, Any]:
        """The issue serialized without user context (as in webhooks): permalink null,
        isBookmarked/hasSeen/isSubscribed false."""
        with self.lock:
            return self._serialize(self._issue(issue_id), None, None)

    def user_id(self, email: str) -> str:
        user = self._user_by_email(email)
        if user is None:
            raise KeyError(email)
        return user.id

    def member_id(self, email: str) -> str:
        for member in self.members.values():
            if member.email.lower() == email.lower():
                return member.id
        raise KeyError(email)

    def team_id(self, slug: str) -> str:
        for team in self.teams.values():
            if team.slug == slug:
                return team.id
        raise KeyError(slug)

    def activities(self, issue_id: str) -> list[Activity]:
        with self.lock:
            return list(self._issue(issue_id).activity)

    @property
    def proxy_user_id(self) -> str:
        """The user id of the bridge's own integration (the default token's actor)."""
        return self.apps[next(iter(self.apps))].proxy_user_id

    # -- faults ---------------------------------------------------------------------------------

    def fault_response(self, fault: Fault) -> EmuResponse:
        """Injected statuses answer with the bodies Sentry (or its edge) sends for them."""
        headers = dict(fault.headers)
        if fault.body:
            return EmuResponse(fault.status, fault.body, {"content-type": "application/json", **headers})
        if fault.status == 429:
            limit = self.rate_limit_per_second or 5
            reset = int(self.now().timestamp()) + 1
            rate_headers = self._advertised(limit, 0, reset)
            if self.retry_after_on_429:
                rate_headers["Retry-After"] = "1"
            return self._too_many(limit, {**rate_headers, **headers})
        if fault.status in (502, 503, 504):
            page = f"<html><body><h1>{fault.status} Service Unavailable</h1></body></html>".encode()
            return EmuResponse(fault.status, page, {"content-type": "text/html", **headers})
        bodies: dict[int, Any] = {
            400: {"detail": "Invalid request"},
            401: {"detail": "Invalid token"},
            403: NO_PERMISSION,
            404: NOT_FOUND,
            409: {"detail": "Conflict"},
            410: {"message": "This API no longer exists."},
        }
        body = bodies.get(fault.status, {"detail": "Internal Error", "errorId": uuid.uuid4().hex})
        return json_response(fault.status, body, headers)

    # -- routing --------------------------------------------------------------------------------

    def route(self, req: EmuRequest) -> EmuResponse:
        return self.router.dispatch(req, lambda: json_response(404, NOT_FOUND))

    def _routes(self) -> None:
        org = r"/api/0/organizations/(?P<org>[^/]+)"
        issue = org + r"/issues/(?P<issue>[^/]+)"
        links = r"/api/0/sentry-app-installations/(?P<install>[^/]+)/external-issues/"
        project_path = r"/api/0/projects/(?P<org>[^/]+)/(?P<project>[^/]+)"
        table: list[tuple[str, str, str, frozenset[str], Callable[..., EmuResponse]]] = [
            ("GET", org + r"/issues/", "issues", EVENT_READ, self._h_list),
            ("PUT", org + r"/issues/", "issues", EVENT_WRITE, self._h_bulk_update),
            ("GET", issue + "/", "issue", EVENT_READ, self._h_detail),
            ("PUT", issue + "/", "issue", EVENT_WRITE, self._h_update),
            ("GET", issue + "/activities/", "activities", EVENT_READ, self._h_activities),
            ("GET", issue + "/external-issues/", "issue-external-issues", EVENT_READ, self._h_issue_links),
            ("GET", r"/api/0/issues/(?P<issue>[^/]+)/", "issue", EVENT_READ, self._h_detail),
            ("PUT", r"/api/0/issues/(?P<issue>[^/]+)/", "issue", EVENT_WRITE, self._h_update),
            ("GET", org + r"/members/", "members", MEMBER_READ, self._h_members),
            ("GET", org + r"/teams/", "teams", ORG_READ, self._h_teams),
            ("GET", r"/api/0/teams/(?P<org>[^/]+)/(?P<team>[^/]+)/members/", "team-members", TEAM_READ,
             self._h_team_members),
            ("GET", org + r"/sentry-app-installations/", "installations", INSTALLATIONS_READ,
             self._h_installations),
            ("POST", links, "external-issues", EVENT_READ, self._h_link),
            ("GET", project_path + r"/issues/", "project-issues", EVENT_READ, self._h_project_list),
            ("PUT", project_path + r"/issues/", "project-issues", EVENT_WRITE, self._h_project_bulk_update),
            ("GET", org + r"/releases/", "releases", RELEASES_READ, self._h_releases),
            ("DELETE", links + r"(?P<ext>[^/]+)/", "external-issue", EVENT_ADMIN, self._h_unlink),
        ]
        for method, pattern, name, scopes, handler in table:
            self.router.add(method, pattern, self._endpoint(name, scopes, handler))

    def _endpoint(
        self, name: str, scopes: frozenset[str], handler: Callable[..., EmuResponse]
    ) -> Callable[..., EmuResponse]:
        """Rate limit, authenticate, find the org, check scopes: in Sentry's order."""

        def run(req: EmuRequest, **kw: str) -> EmuResponse:
            token = self._raw_token(req)
            rate_headers, refused = self._rate_limit(token or "anonymous", name, req.method)
            if refused is not None:
                return refused
            try:
                caller = self._authenticate(req)
                deprecated = req.path.startswith("/api/0/issues/")
                if deprecated and self.brownout:
                    raise _Fail(410, {"message": "This API no longer exists."})
                if "org" in kw and kw["org"] not in (self.org, self.org_id):
                    raise _Fail(404, NOT_FOUND)
                if not caller.scopes & scopes:
                    raise _Fail(403, NO_PERMISSION)
                response = handler(req, caller, **{k: v for k, v in kw.items() if k != "org"})
                if deprecated:
                    response.headers["X-Sentry-Deprecation-Date"] = DEPRECATION_DATE
                    response.headers["X-Sentry-Replacement-Endpoint"] = (
                        "/api/0/organizations/{organization_id_or_slug}/issues/{issue_id}/"
                    )
            except _Fail as fail:
                response = json_response(fail.status, fail.body)
            response.headers.update(rate_headers)
            return response

        return run

    # -- auth and rate limits -------------------------------------------------------------------

    @staticmethod
    def _raw_token(req: EmuRequest) -> str | None:
        parts = req.headers.get("authorization", "").split()
        return parts[1] if len(parts) == 2 and parts[0].lower() == "bearer" else None

    def _authenticate(self, req: EmuRequest) -> Caller:
        header = req.headers.get("authorization", "")
        parts = header.split()
        if not parts or parts[0].lower() != "bearer":
            raise _Fail(401, {"detail": "Authentication credentials were not provided."})
        if len(parts) == 1:
            raise _Fail(401, {"detail": "Invalid token header. No credentials provided."})
        if len(parts) > 2:
            raise _Fail(401, {"detail": "Invalid token header. Token string should not contain spaces."})
        token = self.tokens.get(parts[1])
        if token is None:
            raise _Fail(401, {"detail": "Invalid token"})
        user = self.users.get(token.user_id) if token.user_id else None
        app = self.apps.get(token.app_uuid) if token.app_uuid else None
        return Caller(parts[1], token.scopes, user, app)

    def _rate_limit(self, key: str, endpoint: str, method: str) -> tuple[dict[str, str], EmuResponse | None]:
        """A fixed one-second window per (caller, endpoint, method), like Sentry's middleware."""
        limit = self.rate_limits.get(endpoint, self.rate_limit_per_second)
        if limit is None:
            return {}, None
        window = int(self.now().timestamp())
        slot = (key, endpoint, method)
        start, used = self._windows.get(slot, (window, 0))
        if start != window:
            used = 0
        if used >= limit:
            headers = self._advertised(limit, 0, window + 1)
            if self.retry_after_on_429:
                headers["Retry-After"] = "1"
            self._windows[slot] = (window, used)
            return headers, self._too_many(limit, headers)
        self._windows[slot] = (window, used + 1)
        return self._advertised(limit, limit - used - 1, window + 1), None

    def _advertised(self, limit: int, remaining: int, reset: int) -> dict[str, str]:
        """The rate-limit headers an answer carries: none at all on a self-hosted Sentry."""
        return self._rate_headers(limit, remaining, reset) if self.rate_limit_headers else {}

    @staticmethod
    def _rate_headers(limit: int, remaining: int, reset: int) -> dict[str, str]:
        return {
            "X-Sentry-Rate-Limit-Limit": str(limit),
            "X-Sentry-Rate-Limit-Remaining": str(remaining),
            "X-Sentry-Rate-Limit-Reset": str(reset),
            "X-Sentry-Rate-Limit-ConcurrentLimit": str(CONCURRENT_LIMIT),
            "X-Sentry-Rate-Limit-ConcurrentRemaining": str(CONCURRENT_LIMIT - 1),
        }

    @staticmethod
    def _too_many(limit: int, headers: dict[str, str]) -> EmuResponse:
        """A bare JSON string in a plain Django HttpResponse: content type text/html."""
        text = (
            '"You are attempting to use this endpoint too frequently. '
            f'Limit is {limit} requests in 1 seconds"'
        )
        return EmuResponse(429, text.encode(), {"content-type": "text/html; charset=utf-8", **headers})

    # -- handlers: issues -----------------------------------------------------------------------

    def _h_list(self, req: EmuRequest, caller: Caller) -> EmuResponse:
        window = self._window(req)
        group_period = req.arg("groupStatsPeriod")
        if group_period is not None and group_period not in ("", "24h", "14d", "auto"):
            raise _Fail(400, {"detail": "Invalid stats_period. Valid choices are '', '24h', and '14d'"})
        projects = self._selected_projects(req, caller)
        shape = self._shape(req)
        if req.has_arg("group") and not self.group_ignored:
            raw = req.args("group")
            if not all(re.fullmatch(r"-?\d+", v.strip()) for v in raw):
                raise _Fail(400, {"detail": "Group ids must be integers"})
            wanted = sorted({str(int(v)) for v in raw}, key=int)
            found = [self.issues[i] for i in wanted
                     if i in self.issues and self.issues[i].project_id in projects]
            return json_response(200, [self._serialize(i, caller, req.base_url, **shape) for i in found])
        return self._search_page(req, caller, projects, window, lambda i: self._serialize(
            i, caller, req.base_url, **shape))

    def _search_page(
        self,
        req: EmuRequest,
        caller: Caller,
        projects: set[str],
        window: tuple[datetime, datetime] | None,
        serialize: Callable[[SentryIssue], dict[str, Any]],
    ) -> EmuResponse:
        """One page of an issue search (`build_query_params_from_request`, shared by the org and
        project lists): `query` (absent: the default query), `sort`, `limit`, `cursor`, then the
        Link, X-Hits and X-Max-Hits headers.  `window` None: no event window at all."""
        query = req.arg("query")
        terms = self._parse(DEFAULT_QUERY if query is None else query)
        sort = req.arg("sort") or "date"
        if sort not in SORTS:
            raise _Fail(400, {"detail": f"Invalid sort: {sort}"})
        limit = self._limit(req.arg("limit"))
        cursor = self._cursor(req.arg("cursor"))
        if cursor is not None and cursor.offset < 0:
            raise _Fail(400, {"detail": "Invalid cursor parameter."})
        match = self._matcher(terms, caller)
        candidates = [
            i for i in self.issues.values()
            if i.project_id in projects and i.status not in HIDDEN_STATUSES
            and (window is None or (i.last_seen >= window[0] and i.first_seen <= window[1])) and match(i)
        ]
        score = self._score(sort)
        ordered = sorted(candidates, key=lambda i: (score(i), int(i.id)), reverse=True)
        scores = [score(i) for i in ordered]
        lo, hi, prev, nxt = sequence_page(scores, limit, cursor)
        items = [serialize(i) for i in ordered[lo:hi]]
        # Sentry's "HACK": auto-resolved issues are dropped *after* the search, so a page of an
        # is:unresolved search can be short while more pages exist.
        wanted_statuses = self._status_labels(terms)
        if wanted_statuses and "unresolved" in wanted_statuses:
            items = [item for item in items if item["status"] in wanted_statuses]
        headers = {
            "Link": link_header(req, prev, nxt),
            "X-Hits": str(min(len(ordered), MAX_HITS)),
            "X-Max-Hits": str(MAX_HITS),
        }
        return json_response(200, items, headers)

    def _h_detail(self, req: EmuRequest, caller: Caller, issue: str) -> EmuResponse:
        found = self._visible_issue(issue, caller)
        return json_response(200, self._serialize(found, caller, req.base_url, detail=True))

    def _h_update(self, req: EmuRequest, caller: Caller, issue: str) -> EmuResponse:
        found = self._visible_issue(issue, caller)
        body = self._body(req)
        upd = self._validate(body, [found], caller)
        self._apply(found, upd, caller)
        return json_response(200, self._serialize(found, caller, req.base_url))

    def _h_bulk_update(self, req: EmuRequest, caller: Caller) -> EmuResponse:
        return self._bulk(req, caller, self._selected_projects(req, caller), self._window(req))

    def _bulk(
        self, req: EmuRequest, caller: Caller, projects: set[str], window: tuple[datetime, datetime] | None
    ) -> EmuResponse:
        """`update_groups_with_search_fn`: the `id`s given (only those in `projects`), or with no
        `id` the request's search; 204 when nothing is found; else the delta of the first issue."""
        raw_ids = req.args("id")
        if not all(re.fullmatch(r"\d+", v.strip()) for v in raw_ids):
            raise _Fail(400, {"detail": "Group ids must be integers"})
        targets = [self.issues[v] for v in dict.fromkeys(raw_ids) if v in self.issues
                   and self.issues[v].project_id in projects]
        if not raw_ids or (not targets and self.stale_id_search_fallback):
            # no ids: the request's search (the default query when absent) picks the issues
            query = req.arg("query")
            match = self._matcher(self._parse(DEFAULT_QUERY if query is None else query), caller)
            targets = [i for i in self.issues.values() if i.project_id in projects
                       and i.status not in HIDDEN_STATUSES and (window is None or i.last_seen >= window[0])
                       and match(i)][:1000]
        if not targets:
            return EmuResponse(204)
        body = self._body(req)
        upd = self._validate(body, targets, caller)
        for issue in targets:
            self._apply(issue, upd, caller)
        return json_response(200, self._delta(targets[0], upd, caller))

    def _h_project_list(self, req: EmuRequest, caller: Caller, project: str) -> EmuResponse:
        """`GET /projects/{org}/{project}/issues/` (deprecated, but what sentry-cli lists with).

        Like the org list it parses `query` (absent: the default query), `sort`, `limit` and
        `cursor` (`cursor=` empty is no cursor), and pages with Link headers; unlike it there is
        no event window (`prep_search` passes no dates) and `statsPeriod` only picks the stats
        series: `''` (none), `24h` (the default) or `14d`, else 400.  Items are the plain
        `StreamGroupSerializer`: the issue plus `stats`, without `lifetime`/`filtered`."""
        found = self._path_project(project, caller)
        period = req.arg("statsPeriod")
        if period not in (None, "", "24h", "14d"):
            raise _Fail(400, {"detail": "Invalid stats_period. Valid choices are '', '24h', and '14d'"})
        period = "24h" if period is None else period

        def serialize(issue: SentryIssue) -> dict[str, Any]:
            data = self._serialize(issue, caller, req.base_url)
            if period == "24h":
                data["stats"] = {"24h": self._series(issue, hours=24)}
            elif period == "14d":
                data["stats"] = {"14d": self._series(issue, hours=24 * 14, step_hours=24)}
            return data

        return self._search_page(req, caller, {found.id}, None, serialize)

    def _h_project_bulk_update(self, req: EmuRequest, caller: Caller, project: str) -> EmuResponse:
        """`PUT /projects/{org}/{project}/issues/?id=..`: the bulk mutate limited to one project
        (ids of other projects are not touched; none left: 204), as sentry-cli's
        `issues resolve|mute|unresolve` send it."""
        found = self._path_project(project, caller)
        return self._bulk(req, caller, {found.id}, None)

    def _h_activities(self, req: EmuRequest, caller: Caller, issue: str) -> EmuResponse:
        found = self._visible_issue(issue, caller)
        return json_response(200, {"activity": self._activity_json(found)})

    def _h_issue_links(self, req: EmuRequest, caller: Caller, issue: str) -> EmuResponse:
        found = self._visible_issue(issue, caller)
        return json_response(200, [self._link_json(link) for link in found.external.values()])

    # -- handlers: releases ---------------------------------------------------------------------

    def _h_releases(self, req: EmuRequest, caller: Caller) -> EmuResponse:
        """`GET /organizations/{org}/releases/` ("List an Organization's Releases").

        `project` takes numeric ids (else 400); omitted: the caller's member projects, `-1`: all it
        may see, an inaccessible one: 403; no project at all: `[]`.  Newest first (`sort=date`, the
        only order emulated), `status` `open` (default; every emulated release is open) or
        `archived`, `query` a case-insensitive part of the version (the source's free-text filter;
        the OpenAPI text says "starts with").  Offset pages of `per_page` (≤ 100) with Link."""
        raw = req.args("project")
        if not all(re.fullmatch(r"-?\d+", v.strip()) for v in raw):
            raise _Fail(400, {"detail": "Invalid project parameter. Values must be numbers."})
        accessible = self._accessible_projects(caller)
        wanted = {str(int(v)) for v in raw}
        if not wanted:
            chosen = self._member_projects(caller) & accessible
        elif "-1" in wanted:
            chosen = accessible
        else:
            if any(v not in self.projects or v not in accessible for v in wanted):
                raise _Fail(403, NO_PERMISSION)
            chosen = wanted
        status = req.arg("status", "open")
        if status and status not in ("open", "archived"):
            raise _Fail(400, {"detail": "invalid value for status"})
        sort = req.arg("sort") or "date"
        if sort != "date":
            raise _Fail(400, {"detail": f"sort={sort!r} is not emulated (only date)"})
        per_page = self._per_page(req)
        cursor = self._cursor(req.arg("cursor"))
        versions: dict[str, list[SentryProject]] = {}
        for project_id in sorted(chosen, key=int):
            project = self.projects[project_id]
            for version in project.releases:
                versions.setdefault(version, []).append(project)
        query = (req.arg("query") or "").strip().lower()
        listed = [] if status == "archived" else [
            (version, projects) for version, projects in versions.items() if query in version.lower()
        ]
        listed.sort(key=lambda item: (self._release_record(item[0])[1], self._release_record(item[0])[0]),
                    reverse=True)
        try:
            lo, hi, prev, nxt = offset_page(len(listed), per_page, cursor)
        except ValueError as exc:
            raise _Fail(400, {"detail": str(exc)}) from None
        body = [self._release_json(version, projects) for version, projects in listed[lo:hi]]
        return json_response(200, body, {"Link": link_header(req, prev, nxt)})

    def _release_json(self, version: str, projects: Sequence[SentryProject]) -> dict[str, Any]:
        """The documented `OrganizationRelease` fields; no commits, deploys or events are kept."""
        release_id, created = self._release_record(version)
        return {
            "id": release_id,
            "version": version,
            "shortVersion": version,
            "status": "open",
            "ref": None,
            "url": None,
            "dateReleased": None,
            "dateCreated": format_dt(created),
            "data": {},
            "newGroups": 0,
            "owner": None,
            "commitCount": 0,
            "lastCommit": None,
            "deployCount": 0,
            "lastDeploy": None,
            "authors": [],
            "projects": [{"id": int(p.id), "name": p.name, "slug": p.slug} for p in projects],
            "firstEvent": None,
            "lastEvent": None,
        }

    # -- handlers: people, teams, apps ----------------------------------------------------------

    def _h_members(self, req: EmuRequest, caller: Caller) -> EmuResponse:
        per_page = self._per_page(req)
        cursor = self._cursor(req.arg("cursor"))
        members = sorted(self._listed_members(), key=lambda m: (m.email.lower(), int(m.id)))
        query = req.arg("query")
        if query:
            members = self._filter_members(members, query)
        try:
            lo, hi, prev, nxt = offset_page(len(members), per_page, cursor)
        except ValueError as exc:
            raise _Fail(400, {"detail": str(exc)}) from None
        body = [self._member_json(m) for m in members[lo:hi]]
        return json_response(200, body, {"Link": link_header(req, prev, nxt)})

    def _h_teams(self, req: EmuRequest, caller: Caller) -> EmuResponse:
        per_page = self._per_page(req)
        cursor = self._cursor(req.arg("cursor"))
        teams = sorted(self.teams.values(), key=lambda t: t.slug)
        query = (req.arg("query") or "").lower()
        if query:
            teams = [t for t in teams if query in t.slug.lower() or query in t.name.lower()]
        try:
            lo, hi, prev, nxt = offset_page(len(teams), per_page, cursor)
        except ValueError as exc:
            raise _Fail(400, {"detail": str(exc)}) from None
        detailed = req.arg("detailed") != "0"
        body = [self._team_json(t, caller, detailed) for t in teams[lo:hi]]
        return json_response(200, body, {"Link": link_header(req, prev, nxt)})

    def _h_team_members(self, req: EmuRequest, caller: Caller, team: str) -> EmuResponse:
        found = next((t for t in self.teams.values() if team in (t.slug, t.id)), None)
        if found is None:
            raise _Fail(404, NOT_FOUND)
        members = [m for m in self._listed_members() if m.user_id in self._team_user_ids(found)]
        body = [{**self._member_json(m), "teamRole": None, "teamSlug": found.slug} for m in members]
        return json_response(200, body)

    def _h_installations(self, req: EmuRequest, caller: Caller) -> EmuResponse:
        body = [
            {
                "app": {"uuid": app.uuid, "slug": app.slug, "sentryAppId": app.id},
                "organization": {"slug": self.org},
                "uuid": app.installation_uuid,
                "status": "installed",
            }
            for app in self.apps.values()
        ]
        return json_response(200, body)

    def _installation(self, install: str, caller: Caller) -> SentryApp:
        app = next((a for a in self.apps.values() if a.installation_uuid == install), None)
        if app is None:
            raise _Fail(404, NOT_FOUND)
        if caller.user is None:
            raise _Fail(403, NO_PERMISSION)
        if caller.user.app_uuid is not None and caller.user.app_uuid != app.uuid:
            raise _Fail(403, NO_PERMISSION)  # a Sentry App may only touch its own installation
        return app

    def _h_link(self, req: EmuRequest, caller: Caller, install: str) -> EmuResponse:
        app = self._installation(install, caller)
        body = self._body(req)
        if not isinstance(body, dict):
            raise _Fail(400, {"non_field_errors": ["Invalid data. Expected a dictionary."]})
        raw_id = body.get("issueId")
        if isinstance(raw_id, bool) or not (
            isinstance(raw_id, int) or (isinstance(raw_id, str) and raw_id.strip().isdigit())
        ):
            raise _Fail(400, {"detail": "issueId is required, and must be an integer"})
        errors: dict[str, list[str]] = {}
        for key in ("webUrl", "project", "identifier"):
            value = body.get(key)
            if value is None or (isinstance(value, str) and not value.strip()):
                errors[key] = ["This field is required." if value is None else "This field may not be blank."]
            elif not isinstance(value, str):
                errors[key] = ["Not a valid string."]
        web_url = body.get("webUrl")
        if "webUrl" not in errors and isinstance(web_url, str):
            parts = urlsplit(web_url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                errors["webUrl"] = ["Enter a valid URL."]
        if errors:
            raise _Fail(400, errors)
        issue = self.issues.get(str(int(raw_id)))
        if issue is None or issue.status in HIDDEN_STATUSES:
            raise _Fail(404, {"detail": "Could not find issue from given groupId"})
        display = f"{html.escape(str(body['project']))}#{html.escape(str(body['identifier']))}"
        link = issue.external.get(app.uuid)
        if link is None:
            link = ExternalIssue(self._next_id(), issue.id, app.uuid, app.slug, display, str(web_url))
            issue.external[app.uuid] = link
        else:  # upserted on (issue, app)
            link.display_name, link.web_url = display, str(web_url)
        return json_response(200, self._link_json(link))

    def _h_unlink(self, req: EmuRequest, caller: Caller, install: str, ext: str) -> EmuResponse:
        app = self._installation(install, caller)
        for issue in self.issues.values():
            link = issue.external.get(app.uuid)
            if link is not None and link.id == ext:
                del issue.external[app.uuid]
                return EmuResponse(204)
        raise _Fail(404, NOT_FOUND)

    # -- request parsing ------------------------------------------------------------------------

    @staticmethod
    def _body(req: EmuRequest) -> Any:
        try:
            return req.json()
        except ValueError as exc:
            raise _Fail(400, {"detail": f"JSON parse error - {exc}"}) from None

    @staticmethod
    def _limit(raw: str | None) -> int:
        if raw is None or raw == "":
            return MAX_LIMIT
        try:
            value = int(raw)
        except ValueError:
            raise _Fail(400, {"detail": "invalid limit"}) from None
        return max(1, min(value, MAX_LIMIT))

    @staticmethod
    def _per_page(req: EmuRequest) -> int:
        raw = req.arg("per_page")
        if raw is None or raw == "":
            return MAX_LIMIT
        try:
            value = int(raw)
        except ValueError:
            raise _Fail(400, {"detail": "Invalid per_page parameter."}) from None
        if value > MAX_LIMIT:
            raise _Fail(400, {"detail": f"Invalid per_page value. Cannot exceed {MAX_LIMIT}."})
        return max(1, value)

    @staticmethod
    def _cursor(raw: str | None) -> Cursor | None:
        if raw is None or raw == "":
            return None
        try:
            return Cursor.parse(raw)
        except ValueError:
            raise _Fail(400, {"detail": "Invalid cursor parameter."}) from None

    def _window(self, req: EmuRequest) -> tuple[datetime, datetime]:
        """The event window: statsPeriod, else start+end, else statsPeriodStart/End, else 90 days."""
        now = self.now()
        period = req.arg("statsPeriod")
        if period:
            delta = parse_period(period)
            if delta is None:
                raise _Fail(400, {"detail": f"Invalid statsPeriod: {period!r}"})
            return now - delta, now
        start, end = req.arg("start"), req.arg("end")
        if start or end:
            if not (start and end):
                raise _Fail(400, {"detail": "start and end are both required"})
            try:
                begin, finish = parse_dt(start), parse_dt(end)
            except ValueError:
                raise _Fail(400, {"detail": "start and end must be ISO-8601 date-times"}) from None
            if begin >= finish:
                raise _Fail(400, {"detail": "start must be before end"})
            return begin, finish
        period_start, period_end = req.arg("statsPeriodStart"), req.arg("statsPeriodEnd")
        if period_start and period_end:
            first, last = parse_period(period_start), parse_period(period_end)
            if first is None or last is None:
                raise _Fail(400, {"detail": "Invalid statsPeriodStart/statsPeriodEnd"})
            return now - first, now - last
        return now - DEFAULT_WINDOW, now

    def _selected_projects(self, req: EmuRequest, caller: Caller) -> set[str]:
        """`project` omitted: the caller's team projects; `-1`: all accessible; else each must
        be accessible (403 otherwise)."""
        values = req.args("project")
        accessible = self._accessible_projects(caller)
        if not values:
            return self._member_projects(caller) & accessible
        if "-1" in values:
            return accessible
        chosen: set[str] = set()
        for value in values:
            project = self.projects.get(value) or next(
                (p for p in self.projects.values() if p.slug == value), None
            )
            if project is None or project.id not in accessible:
                raise _Fail(403, NO_PERMISSION)
            chosen.add(project.id)
        return chosen

    def _accessible_projects(self, caller: Caller) -> set[str]:
        if caller.user is None:
            return set()
        if caller.user.app_uuid is not None or self.open_membership:
            return set(self.projects)
        return self._team_projects(caller.user.id)

    def _member_projects(self, caller: Caller) -> set[str]:
        if caller.user is None or caller.user.app_uuid is not None:
            return set()  # a proxy user is in no team (unconfirmed; send project=-1)
        return self._team_projects(caller.user.id)

    @staticmethod
    def _shape(req: EmuRequest) -> dict[str, Any]:
        return {"collapse": frozenset(req.args("collapse")), "expand": frozenset(req.args("expand")),
                "listing": True}

    # -- search ---------------------------------------------------------------------------------

    @staticmethod
    def _parse(query: str) -> list[Term]:
        try:
            return parse_query(query)
        except QueryError as exc:
            raise _Fail(400, {"detail": f"Error parsing search query: {exc}"}) from None

    @staticmethod
    def _status_labels(terms: list[Term]) -> set[str]:
        labels: set[str] = set()
        for term in terms:
            if term.key == "is" and not term.negated:
                labels.update(IS_STATUS[v] for v in term.values if v in IS_STATUS)
        return labels

    def _score(self, sort: str) -> Callable[[SentryIssue], int]:
        if sort == "new":
            return lambda i: ms(i.first_seen)
        if sort == "freq":
            return lambda i: i.count
        if sort == "user":
            return lambda i: i.user_count
        return lambda i: ms(i.last_seen)

    def _matcher(self, terms: list[Term], caller: Caller) -> Callable[[SentryIssue], bool]:
        try:
            checks = [self._term_check(term, caller) for term in terms]
        except QueryError as exc:
            raise _Fail(400, {"detail": f"Error parsing search query: {exc}"}) from None
        return lambda issue: all(check(issue) for check in checks)

    def _term_check(self, term: Term, caller: Caller) -> Callable[[SentryIssue], bool]:
        one = self._value_check(term, caller)
        checks = [one(value) for value in term.values]

        def check(issue: SentryIssue) -> bool:
            hit = any(c(issue) for c in checks)
            return not hit if term.negated else hit

        return check

    def _value_check(self, term: Term, caller: Caller) -> Callable[[str], Callable[[SentryIssue], bool]]:
        key = term.key
        me = caller.user.id if caller.user else None
        if key == "":
            return lambda text: lambda i: text.lower() in i.title.lower() or text.lower() in i.culprit.lower()
        if key == "is":
            return self._is_check
        if key in ("assigned", "assigned_or_suggested"):
            return lambda value: self._assigned_check(value, me)
        if key in ("bookmarks", "subscribed"):

            def person(value: str) -> Callable[[SentryIssue], bool]:
                uid = me if value == "me" else self._searchable_user(value)
                if uid is None:
                    return lambda i: False  # unknown (or SSO-only) users become id 0: no error, no hits
                if key == "bookmarks":
                    return lambda i: uid in i.bookmarks
                return lambda i: i.subscriptions.get(uid, (False, ""))[0]

            return person
        if key in ("lastSeen", "firstSeen", "age"):
            attr = "last_seen" if key == "lastSeen" else "first_seen"
            return lambda value: self._date_check(attr, term.op, value)
        if key == "issue.id":

            def by_id(value: str) -> Callable[[SentryIssue], bool]:
                if not value.isdigit():
                    raise QueryError(f"Invalid value for issue.id: {value!r}")
                return lambda i: i.id == str(int(value))

            return by_id
        if key == "issue.priority":

            def by_priority(value: str) -> Callable[[SentryIssue], bool]:
                if value not in PRIORITIES:
                    raise QueryError(f"Invalid priority value: {value!r}")
                return lambda i: i.priority == value

            return by_priority
        if key == "timesSeen":

            def by_count(value: str) -> Callable[[SentryIssue], bool]:
                if not value.isdigit():
                    raise QueryError(f"Invalid number: {value!r}")
                return self._compare(term.op, int(value), lambda i: i.count)

            return by_count
        if key == "level":
            return lambda value: lambda i: i.level == value
        if key in ("issue.category", "issue.type"):
            return lambda value: lambda i: value == "error"
        # anything else is a tag; the emulator keeps no tags, so it matches nothing
        return lambda value: lambda i: False

    @staticmethod
    def _compare(op: str, wanted: int, get: Callable[[SentryIssue], int]) -> Callable[[SentryIssue], bool]:
        tests: dict[str, Callable[[int], bool]] = {
            "=": lambda v: v == wanted, ">": lambda v: v > wanted, ">=": lambda v: v >= wanted,
            "<": lambda v: v < wanted, "<=": lambda v: v <= wanted,
        }
        test = tests[op]
        return lambda i: test(get(i))

    def _is_check(self, value: str) -> Callable[[SentryIssue], bool]:
        if value in IS_STATUS:
            status = IS_STATUS[value]
            return lambda i: i.status == status
        substatus = DEPRECATED_SUBSTATUSES.get(value, value)
        if substatus in IGNORED_SUBSTATUSES + UNRESOLVED_SUBSTATUSES:
            return lambda i: i.substatus == substatus
        if value == "assigned":
            return lambda i: i.assignee is not None
        if value == "unassigned":
            return lambda i: i.assignee is None
        if value == "linked":
            return lambda i: bool(i.external)
        if value == "unlinked":
            return lambda i: not i.external
        if value == "for_review":
            return lambda i: i.inbox and i.status == "unresolved"
        valid = sorted(
            [*IS_STATUS, *IGNORED_SUBSTATUSES, *UNRESOLVED_SUBSTATUSES, *DEPRECATED_SUBSTATUSES, *IS_FLAGS]
        )
        raise QueryError(f'Invalid value for "is" search, valid values are {valid}')

    def _assigned_check(self, value: str, me: str | None) -> Callable[[SentryIssue], bool]:
        if value == "none":
            return lambda i: i.assignee is None
        if value == "me":
            return lambda i: me is not None and i.assignee == ("user", me)
        if value == "my_teams":
            mine = {t.id for t in self.teams.values() if me and me in self._team_user_ids(t)}
            return lambda i: i.assignee is not None and i.assignee[0] == "team" and i.assignee[1] in mine
        if value.startswith("#"):
            team = next((t for t in self.teams.values() if t.slug == value[1:]), None)
            if team is None:
                return lambda i: False
            return lambda i: i.assignee == ("team", team.id)
        uid = self._searchable_user(value)
        return lambda i: uid is not None and i.assignee == ("user", uid)

    def _date_check(self, attr: str, op: str, value: str) -> Callable[[SentryIssue], bool]:
        relative = _RELATIVE.fullmatch(value)
        if relative:
            delta = timedelta(**{_UNITS[relative.group(3)]: int(relative.group(2))})
            edge = self.now() - delta
            if relative.group(1) == "-":  # within the last <delta>
                return lambda i: getattr(i, attr) >= edge
            return lambda i: getattr(i, attr) <= edge  # older than <delta>
        try:
            moment = parse_dt(value)
        except ValueError:
            raise QueryError(
                f"Invalid date: {value!r}. Expected +/-duration (e.g. +1h) "
                "or ISO 8601-like (e.g. 2017-08-15T08:00:00)."
            ) from None
        if op == "=":
            span = timedelta(days=1) if re.fullmatch(r"\d{4}-\d{2}-\d{2}", value) else timedelta(seconds=1)
            return lambda i: moment <= getattr(i, attr) < moment + span
        tests: dict[str, Callable[[datetime], bool]] = {
            ">": lambda d: d > moment, ">=": lambda d: d >= moment,
            "<": lambda d: d < moment, "<=": lambda d: d <= moment,
        }
        test = tests[op]
        return lambda i: test(getattr(i, attr))

    def _searchable_user(self, value: str) -> str | None:
        """`user_service.get_by_username`: username, then email (case-insensitive), skipping users
        without a usable password (SSO-only) and proxy users."""
        lowered = value.lower()
        people = [u for u in self.users.values() if u.app_uuid is None and not u.sso_only
                  and u.id in self._member_user_ids()]
        for user in people:
            if user.username.lower() == lowered:
                return user.id
        for user in people:
            if user.email.lower() == lowered:
                return user.id
        return None

    # -- PUT ------------------------------------------------------------------------------------

    def _validate(self, body: Any, targets: list[SentryIssue], caller: Caller) -> _Update:
        """GroupValidator + StatusDetailsValidator: every field error at once, nothing applied."""
        if not isinstance(body, dict):
            raise _Fail(400, {"non_field_errors": [
                f"Invalid data. Expected a dictionary, but got {type(body).__name__}."]})
        upd = _Update()
        errors: dict[str, Any] = {}
        projects = [self.projects[i.project_id] for i in targets]
        status = body.get("status")
        if "status" in body:
            if status not in STATUS_UPDATE_CHOICES:
                errors["status"] = [f'"{status}" is not a valid choice.']
            else:
                upd.status = "ignored" if status == "muted" else str(status)
        if "substatus" in body:
            sub = body["substatus"]
            sub = DEPRECATED_SUBSTATUSES.get(sub, sub) if isinstance(sub, str) else sub
            if sub is not None and sub not in IGNORED_SUBSTATUSES + UNRESOLVED_SUBSTATUSES:
                errors["substatus"] = [f'"{sub}" is not a valid choice.']
            else:
                upd.substatus, upd.substatus_given = sub, True
        details = body.get("statusDetails", {})
        if details is None:
            details = {}
        if not isinstance(details, dict):
            errors["statusDetails"] = {"non_field_errors": [
                f"Invalid data. Expected a dictionary, but got {type(details).__name__}."]}
            details = {}
        detail_errors: dict[str, list[str]] = {}
        for key in IGNORE_KEYS:
            value = details.get(key, body.get(key))
            if value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, int):
                detail_errors[key] = ["A valid integer is required."]
            elif key in ("ignoreWindow", "ignoreUserWindow") and value > 7 * 24 * 60:
                detail_errors[key] = ["Ensure this value is less than or equal to 10080."]
            else:
                upd.ignore[key] = value
        upd.until_escalating = bool(details.get("ignoreUntilEscalating") or body.get("ignoreUntilEscalating"))
        if details.get("inNextRelease"):
            if any(not p.releases for p in projects) and self.no_release_behaviour == "400":
                detail_errors["inNextRelease"] = [NO_RELEASE_MESSAGE]
            if upd.status == "resolved":
                upd.status = "resolvedInNextRelease"
        if details.get("inRelease"):
            version = str(details["inRelease"])
            for project in projects:
                if version == "latest" and not project.releases:
                    detail_errors["inRelease"] = [NO_RELEASE_MESSAGE]
                elif version != "latest" and version not in project.releases:
                    detail_errors["inRelease"] = ["Unable to find a release with the given version."]
            if upd.status == "resolved":
                upd.status = "inRelease"
                upd.release = version
        if detail_errors:
            errors["statusDetails"] = detail_errors
        if "assignedTo" in body:
            try:
                upd.assign = self._parse_actor(body["assignedTo"], targets)
                upd.assign_given = True
            except _Fail as fail:
                errors["assignedTo"] = [fail.body]
        snooze = body.get("snoozeDuration")
        if snooze is not None and (isinstance(snooze, bool) or not isinstance(snooze, int)):
            # deprecated, and sent as null by sentry-cli with every update: null is allowed
            errors["snoozeDuration"] = ["A valid integer is required."]
        for key in ("isBookmarked", "isSubscribed", "hasSeen", "isPublic", "inbox"):
            if key in body:
                flag = _boolean(body[key])
                if flag is None:
                    errors[key] = ["Must be a valid boolean."]
                else:
                    upd.flags[key] = flag
        if "priority" in body:
            if body["priority"] not in PRIORITIES:
                errors["priority"] = [f'"{body["priority"]}" is not a valid choice.']
            else:
                upd.priority = str(body["priority"])
        if errors:
            raise _Fail(400, errors)
        if upd.substatus_given and upd.substatus is not None and upd.status is not None:
            allowed = IGNORED_SUBSTATUSES if upd.status == "ignored" else (
                UNRESOLVED_SUBSTATUSES if upd.status == "unresolved" else ())
            if upd.substatus not in allowed:
                raise _Fail(400, {"substatus": ["Substatus must be a valid substatus for the status"]})
        if upd.status == "resolvedInNextRelease" and any(not p.releases for p in projects):
            if self.no_release_behaviour == "400":
                raise _Fail(400, {"detail": NO_RELEASE_MESSAGE})
            if self.no_release_behaviour == "500":
                raise _Fail(500, {"detail": "Internal Error", "errorId": uuid.uuid4().hex})
        if upd.status in ("resolvedInNextRelease", "inRelease") and len({p.id for p in projects}) > 1:
            raise _Fail(400, {"detail": "Cannot set resolved in next release for multiple projects."})
        return upd

    def _parse_actor(self, value: Any, targets: list[SentryIssue]) -> tuple[str, str] | None:
        """`Actor.from_identifier` + OwnerActorField + GroupValidator.validate_assignedTo.
        Raises `_Fail(400, message)` with the field's message."""
        if value is None:
            raise _Fail(400, "This field may not be null.")
        if isinstance(value, bool) or not isinstance(value, (str, int)) or value in ("", 0):
            if isinstance(value, (str, int)) and not isinstance(value, bool):
                return None  # any falsy value unassigns
            raise _Fail(400, BAD_ACTOR)
        text = str(value)
        kind, ident = "user", text
        if text.isdigit():
            ident = text
        elif text.startswith("user:") or text.startswith("team:"):
            kind, ident = text.split(":", 1)
            if not ident.isdigit():
                raise _Fail(400, BAD_ACTOR)
        else:
            found = self._searchable_user(text)
            if found is None:
                raise _Fail(400, BAD_ACTOR)
            ident = found
        if kind == "team":
            team = self.teams.get(ident)
            if team is None:
                raise _Fail(400, "Team does not exist")
            for issue in targets:
                if issue.project_id not in self._projects_of_team(team):
                    raise _Fail(400, "Cannot assign to a team without access to the project")
            return ("team", team.id)
        user = self.users.get(ident)
        if user is None:
            raise _Fail(400, "User does not exist")
        if user.id not in self._member_user_ids():
            raise _Fail(400, "User is not a member of this organization")
        for issue in targets:
            if issue.project_id not in self._team_projects(user.id):
                raise _Fail(400, "Cannot assign to non-team member")
        return ("user", user.id)

    def _apply(self, issue: SentryIssue, upd: _Update, caller: Caller) -> None:
        actor = caller.user.id if caller.user else None
        if upd.status is not None:
            self._apply_status(issue, upd, actor)
        if upd.assign_given:
            self._assign(issue, upd.assign, actor)
        if actor is not None:
            if "isBookmarked" in upd.flags:
                self._bookmark(issue, actor, upd.flags["isBookmarked"])
            if "isSubscribed" in upd.flags:
                issue.subscriptions[actor] = (upd.flags["isSubscribed"], "unknown")
            if "hasSeen" in upd.flags and caller.user and caller.user.app_uuid is None \
                    and issue.project_id in self._team_projects(actor):
                if upd.flags["hasSeen"]:
                    issue.seen[actor] = self.now()
                else:
                    issue.seen.pop(actor, None)
        if "isPublic" in upd.flags:
            if upd.flags["isPublic"]:
                issue.share_id = issue.share_id or uuid.uuid4().hex
            else:
                issue.share_id = None
        if "inbox" in upd.flags:
            issue.inbox = upd.flags["inbox"]
        if upd.priority is not None:
            issue.priority, issue.priority_locked_at = upd.priority, self.now()

    def _delta(self, issue: SentryIssue, upd: _Update, caller: Caller) -> dict[str, Any]:
        """The bulk PUT answer: only the keys that were asked to change."""
        full = self._serialize(issue, caller, None)
        delta: dict[str, Any] = {}
        if upd.status is not None:
            delta.update(status=full["status"], statusDetails=full["statusDetails"], inbox=None)
            if upd.status in ("ignored", "unresolved"):
                delta["substatus"] = full["substatus"]
        if upd.assign_given:
            delta["assignedTo"] = full["assignedTo"]
        if "isBookmarked" in upd.flags:
            delta["isBookmarked"] = upd.flags["isBookmarked"]
        if "isSubscribed" in upd.flags:
            delta.update(isSubscribed=upd.flags["isSubscribed"], subscriptionDetails={"reason": "unknown"})
        if "hasSeen" in upd.flags:
            delta["hasSeen"] = upd.flags["hasSeen"]
        if "isPublic" in upd.flags:
            delta.update(isPublic=full["isPublic"], shareId=full["shareId"])
        if upd.priority is not None:
            delta["priority"] = upd.priority
        return delta

    def _apply_status(self, issue: SentryIssue, upd: _Update, actor: str | None) -> None:
        """One status change with Sentry's side effects; unchanged targets record nothing."""
        now = self.now()
        target = upd.status
        if target == "resolved":
            if issue.status == "resolved":
                return  # already resolved: skipped, no activity
            self._set_status(issue, "resolved", None, {}, None)
            issue.resolved_at = now
            self._record(issue, "set_resolved", actor, {})
        elif target in ("resolvedInNextRelease", "inRelease"):
            details: dict[str, Any] = (
                {"inNextRelease": True} if target == "resolvedInNextRelease"
                else {"inRelease": self._release(issue, upd.release or "latest")}
            )
            if issue.status == "resolved" and issue.status_details == details:
                return
            self._set_status(issue, "resolved", None, details, actor)
            issue.resolved_at = now
            version = "" if target == "resolvedInNextRelease" else details["inRelease"]
            self._record(issue, "set_resolved_in_release", actor, {"version": version})
        elif target == "unresolved":
            if issue.status == "unresolved":
                if upd.substatus_given and upd.substatus and upd.substatus != issue.substatus:
                    issue.substatus = upd.substatus
                return
            substatus = upd.substatus if upd.substatus_given and upd.substatus else (
                self._infer_unresolved(issue))
            self._set_status(issue, "unresolved", substatus, {}, None)
            issue.active_at, issue.inbox, issue.resolved_at = now, True, None
            self._record(issue, "set_unresolved", actor, {})
        elif target == "ignored":
            details = {}
            if "ignoreDuration" in upd.ignore:
                until = now + timedelta(minutes=upd.ignore["ignoreDuration"])
                details["ignoreUntil"] = format_dt(until)
            for key in ("ignoreCount", "ignoreWindow", "ignoreUserCount", "ignoreUserWindow"):
                if key in upd.ignore:
                    details[key] = upd.ignore[key]
            if upd.substatus_given and upd.substatus:
                substatus = upd.substatus
            elif upd.until_escalating:
                substatus = "archived_until_escalating"
            elif upd.ignore:
                substatus = "archived_until_condition_met"
            else:
                substatus = "archived_forever"
            changed = issue.status != "ignored"
            self._set_status(issue, "ignored", substatus, details, actor if details else None)
            issue.inbox = False
            if changed:
                self._record(issue, "set_ignored", actor, {**upd.ignore} | (
                    {"ignoreUntilEscalating": True} if upd.until_escalating else {}))
        else:
            return
        if actor is not None and actor not in issue.subscriptions:
            issue.subscriptions[actor] = (True, "status_change")

    @staticmethod
    def _set_status(issue: SentryIssue, status: str, substatus: str | None, details: dict[str, Any],
                    actor: str | None) -> None:
        issue.status, issue.substatus, issue.status_details, issue.status_actor_id = (
            status, substatus, details, actor)
        if status != "unresolved":
            issue.inbox = False

    def _infer_unresolved(self, issue: SentryIssue) -> str:
        if issue.status == "resolved":
            return "regressed"
        if issue.status == "ignored" and issue.first_seen > self.now() - timedelta(days=7):
            return "new"
        return "ongoing"

    def _release(self, issue: SentryIssue, version: str) -> str:
        releases = self.projects[issue.project_id].releases
        if version == "latest":
            return releases[-1] if releases else ""
        return version

    def _assign(self, issue: SentryIssue, target: tuple[str, str] | None, actor: str | None) -> None:
        """GroupAssignee.assign/deassign: a no-op when nothing changes."""
        if target == issue.assignee:
            return
        issue.assignee = target
        if target is None:
            self._record(issue, "unassigned", actor, {})
            return
        kind, ident = target
        email = self.users[ident].email if kind == "user" else None
        data = {"assignee": ident, "assigneeEmail": email, "assigneeType": kind}
        self._record(issue, "assigned", actor, data)
        if kind == "user" and ident not in issue.subscriptions:
            issue.subscriptions[ident] = (True, "assigned")

    def _bookmark(self, issue: SentryIssue, user_id: str, on: bool) -> None:
        """Bookmarking subscribes; un-bookmarking drops *every* subscription of that user."""
        if on:
            issue.bookmarks.setdefault(user_id, self.now())
            if user_id not in issue.subscriptions:
                issue.subscriptions[user_id] = (True, "bookmark")
        else:
            issue.bookmarks.pop(user_id, None)
            issue.subscriptions.pop(user_id, None)

    def _record(self, issue: SentryIssue, kind: str, actor: str | None, data: dict[str, Any]) -> None:
        issue.activity.append(Activity(self._next_id(), kind, actor, data, self.now()))
        action = HOOK_ACTIONS.get(kind)
        if action is not None and self.webhooks:
            self._send_hooks(issue, action, actor, data, kind)

    # -- integration webhooks (reference section 8) ------------------------------------------------

    def subscribe_webhooks(self, url: str, client_secret: str, *, app_uuid: str | None = None) -> None:
        """The installed integration (by default the bridge's) gets `issue` webhooks at `url`,
        signed with `client_secret`.  Sent for status changes and assignments by anyone, people
        and applications alike (the bridge's own writes come back with an `application` actor);
        none for unassign, bookmarks or priority, as in Sentry."""
        with self.lock:
            app = self.apps[app_uuid or next(iter(self.apps))]
            self.webhooks[app.uuid] = (url, client_secret)

    def _send_hooks(self, issue: SentryIssue, action: str, actor: str | None, data: dict[str, Any],
                    kind: str) -> None:
        user = self.users.get(actor) if actor else None
        app_of_actor = self.apps.get(user.app_uuid) if user and user.app_uuid else None
        if app_of_actor is not None:
            actor_json: dict[str, Any] = {"type": "application", "id": app_of_actor.uuid, "name": app_of_actor.name}
        elif user is not None:
            actor_json = {"type": "user", "id": int(user.id), "name": user.name}
        else:
            actor_json = {"type": "application", "id": "sentry", "name": "Sentry"}
        issue_json = self._serialize(issue, None, None)
        extra: dict[str, Any] = {}
        if action == "resolved":
            extra["resolution_type"] = "in_next_release" if kind == "set_resolved_in_release" else "now"
        if action == "assigned":
            extra["assignee"] = self._actor_json(issue.assignee) if issue.assignee else None
        for app_uuid, (url, secret) in self.webhooks.items():
            app = self.apps[app_uuid]
            body = json.dumps({"action": action, "installation": {"uuid": app.installation_uuid},
                               "data": {"issue": issue_json, **extra}, "actor": actor_json},
                              separators=(",", ":")).encode()
            headers = {"Content-Type": "application/json", "Request-ID": uuid.uuid4().hex,
                       "Sentry-Hook-Resource": "issue", "Sentry-Hook-Timestamp": str(int(time.time())),
                       "Sentry-Hook-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()}
            self._hook_queue().put((url, body, headers))

    def _hook_queue(self) -> queue.Queue[tuple[str, bytes, dict[str, str]]]:
        """Deliveries go out in order on one background thread, after the change is made: the
        API answer never waits for a hook, and a receiver that is down loses the hook (Sentry
        does not reliably retry either)."""
        if self._hooks is None:
            self._hooks = queue.Queue()
            threading.Thread(target=self._deliver_hooks, name="sentry-emulator-hooks", daemon=True).start()
        return self._hooks

    def _deliver_hooks(self) -> None:
        while self._hooks is not None:
            url, body, headers = self._hooks.get()
            try:
                answer = httpx.post(url, content=body, headers=headers, timeout=1.0)
                self.hook_deliveries.append((url, answer.status_code))
            except httpx.HTTPError as exc:
                self.hook_deliveries.append((url, type(exc).__name__))

    # -- serializers ----------------------------------------------------------------------------

    def _serialize(
        self,
        issue: SentryIssue,
        caller: Caller | None,
        base_url: str | None,
        *,
        detail: bool = False,
        listing: bool = False,
        collapse: frozenset[str] = frozenset(),
        expand: frozenset[str] = frozenset(),
    ) -> dict[str, Any]:
        """GroupSerializer (+ StreamGroupSerializer for lists, + detail-only fields)."""
        project = self.projects[issue.project_id]
        uid = caller.user.id if caller and caller.user else None
        status, details = self._shown_status(issue)
        active, reason = issue.subscriptions.get(uid, (False, "")) if uid else (False, "")
        seen_at = issue.seen.get(uid) if uid else None
        data: dict[str, Any] = {
            "id": issue.id,
            "shareId": issue.share_id,
            "shortId": issue.short_id,
            "title": issue.title,
            "culprit": issue.culprit or None,
            "permalink": (
                f"{base_url}/organizations/{self.org}/issues/{issue.id}/" if base_url and uid else None
            ),
            "logger": None,
            "level": issue.level,
            "status": status,
            "statusDetails": details,
            "substatus": issue.substatus,
            "isPublic": issue.share_id is not None,
            "platform": project.platform,
            "priority": issue.priority,
            "priorityLockedAt": format_dt(issue.priority_locked_at) if issue.priority_locked_at else None,
            "seerFixabilityScore": None,
            "seerAutofixLastTriggered": None,
            "seerExplorerAutofixLastTriggered": None,
            "project": {
                "id": project.id, "name": project.name, "slug": project.slug, "platform": project.platform
            },
            "type": "error",
            "issueType": "error",
            "issueCategory": "error",
            "metadata": {"title": issue.title, "value": issue.title},
            "numComments": 0,
            "assignedTo": self._actor_json(issue.assignee),
            "isBookmarked": uid is not None and uid in issue.bookmarks,
            "isSubscribed": active,
            "subscriptionDetails": (
                {"reason": SUBSCRIPTION_REASONS.get(reason, "unknown")} if active else None
            ),
            "hasSeen": seen_at is not None and seen_at >= issue.active_at,
            "annotations": [
                {"displayName": x.display_name, "url": x.web_url} for x in issue.external.values()
            ],
            "isUnhandled": False,
            "count": str(issue.count),
            "userCount": issue.user_count,
            "firstSeen": format_dt(issue.first_seen),
            "lastSeen": format_dt(issue.last_seen),
        }
        if listing:
            data["stats"] = {"24h": self._series(issue, hours=24)}
            data["lifetime"] = {"count": str(issue.count), "userCount": issue.user_count,
                                "firstSeen": data["firstSeen"], "lastSeen": data["lastSeen"], "stats": None}
            data["filtered"] = None
            data["derivedData"] = {
                "blocker": "", "progress": "", "status": "", "viewCount": len(issue.seen),
                "hasOpenFixPr": False, "isAssigned": issue.assignee is not None, "hasRootCause": False,
                "lastCompletedAutofixStep": "",
                "lastProgressedAt": None,
            }
            for name, key in (("stats", "stats"), ("lifetime", "lifetime"), ("filtered", "filtered"),
                              ("unhandled", "isUnhandled")):
                if name in collapse:
                    data.pop(key, None)
        if detail or expand:
            always = {"inbox", "sentryAppIssues", "integrationIssues"} if detail else set()
            self._expand(issue, data, expand | always)
        if detail:
            data["activity"] = self._activity_json(issue)
            data["seenBy"] = [
                {**self._user_json(self.users[u]), "lastSeen": format_dt(t)}
                for u, t in sorted(issue.seen.items(), key=lambda kv: kv[1], reverse=True) if u in self.users
            ]
            data["participants"] = [
                {**self._user_json(self.users[u]), "type": "user"}
                for u, (on, _r) in issue.subscriptions.items() if on and u in self.users
            ]
            data["userReportCount"] = 0
            data["firstRelease"] = None
            data["lastRelease"] = None
            data["tags"] = []
            data["stats"] = {"24h": self._series(issue, hours=24), "30d": self._series(issue, hours=24 * 30,
                                                                                        step_hours=24)}
        return data

    def _expand(self, issue: SentryIssue, data: dict[str, Any], expand: Iterable[str]) -> None:
        for name in expand:
            if name == "inbox":
                data["inbox"] = (
                    {"reason": 0, "reason_details": None, "date_added": format_dt(issue.active_at)}
                    if issue.inbox and issue.status == "unresolved" else None
                )
            elif name == "sentryAppIssues":
                data["sentryAppIssues"] = [self._link_json(x) for x in issue.external.values()]
            elif name == "integrationIssues":
                data["integrationIssues"] = []
            elif name == "latestEventHasAttachments":
                data["latestEventHasAttachments"] = False
            elif name == "sessions":
                data["sessionCount"] = 0

    def _shown_status(self, issue: SentryIssue) -> tuple[str, dict[str, Any]]:
        """What `_get_status` shows: expired snoozes look unresolved, stale issues in projects with
        auto-resolve look resolved; the actor rides along with release and snooze details."""
        status, details = issue.status, dict(issue.status_details)
        now = self.now()
        project = self.projects[issue.project_id]
        if status == "ignored" and "ignoreUntil" in details and parse_dt(details["ignoreUntil"]) <= now:
            return "unresolved", {}
        if status == "unresolved" and project.auto_resolve_hours is not None \
                and issue.last_seen < now - timedelta(hours=project.auto_resolve_hours):
            return "resolved", {"autoResolved": True}
        if details and issue.status_actor_id and issue.status_actor_id in self.users:
            details["actor"] = self._user_json(self.users[issue.status_actor_id])
        return status, details

    def _series(self, issue: SentryIssue, *, hours: int, step_hours: int = 1) -> list[list[int]]:
        step = timedelta(hours=step_hours)
        end = self.now().replace(minute=0, second=0, microsecond=0)
        buckets = hours // step_hours
        points = []
        for n in range(buckets):
            start = end - step * (buckets - 1 - n)
            hit = 1 if start <= issue.last_seen < start + step else 0
            points.append([int(start.timestamp()), hit])
        return points

    def _actor_json(self, actor: tuple[str, str] | None) -> dict[str, Any] | None:
        if actor is None:
            return None
        kind, ident = actor
        if kind == "team":
            return {"type": "team", "id": ident, "name": self.teams[ident].slug}
        user = self.users[ident]
        return {"type": "user", "id": user.id, "name": user.name, "email": user.email}

    def _user_json(self, user: SentryUser) -> dict[str, Any]:
        digest = hashlib.sha256((user.email or user.username).lower().encode()).hexdigest()
        return {
            "id": user.id,
            "name": user.name,
            "username": user.username,
            "email": user.email,
            "avatarUrl": f"https://gravatar.com/avatar/{digest}?s=32&d=mm",
            "isActive": True,
            "hasPasswordAuth": not user.sso_only and user.app_uuid is None,
            "isManaged": False,
            "dateJoined": format_dt(user.date_joined),
            "lastLogin": None,
            "has2fa": False,
            "lastActive": None,
            "isSuperuser": False,
            "isStaff": False,
            "isSuspended": False,
            "experiments": {},
            "emails": [{"id": i, "email": e, "is_verified": v} for i, e, v in user.emails],
            "avatar": {"avatarType": "letter_avatar", "avatarUuid": None, "avatarUrl": None},
        }

    def _member_json(self, member: SentryMember) -> dict[str, Any]:
        user = self.users.get(member.user_id) if member.user_id else None
        return {
            "id": member.id,
            "email": member.email,
            "name": user.name if user else member.email,
            "user": self._user_json(user) if user else None,
            "role": member.role,
            "roleName": member.role.title(),
            "orgRole": member.role,
            "pending": user is None,
            "expired": False,
            "flags": {
                "idp:provisioned": False,
                "idp:role-restricted": False,
                "sso:linked": bool(user and user.sso_only),
                "sso:invalid": False,
                "member-limit:restricted": False,
                "partnership:restricted": False,
            },
            "dateCreated": format_dt(member.date_created),
            "inviteStatus": "approved",
            "inviterName": None,
            "externalUsers": [],
        }

    def _team_json(self, team: SentryTeam, caller: Caller, detailed: bool) -> dict[str, Any]:
        members = self._team_user_ids(team)
        data: dict[str, Any] = {
            "id": team.id,
            "slug": team.slug,
            "name": team.name,
            "dateCreated": format_dt(team.date_created),
            "isMember": bool(caller.user and caller.user.id in members),
            "teamRole": "contributor" if caller.user and caller.user.id in members else None,
            "flags": {"idp:provisioned": False},
            "access": ["event:read", "event:write", "project:read"],
            "hasAccess": True,
            "isPending": False,
            "memberCount": len(members),
            "avatar": {"avatarType": "letter_avatar", "avatarUuid": None, "avatarUrl": None},
            "externalTeams": [],
        }
        if detailed:
            data["projects"] = [
                self._project_json(self.projects[p], caller) for p in sorted(self._projects_of_team(team))
            ]
        return data

    def _project_json(self, project: SentryProject, caller: Caller) -> dict[str, Any]:
        flags = {
            name: False for name in (
                "firstTransactionEvent", "hasFeedbacks", "hasFlags", "hasMinifiedStackTrace", "hasMonitors",
                "hasNewFeedbacks", "hasProfiles", "hasReplays", "hasSessions", "hasInsightsHttp",
                "hasInsightsDb",
                "hasInsightsAssets", "hasInsightsAppStart", "hasInsightsScreenLoad", "hasInsightsVitals",
                "hasInsightsCaches", "hasInsightsQueues", "hasInsightsAgentMonitoring", "hasInsightsMCP",
                "hasLogs", "hasTraceMetrics", "isInternal", "isPublic", "isBookmarked",
            )
        }
        return {
            "id": project.id,
            "slug": project.slug,
            "name": project.name,
            "platform": project.platform,
            "dateCreated": format_dt(project.date_created),
            "isMember": bool(caller.user and project.id in self._team_projects(caller.user.id)),
            "features": [],
            "firstEvent": None,
            "access": ["event:read", "event:write"],
            "hasAccess": True,
            "avatar": {"avatarType": "letter_avatar", "avatarUuid": None, "avatarUrl": None},
            "color": "#3f70bf",
            "status": "active",
            **flags,
        }

    def _activity_json(self, issue: SentryIssue) -> list[dict[str, Any]]:
        out = []
        for item in sorted(issue.activity, key=lambda a: (a.created, int(a.id)), reverse=True)[:100]:
            user = self.users.get(item.user_id) if item.user_id else None
            app = self.apps.get(user.app_uuid) if user and user.app_uuid else None
            out.append({
                "id": item.id,
                "user": self._user_json(user) if user else None,
                "sentry_app": (
                    {"id": app.uuid, "name": app.name, "slug": app.slug, "avatars": []} if app else None
                ),
                "type": item.type,
                "data": dict(item.data),
                "dateCreated": format_dt(item.created),
            })
        return out

    @staticmethod
    def _link_json(link: ExternalIssue) -> dict[str, Any]:
        return {"id": link.id, "issueId": link.issue_id, "serviceType": link.service_type,
                "displayName": link.display_name, "webUrl": link.web_url}

    # -- lookups --------------------------------------------------------------------------------

    def _next_id(self) -> str:
        return str(next(self._ids))

    def _project(self, slug_or_id: str) -> SentryProject:
        for project in self.projects.values():
            if slug_or_id in (project.slug, project.id):
                return project
        raise ValueError(f"no project {slug_or_id!r}")

    def _org_team(self) -> SentryTeam:
        return next(t for t in self.teams.values() if t.all_projects)

    def _project_team(self, project_id: str) -> SentryTeam:
        return next(t for t in self.teams.values() if not t.all_projects and t.project_ids == {project_id})

    def _projects_of_team(self, team: SentryTeam) -> set[str]:
        return set(self.projects) if team.all_projects else set(team.project_ids)

    def _team_user_ids(self, team: SentryTeam) -> set[str]:
        return set(team.user_ids)

    def _team_projects(self, user_id: str) -> set[str]:
        projects: set[str] = set()
        for team in self.teams.values():
            if user_id in team.user_ids:
                projects |= self._projects_of_team(team)
        return projects

    def _member_user_ids(self) -> set[str]:
        return {m.user_id for m in self.members.values() if m.user_id}

    def _listed_members(self) -> list[SentryMember]:
        return list(self.members.values())

    def _filter_members(self, members: list[SentryMember], query: str) -> list[SentryMember]:
        """`tokenize_query` filters: AND across keys, OR within one; unknown keys match nothing."""
        wanted: dict[str, list[str]] = {}
        try:
            tokens = tokenize(query)
        except QueryError:
            tokens = query.split()
        for token in tokens:
            key, sep, value = token.partition(":")
            if sep and value:
                wanted.setdefault(key, []).extend(_unquote(v) for v in value.split(","))
            else:
                wanted.setdefault("query", []).append(_unquote(token))

        def keep(member: SentryMember) -> bool:
            user = self.users.get(member.user_id) if member.user_id else None
            addresses = {member.email.lower()} | ({e.lower() for _i, e, _v in user.emails} if user else set())
            for key, values in wanted.items():
                lowered = [v.lower() for v in values]
                if key == "email":
                    ok = bool(addresses & set(lowered))
                elif key == "id":
                    ok = member.id in values
                elif key == "user.id":
                    ok = member.user_id in values
                elif key == "isInvited":
                    ok = (user is None) == (lowered[0] == "true")
                elif key == "role":
                    ok = member.role in values
                elif key == "ssoLinked":
                    ok = bool(user and user.sso_only) == (lowered[0] == "true")
                elif key == "query":
                    names = [user.name, user.username] if user else []
                    text = " ".join([member.email, *names]).lower()
                    ok = all(v in text for v in lowered)
                else:
                    ok = False
                if not ok:
                    return False
            return True

        return [m for m in members if keep(m)]

    def _user_by_email(self, email: str) -> SentryUser | None:
        lowered = email.lower()
        for user in self.users.values():
            if user.app_uuid is None and any(e.lower() == lowered for _i, e, _v in user.emails):
                return user
        return None

    def _actor(self, email: str | None) -> str | None:
        if email is None:
            return None
        user = self._user_by_email(email)
        if user is None:
            raise ValueError(f"no user {email!r}")
        return user.id

    def _find_issue(self, ref: str) -> SentryIssue | None:
        if ref.isdigit():
            ident = self.merged.get(ref, ref)
            while ident in self.merged:
                ident = self.merged[ident]
            found = self.issues.get(ident)
        else:
            found = next((i for i in self.issues.values() if i.short_id == ref.upper()), None)
        if found is None or found.status in HIDDEN_STATUSES:
            return None
        return found

    def _issue(self, ref: str) -> SentryIssue:
        found = self._find_issue(ref)
        if found is None:
            raise KeyError(ref)
        return found

    def _path_project(self, ref: str, caller: Caller) -> SentryProject:
        """The project of a `/projects/{org}/{project_id_or_slug}/` path: 404 when there is no such
        project, 403 when the caller may not see it."""
        found = next((p for p in self.projects.values() if ref in (p.slug, p.id)), None)
        if found is None:
            raise _Fail(404, NOT_FOUND)
        if found.id not in self._accessible_projects(caller):
            raise _Fail(403, NO_PERMISSION)
        return found

    def _visible_issue(self, ref: str, caller: Caller) -> SentryIssue:
        found = self._find_issue(ref)
        if found is None:
            raise _Fail(404, NOT_FOUND)
        if found.project_id not in self._accessible_projects(caller):
            raise _Fail(403, NO_PERMISSION)
        return found

    @staticmethod
    def _initial_priority(level: str) -> str:
        if level in ("error", "fatal"):
            return "high"
        if level == "warning":
            return "medium"
        return "low"
