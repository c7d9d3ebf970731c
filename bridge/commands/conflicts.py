"""`conflicts`: list the open conflicts; `conflicts resolve ID --take sentry|tracker` settles one.

A conflict is a field both sides changed to values that do not match, recorded instead of
written (`sync.conflict = "manual"`, a winner whose value has no counterpart, or `relink` finding
two sides that disagree).  Resolving one does not write anything by itself: it sets that field's
baseline pair so that the taken side looks changed and the other side unchanged, which is exactly
the situation in which the planner carries the taken side over.  Unless `--no-sync`, that one
link is then synced at once through the engine (read both sides, plan, write, read back), so the
operator sees the result.

A link held back for flapping (the bridge kept rewriting it) is listed here too, as
`hold:SENTRY_ID`; resolving it takes a side for every field that may write the other side and
lifts the hold.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from bridge.cli import EXIT_FAILED, EXIT_OK, Context
from bridge.core.fields import SCALAR_FIELDS, snapshot
from bridge.core.plan import Policy
from bridge.core.report import CycleReport
from bridge.core.values import Field, Pair, Side, text
from bridge.engine import Engine
from bridge.errors import ConfigError
from bridge.store import Store

#: What the taken side's baseline becomes: never a real value, so that side always looks changed.
TAKEN = "(taken by the operator)"
SIDES = ("sentry", "tracker")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "conflicts", help="list open conflicts; `conflicts resolve ID --take sentry|tracker` settles one")
    parser.add_argument("--json", action="store_true", help="print as JSON")
    parser.set_defaults(handler=run_list)
    actions = parser.add_subparsers(dest="conflicts_action", metavar="resolve")
    resolve: argparse.ArgumentParser = actions.add_parser(
        "resolve", help="settle a conflict by taking one side's value")
    resolve.add_argument("conflict_id", metavar="ID", help="a conflict's number, or hold:SENTRY_ID")
    resolve.add_argument("--take", required=True, choices=SIDES, help="the side whose value wins")
    resolve.add_argument("--no-sync", action="store_true",
                         help="only record the decision; the next sync carries it over")
    resolve.add_argument("--json", action="store_true", help="print as JSON")
    resolve.set_defaults(handler=run_resolve)


HOLD = "hold:"


def conflict_rows(store: Store) -> list[dict[str, Any]]:
    """Open conflicts, then held links (`field` "flapping", the reason as both values)."""
    keys = ("id", "sentry_id", "tracker_key", "field", "sentry_value", "tracker_value", "detected_at")
    rows = [{k: row[k] for k in keys} for row in store.open_conflicts()]
    rows += [{"id": f"{HOLD}{h['sentry_id']}", "sentry_id": h["sentry_id"], "tracker_key": h["tracker_key"],
              "field": "flapping", "sentry_value": h["reason"], "tracker_value": h["reason"],
              "detected_at": h["since"]} for h in store.holds()]
    return rows


def run_list(ctx: Context) -> int:
    settings = ctx.settings(require_tokens=False)
    try:
        with ctx.store(settings, lock=False) as store:
            rows = conflict_rows(store)
    except FileNotFoundError:
        rows = []  # no state file yet: nothing can be in conflict
    if ctx.args.json:
        ctx.print_json(rows)
        return EXIT_OK
    if not rows:
        ctx.print("no open conflicts")
        return EXIT_OK
    if ctx.is_terminal:
        from bridge import render

        render.print_table(ctx, f"Open conflicts ({len(rows)})",
                           ("ID", "Sentry", "Tracker", "Field", "Sentry value", "Tracker value", "Detected"),
                           [[r[k] for k in r] for r in rows])
    else:
        for r in rows:
            ctx.print(f"#{r['id']} {r['sentry_id']} <-> {r['tracker_key']} {r['field']}: {_values(r)} "
                      f"(since {r['detected_at']})")
    ctx.print("settle one with: conflicts resolve ID --take sentry|tracker")
    return EXIT_OK


def taken_baseline(take: str, other: Pair) -> Pair:
    """The baseline that makes `take` look changed and the other side unchanged (`other`
    holds the other side's current value)."""
    if take == "sentry":
        return Pair(TAKEN, other.tracker)
    return Pair(other.sentry, TAKEN)


def fields_of(conflict: Mapping[str, Any], policy: Policy, loser: Side) -> list[Field]:
    """The fields a resolution carries over.  A field conflict: that field, refused when the
    field never writes the losing side.  A `flapping` hold (the bridge kept writing one link
    back and forth): every scalar field that may write the losing side, and the hold is lifted."""
    name = str(conflict["field"])
    if name in SCALAR_FIELDS:
        if not policy.allows(name, loser):
            raise ConfigError([f"conflicts: cannot take the other side: sync.fields.{name} never writes "
                               f"{loser.title()}"])
        return [name]
    return [f for f in SCALAR_FIELDS if policy.allows(f, loser)]


def run_resolve(ctx: Context) -> int:
    take: str = ctx.args.take
    ref: str = ctx.args.conflict_id
    settings = ctx.settings(require_tokens=not ctx.args.no_sync)
    loser: Side = "tracker" if take == "sentry" else "sentry"
    if ctx.args.no_sync:
        with ctx.store(settings, lock=True) as store:
            conflict = _open_conflict(ctx, store, ref)
            if conflict is None:
                return EXIT_FAILED
            names = fields_of(conflict, Policy.from_settings(settings), loser)
            # Without reading the servers: the other side as recorded (a field conflict) or as
            # last known in step (a flapping hold).
            stored = {name: pair for name, (pair, _) in store.link_baselines(str(conflict["sentry_id"])).items()}
            unknown = [name for name in names if name != conflict["field"] and name not in stored]
            if unknown:
                # Without a read, nothing says what the other side holds in a field never synced
                # (switched on while the link was held): a guess could undo the side taken.
                raise ConfigError([f"conflicts: {ref}: {', '.join(unknown)} never synced on this link, so "
                                   "--no-sync cannot tell what to keep; resolve without --no-sync (it reads "
                                   "both sides first)"])
            recorded = Pair(conflict["sentry_value"], conflict["tracker_value"])
            baselines = {name: taken_baseline(take, recorded if name == conflict["field"] else
                                              stored.get(name, Pair(None, None))) for name in names}
            _settle(store, conflict, take, baselines)
        _said(ctx, conflict, take, synced=False)
        return EXIT_OK
    with ctx.engine(settings) as engine:
        conflict = _open_conflict(ctx, engine.store, ref)
        if conflict is None:
            return EXIT_FAILED
        report = resolve_and_sync(engine, conflict, take, fields_of(conflict, engine.policy, loser))
    _said(ctx, conflict, take, synced=True)
    if ctx.args.json:
        ctx.print_json(report.to_json())
    else:
        from bridge.commands.sync import print_report

        print_report(ctx, report)
    return EXIT_FAILED if report.failures else EXIT_OK


def resolve_and_sync(engine: Engine, conflict: Mapping[str, Any], take: str, names: list[Field]) -> CycleReport:
    """Read both sides, set the baselines from what the other side holds *now* (a change made
    since the conflict was recorded is not overwritten blindly), close the conflict, then run
    the engine on that one link.  Followers are left for the next cycle (bookmarks unknown)."""
    store = engine.store
    before = {"sentry": engine.sentry.stats.total, "tracker": engine.tracker.stats.total}
    sid = str(conflict["sentry_id"])
    link = store.find_link(sid)
    if link is None:
        raise ConfigError([f"conflicts: #{conflict['id']} belongs to {sid}, which is no longer linked"])
    users = engine.load_users()
    s_issue = engine.sentry.get_issue(sid)
    t_issue = engine.tracker.get_issue(link.tracker_key)
    now = snapshot(s_issue, t_issue, None, users)
    _settle(store, conflict, take, {name: taken_baseline(take, now.get(name)) for name in names}, engine.clock())
    report = CycleReport(dry_run=False, started=engine.clock(), links=1)
    state = store.link_states([sid])[sid]
    engine.sync_one(report, engine.planned(link, state, s_issue, t_issue, None, users), users)
    report.finished = engine.clock()
    report.requests = {"sentry": engine.sentry.stats.total - before["sentry"],
                       "tracker": engine.tracker.stats.total - before["tracker"]}
    return report


def _settle(store: Store, conflict: Mapping[str, Any], take: str, baselines: Mapping[Field, Pair],
            now: datetime | None = None) -> None:
    if conflict.get("hold"):
        store.lift_hold(str(conflict["sentry_id"]), f"take_{take}", baselines, now)
    else:
        store.resolve_conflict(int(conflict["id"]), f"take_{take}", baselines, now)


def _open_conflict(ctx: Context, store: Store, ref: str) -> dict[str, Any] | None:
    """The open conflict (a number) or hold (`hold:SENTRY_ID`) named, as one shape."""
    if ref.startswith(HOLD):
        sid = ref[len(HOLD):]
        rows = [h for h in store.holds() if h["sentry_id"] == sid]
        if not rows:
            ctx.print(f"no hold on {sid}; see `conflicts`")
            return None
        h = rows[0]
        return {"id": ref, "sentry_id": sid, "tracker_key": h["tracker_key"], "field": "flapping",
                "sentry_value": h["reason"], "tracker_value": h["reason"], "hold": True}
    conflict = store.conflict_by_id(int(ref)) if ref.isdigit() else None
    if conflict is None:
        ctx.print(f"no conflict #{ref}; see `conflicts`")
    elif conflict.get("resolved_at"):
        ctx.print(f"conflict #{ref} is already resolved ({conflict['resolution']}); see `conflicts`")
        return None
    return conflict


def _said(ctx: Context, conflict: dict[str, Any], take: str, *, synced: bool) -> None:
    value = conflict[f"{take}_value"]
    ctx.print(f"conflict #{conflict['id']} ({conflict['field']} of {conflict['sentry_id']} <-> "
              f"{conflict['tracker_key']}) resolved: take {take} (recorded value {text(value)})"
              + ("" if synced else "; the next sync carries it over"))


def _values(row: Mapping[str, Any]) -> str:
    if row["field"] not in SCALAR_FIELDS:  # a hold (flapping): one detail, the link waits for a person
        return f"{text(row['sentry_value'])}; the link is held back until resolved"
    return f"sentry={text(row['sentry_value'])} tracker={text(row['tracker_value'])}"
