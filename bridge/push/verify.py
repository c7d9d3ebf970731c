"""Checking and reading hook requests: pure functions, no I/O.

Sentry signs an integration webhook with `Sentry-Hook-Signature`, the hex HMAC-SHA256 of the raw
body keyed with the integration's client secret.  The Tracker trigger carries a shared secret in
`X-Bridge-Secret`.  Both are compared in constant time, before the body is even parsed: an
unsigned request costs a hash, never a JSON parse or a re-read.  A hint names one issue and
nothing else is taken from the body.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any, Literal

MAX_BODY_BYTES = 1024 * 1024  # 1 MiB: Sentry's issue payloads are a few KiB


@dataclass(frozen=True)
class Hint:
    """An issue a hook says changed: re-read it (and its link) soon."""

    side: Literal["sentry", "tracker"]
    ref: str  # the Sentry issue id, or the Tracker issue key


class BadHook(Exception):
    """A hook the receiver refuses: the HTTP status and a short reason (never a secret)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def sentry_signature_ok(secret: bytes, body: bytes, signature: str | None) -> bool:
    """True when `signature` is the hex HMAC-SHA256 of `body` under `secret`."""
    if not signature or not secret:
        return False
    expected = hmac.new(secret, body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode("ascii", "replace"))


def shared_secret_ok(secret: bytes, given: str | None) -> bool:
    """True when the shared secret sent equals ours (constant time)."""
    if not given or not secret:
        return False
    return hmac.compare_digest(secret, given.strip().encode("utf-8", "replace"))


def _json_object(body: bytes) -> dict[str, Any]:
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise BadHook(400, "the body is not JSON") from None
    if not isinstance(data, dict):
        raise BadHook(400, "the body is not a JSON object")
    return data


@dataclass(frozen=True)
class SentryHook:
    """An issue hook: the issue it names and who acted (`actor.type`, `actor.id`)."""

    hint: Hint
    actor_type: str | None
    actor_id: str | None


def sentry_hook(body: bytes) -> SentryHook | None:
    """The issue an integration webhook names (`data.issue.id`) and its actor, or None for
    another resource (`installation`, `event_alert`, ...).  Whether an application's hook is our
    own echo is the receiver's question (`bridge.push.echoes`).  A body that is not an issue hook
    of the documented shape is a 400."""
    data = _json_object(body)
    issue = (data.get("data") or {}).get("issue") if isinstance(data.get("data"), dict) else None
    if issue is None:
        return None  # not an issue hook: nothing to re-read
    if not isinstance(issue, dict) or not str(issue.get("id") or "").isdigit():
        raise BadHook(400, "data.issue.id is not an issue id")
    actor = data.get("actor")
    kind, ident = (actor.get("type"), actor.get("id")) if isinstance(actor, dict) else (None, None)
    return SentryHook(Hint("sentry", str(issue["id"])), kind if isinstance(kind, str) else None,
                      None if ident is None else str(ident))


def tracker_hint(body: bytes) -> Hint:
    """`{"key": "OPS-1", ...}` from the queue trigger's HTTP request."""
    data = _json_object(body)
    key = data.get("key")
    if not isinstance(key, str) or "-" not in key or len(key) > 100 or not key.split("-")[-1].isdigit():
        raise BadHook(400, "key is not a Tracker issue key")
    return Hint("tracker", key.strip())
