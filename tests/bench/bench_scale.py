"""On-demand scale benchmark (not part of the default suite):

    python -m tests.bench.bench_scale [--sizes 1000,10000,100000] [--changes 1000]
        [--latency-ms 50] [--create 100] [--max-changes N|default] [--json FILE]

The emulators of both APIs run in a child process on loopback, each request answered after a
fixed latency; Sentry advertises its rate limits in X-Sentry-Rate-Limit-* headers (issue detail
5/s, issue list 20/s), Tracker answers 429 with Retry-After beyond 50/s.  The bridge runs here,
so RSS and CPU are the bridge's alone.  For each N it seeds N linked pairs (as old issues) and
measures, with one long-lived engine (as `run` uses it):

  idle  an incremental cycle where nothing changed: requests per side, wall and CPU time;
  K     propagation of K changes split over status and assignee in both directions and bookmarks
        (followers): wall time, requests, 429s, and the floor the issue defines;
  M     creating M new issues;
  rss   the peak RSS of this process.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import resource
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

USERS = 5
SENTRY_DETAIL_LIMIT = 5
SENTRY_LIST_LIMIT = 20
TRACKER_LIMIT = 50
# sync.max_changes_per_cycle: above any N measured, so K changes of up to all links are allowed
# and writes overlap the read from the first batch.
MAX_CHANGES = 1_000_000


# -- the emulator process ------------------------------------------------------------------------


def start_emulators(latency: float) -> tuple[Any, Any, list[Any]]:
    """Both emulators on loopback with the benchmark's rate limits, people and latency."""
    from bridge.sandbox.http import LoopbackServer
    from bridge.sandbox.sentry_emulator import SentryEmulator
    from bridge.sandbox.tracker_emulator import TrackerEmulator

    sentry = SentryEmulator(rate_limit_per_second=SENTRY_LIST_LIMIT)
    sentry.rate_limits = {"issue": SENTRY_DETAIL_LIMIT}
    tracker = TrackerEmulator(rate_limit_per_second=TRACKER_LIMIT)
    sentry.add_project("backend")
    for i in range(USERS):
        sentry.add_user(f"user{i}@example.com")
        tracker.add_user(f"user{i}", f"user{i}@example.com")
    servers = [LoopbackServer(sentry).start(), LoopbackServer(tracker).start()]
    for emulator in (sentry, tracker):
        emulator.latency_seconds = latency
    return sentry, tracker, servers


def seed(sentry: Any, tracker: Any, pairs: list[tuple[str, str]], n: int) -> list[tuple[str, str]]:
    """`n` more pairs of old issues (seen two days ago), appended to `pairs`; the new ones."""
    old = datetime.now(UTC) - timedelta(days=2)
    real_now = tracker.now
    tracker.now = lambda old=old: old
    for i in range(n):
        seen = old + timedelta(milliseconds=i)
        sid = sentry.add_issue("backend", f"error {len(pairs)}", first_seen=seen, last_seen=seen)
        key = tracker.add_issue("OPS", f"error {len(pairs)}")
        pairs.append((sid, key))
    tracker.now = real_now
    return pairs[-n:]


def serve(conn: Connection, latency: float) -> None:
    """Child process: both emulators on loopback, driven by commands over `conn`."""
    sentry, tracker, servers = start_emulators(latency)
    conn.send({"sentry": servers[0].url, "tracker": servers[1].url})
    pairs: list[tuple[str, str]] = []
    while True:
        command, arg = conn.recv()
        if command == "seed":
            conn.send(seed(sentry, tracker, pairs, arg))
        elif command == "change":
            conn.send(change(sentry, tracker, pairs, arg))
        elif command == "create":
            for i in range(arg):
                sentry.add_issue("backend", f"new {i}", assignee=f"user{i % USERS}@example.com")
            conn.send(arg)
        elif shared_command(conn, command, sentry, tracker, servers):
            return


def shared_command(conn: Connection, command: str, sentry: Any, tracker: Any, servers: list[Any]) -> bool:
    """The commands every benchmark's emulator process answers (clear, stats, stop); True on
    stop, when the process is to end."""
    if command == "clear":
        sentry.clear_log()
        tracker.clear_log()
        conn.send(True)
    elif command == "stats":
        conn.send({side: stats(emu) for side, emu in (("sentry", sentry), ("tracker", tracker))})
    elif command == "stop":
        for server in servers:
            server.stop()
        conn.send(True)
        return True
    else:
        raise ValueError(f"unknown command {command!r}")
    return False


