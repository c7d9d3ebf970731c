"""The command line (design §6).  This is the one place where errors become operator messages
and exit codes:

0 the cycle completed (recorded conflicts and unmapped users are reported, not failures);
1 some items failed and were recorded for retry; 2 bad config or usage; 3 a remote refused the
credentials or could not be reached; 4 another instance holds the lock.
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import os
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from bridge import __version__, logs
from bridge.clients.http import RetryPolicy
from bridge.config import Settings, load_settings, resolve_config_path
from bridge.connect import open_clients
from bridge.engine import CycleReport, Engine, describe_action
from bridge.errors import (
    AuthError,
    BridgeError,
    ConfigError,
    LockHeldError,
    RemoteError,
    UnreachableError,
)
from bridge.store import StateLock, Store

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_REMOTE, EXIT_LOCKED = 0, 1, 2, 3, 4
log = logging.getLogger("bridge.cli")


class Context:
    """What a command needs from the outside world; tests inject a retry policy without waits."""

    def __init__(self, args: argparse.Namespace, env: Mapping[str, str], out: TextIO,
                 retry_policy: RetryPolicy | None) -> None:
        self.args = args
        self.env = env
        self.out = out
        self.retry_policy = retry_policy

    def settings(self, *, require_tokens: bool = True) -> Settings:
        path = resolve_config_path(self.args.config, self.env, Path.cwd())
        return load_settings(path, self.env, require_tokens=require_tokens)

    def print(self, text: str = "") -> None:
        print(text, file=self.out)

    def print_json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, default=str), file=self.out)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sentry-tracker-bridge",
        description="Keeps Sentry issues and Yandex Tracker issues in step.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", help="config file (default: $BRIDGE_CONFIG, then ./bridge.toml)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sync = commands.add_parser("sync", help="one full cycle (every link refreshed), then exit")
    sync.add_argument("--dry-run", action="store_true", help="print the plan and write nothing")
    sync.add_argument("--json", action="store_true", help="print the plan / result as JSON")
    sync.add_argument("--backfill", action="store_true", help="also create issues for existing Sentry issues")
    sync.add_argument("--force", action="store_true", help="override the mass-change guard")

    link = commands.add_parser("link", help="link Sentry issues to Tracker issues")
    link.add_argument("pairs", nargs="*", metavar="SENTRY_ID TRACKER_KEY")
    link.add_argument("--file", help="CSV file of sentry_id,tracker_key rows")

    unlink = commands.add_parser("unlink", help="forget links (nothing remote changes)")
    unlink.add_argument("sentry_ids", nargs="+", metavar="SENTRY_ID")

    status = commands.add_parser("status", help="links, last cycles, failures, conflicts, pending intents")
    status.add_argument("--json", action="store_true")

    commands.add_parser("demo", help="run the real engine against built-in local emulators of both APIs")
    return parser


def main(
    argv: Sequence[str] | None = None,
    *,
    env: Mapping[str, str] | None = None,
    out: TextIO | None = None,
    retry_policy: RetryPolicy | None = None,
) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logs.configure(-1 if args.quiet else args.verbose, args.log_format)
    ctx = Context(args, os.environ if env is None else env, out or sys.stdout, retry_policy)
    handler: Callable[[Context], int] = COMMANDS[args.command]
    try:
        return handler(ctx)
    except ConfigError as exc:
        print("configuration problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except LockHeldError as exc:
        print(f"error: {exc}; is another sync or the service running?", file=sys.stderr)
        return EXIT_LOCKED
    except (AuthError, UnreachableError) as exc:
        print(f"error: {exc.describe()}", file=sys.stderr)
        print(f"advice: {advice(exc)}", file=sys.stderr)
        return EXIT_REMOTE
    except RemoteError as exc:
        print(f"error: {exc.describe()}", file=sys.stderr)
        return EXIT_FAILED
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt:
        return 130


def advice(error: RemoteError) -> str:
    """One sentence an operator can act on."""
    if isinstance(error, AuthError):
        if error.service == "sentry":
            return ("check sentry.token: an internal-integration token with event:write, member:read and "
                    "org:read; organization auth tokens (sntrys_) cannot read issues")
        return ("check tracker.token and tracker.org_id / cloud_org_id (OAuth token with tracker:read and "
                "tracker:write; auth_scheme = \"Bearer\" needs cloud_org_id)")
    return f"check {error.service}.url, DNS, proxies and the network path; the bridge retries on the next cycle"


@contextmanager
def _engine(ctx: Context, settings: Settings) -> Iterator[Engine]:
    with StateLock(settings.state.path):
        store = Store.open(settings.state.path)
        sentry, tracker = open_clients(settings, policy=ctx.retry_policy)
        try:
            yield Engine(settings, store, sentry, tracker)
        finally:
            sentry.close()
            tracker.close()
            store.close()


def cmd_sync(ctx: Context) -> int:
    settings = ctx.settings()
    with _engine(ctx, settings) as engine:
        report = engine.run_cycle(dry_run=ctx.args.dry_run)
    if ctx.args.json:
        ctx.print_json(report.to_json())
    else:
        print_report(ctx, report)
    return exit_code(report)


def exit_code(report: CycleReport) -> int:
    if report.fatal is not None:
        if isinstance(report.fatal, (AuthError, UnreachableError)):
            print(f"error: {report.fatal.describe()}\nadvice: {advice(report.fatal)}", file=sys.stderr)
            return EXIT_REMOTE
        print(f"error: {report.fatal.describe()}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_FAILED if report.failures else EXIT_OK


def print_report(ctx: Context, report: CycleReport) -> None:
    summary = report.summary()
    for outcome in report.outcomes:
        if not outcome.actions and not outcome.error:
            continue
        ctx.print(f"{outcome.sentry_id} <-> {outcome.tracker_key}")
        for action in outcome.actions:
            d = describe_action(action)
            side = f" {d['side']}" if "side" in d else ""
            value = f" = {d['value']}" if "value" in d else ""
            ctx.print(f"  {d['action']:<20} {d['field']:<9}{side}{value}   ({d['reason']})")
        if outcome.error:
            ctx.print(f"  FAILED: {outcome.error}")
    verb = "planned" if report.dry_run else "done"
    ctx.print(
        f"{verb}: {summary['links']} links, {summary['planned_writes']} writes planned, "
        f"writes sentry={summary['writes_sentry']} tracker={summary['writes_tracker']}, "
        f"{summary['failures']} failed, {summary['conflicts']} conflicts, {summary['unmapped']} unmapped, "
        f"requests sentry={summary['requests'].get('sentry', 0)} tracker={summary['requests'].get('tracker', 0)}"
    )


def _pairs(ctx: Context) -> list[tuple[str, str]]:
    values = list(ctx.args.pairs)
    if len(values) % 2:
        raise ConfigError([f"link: expected SENTRY_ID TRACKER_KEY pairs, got an odd number of values ({len(values)})"])
    pairs = [(values[i], values[i + 1]) for i in range(0, len(values), 2)]
    if ctx.args.file:
        path = Path(ctx.args.file)
        try:
            with path.open(newline="") as handle:
                for number, row in enumerate(csv.reader(handle), start=1):
                    cells = [c.strip() for c in row if c.strip()]
                    if not cells or cells[0].startswith("#") or cells[0].lower() == "sentry_id":
                        continue
                    if len(cells) != 2:
                        raise ConfigError([f"{path}:{number}: expected sentry_id,tracker_key"])
                    pairs.append((cells[0], cells[1]))
        except OSError as exc:
            raise ConfigError([f"{path}: {exc.strerror}"]) from None
    if not pairs:
        raise ConfigError(["link: give SENTRY_ID TRACKER_KEY pairs or --file"])
    problems = [f"link: {sid!r} is not a numeric Sentry issue id" for sid, _ in pairs if not sid.isdigit()]
    if problems:
        raise ConfigError(problems)
    return pairs


def cmd_link(ctx: Context) -> int:
    pairs = _pairs(ctx)
    settings = ctx.settings()
    failed = 0
    with _engine(ctx, settings) as engine:
        for sentry_id, key in pairs:
            try:
                engine.sentry.get_issue(sentry_id)
                issue = engine.tracker.get_issue(key)
                engine.store.add_link(sentry_id, str(issue.get("key") or key), origin="manual")
            except (AuthError, UnreachableError):
                raise
            except (RemoteError, ValueError) as exc:
                failed += 1
                text = exc.describe() if isinstance(exc, RemoteError) else str(exc)
                ctx.print(f"not linked {sentry_id} <-> {key}: {text}")
                continue
            ctx.print(f"linked {sentry_id} <-> {issue.get('key') or key}")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_unlink(ctx: Context) -> int:
    settings = ctx.settings(require_tokens=False)
    missing = 0
    with StateLock(settings.state.path):
        store = Store.open(settings.state.path)
        try:
            for sentry_id in ctx.args.sentry_ids:
                if store.remove_link(sentry_id):
                    ctx.print(f"unlinked {sentry_id}")
                else:
                    missing += 1
                    ctx.print(f"not linked: {sentry_id}")
        finally:
            store.close()
    return EXIT_FAILED if missing else EXIT_OK


def status_data(store: Store) -> dict[str, Any]:
    cycles = store.cycles(10)
    last = cycles[0] if cycles else None
    return {
        "links": store.link_count(),
        "conflicts": [
            {k: row[k] for k in ("id", "sentry_id", "tracker_key", "field", "sentry_value", "tracker_value",
                                 "detected_at")}
            for row in store.open_conflicts()
        ],
        "failures": [
            {k: row[k] for k in ("sentry_id", "tracker_key", "error", "attempts", "next_try")}
            for row in store.failures()
        ],
        "pending_intents": store.pending_intents(),
        "last_cycle": (
            {"started": last["started"], "finished": last["finished"], "ok": bool(last["ok"]),
             "writes": (last["writes_sentry"] or 0) + (last["writes_tracker"] or 0)}
            if last else None
        ),
        "last_success": store.last_success(),
        "cycles": [
            {"started": c["started"], "finished": c["finished"], "ok": bool(c["ok"]),
             "writes_sentry": c["writes_sentry"], "writes_tracker": c["writes_tracker"],
             "failures": c["failures"], "conflicts": c["conflicts"]}
            for c in cycles
        ],
    }


def cmd_status(ctx: Context) -> int:
    settings = ctx.settings(require_tokens=False)
    store = Store.open(settings.state.path)
    try:
        data = status_data(store)
    finally:
        store.close()
    if ctx.args.json:
        ctx.print_json(data)
        return EXIT_OK
    last = data["last_cycle"]
    ctx.print(f"links: {data['links']}   conflicts: {len(data['conflicts'])}   "
              f"failures: {len(data['failures'])}   pending intents: {data['pending_intents']}")
    ctx.print(f"last cycle: {last['started'] + (' ok' if last['ok'] else ' with failures') if last else 'never'}")
    ctx.print(f"last success: {data['last_success'] or 'never'}")
    for c in data["conflicts"]:
        ctx.print(f"conflict #{c['id']} {c['sentry_id']} <-> {c['tracker_key']} {c['field']}: "
                  f"sentry={c['sentry_value']} tracker={c['tracker_value']}")
    for f in data["failures"]:
        ctx.print(f"failure {f['sentry_id']} <-> {f['tracker_key']} (attempt {f['attempts']}, next {f['next_try']}): "
                  f"{f['error']}")
    return EXIT_OK


def cmd_demo(ctx: Context) -> int:
    from bridge.demo import run_demo

    return run_demo(ctx.out, retry_policy=ctx.retry_policy)


COMMANDS: dict[str, Callable[[Context], int]] = {
    "sync": cmd_sync,
    "link": cmd_link,
    "unlink": cmd_unlink,
    "status": cmd_status,
    "demo": cmd_demo,
}
