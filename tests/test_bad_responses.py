"""Responses that do not parse (issue 6, item 7): malformed JSON, an HTML page with a 200, a
missing field, a wrong type, a list where an object belongs -- on every kind of read a cycle does
(member and user lists, the refresh of linked issues on each side, the bookmark searches, the
transitions list, the incremental Tracker poll, the create listing) and on every write (the
answer is corrupted after the write landed).

What must hold: the trouble is recorded where an operator looks (the failures table that
`status --json` shows, or the cycle's own record) with its endpoint and a short excerpt of the
body; the run goes on for everything else; nothing is written on the strength of a response that
was not understood; and a listing whose page k > 1 fails leaves its links unknown -- nothing is
closed, unlinked or unfollowed because it was missing from the pages that did arrive.

In-process (httpx.MockTransport) against both emulators; `mangle` faults corrupt real answers.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from bridge.commands.status import status_data
from bridge.core.new_issue import unique_key
from bridge.engine import Engine
from bridge.engine.cycle import SINCE_FULL
from bridge.sandbox.http import EmulatorBase
from tests.test_engine import World, make_world

NOT_JSON = b'{"id": "5000000001", "status": "unres'
HTML = b"<html><head><title>Maintenance</title></head><body><h1>Back soon</h1></body></html>"


def world(tmp_path: Path, **settings: Any) -> World:
    """One worker: which request a fault hits does not depend on thread timing."""
    sync = {"concurrency": 1, "max_changes_per_cycle": 10_000, **settings.pop("sync", {})}
    return make_world(tmp_path, sync=sync, **settings)


def restart(w: World) -> None:
    """A new engine on the same state and clients, with a full resync due: its first cycle
    reads everything again (users, every linked issue), as `sync --full` does."""
    old = w.engine
    old.store.set_cursor(SINCE_FULL, str(old.settings.sync.full_resync_every))
    w.engine = Engine(old.settings, old.store, old.sentry, old.tracker)


def status_json(w: World) -> dict[str, Any]:
    """What `status --json` prints (the same function builds it)."""
    return status_data(w.store)


def failure_of(w: World, sid: str) -> str:
    rows = {row["sentry_id"]: row for row in status_json(w)["failures"]}
    assert sid in rows, f"{sid} not recorded as failing: {status_json(w)['failures']}"
    return str(rows[sid]["error"])


def writes(w: World) -> list[tuple[str, str]]:
    return [(r.method, r.path) for r in w.sentry.writes() + w.tracker.writes()]


# -- the flaws ------------------------------------------------------------------------------------


def drop(key: str) -> Callable[[Any], Any]:
    """A missing field: `key` removed from the object, or from every object of a list."""
    def change(data: Any) -> Any:
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict):
                item.pop(key, None)
        return data
    return change


def retype(key: str, value: Any) -> Callable[[Any], Any]:
    """A wrong type: `key` set to `value` (in the object, or in every object of a list)."""
    def change(data: Any) -> Any:
        for item in data if isinstance(data, list) else [data]:
            if isinstance(item, dict) and key in item:
                item[key] = value
        return data
    return change


def as_list(data: Any) -> Any:
    return [data]


def as_object(data: Any) -> Any:
    return {"items": data}


def raw(body: bytes) -> Callable[[Any], Any]:
    return lambda _data: body


def inject(emulator: EmulatorBase, flaw: str, change: Callable[[Any], Any] | None, **selector: Any) -> None:
    """`flaw` is "not-json", "html" or "mangle" (with `change`); the fault stays for `times`."""
    selector.setdefault("times", 100)
    if flaw == "not-json":
        emulator.inject("mangle", mangle=raw(NOT_JSON), **selector)
    elif flaw == "html":
        emulator.inject("mangle", mangle=raw(HTML), **selector)
    else:
        emulator.inject("mangle", mangle=change, **selector)


def landed_entry(w: World, sid: str) -> str:
    """The journal's word on a write that landed though its answer was unusable (read back)."""
    rows = [row for row in w.store.journal(sid) if row["outcome"] == "landed"]
    assert rows, f"no write of {sid} journalled as landed: {w.store.journal(sid)}"
    return str(rows[0]["detail"])


