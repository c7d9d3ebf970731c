"""On-demand push benchmark for issue 15 (not part of the default suite):

    python -m tests.bench.bench_push [--parts latency,oneshot,idle] [--links 10000] [--changes 100]
        [--over 60] [--latency-ms 50] [--oneshot-links 1000] [--idle-links 100000] [--json FILE]

The emulators of both APIs run in a child process on loopback, each request answered after a
fixed latency, with the rate limits of bench_scale (Sentry advertises 20/s for issue lists and 5/s
for issue detail; Tracker answers 429 beyond 50/s).  The Sentry emulator sends signed webhooks for
people's changes; the Tracker emulator's queue trigger (made by `push setup`) sends its request.

  latency  `run` as a child process with hooks on, over `--links` linked pairs, all settings at
           their defaults; `--changes` changes by people on either side (status and assignee,
           Sentry and Tracker in turn) spread evenly over `--over` seconds.  For each change, the
           time from the change to the other side showing it (watched in the emulator process
           every 10 ms): p50, p95, max.  Also the requests per side over the window and the
           daemon's peak RSS.
  oneshot  two `sync --json` runs through the CLI at `--oneshot-links`: the second one is idle
           and incremental; its requests against the budget ceil(N/100) + mapped users + 5.
  idle     one engine (as `run` keeps it) at `--idle-links` with trusted Sentry hooks: requests
           per idle cycle of each kind (full, focused with a slice, hinted), and the average over
           one rotation of `sync.full_resync_every` cycles, beside an unfocused incremental cycle.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tests.bench.bench_scale import USERS, seed, shared_command, start_emulators
from tests.bench.bench_scale import Emulators as ScaleEmulators

SENTRY_SECRET = "bench-sentry-client-secret"  # noqa: S105 - the benchmark's own throwaway values
TRACKER_SECRET = "bench-tracker-shared-secret"  # noqa: S105
REPO = Path(__file__).resolve().parents[2]
KINDS = ("sentry_status", "tracker_status", "sentry_assignee", "tracker_assignee")


# -- the emulator process ------------------------------------------------------------------------


def serve(conn: Connection, latency: float) -> None:
    """Child process: both emulators on loopback, driven by commands over `conn`."""
    from bridge.sandbox.tracker_emulator import ROBOT_LOGIN

    sentry, tracker, servers = start_emulators(latency)
    tracker.set_rights("OPS", ROBOT_LOGIN, {"READ": "users", "WRITE": "users", "CREATE": "users", "GRANT": "users"})
    conn.send({"sentry": servers[0].url, "tracker": servers[1].url})
    pairs: list[tuple[str, str]] = []
    while True:
        command, arg = conn.recv()
        if command == "seed":
            conn.send(seed(sentry, tracker, pairs, arg))
        elif command == "hooks":
            sentry.subscribe_webhooks(arg, SENTRY_SECRET)
            conn.send(True)
        elif command == "changes":
            conn.send(changes(sentry, tracker, pairs, *arg))
        elif shared_command(conn, command, sentry, tracker, servers):
            return


def changes(sentry: Any, tracker: Any, pairs: list[tuple[str, str]], count: int, over: float,
            settle: float) -> dict[str, Any]:
    """`count` people's changes on distinct links, evenly spread over `over` seconds, each kind
    in turn; returns the seconds from each change to the other side showing it."""
    rng = random.Random(15)  # noqa: S311 - which links change, reproducibly
    chosen = rng.sample(pairs, count)
    waiting: dict[int, tuple[float, Any]] = {}
    done: dict[int, tuple[str, float]] = {}
    lock = threading.Lock()
    finished = threading.Event()

    def crossed(kind: str, sid: str, key: str, user: int) -> Any:
        if kind == "sentry_status":
            return lambda: tracker.issue_json(key)["status"]["key"] == "closed"
        if kind == "tracker_status":
            return lambda: sentry.issue_json(sid)["status"] == "resolved"
        if kind == "sentry_assignee":
            return lambda: ((tracker.issue_json(key).get("assignee") or {}).get("id")
                            == tracker.uid_of(f"user{user}"))
        return lambda: (sentry.issue_json(sid).get("assignedTo") or {}).get("email") == f"user{user}@example.com"

    def watch() -> None:
        while not finished.is_set():
            with lock:
                items = list(waiting.items())
            for n, (started, check) in items:
                if check():
                    with lock:
                        waiting.pop(n, None)
                        done[n] = (KINDS[n % len(KINDS)], time.monotonic() - started)
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    begin = time.monotonic()
    for n, (sid, key) in enumerate(chosen):
        time.sleep(max(0.0, begin + n * over / count - time.monotonic()))
        kind, user = KINDS[n % len(KINDS)], n % USERS
        person, login = f"user{(user + 1) % USERS}@example.com", f"user{(user + 1) % USERS}"
        if kind == "sentry_status":
            sentry.set_status(sid, "resolved", by=person)
        elif kind == "tracker_status":
            tracker.set_status(key, "closed", resolution="fixed", by=login)
        elif kind == "sentry_assignee":
            sentry.assign(sid, f"user{user}@example.com", by=person)
        else:
            tracker.set_assignee(key, f"user{user}", by=login)
        with lock:
            waiting[n] = (time.monotonic(), crossed(kind, sid, key, user))
    deadline = time.monotonic() + settle
    while time.monotonic() < deadline:
        with lock:
            if not waiting:
                break
        time.sleep(0.05)
    finished.set()
    watcher.join()
    return {"seconds": sorted(s for _, s in done.values()),
            "by_kind": {k: sorted(s for kind, s in done.values() if kind == k) for k in KINDS},
            "not_crossed": len(waiting), "window_s": round(time.monotonic() - begin, 1)}


class Emulators(ScaleEmulators):
    """The scale benchmark's emulator process, with hooks and timed changes."""

    def __init__(self, latency: float) -> None:
        super().__init__(latency, serve)

    def seed(self, n: int) -> list[tuple[str, str]]:
        pairs: list[tuple[str, str]] = []
        while len(pairs) < n:
            pairs += self.call("seed", min(10_000, n - len(pairs)))
        return pairs


