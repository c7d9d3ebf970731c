"""On-demand benchmark of linking (not part of the default suite):

    python -m tests.bench.bench_linking [--create 100] [--relink 1000] [--json FILE]

Both emulators run on loopback (real HTTP); it measures what creating N new issues costs per
side (requests, wall time), and what `relink` costs on a lost state file with M linked issues.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bridge.clients.http import RetryPolicy
from bridge.config import Settings
from bridge.connect import open_clients
from bridge.engine import Engine
from bridge.sandbox.http import LoopbackServer
from bridge.sandbox.sentry_emulator import SentryEmulator
from bridge.sandbox.tracker_emulator import TrackerEmulator
from bridge.store import Store


def engine_for(folder: Path, s_url: str, t_url: str) -> Engine:
    settings = Settings(
        sentry={"url": s_url, "organization": "acme", "token": "sentry-token"},
        tracker={"url": t_url, "org_id": "1234567", "token": "tracker-token", "queue": "OPS"},
        state={"path": folder / "state.db"},
        create={"enabled": True, "max_per_cycle": 100_000},
    )
    store = Store.open(settings.state.path)
    sentry, tracker = open_clients(settings, policy=RetryPolicy(waits=False))
    return Engine(settings, store, sentry, tracker)


def seed_people(sentry: SentryEmulator, tracker: TrackerEmulator) -> None:
    sentry.add_project("backend")
    for i in range(5):
        sentry.add_user(f"user{i}@example.com")
        tracker.add_user(f"user{i}", f"user{i}@example.com")


def measure(engine: Engine, sentry: SentryEmulator, tracker: TrackerEmulator, action: Any) -> dict[str, Any]:
    sentry.clear_log()
    tracker.clear_log()
    cpu, wall = time.process_time(), time.perf_counter()
    result = action()
    return {
        "wall_s": round(time.perf_counter() - wall, 3),
        "cpu_s": round(time.process_time() - cpu, 3),
        "sentry_requests": len(sentry.requests()),
        "tracker_requests": len(tracker.requests()),
        "sentry_writes": len(sentry.writes()),
        "tracker_writes": len(tracker.writes()),
        "result": result,
    }


def bench_create(n: int) -> dict[str, Any]:
    sentry, tracker = SentryEmulator(), TrackerEmulator()
    seed_people(sentry, tracker)
    with tempfile.TemporaryDirectory() as tmp, LoopbackServer(sentry) as s, LoopbackServer(tracker) as t:
        engine = engine_for(Path(tmp), s.url, t.url)
        engine.run_cycle()  # sets the watermark
        for i in range(n):
            sentry.add_issue("backend", f"error {i}", assignee=f"user{i % 5}@example.com")
        row = measure(engine, sentry, tracker, lambda: engine.run_cycle().summary()["created"])
        row["second_cycle"] = measure(engine, sentry, tracker, lambda: engine.run_cycle().summary()["created"])
        del row["second_cycle"]["result"]
        return row


def bench_relink(m: int) -> dict[str, Any]:
    sentry, tracker = SentryEmulator(), TrackerEmulator()
    seed_people(sentry, tracker)
    with tempfile.TemporaryDirectory() as tmp, LoopbackServer(sentry) as s, LoopbackServer(tracker) as t:
        folder = Path(tmp)
        engine = engine_for(folder, s.url, t.url)
        engine.run_cycle()
        for i in range(m):
            sentry.add_issue("backend", f"error {i}")
        engine.run_cycle()
        engine.store.close()
        for suffix in ("", "-wal", "-shm"):
            (folder / f"state.db{suffix}").unlink(missing_ok=True)
        fresh = engine_for(folder, s.url, t.url)
        row = measure(fresh, sentry, tracker, lambda: fresh.relink()["linked"])
        after = measure(fresh, sentry, tracker, lambda: fresh.run_cycle().summary()["planned_writes"])
        row["next_sync_writes"] = after["sentry_writes"] + after["tracker_writes"]
        return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--create", type=int, default=100)
    parser.add_argument("--relink", type=int, default=1000)
    parser.add_argument("--json", help="write the figures here too")
    args = parser.parse_args(argv)
    rows = {"create": bench_create(args.create), "relink": bench_relink(args.relink)}
    rows["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    for name, row in rows.items():
        print(f"{name:8} {row}")
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
