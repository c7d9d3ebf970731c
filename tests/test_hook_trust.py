"""Issue 15, item 2, the daemon's side: cycles are focused only while Sentry's hooks are trusted.
Refused hooks, a change the slice found that no hook named, or dropped hints send the daemon back
to reading every link.  Unit tests with a fake clock, then the real daemon through the CLI."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import httpx
import pytest

from bridge.core.focus import Focus
from bridge.push.receiver import HookCounters
from bridge.push.trust import HookTrust
from bridge.push.verify import Hint
from tests.test_daemon import Service, free_port, free_ports, scrape, total, wait_for
from tests.test_push import SENTRY_SECRET, TRACKER_SECRET, issue_hook, signed

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def trust(clock: Clock, counters: HookCounters | None = None) -> HookTrust:
    return HookTrust(counters or HookCounters(), configured=True, clock=clock, grace_seconds=60,
                     distrust_seconds=600)


def test_hints_become_the_focus_of_both_sides() -> None:
    t = trust(Clock())
    assert t.focus({Hint("sentry", "1"), Hint("tracker", "OPS-1")}) == Focus(frozenset({"1"}), frozenset({"OPS-1"}))
    assert t.focus(set()) == Focus()


def test_without_sentry_hooks_every_link_is_read() -> None:
    t = HookTrust(HookCounters(), configured=False)
    assert t.focus({Hint("tracker", "OPS-1")}) is None and not t.trusted


def test_a_refused_sentry_hook_distrusts_hooks_for_a_while() -> None:
    clock, counters = Clock(), HookCounters()
    t = trust(clock, counters)
    counters.count("sentry", "401")  # a secret out of step
    assert t.focus(set()) is None and not t.trusted and "refused" in (t.reason or "")
    clock.now += 599
    assert t.focus(set()) is None
    clock.now += 2
    assert t.focus(set()) == Focus() and t.trusted
    counters.count("tracker", "401")  # Tracker's side never makes a Sentry read needed
    assert t.focus(set()) == Focus()


def test_a_change_no_hook_named_within_the_grace_distrusts_hooks() -> None:
    clock = Clock()
    t = trust(clock)
    t.found_unhinted(["7"])
    clock.now += 30
    assert t.focus(set()) == Focus()  # still within the grace: the hook may be on its way
    clock.now += 31
    assert t.focus(set()) is None and "7" in (t.reason or "")


def test_a_hook_that_arrives_after_the_slice_found_its_change_clears_the_suspicion() -> None:
    clock = Clock()
    t = trust(clock)
    t.found_unhinted(["7"])
    clock.now += 5
    assert t.focus({Hint("sentry", "7")}) == Focus(frozenset({"7"}))
    clock.now += 120
    assert t.focus(set()) == Focus() and t.trusted


def test_a_dropped_sentry_hint_makes_the_next_cycle_read_everything_once() -> None:
    counters = HookCounters()
    t = trust(Clock(), counters)
    counters.count("sentry", "dropped")
    assert t.focus(set()) is None
    assert t.focus(set()) == Focus() and t.trusted  # one cycle, not an hour


def test_a_cycle_hooks_brought_forward_reads_what_they_name_trusted_or_not() -> None:
    counters = HookCounters()
    t = HookTrust(counters, configured=False)
    assert t.focus({Hint("tracker", "OPS-1")}, scheduled=False) == Focus(tracker_keys=frozenset({"OPS-1"}),
                                                                         hinted=True)
    t = trust(Clock(), counters)
    counters.count("sentry", "401")
    assert t.focus(set()) is None
    assert t.focus({Hint("sentry", "5")}, scheduled=False) == Focus(frozenset({"5"}), hinted=True)


# -- the daemon --------------------------------------------------------------------------------


@pytest.fixture
def daemon(bridge_env: BridgeEnv):  # type: ignore[no-untyped-def]
    svc = Service(bridge_env)
    yield svc
    svc.close()


def test_the_daemon_focuses_with_sentry_hooks_and_reads_everything_once_they_are_refused(
        bridge_env: BridgeEnv, request: pytest.FixtureRequest) -> None:
    env = bridge_env
    port, metrics_port = free_ports(2)
    env.config(metrics={"listen": f"127.0.0.1:{metrics_port}"},
               sync={"interval_seconds": 2, "full_resync_every": 10},
               push={"enabled": True, "listen": f"127.0.0.1:{port}", "sentry_secret": SENTRY_SECRET,
                     "tracker_secret": TRACKER_SECRET, "min_gap_seconds": 0.2})
    pairs = [env.pair() for _ in range(40)]
    env.link(*pairs)
    env.sentry.subscribe_webhooks(f"http://127.0.0.1:{port}/hooks/sentry", SENTRY_SECRET)
    svc: Service = request.getfixturevalue("daemon")

    def kinds() -> list[tuple[str, int]]:
        return [(c["cycle_kind"], c["links_read"]) for c in svc.cycles()]

    # The first cycle of the process reads everything; the scheduled ones after it a slice.
    wait_for("a focused cycle", lambda: ("focused", 4) in kinds(), timeout=30,  # ceil(40 / 10)
             detail=lambda: f"cycles {kinds()}\n{svc.tail()}")
    assert kinds()[0][1] == 40
    assert total(scrape(metrics_port), "bridge_hooks_trusted") == 1
    # A Sentry change crosses through its hook in a hinted cycle that reads that one link.
    sid, key = pairs[-1]
    env.sentry.set_status(sid, "resolved", by="alice@example.com")
    wait_for("the change in Tracker", lambda: env.t_state(key)[0] == "closed", timeout=10)
    wait_for("the hinted cycle's summary", lambda: ("hinted", 1) in kinds(), timeout=5)
    # A hook with a bad signature: hooks are no longer trusted, scheduled cycles read every link.
    body = issue_hook(pairs[0][0])
    assert httpx.post(f"http://127.0.0.1:{port}/hooks/sentry", content=body,
                      headers=signed(body, "not-the-secret")).status_code == 401
    seen = len(svc.cycles())
    wait_for("a scheduled cycle after the refusal",
             lambda: any(c["cycle_kind"] != "hinted" for c in svc.cycles()[seen:]), timeout=15)
    after = [c for c in svc.cycles()[seen:] if c["cycle_kind"] != "hinted"][0]
    assert after["links_read"] == 40, after
    assert total(scrape(metrics_port), "bridge_hooks_trusted") == 0
    assert svc.logs("push.distrusted")
    time.sleep(0.1)
    assert SENTRY_SECRET not in svc.stderr()


def test_scheduled_cycles_still_run_under_a_stream_of_hints(bridge_env: BridgeEnv,
                                                            request: pytest.FixtureRequest) -> None:
    """A hint every 0.3 s for 5 s: scheduled cycles (every 2 s) still run among the hinted ones."""
    env = bridge_env
    port = free_port()
    env.config(sync={"interval_seconds": 2, "full_resync_every": 10},
               push={"enabled": True, "listen": f"127.0.0.1:{port}", "tracker_secret": TRACKER_SECRET,
                     "min_gap_seconds": 0.2})
    env.link(*[env.pair() for _ in range(5)])
    svc: Service = request.getfixturevalue("daemon")
    wait_for("the first cycle", lambda: svc.cycles() and svc.logs("push.listening"))
    seen = len(svc.cycles())
    with httpx.Client() as client:
        for _ in range(17):
            client.post(f"http://127.0.0.1:{port}/hooks/tracker", content=json.dumps({"key": "OPS-1"}).encode(),
                        headers={"X-Bridge-Secret": TRACKER_SECRET})
            time.sleep(0.3)
    cycles = svc.cycles()[seen:]
    scheduled = [c for c in cycles if c["cycle_kind"] != "hinted"]
    hinted = [c for c in cycles if c["cycle_kind"] == "hinted"]
    assert len(hinted) >= 5, [c["cycle_kind"] for c in cycles]
    assert len(scheduled) >= 2, [c["cycle_kind"] for c in cycles]


def test_a_hinted_run_of_the_job_leaves_the_next_scheduled_cycle_where_it_was(bridge_env: BridgeEnv) -> None:
    """APScheduler counts an interval from the run it just made, so without care every hinted
    cycle would push the scheduled one back by its distance from it."""
    from bridge.config import load_settings
    from bridge.daemon import JOB_ID, Daemon

    env = bridge_env
    env.config(sync={"interval_seconds": 30, "jitter_seconds": 0})
    daemon = Daemon(env.path, {})
    daemon.settings = load_settings(env.path, {})
    daemon._scheduler = daemon._start_scheduler(daemon.settings)  # its first run: the scheduled cycle
    try:
        wait_for("the first run", lambda: daemon._scheduled_due != float("-inf"))
        due = daemon._scheduled_due
        time.sleep(1.0)
        first = daemon._last_start
        daemon._scheduler.modify_job(JOB_ID, next_run_time=datetime.now(UTC))  # what a hint's wake does
        wait_for("the hinted run", lambda: daemon._last_start != first and not daemon._cycle_running.is_set())
        time.sleep(0.2)
        job = daemon._scheduler.get_job(JOB_ID)
        left = (job.next_run_time - datetime.now(UTC)).total_seconds()
        assert daemon._scheduled_due == due
        assert abs(left - (due - time.monotonic())) < 0.5, left  # not 30 s from the hinted run
    finally:
        daemon._scheduler.shutdown(wait=False)
        daemon._worker.shutdown(wait=False)
