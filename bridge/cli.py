"""The command line (design §6).  This is the one place where errors become operator messages
and exit codes:

0 the cycle completed (recorded conflicts and unmapped users are reported, not failures);
1 some items failed and were recorded for retry; 2 bad config or usage, or a state file that
cannot be used (missing folder, damaged, read-only, newer); 3 a remote refused the
credentials or could not be reached; 4 another instance holds the lock.

Each command lives in its own module under `bridge.commands` and registers its sub-parser.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TextIO

from bridge import __version__, logs
from bridge.clients.http import RetryPolicy
from bridge.config import Settings, load_settings, resolve_config_path
from bridge.connect import open_clients
from bridge.engine import Engine
from bridge.errors import (
    AuthError,
    BridgeError,
    ConfigError,
    LockHeldError,
    NotFoundError,
    RedirectedError,
    RemoteError,
    StateFileError,
    TimedOutError,
    UnreachableError,
)
from bridge.store import StateLock, Store

EXIT_OK, EXIT_FAILED, EXIT_CONFIG, EXIT_REMOTE, EXIT_LOCKED = 0, 1, 2, 3, 4


class Context:
    """What a command needs from the outside world; tests inject a retry policy without waits."""

    def __init__(self, args: argparse.Namespace, env: Mapping[str, str], out: TextIO,
                 retry_policy: RetryPolicy | None) -> None:
        self.args = args
        self.env = env
        self.out = out
        self.retry_policy = retry_policy

    def config_path(self) -> Path:
        return resolve_config_path(self.args.config, self.env, Path.cwd())

    def settings(self, *, require_tokens: bool = True) -> Settings:
        return load_settings(self.config_path(), self.env, require_tokens=require_tokens)

    @contextmanager
    def engine(self, settings: Settings) -> Iterator[Engine]:
        """The state lock, the store and both clients, for commands that sync or write."""
        with StateLock(settings.state.path):
            store = Store.open(settings.state.path)
            sentry, tracker = open_clients(settings, policy=self.retry_policy)
            try:
                yield Engine(settings, store, sentry, tracker)
            finally:
                sentry.close()
                tracker.close()
                store.close()

    @contextmanager
    def store(self, settings: Settings, *, lock: bool) -> Iterator[Store]:
        """The store alone; `lock` for commands that write to it.  Without the lock the file is
        only read: never created, never migrated under a process that holds it (FileNotFoundError
        when there is none yet)."""
        if not lock:
            reader = Store.open_read_only(settings.state.path)
            try:
                yield reader
            finally:
                reader.close()
            return
        holder = StateLock(settings.state.path)
        holder.acquire()
        store = Store.open(settings.state.path)
        try:
            yield store
        finally:
            store.close()
            holder.release()

    @property
    def is_terminal(self) -> bool:
        return bool(getattr(self.out, "isatty", lambda: False)())

    def print(self, text: str = "") -> None:
        print(text, file=self.out)

    def print_json(self, data: Any) -> None:
        print(json.dumps(data, indent=2, default=str), file=self.out)


def build_parser() -> argparse.ArgumentParser:
    from bridge import commands

    parser = argparse.ArgumentParser(
        prog="sentry-tracker-bridge",
        description="Keeps Sentry issues and Yandex Tracker issues in step.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--config", help="config file (default: $BRIDGE_CONFIG, then ./bridge.toml)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    parser.add_argument("--log-format", choices=("text", "json"), default="text")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for module in commands.ALL:
        module.register(subparsers)
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
    try:
        code: int = args.handler(ctx)
        return code
    except ConfigError as exc:
        print("configuration problems:", file=sys.stderr)
        for problem in exc.problems:
            print(f"  - {problem}", file=sys.stderr)
        return EXIT_CONFIG
    except LockHeldError as exc:
        print(f"error: {exc}; is another sync or the service running?", file=sys.stderr)
        return EXIT_LOCKED
    except StateFileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except RemoteError as exc:
        return report_remote_error(exc)
    except BridgeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except KeyboardInterrupt as exc:
        return 128 + int(getattr(exc, "signum", 2))  # 130 for Ctrl-C, 143 for a repeated SIGTERM


def report_remote_error(error: RemoteError) -> int:
    """Print one error with advice; return its exit code (3 when the remote refused us or could
    not be reached or used at this address, 1 otherwise)."""
    print(f"error: {error.describe()}", file=sys.stderr)
    if is_setup_problem(error):
        print(f"advice: {advice(error)}", file=sys.stderr)
        return EXIT_REMOTE
    return EXIT_FAILED


def is_setup_problem(error: RemoteError) -> bool:
    """Refused credentials, an address that does not answer or redirects, a wrong organization:
    a person must change something before any cycle can work."""
    wrong_org = isinstance(error, NotFoundError) and error.service == "sentry" and "/organizations/" in error.endpoint
    return isinstance(error, (AuthError, UnreachableError, TimedOutError, RedirectedError)) or wrong_org


def advice(error: RemoteError) -> str:
    """One sentence an operator can act on."""
    if isinstance(error, AuthError):
        if error.service == "tracker" and error.status == 403 and "/triggers" in error.endpoint:
            queue = error.endpoint.split("/queues/", 1)[-1].split("/", 1)[0]
            return (f"managing the triggers of queue {queue} needs queue administration rights: give the "
                    "tracker.token's user the queue's administration (GRANT) right, or run push setup once with "
                    "an admin's token (BRIDGE_TRACKER__TOKEN=...); the trigger keeps working without them")
        if error.service == "sentry":
            return ("check sentry.token: an internal-integration token with event:write, member:read and "
                    "org:read; organization auth tokens (sntrys_) cannot read issues")
        return ("check tracker.token and tracker.org_id / cloud_org_id (OAuth token with tracker:read and "
                "tracker:write; auth_scheme = \"Bearer\" needs cloud_org_id)")
    if isinstance(error, NotFoundError):
        return ("check sentry.organization: the organization's slug, as in https://sentry.example.com/"
                "organizations/<slug>/ (not its display name)")
    if isinstance(error, RedirectedError):
        return (f"set {error.service}.url to the address the redirect points to (https, the right host, no "
                "extra path); the bridge never follows a redirect with its token")
    if "certificate verify failed" in str(error):
        return (f"{error.service}.url presents a certificate this machine does not trust (self-signed, or a "
                "proxy that re-signs TLS?): add its CA to the system store or point SSL_CERT_FILE at a bundle "
                "that has it; verification stays on")
    if isinstance(error, TimedOutError):
        return (f"check {error.service}.url and that the host answers (firewall, proxy, a server that hangs); "
                "run with -v to see each retry and its wait")
    return f"check {error.service}.url, DNS, proxies and the network path; the bridge retries on the next cycle"
