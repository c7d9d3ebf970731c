"""`sync`: one cycle, then exit: incremental or full on the same schedule as `run`
(`sync.full_resync_every`, counted in the state file); `--full` forces a full one."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

from bridge import render
from bridge.cli import EXIT_FAILED, EXIT_OK, Context, report_remote_error
from bridge.core.actions import changes, describe
from bridge.core.report import CycleReport
from bridge.interrupt import graceful_stop

log = logging.getLogger("bridge.sync")


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sync", help="one cycle, then exit (full every sync.full_resync_every cycles, as in run)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and write nothing")
    parser.add_argument("--json", action="store_true", help="print the plan / result as JSON")
    parser.add_argument("--backfill", action="store_true", help="also create issues for existing Sentry issues")
    parser.add_argument("--force", action="store_true", help="override the mass-change guard")
    parser.add_argument("--full", action="store_true",
                        help="read every linked Tracker issue now, whatever the schedule says")
    parser.set_defaults(handler=run)


def run(ctx: Context) -> int:
    settings = ctx.settings()
    with ctx.engine(settings) as engine, graceful_stop(engine.stop_requested) as stop:
        if ctx.is_terminal and not ctx.args.json:
            engine.progress = lambda label, total: render.progress(ctx, total, label)
        report = engine.run_cycle(dry_run=ctx.args.dry_run, backfill=ctx.args.backfill, force=ctx.args.force,
                                  full=True if ctx.args.full else None)
    if ctx.args.json:
        ctx.print_json(report.to_json())
    else:
        print_report(ctx, report)
    if stop.received is not None:
        log.warning("stopped by %s: the links in hand were committed; the rest waits for the next run",
                    stop.received.name, extra={"event": "cycle.stopped"})
        return int(stop.exit_code or EXIT_FAILED)
    return exit_code(report)


def exit_code(report: CycleReport) -> int:
    if report.fatal is not None:
        return report_remote_error(report.fatal)
    if report.refused is not None:
        print(f"error: {report.refused}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_FAILED if report.failures else EXIT_OK


def print_report(ctx: Context, report: CycleReport) -> None:
    if ctx.is_terminal:
        # A person is watching: tables grouped by action, then a summary (bridge.render).
        render.print_report(ctx, report)
        return
    for outcome in report.outcomes:
        acts = changes(outcome.actions)
        if not acts and not outcome.error:
            continue
        ctx.print(f"{outcome.sentry_id} <-> {outcome.tracker_key}")
        for action in acts:
            d = describe(action)
            side = f" {d['side']}" if "side" in d else ""
            value = f" = {d['value']}" if "value" in d else ""
            ctx.print(f"  {d['action']:<20} {d['field']:<9}{side}{value}   ({d['reason']})")
        if outcome.error:
            ctx.print(f"  FAILED: {outcome.error}")
    verb = "planned" if report.dry_run else "done"
    # One line, the same items the terminal summary shows (created, deferred, refused... when set).
    ctx.print(f"{verb}: " + "; ".join(f"{label} {value}" for label, value in render.summary_items(report)))
