"""`run`: the daemon (see `bridge.daemon`)."""

from __future__ import annotations

import argparse
from typing import Any

from bridge.cli import Context


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "run", help="the daemon: a cycle every sync.interval_seconds until SIGTERM",
        description="The daemon: a cycle every sync.interval_seconds until SIGTERM/SIGINT; SIGHUP reloads the "
                    "config.  Speaks systemd's notify protocol when $NOTIFY_SOCKET is set.")
    parser.set_defaults(handler=run)


def run(ctx: Context) -> int:
    # Imported here: APScheduler and prometheus-client are the daemon's alone, so the other
    # commands do not pay for importing them.
    from bridge.daemon import run_daemon

    return run_daemon(ctx.config_path(), ctx.env, retry_policy=ctx.retry_policy)