def assert_recorded(text: str, endpoint: str, excerpt_of: bytes | None = None) -> None:
    assert endpoint in text, f"endpoint {endpoint!r} missing from {text!r}"
    assert "body: '" in text, f"no excerpt in {text!r}"
    if excerpt_of is not None:
        assert excerpt_of.decode()[:20] in text, text
    assert len(text) < 600, f"not a short excerpt: {len(text)} chars"


FLAWS_SENTRY_LIST = [
    ("not-json", None),
    ("html", None),
    ("missing-field", drop("status")),
    ("wrong-type", as_list),  # each item a list instead of an issue object
    ("object-for-list", as_object),
]
FLAWS_TRACKER_LIST = [
    ("not-json", None),
    ("html", None),
    ("missing-field", drop("version")),
    ("wrong-type", retype("version", "seven")),
    ("object-for-list", as_object),
]


# Flaws inside one issue of a list answer: the bridge re-reads the issues one by one, so only the
# broken ones fail (the others of the batch go on).
ITEM_FLAWS = ("missing-field", "wrong-type")


def _flaw(name: str) -> str:
    return name if name in ("not-json", "html") else "mangle"


# -- reads of linked issues: the links fail alone, the run goes on ---------------------------------


@pytest.mark.parametrize(("flaw", "change"), FLAWS_SENTRY_LIST, ids=[f for f, _ in FLAWS_SENTRY_LIST])
def test_sentry_refresh_that_does_not_parse(tmp_path: Path, flaw: str, change: Any) -> None:
    w = world(tmp_path, create={"enabled": True})
    links = [w.pair() for _ in range(2)]
    w.cycle()  # baselines; creation switched on (the watermark)
    for _, key in links:
        w.tracker.set_status(key, "closed", resolution="fixed")
    new_sid = w.sentry.add_issue("backend", "a new error")
    restart(w)
    inject(w.sentry, _flaw(flaw), change, method="GET", path=r"/issues/$", query=r"(^|&)group=")
    if flaw in ITEM_FLAWS:  # a broken issue is broken when read alone too
        inject(w.sentry, "mangle", change, method="GET", path=r"/issues/\d+/$")
    w.sentry.clear_log()
    w.tracker.clear_log()
    report = w.cycle()
    assert {o.sentry_id for o in report.failures} == {sid for sid, _ in links}
    for sid, _ in links:
        assert_recorded(failure_of(w, sid), "GET /api/0/organizations/acme/issues/")
    # Nothing was written on the strength of it; the run went on to create the new issue.
    assert [s for s in writes(w) if s[0] != "POST"] == []
    assert [sid for sid, _ in report.created] == [new_sid]
    assert all(w.s_status(sid) == "unresolved" for sid, _ in links)
    w.sentry.clear_faults()
    assert w.cycle().ok
    assert all(w.s_status(sid) == "resolved" for sid, _ in links)


@pytest.mark.parametrize(("flaw", "change"), FLAWS_TRACKER_LIST, ids=[f for f, _ in FLAWS_TRACKER_LIST])
def test_tracker_refresh_that_does_not_parse(tmp_path: Path, flaw: str, change: Any) -> None:
    w = world(tmp_path)
    links = [w.pair() for _ in range(2)]
    w.cycle()
    for sid, _ in links:
        w.sentry.set_status(sid, "resolved")
    restart(w)
    inject(w.tracker, _flaw(flaw), change, method="POST", path=r"/_search$")
    if flaw in ITEM_FLAWS:  # a broken issue is broken when read alone too
        inject(w.tracker, "mangle", change, method="GET", path=r"/issues/OPS-\d+$")
    w.tracker.clear_log()
    report = w.cycle()
    assert {o.sentry_id for o in report.failures} == {sid for sid, _ in links}
    for sid, _ in links:
        assert_recorded(failure_of(w, sid), "GET /v3/issues/OPS-" if flaw in ITEM_FLAWS else "POST /v3/issues/_search")
    assert writes(w) == [] and all(w.t_status(key) == "open" for _, key in links)
    w.tracker.clear_faults()
    assert w.cycle().ok and all(w.t_status(key) == "closed" for _, key in links)


