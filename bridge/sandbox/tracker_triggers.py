"""Queue triggers with an HTTP-request action, for the Tracker emulator (reference §13).

Tracker has no webhook subscription: a queue trigger whose action is `Webhook` is the only push,
and `push setup` manages one through `POST/GET/PATCH /{ver}/queues/{q}/triggers[/{id}]`.  This
module holds what the emulator needs beyond its HTTP handlers: validating what a client sends,
deciding whether a trigger's conditions hold for a change, rendering `{{issue.<field>}}`
variables, and sending the requests in the background.

Sending is the part that must never hurt the emulator: nothing is started until a trigger fires,
a request is only queued (bounded; beyond the bound it is dropped and logged as such), a few
daemon threads send them with a short timeout and stop when idle, and every outcome (an answer,
a refused connection, a timeout) becomes an entry of the trigger's delivery log, never an
exception in the request or people-API call that caused it.

Facts and choices: the action and condition shapes are yandex-cloud/docs `change-trigger-actions.md`
and `change-trigger.md`; variables and their formats are `user/vars.md` (a date renders as
`DD month YYYY` unless `.iso8601`, `.unixEpoch` or `.date` is added; `.json` renders a value as
JSON).  The delivery log's entry shape is not documented; the one here (request sent, answer,
error, duration) is a guess, marked as such in the emulator.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import queue
import re
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

MAX_PER_QUEUE = 1000  # "A queue holds at most 1,000" triggers
LOG_KEPT = 1000  # delivery log entries kept per trigger (the API serves at most 100 at a time)
OUTBOX_LIMIT = 1000  # requests waiting to be sent; beyond, a fired request is dropped (and logged)
SENDERS = 4  # threads sending at once
IDLE_SECONDS = 2.0  # a sender with nothing to do for this long stops
WEBHOOK_METHODS = ("GET", "POST", "PUT", "DELETE")
AUTH_TYPES = ("noauth", "basic", "oauth")
GROUPS = ("and", "or")
_VARIABLE = re.compile(r"\{\{\s*([A-Za-z][A-Za-z0-9_.-]*)\s*\}\}")


class Invalid(ValueError):  # noqa: N818 - the emulator turns it into a 422
    """What a client sent is not a trigger the API would accept: the field and why."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass
class Trigger:
    """One trigger as the emulator keeps it: the body a client sent, checked, plus identity."""

    id: int
    queue: str
    name: str
    actions: list[dict[str, Any]]
    conditions: list[Any]
    active: bool
    order: str
    version: int = 1
    deliveries: deque[dict[str, Any]] = field(default_factory=lambda: deque(maxlen=LOG_KEPT))


@dataclass(frozen=True)
class Outbound:
    """One HTTP request a trigger's action sends."""

    method: str
    url: str
    headers: dict[str, str]
    body: bytes


# -- what a client may send ---------------------------------------------------------------------


def check_name(raw: Any) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise Invalid("name", "name: a non-empty string is required")
    return raw


def check_active(raw: Any) -> bool:
    if not isinstance(raw, bool):
        raise Invalid("active", "active: true or false")
    return raw


def check_actions(raw: Any) -> list[dict[str, Any]]:
    """The actions, each numbered with an `id` as the API's answer shows them.  A `Webhook`
    action needs an http(s) `endpoint` and a documented `method`; other action types are kept
    as given (the emulator never performs them)."""
    if not isinstance(raw, list) or not raw:
        raise Invalid("actions", "actions: a non-empty array of action objects is required")
    checked: list[dict[str, Any]] = []
    for number, action in enumerate(raw, start=1):
        if not isinstance(action, dict) or not isinstance(action.get("type"), str):
            raise Invalid("actions", f"actions[{number - 1}]: an object with a type is required")
        action = {k: copy.deepcopy(v) for k, v in action.items() if k != "id"}
        if action["type"] == "Webhook":
            _check_webhook(action, number - 1)
        checked.append({"id": number, **action})
    return checked


def _check_webhook(action: dict[str, Any], index: int) -> None:
    where = f"actions[{index}]"
    endpoint = action.get("endpoint")
    parts = urlsplit(endpoint) if isinstance(endpoint, str) else None
    if parts is None or parts.scheme not in ("http", "https") or not parts.netloc:
        raise Invalid("actions", f"{where}.endpoint: an http:// or https:// URL is required")
    if action.get("method") not in WEBHOOK_METHODS:
        raise Invalid("actions", f"{where}.method: one of {', '.join(WEBHOOK_METHODS)}")
    headers = action.get("headers", {})
    if not isinstance(headers, dict) or any(not isinstance(k, str) or not isinstance(v, str)
                                            for k, v in headers.items()):
        raise Invalid("actions", f"{where}.headers: an object of string values")
    if "contentType" in action and not isinstance(action["contentType"], str):
        raise Invalid("actions", f"{where}.contentType: a string")
    if "body" in action and not isinstance(action["body"], (str, dict, list)):
        raise Invalid("actions", f"{where}.body: an object or a string")
    auth = action.get("authContext", {"type": "noauth"})
    if not isinstance(auth, dict) or auth.get("type") not in AUTH_TYPES:
        raise Invalid("actions", f"{where}.authContext.type: one of {', '.join(AUTH_TYPES)}")


def check_conditions(raw: Any) -> list[Any]:
    """Conditions: a list (all must hold) of elementary conditions (`{"type": ...}`) and groups
    (`{"type": "Or"|"And", "conditions": [...]}`), nested freely."""
    if not isinstance(raw, list):
        raise Invalid("conditions", "conditions: an array of condition objects")
    for condition in raw:
        _check_condition(condition)
    return copy.deepcopy(raw)