# -- helpers on the bridge side ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def write_config(folder: Path, urls: dict[str, str], push_port: int | None = None) -> Path:
    lines = [
        "[sentry]", f'url = "{urls["sentry"]}"', 'organization = "acme"', 'token = "sentry-token"', "",
        "[tracker]", f'url = "{urls["tracker"]}"', 'org_id = "1234567"', 'token = "tracker-token"', 'queue = "OPS"',
        "", "[state]", f'path = "{folder / "state.db"}"', "",
        # Above N: the benchmark's changes never meet the mass-change guard.
        "[sync]", "max_changes_per_cycle = 1000000", "",
    ]
    if push_port is not None:
        lines += ["[push]", "enabled = true", f'listen = "127.0.0.1:{push_port}"',
                  f'public_url = "http://127.0.0.1:{push_port}"', f'sentry_secret = "{SENTRY_SECRET}"',
                  f'tracker_secret = "{TRACKER_SECRET}"', ""]
    path = folder / "bridge.toml"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def cli(config: Path, *args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bridge", "--config", str(config), *args],  # noqa: S603
                          cwd=REPO, capture_output=True, text=True, timeout=timeout, check=False)


def add_links(state: Path, pairs: list[tuple[str, str]]) -> None:
    from bridge.store import Store

    store = Store.open(state)
    try:
        store.add_links(pairs)
    finally:
        store.close()


def percentile(values: list[float], q: float) -> float:
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 3) if len(values) > 1 \
        else round(values[0], 3) if values else float("nan")


# -- the parts -----------------------------------------------------------------------------------


