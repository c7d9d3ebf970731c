"""`doctor`: check tokens, scopes, organisation, projects, queue, the statuses and transitions the
mapping needs, and user coverage, with reads only.  Exit 1 when any check fails."""

from __future__ import annotations

import argparse
from typing import Any

from bridge.cli import EXIT_FAILED, EXIT_OK, Context
from bridge.clients.http import RetryPolicy
from bridge.connect import open_clients
from bridge.doctor import DoctorReport, run_doctor

# A check is a question, not a sync: give up on a dead server quickly.
DOCTOR_RETRY = RetryPolicy(attempts=2, deadline_seconds=15.0)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "doctor", help="tokens, scopes, queue, statuses/transitions the mapping needs, user coverage")
    parser.add_argument("--json", action="store_true", help="print the checks as JSON")
    parser.set_defaults(handler=run)


def run(ctx: Context) -> int:
    settings = ctx.settings()
    sentry, tracker = open_clients(settings, policy=ctx.retry_policy or DOCTOR_RETRY)
    try:
        report = run_doctor(settings, sentry, tracker)
    finally:
        sentry.close()
        tracker.close()
    if ctx.args.json:
        ctx.print_json(report.to_json())
    elif ctx.is_terminal:
        from bridge import render

        render.print_checks(ctx, report)
    else:
        print_plain(ctx, report)
    return EXIT_OK if report.ok else EXIT_FAILED


def print_plain(ctx: Context, report: DoctorReport) -> None:
    for check in report.checks:
        ctx.print(f"{check.level.upper():<5} {check.name}: {check.detail}")
        for note in check.notes:
            ctx.print(f"        {note}")
        if check.advice and check.level != "pass":
            ctx.print(f"      advice: {check.advice}")
    counts = report.counts()
    ctx.print(f"{counts['pass']} passed, {counts['warn']} warnings, {counts['fail']} failed")