def test_one_bad_issue_in_a_batch_fails_only_its_link(tmp_path: Path) -> None:
    w = world(tmp_path)
    links = [w.pair() for _ in range(3)]
    w.cycle()
    for sid, _ in links:
        w.sentry.set_status(sid, "resolved")

    def break_second(data: Any) -> Any:
        data[1].pop("status")
        return data

    restart(w)
    w.sentry.inject("mangle", method="GET", path=r"/issues/$", query=r"(^|&)group=", mangle=break_second)
    # Read alone, the broken issue is just as broken; the others read fine.
    w.sentry.inject("mangle", method="GET", path=rf"/issues/{links[1][0]}/$", mangle=drop("status"), times=5)
    report = w.cycle()
    assert [o.sentry_id for o in report.failures] == [links[1][0]]
    assert [w.t_status(key) for _, key in links] == ["closed", "open", "closed"]


@pytest.mark.parametrize("side", ["sentry", "tracker"])
def test_a_wrong_type_is_never_taken_for_a_value(tmp_path: Path, side: str) -> None:
    w = world(tmp_path)
    sid, key = w.pair(assignee="alice@example.com")
    w.cycle()
    assert w.tracker.issue_json(key)["assignee"]["display"] == "alice"
    restart(w)
    if side == "sentry":
        w.sentry.inject("mangle", method="GET", path=r"/issues/$", query=r"(^|&)group=",
                        mangle=retype("assignedTo", "alice@example.com"), times=100)
        endpoint = "GET /api/0/organizations/acme/issues/"
    else:
        w.tracker.inject("mangle", method="POST", path=r"/_search$", mangle=retype("assignee", "alice"), times=100)
        endpoint = "POST /v3/issues/_search"
    w.sentry.clear_log()
    w.tracker.clear_log()
    report = w.cycle()
    assert writes(w) == [], "a response that was not understood led to a write"
    assert w.tracker.issue_json(key).get("assignee") and w.sentry.issue_json(sid).get("assignedTo")
    assert_recorded(failure_of(w, sid), endpoint)
    assert not report.ok


def test_transitions_list_that_does_not_parse(tmp_path: Path) -> None:
    w = world(tmp_path)
    (a, key_a), (b, key_b) = w.pair(), w.pair()
    w.cycle()
    w.sentry.set_status(a, "resolved")
    w.sentry.set_status(b, "resolved")
    restart(w)  # an empty workflow cache: the first link must learn its transitions (expand=transitions)

    def mangle(issue: Any) -> Any:
        retype("to", "closed")(issue.get("transitions"))
        return issue

    w.tracker.inject("mangle", method="GET", path=r"/issues/[A-Z]+-\d+$", query="expand=transitions",
                     mangle=mangle, times=1)
    report = w.cycle()
    assert [o.sentry_id for o in report.failures] == [a]
    assert_recorded(failure_of(w, a), f"GET /v3/issues/{key_a}")
    assert w.t_status(key_a) == "open" and w.t_status(key_b) == "closed"  # the run went on
    assert w.cycle().ok and w.t_status(key_a) == "closed"


@pytest.mark.parametrize("flaw", ["not-json", "html", "object-for-list"])
def test_bookmark_search_that_does_not_parse_removes_no_follower(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, flaw: str
) -> None:
    w = world(tmp_path)
    sid, key = w.pair()
    w.sentry.bookmark(sid, "bob@example.com")
    w.cycle()
    assert [f["display"] for f in w.tracker.issue_json(key)["followers"]] == ["bob"]
    w.sentry.bookmark(sid, "bob@example.com", on=False)
    w.sentry.set_status(sid, "resolved")
    inject(w.sentry, _flaw(flaw), as_object, method="GET", path=r"/issues/$", query=r"query=bookmarks:bob")
    w.tracker.clear_log()
    with caplog.at_level(logging.WARNING, logger="bridge"):
        report = w.cycle()
    assert report.ok, report.summary()
    assert [f["display"] for f in w.tracker.issue_json(key)["followers"]] == ["bob"]  # unknown, not "gone"
    assert w.t_status(key) == "closed"  # the rest of the link went on
    warning = " ".join(r.getMessage() for r in caplog.records if "bookmarks unknown" in r.getMessage())
    assert_recorded(warning, "GET /api/0/organizations/acme/issues/")
    w.sentry.clear_faults()
    w.cycle()
    assert w.tracker.issue_json(key).get("followers") in (None, [])  # removed once known


# -- writes: the write landed, its answer is garbage ----------------------------------------------


