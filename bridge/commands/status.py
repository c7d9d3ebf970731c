"""`status`: links, the last cycles, failures, conflicts and pending intents, from the state file.

Reads the store only (no lock, no network), so it answers while the service runs.  The JSON
keys `links`, `conflicts`, `failures`, `pending_intents`, `last_cycle` and `last_success` are a
contract (design §6); more keys may be added, none removed."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from bridge.cli import EXIT_OK, Context
from bridge.store import StateLock, Store

CYCLES_SHOWN = 10


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "status", help="links, last cycles, failures, conflicts, pending intents")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(handler=run)


def duration(cycle: dict[str, Any]) -> float | None:
    """Seconds a cycle took: the engine's own measure when recorded, else finished - started."""
    try:
        summary = json.loads(cycle.get("summary") or "{}")
    except ValueError:
        summary = {}
    if isinstance(summary, dict) and isinstance(summary.get("duration_seconds"), (int, float)):
        return float(summary["duration_seconds"])
    if not cycle.get("finished"):
        return None
    try:
        return (datetime.fromisoformat(cycle["finished"]) - datetime.fromisoformat(cycle["started"])).total_seconds()
    except (TypeError, ValueError):
        return None


def cycle_result(cycle: dict[str, Any], process_alive: bool) -> str:
    """ok, failures, interrupted (stopped by a signal, or its process ended without closing it),
    or running (a process holds the state lock)."""
    if not cycle.get("finished"):
        return "running" if process_alive else "interrupted"
    try:
        summary = json.loads(cycle.get("summary") or "{}")
    except ValueError:
        summary = {}
    if isinstance(summary, dict) and summary.get("interrupted"):
        return "interrupted"
    return "ok" if cycle.get("ok") else "failures"


def status_data(store: Store, process_alive: bool = True) -> dict[str, Any]:
    cycles = store.cycles(CYCLES_SHOWN)
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
        # Held back for flapping until `conflicts resolve hold:SENTRY_ID --take ...` lifts the hold.
        "held": [{k: row[k] for k in ("sentry_id", "tracker_key", "reason", "since")} for row in store.holds()],
        # Links with a write whose outcome is not known yet (the next cycle reads, then decides).
        "pending_writes": len(store.pending_links()),
        "last_cycle": (
            {"started": last["started"], "finished": last["finished"], "ok": bool(last["ok"]),
             "result": cycle_result(last, process_alive),
             "writes": (last["writes_sentry"] or 0) + (last["writes_tracker"] or 0),
             "duration_seconds": duration(last), "failures": last["failures"]}
            if last else None
        ),
        "last_success": store.last_success(),
        "cycles": [
            {"started": c["started"], "finished": c["finished"], "ok": None if c["ok"] is None else bool(c["ok"]),
             "result": cycle_result(c, process_alive),
             "duration_seconds": duration(c), "links": c["links"],
             "writes_sentry": c["writes_sentry"], "writes_tracker": c["writes_tracker"],
             "failures": c["failures"], "conflicts": c["conflicts"]}
            for c in cycles
        ],
    }


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}s"


def run(ctx: Context) -> int:
    settings = ctx.settings(require_tokens=False)
    try:
        with ctx.store(settings, lock=False) as store:
            data = status_data(store, process_alive=not StateLock.is_free(settings.state.path))
    except FileNotFoundError:
        # Never created by looking: a typo in state.path must not leave an empty file behind.
        if ctx.args.json:
            ctx.print_json({"state_file": None, "links": 0})
        else:
            ctx.print(f"no state file at {settings.state.path} yet: nothing is linked (the first sync creates it)")
        return EXIT_OK
    if ctx.args.json:
        ctx.print_json(data)
        return EXIT_OK
    last = data["last_cycle"]
    ctx.print(f"links: {data['links']}   conflicts: {len(data['conflicts'])}   held: {len(data['held'])}   "
              f"failures: {len(data['failures'])}   pending intents: {data['pending_intents']}   "
              f"pending writes: {data['pending_writes']}")
    if last:
        ctx.print(f"last cycle: {last['started']} {last['result']}, {last['writes']} writes, "
                  f"{_seconds(last['duration_seconds'])}")
    else:
        ctx.print("last cycle: never")
    ctx.print(f"last success: {data['last_success'] or 'never'}")
    rows = [[c["started"], _seconds(c["duration_seconds"]), str(c["links"]),
             f"{c['writes_sentry']}/{c['writes_tracker']}", str(c["failures"]), str(c["conflicts"]),
             c["result"]] for c in data["cycles"]]
    columns = ("Started", "Took", "Links", "Writes S/T", "Failed", "Conflicts", "Result")
    if ctx.is_terminal:
        from bridge import render

        if rows:
            render.print_table(ctx, f"Last {len(rows)} cycles", columns, rows)
        if data["conflicts"]:
            render.print_table(ctx, "Open conflicts (settle with `conflicts resolve ID --take sentry|tracker`)",
                               ("ID", "Sentry", "Tracker", "Field", "Sentry value", "Tracker value", "Detected"),
                               [[c[k] for k in c] for c in data["conflicts"]])
        if data["failures"]:
            render.print_table(ctx, "Failing links (retried with backoff)",
                               ("Sentry", "Tracker", "Attempts", "Next try", "Error"),
                               [[f["sentry_id"], f["tracker_key"], f["attempts"], f["next_try"], f["error"]]
                                for f in data["failures"]])
        return EXIT_OK
    if rows:
        ctx.print("cycles (newest first):")
        for row in rows:
            started, took, links, writes, failed, conflicts, result = row
            ctx.print(f"  {started}  took {took:>7}  links {links:>5}  writes {writes:>7}  failed {failed}  "
                      f"conflicts {conflicts}  {result}")
    for c in data["conflicts"]:
        ctx.print(f"conflict #{c['id']} {c['sentry_id']} <-> {c['tracker_key']} {c['field']}: "
                  f"sentry={c['sentry_value']} tracker={c['tracker_value']}")
    for h in data["held"]:
        ctx.print(f"held hold:{h['sentry_id']} {h['sentry_id']} <-> {h['tracker_key']} since {h['since']}: "
                  f"{h['reason']}")
    for f in data["failures"]:
        ctx.print(f"failure {f['sentry_id']} <-> {f['tracker_key']} (attempt {f['attempts']}, next {f['next_try']}): "
                  f"{f['error']}")
    return EXIT_OK
