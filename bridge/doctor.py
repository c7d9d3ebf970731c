"""`doctor`: can this configuration work against these two servers, before it is switched on?

Each check is one line with a level (pass / warn / fail), a detail and advice an operator can act
on.  Everything is learned with reads only; what cannot be learned without writing (Sentry's
`event:write`, Tracker's right to edit the queue) is said so, never probed with a write.

The shape is the usual one: `run_doctor` (the shell) asks the servers and collects plain data;
the analyses that turn data into verdicts (`reach`, `round_trip`, `user_coverage`,
`target_resolutions`, ...) are pure functions over that data, so each verdict is testable alone.

How the queue's workflow is learned without writing: for every status the organisation has, one
search finds issues of the queue in that status, and the transitions listed for one issue per
issue type give the edges out of that status.  Statuses no issue sits in stay unexplored; a path
through them cannot be shown, and the check says so instead of guessing.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar
from urllib.parse import quote

from bridge.check import LEVELS, Check, Level
from bridge.clients.sentry import SentryClient, next_cursor
from bridge.clients.tracker import TrackerClient
from bridge.config import SENTRY_STATES, Settings, StatusMapping
from bridge.core.fields import FIELDS
from bridge.core.mapping import build_user_map, sentry_state_satisfies, status_to_sentry, status_to_tracker
from bridge.core.workflow import Definition, Transition, parse_transitions, shortest_path
from bridge.engine.transitions import read_definitions
from bridge.errors import AuthError, NotFoundError, RemoteError
from bridge.probes import LiveProbes
from bridge.push.checks import push_checks
from bridge.store import state_file_health

SAMPLE_PER_STATUS = 20  # issues looked at per status to find one of each issue type
SHOWN = 10  # names listed before "and N more"
T = TypeVar("T")


@dataclass
class DoctorReport:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """No check failed (warnings do not make the exit code non-zero)."""
        return all(c.level != "fail" for c in self.checks)

    def counts(self) -> dict[str, int]:
        return {level: sum(1 for c in self.checks if c.level == level) for level in LEVELS}

    def add(self, check: Check) -> None:
        self.checks.append(check)

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "counts": self.counts(), "checks": [c.to_json() for c in self.checks]}


def worst(levels: Iterable[Level]) -> Level:
    found = set(levels)
    return "fail" if "fail" in found else "warn" if "warn" in found else "pass"


def listed(items: Iterable[str], limit: int = SHOWN) -> str:
    """`a, b, c and 7 more`: long lists stay one readable line."""
    values = list(items)
    head = ", ".join(values[:limit])
    return head + (f" and {len(values) - limit} more" if len(values) > limit else "")


# -- pure analyses -----------------------------------------------------------------------------


def format_path(start: str, path: Sequence[Transition]) -> str:
    """`open -[close]-> closed`: the transition ids the bridge would execute, in order."""
    return start + "".join(f" -[{step.id}]-> {step.to}" for step in path)


@dataclass(frozen=True)
class Reach:
    """How a target status can be reached in the known part of one workflow.

    `paths` holds the shortest known path from each explored status; `stuck` the explored
    statuses with no known path; `unexplored` the statuses seen only as a transition's target
    (no issue sits in them, so their own transitions are unknown)."""

    target: str
    paths: Mapping[str, tuple[Transition, ...]]
    stuck: tuple[str, ...]
    unexplored: tuple[str, ...]


def reach(graph: Mapping[str, Sequence[Transition]], target: str) -> Reach:
    paths: dict[str, tuple[Transition, ...]] = {}
    stuck: list[str] = []
    for source in sorted(graph):
        if source == target:
            continue
        path = shortest_path(graph, source, target)
        if path is None:
            stuck.append(source)
        else:
            paths[source] = tuple(path)
    targets = {t.to for moves in graph.values() for t in moves}
    return Reach(target, paths, tuple(stuck), tuple(sorted(targets - set(graph))))


def reach_level(result: Reach, *, explored: bool) -> Level:
    """fail: the target cannot be reached from anywhere and nothing is left unexplored (or the
    status is not in the queue at all); warn: some statuses cannot reach it, or it is unproven."""
    if not explored:
        return "warn"
    if not result.stuck:
        return "pass"
    if result.unexplored:
        return "warn"
    return "fail" if not result.paths else "warn"


def definition_verdict(
    table: StatusMapping, queues: Mapping[str, Mapping[str, Definition]], *, to_tracker: bool, to_sentry: bool,
    complete: bool = True,
) -> tuple[Level, str, list[str]]:
    """Judge the status mapping against the queues' defined workflows (queue -> issue type ->
    definition).  Fail: a `to_tracker` target a workflow lacks (the bridge refuses to move issues
    of that queue there), or an operator-written `to_sentry` key no queue has (never read) —
    only when every queue's definition was read (`complete`): otherwise the key may belong to
    the queue doctor could not read, and it is a note.  Warn: statuses of a workflow from which
    a target cannot be reached."""
    fails: list[str] = []
    warns: list[str] = []
    every: set[str] = set()
    for queue, by_type in sorted(queues.items()):
        flows: dict[int, tuple[Definition, list[str]]] = {}  # one entry per workflow object
        for itype, definition in by_type.items():
            flows.setdefault(id(definition), (definition, []))[1].append(itype)
        for definition, types in flows.values():
            every |= definition.statuses
            label = queue if len(flows) == 1 else f"{queue} ({', '.join(sorted(types))})"
            shown = listed(sorted(definition.statuses), 20)
            for state, target in sorted(table.to_tracker.items()) if to_tracker else ():
                if target.status not in definition.statuses:
                    fails.append(f'mapping.status.to_tracker.{state} = "{target.status}": queue {label} has no '
                                 f'status "{target.status}" (it has {shown})')
                    continue
                stuck = sorted(definition.statuses - definition.leading_to(target.status))
                if stuck:
                    warns.append(f"mapping.status.to_tracker.{state} = \"{target.status}\": queue {label}'s "
                                 f"workflow has no way there from {listed(stuck)}")
    notes: list[str] = []
    if to_sentry:
        lacking = [f'mapping.status.to_sentry.{key}: no queue the bridge uses ({", ".join(sorted(queues))}) has '
                   f'status "{key}"' for key in sorted(set(table.to_sentry) - every)]
        # A row of the built-in table the queue lacks is harmless (never read); one the operator
        # wrote is a mistake worth failing on.
        if "to_sentry" in table.model_fields_set and complete:
            fails += lacking
        elif "to_sentry" in table.model_fields_set:
            notes += [f"{row} (not every queue's workflow could be read)" for row in lacking]
        else:
            notes += [f"{row} (a built-in row: never read, harmless)" for row in lacking]
    if fails:
        return "fail", f"{len(fails)} mapping row(s) name a status the queues' workflows lack", fails + warns + notes
    if warns:
        return "warn", f"{len(warns)} mapping row(s) cannot be reached from every status", warns + notes
    checked = "every status the mapping names" if to_tracker else "every to_sentry key"
    where = f"the workflow of {listed(sorted(queues))}"
    return "pass", f"{checked} is in {where}" + (", reachable from every status" if to_tracker else ""), notes


def done_steps_without_resolution(
    path: Sequence[Transition], status_types: Mapping[str, str]
) -> list[str]:
    """Statuses of type done a path passes through *before* its end: Tracker wants a
    resolution there, and the bridge passes the mapping's resolution only on the last step."""
    return [step.to for step in path[:-1] if status_types.get(step.to) == "done"]