WRITE_FLAWS = [("not-json", raw(NOT_JSON)), ("html", raw(HTML)), ("missing-field", None), ("list", as_list)]


@pytest.mark.parametrize(("flaw", "change"), WRITE_FLAWS, ids=[f for f, _ in WRITE_FLAWS])
def test_sentry_write_answer_that_does_not_parse(tmp_path: Path, flaw: str, change: Any) -> None:
    w = world(tmp_path)
    (a, key_a), (b, key_b) = w.pair(), w.pair()
    w.cycle()
    w.tracker.set_status(key_a, "closed", resolution="fixed")
    w.tracker.set_status(key_b, "closed", resolution="fixed")
    w.sentry.inject("mangle", method="PUT", path=rf"/issues/{a}/$", mangle=change or drop("status"), times=100)
    report = w.cycle()
    # The answer is unusable, so the issue is read back: it landed (design §9), and the journal
    # keeps what the server answered.
    assert report.ok, report.summary()
    assert_recorded(landed_entry(w, a), f"PUT /api/0/organizations/acme/issues/{a}/")
    assert w.s_status(a) == "resolved" and w.s_status(b) == "resolved"
    w.sentry.clear_faults()
    w.sentry.clear_log()
    assert w.cycle().ok and w.sentry.writes() == []  # adopted, not repeated
    assert status_json(w)["failures"] == []


@pytest.mark.parametrize(("flaw", "change"), WRITE_FLAWS, ids=[f for f, _ in WRITE_FLAWS])
def test_tracker_patch_answer_that_does_not_parse(tmp_path: Path, flaw: str, change: Any) -> None:
    w = world(tmp_path)
    (a, key_a), (b, key_b) = w.pair(), w.pair()
    w.cycle()
    w.sentry.assign(a, "alice@example.com")
    w.sentry.assign(b, "bob@example.com")
    w.tracker.inject("mangle", method="PATCH", path=rf"/issues/{key_a}$", mangle=change or drop("version"), times=100)
    report = w.cycle()
    assert report.ok, report.summary()  # read back: it landed
    assert_recorded(landed_entry(w, a), f"PATCH /v3/issues/{key_a}")
    assert w.tracker.issue_json(key_a)["assignee"]["display"] == "alice"
    assert w.tracker.issue_json(key_b)["assignee"]["display"] == "bob"
    w.tracker.clear_faults()
    w.tracker.clear_log()
    assert w.cycle().ok and w.tracker.writes() == []
    assert status_json(w)["failures"] == []


@pytest.mark.parametrize(("flaw", "change"), WRITE_FLAWS, ids=[f for f, _ in WRITE_FLAWS])
def test_transition_answer_that_does_not_parse(tmp_path: Path, flaw: str, change: Any) -> None:
    w = world(tmp_path)
    (a, key_a), (b, key_b) = w.pair(), w.pair()
    w.cycle()
    w.sentry.set_status(a, "resolved")
    w.sentry.set_status(b, "resolved")
    w.tracker.inject("mangle", method="POST", path=rf"/issues/{key_a}/transitions/.*/_execute$",
                     mangle=change or drop("to"), times=100)
    report = w.cycle()
    assert report.ok, report.summary()  # read back: it landed
    assert_recorded(landed_entry(w, a), f"POST /v3/issues/{key_a}/transitions/")
    assert w.t_status(key_a) == "closed" and w.t_status(key_b) == "closed"
    w.tracker.clear_faults()
    w.tracker.clear_log()
    assert w.cycle().ok and w.tracker.writes() == []  # landed: adopted, never executed twice
    assert status_json(w)["failures"] == []


@pytest.mark.parametrize(("flaw", "change"), WRITE_FLAWS, ids=[f for f, _ in WRITE_FLAWS])
def test_create_answer_that_does_not_parse(tmp_path: Path, flaw: str, change: Any) -> None:
    w = world(tmp_path, create={"enabled": True})
    w.cycle()  # the watermark
    first, second = w.sentry.add_issue("backend", "one"), w.sentry.add_issue("backend", "two")
    w.tracker.inject("mangle", method="POST", path=r"/v3/issues/?$", mangle=change or drop("key"), times=1)
    report = w.cycle()
    assert list(report.create_failures) == [first]
    assert_recorded(report.create_failures[first], "POST /v3/issues/")
    assert [sid for sid, _ in report.created] == [second]  # the run went on
    assert w.store.pending_intents() == 1
    report = w.cycle()
    assert report.ok and report.recovered == 1
    for sid in (first, second):
        made = [k for k in w.tracker.issue_keys() if w.tracker.issue_json(k).get("unique") == unique_key("acme", sid)]
        assert len(made) == 1, made
    assert w.store.link_count() == 2 and w.store.pending_intents() == 0


