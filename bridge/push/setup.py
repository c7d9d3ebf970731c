"""`push setup`: one Tracker queue trigger per queue that sends hook hints to the receiver.

Tracker has no webhook subscription; a queue trigger with an HTTP-request action (`Webhook`) is
the only push (reference §13).  The API documents create (`POST .../queues/{q}/triggers`), read
(`GET .../triggers/{id}`) and change (`PATCH .../triggers/{id}?version=N`) of one trigger, but
no listing, so the bridge cannot find "its" trigger by name: it remembers each queue's trigger
id in the state file (cursor `push.trigger.<QUEUE>`), reads that trigger to compare, changes it
with its version when it differs, and creates one when none was made or the one made is gone
(an admin deleted it).  A run against a trigger that is as wanted writes nothing.  A lost state
file means a second trigger on the next run: the old one has to be deleted by hand.

The trigger fires on `Event.update` (any change of an issue of the queue, the bridge's own
writes included: the receiver and the cycle cope with those, as with any hint).  Its request is
`POST <push.public_url>/hooks/tracker` with `{"key": "{{issue.key}}", "updatedAt":
"{{issue.updatedAt.iso8601}}"}` (a plain `{{issue.updatedAt}}` renders as `DD month YYYY`,
user/vars.md) and the shared secret in `X-Bridge-Secret`; the receiver uses only the key.

The secret never leaves this module except in the request that sets it: what is printed shows
it as `***`, errors are scrubbed of it, and the state file keeps only a 64-bit prefix of its
SHA-256 ("the secret last sent"), which tells whether the trigger still carries the current
secret when an answer hides header values (the UI hides hidden variables once saved; whether the
API does is not documented).
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from bridge.clients.tracker import TrackerClient
from bridge.errors import ConflictError, RateLimitedError, RemoteError, TransientError, UnreachableError

TRIGGER_NAME = "sentry-tracker-bridge hints"
SECRET_HEADER = "X-Bridge-Secret"  # noqa: S105 - a header name, not a secret
HOOK_PATH = "/hooks/tracker"
MASK = "***"
CURSOR_PREFIX = "push.trigger."
BODY = '{"key": "{{issue.key}}", "updatedAt": "{{issue.updatedAt.iso8601}}"}'
CONDITIONS: list[dict[str, Any]] = [{"type": "Event.update"}]

Action = Literal["create", "recreate", "update", "none"]


class Cursors(Protocol):
    """Where trigger ids are remembered: the store's cursor table."""

    def cursor(self, name: str) -> str | None: ...

    def set_cursor(self, name: str, value: str) -> None: ...


class NoCursors:
    """A state file that does not exist yet (a dry run reads, never creates one)."""

    def cursor(self, name: str) -> str | None:
        return None

    def set_cursor(self, name: str, value: str) -> None:
        raise RuntimeError("a dry run writes nothing")


def cursor_name(queue: str) -> str:
    return CURSOR_PREFIX + queue


