"""The official `yandex_tracker_client` (which works against production Tracker) must work
against the emulator too: a cross-check that the emulator speaks real Tracker, not only what our
own client expects.  It uses `requests`, so the emulator runs on a loopback server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from yandex_tracker_client import TrackerClient as OfficialClient
from yandex_tracker_client import exceptions

from bridge.sandbox.http import LoopbackServer
from bridge.sandbox.tracker_emulator import TrackerEmulator


@pytest.fixture
def emu() -> TrackerEmulator:
    return TrackerEmulator()


@pytest.fixture
def official(emu: TrackerEmulator) -> Iterator[OfficialClient]:
    with LoopbackServer(emu) as server:
        # retries=0: the official client would otherwise retry every 5xx ten times
        yield OfficialClient(
            token="tracker-token", org_id="1234567", base_url=server.url, retries=0, timeout=5
        )


def test_find_by_queue_and_by_filter(emu: TrackerEmulator, official: OfficialClient) -> None:
    emu.add_user("ann", "ann@example.com")
    for n in range(60):  # more than the default page of 50: the client follows Link
        emu.add_issue("OPS", f"issue {n}", assignee="ann" if n % 2 else None)
    by_queue = official.issues.find(queue="OPS")
    assert len(by_queue) == 60  # a seekable list: reads X-Total-Count
    assert [i.key for i in by_queue] == [f"OPS-{n}" for n in range(1, 61)]
    # it sends null for every unused selector
    body = emu.requests("POST", "_search")[0].body
    assert (
        body["queue"] == "OPS" and body["filter"] is None and body["keys"] is None and body["query"] is None
    )

    mine = list(official.issues.find(filter={"queue": "OPS", "assignee": "ann"}, order=["-key"]))
    assert [i.key for i in mine][:2] == ["OPS-60", "OPS-58"] and len(mine) == 30
    assert all(i.assignee.id == emu.uid_of("ann") for i in mine)
    assert official.issues.find(keys=["OPS-2"])[0].summary == "issue 1"


def test_create_with_unique_and_a_repeat_returns_the_same_issue(
    emu: TrackerEmulator, official: OfficialClient
) -> None:
    issue = official.issues.create(
        queue="OPS", summary="From Sentry", unique="sentry:acme:7", tags=["sentry"]
    )
    assert issue.key == "OPS-1" and issue.status.key == "open" and issue.tags == ["sentry"]
    again = official.issues.create(queue="OPS", summary="From Sentry", unique="sentry:acme:7")
    assert again.key == "OPS-1"
    assert emu.issue_keys() == ["OPS-1"]
    assert emu.requests("POST", "_findByUnique")  # how the client recovered from the 409


def test_update_with_version_and_a_stale_one_conflicts(
    emu: TrackerEmulator, official: OfficialClient
) -> None:
    key = emu.add_issue("OPS", "x")
    issue = official.issues[key]
    stale = official.issues[key]
    issue.update(summary="renamed", followers={"add": ["tracker-admin"]})
    assert issue.summary == "renamed" and issue.version == 2
    assert [f.id for f in issue.followers] == [emu.admin_uid]
    assert emu.requests("PATCH")[0].path == f"/v2/issues/{key}"
    with pytest.raises(exceptions.Conflict):
        stale.update(summary="lost update")  # If-Match: "1"
    assert emu.issue_json(key)["summary"] == "renamed"
    # the client typed attributes from the global fields it read
    assert emu.requests("GET", r"/v2/fields/?$")


def test_transitions_list_and_execute_with_resolution(emu: TrackerEmulator, official: OfficialClient) -> None:
    key = emu.add_issue("OPS", "x")
    issue = official.issues[key]
    assert sorted(t.id for t in issue.transitions.get_all()) == ["close", "start_progress"]
    close = issue.transitions["close"]
    assert close.to.key == "closed"
    with pytest.raises(exceptions.UnprocessableEntity):
        close.execute(comment="no resolution")
    after = close.execute(comment="Fixed", resolution="fixed")
    assert [t.id for t in after] == ["reopen"]
    closed = official.issues[key]
    assert closed.status.key == "closed" and closed.resolution.key == "fixed"
    assert closed.previousStatus.key == "open"


def test_comments(emu: TrackerEmulator, official: OfficialClient) -> None:
    key = emu.add_issue("OPS", "x")
    issue = official.issues[key]
    comment = issue.comments.create(text="Seen again in production")
    assert comment.text == "Seen again in production" and isinstance(comment.id, int)
    assert [c.text for c in issue.comments.get_all()] == ["Seen again in production"]
    # the default isAddToFollowers subscribed the robot
    assert emu.issue_json(key)["followers"][0]["id"] == emu.robot_uid


def test_references_are_followed_through_self(emu: TrackerEmulator, official: OfficialClient) -> None:
    key = emu.add_issue("OPS", "x", assignee="tracker-admin")
    issue = official.issues[key]
    assert issue.assignee.login == "tracker-admin"  # not in the ref: GETs the ref's self
    assert issue.queue.name == "OPS"
    assert official.myself.login == "bridge-robot"
    assert {s.key for s in official.statuses.get_all()} >= {"open", "closed"}


def test_past_the_search_limit_it_sees_what_the_real_api_shows_it(
    emu: TrackerEmulator, official: OfficialClient
) -> None:
    """The official client only pages: past the limit it gets the truncated totals reported of the
    real API (yandex_tracker_client#13: 10000 of 102,544), no error and no more rows."""
    emu.paged_limit = 50
    emu.add_issues("OPS", (f"issue {n}" for n in range(60)))
    found = official.issues.find(queue="OPS", per_page=10)
    assert len(found) == 50 and len(list(found)) == 50
    assert emu.open_scrolls == 0
