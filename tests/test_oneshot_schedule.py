"""Issue 15, item 3 through the CLI: a one-shot `sync` follows the same tiered schedule as `run`
(incremental unless a full resync is due, counted in the state file across processes), and
`--full` forces a full one.  An idle one-shot costs what the daemon's incremental cycle costs."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv


def test_one_shot_syncs_follow_the_full_resync_schedule(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(sync={"full_resync_every": 3})
    env.link(env.pair())
    fulls = [env.sync_json()["full"] for _ in range(7)]
    assert fulls == [True, False, False, True, False, False, True]
    assert env.sync_json("--full")["full"] is True
    assert env.sync_json()["full"] is False  # --full restarts the count
    assert env.sync_json("--dry-run")["full"] is False
    assert env.sync_json("--dry-run")["full"] is False  # a dry run does not move the count
    assert env.sync_json()["full"] is False
    assert env.sync_json()["full"] is True


def test_a_change_between_incremental_one_shots_is_carried(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    sid, key = env.pair()
    env.link((sid, key))
    env.sync_json()
    env.tracker.set_status(key, "closed", resolution="fixed", by="bob")
    report = env.sync_json()
    assert report["full"] is False and report["writes_sentry"] == 1
    assert env.s_state(sid)[0] == "resolved"


def test_an_idle_one_shot_costs_what_the_daemons_incremental_cycle_costs(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    n = 250
    env.link(*[env.pair() for _ in range(n)])
    env.sync_json()
    report = env.sync_json()
    mapped_people = 3  # alice, bob, carol: one bookmarks search each
    total = report["requests"]["sentry"] + report["requests"]["tracker"]
    assert report["full"] is False and total <= math.ceil(n / 100) + mapped_people + 5, report["requests"]
