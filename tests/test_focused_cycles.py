"""Issue 15, item 2: with healthy hooks an incremental cycle reads only the links something points
at (hooks, the Tracker poll, bookmark searches, retries) plus a rotating slice, and every link is
still read at least once every `sync.full_resync_every` cycles.  The engine against both
emulators in-process; the daemon's side (when hooks are trusted) is in test_hook_trust.py."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.core.focus import Focus, bookmark_changes, rotating_slice, select, slice_size
from bridge.engine import Engine
from bridge.engine.cycle import SLICE_AFTER
from tests.test_engine import World, make_world

NO_HINTS = Focus()


def sentry_reads(world: World) -> list[str]:
    """Sentry issue ids read by batch (`group=`) since the log was last cleared."""
    return [value for r in world.sentry.requests("GET", r"/organizations/acme/issues/$")
            for key, value in r.query if key == "group"]


@pytest.fixture
def focused(tmp_path: Path) -> Iterator[World]:
    w = make_world(tmp_path, sync={"full_resync_every": 5})
    yield w
    w.store.close()


def settle(world: World, n: int) -> list[tuple[str, str]]:
    """`n` links (their Sentry issues last seen yesterday), one full cycle (which also makes the
    engine ready to focus)."""
    yesterday = datetime.now(UTC) - timedelta(days=1)
    pairs = [world.pair(first_seen=yesterday, last_seen=yesterday) for _ in range(n)]
    first = world.cycle(focus=NO_HINTS)
    assert first.full and first.focus is None
    world.sentry.clear_log()
    return pairs


# -- the pure part ---------------------------------------------------------------------------


@given(ids=st.lists(st.text("0123456789", min_size=1, max_size=4), unique=True, max_size=60),
       every=st.integers(1, 12), start=st.one_of(st.none(), st.text("0123456789", max_size=4)))
def test_every_consecutive_run_of_slices_covers_every_link(ids: list[str], every: int, start: str | None) -> None:
    ids.sort()
    after, seen = start, set()
    for _ in range(every):
        taken, after = rotating_slice(ids, after, slice_size(len(ids), every))
        seen.update(taken)
    assert seen == set(ids)


def test_a_slice_resumes_after_an_id_that_went_away() -> None:
    taken, after = rotating_slice(["1", "2", "3", "4", "5"], None, 2)
    assert (taken, after) == (["1", "2"], "2")
    taken, after = rotating_slice(["1", "3", "4", "5"], after, 2)  # "2" unlinked meanwhile
    assert (taken, after) == (["3", "4"], "4")
    assert rotating_slice(["1", "3", "4", "5"], after, 2) == (["5", "1"], "1")  # wraps round


def test_bookmark_changes_see_additions_removals_and_issues_gone_from_the_search() -> None:
    before = {"1": frozenset({"a"}), "2": frozenset({"a", "b"}), "3": frozenset({"c"})}
    after = {"1": frozenset({"a"}), "2": frozenset({"a"}), "4": frozenset({"d"})}
    assert bookmark_changes(before, after) == {"2", "3", "4"}


def test_select_names_its_reasons_and_ignores_what_is_not_linked() -> None:
    linked = [("1", "OPS-1"), ("2", "OPS-2"), ("3", "OPS-3"), ("4", "OPS-4")]
    chosen = select(linked, Focus(frozenset({"1", "99"}), frozenset({"OPS-2", "OPS-77"})), updated_keys={"OPS-3"},
                    bookmarks_changed={"4", "55"}, retry=set(), slice_after="4", every=4)
    assert chosen.pointed == {"1", "2", "3", "4"}
    assert chosen.reasons == {"hook": 2, "poll": 1, "bookmarks": 1, "retry": 0, "reopened": 0}
    assert chosen.sliced == frozenset() and chosen.slice_after == "1"  # the slice's one link was pointed at


# -- the engine ------------------------------------------------------------------------------


def test_an_idle_focused_cycle_reads_one_slice_not_every_link(focused: World) -> None:
    world = focused
    settle(world, 250)
    report = world.cycle(focus=NO_HINTS)
    assert not report.full and report.focus is not None
    assert report.summary()["links_read"] == 50  # ceil(250 / 5)
    assert len(sentry_reads(world)) == 50
    # One batch, two bookmarks searches, one page of issues seen since the last scheduled cycle (the
    # regressions search: none of these issues had an event); the create scan aside.
    scans = [r for r in world.sentry.requests("GET") if ("sort", "new") in r.query and ("query", "is:unresolved")
             in r.query]
    assert report.requests["sentry"] - len(scans) == 1 + 2 + 1
    world.sentry.clear_log()
    unfocused = world.cycle()  # no hooks: today's behaviour, every link read
    assert unfocused.focus is None and len(sentry_reads(world)) == 250


def test_every_link_is_read_at_least_once_every_full_resync_every_cycles(focused: World) -> None:
    world = focused
    ids = {sid for sid, _ in settle(world, 37)}
    per_cycle: list[set[str]] = []
    for _ in range(14):
        world.sentry.clear_log()
        if world.cycle(focus=NO_HINTS).focus is not None:  # the full cycles are left out: the slices
            per_cycle.append(set(sentry_reads(world)))  # alone must cover every link
    assert len(per_cycle) >= 10
    for start in range(len(per_cycle) - 5 + 1):
        window = set().union(*per_cycle[start : start + 5])
        assert window == ids, f"focused cycles {start}..{start + 4} never read {sorted(ids - window)}"


def test_a_hinted_sentry_change_crosses_and_an_unhinted_one_waits_for_the_slice(focused: World) -> None:
    world = focused
    pairs = settle(world, 40)
    (hinted, hinted_key), (quiet, quiet_key) = pairs[-1], pairs[-2]  # ids the first slice does not reach
    world.sentry.set_status(hinted, "resolved", by="alice@example.com")
    world.sentry.set_status(quiet, "resolved", by="alice@example.com")
    report = world.cycle(focus=Focus(sentry_ids=frozenset({hinted})))
    assert report.focus is not None and hinted in report.focus.pointed and quiet not in report.focus.ids
    assert world.t_status(hinted_key) == "closed"
    assert world.t_status(quiet_key) == "open"  # not read this cycle: the slice will reach it
    for _ in range(4):
        world.cycle(focus=NO_HINTS)
    assert world.t_status(quiet_key) == "closed"


def test_a_tracker_change_is_found_by_the_poll_without_any_hint(focused: World) -> None:
    world = focused
    sid, key = settle(world, 40)[-1]
    world.tracker.set_status(key, "closed", resolution="fixed", by="bob")
    report = world.cycle(focus=NO_HINTS)
    assert report.focus is not None and sid in report.focus.pointed and report.focus.reasons["poll"] == 1
    assert world.s_status(sid) == "resolved"


def test_a_bookmark_added_or_taken_off_is_read_in_the_next_focused_cycle(focused: World) -> None:
    world = focused
    sid, key = settle(world, 40)[-1]
    world.cycle(focus=NO_HINTS)  # a focused cycle: the searches it compares with are now this process's
    world.sentry.bookmark(sid, "bob@example.com")  # Sentry sends no hook for a bookmark
    report = world.cycle(focus=NO_HINTS)
    assert report.focus is not None and report.focus.reasons["bookmarks"] == 1
    followers = {ref["id"] for ref in world.tracker.issue_json(key).get("followers") or []}
    assert followers == {world.tracker.uid_of("bob")}
    world.sentry.bookmark(sid, "bob@example.com", on=False)
    report = world.cycle(focus=NO_HINTS)
    assert report.focus is not None and sid in report.focus.pointed
    assert not world.tracker.issue_json(key).get("followers")


def test_a_failed_write_is_retried_by_the_next_focused_cycle_without_a_hint(focused: World) -> None:
    world = focused
    sid, key = settle(world, 40)[-1]
    world.tracker.inject("status", status=503, method="POST", path=r"/_execute$", times=10)
    world.sentry.set_status(sid, "resolved", by="alice@example.com")
    report = world.cycle(focus=Focus(sentry_ids=frozenset({sid})))
    assert report.failures and world.t_status(key) == "open"
    world.tracker.clear_faults()
    world.store.db.execute("UPDATE failures SET next_try = '2000-01-01T00:00:00+00:00'")  # due now
    report = world.cycle(focus=NO_HINTS, respect_backoff=True)
    assert report.focus is not None and report.focus.reasons["retry"] == 1
    assert world.t_status(key) == "closed"


def test_after_a_refused_cycle_the_next_one_reads_every_link(tmp_path: Path) -> None:
    world = make_world(tmp_path, sync={"full_resync_every": 5, "max_changes_per_cycle": 2})
    pairs = settle(world, 30)
    for sid, _ in pairs[:5]:
        world.sentry.set_status(sid, "resolved", by="alice@example.com")
    refused = world.cycle(focus=Focus(sentry_ids=frozenset(sid for sid, _ in pairs[:5])))
    assert refused.refused is not None
    after = world.cycle(focus=NO_HINTS, force=True)  # the hints went with the refused cycle
    assert after.focus is None and after.summary()["links_read"] == 30
    assert all(world.t_status(key) == "closed" for _, key in pairs[:5])
    world.store.close()


def test_the_slice_reports_a_status_change_no_hook_named_but_not_an_unassignment(focused: World) -> None:
    world = focused
    pairs = settle(world, 10)  # slices of 2
    world.sentry.assign(pairs[1][0], "alice@example.com", by="alice@example.com")
    world.cycle(focus=Focus(sentry_ids=frozenset({pairs[1][0]})))  # assigned by hook
    world.store.set_cursor(SLICE_AFTER, "")  # the next slice starts at the first link again
    world.sentry.set_status(pairs[0][0], "ignored", by="alice@example.com")
    world.sentry.assign(pairs[1][0], None, by="alice@example.com")  # Sentry sends nothing for this
    report = world.cycle(focus=NO_HINTS)
    assert report.focus is not None and report.focus.sliced == {pairs[0][0], pairs[1][0]}
    assert report.unhinted == [pairs[0][0]]


def test_a_dry_run_does_not_move_the_slice(focused: World) -> None:
    world = focused
    settle(world, 20)
    world.cycle(focus=NO_HINTS)
    before = world.store.cursor(SLICE_AFTER)
    assert before
    world.cycle(focus=NO_HINTS, dry_run=True)
    assert world.store.cursor(SLICE_AFTER) == before


# -- cycles hooks bring forward --------------------------------------------------------------


def test_a_hinted_cycle_reads_only_what_is_pointed_at_and_leaves_the_schedule_alone(focused: World) -> None:
    world = focused
    pairs = settle(world, 250)
    world.cycle(focus=NO_HINTS)  # one focused cycle: the slice cursor and the count move
    since_full, after = world.store.cursor("cycles.since_full"), world.store.cursor(SLICE_AFTER)
    sid, key = pairs[-1]
    world.sentry.set_status(sid, "resolved", by="alice@example.com")
    world.sentry.clear_log()
    for _ in range(6):  # more hinted cycles than full_resync_every: none of them is full
        report = world.cycle(focus=Focus(sentry_ids=frozenset({sid}), hinted=True))
        assert not report.full and report.kind == "hinted"
        assert report.focus is not None and report.focus.ids == {sid} and report.focus.sliced == frozenset()
    assert world.t_status(key) == "closed"
    assert sentry_reads(world) == [sid] * 6
    bookmark_searches = [r for r in world.sentry.requests("GET", r"/issues/$")
                         if any(k == "query" and "bookmarks:" in v for k, v in r.query)]
    assert bookmark_searches == []  # no hook exists for bookmarks: left to the scheduled cycles
    assert (world.store.cursor("cycles.since_full"), world.store.cursor(SLICE_AFTER)) == (since_full, after)


def test_a_hinted_cycle_before_any_scheduled_one_still_reads_only_the_hinted_links(focused: World) -> None:
    world = focused
    pairs = settle(world, 30)
    old = world.engine
    world.engine = Engine(old.settings, world.store, old.sentry, old.tracker)  # as after a restart
    report = world.cycle(focus=Focus(sentry_ids=frozenset({pairs[0][0]}), hinted=True))
    assert report.kind == "hinted" and report.summary()["links_read"] == 1
    assert world.cycle(focus=NO_HINTS).kind == "incremental"  # no bookmarks compared yet: every link
    assert world.cycle(focus=NO_HINTS).kind == "focused"


def test_a_hinted_cycle_whose_poll_fails_reads_the_hinted_links_and_keeps_the_cursor(focused: World) -> None:
    world = focused
    sid, key = settle(world, 30)[3]
    cursor = world.store.cursor("tracker.updated_at")
    world.sentry.set_status(sid, "resolved", by="alice@example.com")
    world.tracker.inject("status", status=503, method="POST", path=r"/issues/_search", times=20)
    report = world.cycle(focus=Focus(sentry_ids=frozenset({sid}), hinted=True))
    assert report.poll_error and report.focus is not None and report.focus.ids == {sid}
    assert world.t_status(key) == "closed"
    assert world.store.cursor("tracker.updated_at") == cursor  # the next poll looks from where it was


def test_a_hinted_cycle_creates_only_when_a_hook_named_a_new_issue(tmp_path: Path) -> None:
    world = make_world(tmp_path, sync={"full_resync_every": 5}, create={"enabled": True})
    pairs = settle(world, 5)

    def create_queries() -> int:
        return sum(1 for r in world.sentry.requests("GET", r"/issues/$")
                   if ("sort", "new") in r.query and ("query", "is:unresolved") in r.query)

    fresh = world.sentry.add_issue("backend", "a new error")
    world.cycle(focus=Focus(sentry_ids=frozenset({pairs[0][0]}), hinted=True))
    assert create_queries() == 0 and fresh not in {link.sentry_id for link in world.store.links()}
    report = world.cycle(focus=Focus(sentry_ids=frozenset({fresh}), hinted=True))  # its `created` hook
    assert create_queries() == 1 and [sid for sid, _ in report.created] == [fresh]
    world.store.close()


def test_hints_for_unlinked_issues_cost_no_write_and_no_read_of_them(tmp_path: Path) -> None:
    world = make_world(tmp_path, sync={"full_resync_every": 5}, create={"enabled": False})
    settle(world, 20)
    stranger = world.sentry.add_issue("backend", "not linked")
    world.sentry.clear_log()
    world.tracker.clear_log()
    report = world.cycle(focus=Focus(sentry_ids=frozenset({stranger, "123456789"}),
                                     tracker_keys=frozenset({"OPS-999", "NOPE-1"}), hinted=True))
    assert report.summary()["links_read"] == 0
    assert world.sentry.writes() == [] and world.tracker.writes() == []
    assert sentry_reads(world) == []
    assert not [r for r in world.tracker.requests("GET") if "OPS-999" in r.path or "NOPE-1" in r.path]
    world.store.close()


def test_a_hinted_creation_gets_its_followers_and_leaves_the_bookmark_diff_to_the_scheduled_cycle(
        focused: World) -> None:
    world = focused
    pairs = settle(world, 10)
    world.cycle(focus=NO_HINTS)  # a focused cycle: its bookmark searches are what the next compares with
    old_sid, old_key = pairs[4]
    world.sentry.bookmark(old_sid, "bob@example.com")  # no hook for this
    fresh = world.sentry.add_issue("backend", "a new error")
    world.sentry.bookmark(fresh, "alice@example.com")
    report = world.cycle(focus=Focus(sentry_ids=frozenset({fresh}), hinted=True))  # its `created` hook
    new_key = dict(report.created)[fresh]
    followers = {ref["id"] for ref in world.tracker.issue_json(new_key).get("followers") or []}
    assert followers == {world.tracker.uid_of("alice")}  # at creation, not a PATCH one cycle later
    scheduled = world.cycle(focus=NO_HINTS)
    assert scheduled.focus is not None and old_sid in scheduled.focus.pointed  # the diff was not consumed
    followers = {ref["id"] for ref in world.tracker.issue_json(old_key).get("followers") or []}
    assert followers == {world.tracker.uid_of("bob")}
