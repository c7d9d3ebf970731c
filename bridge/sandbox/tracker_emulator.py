"""An in-memory Yandex Tracker that behaves like the real API where the bridge (and the official
`yandex_tracker_client`) can tell the difference.

The spec is "What a faithful test fake must reproduce" in `reference/tracker-api.md`.  The points
that matter most for the bridge, and are therefore strict here:

* `version` is an optimistic lock (`?version=N` or `If-Match: "N"`); a stale one answers 409
  (knob: 412) and changes nothing; edits stop with 423 at the version cap;
* status changes only through the transitions available from the current status, and a done
  status needs a resolution (422);
* followers take `add`/`remove`/`set`/`replace`, a plain array or `null`; users may be a login,
  a uid or `{"id": ...}`, and an unknown one is a 422, never a silent no-op;
* create with a `unique` that is taken answers 409 and creates nothing;
* `_search` takes exactly one non-null selector and pages with X-Total-* and `Link`, but only
  down to row 10,000 (a knob): past it the page is refused and the totals stop at the limit, so
  a listing that only pages silently ends there (as reported of the real API); a scroll
  (`scrollType`, `perScroll`, `scrollId`, `_clear`) reaches every row;
* every `self` is an absolute URL on the emulator itself, so following it works;
* queue triggers (create, read, change with `?version=N`, the delivery log) need the queue
  admin right, and active ones with an HTTP-request action really send it, in the background,
  on every change of an issue of their queue (`bridge.sandbox.tracker_triggers`).

Where the real behaviour is unknown (see the reference's open questions) the choice is a knob,
an attribute set after construction, named in `TrackerEmulator.__init__`.

Besides the HTTP API there is a "people" API (`add_issue`, `set_status`, `set_assignee`, ...)
for tests and the demo: it plays a person working in the Tracker UI, so it may jump statuses
directly, and it records its changes as `transport: "front"`.
"""

from __future__ import annotations

import copy
import itertools
import json
import math
import random
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

from bridge.sandbox import tracker_triggers as trig
from bridge.sandbox.http import EmulatorBase, EmuRequest, EmuResponse, Fault, LoggedRequest, json_response

DEFAULT_WORKFLOW: dict[str, Any] = {
    # status key -> status type (new / inProgress / paused / done / cancelled)
    "statuses": {
        "open": "new",
        "inProgress": "inProgress",
        "needInfo": "paused",
        "resolved": "done",
        "closed": "done",
    },
    # from status -> {transition id -> to status}
    "transitions": {
        "open": {"start_progress": "inProgress", "close": "closed"},
        "inProgress": {"stop_progress": "open", "need_info": "needInfo", "resolve": "resolved"},
        "needInfo": {"provide_info": "inProgress"},
        "resolved": {"close": "closed", "reopen": "open"},
        "closed": {"reopen": "open"},
    },
}

ROBOT_LOGIN = "bridge-robot"
ADMIN_LOGIN = "tracker-admin"
DEFAULT_TOKEN = "tracker-token"  # noqa: S105 - the emulator's well-known test token
ROBOT_VERSION_CAP = 10100
USER_VERSION_CAP = 11100
# "If the number of rows in the response exceeds 10,000, use scrollable results" (search-issues).
PAGED_LIMIT = 10_000
SCROLL_TTL_MILLIS = 60_000  # the documented default of `scrollTTLMillis`
MAX_OPEN_SCROLLS = 100

# (english, russian) display strings; the API answers Russian unless `Accept-Language: en`.
_STATUS_NAMES = {
    "open": ("Open", "Открыт"),
    "inProgress": ("In progress", "В работе"),
    "needInfo": ("Need info", "Требуется информация"),
    "resolved": ("Resolved", "Решен"),
    "closed": ("Closed", "Закрыт"),
}
_STATUS_TYPE_NAMES = {
    "new": ("New", "Новый"),
    "inProgress": ("In progress", "В работе"),
    "paused": ("Paused", "Приостановлен"),
    "done": ("Done", "Завершен"),
    "cancelled": ("Cancelled", "Отменен"),
}
_TRANSITION_NAMES = {
    "start_progress": ("Start progress", "Начать работу"),
    "stop_progress": ("Stop progress", "Остановить работу"),
    "need_info": ("Need info", "Требуется информация"),
    "provide_info": ("Provide info", "Информация предоставлена"),
    "resolve": ("Resolve", "Решить"),
    "close": ("Close", "Закрыть"),
    "reopen": ("Reopen", "Переоткрыть"),
}
_RESOLUTIONS = [  # wontFix has id "2" as in the docs' queue example
    ("fixed", "Fixed", "Решен"),
    ("wontFix", "Won't fix", "Не будет исправлено"),
    ("later", "Later", "Позже"),
    ("duplicate", "Duplicate", "Дубликат"),
    ("cantReproduce", "Can't reproduce", "Не воспроизводится"),
    ("invalid", "Invalid", "Некорректный"),
]
_ISSUE_TYPES = [("bug", "Bug", "Ошибка"), ("task", "Task", "Задача")]
_PRIORITIES = [
    ("trivial", "Trivial", "Незначительный"),
    ("minor", "Minor", "Низкий"),
    ("normal", "Normal", "Средний"),
    ("critical", "Critical", "Критичный"),
    ("blocker", "Blocker", "Блокер"),
]

_ARRAY_OPS = frozenset({"add", "remove", "set", "replace"})
_CATALOG_KINDS = ("status", "resolution", "issuetype", "priority")


@dataclass(frozen=True)
class _FieldDef:
    en: str
    ru: str
    type: str
    items: str | None = None
    editable: bool = False
    required: bool = False


# The global fields (`GET /v2/fields`); the official client reads `schema.type` of each.
_FIELDS: dict[str, _FieldDef] = {
    "summary": _FieldDef("Summary", "Задача", "string", editable=True, required=True),
    "description": _FieldDef("Description", "Описание", "string", editable=True),
    "key": _FieldDef("Key", "Ключ", "string"),
    "status": _FieldDef("Status", "Статус", "status"),
    "statusType": _FieldDef("Status type", "Тип статуса", "string"),
    "previousStatus": _FieldDef("Previous status", "Предыдущий статус", "status"),
    "statusStartTime": _FieldDef("Status start time", "Время начала статуса", "datetime"),
    "resolution": _FieldDef("Resolution", "Резолюция", "resolution"),
    "resolvedAt": _FieldDef("Resolved", "Дата решения", "datetime"),
    "resolvedBy": _FieldDef("Resolved by", "Кто решил", "user"),
    "assignee": _FieldDef("Assignee", "Исполнитель", "user", editable=True),
    "followers": _FieldDef("Followers", "Наблюдатели", "array", "user", editable=True),
    "tags": _FieldDef("Tags", "Теги", "array", "string", editable=True),
    "queue": _FieldDef("Queue", "Очередь", "queue", required=True),
    "type": _FieldDef("Type", "Тип", "issuetype", editable=True, required=True),
    "priority": _FieldDef("Priority", "Приоритет", "priority", editable=True, required=True),
    "createdAt": _FieldDef("Created", "Создано", "datetime"),
    "createdBy": _FieldDef("Author", "Автор", "user"),
    "updatedAt": _FieldDef("Updated", "Обновлено", "datetime"),
    "updatedBy": _FieldDef("Updated by", "Кто изменил", "user"),
    "lastCommentUpdatedAt": _FieldDef("Last comment", "Последний комментарий", "datetime"),
    "unique": _FieldDef("Unique", "Уникальный ключ", "string"),
    "version": _FieldDef("Version", "Версия", "integer"),
    "votes": _FieldDef("Votes", "Голоса", "integer"),
    "favorite": _FieldDef("Favorite", "Избранное", "boolean"),
    "aliases": _FieldDef("Aliases", "Альтернативные ключи", "array", "string"),
}
_FILTER_ALIASES = {"created": "createdAt", "updated": "updatedAt", "resolved": "resolvedAt"}


