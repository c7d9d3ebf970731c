"""Issue 13, item 3: SIGTERM (what `systemctl stop` sends the timer's oneshot unit) and SIGINT
(Ctrl-C) during a one-shot `sync`, through the real program in a child process: the links in hand
are committed, the journal holds every write the servers received, the cycle is closed as
interrupted, and the exit code is 128 + the signal.  Ctrl-C stops `demo` at once with a line."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv

ROOT = Path(__file__).resolve().parents[1]
PAIRS = 30


def tracker_writes(env: BridgeEnv) -> int:
    return len([r for r in env.tracker.writes() if r.status == 200])


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_during_sync_finishes_the_links_in_hand_and_exits(bridge_env: BridgeEnv, sig: signal.Signals,
                                                                   code: int) -> None:
    env = bridge_env
    env.config(sync={"concurrency": 2, "max_changes_per_cycle": 1000})
    # Every Sentry issue is resolved while its ticket is open: each link needs a transition.
    pairs = [env.pair(status="resolved", substatus=None) for _ in range(PAIRS)]
    env.link(*pairs)
    env.tracker.latency_seconds = env.sentry.latency_seconds = 0.05
    process = subprocess.Popen([sys.executable, "-m", "bridge", "--config", str(env.path), "sync"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT)
    deadline = time.monotonic() + 30
    while tracker_writes(env) < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert tracker_writes(env) >= 3, "the sync never started writing"
    process.send_signal(sig)
    out, err = process.communicate(timeout=60)
    env.tracker.latency_seconds = env.sentry.latency_seconds = 0.0
    assert process.returncode == code, (out, err)
    assert f"stopped by {sig.name}" in err and "Traceback" not in err, err
    closed = [key for _, key in pairs if env.t_state(key)[0] == "closed"]
    assert 0 < len(closed) < PAIRS, "stopped neither after the first link nor after the last"
    with sqlite3.connect(env.state_path) as db:
        journaled = {row[0] for row in db.execute(
            "SELECT tracker_key FROM journal WHERE action = 'WriteTrackerStatus' AND outcome = 'ok'")}
        unsettled = db.execute("SELECT count(*) FROM pending_writes").fetchone()[0]
    # Every ticket the bridge closed is in the journal, with nothing left unsettled.
    assert set(closed) <= journaled and unsettled == 0, (closed, journaled, unsettled)
    status = env.status_json()
    assert status["last_cycle"]["result"] == "interrupted" and status["last_cycle"]["ok"] is False
    # The next run carries on where this one stopped, and only there.
    report = env.sync_json()
    assert report["writes_tracker"] == PAIRS - len(closed)
    assert all(env.t_state(key)[0] == "closed" for _, key in pairs)


def test_a_cycle_whose_process_died_is_shown_interrupted_not_running(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.sync_json()
    with sqlite3.connect(env.state_path) as db:  # what SIGKILL leaves: a cycle never closed
        db.execute("INSERT INTO cycles (started, dry_run) VALUES ('2026-12-05T10:00:00+00:00', 0)")
    assert env.status_json()["last_cycle"]["result"] == "interrupted"
    assert "interrupted" in env.expect(0, "status").out


def test_ctrl_c_stops_the_demo_at_once() -> None:
    process = subprocess.Popen([sys.executable, "-m", "bridge", "demo"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    assert process.stdout is not None
    lines: list[str] = []
    for line in process.stdout:  # wait until it is well into its steps
        lines.append(line)
        if line.startswith("== 3."):
            break
    process.send_signal(signal.SIGINT)
    rest, err = process.communicate(timeout=30)
    assert process.returncode == 130, (rest, err)
    assert "== 5." not in rest, "the demo carried on after Ctrl-C"
    assert "demo stopped (Ctrl-C)" in rest + err
    assert "Traceback" not in err, err


def test_status_json_names_each_cycle_result(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.sync_json()
    data = json.loads(env.expect(0, "status", "--json").out)
    assert data["last_cycle"]["result"] == "ok"
    assert [c["result"] for c in data["cycles"]] == ["ok"]
