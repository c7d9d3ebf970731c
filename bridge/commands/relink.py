"""`relink`: rebuild links and baselines from both sides after the state file was lost.

Writes nothing remote.  The next `sync` then makes zero writes: every field's baseline is what
both sides hold now, and fields that disagree are recorded as conflicts for the operator."""

from __future__ import annotations

import argparse
from typing import Any

from bridge.cli import EXIT_OK, Context


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "relink", help="rebuild links and baselines from both sides (lost state file); writes nothing remote")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=run)


def run(ctx: Context) -> int:
    settings = ctx.settings()
    with ctx.engine(settings) as engine:
        result = engine.relink()
    if ctx.args.json:
        ctx.print_json(result)
        return EXIT_OK
    ctx.print(f"scanned {result['scanned_tracker_issues']} Tracker issues: {result['linked']} links rebuilt, "
              f"{result['already_linked']} already linked, {result['disagreeing']} with fields that disagree "
              f"(recorded as conflicts, see `conflicts`)")
    if result["missing_in_sentry"]:
        ctx.print(f"not found in Sentry (deleted or merged?): {', '.join(result['missing_in_sentry'])}")
    if result["duplicates"]:
        ctx.print(f"Tracker issues naming an already-found Sentry issue (left unlinked): "
                  f"{', '.join(result['duplicates'])}")
    ctx.print("followers the bridge added before cannot be told from hand-added ones: none are owned now")
    return EXIT_OK