class _Fail(Exception):  # noqa: N818 - internal signal turned into an error response
    """Ends a handler with a Tracker-shaped error answer."""

    def __init__(
        self, status: int, message: str, errors: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors or {}
        self.headers = headers or {}


def error_response(
    status: int, messages: Sequence[str], errors: dict[str, str] | None = None,
    headers: dict[str, str] | None = None,
) -> EmuResponse:
    """The one error shape of Tracker: `errors` (field -> message), `errorMessages`, `statusCode`."""
    body = {"errors": errors or {}, "errorMessages": list(messages), "statusCode": status}
    return json_response(status, body, headers)


_DEFAULT_MESSAGES = {
    400: "Invalid parameter value",
    401: "Not authorized",
    403: "Forbidden",
    404: "Object not found",
    409: "There was a conflict when editing the object. The error may be due to an invalid update version",
    412: "There was a conflict when editing the object. The error may be due to an invalid update version",
    422: "Validation error",
    423: "Object edits disabled",
    429: "Too many requests",
    500: "Internal server error. Try resending your request in a few minutes",
    503: "Service temporarily unavailable",
}


def format_ts(moment: datetime) -> str:
    """Tracker's timestamp format: `2017-07-18T13:33:44.291+0000` (UTC, no colon in the offset)."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def parse_when(text: Any, naive_offset: timedelta = timedelta(0)) -> datetime:
    """A date or date-time given in a filter or query; naive values are read at `naive_offset`
    (UTC unless a test says otherwise: the real server's choice is not documented)."""
    if not isinstance(text, str):
        raise _Fail(422, f"Invalid date {text!r}")
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise _Fail(422, f"Invalid date {text!r}") from None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone(naive_offset)).astimezone(UTC)
    return moment.astimezone(UTC)


def _dedupe(values: Iterable[Any]) -> list[Any]:
    out: list[Any] = []
    for value in values:
        if value not in out:
            out.append(value)
    return out


def _display(names: tuple[str, str] | None, fallback: str, lang: str) -> str:
    if names is None:
        return fallback
    return names[0] if lang == "en" else names[1]


# -- state -------------------------------------------------------------------------------------


@dataclass
class _User:
    uid: int
    login: str
    email: str
    display: str
    robot: bool


@dataclass
class _LocalField:
    id: str
    key: str
    name: str
    type: str
    items: str | None
    order: int


@dataclass
class _Queue:
    id: int
    key: str
    name: str
    statuses: dict[str, str]
    transitions: dict[str, dict[str, str]]
    initial: str
    lead: int
    next_number: int = 1
    local_fields: dict[str, _LocalField] = field(default_factory=dict)


@dataclass
class _Change:
    field: str
    old: Any
    new: Any


@dataclass
class _LogEntry:
    id: str
    type: str
    at: datetime
    by: int
    transport: str
    changes: list[_Change]
    comment_id: int | None = None


@dataclass
class _Comment:
    id: int
    long_id: str
    text: str
    by: int
    at: datetime
    summonees: list[int]
    version: int = 1


@dataclass
class _Issue:
    id: str
    key: str
    queue: str
    number: int
    status: str
    status_start: datetime
    created_at: datetime
    created_by: int
    updated_at: datetime
    updated_by: int
    values: dict[str, Any]  # editable fields (global and local) by field id, raw (uids, keys)
    unique: str | None = None
    version: int = 1
    previous_status: str | None = None
    resolution: str | None = None
    resolved_at: datetime | None = None
    resolved_by: int | None = None
    last_comment_at: datetime | None = None
    comments: list[_Comment] = field(default_factory=list)
    changelog: list[_LogEntry] = field(default_factory=list)


@dataclass(frozen=True)
class _Ctx:
    """How to render for one request: host, API version and display language."""

    base: str
    ver: str
    lang: str

    def url(self, path: str) -> str:
        return f"{self.base}/{self.ver}/{path}"


@dataclass
class _Scroll:
    """One scroll context: the keys fixed at the first request and a cursor into them.  Every
    answer names the context with a new page id (`X-Scroll-Id`), but all of them lead to the same
    cursor, as an Elasticsearch scroll does (the ids in the docs' `_clear` example are
    Elasticsearch scroll ids): sending an id again after a lost answer gets the page *after*
    the lost one.  That is the unsafe assumption a client has to survive."""

    keys: list[str]
    per_scroll: int
    position: int
    token: str
    ttl_seconds: float
    expires: float
    kind: str  # sorted | unsorted
    page_ids: list[str] = field(default_factory=list)


class TrackerEmulator(EmulatorBase):
    """The Tracker emulator.  Knobs beyond the constructor (attributes, set them after building):

    * `org_error_status` (401): the answer to a missing/duplicate/wrong org header;
    * `status_in_patch_status` (422): the answer to a `status` key in PATCH;
    * `transition_error_status` (409): `_execute` of a transition not available now;
    * `require_resolution` (True): a transition to a done status needs a resolution;
    * `comment_bumps_version` (False): whether a comment itself bumps the issue version;
    * `workflows_status` (None): when set (e.g. 403), the workflow definition reads
      (`queues/{q}/workflows`, `workflows/{id}`) answer that error, as for a robot without the
      right to see the queue's settings;
    * `trigger_tag` (None): a queue trigger that adds this tag right after every create,
      after the 201 was rendered (so the create answer carries a stale version, as in real life);
    * `paged_limit` (10,000): the deepest row a page-paginated `_search` serves; a page that
      reaches past it (`page * perPage > limit`) is refused.  Tests lower it to exercise the
      switch to scroll on a few dozen issues;
    * `paged_limit_status` (400): that refusal.  Not documented for issues; 400 "Request exceeds
      10000 items limit" is what the API answered past row 10,000 of worklogs
      (yandex/yandex_tracker_client#5);
    * `paged_totals_capped` (True): `X-Total-Count`/`X-Total-Pages` of a page-paginated search
      stop at the limit, as reported of the real API (yandex/yandex_tracker_client#13: 10000 and
      10 pages for a search that `_count` put at 102,544), so a client that trusts them stops
      at row 10,000 without an error;
    * `scroll_gone_status` (404): the answer to a scroll id that is unknown, expired or cleared
      (not documented; an Elasticsearch scroll whose context is gone answers 404);
    * `max_open_scrolls` (100): new scrolls beyond this many open ones are refused with 429
      (memory stays bounded; contexts also expire after their `scrollTTLMillis`);
    * `clock` (time.monotonic): the clock of the rate limiter and of scroll lifetimes;
    * `trigger_right` ("GRANT"): the queue right that stands for "queue administration", which
      managing triggers needs (the docs name the rights READ, WRITE, CREATE, GRANT and say only
      that triggers need admin rights; GRANT, the right to give rights, is the closest).  The
      queue's lead has it always; anybody else needs it through `set_rights`, else 403;
    * `max_triggers_per_queue` (1,000): a create beyond it is refused (422; the code is a guess);
    * `trigger_headers_hidden` (False): answers show every header value of a trigger's action as
      `********`, as the UI does for hidden variables (whether the API does is not documented);
    * `deliver_triggers` (True): active triggers send their HTTP requests (in the background,
      `trigger_timeout` seconds at most each); False logs them as not sent;
    * `trigger_timeout` (2.0): how long a trigger's request may take.

    Triggers fire on every change of an issue of their queue, whoever makes it (a person through
    the people API, or any token through the API, the trigger's own creator included), as the
    real service does: `Event.update` on an edit, a status change or a comment that changed
    fields, `Event.create` on a new issue, `Event.comment-create` on a comment, and
    `FieldChangedCondition` when its field changed.  Each request sent (or failed) is an entry of
    the trigger's delivery log (`GET /v3/queues/{q}/triggers/{id}/webhooks/log`; the entry shape
    is not documented, the one here is a guess).
    """

    def __init__(
        self,
        *,
        org_id: str | None = "1234567",
        cloud_org_id: str | None = None,
        conflict_status: int = 409,
        omit_unset: bool = True,
        version_cap: int | None = None,
        rate_limit_per_second: int | None = None,
        retry_after_on_429: bool = True,
        now: Callable[[], datetime] | None = None,
    ) -> None:
        super().__init__()
        self.org_id = org_id
        self.cloud_org_id = cloud_org_id
        self.conflict_status = conflict_status
        self.omit_unset = omit_unset
        self.version_cap = version_cap
        # How a date without an offset in a filter or query is read.  The reference leaves it
        # open; tests set UTC-5 or UTC+3 to prove the bridge never relies on it.
        self.naive_dates_offset = timedelta(0)
        # A broken server for doctor's poll probe: every date in a filter or query is read this
        # much later than meant (one that ignored the offset and read it at UTC-5: 5 hours).
        self.misread_dates_by = timedelta(0)
        # Queue rights per (queue, uid): right (READ/WRITE/CREATE/GRANT) -> how it is held
        # ("users", "groups" or "roles").  Unset: every right, held personally.
        self._rights: dict[tuple[str, int], dict[str, str]] = {}
        self.rate_limit_per_second = rate_limit_per_second
        self.retry_after_on_429 = retry_after_on_429
        self.now: Callable[[], datetime] = now or (lambda: datetime.now(UTC))
        self.org_error_status = 401
        self.status_in_patch_status = 422
        self.transition_error_status = 409
        self.require_resolution = True
        self.comment_bumps_version = False
        self.workflows_status: int | None = None
        self.trigger_tag: str | None = None
        self.paged_limit = PAGED_LIMIT
        self.paged_limit_status = 400
        self.paged_totals_capped = True
        self.scroll_gone_status = 404
        self.max_open_scrolls = MAX_OPEN_SCROLLS
        self.clock: Callable[[], float] = time.monotonic
        self.trigger_right = "GRANT"
        self.max_triggers_per_queue = trig.MAX_PER_QUEUE
        self.trigger_headers_hidden = False
        self.deliver_triggers = True
        self.trigger_timeout = 2.0

        self._users: dict[int, _User] = {}
        self._logins: dict[str, int] = {}  # lower-case login -> uid
        self._tokens: dict[str, int] = {}
        self._queues: dict[str, _Queue] = {}
        self._issues: dict[str, _Issue] = {}
        self._issue_ids: dict[str, str] = {}
        self._uniques: dict[str, str] = {}
        self._statuses: dict[str, tuple[str, str]] = {}  # key -> (id, type)
        self._scrolls: dict[str, _Scroll] = {}  # context id -> context
        self._scroll_pages: dict[str, str] = {}  # page id (X-Scroll-Id) -> context id
        self._shuffle = random.Random(0)  # the order of unsorted scrolls: arbitrary, repeatable
        self._windows: dict[str, tuple[int, int]] = {}
        self._hex = itertools.count(0x5F0000000000000000000001)
        self._uids = itertools.count(1130000000000001)
        self._comment_ids = itertools.count(1)
        self._actor = 0
        self._triggers: dict[int, trig.Trigger] = {}
        self._trigger_ids = itertools.count(1)
        self._delivery_ids = itertools.count(1)
        self._outbox: trig.Outbox | None = None  # made when a trigger first fires

        self.robot_uid = self.add_user(ROBOT_LOGIN, "bridge-robot@example.com", display="Bridge Robot",
                                       robot=True)
        self.admin_uid = self.add_user(ADMIN_LOGIN, "tracker-admin@example.com", display="Tracker Admin")
        self.add_token(DEFAULT_TOKEN, login=ROBOT_LOGIN)
        self.add_queue("OPS")
        self._register_routes()

    # =========================================================================================
    # People / seeding API
    # =========================================================================================

    def add_queue(self, key: str, *, workflow: dict[str, Any] | None = None, initial_status: str = "open",
                  name: str | None = None) -> None:
        """Add a queue with a workflow shaped like `DEFAULT_WORKFLOW`."""
        flow = copy.deepcopy(workflow if workflow is not None else DEFAULT_WORKFLOW)
        statuses: dict[str, str] = dict(flow.get("statuses", {}))
        transitions: dict[str, dict[str, str]] = {k: dict(v) for k, v in flow.get("transitions", {}).items()}
        if initial_status not in statuses:
            raise ValueError(f"initial status {initial_status!r} is not in the workflow")
        for source, moves in transitions.items():
            for tid, target in moves.items():
                if source not in statuses or target not in statuses:
                    raise ValueError(f"transition {tid!r} links unknown statuses {source!r} -> {target!r}")
        with self.lock:
            if key in self._queues:
                raise ValueError(f"queue {key} exists")
            for status, kind in statuses.items():
                if kind not in _STATUS_TYPE_NAMES:
                    raise ValueError(f"unknown status type {kind!r}")
                known = self._statuses.get(status)
                if known and known[1] != kind:
                    raise ValueError(f"status {status!r} already has type {known[1]!r}")
                if not known:
                    self._statuses[status] = (str(len(self._statuses) + 1), kind)
            self._queues[key] = _Queue(
                id=len(self._queues) + 1, key=key, name=name or key, statuses=statuses,
                transitions=transitions, initial=initial_status, lead=int(self.admin_uid),
            )

    def set_rights(self, queue: str, login: str, rights: dict[str, str]) -> None:
        """An admin sets `login`'s rights in `queue`: right -> how it is held ("users", "groups"
        or "roles").  Writes without WRITE (PATCH, transitions, comments) and creates without
        CREATE are refused with 403."""
        with self.lock:
            self._rights[(queue, int(self.uid_of(login)))] = dict(rights)

    def _rights_of(self, queue: str, uid: int) -> dict[str, str]:
        return self._rights.get((queue, uid), {"READ": "users", "WRITE": "users", "CREATE": "users"})

    def _require(self, queue: str, right: str) -> None:
        if right not in self._rights_of(queue, self._actor):
            raise _Fail(403, "You do not have permission to perform this action")

    def edit_workflow(self, queue: str, status: str, transitions: dict[str, str]) -> None:
        """An admin replaces the transitions out of `status` (transition id -> target status):
        what makes a bridge's cached workflow stale."""
        with self.lock:
            q = self._queues[queue]
            unknown = [target for target in transitions.values() if target not in q.statuses]
            if status not in q.statuses or unknown:
                raise ValueError(f"unknown status in workflow edit: {status!r} -> {unknown}")
            q.transitions[status] = dict(transitions)

    def add_local_field(self, queue: str, key: str, *, name: str | None = None, type: str = "string",
                        items: str | None = None) -> str:
        """Add a queue-local field; returns its full id `<24 hex>--<key>` (the key to write with)."""
        if type not in ("string", "number", "user", "array"):
            raise ValueError(f"unsupported local field type {type!r}")
        with self.lock:
            q = self._queues[queue]
            field_id = f"{self._next_hex()}--{key}"
            q.local_fields[field_id] = _LocalField(field_id, key, name or key, type,
                                                   items or ("string" if type == "array" else None),
                                                   len(q.local_fields) + 1)
            return field_id

    def add_user(self, login: str, email: str, *, display: str | None = None, uid: str | None = None,
                 robot: bool = False) -> str:
        """Add a user; returns the uid (a numeric string, like a user ref's `id`)."""
        with self.lock:
            if self._uid_of_login(login) is not None:
                raise ValueError(f"user {login} exists")
            number = int(uid) if uid is not None else next(self._uids)
            if number in self._users:
                raise ValueError(f"uid {number} is taken")
            self._users[number] = _User(number, login, email, display or login, robot)
            self._logins[login.lower()] = number
            return str(number)

    def add_token(self, token: str, *, login: str) -> None:
        with self.lock:
            self._tokens[token] = self._require_user(login)

    def uid_of(self, login: str) -> str:
        """The uid (string) of a login, as it appears in user refs."""
        with self.lock:
            return str(self._require_user(login))

    def add_issue(
        self,
        queue: str,
        summary: str,
        *,
        status: str | None = None,
        resolution: str | None = None,
        assignee: str | None = None,
        followers: Sequence[str] = (),
        unique: str | None = None,
        description: str = "",
        tags: Sequence[str] = (),
        by: str | None = None,
    ) -> str:
        """Seed an issue as a person would create it; returns its key (e.g. `OPS-1`)."""
        with self.lock:
            actor = self._require_user(by or ADMIN_LOGIN)
            q = self._queues[queue]
            if unique is not None and unique in self._uniques:
                raise ValueError(f"unique {unique!r} is taken by {self._uniques[unique]}")
            values = self._default_values(q)
            values.update(
                summary=summary,
                description=description or None,
                assignee=self._require_user(assignee) if assignee else None,
                followers=_dedupe(self._require_user(f) for f in followers),
                tags=_dedupe(tags),
            )
            target = status or q.initial
            self._check_jump(q, target, resolution, None)
            issue = self._new_issue(q, values, unique, actor, transport="front")
            if target != q.initial:  # seeded as if it had always been there: still version 1
                issue.status = target
                issue.resolution = resolution
                if resolution is not None:
                    issue.resolved_at, issue.resolved_by = issue.created_at, actor
            return issue.key

    def add_issues(self, queue: str, summaries: Iterable[str], *, by: str | None = None) -> list[str]:
        """Seed many plain issues at once (open, unassigned, no unique), under one lock: a queue
        past the 10,000-row search limit in a fraction of a second, for tests and benchmarks."""
        with self.lock:
            actor = self._require_user(by or ADMIN_LOGIN)
            q = self._queues[queue]
            keys = []
            for summary in summaries:
                values = self._default_values(q)
                values["summary"] = summary
                keys.append(self._new_issue(q, values, None, actor, transport="front").key)
            return keys

    @property
    def open_scrolls(self) -> int:
        """Scroll contexts still open (not read to the end, cleared or expired): a client that
        leaves them behind holds server memory until their TTL runs out."""
        with self.lock:
            self._expire_scrolls()
            return len(self._scrolls)

    def set_status(self, key: str, status: str, *, resolution: str | None = None,
                   by: str | None = None) -> None:
        """A person moves the issue straight to `status` (no workflow check)."""
        with self.lock:
            self._jump(self._require_issue(key), status, resolution, self._require_user(by or ADMIN_LOGIN))

    def set_assignee(self, key: str, login: str | None, *, by: str | None = None) -> None:
        with self.lock:
            uid = self._require_user(login) if login else None
            self._people_change(key, "assignee", uid, by)

    def add_follower(self, key: str, login: str, *, by: str | None = None) -> None:
        with self.lock:
            issue = self._require_issue(key)
            uid = self._require_user(login)
            self._people_change(key, "followers", _dedupe([*issue.values["followers"], uid]), by)

    def remove_follower(self, key: str, login: str, *, by: str | None = None) -> None:
        with self.lock:
            issue = self._require_issue(key)
            uid = self._require_user(login)
            self._people_change(key, "followers", [f for f in issue.values["followers"] if f != uid], by)

    def set_fields(self, key: str, fields: dict[str, Any], *, by: str | None = None) -> None:
        """A person edits fields with PATCH semantics (e.g. `{"tags": {"add": ["x"]}}`)."""
        with self.lock:
            issue = self._require_issue(key)
            try:
                changes = self._compute_changes(self._queues[issue.queue], issue.values, fields)
            except _Fail as exc:
                raise ValueError(f"{exc.message}: {exc.errors}") from None
            if changes:
                self._apply(issue, changes, "IssueUpdated", self._require_user(by or ADMIN_LOGIN), "front")

    def add_comment(self, key: str, text: str, *, by: str | None = None) -> int:
        """A person comments (the UI adds commenters to followers, as the API does by default)."""
        with self.lock:
            issue = self._require_issue(key)
            return self._comment(issue, text, [], self._require_user(by or ADMIN_LOGIN), True, "front").id

    def delete_trigger(self, queue: str, trigger_id: int | str) -> None:
        """A queue admin deletes a trigger in the UI (the API documents no delete)."""
        with self.lock:
            trigger = self._triggers.get(int(trigger_id))
            if trigger is None or trigger.queue != queue:
                raise KeyError(f"no trigger {trigger_id} in {queue}")
            del self._triggers[trigger.id]

    def edit_trigger(self, queue: str, trigger_id: int | str, **fields: Any) -> None:
        """A queue admin edits a trigger in the UI (`name`, `actions`, `conditions`, `active`):
        a new version, as through the API."""
        with self.lock:
            trigger = self._triggers.get(int(trigger_id))
            if trigger is None or trigger.queue != queue:
                raise KeyError(f"no trigger {trigger_id} in {queue}")
            checks = {"name": trig.check_name, "actions": trig.check_actions,
                      "conditions": trig.check_conditions, "active": trig.check_active}
            for key, value in fields.items():
                setattr(trigger, key, checks[key](value))
            trigger.version += 1

    def triggers(self, queue: str | None = None) -> list[dict[str, Any]]:
        """The triggers as a queue admin sees them in the UI (header values in clear)."""
        with self.lock:
            return [self._trigger_json(_Ctx("http://tracker.test", "v3", "en"), t, reveal=True)
                    for t in self._triggers.values() if queue is None or t.queue == queue]

    def deliveries(self, trigger_id: int | str | None = None) -> list[dict[str, Any]]:
        """Requests the triggers sent (or failed to send), oldest first, as their logs hold them."""
        with self.lock:
            entries = [copy.deepcopy(e) for t in self._triggers.values()
                       if trigger_id is None or t.id == int(trigger_id) for e in t.deliveries]
        return sorted(entries, key=lambda e: int(e["id"]))

    def wait_for_deliveries(self, timeout: float = 5.0) -> bool:
        """Wait until every fired request has been sent (or failed); False at the deadline."""
        deadline = time.monotonic() + timeout
        while self._outbox is not None and self._outbox.pending:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.01)
        return True

    def issue_json(self, key: str, base_url: str = "http://tracker.test", *, api_version: str = "v3",
                   lang: str = "en") -> dict[str, Any]:
        """The issue as `GET /{api_version}/issues/{key}` on `base_url` would answer it."""
        with self.lock:
            return self._issue_json(self._require_issue(key), _Ctx(base_url.rstrip("/"), api_version, lang))

    def issue_keys(self) -> list[str]:
        with self.lock:
            return list(self._issues)

    def writes(self) -> list[LoggedRequest]:
        """Logged requests that may change state (`_count` and scroll reads are reads too, and
        releasing a scroll changes no data)."""
        return [r for r in super().writes() if not r.path.rstrip("/").endswith(("/_count", "/scroll/_clear"))]

    def fault_response(self, fault: Fault) -> EmuResponse:
        if fault.body:
            return super().fault_response(fault)
        message = _DEFAULT_MESSAGES.get(fault.status, f"Error {fault.status}")
        return error_response(fault.status, [message], headers=dict(fault.headers))

    # -- people helpers -----------------------------------------------------------------------

    def _people_change(self, key: str, name: str, new: Any, by: str | None) -> None:
        issue = self._require_issue(key)
        old = issue.values.get(name)
        if old != new:
            self._apply(issue, [_Change(name, old, new)], "IssueUpdated",
                        self._require_user(by or ADMIN_LOGIN), "front")

    def _check_jump(self, q: _Queue, status: str, resolution: str | None, current: str | None) -> None:
        if status not in q.statuses:
            raise ValueError(f"status {status!r} is not in the workflow of {q.key}")
        done = q.statuses[status] == "done"
        if done and resolution is None and current is None:
            raise ValueError(f"status {status!r} is a done status: give a resolution")
        if not done and resolution is not None:
            raise ValueError("a resolution needs a done status")
        if resolution is not None and self._catalog_key("resolution", resolution) != resolution:
            raise ValueError(f"unknown resolution {resolution!r}")

    def _jump(self, issue: _Issue, status: str, resolution: str | None, actor: int) -> None:
        q = self._queues[issue.queue]
        self._check_jump(q, status, resolution, issue.resolution)
        if q.statuses[status] == "done":
            self._move(issue, status, resolution or issue.resolution, actor, "front", [])
        else:
            self._move(issue, status, None, actor, "front", [])

    def _require_user(self, login: str) -> int:
        uid = self._uid_of_login(login)
        if uid is None:
            raise ValueError(f"unknown user {login!r}")
        return uid

    def _require_issue(self, key: str) -> _Issue:
        issue = self._find_issue(key)
        if issue is None:
            raise KeyError(key)
        return issue

    # =========================================================================================
    # State machinery shared by the people API and the HTTP handlers
    # =========================================================================================

    def _next_hex(self) -> str:
        return f"{next(self._hex):024x}"

    def _uid_of_login(self, login: str) -> int | None:
        return self._logins.get(login.lower())

    def _find_issue(self, key_or_id: str) -> _Issue | None:
        key = self._issue_ids.get(key_or_id, key_or_id.upper())
        return self._issues.get(key)

    def _default_values(self, q: _Queue) -> dict[str, Any]:
        values: dict[str, Any] = {
            "summary": None, "description": None, "assignee": None, "followers": [], "tags": [],
            "type": "task", "priority": "normal",
        }
        for lf in q.local_fields.values():
            values[lf.id] = [] if lf.type == "array" else None
        return values

    def _new_issue(self, q: _Queue, values: dict[str, Any], unique: str | None, actor: int,
                   transport: str) -> _Issue:
        at = self.now()
        key = f"{q.key}-{q.next_number}"
        issue = _Issue(
            id=self._next_hex(), key=key, queue=q.key, number=q.next_number, status=q.initial,
            status_start=at, created_at=at, created_by=actor, updated_at=at, updated_by=actor,
            values=values, unique=unique,
        )
        q.next_number += 1
        self._issues[key] = issue
        self._issue_ids[issue.id] = key
        if unique is not None:
            self._uniques[unique] = key
        issue.changelog.append(_LogEntry(self._next_hex(), "IssueCreated", at, actor, transport, []))
        self._fire(issue, {"create"}, ())
        return issue

    def _bump(self, issue: _Issue, actor: int) -> datetime:
        at = self.now()
        issue.version += 1
        issue.updated_at = at
        issue.updated_by = actor
        return at

    def _apply(self, issue: _Issue, changes: list[_Change], kind: str, actor: int, transport: str) -> None:
        for change in changes:
            issue.values[change.field] = change.new
        at = self._bump(issue, actor)
        issue.changelog.append(_LogEntry(self._next_hex(), kind, at, actor, transport, changes))
        self._fire(issue, {"update"}, [change.field for change in changes])

    def _move(self, issue: _Issue, status: str, resolution: str | None, actor: int, transport: str,
              extra: list[_Change]) -> None:
        """Change status (and resolution) in one new version with one `IssueWorkflow` entry."""
        changes = [_Change("status", issue.status, status)]
        if resolution != issue.resolution:
            changes.append(_Change("resolution", issue.resolution, resolution))
        for change in extra:
            issue.values[change.field] = change.new
        changes.extend(extra)
        at = self._bump(issue, actor)
        issue.previous_status = issue.status
        issue.status = status
        issue.status_start = at
        if resolution is None:
            issue.resolved_at = issue.resolved_by = None
        elif resolution != issue.resolution or issue.resolved_at is None:
            issue.resolved_at, issue.resolved_by = at, actor
        issue.resolution = resolution
        issue.changelog.append(_LogEntry(self._next_hex(), "IssueWorkflow", at, actor, transport, changes))
        self._fire(issue, {"update"}, [change.field for change in changes])

    def _comment(self, issue: _Issue, text: str, summonees: list[int], actor: int, add_to_followers: bool,
                 transport: str) -> _Comment:
        at = self.now()
        comment = _Comment(next(self._comment_ids), self._next_hex(), text, actor, at, summonees)
        issue.comments.append(comment)
        issue.last_comment_at = at
        followers: list[int] = issue.values["followers"]
        changes: list[_Change] = []
        if add_to_followers and actor not in followers:
            changes.append(_Change("followers", list(followers), [*followers, actor]))
            issue.values["followers"] = [*followers, actor]
        if changes or self.comment_bumps_version:
            self._bump(issue, actor)
        entry = _LogEntry(self._next_hex(), "IssueCommentAdded", at, actor, transport, changes, comment.id)
        issue.changelog.append(entry)
        self._fire(issue, {"comment-create", "update"} if changes else {"comment-create"},
                   [change.field for change in changes])
        return comment

    def _cap_for(self, actor: int) -> int:
        if self.version_cap is not None:
            return self.version_cap
        return ROBOT_VERSION_CAP if self._users[actor].robot else USER_VERSION_CAP

    def _check_cap(self, issue: _Issue) -> None:
        if issue.version >= self._cap_for(self._actor):
            raise _Fail(423, f"Object edits disabled: the version limit {self._cap_for(self._actor)} "
                             "has been reached")

    # -- field values -------------------------------------------------------------------------

    def _schema(self, q: _Queue, name: str) -> tuple[str, str | None] | None:
        if name in _FIELDS:
            fd = _FIELDS[name]
            return fd.type, fd.items
        lf = q.local_fields.get(name)
        return (lf.type, lf.items) if lf else None

    def _editable(self, q: _Queue, name: str) -> bool:
        return name in q.local_fields or (name in _FIELDS and _FIELDS[name].editable)

    def _resolve_user(self, value: Any) -> int | None:
        if isinstance(value, dict):
            for k in ("id", "uid", "login", "passportUid", "trackerUid"):
                if k in value:
                    return self._resolve_user(value[k])
            return None
        if isinstance(value, bool):
            return None
        if isinstance(value, int):
            return value if value in self._users else None
        if isinstance(value, str):
            if value.isdigit() and int(value) in self._users:
                return int(value)
            return self._uid_of_login(value.rstrip("@"))
        return None

    def _catalog(self, kind: str) -> list[tuple[str, str, str, str]]:
        """(id, key, en, ru) of a reference-data kind."""
        if kind == "status":
            return [(sid, key, *(_STATUS_NAMES.get(key, (key, key))))
                    for key, (sid, _) in self._statuses.items()]
        table = {"resolution": _RESOLUTIONS, "issuetype": _ISSUE_TYPES, "priority": _PRIORITIES}[kind]
        return [(str(i), key, en, ru) for i, (key, en, ru) in enumerate(table, start=1)]

    def _catalog_key(self, kind: str, value: Any) -> str | None:
        if isinstance(value, dict):
            for k in ("key", "id", "name", "display"):
                if k in value:
                    return self._catalog_key(kind, value[k])
            return None
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            return None
        text = str(value)
        for ident, key, en, ru in self._catalog(kind):
            if text in (ident, key) or text.lower() in (key.lower(), en.lower(), ru.lower()):
                return key
        return None

    def _scalar(self, name: str, kind: str, value: Any) -> Any:
        if kind == "string":
            if not isinstance(value, str):
                raise _Fail(422, f"Field {name} expects a string", {name: "Expected a string"})
            return value
        if kind == "number":
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise _Fail(422, f"Field {name} expects a number", {name: "Expected a number"})
            return value
        if kind == "user":
            uid = self._resolve_user(value)
            if uid is None:
                raise _Fail(422, f"User {value!r} does not exist", {name: f"User {value!r} does not exist"})
            return uid
        if kind in _CATALOG_KINDS:
            key = self._catalog_key(kind, value)
            if key is None:
                raise _Fail(422, f"Unknown {kind} {value!r}", {name: f"Unknown value {value!r}"})
            return key
        raise _Fail(422, f"Field {name} cannot be changed", {name: "Read-only field"})

    def _normalize(self, name: str, schema: tuple[str, str | None], value: Any, current: Any) -> Any:
        kind, items = schema
        if kind == "array":
            return self._array_op(name, items or "string", value, list(current or []))
        if isinstance(value, dict) and set(value) == {"set"}:
            value = value["set"]
        if value is None:
            if name in _FIELDS and _FIELDS[name].required:
                raise _Fail(422, f"Field {name} is required", {name: "Required field"})
            return None
        return self._scalar(name, kind, value)

    def _array_op(self, name: str, kind: str, value: Any, current: list[Any]) -> list[Any]:
        def many(raw: Any) -> list[Any]:
            if raw is None:
                return []
            return [self._scalar(name, kind, v) for v in (raw if isinstance(raw, list) else [raw])]

        if value is None:
            return []
        if isinstance(value, list):
            return _dedupe(many(value))
        if isinstance(value, dict) and value and set(value) <= _ARRAY_OPS:
            result = list(current)
            if "set" in value:
                result = _dedupe(many(value["set"]))
            for pair in value.get("replace") or []:
                if not isinstance(pair, dict) or not {"target", "replacement"} <= set(pair):
                    raise _Fail(422, "replace expects [{target, replacement}]", {name: "Invalid replace"})
                target = self._scalar(name, kind, pair["target"])
                replacement = self._scalar(name, kind, pair["replacement"])
                if target in result:
                    if replacement in result:
                        result.remove(target)
                    else:
                        result[result.index(target)] = replacement
            if "remove" in value:
                dropped = many(value["remove"])
                result = [v for v in result if v not in dropped]
            for added in many(value.get("add")):
                if added not in result:
                    result.append(added)
            return result
        return _dedupe(many(value))

    def _compute_changes(self, q: _Queue, current: dict[str, Any], body: dict[str, Any]) -> list[_Change]:
        """Validate a PATCH-style body against `current` values; every problem is reported at once."""
        changes: list[_Change] = []
        errors: dict[str, str] = {}
        messages: list[str] = []
        status = 422
        for name, value in body.items():
            if name == "status":
                status = self.status_in_patch_status
                errors[name] = "Status can only be changed with a transition"
                messages.append("Status can only be changed with a transition")
                continue
            schema = self._schema(q, name)
            if schema is None:
                errors[name] = "Field does not exist"
                messages.append(f"Field {name} does not exist")
                continue
            if not self._editable(q, name):
                errors[name] = "Read-only field"
                messages.append(f"Field {name} cannot be changed here")
                continue
            try:
                new = self._normalize(name, schema, value, current.get(name))
            except _Fail as exc:
                errors.update(exc.errors)
                messages.append(exc.message)
                continue
            if new != current.get(name):
                changes.append(_Change(name, current.get(name), new))
        if errors:
            raise _Fail(status, "; ".join(messages), errors)
        return changes

    # =========================================================================================
    # Rendering
    # =========================================================================================

    def _user_ref(self, ctx: _Ctx, uid: int) -> dict[str, Any]:
        user = self._users[uid]
        ref: dict[str, Any] = {"self": ctx.url(f"users/{uid}"), "id": str(uid), "display": user.display,
                               "passportUid": uid}
        if self.cloud_org_id:
            ref["cloudUid"] = f"aje{uid:017d}"
        return ref

    def _catalog_ref(self, ctx: _Ctx, kind: str, key: str) -> dict[str, Any]:
        path = {"status": "statuses", "resolution": "resolutions", "issuetype": "issuetypes",
                "priority": "priorities"}[kind]
        for ident, k, en, ru in self._catalog(kind):
            if k == key:
                return {"self": ctx.url(f"{path}/{ident}"), "id": ident, "key": key,
                        "display": en if ctx.lang == "en" else ru}
        return {"self": ctx.url(f"{path}/{key}"), "id": key, "key": key, "display": key}

    def _queue_ref(self, ctx: _Ctx, key: str) -> dict[str, Any]:
        q = self._queues[key]
        return {"self": ctx.url(f"queues/{q.key}"), "id": str(q.id), "key": q.key, "display": q.name}

    def _issue_ref(self, ctx: _Ctx, issue: _Issue) -> dict[str, Any]:
        return {"self": ctx.url(f"issues/{issue.key}"), "id": issue.id, "key": issue.key,
                "display": issue.values.get("summary")}

    def _render(self, ctx: _Ctx, kind: str, raw: Any) -> Any:
        if raw is None:
            return None
        if kind == "user":
            return self._user_ref(ctx, raw)
        if kind in _CATALOG_KINDS:
            return self._catalog_ref(ctx, kind, raw)
        if kind == "queue":
            return self._queue_ref(ctx, raw)
        if kind == "datetime":
            return format_ts(raw)
        return raw

    def _render_value(self, ctx: _Ctx, schema: tuple[str, str | None], raw: Any) -> Any:
        kind, items = schema
        if kind == "array":
            return [self._render(ctx, items or "string", v) for v in raw or []]
        return self._render(ctx, kind, raw)

    def _issue_json(self, issue: _Issue, ctx: _Ctx, expand: Sequence[str] = ()) -> dict[str, Any]:
        q = self._queues[issue.queue]
        status_type = q.statuses[issue.status]
        doc: dict[str, Any] = {
            "self": ctx.url(f"issues/{issue.key}"),
            "id": issue.id,
            "key": issue.key,
            "version": issue.version,
            "summary": issue.values["summary"],
            "statusStartTime": format_ts(issue.status_start),
            "status": self._catalog_ref(ctx, "status", issue.status),
            "statusType": {"id": status_type, "key": status_type,
                           "display": _display(_STATUS_TYPE_NAMES.get(status_type), status_type, ctx.lang)},
            "queue": self._queue_ref(ctx, issue.queue),
            "type": self._catalog_ref(ctx, "issuetype", issue.values["type"]),
            "priority": self._catalog_ref(ctx, "priority", issue.values["priority"]),
            "createdAt": format_ts(issue.created_at),
            "createdBy": self._user_ref(ctx, issue.created_by),
            "updatedAt": format_ts(issue.updated_at),
            "updatedBy": self._user_ref(ctx, issue.updated_by),
            "votes": 0,
            "favorite": False,
        }
        optional: dict[str, Any] = {
            "description": issue.values.get("description") or None,
            "previousStatus": self._render(ctx, "status", issue.previous_status),
            "resolution": self._render(ctx, "resolution", issue.resolution),
            "resolvedAt": self._render(ctx, "datetime", issue.resolved_at),
            "resolvedBy": self._render(ctx, "user", issue.resolved_by),
            "assignee": self._render(ctx, "user", issue.values.get("assignee")),
            "followers": self._render_value(ctx, ("array", "user"), issue.values.get("followers")),
            "tags": list(issue.values.get("tags") or []),
            "unique": issue.unique,
            "lastCommentUpdatedAt": self._render(ctx, "datetime", issue.last_comment_at),
        }
        for lf in q.local_fields.values():
            optional[lf.id] = self._render_value(ctx, (lf.type, lf.items), issue.values.get(lf.id))
        for name, value in optional.items():
            if value is None or value == []:
                if not self.omit_unset:
                    doc[name] = value
            else:
                doc[name] = value
        if "transitions" in expand:
            doc["transitions"] = self._transitions_json(ctx, issue)
        return doc

    def _transition_json(self, ctx: _Ctx, issue: _Issue, tid: str, target: str) -> dict[str, Any]:
        return {
            "id": tid,
            "self": ctx.url(f"issues/{issue.key}/transitions/{tid}"),
            "display": _display(_TRANSITION_NAMES.get(tid), tid, ctx.lang),
            "to": self._catalog_ref(ctx, "status", target),
        }

    def _transitions_json(self, ctx: _Ctx, issue: _Issue) -> list[dict[str, Any]]:
        moves = self._queues[issue.queue].transitions.get(issue.status, {})
        return [self._transition_json(ctx, issue, tid, target) for tid, target in moves.items()]

    def _comment_json(self, ctx: _Ctx, issue: _Issue, c: _Comment) -> dict[str, Any]:
        return {
            "self": ctx.url(f"issues/{issue.key}/comments/{c.id}"),
            "id": c.id,
            "longId": c.long_id,
            "text": c.text,
            "summonees": [self._user_ref(ctx, u) for u in c.summonees],
            "createdBy": self._user_ref(ctx, c.by),
            "updatedBy": self._user_ref(ctx, c.by),
            "createdAt": format_ts(c.at),
            "updatedAt": format_ts(c.at),
            "version": c.version,
            "type": "standard",
            "transport": "internal",
        }

    def _change_schema(self, q: _Queue, name: str) -> tuple[str, str | None]:
        return self._schema(q, name) or ("string", None)

    def _field_ref(self, ctx: _Ctx, q: _Queue, name: str) -> dict[str, Any]:
        if name in q.local_fields:
            lf = q.local_fields[name]
            return {"self": ctx.url(f"queues/{q.key}/localFields/{lf.key}"), "id": name, "display": lf.name}
        fd = _FIELDS.get(name)
        return {"self": ctx.url(f"fields/{name}"), "id": name,
                "display": _display((fd.en, fd.ru) if fd else None, name, ctx.lang)}

    def _entry_json(self, ctx: _Ctx, issue: _Issue, entry: _LogEntry) -> dict[str, Any]:
        q = self._queues[issue.queue]
        doc: dict[str, Any] = {
            "id": entry.id,
            "self": ctx.url(f"issues/{issue.key}/changelog/{entry.id}"),
            "issue": self._issue_ref(ctx, issue),
            "updatedAt": format_ts(entry.at),
            "updatedBy": self._user_ref(ctx, entry.by),
            "type": entry.type,
            "transport": entry.transport,
        }
        if entry.changes:
            doc["fields"] = [
                {
                    "field": self._field_ref(ctx, q, c.field),
                    "from": self._render_value(ctx, self._change_schema(q, c.field), c.old),
                    "to": self._render_value(ctx, self._change_schema(q, c.field), c.new),
                }
                for c in entry.changes
            ]
        if entry.comment_id is not None:
            doc["comments"] = {"added": [{"self": ctx.url(f"issues/{issue.key}/comments/{entry.comment_id}"),
                                          "id": entry.comment_id, "display": str(entry.comment_id)}]}
        return doc

    def _user_json(self, ctx: _Ctx, user: _User) -> dict[str, Any]:
        first, _, last = user.display.partition(" ")
        doc: dict[str, Any] = {
            "self": ctx.url(f"users/{user.uid}"),
            "uid": user.uid,
            "login": user.login,
            "trackerUid": user.uid,
            "passportUid": user.uid,
            "firstName": first,
            "lastName": last,
            "display": user.display,
            "email": user.email,
            "external": False,
            "hasLicense": True,
            "dismissed": False,
            "useNewFilters": True,
            "disableNotifications": False,
        }
        if self.cloud_org_id:
            doc["cloudUid"] = f"aje{user.uid:017d}"
        return doc

    # -- triggers: firing ---------------------------------------------------------------------

    def _fire(self, issue: _Issue, events: set[str], fields: Iterable[str]) -> None:
        """Send the requests of every active trigger of the issue's queue whose conditions this
        change meets.  Costs nothing while there are no triggers, and never raises into the
        change that fired it: rendering happens here (under the state lock, so it sees this
        change), sending on the outbox's threads."""
        if not self._triggers:
            return
        happened, changed = frozenset(events), frozenset(fields)
        for trigger in list(self._triggers.values()):
            if trigger.queue != issue.queue or not trigger.active:
                continue
            if not trig.conditions_hold(trigger.conditions, happened, changed):
                continue
            for action in trigger.actions:
                if action.get("type") == "Webhook":
                    self._send_hook(trigger, action, issue)

    def _send_hook(self, trigger: trig.Trigger, action: dict[str, Any], issue: _Issue) -> None:
        entry: dict[str, Any] = {
            "id": next(self._delivery_ids), "triggerId": trigger.id, "actionId": action.get("id"),
            "issue": {"id": issue.id, "key": issue.key}, "createdAt": format_ts(issue.updated_at),
            "request": None, "response": None, "error": None, "durationMs": None,
        }
        try:
            request = trig.outbound(action, lambda name: self._variable(issue, name))
        except Exception as exc:  # noqa: BLE001 - a template the emulator cannot render is logged, not raised
            entry["error"] = f"not sent: {type(exc).__name__}: {exc}"
            self._record_delivery(entry)
            return
        entry["request"] = {"method": request.method, "url": request.url, "headers": dict(request.headers),
                            "body": request.body.decode("utf-8", "replace")}
        if not self.deliver_triggers:
            entry["error"] = "not sent: delivery is off (deliver_triggers = False)"
            self._record_delivery(entry)
            return
        if self._outbox is None:
            self._outbox = trig.Outbox(self._record_delivery, self.trigger_timeout)
        self._outbox.timeout = self.trigger_timeout
        self._outbox.send(entry, request)

    def _record_delivery(self, entry: dict[str, Any]) -> None:
        with self.lock:
            trigger = self._triggers.get(int(entry["triggerId"]))
            if trigger is not None:  # deleted meanwhile: its log went with it
                trigger.deliveries.append(entry)

    _MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september",
               "october", "november", "december")
    _DATE_MODIFIERS = ("iso8601", "unixEpoch", "date")

    def _variable(self, issue: _Issue, name: str) -> str:
        """One `{{...}}` variable of a trigger's request (user/vars.md): `issue.<field>`,
        `currentDateTime`, with a date modifier (`.iso8601`, `.unixEpoch`, `.date`; plain dates
        render as `DD month YYYY`) and `.json`.  An unknown variable renders as nothing."""
        parts = name.split(".")
        as_json = parts[-1] == "json" and len(parts) > 1
        if as_json:
            parts.pop()
        modifier = parts.pop() if len(parts) > 1 and parts[-1] in self._DATE_MODIFIERS else None
        value: Any = None
        if parts == ["currentDateTime"]:
            value = self.now()
        elif len(parts) == 2 and parts[0] == "issue":
            value = self._issue_variable(issue, parts[1])
        if isinstance(value, datetime):
            value = self._date_variable(value, modifier)
        if as_json:
            return json.dumps(value, ensure_ascii=False)
        if value is None:
            return ""
        if isinstance(value, list):
            return ", ".join(str(v) for v in value)
        return str(value)

    def _date_variable(self, moment: datetime, modifier: str | None) -> str | int:
        moment = moment.astimezone(UTC)
        if modifier == "iso8601":
            return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        if modifier == "unixEpoch":
            return int(moment.timestamp())
        return f"{moment.day:02d} {self._MONTHS[moment.month - 1]} {moment.year}"

    def _issue_variable(self, issue: _Issue, name: str) -> Any:
        people = {"assignee": issue.values.get("assignee"), "author": issue.created_by}
        plain: dict[str, Any] = {
            "key": issue.key, "id": issue.id, "version": issue.version, "queue": issue.queue,
            "createdAt": issue.created_at, "updatedAt": issue.updated_at, "resolvedAt": issue.resolved_at,
            "status": _display(_STATUS_NAMES.get(issue.status), issue.status, "en"),
            "previousStatus": (_display(_STATUS_NAMES.get(issue.previous_status), issue.previous_status, "en")
                               if issue.previous_status else None),
            "resolution": issue.resolution,
        }
        if name in plain:
            return plain[name]
        if name in people:
            uid = people[name]
            return self._users[uid].display if uid in self._users else None
        if name == "followers":
            return [self._users[uid].display for uid in issue.values.get("followers") or [] if uid in self._users]
        return issue.values.get(name)

    # -- triggers: the API ---------------------------------------------------------------------

    def _require_admin(self, q: _Queue) -> None:
        if self._actor != q.lead and self.trigger_right not in self._rights_of(q.key, self._actor):
            raise _Fail(403, "You do not have permission to perform this action: managing the triggers of "
                             f"queue {q.key} needs queue administration rights")

    def _trigger_or_404(self, q: _Queue, tid: str) -> trig.Trigger:
        trigger = self._triggers.get(int(tid)) if tid.isdigit() else None
        if trigger is None or trigger.queue != q.key:
            raise _Fail(404, "Trigger does not exist")
        return trigger

    def _trigger_json(self, ctx: _Ctx, trigger: trig.Trigger, *, reveal: bool = False) -> dict[str, Any]:
        actions = copy.deepcopy(trigger.actions)
        if self.trigger_headers_hidden and not reveal:
            for action in actions:
                if isinstance(action.get("headers"), dict):
                    action["headers"] = trig.hidden(action["headers"].items())
        return {
            "id": trigger.id, "self": ctx.url(f"queues/{trigger.queue}/triggers/{trigger.id}"),
            "queue": self._queue_ref(ctx, trigger.queue), "name": trigger.name, "order": trigger.order,
            "actions": actions, "conditions": copy.deepcopy(trigger.conditions), "version": trigger.version,
            "active": trigger.active,
        }

    @staticmethod
    def _checked(check: Callable[[Any], Any], raw: Any) -> Any:
        try:
            return check(raw)
        except trig.Invalid as bad:
            raise _Fail(422, bad.message, {bad.field: bad.message}) from None

    def _h_create_trigger(self, req: EmuRequest, ver: str, qkey: str) -> EmuResponse:
        q = self._queue_or_404(qkey)
        self._require_admin(q)
        body = self._body(req)
        name = self._checked(trig.check_name, body.get("name"))
        actions = self._checked(trig.check_actions, body.get("actions"))
        conditions = self._checked(trig.check_conditions, body.get("conditions", []))
        active = self._checked(trig.check_active, body.get("active", True))
        if sum(1 for t in self._triggers.values() if t.queue == q.key) >= self.max_triggers_per_queue:
            raise _Fail(422, f"Queue {q.key} already has {self.max_triggers_per_queue} triggers, the most it may hold")
        number = next(self._trigger_ids)
        trigger = trig.Trigger(number, q.key, name, actions, conditions, active, order=f"{number / 10000:.4f}")
        self._triggers[number] = trigger
        return json_response(200, self._trigger_json(self._ctx(req, ver), trigger))

    def _h_get_trigger(self, req: EmuRequest, ver: str, qkey: str, tid: str) -> EmuResponse:
        q = self._queue_or_404(qkey)
        self._require_admin(q)
        return json_response(200, self._trigger_json(self._ctx(req, ver), self._trigger_or_404(q, tid)))

    def _h_patch_trigger(self, req: EmuRequest, ver: str, qkey: str, tid: str) -> EmuResponse:
        """`?version=N` is required (the docs put it in the path of every change); a stale one is a
        conflict and changes nothing; a real change bumps the version."""
        q = self._queue_or_404(qkey)
        self._require_admin(q)
        trigger = self._trigger_or_404(q, tid)
        raw = req.arg("version")
        if raw in (None, ""):
            raise _Fail(400, "Parameter version is required")
        try:
            version = int(str(raw))
        except ValueError:
            raise _Fail(400, f"Invalid version {raw!r}") from None
        if version != trigger.version:
            raise _Fail(self.conflict_status, _DEFAULT_MESSAGES[409],
                        {"version": f"Current version is {trigger.version}"})
        body = self._body(req)
        changes: dict[str, Any] = {}
        for key, check in (("name", trig.check_name), ("actions", trig.check_actions),
                           ("conditions", trig.check_conditions), ("active", trig.check_active)):
            if key in body:
                changes[key] = self._checked(check, body[key])
        if "before" in body and (isinstance(body["before"], bool) or not isinstance(body["before"], int)):
            raise _Fail(422, "before: a trigger id", {"before": "Expected a number"})
        if any(getattr(trigger, key) != value for key, value in changes.items()):
            for key, value in changes.items():
                setattr(trigger, key, value)
            trigger.version += 1
        return json_response(200, self._trigger_json(self._ctx(req, ver), trigger))

    def _h_trigger_log(self, req: EmuRequest, qkey: str, tid: str) -> EmuResponse:
        """The requests the trigger's HTTP actions sent, newest first (`limit`: 10 by default, at
        most 100).  The entry shape is not documented: request, answer, error, duration."""
        q = self._queue_or_404(qkey)
        self._require_admin(q)
        trigger = self._trigger_or_404(q, tid)
        limit = self._int_arg(req, "limit", 10, low=1, high=100)
        entries = [copy.deepcopy(e) for e in reversed(trigger.deliveries)][:limit]
        if self.trigger_headers_hidden:
            for entry in entries:
                if entry.get("request"):
                    entry["request"]["headers"] = trig.hidden(entry["request"]["headers"].items())
        return json_response(200, entries)

    # =========================================================================================
    # HTTP
    # =========================================================================================

    def route(self, req: EmuRequest) -> EmuResponse:
        denied = self._authenticate(req)
        if denied is not None:
            return denied
        try:
            response = self.router.dispatch(req, lambda: error_response(404, ["Object not found"]))
        except _Fail as exc:
            return error_response(exc.status, [exc.message], exc.errors, exc.headers)
        if response.status == 405:
            return error_response(405, [f"Method {req.method} is not allowed here"])
        return response

    def _authenticate(self, req: EmuRequest) -> EmuResponse | None:
        scheme, _, token = req.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme not in ("OAuth", "Bearer") or token not in self._tokens:
            return error_response(401, ["Not authorized"])  # never echo the token
        org = req.headers.get("x-org-id")
        cloud = req.headers.get("x-cloud-org-id")
        problem = None
        if (org is None) == (cloud is None):
            problem = "Exactly one of X-Org-ID and X-Cloud-Org-ID is required"
        elif scheme == "Bearer" and cloud is None:
            problem = "An IAM token requires X-Cloud-Org-ID"
        elif (org is not None and self.org_id is not None and org != self.org_id) or (
            cloud is not None and self.cloud_org_id is not None and cloud != self.cloud_org_id
        ):
            problem = "Unknown organization"
        elif org is not None and self.org_id is None and self.cloud_org_id is not None:
            problem = "This is a Yandex Cloud organization: use X-Cloud-Org-ID"
        elif cloud is not None and self.cloud_org_id is None and self.org_id is not None:
            problem = "This is a Yandex 360 organization: use X-Org-ID"
        if problem:
            return error_response(self.org_error_status, [problem])
        self._actor = self._tokens[token]
        if self.rate_limit_per_second:
            now = self.clock()
            window = math.floor(now)
            seen_window, count = self._windows.get(token, (window, 0))
            if seen_window != window:
                count = 0
            if count >= self.rate_limit_per_second:
                wait = str(max(1, math.ceil(window + 1 - now)))
                headers = {"Retry-After": wait} if self.retry_after_on_429 else {}
                return error_response(429, [_DEFAULT_MESSAGES[429]], headers=headers)
            self._windows[token] = (window, count + 1)
        return None

    def _register_routes(self) -> None:
        v = r"/(?P<ver>v[23])/"
        key = r"(?P<key>[^/_][^/]*)"
        add = self.router.add
        add("POST", v + r"issues/_search/?", self._h_search)
        add("POST", v + r"issues/_count/?", self._h_count)
        add("POST", v + r"issues/_findByUnique/?", self._h_find_by_unique)
        add("GET", v + r"issues/_findByUnique/?", self._h_find_by_unique)
        add("POST", v + r"issues/?", self._h_create)
        add("GET", v + "issues/" + key + "/?", self._h_get_issue)
        add("PATCH", v + "issues/" + key + "/?", self._h_patch_issue)
        add("GET", v + "issues/" + key + "/transitions/?", self._h_transitions)
        add("GET", v + "issues/" + key + r"/transitions/(?P<tid>[^/_][^/]*)/?", self._h_transition)
        add("POST", v + "issues/" + key + r"/transitions/(?P<tid>[^/]+)/_execute/?", self._h_execute)
        add("GET", v + "issues/" + key + "/comments/?", self._h_comments)
        add("POST", v + "issues/" + key + "/comments/?", self._h_add_comment)
        add("GET", v + "issues/" + key + r"/comments/(?P<cid>\d+)/?", self._h_comment)
        add("GET", v + "issues/" + key + "/changelog/?", self._h_changelog)
        add("GET", v + r"myself/?", self._h_myself)
        add("GET", v + r"users/?", self._h_users)
        add("GET", v + r"users/(?P<who>[^/]+)/?", self._h_user)
        for kind, path in (("status", "statuses"), ("resolution", "resolutions"),
                           ("issuetype", "issuetypes"), ("priority", "priorities")):
            add("GET", v + path + "/?", self._catalog_list_handler(kind))
            add("GET", v + path + r"/(?P<ident>[^/]+)/?", self._catalog_item_handler(kind))
        add("GET", v + r"queues/?", self._h_queues)
        add("GET", v + r"queues/(?P<qkey>[^/]+)/?", self._h_queue)
        add("GET", v + r"queues/(?P<qkey>[^/]+)/workflows/?", self._h_queue_workflows)
        add("GET", v + r"workflows/(?P<wid>[^/]+)/?", self._h_workflow)
        add("GET", v + r"queues/(?P<qkey>[^/]+)/permissions/users/(?P<who>[^/]+)/?", self._h_user_rights)
        add("GET", v + r"queues/(?P<qkey>[^/]+)/localFields/?", self._h_local_fields)
        add("POST", v + r"queues/(?P<qkey>[^/]+)/triggers/?", self._h_create_trigger)
        add("GET", v + r"queues/(?P<qkey>[^/]+)/triggers/(?P<tid>[^/]+)/?", self._h_get_trigger)
        add("PATCH", v + r"queues/(?P<qkey>[^/]+)/triggers/(?P<tid>[^/]+)/?", self._h_patch_trigger)
        add("GET", r"/v3/queues/(?P<qkey>[^/]+)/triggers/(?P<tid>[^/]+)/webhooks/log/?", self._h_trigger_log)
        add("GET", v + r"queues/(?P<qkey>[^/]+)/localFields/(?P<fkey>[^/]+)/?", self._h_local_field)
        add("GET", v + r"fields/?", self._h_fields)
        add("GET", v + r"fields/(?P<fid>[^/]+)/?", self._h_field)
        add("GET", v + r"applications/?", lambda req, ver: json_response(200, []))
        add("POST", v + r"system/search/scroll/_clear/?", self._h_scroll_clear)

    # -- request helpers ----------------------------------------------------------------------

    def _ctx(self, req: EmuRequest, ver: str) -> _Ctx:
        lang = "en" if req.headers.get("accept-language", "").lower().startswith("en") else "ru"
        return _Ctx(req.base_url.rstrip("/"), ver, lang)

    @staticmethod
    def _body(req: EmuRequest, *, required: bool = True) -> dict[str, Any]:
        try:
            body = req.json()
        except ValueError:
            raise _Fail(400, "The request body is not valid JSON") from None
        if body is None and not required:
            return {}
        if not isinstance(body, dict):
            raise _Fail(400 if body is None else 422, "Expected a JSON object in the request body")
        return body

    @staticmethod
    def _int_arg(req: EmuRequest, name: str, default: int, *, low: int = 1, high: int | None = None) -> int:
        raw = req.arg(name)
        if raw in (None, ""):
            return default
        try:
            value = int(raw)
        except ValueError:
            raise _Fail(400, f"Invalid value of parameter {name}: {raw!r}") from None
        if value < low or (high is not None and value > high):
            raise _Fail(400, f"Parameter {name} is out of range: {value}")
        return value

    def _issue_or_404(self, key: str) -> _Issue:
        issue = self._find_issue(key)
        if issue is None:
            raise _Fail(404, "Issue does not exist")
        return issue

    @staticmethod
    def _expand(req: EmuRequest) -> list[str]:
        return [part.strip() for raw in req.args("expand") for part in raw.split(",") if part.strip()]

    def _check_version(self, req: EmuRequest, issue: _Issue) -> None:
        wanted: list[str] = []
        if req.arg("version") not in (None, ""):
            wanted.append(str(req.arg("version")))
        if_match = req.headers.get("if-match")
        if if_match:
            wanted.append(if_match.strip().removeprefix("W/").strip('"'))
        for raw in wanted:
            try:
                version = int(raw)
            except ValueError:
                raise _Fail(400, f"Invalid version {raw!r}") from None
            if version != issue.version:
                raise _Fail(self.conflict_status, _DEFAULT_MESSAGES[409],
                            {"version": f"Current version is {issue.version}"})

    def _paged(self, req: EmuRequest, ctx: _Ctx, items: Sequence[Any],
               render: Callable[[Any], Any], *, limit: int | None = None) -> EmuResponse:
        """One page of `items`.  With a `limit` (issue search), no page reaches past that row and
        the totals stop there (knobs `paged_limit_status`, `paged_totals_capped`)."""
        per_page = self._int_arg(req, "perPage", 50)
        page = self._int_arg(req, "page", 1)
        if limit is not None and page * per_page > limit:
            raise _Fail(self.paged_limit_status, f"Request exceeds {limit} items limit")
        total = len(items)
        if limit is not None and self.paged_totals_capped:
            total = min(total, limit)
        pages = math.ceil(total / per_page)
        chunk = items[(page - 1) * per_page : page * per_page]
        here = f"{ctx.base}{req.path}"
        links = []
        if page < pages:
            links.append(f'<{here}?perPage={per_page}&page={page + 1}>; rel="next"')
        links.append(f'<{here}?perPage={per_page}{{&page}}>; rel="seek"')
        headers = {"X-Total-Count": str(total), "X-Total-Pages": str(pages), "Link": ", ".join(links)}
        return json_response(200, [render(item) for item in chunk], headers)

    # -- issues -------------------------------------------------------------------------------

    def _h_get_issue(self, req: EmuRequest, ver: str, key: str) -> EmuResponse:
        issue = self._issue_or_404(key)
        return json_response(200, self._issue_json(issue, self._ctx(req, ver), self._expand(req)))

    def _h_patch_issue(self, req: EmuRequest, ver: str, key: str) -> EmuResponse:
        issue = self._issue_or_404(key)
        self._require(issue.queue, "WRITE")
        body = self._body(req)
        self._check_version(req, issue)
        changes = self._compute_changes(self._queues[issue.queue], issue.values, body)
        if changes:
            self._check_cap(issue)
            self._apply(issue, changes, "IssueUpdated", self._actor, "api")
        return json_response(200, self._issue_json(issue, self._ctx(req, ver), self._expand(req)))

    def _h_create(self, req: EmuRequest, ver: str) -> EmuResponse:
        body = dict(self._body(req))
        errors: dict[str, str] = {}
        for required in ("summary", "queue"):
            if body.get(required) in (None, ""):
                errors[required] = "Required field"
        if errors:
            raise _Fail(422, "Required fields are missing: " + ", ".join(errors), errors)
        q = self._queue_of(body.pop("queue"))
        if q is None:
            raise _Fail(422, "Queue does not exist", {"queue": "Queue does not exist"})
        self._require(q.key, "CREATE")
        unique = body.pop("unique", None)
        if unique is not None and not isinstance(unique, str):
            raise _Fail(422, "unique must be a string", {"unique": "Expected a string"})
        for forbidden in ("status", "resolution"):
            if forbidden in body:
                raise _Fail(422, f"Field {forbidden} cannot be set on create", {forbidden: "Read-only field"})
        values = self._default_values(q)
        changes = self._compute_changes(q, values, body)
        if unique is not None and unique in self._uniques:
            raise _Fail(409, f"Issue with unique {unique!r} already exists: {self._uniques[unique]}",
                        {"unique": "Already exists"})
        for change in changes:
            values[change.field] = change.new
        issue = self._new_issue(q, values, unique, self._actor, "api")
        answer = json_response(201, self._issue_json(issue, self._ctx(req, ver)))
        if self.trigger_tag and self.trigger_tag not in values["tags"]:
            self._apply(issue, [_Change("tags", list(values["tags"]), [*values["tags"], self.trigger_tag])],
                        "IssueUpdated", self._actor, "api")
        return answer

    def _queue_of(self, value: Any) -> _Queue | None:
        if isinstance(value, dict):
            value = value.get("key", value.get("id"))
        if isinstance(value, str) and value in self._queues:
            return self._queues[value]
        for q in self._queues.values():
            if not isinstance(value, bool) and str(value) == str(q.id):
                return q
        return None

    def _h_find_by_unique(self, req: EmuRequest, ver: str) -> EmuResponse:
        unique = req.arg("unique")
        if not unique:
            raise _Fail(400, "Parameter unique is required")
        key = self._uniques.get(unique)
        if key is None:
            raise _Fail(404, "Issue does not exist")
        return json_response(200, self._issue_json(self._issues[key], self._ctx(req, ver)))

    # -- transitions --------------------------------------------------------------------------

    def _h_transitions(self, req: EmuRequest, ver: str, key: str) -> EmuResponse:
        return json_response(200, self._transitions_json(self._ctx(req, ver), self._issue_or_404(key)))

    def _h_transition(self, req: EmuRequest, ver: str, key: str, tid: str) -> EmuResponse:
        issue = self._issue_or_404(key)
        target = self._queues[issue.queue].transitions.get(issue.status, {}).get(tid)
        if target is None:
            raise _Fail(404, f"Transition {tid} does not exist")
        return json_response(200, self._transition_json(self._ctx(req, ver), issue, tid, target))

    def _h_execute(self, req: EmuRequest, ver: str, key: str, tid: str) -> EmuResponse:
        issue = self._issue_or_404(key)
        self._require(issue.queue, "WRITE")
        body = dict(self._body(req, required=False))
        self._check_version(req, issue)
        q = self._queues[issue.queue]
        target = q.transitions.get(issue.status, {}).get(tid)
        if target is None:
            raise _Fail(self.transition_error_status,
                        f"Transition {tid} is not available from status {issue.status}")
        raw_resolution = body.pop("resolution", None)
        comment = body.pop("comment", None)
        if comment is not None and not isinstance(comment, str):
            raise _Fail(422, "comment must be a string", {"comment": "Expected a string"})
        extra = self._compute_changes(q, issue.values, body)
        resolution: str | None = None
        if q.statuses[target] == "done":
            if raw_resolution is not None:
                resolution = self._scalar("resolution", "resolution", raw_resolution)
            elif issue.resolution is not None:
                resolution = issue.resolution
            elif self.require_resolution:
                raise _Fail(422, f"Resolution is required to move to {target}",
                            {"resolution": "Required field"})
        self._check_cap(issue)
        self._move(issue, target, resolution, self._actor, "api", extra)
        if comment:
            self._comment(issue, comment, [], self._actor, False, "api")
        return json_response(200, self._transitions_json(self._ctx(req, ver), issue))

    # -- comments and changelog ---------------------------------------------------------------

    def _h_comments(self, req: EmuRequest, ver: str, key: str) -> EmuResponse:
        issue = self._issue_or_404(key)
        ctx = self._ctx(req, ver)
        per_page = self._int_arg(req, "perPage", 50)
        after = self._int_arg(req, "id", 0, low=0)
        items = [c for c in issue.comments if c.id > after]
        page = items[:per_page]
        headers = {}
        if len(items) > per_page:
            headers["Link"] = f'<{ctx.base}{req.path}?id={page[-1].id}&perPage={per_page}>; rel="next"'
        return json_response(200, [self._comment_json(ctx, issue, c) for c in page], headers)

    def _h_comment(self, req: EmuRequest, ver: str, key: str, cid: str) -> EmuResponse:
        issue = self._issue_or_404(key)
        for c in issue.comments:
            if c.id == int(cid):
                return json_response(200, self._comment_json(self._ctx(req, ver), issue, c))
        raise _Fail(404, "Comment does not exist")

    def _h_add_comment(self, req: EmuRequest, ver: str, key: str) -> EmuResponse:
        issue = self._issue_or_404(key)
        self._require(issue.queue, "WRITE")
        body = self._body(req)
        text = body.get("text")
        if not isinstance(text, str) or not text:
            raise _Fail(422, "text is required", {"text": "Required field"})
        summonees = [self._scalar("summonees", "user", s) for s in body.get("summonees") or []]
        add = (req.arg("isAddToFollowers") or "true").lower() not in ("false", "0", "no")
        if (add and self._actor not in issue.values["followers"]) or self.comment_bumps_version:
            self._check_cap(issue)
        comment = self._comment(issue, text, summonees, self._actor, add, "api")
        return json_response(201, self._comment_json(self._ctx(req, ver), issue, comment))

    def _h_changelog(self, req: EmuRequest, ver: str, key: str) -> EmuResponse:
        issue = self._issue_or_404(key)
        ctx = self._ctx(req, ver)
        per_page = self._int_arg(req, "perPage", 50)
        fields = set(req.args("field"))
        types = set(req.args("type"))
        entries = [
            e for e in issue.changelog
            if (not fields or any(c.field in fields for c in e.changes)) and (not types or e.type in types)
        ]
        after = req.arg("id")
        if after:
            positions = {e.id: n for n, e in enumerate(issue.changelog)}
            if after not in positions:
                raise _Fail(400, f"Unknown changelog id {after}")
            entries = [e for e in entries if positions[e.id] > positions[after]]
        page = entries[:per_page]
        here = f"{ctx.base}{req.path}"
        links = [f'<{here}?perPage={per_page}>; rel="first"']
        if len(entries) > per_page:
            links.append(f'<{here}?id={page[-1].id}&perPage={per_page}>; rel="next"')
        return json_response(200, [self._entry_json(ctx, issue, e) for e in page], {"Link": ", ".join(links)})

    # -- search -------------------------------------------------------------------------------

    def _selected(self, body: dict[str, Any]) -> list[_Issue]:
        """The issues `body` selects, sorted; enforces "exactly one non-null selector"."""
        selectors = [k for k in ("queue", "keys", "filter", "query", "filterId") if body.get(k) is not None]
        if len(selectors) != 1:
            raise _Fail(400, "You can only use keys, queue or search request")
        unknown = set(body) - {"queue", "keys", "filter", "query", "filterId", "order"}
        if unknown:
            raise _Fail(400, f"Unknown search parameter(s): {', '.join(sorted(unknown))}")
        selector = selectors[0]
        value = body[selector]
        order: list[tuple[str, bool]] = []
        if selector == "queue":
            q = self._queue_of(value)
            if q is None:
                raise _Fail(422, f"Queue {value!r} does not exist", {"queue": "Queue does not exist"})
            found = [i for i in self._issues.values() if i.queue == q.key]
        elif selector == "keys":
            keys = value if isinstance(value, list) else [value]
            if not all(isinstance(k, str) for k in keys):
                raise _Fail(400, "keys must be strings")
            by_key = {i.key: i for i in (self._find_issue(k) for k in keys) if i is not None}
            found = list(by_key.values())
            if body.get("order") is None:
                return found
        elif selector == "filter":
            if not isinstance(value, dict):
                raise _Fail(400, "filter must be an object")
            found = [i for i in self._issues.values() if self._match_filter(i, value)]
        elif selector == "query":
            if not isinstance(value, str):
                raise _Fail(400, "query must be a string")
            predicates, order = self._parse_query(value)
            found = [i for i in self._issues.values() if all(p(i) for p in predicates)]
        else:
            raise _Fail(422, "Saved filters (filterId) are not supported by the emulator")
        if body.get("order") is not None:
            raw_order = body["order"]
            items = raw_order if isinstance(raw_order, list) else [raw_order]
            order = [self._order_term(str(item)) for item in items]
        return self._sorted(found, order)

    def _order_term(self, text: str) -> tuple[str, bool]:
        text = text.strip()
        descending = text.startswith("-")
        name = text.lstrip("+-")
        name = _FILTER_ALIASES.get(name, name)
        if name not in ("key", "createdAt", "updatedAt", "status", "summary", "version", "priority",
                        "resolvedAt", "type", "id"):
            raise _Fail(422, f"Cannot sort by {name!r}")
        return name, descending

    def _sorted(self, issues: list[_Issue], order: list[tuple[str, bool]]) -> list[_Issue]:
        result = sorted(issues, key=lambda i: (i.queue, i.number))
        for name, descending in reversed(order):
            result.sort(key=self._sort_key(name), reverse=descending)
        return result

    def _sort_key(self, name: str) -> Callable[[_Issue], tuple[int, Any]]:
        return lambda issue: self._sort_value(issue, name)

    def _sort_value(self, issue: _Issue, name: str) -> tuple[int, Any]:
        if name == "key":
            return 1, (issue.queue, issue.number)
        raw = self._raw(issue, name)
        if raw is None:
            return 0, ""
        return 1, raw if isinstance(raw, (datetime, int)) else str(raw)

    def _raw(self, issue: _Issue, name: str) -> Any:
        fixed: dict[str, Any] = {
            "key": issue.key, "id": issue.id, "queue": issue.queue, "status": issue.status,
            "resolution": issue.resolution, "createdAt": issue.created_at, "updatedAt": issue.updated_at,
            "createdBy": issue.created_by, "updatedBy": issue.updated_by, "unique": issue.unique,
            "version": issue.version, "resolvedAt": issue.resolved_at,
            "previousStatus": issue.previous_status,
            "statusType": self._queues[issue.queue].statuses[issue.status],
        }
        return fixed[name] if name in fixed else issue.values.get(name)

    def _match_filter(self, issue: _Issue, filt: dict[str, Any]) -> bool:
        for raw_name, wanted in filt.items():
            name = _FILTER_ALIASES.get(raw_name, raw_name)
            q = self._queues[issue.queue]
            schema = self._schema(q, name)
            if schema is None and name not in ("id",):
                known = any(self._schema(other, name) for other in self._queues.values())
                if not known:
                    raise _Fail(422, f"Field {raw_name} does not exist", {raw_name: "Field does not exist"})
                return False
            if not self._match_value(schema or ("string", None), self._raw(issue, name), wanted, raw_name):
                return False
        return True

    def _match_value(self, schema: tuple[str, str | None], have: Any, wanted: Any, name: str) -> bool:
        kind, items = schema
        if wanted is None:
            return have in (None, [], "")
        if isinstance(wanted, list):
            return any(self._match_value(schema, have, w, name) for w in wanted)
        if isinstance(wanted, dict) and set(wanted) <= {"from", "to"} and wanted:
            if kind != "datetime":
                raise _Fail(422, f"A range is not supported for {name}")
            if have is None:
                return False
            low = self._when(wanted["from"]) if wanted.get("from") is not None else None
            high = self._when(wanted["to"]) if wanted.get("to") is not None else None
            return (low is None or have >= low) and (high is None or have <= high)
        if kind == "array":
            return any(self._match_value((items or "string", None), h, wanted, name) for h in have or [])
        if kind == "datetime":
            return have is not None and have == self._when(wanted)
        if kind == "user":
            return have is not None and have == self._resolve_user(wanted)
        if kind in _CATALOG_KINDS:
            return have is not None and have == self._catalog_key(kind, wanted)
        if kind == "queue":
            q = self._queue_of(wanted)
            return q is not None and have == q.key
        if name == "key" and isinstance(wanted, str):
            return str(have).upper() == wanted.upper()
        return bool(have == wanted)

    def _when(self, text: Any) -> datetime:
        return parse_when(text, self.naive_dates_offset) + self.misread_dates_by

    _QUERY_TERMS = (
        ("and", re.compile(r"(?i)and\b")),
        ("queue", re.compile(r"(?i)queue\s*:\s*([A-Za-z0-9_]+(?:\s*,\s*[A-Za-z0-9_]+)*)")),
        ("date", re.compile(r'(?i)(updated|created|resolved)\s*:\s*(>=|<=|>|<)\s*"([^"]+)"')),
        ("sort", re.compile(r'(?i)"sort\s+by"\s*:\s*((?:updated|created|key)(?:\s+(?:asc|desc))?'
                            r'(?:\s*,\s*(?:updated|created|key)(?:\s+(?:asc|desc))?)*)')),
        ("eq", re.compile(r'(?i)(status|resolution|key|assignee|tags)\s*:\s*("[^"]*"|[^\s"]+)')),
    )

    def _parse_query(self, query: str) -> tuple[list[Callable[[_Issue], bool]], list[tuple[str, bool]]]:
        """A small subset of the query language; anything else is a 400 (so clients find out)."""
        predicates: list[Callable[[_Issue], bool]] = []
        order: list[tuple[str, bool]] = []
        pos = 0
        text = query.strip()
        while pos < len(text):
            if text[pos].isspace():
                pos += 1
                continue
            found = next(((k, m) for k, p in self._QUERY_TERMS if (m := p.match(text, pos))), None)
            if found is None:
                raise _Fail(400, f"The emulator does not understand the query at: {text[pos:pos + 40]!r}")
            kind, m = found
            pos = m.end()
            if kind == "queue":
                predicates.append(self._queue_predicate({p.strip().upper() for p in m.group(1).split(",")}))
            elif kind == "date":
                name = _FILTER_ALIASES[m.group(1).lower()]
                op, when = m.group(2), self._when(m.group(3))
                predicates.append(self._date_predicate(name, op, when))
            elif kind == "sort":
                for part in m.group(1).split(","):
                    words = part.split()
                    field_name = {"updated": "updatedAt", "created": "createdAt"}.get(words[0].lower(), "key")
                    order.append((field_name, len(words) > 1 and words[1].lower() == "desc"))
            elif kind == "eq":
                name = m.group(1).lower()
                raw = m.group(2)
                value = raw.strip('"')
                if not raw.startswith('"') and (raw[:1] in "!~<>#(" or raw.endswith(",") or
                                                ("(" in raw and raw.lower() != "empty()")):
                    # Negation, ranges, lists, functions: real forms this emulator does not
                    # evaluate.  Refused, never answered with an empty list that looks real.
                    at = text[m.start():m.start() + 40]
                    raise _Fail(400, f"The emulator does not understand the query at: {at!r}")
                predicates.append(self._eq_predicate(name, value))
        return predicates, order

    @staticmethod
    def _queue_predicate(queues: set[str]) -> Callable[[_Issue], bool]:
        return lambda issue: issue.queue in queues

    def _date_predicate(self, name: str, op: str, when: datetime) -> Callable[[_Issue], bool]:
        def check(issue: _Issue) -> bool:
            have = self._raw(issue, name)
            if have is None:
                return False
            return bool({">": have > when, ">=": have >= when, "<": have < when, "<=": have <= when}[op])

        return check

    def _eq_predicate(self, name: str, value: str) -> Callable[[_Issue], bool]:
        def check(issue: _Issue) -> bool:
            schema = self._schema(self._queues[issue.queue], name) or ("string", None)
            if value.lower() == "empty()":
                return self._raw(issue, name) in (None, [], "")
            return self._match_value(schema, self._raw(issue, name), value, name)

        return check

    def _h_search(self, req: EmuRequest, ver: str) -> EmuResponse:
        ctx = self._ctx(req, ver)
        expand = self._expand(req)

        def render(issue: _Issue) -> dict[str, Any]:
            return self._issue_json(issue, ctx, expand)

        if req.has_arg("scrollId"):
            return self._scroll_next(req, ctx, render)
        body = self._body(req)
        if req.has_arg("scrollType"):
            return self._scroll_start(req, ctx, body, render)
        return self._paged(req, ctx, self._selected(body), render, limit=self.paged_limit)

    def _scroll_ttl(self, req: EmuRequest, default: float) -> float:
        if not req.has_arg("scrollTTLMillis"):
            return default
        return self._int_arg(req, "scrollTTLMillis", SCROLL_TTL_MILLIS) / 1000

    def _expire_scrolls(self) -> None:
        now = self.clock()
        for scroll_id in [sid for sid, scroll in self._scrolls.items() if scroll.expires <= now]:
            self._drop_scroll(scroll_id)

    def _drop_scroll(self, scroll_id: str) -> None:
        scroll = self._scrolls.pop(scroll_id, None)
        for page_id in scroll.page_ids if scroll else ():
            self._scroll_pages.pop(page_id, None)

    def _scroll_start(self, req: EmuRequest, ctx: _Ctx, body: dict[str, Any],
                      render: Callable[[_Issue], Any]) -> EmuResponse:
        """The first request of a scroll: `scrollType` (first request only), `perScroll` (default
        100, at most 1000), `scrollTTLMillis` (default 60,000); `keys`/`queue` cannot scroll."""
        scroll_type = req.arg("scrollType")
        if scroll_type not in ("sorted", "unsorted"):
            raise _Fail(400, "scrollType must be sorted or unsorted")
        if body.get("keys") is not None or body.get("queue") is not None:
            raise _Fail(400, "Scroll is not supported")
        per_scroll = self._int_arg(req, "perScroll", 100, high=1000)
        ttl = self._scroll_ttl(req, SCROLL_TTL_MILLIS / 1000)
        keys = [i.key for i in self._selected(body)]
        if scroll_type == "unsorted":  # "No sorting": an order nobody may rely on
            self._shuffle.shuffle(keys)
        self._expire_scrolls()
        if len(self._scrolls) >= self.max_open_scrolls:
            raise _Fail(429, f"Too many open scrolls ({len(self._scrolls)}): read them to the end or clear them")
        scroll_id = self._next_hex()
        token = f"{secrets.token_hex(32)}:{int(time.time() * 1000)}"
        self._scrolls[scroll_id] = _Scroll(keys, per_scroll, 0, token, ttl, self.clock() + ttl, scroll_type)
        return self._scroll_page(req, ctx, scroll_id, render)

    def _scroll_next(self, req: EmuRequest, ctx: _Ctx, render: Callable[[_Issue], Any]) -> EmuResponse:
        self._expire_scrolls()
        scroll_id = self._scroll_pages.get(str(req.arg("scrollId")))
        scroll = self._scrolls.get(scroll_id) if scroll_id else None
        if scroll_id is None or scroll is None:
            raise _Fail(self.scroll_gone_status, "Scroll context does not exist or has expired")
        scroll.ttl_seconds = self._scroll_ttl(req, scroll.ttl_seconds)
        scroll.expires = self.clock() + scroll.ttl_seconds
        return self._scroll_page(req, ctx, scroll_id, render)

    def _scroll_page(self, req: EmuRequest, ctx: _Ctx, scroll_id: str,
                     render: Callable[[_Issue], Any]) -> EmuResponse:
        """The next page at the context's cursor.  `X-Scroll-Id`/`X-Scroll-Token` come only
        while more pages remain; the context is released after its last page (the docs: "The
        snapshot of search results is preserved until all the pages have been viewed")."""
        scroll = self._scrolls[scroll_id]
        keys = scroll.keys[scroll.position : scroll.position + scroll.per_scroll]
        scroll.position += len(keys)
        ttl_ms = int(scroll.ttl_seconds * 1000)
        links = [f'<{ctx.base}{req.path}?scrollType={scroll.kind}'
                 f'&perScroll={scroll.per_scroll}&scrollTTLMillis={ttl_ms}>; rel="first"']
        headers = {"X-Total-Count": str(len(scroll.keys))}
        if scroll.position < len(scroll.keys):
            page_id = self._next_hex()
            scroll.page_ids.append(page_id)
            self._scroll_pages[page_id] = scroll_id
            headers["X-Scroll-Id"] = page_id
            headers["X-Scroll-Token"] = scroll.token
            links.append(f'<{ctx.base}{req.path}?scrollTTLMillis={ttl_ms}&scrollId={page_id}>; rel="next"')
        else:
            self._drop_scroll(scroll_id)
        headers["Link"] = ", ".join(links)
        return json_response(200, [render(self._issues[k]) for k in keys if k in self._issues], headers)

    def _h_scroll_clear(self, req: EmuRequest, ver: str) -> EmuResponse:
        """`{"<X-Scroll-Id>": "<X-Scroll-Token>", ...}`, one pair per page read.  Any page id
        releases its whole context; unknown ids are ignored (a release is safe to repeat).  The
        token is not checked: the docs say it "is not used in the current API version"."""
        pairs = self._body(req)
        for page_id in pairs:
            scroll_id = self._scroll_pages.get(page_id)
            if scroll_id is not None:
                self._drop_scroll(scroll_id)
        return EmuResponse(200)

    def _h_count(self, req: EmuRequest, ver: str) -> EmuResponse:
        return json_response(200, len(self._selected(self._body(req))))

    # -- users and reference data -------------------------------------------------------------

    def _h_myself(self, req: EmuRequest, ver: str) -> EmuResponse:
        return json_response(200, self._user_json(self._ctx(req, ver), self._users[self._actor]))

    def _h_users(self, req: EmuRequest, ver: str) -> EmuResponse:
        ctx = self._ctx(req, ver)
        users = sorted(self._users.values(), key=lambda u: u.uid)
        return self._paged(req, ctx, users, lambda u: self._user_json(ctx, u))

    def _h_user(self, req: EmuRequest, ver: str, who: str) -> EmuResponse:
        uid = self._resolve_user(who)
        if uid is None:
            raise _Fail(404, "User does not exist")
        return json_response(200, self._user_json(self._ctx(req, ver), self._users[uid]))

    def _catalog_json(self, ctx: _Ctx, kind: str, entry: tuple[str, str, str, str]) -> dict[str, Any]:
        ident, key, en, ru = entry
        order = [e[1] for e in self._catalog(kind)].index(key) + 1
        doc = {"self": self._catalog_ref(ctx, kind, key)["self"], "id": int(ident), "key": key, "version": 1,
               "name": en if ctx.lang == "en" else ru, "description": "", "order": order}
        if kind == "status":
            doc["type"] = self._statuses[key][1]
        return doc

    def _catalog_list_handler(self, kind: str) -> Callable[..., EmuResponse]:
        def handler(req: EmuRequest, ver: str) -> EmuResponse:
            ctx = self._ctx(req, ver)
            return json_response(200, [self._catalog_json(ctx, kind, e) for e in self._catalog(kind)])

        return handler

    def _catalog_item_handler(self, kind: str) -> Callable[..., EmuResponse]:
        def handler(req: EmuRequest, ver: str, ident: str) -> EmuResponse:
            ctx = self._ctx(req, ver)
            for entry in self._catalog(kind):
                if ident in (entry[0], entry[1]):
                    return json_response(200, self._catalog_json(ctx, kind, entry))
            raise _Fail(404, "Object not found")

        return handler

    def _queue_json(self, ctx: _Ctx, q: _Queue, expand: Sequence[str]) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "self": ctx.url(f"queues/{q.key}"),
            "id": q.id,
            "key": q.key,
            "version": 1,
            "name": q.name,
            "description": "",
            "lead": self._user_ref(ctx, q.lead),
            "assignAuto": False,
            "defaultType": self._catalog_ref(ctx, "issuetype", "task"),
            "defaultPriority": self._catalog_ref(ctx, "priority", "normal"),
            "denyVoting": False,
        }
        workflow_id = self._workflow_id(q)
        types = [self._catalog_ref(ctx, "issuetype", key) for _, key, _, _ in self._catalog("issuetype")]
        wants = set(expand)
        if wants & {"workflows", "all"}:
            doc["workflows"] = {workflow_id: types}
        if wants & {"issueTypesConfig", "all"}:
            doc["issueTypesConfig"] = [
                {
                    "issueType": t,
                    "workflow": {"self": ctx.url(f"workflows/{workflow_id}"), "id": workflow_id,
                                 "display": f"{q.name} workflow"},
                    "resolutions": [self._catalog_ref(ctx, "resolution", key)
                                    for _, key, _, _ in self._catalog("resolution")],
                }
                for t in types
            ]
        if wants & {"issueTypes", "all"}:
            doc["issueTypes"] = types
        return doc

    @staticmethod
    def _workflow_id(q: _Queue) -> str:
        return f"{q.key.lower()}Workflow"

    def _h_queue_workflows(self, req: EmuRequest, ver: str, qkey: str) -> EmuResponse:
        """Workflow id -> the issue types that follow it (every type follows the queue's one)."""
        if self.workflows_status is not None:
            raise _Fail(self.workflows_status, _DEFAULT_MESSAGES.get(self.workflows_status, "Refused"))
        q = self._queue_or_404(qkey)
        ctx = self._ctx(req, ver)
        types = [self._catalog_ref(ctx, "issuetype", key) for _, key, _, _ in self._catalog("issuetype")]
        return json_response(200, {self._workflow_id(q): types})

    def _h_workflow(self, req: EmuRequest, ver: str, wid: str) -> EmuResponse:
        """A queue's workflow in the documented shape: steps, each a status with its actions."""
        if self.workflows_status is not None:
            raise _Fail(self.workflows_status, _DEFAULT_MESSAGES.get(self.workflows_status, "Refused"))
        q = next((q for q in self._queues.values() if self._workflow_id(q) == wid), None)
        if q is None:
            raise _Fail(404, "Workflow does not exist")
        ctx = self._ctx(req, ver)
        steps = [{"status": status,
                  "actions": [{"id": tid, "name": {"en": tid, "ru": tid}, "target": to}
                              for tid, to in q.transitions.get(status, {}).items()]}
                 for status in q.statuses]
        return json_response(200, {
            "self": ctx.url(f"workflows/{wid}"), "id": wid, "name": f"{q.name} workflow", "version": 1,
            "queue": {"self": ctx.url(f"queues/{q.key}"), "id": str(q.id), "key": q.key},
            "initialAction": {"id": "create", "name": {"en": "Create", "ru": "Create"}, "target": q.initial},
            "steps": steps,
        })

    def _h_user_rights(self, req: EmuRequest, ver: str, qkey: str, who: str) -> EmuResponse:
        """A user's rights in a queue, as documented: `permissions` keyed by right (GRANT,
        CREATE, READ, WRITE), each saying through which users, groups or roles it is held."""
        q = self._queue_or_404(qkey)
        uid = self._resolve_user(who)
        if uid is None:
            raise _Fail(404, "User does not exist")
        ctx = self._ctx(req, ver)
        ref = self._user_ref(ctx, uid)
        held: dict[str, dict[str, Any]] = {}
        for right, how in self._rights_of(q.key, uid).items():
            held[right] = {"users": [ref] if how == "users" else [],
                           "groups": [{"id": 1, "display": "robots"}] if how == "groups" else [],
                           "roles": [{"id": "author", "display": "Author"}] if how == "roles" else []}
        return json_response(200, {"user": ref, "permissions": held, "components": []})

    def _queue_or_404(self, qkey: str) -> _Queue:
        q = self._queue_of(qkey)
        if q is None:
            raise _Fail(404, "Queue does not exist")
        return q

    def _h_queues(self, req: EmuRequest, ver: str) -> EmuResponse:
        ctx = self._ctx(req, ver)
        expand = self._expand(req)
        return self._paged(req, ctx, list(self._queues.values()), lambda q: self._queue_json(ctx, q, expand))

    def _h_queue(self, req: EmuRequest, ver: str, qkey: str) -> EmuResponse:
        q = self._queue_or_404(qkey)
        return json_response(200, self._queue_json(self._ctx(req, ver), q, self._expand(req)))

    def _local_field_json(self, ctx: _Ctx, q: _Queue, lf: _LocalField) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": lf.type, "required": False}
        if lf.items:
            schema["items"] = lf.items
        return {
            "self": ctx.url(f"queues/{q.key}/localFields/{lf.key}"),
            "id": lf.id, "key": lf.key, "name": lf.name, "version": 1, "schema": schema,
            "readonly": False, "options": False, "suggest": False, "order": lf.order,
            "queue": self._queue_ref(ctx, q.key), "type": "local",
        }

    def _h_local_fields(self, req: EmuRequest, ver: str, qkey: str) -> EmuResponse:
        q = self._queue_or_404(qkey)
        ctx = self._ctx(req, ver)
        return json_response(200, [self._local_field_json(ctx, q, lf) for lf in q.local_fields.values()])

    def _h_local_field(self, req: EmuRequest, ver: str, qkey: str, fkey: str) -> EmuResponse:
        q = self._queue_or_404(qkey)
        for lf in q.local_fields.values():
            if fkey in (lf.key, lf.id):
                return json_response(200, self._local_field_json(self._ctx(req, ver), q, lf))
        raise _Fail(404, "Field does not exist")

    def _field_json(self, ctx: _Ctx, name: str, order: int) -> dict[str, Any]:
        fd = _FIELDS[name]
        schema: dict[str, Any] = {"type": fd.type, "required": fd.required}
        if fd.items:
            schema["items"] = fd.items
        return {
            "self": ctx.url(f"fields/{name}"), "id": name, "key": name, "version": 1,
            "name": fd.en if ctx.lang == "en" else fd.ru, "schema": schema,
            "readonly": not fd.editable, "options": False, "suggest": fd.type == "user", "order": order,
        }

    def _h_fields(self, req: EmuRequest, ver: str) -> EmuResponse:
        ctx = self._ctx(req, ver)
        return json_response(200, [self._field_json(ctx, name, n) for n, name in enumerate(_FIELDS, start=1)])

    def _h_field(self, req: EmuRequest, ver: str, fid: str) -> EmuResponse:
        if fid not in _FIELDS:
            raise _Fail(404, "Field does not exist")
        return json_response(200, self._field_json(self._ctx(req, ver), fid, list(_FIELDS).index(fid) + 1))