# -- cycle-level reads: the cycle is recorded as failed, nothing else happens -----------------------


def _members(w: World) -> None:
    restart(w)
    w.sentry.inject("malformed_json", method="GET", path=r"/members/$", times=100)


def _users(w: World) -> None:
    restart(w)
    w.tracker.inject("html", status=200, method="GET", path=r"/users$", times=100)


def _poll(w: World) -> None:
    # The same engine again: its second cycle polls Tracker for updates instead of reading all.
    w.tracker.inject("mangle", method="POST", path=r"/_search$", mangle=as_object, times=100)


CYCLE_READS: list[tuple[str, Callable[[World], None], str]] = [
    ("members", _members, "GET /api/0/organizations/acme/members/"),
    ("users", _users, "GET /v3/users"),
]


@pytest.mark.parametrize(("name", "arm", "endpoint"), CYCLE_READS, ids=[n for n, _, _ in CYCLE_READS])
def test_cycle_level_read_that_does_not_parse(tmp_path: Path, name: str, arm: Callable[[World], None],
                                              endpoint: str) -> None:
    w = world(tmp_path)
    links = [w.pair() for _ in range(3)]
    w.cycle()
    w.tracker.set_status(links[0][1], "closed", resolution="fixed")
    arm(w)
    w.sentry.clear_log()
    w.tracker.clear_log()
    report = w.cycle()
    assert report.fatal is not None and not report.ok
    assert_recorded(report.fatal.describe(), endpoint)
    last = status_json(w)["last_cycle"]
    assert last["finished"] is not None and last["ok"] is False
    assert writes(w) == [] and w.store.link_count() == 3


def test_a_tracker_poll_that_does_not_parse_falls_back_to_reading_each_link(tmp_path: Path) -> None:
    """The incremental poll is one read for every link: when it fails, the cycle reads each
    linked issue instead, so a failure is that link's (recorded, retried), never the cycle's."""
    w = world(tmp_path)
    links = [w.pair() for _ in range(3)]
    w.cycle()
    w.tracker.set_status(links[0][1], "closed", resolution="fixed")
    _poll(w)  # every _search answer mangled: the poll and the reads by key alike
    w.tracker.clear_log()
    report = w.cycle()
    assert report.fatal is None and report.full
    assert {o.sentry_id for o in report.failures} == {sid for sid, _ in links}
    for sid, _ in links:
        assert_recorded(failure_of(w, sid), "POST /v3/issues/_search")
    assert writes(w) == [] and w.store.link_count() == 3
    w.tracker.clear_faults()
    assert w.cycle().ok and w.s_status(links[0][0]) == "resolved"


def test_cycle_level_read_that_fails_is_recorded(tmp_path: Path) -> None:
    """The same reads failing with a 5xx (what the bridge already handles): the contrast case."""
    w = world(tmp_path)
    links = [w.pair() for _ in range(3)]
    w.cycle()
    w.tracker.set_status(links[0][1], "closed", resolution="fixed")
    restart(w)
    w.sentry.inject("status", status=500, method="GET", path=r"/members/$", times=100)
    w.sentry.clear_log()
    report = w.cycle()
    assert report.fatal is not None
    assert_recorded(report.fatal.describe(), "GET /api/0/organizations/acme/members/")
    last = status_json(w)["last_cycle"]
    assert last["finished"] is not None and last["ok"] is False
    assert w.sentry.writes() == [] and w.store.link_count() == 3


# -- a listing whose page k > 1 fails: unknown, never gone ------------------------------------------


def many(w: World, n: int) -> list[tuple[str, str]]:
    return [w.pair() for _ in range(n)]


