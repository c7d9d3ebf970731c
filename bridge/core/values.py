"""The values the core compares, and the few ways they are shown.

A field's value is a string (a Sentry state, a Tracker status key, an e-mail, a login), a set of
strings (bookmarks, followers) or None (unassigned, unknown).  `Pair` holds one field's values on
both sides: a baseline (both sides the last time they were in step) or what the sides hold now.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, get_args

Field = str  # a declared field's name (`bridge.core.fields`)
Side = Literal["sentry", "tracker"]
Value = str | frozenset[str] | None
SIDES: tuple[Side, ...] = ("sentry", "tracker")

# What Sentry's issue PUT accepts as `status` (reads show `resolvedInNextRelease` as a resolved
# issue with `statusDetails.inNextRelease`); the one list the client, the config and doctor use.
SentryWritableState = Literal["unresolved", "resolved", "resolvedInNextRelease", "ignored"]
SENTRY_WRITABLE_STATES: tuple[str, ...] = get_args(SentryWritableState)


@dataclass(frozen=True)
class Pair:
    """One field's values on both sides (a baseline, or what the sides hold now)."""

    sentry: Value
    tracker: Value

    def side(self, side: Side) -> Value:
        return self.sentry if side == "sentry" else self.tracker

    def with_side(self, side: Side, value: Value) -> Pair:
        return Pair(value, self.tracker) if side == "sentry" else Pair(self.sentry, value)


NOTHING = Pair(None, None)


@dataclass(frozen=True)
class Snapshot:
    """Both sides of one link now, per field.  The Sentry side of followers is the set of
    e-mails of mapped people who bookmarked the issue, or None when that is unknown this cycle."""

    pairs: Mapping[Field, Pair]

    def get(self, name: Field) -> Pair:
        return self.pairs.get(name, NOTHING)


def other(side: Side) -> Side:
    return "tracker" if side == "sentry" else "sentry"


def scalar(value: Value) -> str | None:
    """The value when it is a single string, else None (sets and unknowns are not scalars)."""
    return value if isinstance(value, str) else None


def shown(value: Value | list[str]) -> Any:
    """A value for JSON: sets as sorted lists, the rest as it is."""
    return sorted(value) if isinstance(value, (frozenset, set, list)) else value


def text(value: Value | list[str]) -> str:
    """A value for people: `{a, b}` for sets, `-` for nothing."""
    if isinstance(value, (frozenset, set, list)):
        return "{" + ", ".join(sorted(str(v) for v in value)) + "}"
    return "-" if value is None else str(value)


def encode_value(value: Value) -> Any:
    """A value as JSON (sets as `{"set": [...]}`), for the store's notes and baselines."""
    return {"set": sorted(value)} if isinstance(value, frozenset) else value


def decode_value(data: Any) -> Value:
    if isinstance(data, dict) and "set" in data:
        return frozenset(str(v) for v in data["set"])
    return None if data is None else str(data)


def parse_time(value: Any) -> datetime | None:
    """A timestamp from either API, always aware: Sentry writes `2024-01-02T03:04:05.678Z`,
    Tracker `2017-07-18T13:33:44.291+0000` (no colon in the offset); our own cursors are
    `isoformat()`; Python 3.11 reads all three.  A time without an offset is UTC; anything else
    is None."""
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
