"""Readable output: rich tables on a terminal, plain text (or JSON) anywhere else, progress bars
that vanish off a terminal, and the `status` cycles view."""

from __future__ import annotations

import contextlib
import io
import json
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from bridge import render
from bridge.cli import main
from bridge.clients.http import RetryPolicy
from bridge.engine import CycleReport

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv

BOX = "┏"
ANSI = re.compile(r"\x1b\[[0-9;]*m")


class Terminal(io.StringIO):
    """What a person's terminal looks like to the program."""

    def isatty(self) -> bool:
        return True


class FakeContext:
    def __init__(self, out: io.StringIO) -> None:
        self.out = out

    @property
    def is_terminal(self) -> bool:
        return bool(self.out.isatty())


@pytest.fixture(autouse=True)
def _wide(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")


def on_terminal(env: BridgeEnv, *args: str) -> tuple[int, str]:
    out = Terminal()
    with contextlib.redirect_stderr(io.StringIO()):
        code = main(["--config", str(env.path), *args], env={}, out=out, retry_policy=RetryPolicy(waits=False))
    return code, ANSI.sub("", out.getvalue())  # the text a person reads, without the colour codes


def three_links(env: BridgeEnv) -> list[tuple[str, str]]:
    pairs = [env.pair(status="resolved", substatus=None), env.pair(), env.pair()]
    env.sentry.assign(pairs[2][0], "dan@example.com")  # no Tracker user: reported, not synced
    env.link(*pairs)
    return pairs


def test_dry_run_on_a_terminal_is_tables_grouped_by_action(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    three_links(env)
    code, out = on_terminal(env, "sync", "--dry-run")
    assert code == 0
    assert BOX in out
    titles = ["Tracker: move status (1)", "Not synced: no counterpart (1)", "In step: baseline moves, no write (7)"]
    positions = [out.index(t) for t in titles]
    assert positions == sorted(positions)  # writes first, the quiet ones last
    assert "closed / fixed" in out and "no Tracker user for dan@example.com" in out
    assert "Dry run" in out and "nothing was written" in out
    assert "Result" not in out
    assert env.tracker.writes() == []


def test_off_a_terminal_the_output_stays_plain_and_json_stays_json(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    three_links(env)
    plain = env.expect(0, "sync", "--dry-run").out
    assert BOX not in plain and "\x1b[" not in plain
    assert "planned: links 3; writes planned 1;" in plain
    code, out = on_terminal(env, "sync", "--dry-run", "--json")
    assert code == 0 and json.loads(out)["planned_writes"] == 1


def test_real_sync_on_a_terminal_shows_each_write_result_and_a_summary(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    three_links(env)
    code, out = on_terminal(env, "sync")
    assert code == 0
    assert "Result" in out and " ok " in out
    assert "Cycle complete" in out
    assert "sentry 0, tracker 1" in out  # the writes line of the summary


def test_tables_are_capped(bridge_env: BridgeEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    env = bridge_env
    three_links(env)
    monkeypatch.setattr(render, "ROWS_SHOWN", 2)
    _code, out = on_terminal(env, "sync", "--dry-run")
    assert "and 5 more (--json lists every one)" in out


def test_progress_is_a_bar_on_a_terminal_and_silent_elsewhere() -> None:
    plain = io.StringIO()
    with render.progress(FakeContext(plain), 3, "creating") as bar:  # type: ignore[arg-type]
        for _ in range(3):
            bar.advance()
    assert bar.completed == 3
    assert plain.getvalue() == ""

    tty = Terminal()
    with render.progress(FakeContext(tty), 4, "creating") as bar:  # type: ignore[arg-type]
        bar.advance(4)
    assert bar.completed == 4
    assert tty.getvalue() != ""


def test_summary_items_leave_out_zero_counts() -> None:
    report = CycleReport(dry_run=False, started=datetime(2026, 1, 1, tzinfo=UTC),
                         finished=datetime(2026, 1, 1, 0, 0, 2, tzinfo=UTC), links=4,
                         requests={"sentry": 3, "tracker": 5})
    items = dict(render.summary_items(report))
    assert items == {"links": "4", "writes": "sentry 0, tracker 0", "failed": "0", "conflicts": "0",
                     "requests": "sentry 3, tracker 5", "time": "2.00s"}
    report.would_create.append("123")
    assert dict(render.summary_items(report))["would create"] == "1"


def test_doctor_on_a_terminal(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.pair()
    env.config(mapping={"users": {"carol@corp.example": "carol"}})
    code, out = on_terminal(env, "doctor")
    assert code == 0
    assert "PASS" in out and "WARN" in out and BOX in out
    assert "users: [mapping.users]" in out  # a check name is text, never markup
    assert "0 failed" in out


def status(env: BridgeEnv) -> dict[str, Any]:
    return env.status_json()


def test_status_shows_cycles_with_durations_and_keeps_the_json_contract(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    three_links(env)
    env.sync_json()
    env.sync_json()
    data = status(env)
    for key in ("links", "conflicts", "failures", "pending_intents", "last_cycle", "last_success"):
        assert key in data
    assert set(data["last_cycle"]) >= {"started", "finished", "ok", "writes"}
    assert data["last_cycle"]["writes"] == 0 and data["last_cycle"]["ok"] is True
    assert len(data["cycles"]) == 2 and data["cycles"][1]["writes_tracker"] == 1
    assert all(isinstance(c["duration_seconds"], float) for c in data["cycles"])

    plain = env.expect(0, "status").out
    assert "links: 3   conflicts: 0   held: 0   failures: 0   pending intents: 0   pending writes: 0" in plain
    assert "cycles (newest first):" in plain and plain.count(" took ") == 2

    code, out = on_terminal(env, "status")
    assert code == 0 and "Last 2 cycles" in out and BOX in out and "Writes S/T" in out


def test_conflicts_on_a_terminal(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(sync={"conflict": "manual"})
    sid, key = env.pair()
    env.link((sid, key))
    env.sync_json()
    env.sentry.set_status(sid, "resolved")
    env.tracker.set_status(key, "inProgress", by="bob")
    env.sync_json()
    code, out = on_terminal(env, "conflicts")
    assert code == 0 and "Open conflicts (1)" in out and "inProgress" in out
    code, out = on_terminal(env, "status")
    assert "Open conflicts" in out