def bench_latency(n: int, count: int, over: float, latency: float) -> dict[str, Any]:
    emulators = Emulators(latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            port = free_port()
            config = write_config(folder, emulators.urls, port)
            add_links(folder / "state.db", emulators.seed(n))
            setup = cli(config, "push", "setup")
            if setup.returncode != 0:
                raise RuntimeError(f"push setup failed: {setup.stderr}")
            emulators.call("hooks", f"http://127.0.0.1:{port}/hooks/sentry")
            log = folder / "daemon.log"
            with log.open("wb") as err:
                daemon = subprocess.Popen(  # noqa: S603
                    [sys.executable, "-m", "bridge", "--log-format", "json", "--config", str(config), "run"],
                    cwd=REPO, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
            try:
                started = time.monotonic()
                while not cycles(log) and time.monotonic() - started < 600:
                    time.sleep(0.5)
                first = cycles(log)[0]
                first_s = round(time.monotonic() - started, 1)
                emulators.call("clear")
                before = len(cycles(log))
                result = emulators.call("changes", (count, over, 60.0))
                window = cycles(log)[before:]
                load = emulators.call("stats")
                rss = peak_rss_mb(daemon.pid)
            finally:
                daemon.terminate()
                daemon.wait(60)
    finally:
        emulators.close()
    seconds = result["seconds"]
    kinds: dict[str, int] = {}
    for c in window:
        kinds[c["cycle_kind"]] = kinds.get(c["cycle_kind"], 0) + 1
    return {
        "n": n, "changes": count, "over_s": over, "latency_ms": latency * 1000,
        "first_cycle": {"kind": first["cycle_kind"], "links_read": first["links_read"], "wall_s": first_s},
        "crossed": len(seconds), "not_crossed": result["not_crossed"],
        "p50_s": percentile(seconds, 50), "p95_s": percentile(seconds, 95), "max_s": round(max(seconds), 3),
        "p95_by_kind_s": {k: percentile(v, 95) for k, v in result["by_kind"].items() if v},
        "cycles_in_window": kinds, "links_read_in_window": sum(c["links_read"] for c in window),
        "requests_in_window": {side: v["requests"] for side, v in load.items()},
        "429s_in_window": {side: v["429"] for side, v in load.items()},
        "window_s": result["window_s"], "daemon_peak_rss_mb": rss,
    }


def cycles(log: Path) -> list[dict[str, Any]]:
    found = []
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("event") == "cycle.summary":
            found.append(record)
    return found


def peak_rss_mb(pid: int) -> float | None:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:
        return None
    return None


def bench_oneshot(n: int) -> dict[str, Any]:
    emulators = Emulators(0.0)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            config = write_config(folder, emulators.urls)
            add_links(folder / "state.db", emulators.seed(n))
            runs = []
            for _ in range(2):
                done = cli(config, "sync", "--json")
                if done.returncode != 0:
                    raise RuntimeError(f"sync failed: {done.stderr}")
                runs.append(json.loads(done.stdout))
    finally:
        emulators.close()
    idle = runs[1]
    return {"n": n, "full_first": runs[0]["full"], "idle_kind": idle["cycle_kind"], "idle_requests": idle["requests"],
            "idle_total": sum(idle["requests"].values()), "budget": math.ceil(n / 100) + USERS + 5}


def bench_idle(n: int, latency: float) -> dict[str, Any]:
    from bridge.core.focus import Focus
    from tests.bench.bench_scale import make_engine

    emulators = Emulators(latency)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            engine = make_engine(Path(tmp), emulators.urls, concurrency=4, full_resync_every=10)
            engine.store.add_links(emulators.seed(n))
            rows = []

            def cycle(focus: Any, label: str) -> None:
                emulators.call("clear")
                wall = time.perf_counter()
                report = engine.run_cycle(respect_backoff=True, focus=focus)
                load = emulators.call("stats")
                rows.append({"label": label, "kind": report.kind, "links_read": report.summary()["links_read"],
                             "sentry": load["sentry"]["requests"], "tracker": load["tracker"]["requests"],
                             "wall_s": round(time.perf_counter() - wall, 2)})

            cycle(Focus(), "first (full)")
            cycle(None, "incremental without hooks")
            for i in range(10):
                cycle(Focus(), f"scheduled {i + 1} with trusted hooks")
            cycle(Focus(hinted=True), "hinted, nothing named")
    finally:
        emulators.close()
    rotation = rows[2:12]
    return {"n": n, "full_resync_every": 10, "cycles": rows,
            "per_cycle_over_rotation": round(sum(r["sentry"] + r["tracker"] for r in rotation) / len(rotation), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", default="latency,oneshot,idle")
    parser.add_argument("--links", type=int, default=10_000)
    parser.add_argument("--changes", type=int, default=100)
    parser.add_argument("--over", type=float, default=60.0)
    parser.add_argument("--latency-ms", type=float, default=50)
    parser.add_argument("--oneshot-links", type=int, default=1000)
    parser.add_argument("--idle-links", type=int, default=100_000)
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args(argv)
    os.environ.setdefault("PYTHONPATH", str(REPO))
    latency = args.latency_ms / 1000
    parts = args.parts.split(",")
    out: dict[str, Any] = {}
    if "oneshot" in parts:
        out["oneshot"] = bench_oneshot(args.oneshot_links)
        print(json.dumps(out["oneshot"]), flush=True)
    if "latency" in parts:
        out["latency"] = bench_latency(args.links, args.changes, args.over, latency)
        print(json.dumps(out["latency"], indent=1), flush=True)
    if "idle" in parts:
        out["idle"] = bench_idle(args.idle_links, latency)
        for row in out["idle"]["cycles"]:
            print(f"  {row['label']:<36} {row['kind']:<12} links read {row['links_read']:>7}  requests "
                  f"sentry={row['sentry']:>5} tracker={row['tracker']:>5}  {row['wall_s']:>6} s", flush=True)
        print(f"  average over one rotation of 10 scheduled cycles: {out['idle']['per_cycle_over_rotation']} requests")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
