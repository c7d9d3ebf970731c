"""Review of 00ec382 (followers baseline): remaining ways the followers rule reverts a person's
change in Tracker, or removes a follower a person added by hand.

The rules (bridge/core/plan.py `_plan_followers`): a follower is added only when a bookmark
*appears* compared with the link's followers baseline; only followers the bridge added (owned)
are removed, when their bookmark goes; a follower a person removes or adds by hand is left alone.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bridge.core.new_issue import unique_key
from bridge.engine import Engine
from bridge.store import Store
from tests.test_engine import World, make_world
from tests.test_follower_baseline import (
    ALICE,
    BOB,
    follower_writes,
    followers,
    restart_with,
    start,
    unknown_bookmarks,
    writes_of_cycles,
)

# == 1. The fix's second half: an unfollow seen before the first look at bookmarks is thrown away ==


def test_recovered_link_unfollow_seen_before_the_first_look_is_not_forgotten(tmp_path: Path) -> None:
    """Recovered link (pending create intent), bookmarks unknown at recovery.  bob (owned: the
    create asked for him) unfollows by hand; a status change makes the next cycle (bookmarks still
    unknown) commit the link and read the followers without bob.  bob then follows again by hand:
    that follow is his own.  When he later drops the bookmark, the bridge must leave his follow
    alone.  At 00ec382 `Engine.finish` skips the pruning of owned followers while the link has no
    bookmark baseline, so the unfollow it saw is lost, bob stays owned, and the bridge unfollows
    him (the same test as test_follower_baseline's "follows again by hand", for the start that
    test leaves out)."""
    w = make_world(tmp_path, create={"enabled": True, "query": "is:unresolved"})
    sid, key = start(w, "recovered, bookmarks unknown")
    w.tracker.remove_follower(key, "bob", by="bob")
    w.tracker.set_status(key, "closed", resolution="fixed")
    unknown_bookmarks(w)
    assert w.cycle().ok  # commits the status (the link was read: bob does not follow)
    w.sentry.clear_faults()
    assert w.sentry.issue_json(sid)["status"] == "resolved"
    w.tracker.add_follower(key, "bob", by="bob")  # bob's own follow now
    assert w.cycle().ok
    w.sentry.bookmark(sid, BOB, on=False)
    assert writes_of_cycles(w, False, True) == []
    assert "bob" in followers(w, key)


# == 2. An unfollow seen by a cycle that has nothing else to commit is never learnt ==============


def test_an_unfollow_seen_in_a_quiet_cycle_ends_ownership(tmp_path: Path) -> None:
    """A plain link: bob bookmarks, the bridge follows the ticket for him (owned).  bob unfollows
    by hand and a full cycle reads the ticket without him; nothing else changed, so the link is
    not committed and the owned row stays.  bob follows again by hand (his own follow now), then
    drops the bookmark: the bridge removes his hand-made follow.  The pruning of owned followers
    only runs from `Engine.finish` for links with a change to commit (`_plan_batch` commits only
    runs with `changes(run.actions)`), so whether a person's follow is respected depends on an
    unrelated field having changed in between."""
    w = make_world(tmp_path)
    sid, key = w.pair()
    w.sentry.bookmark(sid, BOB)
    assert w.cycle().ok
    assert followers(w, key) == {"bob"}
    w.tracker.remove_follower(key, "bob", by="bob")
    assert w.cycle(full=True).ok  # sees bob does not follow
    w.tracker.add_follower(key, "bob", by="bob")  # bob's own follow now
    assert w.cycle(full=True).ok
    w.sentry.bookmark(sid, BOB, on=False)
    w.tracker.clear_log()
    assert w.cycle(full=True).ok
    assert follower_writes(w) == []
    assert followers(w, key) == {"bob"}


# == 3. A person unmapped for a while looks like a bookmark removed; remapped, like a new one =====


def test_an_unfollow_survives_the_person_being_unmapped_and_mapped_again(tmp_path: Path) -> None:
    """bob bookmarks; the bridge follows for him; bob unfollows by hand (keeps the bookmark).  A
    second Tracker account with bob's e-mail appears, so bob is unmapped (ambiguous e-mail) and
    his bookmarks are not searched: the planner takes his bookmark for removed and moves the
    baseline to {} ("bookmarks changed; followers already match").  The operator settles the
    ambiguity with `[mapping.users]`: bob's old bookmark now looks new, and the bridge follows the
    ticket for him again, reverting his unfollow.  Unmapped is unknown, not "no bookmark"."""
    w = make_world(tmp_path)
    sid, key = w.pair()
    w.sentry.bookmark(sid, BOB)
    assert w.cycle(full=True).ok
    assert followers(w, key) == {"bob"}
    w.tracker.remove_follower(key, "bob", by="bob")
    assert w.cycle(full=True).ok
    w.tracker.add_user("bob2", BOB)  # a second account with bob's e-mail: bob matches nobody
    assert w.cycle(full=True).ok
    # The operator maps bob explicitly (a config edit and a restart: a new engine, same state).
    restart_with(w, {BOB: "bob"})
    assert writes_of_cycles(w, True, False, True) == []
    assert "bob" not in followers(w, key)


def test_a_bookmark_dropped_while_unmapped_still_drops_the_bridges_follower(tmp_path: Path) -> None:
    """bob bookmarks; the bridge follows for him (owned).  bob is unmapped for a while (a second
    Tracker account with his e-mail); the planner takes his bookmark for removed but cannot
    unfollow an unmapped person, and adopts {} as the bookmarks.  Meanwhile bob really drops the
    bookmark.  Once mapped again, no bookmark came or went against that baseline: the follower
    the bridge added for a bookmark that is gone is never removed."""
    w = make_world(tmp_path)
    sid, key = w.pair()
    w.sentry.bookmark(sid, BOB)
    assert w.cycle(full=True).ok
    assert followers(w, key) == {"bob"}
    w.tracker.add_user("bob2", BOB)
    assert w.cycle(full=True).ok
    w.sentry.bookmark(sid, BOB, on=False)
    assert w.cycle(full=True).ok
    restart_with(w, {BOB: "bob"})
    for full in (True, False, True):
        assert w.cycle(full=full).ok
    assert "bob" not in followers(w, key)


# == 4. The add of a plan lands, its removal does not: the add's landing is not remembered ======


def answer_lost_and_unread(w: World, key: str) -> None:
    """The add's answer is lost and the read-back fails (the process might as well have died):
    the add stays pending, and the removal is never sent."""
    w.tracker.inject("timeout_after", method="PATCH", path=rf"/issues/{key}$", times=10)
    w.tracker.inject("status", status=503, method="GET", path=rf"/issues/{key}$", query=r"^$", times=100)


def removal_refused(w: World, key: str) -> None:
    """The add lands; the removal is answered 500 on every attempt (not landed, retried later)."""
    w.tracker.inject("status", status=500, method="PATCH", path=rf"/issues/{key}$", after=1, times=10)


@pytest.mark.parametrize("fault", [answer_lost_and_unread, removal_refused])
def test_an_add_that_landed_before_its_removal_is_not_made_again_after_an_unfollow(
        tmp_path: Path, fault: Callable[[World, str], None]) -> None:
    """One plan both adds and removes followers (alice dropped her bookmark, bob bookmarked): the
    add goes first with `moves_baseline=False`, and the removal does not land after it (`fault`:
    the add's answer lost and unread, judged later from the issue's history; or the removal
    refused).  bob sees the ticket and unfollows by hand.  At 00ec382 the baseline did not move
    with the add (the removal was to move it), so bob's bookmark still looked new against the old
    baseline and the bridge followed the ticket for him again, reverting his unfollow."""
    w = make_world(tmp_path, sync={"concurrency": 1})
    sid, key = w.pair()
    w.sentry.bookmark(sid, ALICE)
    assert w.cycle().ok
    assert followers(w, key) == {"alice"}
    w.sentry.bookmark(sid, ALICE, on=False)
    w.sentry.bookmark(sid, BOB)
    fault(w, key)
    report = w.cycle()
    w.tracker.clear_faults()
    assert not report.ok
    if fault is answer_lost_and_unread:
        assert w.store.pending_links() == {sid}
    assert followers(w, key) == {"alice", "bob"}  # the add landed, the removal did not
    w.tracker.remove_follower(key, "bob", by="bob")
    w.tracker.clear_log()
    for full in (False, True):
        assert w.cycle(full=full).ok
    assert [body for body in follower_writes(w) if "add" in body["followers"]] == []  # type: ignore[index]
    assert followers(w, key) == set()  # alice's follower removed with her bookmark; bob's unfollow kept


# == 5. `relink` without the bookmarks: the next sync follows again for every old bookmark ==========


def relinked_from_a_lost_state(w: World, tmp_path: Path) -> World:
    """The state file is lost; a fresh one is rebuilt with `relink` (same settings and servers)."""
    store = Store.open(tmp_path / "rebuilt.db")
    return World(w.sentry, w.tracker, Engine(w.engine.settings, store, w.engine.sentry, w.engine.tracker), store)


def test_relink_with_bookmarks_unknown_does_not_follow_again_for_old_bookmarks(tmp_path: Path) -> None:
    """The bridge created a ticket for an issue bob bookmarked and followed it for him; bob
    unfollowed by hand long ago (his bookmark stays).  The state file is lost and `relink`
    rebuilds it, promising "each field's baseline becomes what the two sides hold now, so the
    next sync writes nothing"; its bookmark searches fail, so the followers field gets no
    baseline and `relink` says nothing about it.  The next sync takes the first look at the
    bookmarks against an empty owned set: bob's old bookmark looks new, and he is followed
    again."""
    w = make_world(tmp_path, create={"enabled": True, "query": "is:unresolved"})
    w.cycle()
    sid = w.sentry.add_issue("backend", "boom")
    w.sentry.bookmark(sid, BOB)
    w.cycle()
    (link,) = w.store.links()
    key = link.tracker_key
    assert followers(w, key) == {"bob"}
    w.tracker.add_follower(key, "alice")
    w.tracker.remove_follower(key, "bob", by="bob")
    w.cycle()
    r = relinked_from_a_lost_state(w, tmp_path)
    unknown_bookmarks(r)
    assert r.engine.relink()["linked"] == 1
    r.sentry.clear_faults()
    r.tracker.clear_log()
    for full in (True, False, True):
        assert r.cycle(full=full).ok
    assert follower_writes(r) == []
    assert "bob" not in followers(r, key)


def test_relink_of_an_old_issue_does_not_follow_again_when_it_regresses(tmp_path: Path) -> None:
    """No fault at all: `relink` rebuilds the link of an issue last seen 100 days ago (outside
    the 90 days Sentry's bookmark search can see, so bookmarks unknown: no followers baseline).
    bob had bookmarked it, been followed by the bridge, and unfollowed by hand.  When the issue
    regresses (a new event brings it back into the search window), the first look at the
    bookmarks takes bob's old bookmark for a new one and follows him again."""
    w = make_world(tmp_path)
    old = datetime.now(UTC) - timedelta(days=100)
    sid = w.sentry.add_issue("backend", "boom", first_seen=old, last_seen=old)
    w.sentry.bookmark(sid, BOB)
    w.tracker.add_issue("OPS", "boom", followers=["alice"], unique=unique_key("acme", sid))  # bob unfollowed
    assert w.engine.relink()["linked"] == 1
    (link,) = w.store.links()
    assert w.cycle(full=True).ok
    w.sentry.add_event(sid)  # it happens again
    assert writes_of_cycles(w, True, False, True) == []
    assert "bob" not in followers(w, link.tracker_key)
