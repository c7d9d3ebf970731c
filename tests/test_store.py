"""The store: migrations, one transaction per link (a crash inside it leaves nothing half
written), value round-trips, owned followers, failures with backoff, conflicts, the lock."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.core.actions import AddFollowers, WriteTracker
from bridge.core.linkrun import Link, LinkRun
from bridge.core.outcomes import Attempt, JournalEntry, Pending
from bridge.core.values import Field, Pair
from bridge.errors import LockHeldError
from bridge.store import StateLock, Store, decode, encode

LINK = Link("1", "OPS-1", "manual", "")


def run(baselines: dict[Field, Pair] | None = None, **kw: object) -> LinkRun:
    """A link's run as the engine leaves it (`kw`: owned_added, journal, conflicts, ...)."""
    result = LinkRun(LINK, baselines=dict(baselines or {}))
    for name, value in kw.items():
        setattr(result, name, value)
    return result


@pytest.fixture
def store(tmp_path: Path) -> Store:
    s = Store.open(tmp_path / "state.db")
    s.add_link("1", "OPS-1")
    return s


def test_values_round_trip() -> None:
    for value in (None, "open", "unresolved.regressed", frozenset(), frozenset({"b", "a"})):
        assert decode(encode(value)) == value


def test_schema_is_migrated_once_and_wal_is_on(tmp_path: Path) -> None:
    Store.open(tmp_path / "s.db").close()
    again = Store.open(tmp_path / "s.db")
    names = [r["name"] for r in again.db.query("SELECT name FROM _sqlite_migrations")]
    assert names == ["m001_initial", "m002_backlinks", "m003_tracker_cache", "m004_outcomes",
                     "m005_intent_backoff", "m006_one_note_per_attempt", "m007_history_by_time", "m008_workflow"]
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_commit_run_is_one_transaction(store: Store) -> None:
    store.commit_run(run({"status": Pair("resolved", "closed")}, owned_added={"carol"},
                         journal=[JournalEntry("tracker", "status", "WriteTrackerStatus", "closed", "ok")]))
    assert store.baselines() == {"1": {"status": Pair("resolved", "closed")}}
    assert store.owned_followers() == {"1": frozenset({"carol"})}
    assert len(store.journal("1")) == 1


def test_a_crash_inside_the_commit_leaves_nothing(store: Store, monkeypatch: pytest.MonkeyPatch) -> None:
    original = store._journal
    calls = {"n": 0}

    def crash(*args: object, **kw: object) -> None:
        calls["n"] += 1
        raise sqlite3.OperationalError("disk I/O error (simulated)")

    monkeypatch.setattr(store, "_journal", crash)
    with pytest.raises(sqlite3.OperationalError):
        store.commit_run(run({"status": Pair("resolved", "closed")}, owned_added={"carol"},
                             journal=[JournalEntry("tracker", "status", "x", "closed", "ok")]))
    monkeypatch.setattr(store, "_journal", original)
    assert calls["n"] == 1
    assert store.baselines() == {}
    assert store.owned_followers() == {}