def round_trip(table: StatusMapping) -> tuple[list[str], list[str]]:
    """(Sentry states that come back different after a trip to Tracker and back, Tracker
    statuses that do).  The first kind flips a Sentry issue when its ticket moves away and
    back (`ignored -> closed -> resolved`); the second is normal for many-to-one tables."""
    states = sorted(set(table.to_tracker) | set(SENTRY_STATES))
    sentry_flips = []
    for state in states:
        target = status_to_tracker(state, table)
        if target is None:
            continue
        back = status_to_sentry(target.status, table)
        if back is not None and not sentry_state_satisfies(state, back):
            sentry_flips.append(f"{state} -> {target.status} -> {back}")
    tracker_flips = []
    for status, state in sorted(table.to_sentry.items()):
        target = status_to_tracker(state, table)
        if target is not None and target.status != status:
            tracker_flips.append(f"{status} -> {state} -> {target.status}")
    return sentry_flips, tracker_flips


def uncovered_states(table: StatusMapping) -> list[str]:
    """Sentry states the bridge may meet but cannot map to Tracker."""
    return [s for s in SENTRY_STATES if status_to_tracker(s, table) is None]


def target_resolutions(
    table: StatusMapping,
    status_types: Mapping[str, str],
    resolutions: Iterable[str],
    allowed_by_type: Mapping[str, frozenset[str]],
) -> list[tuple[Level, str]]:
    """Problems with the resolutions of `to_tracker` rows: a done status without one (Tracker
    refuses the transition), an unknown one, one the queue does not allow, one on a status
    that is not done (ignored or refused)."""
    known = set(resolutions)
    problems: list[tuple[Level, str]] = []
    for state, target in sorted(table.to_tracker.items()):
        kind = status_types.get(target.status)
        row = f"to_tracker.{state} = {target.status}"
        if kind is None:
            continue  # unknown statuses are the statuses check's business
        if kind == "done" and target.resolution is None:
            problems.append(("fail", f"{row} is a done status but the row gives no resolution"))
        if target.resolution is None:
            continue
        if target.resolution not in known:
            problems.append(("fail", f"{row}: resolution {target.resolution!r} does not exist in Tracker"))
            continue
        refused = sorted(t for t, allowed in allowed_by_type.items() if target.resolution not in allowed)
        if refused:
            problems.append(("fail", f"{row}: resolution {target.resolution!r} is not allowed in the queue "
                                     f"for issue type(s) {', '.join(refused)}"))
        if kind != "done":
            problems.append(("warn", f"{row}: a resolution on a {kind} status is ignored (or refused)"))
    return problems


@dataclass(frozen=True)
class Coverage:
    """Who is who: the result of matching Sentry members with Tracker users."""

    matched: tuple[tuple[str, str], ...]  # (e-mail, login)
    sentry_only: tuple[str, ...]  # members' e-mails without a Tracker user
    tracker_only: tuple[str, ...]  # logins without a Sentry member
    pending: tuple[str, ...]  # invites not accepted yet (nobody to assign)
    bad_override_logins: tuple[str, ...]  # [mapping.users] rows naming a login Tracker does not have
    unknown_override_emails: tuple[str, ...]  # [mapping.users] rows naming nobody in Sentry
    sso_only: tuple[str, ...]  # matched people who sign in only through SSO
    sso_unknown: bool  # the member list does not say who signs in only through SSO


