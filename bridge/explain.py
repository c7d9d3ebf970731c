"""`explain SENTRY_ID|TRACKER_KEY`: why a linked pair looks the way it does, and what the next
cycle would do with it.

It reads both issues now and what the store knows of the link (the same `Store.link_states` the
engine plans from: baselines, owned followers, open conflicts, writes still pending) and asks the
same pure planner (`plan_for`) what to do.  Each field then gets a decision and the planner's own
reasons, including why nothing happens (`Hold`); nothing here re-derives a reason.  The mapping
rows and user matches involved, the link's open conflicts, its failure record and recent journal
entries come with it.

Read-only by construction: the state file is opened read-only (SQLite refuses writes), no lock is
taken (it may run beside the service), and only GET requests and searches go to the servers.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from bridge.clients.sentry import SentryClient
from bridge.clients.tracker import TrackerClient
from bridge.config import Settings
from bridge.core.actions import (
    Action,
    Adopt,
    Hold,
    Reconcile,
    RecordConflict,
    ReportUnmapped,
    describe,
    is_write,
    is_write_kind,
)
from bridge.core.fields import FIELDS, FieldSpec, snapshot, spec_of
from bridge.core.linkrun import Link
from bridge.core.mapping import UserMap, build_user_map, outside_search_window
from bridge.core.plan import LinkState, Policy, bookmarks_seen, plan_for
from bridge.core.values import Field, Pair, shown, text
from bridge.errors import RemoteError
from bridge.history import TrackerHistory
from bridge.store import Store

JOURNAL_SHOWN = 10


# -- the pure part: one field's decision and why -----------------------------------------------


@dataclass(frozen=True)
class FieldDecision:
    field: Field
    direction: str
    baseline: Pair | None
    baseline_at: str | None
    now: Pair
    in_step: bool | None
    rows: tuple[str, ...]
    actions: tuple[dict[str, Any], ...]
    decision: str
    why: str

    def to_json(self) -> dict[str, Any]:
        base = self.baseline
        return {
            "field": self.field,
            "direction": self.direction,
            "baseline": None if base is None else {"sentry": shown(base.sentry), "tracker": shown(base.tracker),
                                                   "updated_at": self.baseline_at},
            "now": {"sentry": shown(self.now.sentry), "tracker": shown(self.now.tracker)},
            "in_step": self.in_step,
            "sentry_changed": None if base is None else self.now.sentry != base.sentry,
            "tracker_changed": None if base is None else self.now.tracker != base.tracker,
            "rows": list(self.rows),
            "decision": self.decision,
            "why": self.why,
            "actions": list(self.actions),
        }


def mapping_rows(spec: FieldSpec, pair: Pair, state: LinkState, policy: Policy, users: UserMap) -> list[str]:
    """The mapping rows (or user matches) that apply to this pair, or the lack of them."""
    rows = spec.rows(pair, policy.lookup(users))
    if spec.set_valued:
        rows.append(f"followers the bridge added (and may remove): {text(state.owned)}")
    return rows


def decide_field(spec: FieldSpec, now: Pair, actions: list[Action], policy: Policy, users: UserMap,
                 ) -> tuple[str, str, bool | None]:
    """(decision, why, in step) for one field: the decision names the kinds of actions the
    planner returned for it, the why is their reasons (never worked out again here)."""
    in_step = None if spec.set_valued else spec.in_step(now, policy.lookup(users))
    kinds = {type(a) for a in actions}
    writes = [describe(a) for a in actions if is_write(a)]
    if writes:
        decision = "write " + " and ".join(sorted({str(d.get("side")) for d in writes}))
    elif RecordConflict in kinds:
        decision = "conflict: recorded, nothing written"
    elif ReportUnmapped in kinds:
        decision = "not synced: no counterpart"
    elif Adopt in kinds or Reconcile in kinds:
        decision = "adopt: baseline moves, no write"
    else:
        decision = "nothing"
    return decision, "; ".join(a.reason for a in actions), in_step


# -- the shell: reading both sides -------------------------------------------------------------


@dataclass
class Explanation:
    link: Link
    sentry: dict[str, Any]
    tracker: dict[str, Any]
    policy: dict[str, Any]
    fields: list[FieldDecision] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    baselines: dict[str, Any] = field(default_factory=dict)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    failure: dict[str, Any] | None = None
    journal: list[dict[str, Any]] = field(default_factory=list)
    held_back: bool = False  # quarantined for flapping: cycles skip it until `conflicts resolve`

    @property
    def planned_writes(self) -> int:
        return sum(1 for f in self.fields for a in f.actions if is_write_kind(a["action"]))

    def to_json(self) -> dict[str, Any]:
        return {
            "link": {"sentry_id": self.link.sentry_id, "tracker_key": self.link.tracker_key,
                     "origin": self.link.origin, "created_at": self.link.created_at},
            "sentry": self.sentry,
            "tracker": self.tracker,
            "policy": self.policy,
            "errors": self.errors,
            "baselines": self.baselines,
            "fields": [f.to_json() for f in self.fields],
            "planned_writes": 0 if self.held_back else self.planned_writes,
            "held_back": self.held_back,
            "conflicts": self.conflicts,
            "failure": self.failure,
            "journal": self.journal,
        }


class NotLinkedError(LookupError):
    """The reference names no link in the state file."""


def _search_value(value: str) -> str:
    if re.fullmatch(r"[^\s\"\[\]()]+", value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def bookmarks_of(
    sentry: SentryClient, issue: Mapping[str, Any], users: UserMap, now: datetime
) -> tuple[frozenset[str] | None, str]:
    """(e-mails of mapped people who bookmarked this issue, or None with the reason it is
    unknown).  One `bookmarks:<email> issue.id:<id>` search per mapped person: the same search
    the engine runs, narrowed to this issue."""
    if outside_search_window(issue, now):
        return None, "the issue is outside Sentry's 90-day search window"
    found: set[str] = set()
    issue_id = str(issue["id"])
    for person in users.mapped_people():
        query = f"bookmarks:{_search_value(person.email)} issue.id:{issue_id}"
        try:
            if any(str(i.get("id")) == issue_id for i in sentry.iter_issues(query, per_page=1)):
                found.add(person.email)
        except RemoteError as exc:
            return None, f"a bookmarks search failed: {exc.describe()}"
    return frozenset(found), ""


def sentry_summary(issue: Mapping[str, Any], marks: frozenset[str] | None, why: str,
                   policy: Policy) -> dict[str, Any]:
    """The Sentry issue as `explain` shows it: each field that flows, under its Sentry word."""
    summary: dict[str, Any] = {"id": str(issue.get("id")), "short_id": issue.get("shortId"),
                               "title": issue.get("title")}
    for spec in FIELDS:
        if spec.set_valued:
            summary[spec.sentry_word] = shown(marks) if marks is not None else None
            summary[f"{spec.sentry_word}_unknown"] = why or None
        else:
            summary[spec.sentry_word] = spec.read_sentry(issue)
    return {**summary, "last_seen": issue.get("lastSeen"), "permalink": issue.get("permalink")}


def tracker_summary(issue: Mapping[str, Any], users: UserMap, policy: Policy) -> dict[str, Any]:
    """The Tracker issue as `explain` shows it: each field that flows, under its Tracker word."""
    summary: dict[str, Any] = {"key": issue.get("key"), "summary": issue.get("summary")}
    for spec in FIELDS:
        summary[spec.tracker_word] = shown(spec.read_tracker(issue, users))
    return {**summary, "resolution": (issue.get("resolution") or {}).get("key"), "version": issue.get("version"),
            "updated_at": issue.get("updatedAt")}


def explain_link(
    settings: Settings,
    store: Store,
    sentry: SentryClient,
    tracker: TrackerClient,
    ref: str,
    *,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
) -> Explanation:
    """Everything about one link.  Raises NotLinkedError for an unknown reference and lets
    AuthError / UnreachableError through (nothing can be explained without the servers)."""
    link = store.find_link(ref) or (store.find_link(ref.upper()) if not ref.isdigit() else None)
    if link is None:
        raise NotLinkedError(ref)
    policy = Policy.from_settings(settings)
    result = Explanation(
        link=link,
        sentry={},
        tracker={},
        policy={"directions": dict(policy.directions), "conflict": policy.conflict,
                "link_source": policy.link_source},
    )
    stored = store.link_baselines(link.sentry_id)
    result.baselines = {name: {"sentry": shown(pair.sentry), "tracker": shown(pair.tracker), "updated_at": at}
                        for name, (pair, at) in stored.items()}
    result.conflicts = store.conflicts_of(link.sentry_id, include_resolved=True)[:5]
    result.failure = store.failure_of(link.sentry_id)
    result.held_back = link.sentry_id in store.held()
    result.journal = store.journal(link.sentry_id, limit=JOURNAL_SHOWN)
    state = store.link_states([link.sentry_id])[link.sentry_id]

    users = build_user_map(sentry.list_members(), tracker.list_users(), settings.mapping.users)
    s_issue, t_issue = _both_issues(result, sentry, tracker)
    if s_issue is None or t_issue is None:
        return result
    marks: frozenset[str] | None = None
    why = "no field that flows reads bookmarks (sync.fields)"
    if policy.needs_bookmarks:
        marks, why = bookmarks_of(sentry, s_issue, users, clock())
    result.sentry = sentry_summary(s_issue, marks, why, policy)
    result.tracker = tracker_summary(t_issue, users, policy)
    if state.pending:  # as the engine does: a pending write's issue history may decide it
        state = TrackerHistory(tracker, settings.sync.overlap_seconds).with_history(state, t_issue, users)
    now = snapshot(s_issue, t_issue, bookmarks_seen(marks, state, users), users)
    # The same planner with the same inputs as the engine's next cycle.
    actions = plan_for(state, now, users, policy)
    for spec in FIELDS:
        name = spec.name
        decision = _field_decision(spec, [a for a in actions if a.field == name], now.get(name), state, policy,
                                   users)
        if spec.set_valued and marks is None and why and policy.allows(name, "tracker"):
            decision = replace(decision, why=f"{decision.why} ({why})")  # what the read found
        result.fields.append(replace(decision, baseline_at=stored[name][1] if name in stored else None))
    return result


def _both_issues(result: Explanation, sentry: SentryClient, tracker: TrackerClient,
                 ) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Both issues of the link now; what could not be read is said in `result.errors`."""
    s_issue: dict[str, Any] | None = None
    t_issue: dict[str, Any] | None = None
    try:
        s_issue = sentry.get_issue(result.link.sentry_id)
    except RemoteError as exc:
        result.errors.append(exc.describe())
    try:
        t_issue = tracker.get_issue(result.link.tracker_key)
    except RemoteError as exc:
        result.errors.append(exc.describe())
    return s_issue, t_issue