def secret_mark(secret: str) -> str:
    """A short fingerprint of the secret, to tell later whether it changed (never the secret)."""
    return hashlib.sha256(b"sentry-tracker-bridge trigger secret\0" + secret.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Remembered:
    """What the state file holds for one queue: the trigger id and the mark of the secret sent."""

    trigger_id: str
    mark: str | None = None

    @classmethod
    def parse(cls, value: str | None) -> Remembered | None:
        """The cursor's value (JSON; a bare id is accepted too), or None when there is none or it
        cannot be read (then a new trigger is made, as if none had been)."""
        if not value:
            return None
        try:
            data = json.loads(value)
        except ValueError:
            return cls(value.strip()) if value.strip().isdigit() else None
        if isinstance(data, int) and not isinstance(data, bool):
            return cls(str(data))
        if not isinstance(data, dict) or not str(data.get("id") or "").strip():
            return None
        mark = data.get("secret")
        return cls(str(data["id"]), mark if isinstance(mark, str) else None)

    def dump(self) -> str:
        return json.dumps({"id": self.trigger_id, "secret": self.mark}, sort_keys=True)


def endpoint(public_url: str) -> str:
    return public_url.rstrip("/") + HOOK_PATH


def wanted_trigger(public_url: str, secret: str) -> dict[str, Any]:
    """The trigger `push setup` keeps in every queue (the body of a create, and of a change)."""
    return {
        "name": TRIGGER_NAME,
        "active": True,
        "conditions": copy.deepcopy(CONDITIONS),
        "actions": [{
            "type": "Webhook",
            "endpoint": endpoint(public_url),
            "method": "POST",
            "contentType": "application/json",
            "headers": {SECRET_HEADER: secret},
            "authContext": {"type": "noauth"},
            "body": BODY,
        }],
    }


def masked(value: Any, secret: str) -> Any:
    """`value` with the secret shown as `***` wherever it occurs: for printing and errors."""
    if isinstance(value, str):
        return value.replace(secret, MASK) if secret else value
    if isinstance(value, list):
        return [masked(v, secret) for v in value]
    if isinstance(value, dict):
        return {k: masked(v, secret) for k, v in value.items()}
    return value


def scrub(error: RemoteError, secret: str) -> RemoteError:
    """The same error without the secret in its message or excerpt (a server may echo a body)."""
    if secret:
        error.args = tuple(masked(str(a), secret) for a in error.args)
        error.excerpt = masked(error.excerpt, secret)
    return error


# -- comparing ---------------------------------------------------------------------------------


def _looks_hidden(value: Any) -> bool:
    return value is None or (isinstance(value, str) and set(value) <= {"*"})


def _body(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _canonical(condition: Any) -> Any:
    """Conditions as a comparable value: a list is an And group, a group of one is its member
    (the API may answer a plain list wrapped in a group), members in any order, elementary
    conditions by type alone (the server may add its default parameters to them)."""
    if isinstance(condition, list):
        return _group("and", condition)
    if isinstance(condition, dict):
        kind = str(condition.get("type"))
        if kind.lower() in ("and", "or"):
            inner = condition.get("conditions")
            return _group(kind.lower(), inner if isinstance(inner, list) else [])
        return kind
    return repr(condition)


def _group(kind: str, items: list[Any]) -> Any:
    members = [_canonical(item) for item in items]
    if len(members) == 1:
        return members[0]
    return (kind, tuple(sorted(members, key=repr)))


def _shown_secret(trigger: dict[str, Any]) -> Any:
    """The secret header's value as the answer shows it (None when there is none)."""
    actions = trigger.get("actions")
    action = actions[0] if isinstance(actions, list) and actions and isinstance(actions[0], dict) else {}
    headers = action.get("headers")
    if not isinstance(headers, dict):
        return None
    return next((v for k, v in headers.items() if str(k).lower() == SECRET_HEADER.lower()), None)


def differences(want: dict[str, Any], have: dict[str, Any], secret: str, mark: str | None) -> list[str]:
    """What of `have` (the trigger as read) is not as `want`, by name; empty when it is.  The
    secret counts as unchanged when it is shown and equal, or hidden and the state file's mark
    is that of the current secret."""
    changed: list[str] = []
    if have.get("name") != want["name"]:
        changed.append("name")
    if have.get("active") is not True:
        changed.append("active")
    if _canonical(have.get("conditions") or []) != _canonical(want["conditions"]):
        changed.append("conditions")
    actions = have.get("actions")
    if not isinstance(actions, list) or len(actions) != 1 or not isinstance(actions[0], dict) \
            or actions[0].get("type") != "Webhook":
        return [*changed, "actions"]
    got, wanted = actions[0], want["actions"][0]
    if got.get("endpoint") != wanted["endpoint"]:
        changed.append("endpoint")
    if str(got.get("method") or "").upper() != wanted["method"]:
        changed.append("method")
    if str(got.get("contentType") or "").replace(" ", "").lower() != wanted["contentType"]:
        changed.append("contentType")
    if _body(got.get("body")) != _body(wanted["body"]):
        changed.append("body")
    auth = got.get("authContext")
    if str((auth if isinstance(auth, dict) else {"type": "noauth"}).get("type") or "").lower() != "noauth":
        changed.append("authContext")
    headers = got.get("headers")
    if not isinstance(headers, dict) or {str(k).lower() for k in headers} != {SECRET_HEADER.lower()}:
        changed.append("headers")
    else:
        shown = _shown_secret(have)
        if not (shown == secret or (_looks_hidden(shown) and mark == secret_mark(secret))):
            changed.append(SECRET_HEADER)
    return changed


# -- planning and applying ---------------------------------------------------------------------


@dataclass
class Step:
    """What `push setup` does (or, in a dry run, would do) in one queue."""

    queue: str
    action: Action
    trigger_id: str | None = None
    version: int | None = None
    changes: list[str] = field(default_factory=list)
    gone: str | None = None  # the remembered trigger that no longer exists
    done: bool = False
    # The secret was seen as sent (not hidden) and equal: the state file's mark can be refreshed.
    secret_seen: bool = False

    def to_json(self) -> dict[str, Any]:
        return {"queue": self.queue, "action": self.action, "trigger_id": self.trigger_id,
                "version": self.version, "changes": list(self.changes), "gone": self.gone, "done": self.done}


class TriggerSetup:
    """Plans and applies the trigger of each queue against one Tracker client and the state
    file's cursors.  All remote errors leave here scrubbed of the secret."""

    def __init__(self, tracker: TrackerClient, cursors: Cursors, public_url: str, secret: str) -> None:
        self.tracker = tracker
        self.cursors = cursors
        self.secret = secret
        self.want = wanted_trigger(public_url, secret)

    def plan(self, queue: str) -> Step:
        """Reads only: the remembered trigger (if any) compared with the wanted one."""
        return self._guarded(lambda: self._plan(queue))

    def apply(self, step: Step) -> Step:
        """Do what `step` says; returns it with the trigger's id and version after the write.  A
        change that meets a 409 (somebody edited the trigger meanwhile) is planned again once."""
        return self._guarded(lambda: self._apply(step, again=True))

    def _guarded(self, work: Callable[[], Step]) -> Step:
        try:
            return work()
        except RemoteError as exc:
            raise scrub(exc, self.secret) from None

    def _plan(self, queue: str) -> Step:
        remembered = Remembered.parse(self.cursors.cursor(cursor_name(queue)))
        if remembered is None:
            return Step(queue, "create")
        have = self.tracker.get_trigger(queue, remembered.trigger_id)
        if have is None:
            return Step(queue, "recreate", gone=remembered.trigger_id)
        changes = differences(self.want, have, self.secret, remembered.mark)
        return Step(queue, "update" if changes else "none", str(have["id"]), int(have["version"]), changes,
                    secret_seen=not changes and _shown_secret(have) == self.secret)

    def _apply(self, step: Step, *, again: bool) -> Step:
        name = cursor_name(step.queue)
        if step.action == "none":
            fresh = Remembered(str(step.trigger_id), secret_mark(self.secret)).dump()
            if step.secret_seen and self.cursors.cursor(name) != fresh:
                self.cursors.set_cursor(name, fresh)  # a local note only: the trigger is as wanted
            step.done = True
            return step
        if step.action in ("create", "recreate"):
            made = self._create(step.queue)
            step.trigger_id, step.version = str(made["id"]), int(made["version"])
        else:
            try:
                made = self.tracker.update_trigger(step.queue, str(step.trigger_id), self.want,
                                                   version=int(step.version or 0))
            except ConflictError:
                if not again:
                    raise
                return self._apply(self._plan(step.queue), again=False)
            step.version = int(made["version"])
        self.cursors.set_cursor(name, Remembered(str(step.trigger_id), secret_mark(self.secret)).dump())
        step.done = True
        return step

    def _create(self, queue: str) -> dict[str, Any]:
        try:
            return self.tracker.create_trigger(queue, self.want)
        except (UnreachableError, RateLimitedError):
            raise  # never reached the server, or refused before doing anything: nothing was made
        except TransientError as exc:
            exc.args = (f"{exc}; the trigger may have been created all the same (the API has no listing to "
                        f"check): look for \"{TRIGGER_NAME}\" among queue {queue}'s triggers and delete it "
                        "before running push setup again",)
            raise
