"""Hostile review of focused cycles (commits 8e5bc46..2068ace): each test demonstrates one finding
against the real code and fails until it is fixed."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bridge.core.focus import Focus, rotating_slice, slice_size
from bridge.engine.cycle import SLICE_AFTER
from bridge.push.hints import HintBox
from bridge.push.receiver import HookCounters, HookReceiver
from bridge.push.trust import HookTrust
from tests.test_daemon import Service, free_port, wait_for
from tests.test_engine import World, make_world
from tests.test_push import SENTRY_SECRET, signed

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv

NO_HINTS = Focus()


@pytest.fixture
def focused(tmp_path: Path) -> Iterator[World]:
    w = make_world(tmp_path, sync={"full_resync_every": 5})
    yield w
    w.store.close()


def settle(world: World, n: int) -> list[tuple[str, str]]:
    """`n` links, one full cycle, then one focused cycle (the engine is ready to focus)."""
    pairs = [world.pair() for _ in range(n)]
    first = world.cycle(focus=NO_HINTS)
    assert first.full and first.focus is None
    second = world.cycle(focus=NO_HINTS)
    assert second.focus is not None, second.kind
    world.sentry.clear_log()
    return pairs


def not_in_next_slices(world: World, pairs: list[tuple[str, str]], cycles: int = 1) -> tuple[str, str]:
    """A link the next `cycles` rotating slices do not reach."""
    ids = sorted(sid for sid, _ in pairs)
    after = world.store.cursor(SLICE_AFTER) or None
    reached: set[str] = set()
    for _ in range(cycles):
        taken, after = rotating_slice(ids, after, slice_size(len(ids), world.engine.settings.sync.full_resync_every))
        reached.update(taken)
    for sid, key in pairs:
        if sid not in reached:
            return sid, key
    raise AssertionError("every link is in the next slices")


def system_hook(issue_id: str, action: str = "resolved") -> bytes:
    """A Sentry issue hook for a change Sentry itself made (auto-resolve by age, escalation...):
    reference/sentry-api.md section 8: actor {"type": "application", "id": "sentry"}."""
    return json.dumps({"action": action, "installation": {"uuid": "i-1"},
                       "data": {"issue": {"id": issue_id, "status": "resolved"}},
                       "actor": {"type": "application", "id": "sentry", "name": "Sentry"}},
                      separators=(",", ":")).encode()


@pytest.fixture
def hooks() -> Iterator[tuple[HookReceiver, HintBox, HookCounters]]:
    box, counters = HintBox(limit=1000), HookCounters()
    receiver = HookReceiver(("127.0.0.1", 0), box, sentry_secret=SENTRY_SECRET, tracker_secret=None,
                            counters=counters)
    yield receiver, box, counters
    receiver._server.server_close()


# -- A hinted cycle whose Tracker poll failed takes the hinted Tracker issue from the cache --------


def test_hinted_cycle_with_failed_poll_rereads_the_tracker_issue_a_tracker_hook_named(tmp_path: Path) -> None:
    """A Tracker hook names OPS-n (a person closed it) while the search fails: the hinted cycle
    'reads' the link with the cached Tracker issue (still open), finds nothing to do and consumes
    the hint.  A hook is a pointer to re-read the issue (design section 10): the named issue must
    be fetched, not taken from the cache the hook says is out of date."""
    world = make_world(tmp_path, sync={"full_resync_every": 5})
    pairs = settle(world, 10)
    sid, key = pairs[3]
    world.tracker.set_status(key, "closed", resolution="fixed", by="bob")
    # The poll fails (every attempt of it); the read of the named issue after it goes through.
    world.tracker.inject("status", status=503, method="POST", path=r"/issues/_search", times=3)
    report = world.cycle(focus=Focus(tracker_keys=frozenset({key}), hinted=True))
    assert report.poll_error and report.focus is not None and sid in report.focus.pointed
    assert world.s_status(sid) == "resolved", "the hinted Tracker change was read from the stale cache"
    world.store.close()


# -- 2. Sentry's own changes (auto-resolve, escalation) announce themselves with an application
#       actor: the receiver drops them, and a focused cycle then never points at the link --------


def test_a_system_resolve_announced_by_a_hook_crosses_in_the_next_focused_cycle(
        focused: World, hooks: tuple[HookReceiver, HintBox, HookCounters]) -> None:
    world = focused
    receiver, box, counters = hooks
    trust = HookTrust(counters, configured=True)
    pairs = settle(world, 40)
    sid, key = not_in_next_slices(world, pairs)
    world.sentry.set_status(sid, "resolved")  # by nobody: Sentry's own auto-resolve
    body = system_hook(sid)
    status, answer = receiver.judge("/hooks/sentry", signed(body).get, body)
    assert status < 300, answer
    report = world.cycle(focus=trust.focus(box.drain()))
    assert report.focus is not None
    assert world.t_status(key) == "closed", (
        f"Sentry announced the resolve of {sid} with a hook ({status} {answer}); the focused cycle read "
        f"{sorted(report.focus.ids)} and left {key} open until a slice reaches it")


def test_a_system_resolve_found_by_the_slice_does_not_distrust_hooks_that_did_announce_it(
        focused: World, hooks: tuple[HookReceiver, HintBox, HookCounters]) -> None:
    world = focused
    receiver, box, counters = hooks
    now = [1000.0]
    trust = HookTrust(counters, configured=True, clock=lambda: now[0], grace_seconds=60)
    pairs = settle(world, 10)
    ids = sorted(sid for sid, _ in pairs)
    world.store.set_cursor(SLICE_AFTER, "")  # the next slice starts at the first link
    sid = ids[0]
    world.sentry.set_status(sid, "resolved")  # Sentry's own change, and Sentry's hook for it
    body = system_hook(sid)
    receiver.judge("/hooks/sentry", signed(body).get, body)
    report = world.cycle(focus=trust.focus(box.drain()))
    trust.found_unhinted(report.unhinted)
    now[0] += 120
    assert trust.focus(box.drain()) is not None, f"hooks distrusted for an hour: {trust.reason}"


def test_an_issue_created_hook_from_sentry_itself_is_a_hint(
        hooks: tuple[HookReceiver, HintBox, HookCounters]) -> None:
    """Sentry sends `issue.created` (new issues come from event ingestion, not a person) with the
    system actor {"type": "application", "id": "sentry"}.  The receiver drops every application
    actor, so the hinted create of commit 16f3e62 ("a hinted cycle runs the create query only when
    a hook named an unlinked issue") cannot be reached by a real Sentry."""
    receiver, box, _counters = hooks
    body = system_hook("5000000099", action="created")
    status, answer = receiver.judge("/hooks/sentry", signed(body).get, body)
    assert status < 300
    assert box.drain(), f"Sentry's issue.created hook was dropped: {status} {answer}"


# -- 3. Hooks the receiver turns away before judging them are counted nowhere ----------------------


def test_a_sentry_hook_turned_away_busy_makes_the_next_cycle_read_every_link(
        hooks: tuple[HookReceiver, HintBox, HookCounters]) -> None:
    """When every slot is busy the receiver answers 503 and the hook is lost (Sentry does not
    reliably retry).  That is the same loss as a hint dropped from a full box, which sends the next
    cycle back to reading every link; a 503 is not even counted, so the cycle stays focused."""
    import httpx

    receiver, _box, counters = hooks
    trust = HookTrust(counters, configured=True)
    receiver.start()
    try:
        for _ in range(32):  # MAX_CONCURRENT: every slot taken by slow requests
            assert receiver._slots.acquire(blocking=False)
        body = system_hook("42").replace(b'"application"', b'"user"')
        host, port = receiver.address
        answer = httpx.post(f"http://{host}:{port}/hooks/sentry", content=body, headers=signed(body))
        assert answer.status_code == 503
    finally:
        for _ in range(32):
            receiver._slots.release()
        receiver._server.shutdown()
    assert trust.focus(set()) is None, "a Sentry hook was lost (503) yet the next cycle is still focused"


def test_an_oversized_sentry_hook_counts_as_refused(hooks: tuple[HookReceiver, HintBox, HookCounters]) -> None:
    """trust.REFUSED names 413, but the receiver answers 413 (and 411, and a short body's 400)
    before `judge`, which is the only place that counts: that distrust can never happen."""
    import httpx

    receiver, _box, counters = hooks
    trust = HookTrust(counters, configured=True)
    receiver.start()
    try:
        host, port = receiver.address
        body = b"{" + b" " * (1024 * 1024 + 10) + b"}"
        answer = httpx.post(f"http://{host}:{port}/hooks/sentry", content=body, headers=signed(body))
        assert answer.status_code == 413
    finally:
        receiver._server.shutdown()
    assert trust.focus(set()) is None, f"413 answered but counted as {counters.by_outcome}"


# -- focused_cycles switched off with SIGHUP: "configuration reloaded", yet cycles stay focused ---


def test_focused_cycles_switched_off_by_a_reload_stops_focusing(bridge_env: BridgeEnv,
                                                                request: pytest.FixtureRequest) -> None:
    """push.focused_cycles is the operator's switch back to reading every link (e.g. when changes
    seem to be missed).  A reload (SIGHUP) reports success but `_apply` never rebuilds HookTrust,
    and reload_problems does not refuse the change either: scheduled cycles stay focused until a
    restart."""
    env = bridge_env
    port = free_port()
    env.config(sync={"interval_seconds": 1, "full_resync_every": 10},
               push={"enabled": True, "listen": f"127.0.0.1:{port}", "sentry_secret": SENTRY_SECRET,
                     "min_gap_seconds": 0.2, "focused_cycles": True})
    env.link(*[env.pair() for _ in range(20)])
    svc = Service(env)
    request.addfinalizer(svc.close)
    wait_for("a focused cycle", lambda: any(c["cycle_kind"] == "focused" for c in svc.cycles()), timeout=15)
    env.config(push={"focused_cycles": False})
    svc.send(signal.SIGHUP)
    wait_for("the reload", lambda: svc.logs("config.reloaded") or svc.logs("config.reload_refused"))
    assert not svc.logs("config.reload_refused")
    seen = len(svc.cycles())
    wait_for("three scheduled cycles after the reload",
             lambda: len([c for c in svc.cycles()[seen:] if c["cycle_kind"] != "hinted"]) >= 3, timeout=15)
    kinds = [(c["cycle_kind"], c["links_read"]) for c in svc.cycles()[seen:] if c["cycle_kind"] != "hinted"]
    assert all(kind != "focused" for kind, _ in kinds), f"still focused after focused_cycles = false: {kinds}"


# -- A regression (a new event on a resolved issue) sends no hook ----------------------------------


def regressed_link(world: World, pairs: list[tuple[str, str]], sid: str) -> str:
    """Resolve `sid` through a hook, let it cross, then let a new event regress it."""
    key = dict(pairs)[sid]
    world.sentry.set_status(sid, "resolved", by="alice@example.com")
    world.cycle(focus=Focus(sentry_ids=frozenset({sid}), hinted=True))
    assert world.t_status(key) == "closed"
    world.cycle(focus=NO_HINTS)  # the poll shows our own transition once (a new version): absorbed here
    world.sentry.add_event(sid)  # regressed: unresolved, no webhook (reference section 8, the emulator)
    assert world.s_status(sid) == "unresolved"
    return key


def test_a_regression_reopens_the_tracker_issue_in_the_next_focused_cycle(focused: World) -> None:
    """Nothing points at a regressed issue: no hook (Sentry sends none for a regression), no poll,
    no bookmark change.  The closed Tracker ticket stays closed until the rotating slice reaches
    the link, up to full_resync_every - 1 scheduled cycles later; focus.py's list of what waits for
    the slice (unassignment, bookmarks, priority) does not mention regressions."""
    world = focused
    pairs = settle(world, 40)
    sid, _ = not_in_next_slices(world, pairs, cycles=2)  # regressed_link runs one focused cycle
    key = regressed_link(world, pairs, sid)
    report = world.cycle(focus=NO_HINTS)
    assert report.kind == "focused"
    assert report.focus is not None and sid in report.focus.pointed and report.focus.reasons["reopened"] == 1
    assert world.t_status(key) == "open", f"{sid} regressed; {key} still closed after a focused cycle"


def test_a_regression_found_by_the_slice_is_not_taken_for_a_missing_hook(focused: World) -> None:
    """_status_hooked counts resolved -> unresolved as a change Sentry announces, but a regression
    is announced by nothing: every regression the slice finds distrusts hooks for an hour."""
    world = focused
    pairs = settle(world, 10)
    sid = sorted(s for s, _ in pairs)[0]
    regressed_link(world, pairs, sid)
    world.store.set_cursor(SLICE_AFTER, "")  # the next slice starts at the first link
    report = world.cycle(focus=NO_HINTS)
    assert report.focus is not None and sid in report.focus.ids
    assert report.unhinted == [], "a regression reported as a change no hook named: the daemon distrusts hooks"
    from bridge.core.fields import STATUS

    assert not STATUS.sentry_hooked("resolved", "unresolved.regressed")  # the slice alone would not count it
    assert STATUS.sentry_hooked("unresolved.ongoing", "resolved")


# -- doctor passes the push check while no Sentry hook has ever arrived ----------------------------


def test_doctor_does_not_pass_sentry_hooks_that_never_arrived(tmp_path: Path) -> None:
    """The push checks are meant to show that hooks arrive.  A daemon whose Sentry hooks never
    came (the integration's webhook URL points elsewhere) is still trusted - only a change the
    slice happens to find distrusts it - and doctor answers `pass`, 'hooks queued: 0 from sentry'."""
    import httpx

    from bridge.config import Settings
    from bridge.push.checks import counters_check

    settings = Settings(sentry={"url": "http://sentry.test", "organization": "acme", "token": "t"},
                        tracker={"url": "http://tracker.test", "org_id": "1", "token": "t", "queue": "OPS"},
                        state={"path": tmp_path / "state.db"}, metrics={"listen": "127.0.0.1:9999"},
                        push={"enabled": True, "listen": "127.0.0.1:8788", "sentry_secret": SENTRY_SECRET,
                              "tracker_secret": "x" * 20})
    text = ('# TYPE bridge_hooks_total counter\n'
            'bridge_hooks_total{outcome="queued",source="tracker"} 250.0\n'
            '# TYPE bridge_hooks_trusted gauge\nbridge_hooks_trusted 1.0\n')
    check = counters_check(settings, lambda url: httpx.Response(200, text=text))
    assert check is not None
    assert check.level != "pass", f"{check.level}: {check.detail}"
