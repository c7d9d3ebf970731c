"""`push setup [--dry-run] [--json]`: create or update the Tracker queue trigger that sends hook
hints to the receiver (design section 10; the work is `bridge.push.setup`).

One trigger in `tracker.queue` and in every queue of `[create.routes]`, aimed at
`<push.public_url>/hooks/tracker` with `push.tracker_secret` in `X-Bridge-Secret`.  Running it
again changes nothing unless the config or the trigger changed.  It needs only the Tracker token
(with queue administration rights: managing triggers needs them), and takes the state lock, since
it remembers the trigger ids in the state file: stop the service first, or run it before.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from bridge.cli import EXIT_OK, Context
from bridge.clients.http import RetryPolicy
from bridge.config import Settings
from bridge.connect import open_tracker
from bridge.errors import ConfigError
from bridge.push.setup import (
    SECRET_HEADER,
    TRIGGER_NAME,
    Cursors,
    NoCursors,
    Step,
    TriggerSetup,
    endpoint,
    masked,
    wanted_trigger,
)
from bridge.store import Store

# A setup step is a handful of requests an operator waits for: give up on a dead server soon.
SETUP_RETRY = RetryPolicy(attempts=3, deadline_seconds=30.0)


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "push", help="hooks as hints (design section 10): set up the Tracker queue trigger")
    commands = parser.add_subparsers(dest="push_command", required=True, metavar="SUBCOMMAND")
    setup = commands.add_parser(
        "setup", help="create or update the Tracker queue trigger that posts hook hints to push.public_url")
    setup.add_argument("--dry-run", action="store_true", help="print what would be done and write nothing")
    setup.add_argument("--json", action="store_true", help="print the result as JSON")
    setup.set_defaults(handler=run_setup)


def run_setup(ctx: Context) -> int:
    """Plan every queue, then (unless a dry run) apply each plan and remember the trigger id."""
    settings = ctx.settings(require_tokens=False)
    public_url, secret = required(settings)
    warn(settings, public_url)
    main_queue = settings.tracker.queue
    queues = [main_queue, *sorted(set(settings.create.routes.values()) - {main_queue})]
    dry_run = bool(ctx.args.dry_run)
    url = endpoint(public_url)
    steps: list[Step] = []
    tracker = open_tracker(settings, policy=ctx.retry_policy or SETUP_RETRY)
    try:
        with cursors(ctx, settings, dry_run=dry_run) as remembered:
            setup = TriggerSetup(tracker, remembered, public_url, secret)
            for queue in queues:
                step = setup.plan(queue)
                if not dry_run:
                    step = setup.apply(step)
                steps.append(step)
                if not ctx.args.json:
                    ctx.print(describe(step, url, dry_run=dry_run))
    finally:
        tracker.close()
    trigger = masked(wanted_trigger(public_url, secret), secret)
    if ctx.args.json:
        ctx.print_json({"dry_run": dry_run, "endpoint": url, "trigger": trigger,
                        "queues": [step.to_json() for step in steps]})
    elif dry_run:
        ctx.print(f"the trigger ({SECRET_HEADER} shown as ***):")
        ctx.print_json(trigger)
        ctx.print("dry run: nothing written")
    return EXIT_OK


def required(settings: Settings) -> tuple[str, str]:
    """`push.public_url`, the Tracker hook secret and the Tracker token, or every problem at once."""
    problems: list[str] = []
    public_url = settings.push.public_url
    if public_url is None:
        problems.append("push.public_url: missing; set it to the address at which Tracker reaches the receiver "
                        "through your TLS proxy (e.g. \"https://bridge.example.com\"): the trigger posts to "
                        "<public_url>/hooks/tracker")
    secret: str | None = None
    try:
        secret = settings.push_secret("tracker")
    except ConfigError as exc:
        problems.extend(exc.problems)
    else:
        if secret is None:
            problems.append(f"push.tracker_secret: missing; set it, push.tracker_secret_file or the systemd credential "
                            f"tracker-hook-secret: the trigger sends it in {SECRET_HEADER} and the receiver checks it")
        elif not (secret.isascii() and secret.isprintable()):
            problems.append("push.tracker_secret: must be one line of printable ASCII (it travels in an HTTP header)")
    try:
        settings.tracker_token()
    except ConfigError as exc:
        problems.extend(exc.problems)
    if problems or public_url is None or secret is None:
        raise ConfigError(problems)
    return public_url, secret


def warn(settings: Settings, public_url: str) -> None:
    """Things that make the trigger useless or unsafe but do not stop its setup."""
    if public_url.startswith("http://"):
        print(f"warning: push.public_url is http://: Tracker would send {SECRET_HEADER} unencrypted; "
              "put the receiver behind a TLS proxy and use its https:// address", file=sys.stderr)
    if not settings.push.enabled:
        print("note: push.enabled is false: until `run` has it on, nothing listens and the trigger's requests "
              "fail (changes still arrive by polling)", file=sys.stderr)


@contextmanager
def cursors(ctx: Context, settings: Settings, *, dry_run: bool) -> Iterator[Cursors]:
    """The state file's cursors: under the state lock for a real run; read-only (or none yet,
    never created) for a dry run."""
    if not dry_run:
        with ctx.store(settings, lock=True) as store:
            yield store
        return
    try:
        reader = Store.open_read_only(settings.state.path)
    except FileNotFoundError:
        yield NoCursors()
        return
    try:
        yield reader
    finally:
        reader.close()


def describe(step: Step, url: str, *, dry_run: bool) -> str:
    """One line per queue for the operator."""
    what = f"POST {url} on every issue change"
    if step.action == "none":
        return (f"{step.queue}: trigger {step.trigger_id} \"{TRIGGER_NAME}\" is up to date "
                f"(version {step.version}): {what}")
    if step.action == "update":
        changes = ", ".join(step.changes)
        if dry_run:
            return f"{step.queue}: would update trigger {step.trigger_id} (version {step.version}): {changes} differ"
        return f"{step.queue}: updated trigger {step.trigger_id} (now version {step.version}): {changes}"
    made = "would create a trigger" if dry_run else f"created trigger {step.trigger_id}"
    if step.action == "recreate":
        return f"{step.queue}: trigger {step.gone} is gone (deleted?); {made}: {what}"
    return f"{step.queue}: {made} \"{TRIGGER_NAME}\": {what}"
