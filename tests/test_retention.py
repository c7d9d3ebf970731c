"""Issue 13, item 4 through the real CLI: journal and cycle history are pruned after
state.keep_days, and an unchanged conflict or unmapped value is journaled and warned about once,
not every cycle; text log lines name the link."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv


def rows(env: BridgeEnv, sql: str, *params: object) -> list[tuple[object, ...]]:
    with sqlite3.connect(env.state_path) as db:
        return [tuple(r) for r in db.execute(sql, params)]


def test_history_older_than_keep_days_is_pruned_but_not_the_last_success(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(state={"keep_days": 7})
    sid, key = env.pair(status="resolved", substatus=None)
    env.link((sid, key))
    env.sync_json()  # journals the close
    old = (datetime.now(UTC) - timedelta(days=8)).isoformat(timespec="seconds")
    older = (datetime.now(UTC) - timedelta(days=9)).isoformat(timespec="seconds")
    with sqlite3.connect(env.state_path) as db:
        db.execute("UPDATE journal SET at = ?", [old])
        db.execute("UPDATE cycles SET started = ?, finished = ?", [older, older])  # the only success, and old
        db.execute("INSERT INTO cycles (started, finished, ok, dry_run) VALUES (?, ?, 0, 0)", [old, old])
    env.sentry.inject("status", status=503, method="GET", path=r"/members/$", times=1000)
    env.expect(1, "sync")  # a failing cycle: the old success must survive the pruning
    assert rows(env, "SELECT count(*) FROM journal") == [(0,)]
    started = [r[0] for r in rows(env, "SELECT started FROM cycles ORDER BY id")]
    assert started[0] == older and len(started) == 2  # the last success (old) and the new cycle
    assert env.status_json()["last_success"] == older
    assert env.status_json()["links"] == 1  # links and baselines are never pruned


def test_an_unchanged_unmapped_value_is_said_once(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    sid, key = env.pair(assignee="dan@example.com")  # dan has no Tracker account
    env.link((sid, key))
    first = env.expect(0, "sync")
    assert f"{sid} <-> {key} assignee not synced" in first.err
    for _ in range(3):
        again = env.expect(0, "sync")
        assert "not synced" not in again.err, again.err
    assert rows(env, "SELECT action, value FROM journal WHERE field = 'assignee'") == [("unmapped", "dan@example.com")]
    # Once it is gone and comes back, it is news again.
    env.sentry.assign(sid, "bob@example.com")
    env.expect(0, "sync")
    env.sentry.assign(sid, "dan@example.com")
    assert "not synced" in env.expect(0, "sync").err
    assert rows(env, "SELECT count(*) FROM journal WHERE action = 'unmapped'") == [(2,)]


def test_an_unmapped_value_that_goes_without_a_write_is_news_when_it_returns(bridge_env: BridgeEnv) -> None:
    """dan (no Tracker account) is unassigned in Sentry: both sides now agree on nobody, so no
    write is journaled.  When dan is assigned again, that is said again, not taken as a repeat."""
    env = bridge_env
    sid, key = env.pair(assignee="dan@example.com")
    env.link((sid, key))
    assert "assignee not synced" in env.expect(0, "sync").err
    env.sentry.assign(sid, None)
    env.expect(0, "sync")
    assert rows(env, "SELECT action, outcome FROM journal WHERE field = 'assignee' ORDER BY id") == [
        ("unmapped", "skipped"), ("unmapped_over", "settled")]
    env.expect(0, "sync")  # said once: gone stays gone without another row
    assert rows(env, "SELECT count(*) FROM journal WHERE field = 'assignee'") == [(2,)]
    env.sentry.assign(sid, "dan@example.com")
    assert "assignee not synced" in env.expect(0, "sync").err
    assert rows(env, "SELECT count(*) FROM journal WHERE action = 'unmapped'") == [(2,)]


def test_an_unchanged_conflict_is_journaled_and_warned_about_once(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(sync={"conflict": "manual"})
    sid, key = env.pair()
    env.link((sid, key))
    env.sync_json()
    env.sentry.set_status(sid, "resolved")
    env.tracker.set_status(key, "inProgress", by="bob")
    first = env.expect(0, "sync")
    assert f"{sid} <-> {key} status conflict" in first.err
    for _ in range(3):
        assert "status conflict" not in env.expect(0, "sync").err
    assert rows(env, "SELECT count(*) FROM journal WHERE action = 'conflict'") == [(1,)]
    # It changes (the ticket moves on, still apart): said again.
    env.tracker.set_status(key, "needInfo", by="bob")
    assert "status conflict" in env.expect(0, "sync").err
    assert rows(env, "SELECT count(*) FROM journal WHERE action = 'conflict'") == [(2,)]


def test_text_log_lines_name_the_link(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    sid, key = env.pair(status="resolved", substatus=None)
    env.link((sid, key))
    env.tracker.inject("status", status=409, method="POST", path=r"/_execute/?$", times=1000)
    result = env.run("sync")
    about_the_link = [line for line in result.err.splitlines() if "cycle done" not in line]
    assert len(about_the_link) >= 3 and all(sid in line for line in about_the_link), result.err