@pytest.mark.parametrize("trouble", ["500", "not-json"])
def test_bookmark_listing_page_two_fails(tmp_path: Path, trouble: str) -> None:
    w = world(tmp_path)
    links = many(w, 105)  # bob's bookmarks span two pages of 100
    for sid, _ in links:
        w.sentry.bookmark(sid, "bob@example.com")
    assert w.cycle().ok
    assert all(w.tracker.issue_json(key).get("followers") for _, key in links)
    for sid, _ in links[:3]:
        w.sentry.bookmark(sid, "bob@example.com", on=False)  # real removals, on the first page
    page_two = {"method": "GET", "path": r"/issues/$", "query": r"query=bookmarks:bob.*cursor=", "times": 100}
    if trouble == "500":
        w.sentry.inject("status", status=500, **page_two)
    else:
        w.sentry.inject("malformed_json", **page_two)
    w.tracker.clear_log()
    report = w.cycle()
    assert report.ok, report.summary()
    # Page one arrived, page two did not: no follower is removed anywhere, not even for the
    # bookmarks seen gone on page one (the listing as a whole is unknown).
    assert w.tracker.writes() == []
    assert all(w.tracker.issue_json(key).get("followers") for _, key in links)
    w.sentry.clear_faults()
    assert w.cycle().ok
    assert [bool(w.tracker.issue_json(key).get("followers")) for _, key in links[:4]] == [False] * 3 + [True]


@pytest.mark.parametrize("trouble", ["500", "reset"])
def test_tracker_poll_page_two_fails(tmp_path: Path, trouble: str) -> None:
    w = world(tmp_path)
    links = many(w, 105)
    assert w.cycle().ok  # full; the next cycle of this engine polls for updates
    for _, key in links[:2]:
        w.tracker.set_status(key, "closed", resolution="fixed")
    page_two = {"method": "POST", "path": r"/_search$", "query": r"page=2", "times": 100}
    if trouble == "500":
        w.tracker.inject("status", status=500, **page_two)
    else:
        w.tracker.inject("reset", **page_two)
    w.sentry.clear_log()
    w.tracker.clear_log()
    report = w.cycle()
    assert any(("page", "2") in r.query for r in w.tracker.requests("POST", r"/_search$"))
    # The poll failed half way: nothing is concluded from half an answer; the cycle reads every
    # linked issue instead (by key, 100 a page), so the two changes arrive now, and only they.
    assert report.fatal is None and report.full and not report.failures
    assert w.store.link_count() == 105
    assert [w.s_status(sid) for sid, _ in links[:3]] == ["resolved", "resolved", "unresolved"]
    assert len([r for r in writes(w) if r[0] == "PUT"]) == 2


def test_create_listing_page_two_fails(tmp_path: Path) -> None:
    w = world(tmp_path, create={"enabled": True, "max_per_cycle": 500})
    w.cycle()  # the watermark
    start = w.sentry.now()
    new = [w.sentry.add_issue("backend", f"e{i}", first_seen=start + timedelta(microseconds=10 * i),
                              last_seen=start + timedelta(microseconds=10 * i)) for i in range(105)]
    w.sentry.inject("status", status=500, method="GET", path=r"/issues/$", query=r"query=is:unresolved.*cursor=",
                    times=100)
    report = w.cycle()
    assert report.fatal is not None and report.created == []  # nothing half-done on a half listing
    assert w.store.pending_intents() == 0
    w.sentry.clear_faults()
    report = w.cycle()
    assert report.ok and sorted(sid for sid, _ in report.created) == sorted(new)  # none skipped


def test_member_listing_page_two_fails(tmp_path: Path) -> None:
    w = world(tmp_path)
    for i in range(105):
        w.sentry.add_user(f"user{i}@example.com")
    links = many(w, 3)
    w.cycle()
    w.tracker.set_status(links[0][1], "closed", resolution="fixed")
    w.sentry.assign(links[1][0], "alice@example.com")
    restart(w)
    w.sentry.inject("status", status=502, method="GET", path=r"/members/$", query=r"cursor=", times=100)
    w.sentry.clear_log()
    w.tracker.clear_log()
    report = w.cycle()
    assert report.fatal is not None  # who is who is unknown: no assignee is guessed
    assert writes(w) == [] and w.store.link_count() == 3
    w.sentry.clear_faults()
    assert w.cycle().ok
    assert w.s_status(links[0][0]) == "resolved"
    assert w.tracker.issue_json(links[1][1])["assignee"]["display"] == "alice"
