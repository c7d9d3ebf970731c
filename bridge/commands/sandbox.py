"""`sandbox`: the built-in emulators of both APIs on their own, until Ctrl-C or SIGTERM.

It prints where they listen, their tokens and a ready config, so that a person can try a config,
`doctor`, `explain`, or another API client against them without touching real servers.  The
people and issues are the demo's (`--seed large` adds 1,000 unlinked pairs on top).
"""

from __future__ import annotations

import argparse
import signal
import threading
from types import FrameType
from typing import Any

from bridge.cli import EXIT_OK, Context
from bridge.errors import ConfigError

LARGE = 1000


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "sandbox", help="serve the built-in emulators of both APIs until Ctrl-C, with a ready config")
    parser.add_argument("--sentry-port", type=int, default=0, help="port of the Sentry emulator (default: any free)")
    parser.add_argument("--tracker-port", type=int, default=0, help="port of the Tracker emulator (default: any free)")
    parser.add_argument("--seed", choices=("small", "large"), default="small",
                        help="the demo's people and 5 issues a side; large adds 1,000 unlinked pairs")
    parser.set_defaults(handler=run)


def run(ctx: Context) -> int:
    from bridge.demo import CONFIG, seed
    from bridge.sandbox.http import LoopbackServer
    from bridge.sandbox.sentry_emulator import DEFAULT_TOKEN as SENTRY_TOKEN
    from bridge.sandbox.sentry_emulator import SentryEmulator
    from bridge.sandbox.tracker_emulator import DEFAULT_TOKEN as TRACKER_TOKEN
    from bridge.sandbox.tracker_emulator import TrackerEmulator

    sentry, tracker = SentryEmulator(org="acme"), TrackerEmulator()
    seed(sentry, tracker)
    if ctx.args.seed == "large":
        for n in range(LARGE):
            sentry.add_issue("backend", f"Sandbox error {n}")
            tracker.add_issue("OPS", f"Sandbox ticket {n}")
    stop = threading.Event()

    def stopping(_signum: int, _frame: FrameType | None) -> None:
        stop.set()

    try:
        servers = (LoopbackServer(sentry, ctx.args.sentry_port), LoopbackServer(tracker, ctx.args.tracker_port))
    except OSError as exc:
        ports = f"--sentry-port {ctx.args.sentry_port}, --tracker-port {ctx.args.tracker_port}"
        raise ConfigError([f"sandbox: cannot listen on 127.0.0.1 ({ports}): {exc.strerror}; choose free ports, "
                           "or 0 for any"]) from None
    previous = {sig: signal.signal(sig, stopping) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        with servers[0] as s_srv, servers[1] as t_srv:
            config = CONFIG.format(sentry_url=s_srv.url, tracker_url=t_srv.url).replace(
                'path = "demo.db"', 'path = "sandbox.db"')
            ctx.print(f"Sentry emulator:  {s_srv.url}  (token {SENTRY_TOKEN}; organization acme, project backend)")
            ctx.print(f"Tracker emulator: {t_srv.url}  (OAuth token {TRACKER_TOKEN}; X-Org-ID 1234567, queue OPS)")
            ctx.print("People: alice and bob on both sides (same e-mail), carol (mapped by [mapping.users]), dan "
                      "(Sentry only)")
            ctx.print("A ready config (save it as bridge.toml):")
            ctx.print("")
            ctx.print(config)
            ctx.print("Serving until Ctrl-C.")
            ctx.out.flush()
            while not stop.wait(0.5):
                pass
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
    ctx.print("sandbox stopped")
    return EXIT_OK
