"""Hostile review of issue 14 ("Live-API fidelity"): Tracker scroll mode, doctor's live probes,
emulator fidelity.  Every test here states what should hold and fails on a97aafb."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from bridge.clients.tracker import TrackerClient
from bridge.core.new_issue import unique_key
from bridge.sandbox.http import EmuRequest, EmuResponse
from bridge.sandbox.tracker_emulator import TrackerEmulator
from tests.conftest import PROJECT, QUEUE, BridgeEnv
from tests.test_doctor_probes import checks_of, seeded
from tests.test_incremental import world_with_clock
from tests.test_tracker_client import make_client

PAGES = "probe: Tracker pagination"
POLL = "probe: Tracker incremental poll"
GROUP = "probe: Sentry group= batch read"


def ignoring_page(serve: Callable[[EmuRequest], EmuResponse]) -> Callable[[EmuRequest], EmuResponse]:
    """A Tracker that ignores `page=` on `_search`: every page is page 1 (perPage and the
    X-Total-* headers are honoured)."""

    def serve_(req: EmuRequest) -> EmuResponse:
        if req.path.endswith("/_search") and any(k == "page" for k, _ in req.query):
            req = dataclasses.replace(req, query=[(k, v) for k, v in req.query if k != "page"])
        return serve(req)

    return serve_


# -- doctor's live probes ----------------------------------------------------------------------------


def test_pagination_probe_fails_a_tracker_that_ignores_page(
    bridge_env: BridgeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The probe reads through `iter_search`, whose (key, version) dedup swallows a repeated page:
    its `page 2 repeated page 1` branch cannot be reached.  On a server that ignores `page` (every
    answer is page 1, with a `rel="next"` link) it asks for page after page of one issue until row
    `paged_limit` (10,000 requests at the real limit; 300 here), then the scroll hands it a second
    issue and it passes: "one issue per page ... page 2 OPS-2".  Two raw requests would prove it."""
    env = bridge_env
    env.tracker.paged_limit = 300
    monkeypatch.setattr(TrackerClient, "paged_limit", 300)
    env.tracker.add_issues(QUEUE, (f"i{n}" for n in range(30)))
    env.tracker.serve = ignoring_page(env.tracker.serve)  # type: ignore[method-assign,assignment]
    env.tracker.clear_log()
    probe = checks_of(env)[PAGES]
    pager = [r for r in env.tracker.requests("POST", r"/_search$")
             if (r.body or {}).get("order") == "+key"]
    assert (probe["level"], len(pager)) == ("fail", 2), (probe, len(pager))