def user_coverage(
    members: Sequence[Mapping[str, Any]],
    tracker_users: Sequence[Mapping[str, Any]],
    overrides: Mapping[str, str],
    *,
    exclude_logins: Iterable[str] = (),
) -> Coverage:
    users = build_user_map(members, tracker_users, overrides)
    excluded = set(exclude_logins)
    matched: list[tuple[str, str]] = []
    sentry_only: list[str] = []
    pending: list[str] = []
    sso_only: list[str] = []
    sso_known = False
    member_emails: set[str] = set()
    for member in members:
        user = member.get("user")
        if not isinstance(user, Mapping):
            pending.append(str(member.get("email") or member.get("id")))
            continue
        email = str(user.get("email") or member.get("email") or "").lower()
        emails = {email} | {str(e.get("email")).lower() for e in user.get("emails") or []
                            if isinstance(e, Mapping) and e.get("email")}
        member_emails |= emails
        login = users.login_for(email) if email else None
        if login is None:
            sentry_only.append(email)
            continue
        matched.append((email, login))
        if "hasPasswordAuth" in user:
            sso_known = True
            if user.get("hasPasswordAuth") is False:
                sso_only.append(email)
    active = [u for u in tracker_users if u.get("login") and not u.get("dismissed")]
    logins = {str(u["login"]) for u in active}
    all_logins = {str(u["login"]) for u in tracker_users if u.get("login")}
    tracker_only = sorted(lg for lg in logins - excluded if users.person_for(lg) is None)
    return Coverage(
        matched=tuple(sorted(matched)),
        sentry_only=tuple(sorted(sentry_only)),
        tracker_only=tuple(tracker_only),
        pending=tuple(sorted(pending)),
        bad_override_logins=tuple(sorted(f"{e} = {lg}" for e, lg in overrides.items() if lg not in all_logins)),
        unknown_override_emails=tuple(sorted(e for e in overrides if e.lower() not in member_emails)),
        sso_only=tuple(sorted(sso_only)),
        sso_unknown=bool(matched) and not sso_known,
    )


# -- probing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Probe:
    """What one read answered: a value, or the error it raised."""

    value: Any = None
    error: RemoteError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def answered(self) -> bool:
        """The server said something over HTTP (even a refusal)."""
        return self.error is None or self.error.status is not None

    def refused(self, status: int) -> bool:
        return isinstance(self.error, AuthError) and self.error.status == status

    def why(self) -> str:
        return self.error.describe() if self.error else ""


def probe(call: Callable[[], T]) -> Probe:
    try:
        return Probe(value=call())
    except RemoteError as exc:
        return Probe(error=exc)


def first(items: Iterable[T]) -> T | None:
    return next(iter(items), None)


