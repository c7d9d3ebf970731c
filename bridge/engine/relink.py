"""`relink`: rebuild lost state from both sides, writing nothing remote.

Links come from Tracker issues that carry our `unique` (or `create.reference_field`, or the
reference tag); each field's baseline becomes what the two sides hold now, so the next sync writes
nothing.  Fields that disagree are recorded as conflicts for the operator.  Followers the bridge
added before cannot be told from hand-added ones any more, so none are owned.  Each link goes in
with its baselines in one transaction: a link without baselines would look new and be written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.core.fields import FIELDS, snapshot
from bridge.core.linkrun import Link
from bridge.core.mapping import UserMap
from bridge.core.new_issue import sentry_id_from_tags, sentry_id_from_unique
from bridge.core.plan import Policy
from bridge.core.values import Field, Pair, Snapshot
from bridge.engine.reading import Reader
from bridge.store import Store


def relink(reader: Reader, store: Store, policy: Policy) -> dict[str, Any]:
    found, duplicates, scanned = _linked_in_tracker(reader)
    links = store.links()
    existing = {link.sentry_id for link in links}
    taken = {link.tracker_key for link in links}
    todo = {sid: t for sid, t in found.items() if sid not in existing and str(t["key"]) not in taken}
    users = reader.users()
    bookmarks = reader.bookmarks(users) if policy.needs_bookmarks else None
    sentry_issues, _errors = reader.fetch_sentry(sorted(todo, key=int))
    linked, disagreeing, missing = 0, 0, []
    for sid, t_issue in todo.items():
        s_issue = sentry_issues.get(sid)
        if s_issue is None:
            missing.append(sid)
            continue
        key = str(t_issue["key"])
        now = snapshot(s_issue, t_issue, reader.bookmarks_of(sid, s_issue, bookmarks), users)
        # A field switched off gets no baseline: switched on later, it starts as on a new link.
        # Bookmarks unknown now (a search failed, an issue older than the search window) stay
        # unknown in the baseline: the first look takes them as seen, not as new.
        baselines: dict[Field, Pair] = {
            spec.name: now.get(spec.name) for spec in FIELDS if policy.directions.get(spec.name, "off") != "off"}
        conflicts = _disagreements(now, users, policy)
        disagreeing += bool(conflicts)
        shown = any(key in str(a.get("url") or "") or key in str(a.get("displayName") or "")
                    for a in s_issue.get("annotations") or [] if isinstance(a, Mapping))
        store.add_relinked(Link(sid, key, "relink", "", int(shown)), baselines, conflicts)
        linked += 1
    return {
        "scanned_tracker_issues": scanned,
        "linked": linked,
        "already_linked": len(found) - len(todo),  # this Sentry issue, or that Tracker issue
        "disagreeing": disagreeing,
        "missing_in_sentry": missing,
        "duplicates": duplicates,
        "requests": {"sentry": reader.sentry.stats.total, "tracker": reader.tracker.stats.total},
    }


def _linked_in_tracker(reader: Reader) -> tuple[dict[str, dict[str, Any]], list[str], int]:
    """Sentry id -> the Tracker issue that names it; the keys of second issues naming the same
    Sentry issue; how many Tracker issues were scanned."""
    settings = reader.settings
    org = settings.sentry.organization
    field_key = settings.create.reference_field
    tag = settings.create.reference_tag
    queues = sorted({settings.tracker.queue, *settings.create.routes.values()})
    found: dict[str, dict[str, Any]] = {}
    duplicates: list[str] = []
    seen: set[str] = set()
    for queue in queues:
        for t_issue in reader.tracker.iter_search(queue=queue):
            # A listing may show an issue twice (edited between pages, or a scroll started
            # over): the same key is the same issue, its newer copy wins.
            seen.add(str(t_issue["key"]))
            sid = sentry_id_from_unique(org, t_issue.get("unique"))
            if sid is None and field_key and str(t_issue.get(field_key) or "").isdigit():
                sid = str(t_issue[field_key])
            if sid is None and tag:
                sid = sentry_id_from_tags(tag, t_issue.get("tags"))
            if sid is None:
                continue
            if sid in found and str(found[sid]["key"]) != str(t_issue["key"]):
                duplicates.append(str(t_issue["key"]))
                continue
            found[sid] = t_issue
    return found, duplicates, len(seen)


def _disagreements(now: Snapshot, users: UserMap, policy: Policy) -> dict[Field, Pair]:
    lookup = policy.lookup(users)
    return {spec.name: now.get(spec.name) for spec in FIELDS
            if not spec.set_valued and policy.directions.get(spec.name, "off") != "off"
            and not spec.in_step(now.get(spec.name), lookup)}
