"""`link` and `unlink`: manage which Sentry issue goes with which Tracker issue."""

from __future__ import annotations

import argparse
import csv
from pathlib import Path
from typing import Any

from bridge.cli import EXIT_FAILED, EXIT_OK, Context
from bridge.errors import AuthError, ConfigError, RemoteError, UnreachableError


def register(subparsers: Any) -> None:
    link: argparse.ArgumentParser = subparsers.add_parser("link", help="link Sentry issues to Tracker issues")
    link.add_argument("pairs", nargs="*", metavar="SENTRY_ID TRACKER_KEY")
    link.add_argument("--file", help="CSV file of sentry_id,tracker_key rows")
    link.set_defaults(handler=run_link)
    unlink: argparse.ArgumentParser = subparsers.add_parser("unlink", help="forget links (nothing remote changes)")
    unlink.add_argument("sentry_ids", nargs="+", metavar="SENTRY_ID")
    unlink.set_defaults(handler=run_unlink)


def read_pairs(values: list[str], file: str | None) -> list[tuple[str, str]]:
    """Pairs from the command line and/or a CSV file; every problem reported at once."""
    problems: list[str] = []
    if len(values) % 2:
        problems.append(f"link: expected SENTRY_ID TRACKER_KEY pairs, got an odd number of values ({len(values)})")
    pairs = [(values[i], values[i + 1]) for i in range(0, len(values) - 1, 2)]
    if file:
        path = Path(file)
        try:
            # utf-8-sig: spreadsheets write a byte-order mark first; anything not UTF-8 is refused
            # (a guess at another encoding could turn an id into a different id).
            with path.open(newline="", encoding="utf-8-sig") as handle:
                for number, row in enumerate(csv.reader(handle), start=1):
                    cells = [c.strip() for c in row if c.strip()]
                    if not cells or cells[0].startswith("#") or cells[0].lower() == "sentry_id":
                        continue
                    if len(cells) != 2:
                        problems.append(f"{path}:{number}: expected sentry_id,tracker_key")
                        continue
                    pairs.append((cells[0], cells[1]))
        except OSError as exc:
            problems.append(f"{path}: {exc.strerror}")
        except UnicodeDecodeError as exc:
            problems.append(f"{path}: not UTF-8 text (byte {exc.start + 1}); save it as CSV UTF-8")
    if not pairs and not problems:
        problems.append("link: give SENTRY_ID TRACKER_KEY pairs or --file")
    problems += [f"link: {sid!r} is not a numeric Sentry issue id" for sid, _ in pairs if not sid.isdigit()]
    if problems:
        raise ConfigError(problems)
    return pairs


def run_link(ctx: Context) -> int:
    pairs = read_pairs(list(ctx.args.pairs), ctx.args.file)
    settings = ctx.settings()
    failed = 0
    with ctx.engine(settings) as engine:
        for sentry_id, key in pairs:
            try:
                engine.sentry.get_issue(sentry_id)
                issue = engine.tracker.get_issue(key)
                real_key = str(issue.get("key") or key)
                engine.store.add_link(sentry_id, real_key, origin="manual")
            except (AuthError, UnreachableError):
                raise
            except (RemoteError, ValueError) as exc:
                failed += 1
                why = exc.describe() if isinstance(exc, RemoteError) else str(exc)
                ctx.print(f"not linked {sentry_id} <-> {key}: {why}")
                continue
            ctx.print(f"linked {sentry_id} <-> {real_key}")
    return EXIT_FAILED if failed else EXIT_OK


def run_unlink(ctx: Context) -> int:
    settings = ctx.settings(require_tokens=False)
    missing = 0
    with ctx.store(settings, lock=True) as store:
        for sentry_id in ctx.args.sentry_ids:
            if store.remove_link(sentry_id):
                ctx.print(f"unlinked {sentry_id}")
            else:
                missing += 1
                ctx.print(f"not linked: {sentry_id}")
    return EXIT_FAILED if missing else EXIT_OK