def _field_decision(spec: FieldSpec, mine: list[Action], pair: Pair, state: LinkState, policy: Policy,
                    users: UserMap) -> FieldDecision:
    name = spec.name
    rows = mapping_rows(spec, pair, state, policy, users)
    decision, reason, in_step = decide_field(spec, pair, mine, policy, users)
    return FieldDecision(
        field=name,
        direction=policy.directions.get(name, "off"),
        baseline=state.baseline.get(name),
        baseline_at=None,
        now=pair,
        in_step=in_step,
        rows=tuple(rows),
        actions=tuple(describe(a) for a in mine if not isinstance(a, Hold)),
        decision=decision,
        why=reason,
    )


# -- text --------------------------------------------------------------------------------------


def explanation_lines(x: Explanation) -> list[str]:
    """The plain-text explanation (also what a terminal shows, with headings in bold)."""
    link = x.link
    d = x.policy["directions"]
    lines = [
        f"link {link.sentry_id} <-> {link.tracker_key} ({link.origin}, since {link.created_at})",
        f"policy: {', '.join(f'{spec.name} {d.get(spec.name)}' for spec in FIELDS)}; "
        f"both changed -> sync.conflict = {x.policy['conflict']}; new links: {x.policy['link_source']} is the source",
    ]
    for error in x.errors:
        lines.append(f"cannot read: {error}")
    if x.sentry:
        s = x.sentry
        lines += ["", f"sentry  {s['id']}  {s.get('short_id') or ''}  {s.get('title') or ''}".rstrip(),
                  "  " + "   ".join(_shown_value(s, spec.sentry_word, spec.set_valued) for spec in FIELDS)]
    if x.tracker:
        t = x.tracker
        resolution = f"/{t['resolution']}" if t.get("resolution") else ""  # a workflow field closes with one
        values = [_shown_value(t, spec.tracker_word, spec.set_valued) + (resolution if spec.walks else "")
                  for spec in FIELDS]
        lines += [f"tracker {t['key']}  {t.get('summary') or ''}".rstrip(),
                  "  " + "   ".join(values) + f"   version {t['version']}"]
    for f in x.fields:
        lines.append("")
        lines.append(f"{f.field} [{f.direction}]")
        if f.baseline is None:
            first = " (no bookmark seen)" if spec_of(f.field).set_valued else " (new link)"
            lines.append("  baseline  none yet" + first)
        else:
            lines.append(f"  baseline  sentry={text(f.baseline.sentry)}  tracker={text(f.baseline.tracker)}"
                         f"   ({f.baseline_at})")
        moved = []
        if f.baseline is not None:
            moved = [side for side, a, b in (("sentry", f.now.sentry, f.baseline.sentry),
                                             ("tracker", f.now.tracker, f.baseline.tracker)) if a != b]
        step = "" if f.in_step is None else ("   in step" if f.in_step else "   not in step")
        change = f"   changed: {', '.join(moved)}" if moved else ""
        lines.append(f"  now       sentry={text(f.now.sentry)}  tracker={text(f.now.tracker)}{step}{change}")
        for row in f.rows:
            lines.append(f"  mapping   {row}")
        lines.append(f"  decision  {f.decision}: {f.why}")
        for a in f.actions:
            value = a.get("value")
            target = f" {a['side']} = {value}" if "side" in a else ""
            lines.append(f"    -> {a['action']}{target}")
    if x.held_back:
        lines += ["", "next cycle: skips this link: it is held back for flapping until an operator runs "
                      "`conflicts resolve` (the plan above is what would happen then)"]
    elif x.fields:
        lines += ["", f"next cycle: {x.planned_writes} write(s) for this link"]
    lines.append("")
    open_conflicts = [c for c in x.conflicts if not c.get("resolved_at")]
    lines.append(f"conflicts: {len(open_conflicts)} open" if x.conflicts else "conflicts: none")
    for c in x.conflicts:
        state = f"resolved {c['resolved_at']} ({c['resolution']})" if c.get("resolved_at") else "OPEN"
        lines.append(f"  #{c['id']} {c['field']}: sentry={text(c['sentry_value'])} "
                     f"tracker={text(c['tracker_value'])}  detected {c['detected_at']}  {state}")
    if x.failure:
        f2 = x.failure
        lines.append(f"failure: {f2['attempts']} attempt(s), next try {f2['next_try']}: {f2['error']}")
    else:
        lines.append("failure: none")
    lines.append("journal (newest first):" if x.journal else "journal: empty")
    for j in x.journal:
        lines.append(f"  {j['at']}  {j['field']:<9} {j['side']:<7} {j['action']} {j['value'] or ''} -> "
                     f"{j['outcome']}" + (f"  ({j['detail']})" if j.get("detail") else ""))
    return lines


def _shown_value(summary: Mapping[str, Any], word: str, set_valued: bool) -> str:
    value = summary.get(word)
    if set_valued and value is None and summary.get(f"{word}_unknown"):
        return f"{word} unknown ({summary[f'{word}_unknown']})"
    if isinstance(value, list):
        return f"{word} {', '.join(value) or '-'}"
    return f"{word} {value or '-'}"


# -- the demo's last word ----------------------------------------------------------------------
