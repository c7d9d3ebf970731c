"""Pure translation between raw API JSON and the values the planner compares.

Nothing here does I/O.  The engine fetches JSON with the clients, builds a `UserMap` from the
member and user lists, and asks this module for comparable values:

* status: a Sentry *state* string (`unresolved`, `unresolved.regressed`, `resolved`,
  `resolvedInNextRelease`, `ignored.archived_forever`, ...) and a Tracker status key;
* assignee: a lower-case Sentry e-mail (or `team:<slug>`) and a Tracker login (or `uid:<id>`
  for a Tracker user the directory does not know), `None` when unassigned;
* followers: the set of e-mails of mapped people who bookmarked the Sentry issue (None when
  unknown), and the set of Tracker follower logins.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from bridge.config import StatusMapping, TrackerTarget
from bridge.core.values import parse_time

# Sentry searches (and so `bookmarks:`) only see issues with events in the last 90 days; a day of
# margin keeps an issue at the edge from flickering in and out.
SEARCH_WINDOW = timedelta(days=90)
WINDOW_MARGIN = timedelta(days=1)


# -- status ------------------------------------------------------------------------------------


def sentry_state(issue: Mapping[str, Any]) -> str:
    """The state string of a Sentry issue: `resolvedInNextRelease` is a resolved issue with
    `statusDetails.inNextRelease`; unresolved and ignored issues carry their substatus."""
    status = str(issue.get("status") or "unresolved")
    details = issue.get("statusDetails") or {}
    if status == "resolved":
        return "resolvedInNextRelease" if details.get("inNextRelease") else "resolved"
    substatus = issue.get("substatus")
    return f"{status}.{substatus}" if substatus else status


def base_state(state: str) -> str:
    """`unresolved.regressed` -> `unresolved`."""
    return state.split(".", 1)[0]


def tracker_status(issue: Mapping[str, Any]) -> str:
    status = issue.get("status") or {}
    return str(status.get("key") if isinstance(status, Mapping) else status)


def status_to_tracker(state: str, table: StatusMapping) -> TrackerTarget | None:
    """The Tracker target of a Sentry state; a `status.substatus` row wins over the plain one."""
    return table.to_tracker.get(state) or table.to_tracker.get(base_state(state))


def status_to_sentry(status: str, table: StatusMapping) -> str | None:
    return table.to_sentry.get(status)


def sentry_state_satisfies(state: str, wanted: str) -> bool:
    """Whether the issue is already in the state a write of `wanted` would produce
    (`ignored.archived_forever` satisfies `ignored`)."""
    if state == wanted or base_state(state) == wanted:
        return True
    # Resolved in the next release is resolved: a plain resolve would change nothing.
    return state == "resolvedInNextRelease" and wanted == "resolved"


def status_in_step(state: str, status: str, table: StatusMapping) -> bool:
    """In step when the mapping maps one side onto the other, in either direction."""
    target = status_to_tracker(state, table)
    if target is not None and target.status == status:
        return True
    wanted = status_to_sentry(status, table)
    return wanted is not None and sentry_state_satisfies(state, wanted)


# -- users -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SentryPerson:
    user_id: str
    email: str
    emails: frozenset[str]
    # A `bookmarks:` search finds nothing for people without a usable password (SSO-only;
    # the member list's `user.hasPasswordAuth`): their bookmarks cannot be known.
    searchable: bool = True


@dataclass(frozen=True)
class UserMap:
    """Who is who on both sides.  Built once per cycle from the member and user lists.

    `login_by_email` has an entry for every e-mail of every matched Sentry person;
    `person_by_login` is the reverse.  People who are not in both maps are *unmapped*: the
    planner reports them and never guesses.
    """

    login_by_email: Mapping[str, str] = field(default_factory=dict)
    person_by_login: Mapping[str, SentryPerson] = field(default_factory=dict)
    person_by_email: Mapping[str, SentryPerson] = field(default_factory=dict)
    login_by_uid: Mapping[str, str] = field(default_factory=dict)

    def login_for(self, email: str) -> str | None:
        return self.login_by_email.get(email.lower())

    def person_for(self, login: str) -> SentryPerson | None:
        return self.person_by_login.get(login)

    def mapped_people(self) -> list[SentryPerson]:
        """Matched Sentry people whose bookmarks a search can find, each once (SSO-only people
        are left out: their search finds nothing, which would read as "no bookmark")."""
        seen: dict[str, SentryPerson] = {}
        for person in self.person_by_login.values():
            if person.searchable:
                seen.setdefault(person.user_id, person)
        return sorted(seen.values(), key=lambda p: p.email)

    def bookmarks_known(self, email: str) -> bool:
        """Whether the bookmark searches can tell this address's bookmarks: its person is
        mapped and searchable."""
        person = self.person_by_email.get(email.lower())
        return self.login_for(email) is not None and (person is None or person.searchable)


def build_user_map(
    members: Iterable[Mapping[str, Any]],
    tracker_users: Iterable[Mapping[str, Any]],
    overrides: Mapping[str, str],
) -> UserMap:
    """Match Sentry members to Tracker users: `[mapping.users]` first, then any e-mail of the
    Sentry user equal (case-insensitively) to the Tracker user's e-mail.  An e-mail shared by
    two Tracker users matches nobody: ambiguity is reported, not resolved by luck."""
    people: list[SentryPerson] = []
    for member in members:
        user = member.get("user")
        if not isinstance(user, Mapping) or user.get("id") is None:
            continue  # pending invite: nobody to assign yet
        emails = {str(e).lower() for e in (user.get("email"), member.get("email")) if e}
        for item in user.get("emails") or []:
            if isinstance(item, Mapping) and item.get("email"):
                emails.add(str(item["email"]).lower())
        primary = str(user.get("email") or member.get("email") or "").lower()
        if primary:
            people.append(SentryPerson(str(user["id"]), primary, frozenset(emails),
                                       searchable=user.get("hasPasswordAuth") is not False))

    logins_by_email: dict[str, set[str]] = {}
    login_by_uid: dict[str, str] = {}
    for user in tracker_users:
        login = user.get("login")
        if not login:
            continue
        for uid_key in ("uid", "trackerUid", "passportUid", "id"):
            if user.get(uid_key) is not None:
                login_by_uid[str(user[uid_key])] = str(login)
        if user.get("email"):
            logins_by_email.setdefault(str(user["email"]).lower(), set()).add(str(login))
    lowered_overrides = {k.lower(): v for k, v in overrides.items()}

    login_by_email: dict[str, str] = {}
    person_by_login: dict[str, SentryPerson] = {}
    person_by_email: dict[str, SentryPerson] = {}
    for person in people:
        for email in person.emails:
            person_by_email[email] = person
        login = next((lowered_overrides[e] for e in sorted(person.emails) if e in lowered_overrides), None)
        if login is None:
            candidates = {lg for e in person.emails for lg in logins_by_email.get(e, set())}
            login = next(iter(candidates)) if len(candidates) == 1 else None
        if login is None:
            continue
        for email in person.emails:
            login_by_email[email] = login
        person_by_login.setdefault(login, person)
    return UserMap(login_by_email, person_by_login, person_by_email, login_by_uid)


def sentry_assignee(issue: Mapping[str, Any]) -> str | None:
    """`None`, a lower-case e-mail, or `team:<slug>` (teams have no Tracker counterpart)."""
    assigned = issue.get("assignedTo")
    if not isinstance(assigned, Mapping):
        return None
    if assigned.get("type") == "team":
        return f"team:{assigned.get('name')}"
    email = assigned.get("email")
    return str(email).lower() if email else f"user:{assigned.get('id')}"


def tracker_login(ref: Any, users: UserMap) -> str | None:
    """Login of a Tracker user reference `{self, id, display}` (refs carry no login)."""
    if not isinstance(ref, Mapping):
        return None
    uid = str(ref.get("id") or "")
    for key in ("id", "passportUid", "cloudUid"):
        value = ref.get(key)
        if value is not None and str(value) in users.login_by_uid:
            return users.login_by_uid[str(value)]
    return f"uid:{uid}"


def tracker_assignee(issue: Mapping[str, Any], users: UserMap) -> str | None:
    return tracker_login(issue.get("assignee"), users)


def tracker_followers(issue: Mapping[str, Any], users: UserMap) -> frozenset[str]:
    refs = issue.get("followers") or []
    logins = (tracker_login(ref, users) for ref in refs)
    return frozenset(login for login in logins if login)


def assignee_in_step(email: str | None, login: str | None, users: UserMap) -> bool:
    if email is None or login is None:
        return email is None and login is None
    if users.login_for(email) == login:
        return True
    person = users.person_for(login)
    return person is not None and email in person.emails


def outside_search_window(issue: Mapping[str, Any], now: datetime) -> bool:
    """Whether Sentry's searches can no longer see this issue (its last event is too old), so a
    search that does not find it proves nothing about its bookmarks."""
    last_seen = parse_time(issue.get("lastSeen"))
    return last_seen is not None and last_seen < now - SEARCH_WINDOW + WINDOW_MARGIN