class Doctor:
    """Runs every check against live clients; nothing here writes."""

    def __init__(self, settings: Settings, sentry: SentryClient, tracker: TrackerClient) -> None:
        self.settings = settings
        self.sentry = sentry
        self.tracker = tracker
        self.report = DoctorReport()
        self.members: list[dict[str, Any]] | None = None
        self.project_ids: dict[str, str] = {}
        self.tracker_users: list[dict[str, Any]] | None = None
        self.myself: dict[str, Any] | None = None
        self.queue_statuses: set[str] = set()
        self.coverage: Coverage | None = None

    def add(self, name: str, level: Level, detail: str, advice: str = "", notes: Iterable[str] = ()) -> None:
        self.report.add(Check(name, level, detail, advice, tuple(notes)))

    def run(self) -> DoctorReport:
        level, detail = state_file_health(self.settings.state.path)
        self.add("state file", level, detail,  # type: ignore[arg-type]
                 "" if level == "pass" else "see the sentence above; the file is never changed by doctor")
        sentry_ok = self.check_sentry()
        tracker_ok = self.check_tracker()
        self.check_write_access(sentry_ok, tracker_ok)
        table = self.settings.mapping.status
        flips, tracker_flips = round_trip(table)
        self.check_round_trip(flips, tracker_flips)
        self.check_coverage(table)
        if sentry_ok and tracker_ok:
            self.check_users()
        self.run_probes(sentry_ok, tracker_ok)
        return self.report

    def run_probes(self, sentry_ok: bool, tracker_ok: bool) -> None:
        """The live probes (bridge/probes.py): behaviour the bridge relies on, proven read-only."""
        probes = LiveProbes(self.settings, self.sentry, self.tracker)
        robot = str(self.myself.get("login") or self.myself.get("uid") or "") if self.myself else None
        queue = self.settings.tracker.queue
        verdicts = probes.tracker_probes(robot, [queue, *self.route_queues(queue)]) if tracker_ok else []
        if sentry_ok:
            people = [email for email, _ in self.coverage.matched] if self.coverage else []
            verdicts += probes.sentry_probes(people, self.coverage.sso_only if self.coverage else ())
        verdicts += push_checks(self.settings, self.tracker if tracker_ok else None, [queue, *self.route_queues(queue)])
        for check in verdicts:
            self.report.add(check)

    # -- Sentry ---------------------------------------------------------------------------------
    def check_sentry(self) -> bool:
        """Reachable, token, organisation, scopes, projects, releases.  False when the rest of
        the Sentry checks cannot run."""
        org = self.settings.sentry.organization
        url = self.settings.sentry.url
        issues = probe(lambda: first(self.sentry.iter_issues("", per_page=1)))
        if not issues.answered:
            self.add("sentry: API reachable", "fail", f"{url} did not answer: {issues.why()}",
                     "check sentry.url, DNS, proxies and the network path")
            return False
        if issues.error is not None and issues.error.status not in (401, 403, 404):
            self.add("sentry: API reachable", "fail", f"{url} answered with an error: {issues.why()}",
                     "is sentry.url the Sentry server itself (not a proxy's login page)? retry later")
            return False
        self.add("sentry: API reachable", "pass", f"{url} answered")
        if issues.refused(401):
            self.add("sentry: token", "fail", "the token was refused (401)",
                     "create an internal integration (Settings > Developer Settings) and use its token; "
                     "organization auth tokens (sntrys_) cannot read issues")
            return False
        self.add("sentry: token", "pass", "accepted")
        if isinstance(issues.error, NotFoundError):
            self.add("sentry: organization", "fail", f"organization {org!r} not found (or not visible to the token)",
                     "check sentry.organization: the slug in the URL of your Sentry pages")
            return False
        members = probe(self.sentry.list_members)
        teams = probe(self._teams)
        scopes = [("event:read", "listing issues", issues), ("member:read", "listing members", members),
                  ("org:read", "listing teams", teams)]
        missing = [f"{scope} ({what} answered 403)" for scope, what, p in scopes if p.refused(403)]
        other = [f"{what}: {p.why()}" for _, what, p in scopes if not p.ok and not p.refused(403)]
        self.add("sentry: organization", "pass", f"{org!r} found")
        if missing or other:
            self.add("sentry: token scopes", "fail", "missing " + "; ".join(missing + other) if missing
                     else "; ".join(other),
                     "edit the internal integration's permissions: Issue & Event read+write, "
                     "Organization read, Member read" if missing else "retry; see the error")
        else:
            self.add("sentry: token scopes", "pass", "event:read, member:read and org:read confirmed by reads")
        self.members = members.value if members.ok else None
        if teams.ok:
            self.check_projects(teams.value)
        self.check_installation()
        return self.members is not None

    def check_installation(self) -> None:
        """`sentry.app_installation` is where the Tracker key is shown on Sentry issues."""
        wanted = self.settings.sentry.app_installation
        if not wanted:
            return
        found = probe(self.sentry.list_installations)
        if not found.ok:
            self.add("sentry: app installation", "warn", f"could not list installations: {found.why()}",
                     "the token needs org:read (or org:integrations) to check it")
            return
        match = next((i for i in found.value if i.get("uuid") == wanted), None)
        if match is None:
            known = [f"{i['uuid']} ({(i.get('app') or {}).get('slug')})" for i in found.value]
            self.add("sentry: app installation", "fail", f"no installation {wanted!r} in the organization",
                     f"set sentry.app_installation to the installation uuid; installed: {listed(known)}")
        else:
            self.add("sentry: app installation", "pass",
                     f"{wanted} ({(match.get('app') or {}).get('slug')}) is installed")

    def _teams(self) -> list[dict[str, Any]]:
        """Every team with its projects (`org:read`): where project slugs are confirmed."""
        path = f"/api/0/organizations/{quote(self.settings.sentry.organization, safe='')}/teams/"
        found: list[dict[str, Any]] = []
        cursor: str | None = None
        for _ in range(100):
            params = [("detailed", "1"), ("per_page", "100")] + ([("cursor", cursor)] if cursor else [])
            response = self.sentry.http.request("GET", path, safe=True, params=params)
            data = self.sentry.http.json(response)
            if not isinstance(data, list):
                raise self.sentry.http.bad(response, "expected a list of teams")
            found.extend(t for t in data if isinstance(t, dict))
            nxt = next_cursor(response)
            if not nxt or nxt == cursor:
                break
            cursor = nxt
        return found

    def check_projects(self, teams: Sequence[Mapping[str, Any]]) -> None:
        for team in teams:
            for project in team.get("projects") or []:
                if isinstance(project, Mapping) and project.get("slug"):
                    self.project_ids[str(project["slug"])] = str(project.get("id"))
        wanted = list(self.settings.sentry.projects)
        if not wanted:
            self.add("sentry: projects", "pass",
                     f"no sentry.projects configured: every project ({len(self.project_ids)} seen)")
        else:
            missing = [p for p in wanted if p not in self.project_ids]
            if missing:
                self.add("sentry: projects", "fail", f"not found: {listed(missing)}",
                         "check sentry.projects (slugs); a project that belongs to no team is not listed")
            else:
                self.add("sentry: projects", "pass", f"{listed(wanted)} found")
        self.check_releases()

    def check_releases(self) -> None:
        """`resolvedInNextRelease` needs a release in the project; without one Sentry answers 400
        and the bridge resolves plainly instead."""
        table = self.settings.mapping.status
        if "resolvedInNextRelease" not in table.to_sentry.values() or \
                self.settings.sync.fields.status not in ("both", "to_sentry"):
            return
        slugs = [p for p in (self.settings.sentry.projects or sorted(self.project_ids)) if p in self.project_ids]
        path = f"/api/0/organizations/{quote(self.settings.sentry.organization, safe='')}/releases/"
        without: list[str] = []
        unknown: list[str] = []
        for slug in slugs:
            params = [("project", self.project_ids[slug]), ("per_page", "1")]
            answer = probe(partial(self._get_json, path, params))
            if not answer.ok or not isinstance(answer.value, list):
                unknown.append(f"{slug} ({answer.error.status if answer.error else 'bad answer'})")
            elif not answer.value:
                without.append(slug)
        rows = [k for k, v in table.to_sentry.items() if v == "resolvedInNextRelease"]
        if without:
            self.add("sentry: releases", "warn", f"no releases in {listed(without)}",
                     f"to_sentry maps {listed(rows)} to resolvedInNextRelease, which Sentry refuses without "
                     "a release: those issues are resolved plainly instead; create releases or map to resolved")
        elif unknown:
            self.add("sentry: releases", "warn", f"could not list releases of {listed(unknown)}",
                     "give the token project:read to let doctor check; without a release, resolvedInNextRelease "
                     "falls back to a plain resolve")
        elif slugs:
            self.add("sentry: releases", "pass", f"{listed(slugs)} have releases (resolvedInNextRelease works)")

    # -- Tracker --------------------------------------------------------------------------------
    def check_tracker(self) -> bool:
        url = self.settings.tracker.url
        me = probe(self.tracker.myself)
        if not me.answered:
            self.add("tracker: API reachable", "fail", f"{url} did not answer: {me.why()}",
                     "check tracker.url, DNS, proxies and the network path")
            return False
        self.add("tracker: API reachable", "pass", f"{url} answered")
        header = "cloud_org_id" if self.settings.tracker.cloud_org_id else "org_id"
        if me.refused(401):
            self.add("tracker: token and organisation", "fail", f"refused (401): {me.why()}",
                     f"check tracker.token and tracker.{header}; an IAM token needs auth_scheme = \"Bearer\" "
                     "and cloud_org_id")
            return False
        if not me.ok:
            self.add("tracker: token and organisation", "fail", me.why(), "check the token's permissions")
            return False
        self.myself = me.value
        who = me.value.get("login") or me.value.get("uid")
        self.add("tracker: token and organisation", "pass", f"accepted as {who} ({header} sent)")
        queue_key = self.settings.tracker.queue
        queue = probe(partial(self.tracker.get_queue, queue_key, expand="all"))
        if isinstance(queue.error, NotFoundError):
            self.add("tracker: queue", "fail", f"queue {queue_key!r} not found",
                     "check tracker.queue (the key, e.g. OPS) and that the token's user may see the queue")
            return False
        if not queue.ok:
            self.add("tracker: queue", "fail", queue.why(), "check that the token's user may see the queue")
            return False
        self.add("tracker: queue", "pass", f"{queue_key} ({queue.value.get('name') or queue_key}) found")
        self.check_route_queues(queue_key)
        users = probe(self.tracker.list_users)
        self.tracker_users = users.value if users.ok else None
        if not users.ok:
            self.add("tracker: users", "fail", users.why(), "the bridge reads the user list every cycle")
        statuses = probe(self.tracker.statuses)
        resolutions = probe(self.tracker.resolutions)
        if not statuses.ok or not resolutions.ok:
            self.add("tracker: statuses", "fail", (statuses.why() or resolutions.why()),
                     "retry; reference data should always be readable")
            return self.tracker_users is not None
        status_types = {str(s["key"]): str(s.get("type") or "") for s in statuses.value}
        self.check_statuses(status_types)
        graphs, samples, errors = self.learn_workflow(queue_key, list(status_types), workflows_by_type(queue.value))
        self.queue_statuses = {s for g in graphs.values() for s in g} | \
            {t.to for g in graphs.values() for moves in g.values() for t in moves}
        self.check_workflow(graphs, samples, errors, status_types)
        self.check_definitions([queue_key, *self.route_queues(queue_key)])
        allowed = allowed_resolutions(queue.value)
        self.check_resolutions(status_types, [str(r["key"]) for r in resolutions.value], allowed)
        self.check_catalogs()
        return self.tracker_users is not None

    def check_catalogs(self) -> None:
        """Every Tracker value a synced field's tables name exists in the field's catalog."""
        for spec in FIELDS:
            if spec.tracker_catalog is None or self.settings.sync.fields.model_dump().get(spec.name, "off") == "off":
                continue
            name = f"tracker: {spec.tracker_catalog}"
            found = probe(partial(self.tracker.catalog, spec.tracker_catalog))
            if not found.ok:
                self.add(name, "fail", found.why(), "retry; reference data should always be readable")
                continue
            known = sorted(str(item["key"]) for item in found.value)
            named = spec.tracker_values(self.settings.mapping)
            unknown = [where for where, value in named if value not in known]
            if unknown:
                self.add(name, "fail", f"{len(unknown)} value(s) of [mapping.{spec.name}] not in "
                                       f"/v2/{spec.tracker_catalog}", f"use the keys Tracker has: {listed(known)}",
                         [f"{where}: no such {spec.tracker_word} in Tracker" for where in unknown]
                         + [f"Tracker has: {', '.join(known)}"])
            else:
                self.add(name, "pass", f"all {len({v for _, v in named})} {spec.tracker_word} key(s) named in "
                                       f"[mapping.{spec.name}] exist")

    def route_queues(self, main_queue: str) -> list[str]:
        return sorted(set(self.settings.create.routes.values()) - {main_queue}) if self.settings.create.enabled else []

    def check_definitions(self, queues: Sequence[str]) -> None:
        """The queues' workflows as their admins defined them: every status the mapping names is
        one of them, and every status can reach each target.  This is what the bridge checks
        before any step; here it is shown for all statuses at once."""
        fields = self.settings.sync.fields.status
        if fields == "off":
            return
        found: dict[str, dict[str, Definition]] = {}
        for queue in queues:
            read = probe(partial(read_definitions, self.tracker, queue))
            if not read.ok:
                self.add(f"tracker: {queue} workflow definition", "warn", f"cannot read it: {read.why()}",
                         "the bridge then checks mapping targets against the organisation's statuses only and "
                         "finds paths step by step; let the robot read the queue's settings to have every target "
                         "checked before a step")
                continue
            found[queue] = read.value
        if found:
            level, detail, notes = definition_verdict(self.settings.mapping.status, found,
                                                      to_tracker=fields in ("both", "to_tracker"),
                                                      to_sentry=fields in ("both", "to_sentry"),
                                                      complete=len(found) == len(queues))
            advice = {"fail": "fix the [mapping.status] rows named below: use statuses the queue's workflow has",
                      "warn": "issues in the statuses named below cannot be moved to that target: add transitions "
                              "in the queue's workflow, or accept that those moves fail (retried with backoff)",
                      "pass": ""}[level]
            self.add("tracker: workflow definition", level, detail, advice, notes)

    def check_route_queues(self, main_queue: str) -> None:
        """Queues that `[create.routes]` sends new issues to must exist too."""
        others = self.route_queues(main_queue)
        missing = [q for q in others if isinstance(probe(partial(self.tracker.get_queue, q)).error, NotFoundError)]
        if missing:
            self.add("tracker: create.routes queues", "fail", f"not found: {listed(missing)}",
                     "fix [create.routes]: each value is a queue key")
        elif others:
            self.add("tracker: create.routes queues", "pass", f"{listed(others)} found")

    def check_statuses(self, status_types: Mapping[str, str]) -> None:
        table = self.settings.mapping.status
        unknown_targets = sorted({t.status for t in table.to_tracker.values()} - set(status_types))
        unknown_keys = sorted(set(table.to_sentry) - set(status_types))
        if unknown_targets or unknown_keys:
            rows = [f"to_tracker.{s} = {t.status}" for s, t in sorted(table.to_tracker.items())
                    if t.status in unknown_targets] + [f"to_sentry.{k}" for k in unknown_keys]
            has = f"(it has {listed(sorted(status_types), 20)})"
            notes = [f'mapping.status.to_tracker.{s} = "{t.status}": Tracker has no status "{t.status}" {has}'
                     for s, t in sorted(table.to_tracker.items()) if t.status in unknown_targets]
            notes += [f'mapping.status.to_sentry.{k}: Tracker has no status "{k}" {has}' for k in unknown_keys]
            self.add("tracker: statuses", "fail",
                     f"unknown status(es) {listed(sorted({*unknown_targets, *unknown_keys}))} in {listed(rows)}",
                     "use status keys from GET /v2/statuses; a status no issue can reach is never written "
                     "(to_tracker) or never read (to_sentry)", notes)
        else:
            named = {t.status for t in table.to_tracker.values()} | set(table.to_sentry)
            self.add("tracker: statuses", "pass", f"all {len(named)} statuses named in the mapping exist")

    def learn_workflow(
        self, queue: str, status_keys: Sequence[str], workflow_of: Mapping[str, str]
    ) -> tuple[dict[str, dict[str, tuple[Transition, ...]]], dict[tuple[str, str], str], list[str]]:
        """(graph per workflow, sample issue per (workflow, status), errors): the transitions the
        API lists for one issue per workflow in each status the queue's issues sit in.  Issue
        types the queue says share a workflow are learned together; without that knowledge each
        type counts as its own workflow."""
        graphs: dict[str, dict[str, tuple[Transition, ...]]] = {}
        samples: dict[tuple[str, str], str] = {}
        errors: list[str] = []
        for status in status_keys:
            found = probe(partial(self._sample, queue, status))
            if not found.ok:
                errors.append(f"search for {status}: {found.why()}")
                continue
            for issue in found.value:
                itype = str((issue.get("type") or {}).get("key") or "")
                flow = workflow_of.get(itype, itype)
                actual = str((issue.get("status") or {}).get("key") or status)
                if (flow, actual) in samples:
                    continue
                moves = probe(partial(self.tracker.transitions, str(issue["key"])))
                if not moves.ok:
                    errors.append(f"transitions of {issue['key']}: {moves.why()}")
                    continue
                samples[(flow, actual)] = str(issue["key"])
                graphs.setdefault(flow, {})[actual] = parse_transitions(moves.value)
        return graphs, samples, errors

    def _sample(self, queue: str, status: str) -> list[dict[str, Any]]:
        """The first page of the queue's issues in `status` (one request; the rest is not read)."""
        found = self.tracker.iter_search(filter={"queue": queue, "status": status}, per_page=SAMPLE_PER_STATUS)
        return list(itertools.islice(found, SAMPLE_PER_STATUS))

    def _get_json(self, path: str, params: list[tuple[str, str]]) -> Any:
        return self.sentry.http.json(self.sentry.http.request("GET", path, safe=True, params=params))

    def check_workflow(
        self,
        graphs: Mapping[str, Mapping[str, tuple[Transition, ...]]],
        samples: Mapping[tuple[str, str], str],
        errors: Sequence[str],
        status_types: Mapping[str, str],
    ) -> None:
        table = self.settings.mapping.status
        if self.settings.sync.fields.status not in ("both", "to_tracker"):
            return
        queue = self.settings.tracker.queue
        if not graphs:
            self.add("tracker: workflow", "warn", f"no issue in {queue} to learn the workflow from"
                     + (f" ({errors[0]})" if errors else ""),
                     "doctor learns transitions from existing issues (read-only); create one issue in the queue "
                     "and run doctor again, or check the workflow by hand", errors[1:])
            return
        several = len(graphs) > 1
        learned = [f"{'[' + flow + '] ' if several else ''}{key} ({status})"
                   for (flow, status), key in sorted(samples.items())]
        unexplored = sorted({t.to for g in graphs.values() for moves in g.values() for t in moves if t.to not in g})
        self.add("tracker: workflow", "warn" if errors else "pass",
                 f"transitions learned from {len(samples)} issue(s) in {queue}"
                 + (f"; {len(errors)} read(s) failed" if errors else ""),
                 "retry doctor" if errors else "",
                 [f"learned from {listed(learned)}"]
                 + ([f"unexplored (no issue sits there): {listed(unexplored)}"] if unexplored else [])
                 + list(errors[:SHOWN]))
        for target in sorted({t.status for t in table.to_tracker.values()} & set(status_types)):
            rows = [s for s, t in sorted(table.to_tracker.items()) if t.status == target]
            self.check_target(target, rows, graphs, status_types)

    def check_target(
        self,
        target: str,
        rows: Sequence[str],
        graphs: Mapping[str, Mapping[str, tuple[Transition, ...]]],
        status_types: Mapping[str, str],
    ) -> None:
        """Can the bridge move an issue to `target` from every status the queue's issues sit in?"""
        queue = self.settings.tracker.queue
        levels: list[Level] = []
        notes: list[str] = []
        details: list[str] = []
        unproven = False
        for flow, graph in sorted(graphs.items()):
            label = f"[{flow}] " if len(graphs) > 1 else ""
            result = reach(graph, target)
            level = reach_level(result, explored=True)
            in_queue = target in graph or any(t.to == target for moves in graph.values() for t in moves)
            if not in_queue and not result.unexplored:
                level = "fail"
            levels.append(level)
            for source, path in result.paths.items():
                notes.append(f"{label}from {source}: {format_path(source, path)}")
                early = done_steps_without_resolution(path, status_types)
                if early:
                    levels.append("warn")
                    notes.append(f"{label}  passes done status {', '.join(early)} before {target}: Tracker "
                                 "wants a resolution there, which the bridge gives only at the end")
            for source in result.stuck:
                notes.append(f"{label}from {source}: no known path")
            if result.stuck and result.unexplored:
                unproven = True
                notes.append(f"{label}unexplored (no issue sits there): {listed(result.unexplored)}")
            explored = len(result.paths) + len(result.stuck)
            details.append(f"{label}reachable from {len(result.paths)} of {explored} explored statuses"
                           if in_queue or result.unexplored else f"{label}not in the workflow")
        level = worst(levels)
        advice = ""
        if level == "fail":
            advice = (f"{target} is not reachable in {queue}'s workflow: map {listed(rows)} to a status the "
                      "workflow reaches, or add the transitions in the queue settings")
        elif level == "warn" and unproven:
            advice = ("no path through the statuses doctor could see; the unexplored ones may lead there (the "
                      "bridge explores them as it moves an issue); put an issue in them and run doctor again to "
                      "be sure")
        elif level == "warn":
            advice = ("issues in the statuses without a path fail to move (retried with backoff); add "
                      "transitions, or accept it")
        self.add(f"tracker: workflow -> {target}", level, "; ".join(details) + f" (for {listed(rows)})",
                 advice, notes)

    def check_resolutions(
        self, status_types: Mapping[str, str], resolutions: Sequence[str], allowed: Mapping[str, frozenset[str]]
    ) -> None:
        if self.settings.sync.fields.status not in ("both", "to_tracker"):
            return
        problems = target_resolutions(self.settings.mapping.status, status_types, resolutions, allowed)
        if not problems:
            self.add("tracker: resolutions", "pass", "every done status in to_tracker has a known resolution")
            return
        level = worst(level for level, _ in problems)
        self.add("tracker: resolutions", level, f"{len(problems)} problem(s) in [mapping.status.to_tracker]",
                 "a row to a done status needs { status = \"...\", resolution = \"...\" } with a resolution the "
                 f"queue allows; known: {listed(resolutions, 20)}", [text for _, text in problems])

    # -- both -----------------------------------------------------------------------------------
    def check_write_access(self, sentry_ok: bool, tracker_ok: bool) -> None:
        if self.myself is not None and self.myself.get("hasLicense") is False:
            self.add("write access", "fail", f"the Tracker user {self.myself.get('login')} has no licence "
                     "(read-only)", "give the bridge's Tracker user a licence")
            return
        if not (sentry_ok or tracker_ok):
            return
        self.add("write access", "warn", "Sentry: not checked: event:write can only be proven by a write, and "
                 "doctor never writes (Tracker's rights: see 'probe: Tracker robot may edit')",
                 "the first sync that writes tells: 'permission denied' in the output and the journal, exit 3")

    def check_round_trip(self, flips: Sequence[str], tracker_flips: Sequence[str]) -> None:
        notes = [f"comes back different: {f}" for f in flips]
        notes += [f"Tracker status back from Sentry: {f} (fine: many-to-one)" for f in tracker_flips]
        if flips:
            self.add("mapping: round trip", "warn", f"{len(flips)} Sentry state(s) flip after a trip to Tracker and "
                     "back", "when the ticket is reopened and closed again the Sentry issue comes back in the "
                     "other state; map these states to a status of their own if that matters", notes)
        else:
            self.add("mapping: round trip", "pass", "every Sentry state comes back as itself", "", notes)

    def check_coverage(self, table: StatusMapping) -> None:
        direction = self.settings.sync.fields.status
        notes: list[str] = []
        if direction in ("both", "to_tracker"):
            notes += [f"Sentry {s} has no to_tracker row: reported, not synced" for s in uncovered_states(table)]
        if direction in ("both", "to_sentry"):
            targets = sorted({t.status for t in table.to_tracker.values()} | self.queue_statuses)
            notes += [f"Tracker {s} has no to_sentry row: moves into it are reported, not synced"
                      for s in targets if s not in table.to_sentry]
        if notes:
            self.add("mapping: coverage", "warn", f"{len(notes)} state(s) without a row",
                     "add rows to [mapping.status.to_tracker] / [mapping.status.to_sentry]", notes)
        else:
            self.add("mapping: coverage", "pass", "every Sentry state and every known queue status has a row")

    def check_users(self) -> None:
        if self.members is None or self.tracker_users is None:
            return
        own = [str(self.myself.get("login"))] if self.myself and self.myself.get("login") else []
        cov = self.coverage = user_coverage(self.members, self.tracker_users, self.settings.mapping.users,
                                            exclude_logins=own)
        total = len(cov.matched) + len(cov.sentry_only)
        pending = [f"pending invites (nobody to assign yet): {listed(cov.pending)}"] if cov.pending else []
        if cov.sentry_only:
            self.add("users: Sentry -> Tracker", "warn",
                     f"{len(cov.sentry_only)} of {total} Sentry members have no Tracker user: "
                     f"{listed(cov.sentry_only)}",
                     "add [mapping.users] \"e-mail\" = \"login\" rows; until then their assignments and bookmarks "
                     "are reported, not synced", pending)
        else:
            self.add("users: Sentry -> Tracker", "pass", f"all {total} Sentry members have a Tracker user", "",
                     pending)
        to_sentry = self.settings.sync.fields.assignee in ("both", "to_sentry")
        if cov.tracker_only:
            self.add("users: Tracker -> Sentry", "warn" if to_sentry else "pass",
                     f"{len(cov.tracker_only)} Tracker users have no Sentry member: {listed(cov.tracker_only)}",
                     "assigning a linked ticket to them is reported, not synced" if to_sentry else "")
        else:
            self.add("users: Tracker -> Sentry", "pass", "every Tracker user has a Sentry member")
        if cov.bad_override_logins or cov.unknown_override_emails:
            notes = [f"no Tracker user: {row}" for row in cov.bad_override_logins]
            notes += [f"no Sentry member: {email}" for email in cov.unknown_override_emails]
            self.add("users: [mapping.users]", "fail" if cov.bad_override_logins else "warn",
                     f"{len(notes)} row(s) name nobody", "fix or remove those rows", notes)
        elif self.settings.mapping.users:
            self.add("users: [mapping.users]", "pass", f"all {len(self.settings.mapping.users)} rows name real people")
        if self.settings.sync.fields.followers != "to_tracker":
            return
        if cov.sso_only:
            self.add("users: bookmarks visible", "warn",
                     f"{len(cov.sso_only)} matched people sign in only through SSO: {listed(cov.sso_only)}",
                     "Sentry's bookmarks: search finds nothing for them, so their bookmarks never become "
                     "followers; a password on their Sentry account makes them visible")
        elif cov.sso_unknown:
            self.add("users: bookmarks visible", "warn", "this Sentry does not say who signs in only through SSO",
                     "bookmarks of SSO-only users cannot be seen (a bookmarks: search finds nothing for them)")
        else:
            self.add("users: bookmarks visible", "pass",
                     f"bookmarks of all {len(cov.matched)} matched people can be searched")


