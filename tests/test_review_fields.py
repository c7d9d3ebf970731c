"""Review of "fields as data" (issue 12) and priority: each test failed on the reviewed code
(306b17c and 97c2e5a), and passes since the mends (f1a6cf6).

Through the real CLI over loopback HTTP (`bridge_env`), like tests/test_priority.py.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from tests.conftest import PROJECT, BridgeEnv
from tests.test_priority import journal, s_priority, t_priority

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def env(bridge_env: BridgeEnv) -> BridgeEnv:
    bridge_env.config(sync={"fields": {"priority": "both"}})
    return bridge_env


# -- 1. a Sentry issue without a priority blocks the field for good ------------------------------


def test_sentry_priority_null_never_blocks_a_tracker_change(env: BridgeEnv) -> None:
    """Sentry issues from before priorities existed (or from a Sentry that has none) read
    `priority: null`.  With the default link_source = sentry the planner keeps trying to carry
    "nothing" to Tracker: every cycle reports it unmapped, no baseline is ever recorded, and a
    person's later Tracker priority is never carried to Sentry (lost)."""
    sid, key = env.pair(priority="medium")
    env.sentry.issues[sid].priority = None  # as the API shows such an issue
    env.link((sid, key))
    env.sync_json()
    env.tracker.set_fields(key, {"priority": "blocker"}, by="bob")
    env.sync_json()
    assert s_priority(env, sid) == "high", journal(env, sid)
    # ...and the link is not reported unmapped every cycle once Sentry has a value.
    again = env.sync_json()
    assert again["unmapped"] == 0


# -- 2. lifting a hold without a sync invents a baseline for a field that had none ----------------


def test_resolving_a_hold_without_sync_takes_the_chosen_side_for_a_field_without_baseline(
    bridge_env: BridgeEnv,
) -> None:
    """A held link is skipped by every cycle, so a field switched on while it was held has no
    baseline.  `conflicts resolve hold:X --take tracker --no-sync` then writes
    (sentry=None, tracker=TAKEN) for it: Sentry looks changed too, the next sync sees "both
    changed" and sync.conflict = sentry overwrites the Tracker value the operator chose."""
    env = bridge_env  # priority off for now
    sid, key = env.pair(priority="medium")
    env.link((sid, key))
    env.sync_json()
    with sqlite3.connect(env.state_path) as db:
        db.execute("INSERT INTO holds VALUES (?, ?, ?, ?)", [sid, key, "flapping", "2026-01-01T00:00:00+00:00"])
    env.config(sync={"fields": {"priority": "both"}})  # sync.conflict = sentry (base config)
    env.tracker.set_fields(key, {"priority": "blocker"}, by="bob")
    # Without a read nothing says what Sentry holds in a field never synced: refused, with advice.
    refused = env.expect(2, "conflicts", "resolve", f"hold:{sid}", "--take", "tracker", "--no-sync")
    assert "priority never synced on this link" in refused.err and "without --no-sync" in refused.err
    assert env.status_json()["held"], "a refused resolve lifted the hold"
    env.expect(0, "conflicts", "resolve", f"hold:{sid}", "--take", "tracker")
    env.sync_json()
    assert (s_priority(env, sid), t_priority(env, key)) == ("high", "blocker"), journal(env, sid)


# -- 3. docs that no longer match the code ---------------------------------------------------------


def test_to_sentry_only_still_creates_with_the_mapped_priority_as_the_example_says(env: BridgeEnv) -> None:
    """config/bridge.example.toml says a new issue takes its priority from [mapping.priority]
    "when sync.fields.priority carries it to Tracker, otherwise from [create.levels]"; the code
    (`carried_on_create`) carries it for any direction but off (rightly: with to_sentry the
    level's priority would otherwise be written back over Sentry's).  README's "Creating Tracker
    issues" still says priority comes from [create.levels] and the assignee always through the
    user map (it no longer does when sync.fields.assignee = off)."""
    env.config(sync={"fields": {"priority": "to_sentry"}}, create={"enabled": True, "query": "is:unresolved"})
    env.sync_json()
    sid = env.sentry.add_issue(PROJECT, "Brand new", level="warning", priority="high")
    assert env.sync_json()["created"] == 1
    [key] = env.tracker.issue_keys()
    assert t_priority(env, key) == "critical"  # the behaviour (and it is the safe one)
    assert s_priority(env, sid) == "high"
    example = (ROOT / "config" / "bridge.example.toml").read_text(encoding="utf-8")
    assert "when sync.fields.priority carries it to Tracker" not in example
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    create = readme[readme.index("## Creating Tracker issues"):]
    create = create[:create.index("*Exactly once*")]
    # The README says what the code does: the mapping wins over the level whatever the direction.
    assert "`[mapping.priority.to_tracker]` (which then wins over `[create.levels]`)" in create, create
    assert "whatever the field's\ndirection" in create, create


# -- 4. the JSON of a status write lost its `resolution` key -----------------------------------------


def test_a_status_write_without_resolution_still_says_resolution_null_in_json(env: BridgeEnv) -> None:
    """Before the refactor `describe` always gave a Tracker status write
    `{"side", "value", "resolution"}`; now a write without a resolution (a reopen) has no
    `resolution` key in `sync --json` / `--dry-run --json` / `explain --json`: scripts reading
    `action["resolution"]` break."""
    sid, key = env.pair()
    env.link((sid, key))
    env.sync_json()
    env.sentry.set_status(sid, "resolved")
    env.sync_json()
    env.sentry.set_status(sid, "unresolved")
    plan = env.sync_json("--dry-run")
    [write] = [a for a in plan["links_detail"][0]["actions"] if a["action"] == "WriteTrackerStatus"]
    assert write["value"] == "open"
    assert "resolution" in write and write["resolution"] is None, write