def test_pagination_probe_on_a_queue_past_the_page_limit_never_reads_page_2(
    bridge_env: BridgeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On a queue whose X-Total-Count reaches the page limit (every real queue past 10,000 issues)
    `iter_search` switches to scroll after page 1, so the probe's "page 2" is the scroll's second
    row: it passes ("one issue per page: page 1 .., page 2 ..") without page 2 ever being asked
    for, here on a server that ignores `page` altogether (on which every listing longer than one
    page costs `paged_limit / perPage` requests of the same page before it scrolls)."""
    env = bridge_env
    env.tracker.paged_limit = 5
    monkeypatch.setattr(TrackerClient, "paged_limit", 5)
    env.tracker.add_issues(QUEUE, (f"i{n}" for n in range(8)))
    env.tracker.serve = ignoring_page(env.tracker.serve)  # type: ignore[method-assign,assignment]
    env.tracker.clear_log()
    probe = checks_of(env)[PAGES]
    asked_page_2 = any(("page", "2") in r.query for r in env.tracker.requests("POST", r"/_search$"))
    assert probe["level"] != "pass" or asked_page_2, probe


def test_group_probe_fails_a_server_that_ignores_group_in_a_small_org(bridge_env: BridgeEnv) -> None:
    """The group= probe samples 3 issues and asks for exactly those 3.  In an org with 3 (or
    fewer) unresolved issues a server that ignores `group=` answers its default listing, which is
    the same 3 issues: the probe passes, and the bridge later refreshes whatever that listing
    holds (resolved issues never come back).  Asking for a strict subset of the sample proves it."""
    env = seeded(bridge_env)  # 3 Sentry issues, all unresolved
    env.sentry.group_ignored = True
    probe = checks_of(env)[GROUP]
    assert probe["level"] == "fail", probe


def test_group_probe_gives_a_verdict_not_a_traceback_on_non_numeric_ids(bridge_env: BridgeEnv) -> None:
    """Issue ids are only type-checked as str or int; a listing whose ids are not digits makes
    `SentryClient.get_issues` raise ValueError inside the group= probe, which `_guard` does not
    catch (RemoteError only): `doctor` ends in a traceback instead of a verdict."""
    env = seeded(bridge_env)
    env.sentry.inject("mangle", method="GET", path=r"/issues/$", query="limit=3", times=5,
                      mangle=lambda items: [{**i, "id": f"GT-{i['id']}"} for i in items])
    try:
        checks = checks_of(env)
    except ValueError as exc:
        pytest.fail(f"doctor crashed: {exc!r}")
    assert checks[GROUP]["level"] in ("warn", "fail")


# -- Tracker scroll mode -----------------------------------------------------------------------------


def test_relink_does_not_report_an_issue_as_its_own_duplicate_after_the_switch_to_scroll(
    bridge_env: BridgeEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the page limit `iter_search` re-reads the whole listing by scroll and drops repeats by
    (key, version).  An issue edited between page 1 and the scroll's first request comes twice
    (two versions), and `relink` counts the second as another Tracker issue naming the same Sentry
    issue: "duplicates" lists OPS-1 as a duplicate of itself, and the scan count is off."""
    env = bridge_env
    env.tracker.paged_limit = 200
    monkeypatch.setattr(TrackerClient, "paged_limit", 200)
    sid = env.sentry.add_issue(PROJECT, "error")
    ours = env.tracker.add_issue(QUEUE, "ours", unique=unique_key("acme", sid))
    env.tracker.add_issues(QUEUE, (f"filed by hand {n}" for n in range(249)))
    serve = env.tracker.serve

    def touch_on_scroll(req: EmuRequest) -> EmuResponse:
        if ("scrollType", "unsorted") in req.query:  # someone edits it between page 1 and the scroll
            env.tracker.set_fields(ours, {"tags": {"add": ["touched"]}})
        return serve(req)

    env.tracker.serve = touch_on_scroll  # type: ignore[method-assign]
    result = json.loads(env.expect(0, "relink", "--json").out)
    assert (result["duplicates"], result["scanned_tracker_issues"]) == ([], 250), result


def test_the_poll_cursor_never_passes_a_change_the_scroll_could_not_see(tmp_path: Path) -> None:
    """The poll's listing is a scroll (fixed set, fixed at its first request); the emulator renders
    each row as it is when its page is served, as recomputed pages do.  A linked issue changed
    after the scroll's first request is not in the set; another issue of the set changed later
    still, shown on a later page, moves `newest`, and the cursor becomes `max(started, newest)`:
    past the first change by more than the overlap.  The next poll never sees it (until the next
    full resync)."""
    w, clock = world_with_clock(tmp_path, full_resync_every=10)
    w.tracker.paged_limit = w.engine.tracker.paged_limit = 100
    others = w.tracker.add_issues("OPS", (f"other {n}" for n in range(150)))
    sid, key = w.pair()
    clock.now += timedelta(minutes=10)
    assert w.cycle().full  # the cursor: now (Z was last changed 10 minutes before)
    clock.now += timedelta(minutes=10)
    for other in others:  # a bulk edit: the next poll's listing is past the page limit
        w.tracker.set_fields(other, {"tags": {"add": ["bulk"]}})
    clock.now += timedelta(minutes=1)
    serve = w.tracker.serve
    state = {"done": False}

    def during_the_scroll(req: EmuRequest) -> EmuResponse:
        if any(k == "scrollType" for k, _ in req.query):  # pages of 20 rows instead of 1,000
            req = dataclasses.replace(req, query=[(k, "20" if k == "perScroll" else v) for k, v in req.query])
        if any(k == "scrollId" for k, _ in req.query) and not state["done"]:
            state["done"] = True
            clock.now += timedelta(minutes=1)
            w.tracker.set_status(key, "closed", resolution="fixed")  # not in the scroll's set
            clock.now += timedelta(minutes=5)
            for other in others:  # in the set; later pages show the new stamp
                w.tracker.set_fields(other, {"tags": {"add": ["again"]}})
        return serve(req)

    w.tracker.serve = during_the_scroll  # type: ignore[method-assign]
    assert not w.cycle().full
    assert state["done"], "the poll did not scroll"
    clock.now += timedelta(minutes=1)
    assert not w.cycle().full
    assert w.s_status(sid) == "resolved"
    w.store.close()


def test_a_scroll_read_to_its_end_costs_no_release_request() -> None:
    """A scroll read to its last page (no X-Scroll-Id on it) has been let go by the server ("the
    snapshot is preserved until all the pages have been viewed"); `_scroll` still sends
    `_clear` with every page id: one extra POST per big listing (the poll of every cycle past
    the limit), and, on a server that answers 404 for ids it no longer knows (as Elasticsearch's
    clear-scroll does), a "could not release" warning every time."""
    emu = TrackerEmulator()
    client = make_client(emu)
    emu.paged_limit = client.paged_limit = 50
    emu.add_issues("OPS", (f"i{n}" for n in range(130)))
    assert len(list(client.iter_search(filter={"queue": "OPS"}, per_page=10, per_scroll=20))) == 130
    assert emu.open_scrolls == 0
    assert emu.requests("POST", r"/scroll/_clear$") == []
    client.close()


# -- emulator fidelity ----------------------------------------------------------------------------------


def test_emulated_user_permissions_have_the_documented_shape() -> None:
    """Documented: each held right is `{"users": [...], "groups": [...], "roles": [...]}`.  The
    emulator answers only the one list the right is held through (`{"users": [...]}`), so the
    probe is never tried on the documented shape (e.g. a role-held right with empty users/groups
    lists present, or a group-held one with the robot absent from `users`)."""
    emu = TrackerEmulator()
    client = make_client(emu)
    emu.set_rights("OPS", "bridge-robot", {"READ": "users", "WRITE": "groups", "CREATE": "roles"})
    rights = client.user_rights("OPS", "bridge-robot")
    client.close()
    assert {right: sorted(how) for right, how in rights.items()} == {
        right: ["groups", "roles", "users"] for right in ("READ", "WRITE", "CREATE")}, rights
