"""`explain SENTRY_ID|TRACKER_KEY`: why this pair looks the way it does, and what the next cycle
would do.  Read-only: no lock, the state file opened read-only, only reads sent to the servers."""

from __future__ import annotations

import argparse
from typing import Any

from bridge.cli import EXIT_FAILED, EXIT_OK, Context, advice, report_remote_error
from bridge.connect import open_clients
from bridge.errors import RemoteError
from bridge.explain import NotLinkedError, explain_link, explanation_lines
from bridge.store import Store


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "explain", help="why this pair looks the way it does, and what the next cycle would do")
    parser.add_argument("ref", metavar="SENTRY_ID|TRACKER_KEY")
    parser.add_argument("--json", action="store_true", help="print the explanation as JSON")
    parser.set_defaults(handler=run)


def run(ctx: Context) -> int:
    settings = ctx.settings()
    try:
        store = Store.open_read_only(settings.state.path)
    except FileNotFoundError:
        return _fail(ctx, f"no state file at {settings.state.path}: nothing is linked yet")
    sentry, tracker = open_clients(settings, policy=ctx.retry_policy)
    try:
        explanation = explain_link(settings, store, sentry, tracker, ctx.args.ref)
    except NotLinkedError:
        return _fail(ctx, f"not linked: {ctx.args.ref} (see `status`; links come from `link`, `relink` or creation)")
    except RemoteError as exc:
        if not ctx.args.json:
            raise
        ctx.print_json({"error": exc.describe(), "advice": advice(exc)})
        return report_remote_error(exc)
    finally:
        sentry.close()
        tracker.close()
        store.close()
    if ctx.args.json:
        ctx.print_json(explanation.to_json())
    elif ctx.is_terminal:
        from bridge import render

        render.print_lines(ctx, [_styled(line) for line in explanation_lines(explanation)])
    else:
        for line in explanation_lines(explanation):
            ctx.print(line)
    return EXIT_FAILED if explanation.errors else EXIT_OK


def _fail(ctx: Context, message: str) -> int:
    """What went wrong, as JSON with --json (a script reading stdout gets JSON either way)."""
    if ctx.args.json:
        ctx.print_json({"error": message})
    else:
        ctx.print(message)
    return EXIT_FAILED


def _styled(line: str) -> str:
    """Headings (lines that do not start with a blank) in bold, everything else as is."""
    from rich.markup import escape

    return f"[bold]{escape(line)}[/bold]" if line and not line.startswith(" ") else escape(line)
