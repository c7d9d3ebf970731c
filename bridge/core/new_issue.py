"""Pure rules for creating a Tracker issue from a Sentry issue.

The engine decides *when* to create (and journals it); this module decides *what*: which queue
(routes by project), the idempotency key, the summary within Tracker's limit, the description
from the template, type and priority from the Sentry level, tags, followers, and the synced
fields' values.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from bridge.config import CreateSettings
from bridge.core.mapping import UserMap

UNIQUE_PREFIX = "sentry-tracker-bridge"


def unique_key(organization: str, sentry_id: str) -> str:
    """Tracker's `unique` for a Sentry issue: a second create with it answers 409, so the
    same Sentry issue can never get two Tracker issues, whatever crashes or retries happen."""
    return f"{UNIQUE_PREFIX}:{organization}:{sentry_id}"


def sentry_id_from_unique(organization: str, unique: object) -> str | None:
    """The Sentry issue id in one of our `unique` keys (for `relink`), else None."""
    if not isinstance(unique, str):
        return None
    prefix = f"{UNIQUE_PREFIX}:{organization}:"
    rest = unique[len(prefix):] if unique.startswith(prefix) else ""
    return rest if rest.isdigit() else None


def reference_tag(template: str, sentry_id: str) -> str:
    return template.replace("{sentry_id}", sentry_id)


def sentry_id_from_tags(template: str, tags: object) -> str | None:
    """The Sentry issue id named by a reference tag among `tags`, else None (for `relink`)."""
    prefix, _, suffix = template.partition("{sentry_id}")
    for tag in tags if isinstance(tags, list) else []:
        if isinstance(tag, str) and tag.startswith(prefix) and tag.endswith(suffix):
            middle = tag[len(prefix): len(tag) - len(suffix) if suffix else None]
            if middle.isdigit():
                return middle
    return None


def route_queue(issue: Mapping[str, Any], settings: CreateSettings, default_queue: str) -> str:
    project = issue.get("project") or {}
    slug = str(project.get("slug") or "") if isinstance(project, Mapping) else ""
    return settings.routes.get(slug, default_queue)


def summary_of(issue: Mapping[str, Any], limit: int) -> str:
    """The title on one line, cut at `limit` characters with an ellipsis."""
    title = " ".join(str(issue.get("title") or issue.get("shortId") or "Sentry issue").split())
    return title if len(title) <= limit else title[: max(1, limit - 1)] + "…"


def description_of(issue: Mapping[str, Any], template: str) -> str:
    project = issue.get("project") or {}
    values = {
        "title": issue.get("title") or "",
        "short_id": issue.get("shortId") or "",
        "sentry_id": issue.get("id") or "",
        "project": project.get("slug", "") if isinstance(project, Mapping) else "",
        "permalink": issue.get("permalink") or "(no permalink: the token cannot see the organization's URL)",
        "culprit": issue.get("culprit") or "-",
        "level": issue.get("level") or "-",
        "first_seen": issue.get("firstSeen") or "-",
        "last_seen": issue.get("lastSeen") or "-",
        "count": issue.get("count") or "0",
        "user_count": issue.get("userCount") or 0,
    }
    return template.format(**values)


def issue_fields(
    issue: Mapping[str, Any],
    settings: CreateSettings,
    queue: str,
    users: UserMap,
    bookmarks: frozenset[str] | None,
    carried: Mapping[str, Any],
) -> dict[str, Any]:
    """The body of the Tracker create request (without `unique`, which the client adds).
    `carried` holds the synced fields' values (`fields.carried_on_create`): they win over the
    level's defaults, so the new pair starts in step."""
    fields: dict[str, Any] = {
        "queue": queue,
        "summary": summary_of(issue, settings.summary_max_chars),
        "description": description_of(issue, settings.description_template),
    }
    route = settings.levels.get(str(issue.get("level") or ""))
    if route is not None and route.type:
        fields["type"] = route.type
    if route is not None and route.priority:
        fields["priority"] = route.priority
    tags = list(settings.tags)
    if settings.reference_tag:
        tags.append(reference_tag(settings.reference_tag, str(issue.get("id"))))
    if tags:
        fields["tags"] = tags
    fields.update(carried)
    followers = sorted({lg for lg in (users.login_for(e) for e in bookmarks or ()) if lg})
    if followers:
        fields["followers"] = followers
    if settings.reference_field:
        fields[settings.reference_field] = str(issue.get("id"))
    return fields
