"""`status`: links, last cycles, failures, conflicts and pending intents, from the state file."""

from __future__ import annotations

import argparse
from typing import Any

from bridge.cli import EXIT_OK, Context
from bridge.store import Store


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status", help="links, last cycles, failures, conflicts, pending intents")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=run)


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


def run(ctx: Context) -> int:
    settings = ctx.settings(require_tokens=False)
    with ctx.store(settings, lock=False) as store:
        data = status_data(store)
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