def test_a_killed_process_leaves_the_last_commit_intact(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    script = f"""
import os
from bridge.core.linkrun import Link, LinkRun
from bridge.core.values import Pair
from bridge.store import Store
s = Store.open({str(path)!r})
s.add_link("1", "OPS-1")
s.commit_run(LinkRun(Link("1", "OPS-1", "manual", ""), baselines={{"status": Pair("resolved", "closed")}}))
s.db.execute("BEGIN")
s.db.execute("UPDATE baselines SET tracker_value = '\\"open\\"'")
os._exit(9)   # killed in the middle of the next transaction
"""
    subprocess.run([sys.executable, "-c", script], check=False)
    assert Store.open(path).baselines() == {"1": {"status": Pair("resolved", "closed")}}


def test_owned_followers_pruned_to_current_followers(store: Store) -> None:
    store.commit_run(run(owned_added={"carol", "bob"}))
    store.commit_run(run(), followers_seen=frozenset({"bob"}))
    assert store.owned_followers() == {"1": frozenset({"bob"})}


def test_failures_back_off_exponentially_with_a_cap(store: Store) -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    for _ in range(12):
        attempts = store.record_failure("1", "OPS-1", "boom", backoff_max_seconds=600, now=t0)
    assert attempts == 12
    row = store.failures()[0]
    assert row["next_try"] == (t0 + timedelta(seconds=600)).isoformat(timespec="seconds")
    assert store.not_due(t0) == {"1"}
    assert store.not_due(t0 + timedelta(seconds=601)) == set()
    store.commit_run(run())
    assert store.failures() == []


def test_conflicts_open_once_and_settle(store: Store) -> None:
    store.commit_run(run(conflicts={"status": Pair("ignored", "inProgress")}))
    store.commit_run(run(conflicts={"status": Pair("resolved", "inProgress")}))
    open_ = store.open_conflicts()
    assert len(open_) == 1 and open_[0]["sentry_value"] == "resolved"
    store.commit_run(run(settled={"status"}))
    assert store.open_conflicts() == []


def test_link_refuses_a_second_partner(store: Store) -> None:
    store.add_link("1", "OPS-1")  # the same pair again is fine
    with pytest.raises(ValueError, match="already linked"):
        store.add_link("1", "OPS-2")
    with pytest.raises(ValueError, match="already linked"):
        store.add_link("2", "OPS-1")
    assert store.remove_link("1") and not store.remove_link("1")


def test_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    with StateLock(path):
        probe = subprocess.run(
            [sys.executable, "-c", f"from bridge.store import StateLock; StateLock({str(path)!r}).acquire()"],
            capture_output=True, text=True, check=False,
        )
        assert probe.returncode != 0 and "LockHeldError" in probe.stderr
        with pytest.raises(LockHeldError):
            StateLock(path).acquire()
    StateLock(path).acquire()  # released: free again


def _pending(statuses: tuple[str, ...] = ()) -> Pending:
    action = WriteTracker("status", "closed", "sentry changed", resolution="fixed")
    return Pending(Attempt(action, Pair("resolved", "open"), Pair("unresolved", "open")), statuses)


def test_pending_writes_are_noted_from_another_thread_and_replaced_by_the_commit(store: Store) -> None:
    import threading

    noted = threading.Thread(target=store.pending_log.note, args=("1", _pending(("inProgress",))))
    noted.start()
    noted.join()
    assert store.pending_links() == {"1"}
    assert store.link_states(["1"])["1"].pending == (_pending(("inProgress",)),)
    # The commit keeps only what is still unknown after the run.
    follow = Pending(Attempt(AddFollowers(frozenset({"bob"}), "bookmark"), Pair(frozenset(), frozenset()), None))
    store.commit_run(run(pending={follow.key: follow}))
    assert store.link_states(["1"])["1"].pending == (follow,)
    store.commit_run(run())
    assert store.pending_links() == set()


def test_an_unreadable_pending_note_is_skipped_with_a_warning(store: Store, caplog: pytest.LogCaptureFixture) -> None:
    store.db.execute("INSERT INTO pending_writes VALUES ('1', 'a1', 'WriteTrackerStatus', '{\"nope\": 1}', 'now')")
    assert store.link_states(["1"])["1"].pending == ()
    assert "unreadable pending write" in caplog.text


def test_relink_puts_a_link_and_its_baselines_in_one_transaction(store: Store,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    def crash(*args: object, **kw: object) -> None:
        raise sqlite3.OperationalError("disk full (simulated)")

    monkeypatch.setattr(store, "_put_conflicts", crash)
    with pytest.raises(sqlite3.OperationalError):
        store.add_relinked(Link("2", "OPS-2", "relink", ""), {"status": Pair("resolved", "closed")},
                           {"assignee": Pair("a@example.com", None)})
    assert store.find_link("2") is None and "2" not in store.baselines()


def test_flapping_conflict_rows_become_holds(tmp_path: Path) -> None:
    import sqlite_utils

    from bridge.store import SCHEMA

    path = tmp_path / "old.db"
    db = sqlite_utils.Database(str(path))
    SCHEMA.apply(db, stop_before="m004_outcomes")  # a state file from before holds existed
    db.execute("INSERT INTO links VALUES ('7', 'OPS-7', 'manual', 'then', 0)")
    db.execute("INSERT INTO conflicts (sentry_id, tracker_key, field, sentry_value, tracker_value, detected_at) "
               "VALUES ('7', 'OPS-7', 'flapping', '\"written 6 times\"', '\"written 6 times\"', 't0')")
    db.close()
    store = Store.open(path)
    assert store.held() == {"7"} and store.holds()[0]["reason"] == "written 6 times"
    assert store.open_conflicts() == []


def test_an_intent_remembers_every_follower_any_attempt_asked_for(store: Store) -> None:
    store.add_intent("5", "u", "OPS", followers=frozenset({"bob"}))
    store.add_intent("5", "u", "OPS", followers=frozenset({"carol"}))
    from bridge.store import intent_followers

    assert intent_followers(store.intents("pending")[0]) == {"bob", "carol"}


def test_each_attempt_keeps_its_own_note_until_the_commit(store: Store) -> None:
    older, newer = _pending(("inProgress",)), _pending(("resolved",))
    older = Pending(Attempt(older.attempt.action, older.attempt.planned, older.attempt.baseline, 3, "t1", "a"),
                    older.reached)
    newer = Pending(Attempt(newer.attempt.action, newer.attempt.planned, newer.attempt.baseline, 4, "t2", "b"),
                    newer.reached)
    store.pending_log.note("1", older)
    store.pending_log.note("1", newer)  # the same kind of write, a newer attempt
    assert store.link_states(["1"])["1"].pending == (older, newer)
    store.commit_run(run())
    assert store.link_states(["1"])["1"].pending == ()


def test_the_tracker_cache_keeps_what_the_declared_fields_read_and_the_aliases() -> None:
    from bridge.store import slim_tracker

    issue = {"key": "OPS-1", "version": 3, "status": {"key": "open", "id": "1", "display": "Open"},
             "assignee": {"id": "12", "display": "Bob", "self": "x"}, "followers": [{"id": "12", "display": "Bob"}],
             "priority": {"key": "blocker", "id": "5", "display": "Blocker"}, "aliases": ["OLD-7"],
             "summary": "not needed", "description": "not needed either"}
    assert slim_tracker(issue) == {"key": "OPS-1", "version": 3, "status": {"key": "open", "id": "1"},
                                   "assignee": {"id": "12"}, "followers": [{"id": "12"}],
                                   "priority": {"key": "blocker", "id": "5"}, "aliases": ["OLD-7"]}


def test_the_learned_workflow_is_kept_and_ages_out(store: Store) -> None:
    from bridge.core.workflow import Transition

    t0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    opened = (("OPS", "bug", "open"), (Transition("start_progress", "inProgress"),))
    closed = (("OPS", "bug", "closed"), (Transition("reopen", "open"),))
    store.save_workflow([opened, closed], t0)
    assert sorted(store.workflow(t0)) == sorted([opened, closed])
    # A day later only `closed` changed: it is stamped anew, `open` keeps its time and ages out.
    changed = (("OPS", "bug", "closed"), (Transition("reopen", "open"), Transition("x", "inProgress")))
    store.save_workflow([opened, changed], t0 + timedelta(days=1))
    assert store.workflow(t0 + timedelta(hours=1)) == [changed]
    # What is known no more is dropped.
    store.save_workflow([changed], t0 + timedelta(days=1))
    assert store.workflow(t0 - timedelta(days=1)) == [changed]