def change(sentry: Any, tracker: Any, pairs: list[tuple[str, str]], k: int) -> dict[str, int]:
    """K people's changes on K distinct links, spread over five kinds."""
    kinds = {"sentry_status": 0, "tracker_status": 0, "sentry_assignee": 0, "tracker_assignee": 0, "bookmark": 0}
    for n, (sid, key) in enumerate(pairs[:k]):
        kind = list(kinds)[n % 5]
        kinds[kind] += 1
        user = n % USERS
        if kind == "sentry_status":
            sentry.set_status(sid, "resolved")
        elif kind == "tracker_status":
            tracker.set_status(key, "closed", resolution="fixed")
        elif kind == "sentry_assignee":
            sentry.assign(sid, f"user{user}@example.com")
        elif kind == "tracker_assignee":
            tracker.set_assignee(key, f"user{user}")
        else:
            sentry.bookmark(sid, f"user{user}@example.com")
    return kinds


def stats(emulator: Any) -> dict[str, int]:
    log = emulator.requests()
    return {
        "requests": len(log),
        "writes": len(emulator.writes()),
        "429": sum(1 for r in log if r.status == 429),
        "sentry_detail_writes": sum(1 for r in log if r.method == "PUT"),
        "list_reads": sum(1 for r in log if r.method == "GET" and r.path.endswith("/issues/")),
    }


# -- the bridge side -----------------------------------------------------------------------------


class Emulators:
    def __init__(self, latency: float, target: Any = None) -> None:
        ctx = mp.get_context("spawn")
        self.conn, child = ctx.Pipe()
        self.process = ctx.Process(target=target or serve, args=(child, latency), daemon=True)
        self.process.start()
        self.urls: dict[str, str] = self.conn.recv()

    def call(self, command: str, arg: Any = None) -> Any:
        self.conn.send((command, arg))
        return self.conn.recv()

    def close(self) -> None:
        self.call("stop")
        self.process.join(timeout=10)


def make_engine(folder: Path, urls: dict[str, str], concurrency: int, max_changes: int | None = MAX_CHANGES,
                full_resync_every: int = 1000) -> Any:
    from bridge.clients.http import RetryPolicy
    from bridge.config import Settings
    from bridge.connect import open_clients
    from bridge.engine import Engine
    from bridge.store import Store

    settings = Settings(
        sentry={"url": urls["sentry"], "organization": "acme", "token": "sentry-token"},
        tracker={"url": urls["tracker"], "org_id": "1234567", "token": "tracker-token", "queue": "OPS"},
        state={"path": folder / "state.db"},
        sync={"concurrency": concurrency, "full_resync_every": full_resync_every,
              "max_changes_per_cycle": max_changes},
        create={"enabled": True, "max_per_cycle": 100_000},
    )
    sentry, tracker = open_clients(settings, policy=RetryPolicy(attempts=8, deadline_seconds=120))
    return Engine(settings, Store.open(settings.state.path), sentry, tracker)


def timed(engine: Any, emulators: Emulators) -> dict[str, Any]:
    emulators.call("clear")
    wall, cpu = time.perf_counter(), time.process_time()
    report = engine.run_cycle(respect_backoff=True)
    row = {
        "wall_s": round(time.perf_counter() - wall, 2),
        "cpu_s": round(time.process_time() - cpu, 2),
        "full": report.full,
        "ok": report.ok,
        "writes_sentry": report.writes("sentry"),
        "writes_tracker": report.writes("tracker"),
        "created": len(report.created),
    }
    for side, numbers in emulators.call("stats").items():
        row[f"{side}_requests"] = numbers["requests"]
        row[f"{side}_429"] = numbers["429"]
        row[f"{side}_detail_puts"] = numbers["sentry_detail_writes"]
        row[f"{side}_list_reads"] = numbers["list_reads"]
    return row


