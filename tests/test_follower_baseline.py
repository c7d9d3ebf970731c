"""A follower the bridge added and a person removed by hand stays removed, however the link began.

The followers rule is driven by bookmarks *changing* against the link's baseline.  A link the
bridge created (or found again after a crash) starts without that baseline; until it has one, the
bookmarks "seen before" are those of the followers the bridge owns.  Owned followers who unfollow
by hand stop being owned when the link next commits, so without a baseline recorded at the first
look, that commit emptied "seen before", and the next cycle took the old bookmark for a new one and
followed the person again (found by the long state-machine run with hook-driven cycles).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from bridge.core.new_issue import unique_key
from bridge.engine import Engine
from tests.test_engine import World, make_world

BOB = "bob@example.com"
ALICE = "alice@example.com"


def followers(w: World, key: str) -> set[str]:
    return {ref["display"] for ref in w.tracker.issue_json(key).get("followers") or []}


def follower_writes(w: World) -> list[object]:
    return [r.body for r in w.tracker.writes() if isinstance(r.body, dict) and "followers" in r.body]


def writes_of_cycles(w: World, *fulls: bool) -> list[object]:
    """Run clean cycles (full or incremental, in order): the follower writes they made."""
    w.tracker.clear_log()
    for full in fulls:
        assert w.cycle(full=full).ok
    return follower_writes(w)


def restart_with(w: World, users: dict[str, str]) -> None:
    """The operator adds `[mapping.users]` entries (a config edit and a restart: a new engine,
    the same state file and servers)."""
    settings = w.engine.settings.model_copy(deep=True)
    settings.mapping.users.update(users)
    w.engine = Engine(settings, w.store, w.engine.sentry, w.engine.tracker)


def unknown_bookmarks(w: World) -> None:
    """The next cycle's bookmark searches fail (every attempt): bookmarks are unknown."""
    w.sentry.inject("status", status=500, method="GET", path=r"/issues/$", query="bookmarks", times=100)


def start(w: World, how: str) -> tuple[str, str]:
    """A Sentry issue bookmarked by bob and the Tracker issue the bridge made for it, bob
    following: created in a cycle, or found again after a crash between the create and the link
    (the intent row still pending) by a cycle that knows the bookmarks, or by one that does not."""
    if how == "created":
        w.cycle()  # the first cycle marks where creation starts: issues from before wait for backfill
    sid = w.sentry.add_issue("backend", "boom")
    w.sentry.bookmark(sid, BOB)
    if how == "created":
        w.cycle()
        (link,) = w.store.links()
        return sid, link.tracker_key
    unique = unique_key("acme", sid)
    w.store.add_intent(sid, unique, "OPS", followers=frozenset({"bob"}))
    key = w.tracker.add_issue("OPS", "boom", followers=["bob", "alice"], unique=unique)
    if how == "recovered, bookmarks unknown":
        unknown_bookmarks(w)
    report = w.cycle()
    w.sentry.clear_faults()
    assert report.recovered == 1
    return sid, key


@pytest.mark.parametrize("how", ["created", "recovered", "recovered, bookmarks unknown"])
def test_a_follower_removed_by_hand_is_not_added_back(tmp_path: Path, how: str) -> None:
    w = make_world(tmp_path, create={"enabled": True, "query": "is:unresolved"})
    sid, key = start(w, how)
    assert "bob" in followers(w, key)
    w.tracker.add_follower(key, "alice")  # someone else follows too: the list never empties
    # bob unfollows by hand, and a change on the link makes the next cycle commit it.
    w.tracker.remove_follower(key, "bob", by="bob")
    w.tracker.set_status(key, "closed", resolution="fixed")
    if how == "recovered, bookmarks unknown":
        unknown_bookmarks(w)  # still unknown while the link commits
        w.cycle()
        w.sentry.clear_faults()
    assert writes_of_cycles(w, False, False, True) == []
    assert "bob" not in followers(w, key)
    assert w.sentry.issue_json(sid)["status"] == "resolved"  # the status did cross


@pytest.mark.parametrize("how", ["created", "recovered"])
def test_a_person_who_follows_again_by_hand_is_theirs_when_the_bookmark_goes(tmp_path: Path, how: str) -> None:
    """The first look records the bookmarks, so an unfollow by hand ends the bridge's ownership:
    following again is the person's own, and dropping the bookmark later leaves it alone."""
    w = make_world(tmp_path, create={"enabled": True, "query": "is:unresolved"})
    sid, key = start(w, how)
    w.tracker.add_follower(key, "alice")
    w.tracker.remove_follower(key, "bob", by="bob")
    w.tracker.set_status(key, "closed", resolution="fixed")
    w.cycle()
    w.tracker.add_follower(key, "bob", by="bob")
    w.cycle()
    w.sentry.bookmark(sid, BOB, on=False)
    assert writes_of_cycles(w, False, True) == []
    assert "bob" in followers(w, key)