def workflows_by_type(queue: Mapping[str, Any]) -> dict[str, str]:
    """Issue type -> workflow id, from the queue's `workflows` (`{id: [types]}`) or
    `issueTypesConfig[].workflow`; empty when the server did not say."""
    found: dict[str, str] = {}
    flows = queue.get("workflows")
    if isinstance(flows, Mapping):
        for flow, types in flows.items():
            for ref in types if isinstance(types, list) else []:
                if isinstance(ref, Mapping) and ref.get("key"):
                    found[str(ref["key"])] = str(flow)
    for item in queue.get("issueTypesConfig") or []:
        if isinstance(item, Mapping):
            itype = (item.get("issueType") or {}).get("key")
            flow = (item.get("workflow") or {}).get("id")
            if itype and flow:
                found.setdefault(str(itype), str(flow))
    return found


def allowed_resolutions(queue: Mapping[str, Any]) -> dict[str, frozenset[str]]:
    """Issue type -> resolutions the queue allows (from `expand=issueTypesConfig`); empty when
    the server did not say."""
    allowed: dict[str, frozenset[str]] = {}
    for item in queue.get("issueTypesConfig") or []:
        if not isinstance(item, Mapping):
            continue
        itype = str((item.get("issueType") or {}).get("key") or "")
        keys = frozenset(str(r.get("key")) for r in item.get("resolutions") or [] if isinstance(r, Mapping))
        if itype and keys:
            allowed[itype] = keys
    return allowed


def run_doctor(settings: Settings, sentry: SentryClient, tracker: TrackerClient) -> DoctorReport:
    """Every check, in order.  Never raises for a remote's trouble: that is a check's verdict."""
    return Doctor(settings, sentry, tracker).run()