def bench_size(
    n: int, k: int, m: int, latency: float, concurrency: int, max_changes: int | None = MAX_CHANGES
) -> dict[str, Any]:
    emulators = Emulators(latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(Path(tmp), emulators.urls, concurrency, max_changes)
            pairs = []
            while len(pairs) < n:
                pairs += emulators.call("seed", min(10_000, n - len(pairs)))
            engine.store.add_links(pairs)
            del pairs  # the benchmark's own list must not count as the bridge's memory
            first = timed(engine, emulators)  # full: reads every link, learns the users
            timed(engine, emulators)  # incremental: the cursor moves past start-up
            idle = timed(engine, emulators)
            kinds = emulators.call("change", k)
            changes = timed(engine, emulators)
            emulators.call("create", m)
            created = timed(engine, emulators)
            reads = idle["sentry_requests"] + idle["tracker_requests"]
            floor_latency = (reads + k) * latency / concurrency
            # The issue's floor: the largest of the latency bound and each rate-limited endpoint's
            # requests / limit (Sentry's issue list at 20/s, its issue detail at 5/s).
            floor_rate = max(changes["sentry_detail_puts"] / SENTRY_DETAIL_LIMIT,
                             changes["sentry_list_reads"] / SENTRY_LIST_LIMIT)
            floor = max(floor_latency, floor_rate)
            return {
                "n": n,
                "max_changes_per_cycle": engine.settings.sync.mass_change_limit(n),
                "first_full_cycle": first,
                "idle": idle,
                "idle_budget": math.ceil(n / 100) + USERS + 5,
                "changes": {**changes, "k": k, "kinds": kinds, "floor_s": round(floor, 2),
                            "ratio_to_floor": round(changes["wall_s"] / floor, 2) if floor else None},
                "create": created,
                "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            }
    finally:
        emulators.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--changes", type=int, default=1000)
    parser.add_argument("--create", type=int, default=100)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--max-changes", default=str(MAX_CHANGES),
                        help="sync.max_changes_per_cycle, or 'default' for the product's default (20%% of links, "
                             "at least 50); writes overlap the read only once the guard cannot be crossed")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    latency = args.latency_ms / 1000
    max_changes = None if args.max_changes == "default" else int(args.max_changes)
    rows = []
    for n in (int(x) for x in args.sizes.split(",")):
        # A fresh process per size, so that peak RSS belongs to that size alone.
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        proc = ctx.Process(target=_one, args=(child, n, min(args.changes, n), args.create, latency, args.concurrency,
                                                     max_changes))
        proc.start()
        rows.append(parent.recv())
        proc.join()
        print_row(rows[-1], latency, args.concurrency)
    print_table(rows)
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


def _one(
    conn: Connection, n: int, k: int, m: int, latency: float, concurrency: int, max_changes: int | None
) -> None:
    conn.send(bench_size(n, k, m, latency, concurrency, max_changes))


def print_row(row: dict[str, Any], latency: float, concurrency: int) -> None:
    idle, ch, cr, first = row["idle"], row["changes"], row["create"], row["first_full_cycle"]
    lines = [
        f"N={row['n']:>7}  latency={latency * 1000:.0f}ms concurrency={concurrency}  "
        f"max_changes_per_cycle={row['max_changes_per_cycle']}  "
        f"peak RSS {row['peak_rss_mb']} MB",
        f"  first full cycle  {first['wall_s']:>7}s  requests sentry={first['sentry_requests']} "
        f"tracker={first['tracker_requests']}",
        f"  idle cycle        {idle['wall_s']:>7}s cpu {idle['cpu_s']}s  requests sentry={idle['sentry_requests']} "
        f"tracker={idle['tracker_requests']} (budget {row['idle_budget']})",
        f"  K={ch['k']} changes  {ch['wall_s']:>7}s cpu {ch['cpu_s']}s  writes sentry={ch['writes_sentry']} "
        f"tracker={ch['writes_tracker']}  requests sentry={ch['sentry_requests']} tracker={ch['tracker_requests']}",
        f"                    429s sentry={ch['sentry_429']} tracker={ch['tracker_429']}  floor {ch['floor_s']}s  "
        f"ratio {ch['ratio_to_floor']}",
        f"  create {cr['created']:>4}       {cr['wall_s']:>7}s  requests sentry={cr['sentry_requests']} "
        f"tracker={cr['tracker_requests']}",
    ]
    print("\n".join(lines))
    sys.stdout.flush()


def print_table(rows: list[dict[str, Any]]) -> None:
    """The figures the scale targets name, one row per N."""
    head = ("N", "idle req", "budget", "idle cpu s", "K wall s", "floor s", "ratio", "429s", "peak RSS MB",
            "create s")
    lines = [head]
    for row in rows:
        idle, ch, cr = row["idle"], row["changes"], row["create"]
        lines.append((
            str(row["n"]), str(idle["sentry_requests"] + idle["tracker_requests"]), str(row["idle_budget"]),
            str(idle["cpu_s"]), str(ch["wall_s"]), str(ch["floor_s"]), str(ch["ratio_to_floor"]),
            str(ch["sentry_429"] + ch["tracker_429"]), str(row["peak_rss_mb"]), str(cr["wall_s"]),
        ))
    widths = [max(len(line[i]) for line in lines) for i in range(len(head))]
    print()
    for line in lines:
        print("  ".join(cell.rjust(width) for cell, width in zip(line, widths, strict=True)))
    sys.stdout.flush()


if __name__ == "__main__":
    sys.exit(main())