def _check_condition(condition: Any) -> None:
    if not isinstance(condition, dict) or not isinstance(condition.get("type"), str):
        raise Invalid("conditions", "conditions: every condition is an object with a type")
    if condition["type"].lower() in GROUPS:
        inner = condition.get("conditions")
        if not isinstance(inner, list):
            raise Invalid("conditions", f"conditions: a {condition['type']} group needs an array of conditions")
        for item in inner:
            _check_condition(item)


# -- when a trigger fires -----------------------------------------------------------------------


def conditions_hold(conditions: list[Any], events: frozenset[str], fields: frozenset[str]) -> bool:
    """Whether a change fires a trigger with `conditions` (a list: all of them).  `events` are
    what happened (`update`, `create`, `comment-create`), `fields` the fields that changed.
    Elementary conditions the emulator does not know never hold; a trigger without conditions
    fires on every change."""
    return all(_holds(condition, events, fields) for condition in conditions)


def _holds(condition: dict[str, Any], events: frozenset[str], fields: frozenset[str]) -> bool:
    kind = str(condition.get("type"))
    if kind.lower() == "and":
        return all(_holds(c, events, fields) for c in condition.get("conditions") or [])
    if kind.lower() == "or":
        return any(_holds(c, events, fields) for c in condition.get("conditions") or [])
    if kind.startswith("Event."):
        return kind.removeprefix("Event.") in events
    if kind == "FieldChangedCondition":
        return str(condition.get("field")) in fields
    return False


# -- rendering ----------------------------------------------------------------------------------


def render_text(text: str, lookup: Callable[[str], str]) -> str:
    """`text` with each `{{name}}` replaced by `lookup(name)`."""
    return _VARIABLE.sub(lambda match: lookup(match.group(1)), text)


def render_value(value: Any, lookup: Callable[[str], str]) -> Any:
    """A body given as an object: variables rendered in every string inside it."""
    if isinstance(value, str):
        return render_text(value, lookup)
    if isinstance(value, list):
        return [render_value(v, lookup) for v in value]
    if isinstance(value, dict):
        return {k: render_value(v, lookup) for k, v in value.items()}
    return value


def outbound(action: dict[str, Any], lookup: Callable[[str], str]) -> Outbound:
    """The request a `Webhook` action sends for one change."""
    content_type = str(action.get("contentType") or "application/json")
    headers = {"Content-Type": content_type}
    headers.update({k: render_text(v, lookup) for k, v in (action.get("headers") or {}).items()})
    auth = action.get("authContext") or {}
    if auth.get("type") == "basic":
        pair = f"{auth.get('login', '')}:{auth.get('password', '')}".encode()
        headers["Authorization"] = "Basic " + base64.b64encode(pair).decode()
    elif auth.get("type") == "oauth":
        headers[str(auth.get("headerName") or "Authorization")] = (
            f"{auth.get('tokenType') or 'Bearer'} {auth.get('accessToken', '')}")
    body = action.get("body")
    if body is None:
        data = b""
    elif isinstance(body, str):
        data = render_text(body, lookup).encode()
    else:
        data = json.dumps(render_value(body, lookup), ensure_ascii=False).encode()
    return Outbound(str(action["method"]), render_text(str(action["endpoint"]), lookup), headers, data)


# -- sending ------------------------------------------------------------------------------------


class Outbox:
    """Sends fired requests on background threads, never in the caller's.

    `send` only queues (or drops, when `OUTBOX_LIMIT` requests wait already); up to `SENDERS`
    daemon threads are started on demand and stop after `IDLE_SECONDS` without work, so an
    emulator without triggers never has one.  Each outcome goes to `done(entry)` (the emulator
    records it in the trigger's delivery log under its own lock)."""

    def __init__(self, done: Callable[[dict[str, Any]], None], timeout: float) -> None:
        self.done = done
        self.timeout = timeout
        self._waiting: queue.Queue[tuple[dict[str, Any], Outbound]] = queue.Queue(maxsize=OUTBOX_LIMIT)
        self._lock = threading.Lock()
        self._senders = 0
        self._pending = 0

    @property
    def pending(self) -> int:
        """Requests queued or being sent."""
        with self._lock:
            return self._pending

    def send(self, entry: dict[str, Any], request: Outbound) -> None:
        with self._lock:
            try:
                self._waiting.put_nowait((entry, request))
            except queue.Full:
                entry["error"] = f"not sent: {OUTBOX_LIMIT} requests already waiting"
                self.done(entry)
                return
            self._pending += 1
            if self._senders < SENDERS:
                self._senders += 1
                threading.Thread(target=self._run, name="tracker-trigger", daemon=True).start()

    def _run(self) -> None:
        while True:
            try:
                entry, request = self._waiting.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._waiting.empty():
                        self._senders -= 1
                        return
                continue
            try:
                self._deliver(entry, request)
            finally:
                with self._lock:
                    self._pending -= 1

    def _deliver(self, entry: dict[str, Any], request: Outbound) -> None:
        started = time.monotonic()
        try:
            with httpx.Client(timeout=self.timeout, follow_redirects=False, trust_env=False) as client:
                answer = client.request(request.method, request.url, headers=request.headers,
                                        content=request.body or None)
            entry["response"] = {"status": answer.status_code, "body": answer.text[:1000]}
        except Exception as exc:  # noqa: BLE001 - any failure is a log entry, never a crash
            entry["error"] = f"{type(exc).__name__}: {exc}"
        entry["durationMs"] = round((time.monotonic() - started) * 1000)
        with contextlib.suppress(Exception):  # the log is best effort; the thread must live on
            self.done(entry)


def hidden(headers: Iterable[tuple[str, str]]) -> dict[str, str]:
    """Header values as an answer shows them when they are hidden (knob `trigger_headers_hidden`)."""
    return {name: "********" for name, _ in headers}
