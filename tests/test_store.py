"""The store: migrations, one transaction per link (a crash inside it leaves nothing half
written), value round-trips, owned followers, failures with backoff, conflicts, the lock."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.errors import LockHeldError
from bridge.plan import Pair
from bridge.store import JournalEntry, LinkCommit, StateLock, Store, decode, encode


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
    assert names == ["m001_initial", "m002_backlinks", "m003_tracker_cache"]
    assert again.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_commit_link_is_one_transaction(store: Store) -> None:
    store.commit_link(LinkCommit("1", "OPS-1", {"status": Pair("resolved", "closed")},
                                 owned_added=frozenset({"carol"}),
                                 journal=(JournalEntry("tracker", "status", "WriteTrackerStatus", "closed", "ok"),)))
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
        store.commit_link(LinkCommit("1", "OPS-1", {"status": Pair("resolved", "closed")},
                                     owned_added=frozenset({"carol"}),
                                     journal=(JournalEntry("tracker", "status", "x", "closed", "ok"),)))
    monkeypatch.setattr(store, "_journal", original)
    assert calls["n"] == 1
    assert store.baselines() == {}
    assert store.owned_followers() == {}


def test_a_killed_process_leaves_the_last_commit_intact(tmp_path: Path) -> None:
    path = tmp_path / "k.db"
    script = f"""
import os
from bridge.plan import Pair
from bridge.store import LinkCommit, Store
s = Store.open({str(path)!r})
s.add_link("1", "OPS-1")
s.commit_link(LinkCommit("1", "OPS-1", {{"status": Pair("resolved", "closed")}}))
s.db.execute("BEGIN")
s.db.execute("UPDATE baselines SET tracker_value = '\\"open\\"'")
os._exit(9)   # killed in the middle of the next transaction
"""
    subprocess.run([sys.executable, "-c", script], check=False)
    assert Store.open(path).baselines() == {"1": {"status": Pair("resolved", "closed")}}


def test_owned_followers_pruned_to_current_followers(store: Store) -> None:
    store.commit_link(LinkCommit("1", "OPS-1", {}, owned_added=frozenset({"carol", "bob"})))
    store.commit_link(LinkCommit("1", "OPS-1", {}, owned_keep_only=frozenset({"bob"})))
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
    store.commit_link(LinkCommit("1", "OPS-1", {}))
    assert store.failures() == []


def test_conflicts_open_once_and_settle(store: Store) -> None:
    store.commit_link(LinkCommit("1", "OPS-1", {}, conflicts={"status": Pair("ignored", "inProgress")}))
    store.commit_link(LinkCommit("1", "OPS-1", {}, conflicts={"status": Pair("resolved", "inProgress")}))
    open_ = store.open_conflicts()
    assert len(open_) == 1 and open_[0]["sentry_value"] == "resolved"
    store.commit_link(LinkCommit("1", "OPS-1", {}, settled_fields=frozenset({"status"})))
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
