"""Our Tracker client against the emulator: in-process (MockTransport) for most behaviour, and a
few over real loopback HTTP.  Retries run with `RetryPolicy(waits=False)`: same attempts, no
sleeping."""

from __future__ import annotations

import itertools
import logging
from collections.abc import Iterator

import pytest

from bridge.clients.http import RetryPolicy
from bridge.clients.tracker import TrackerClient
from bridge.errors import (
    AuthError,
    BadResponseError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    RemoteError,
    TransientError,
)
from bridge.sandbox.http import LoopbackServer, mock_transport
from bridge.sandbox.tracker_emulator import TrackerEmulator

URL = "http://tracker.test"
NO_WAIT = RetryPolicy(waits=False)


def make_client(emu: TrackerEmulator, token: str = "tracker-token", **kw: object) -> TrackerClient:
    return TrackerClient.create(
        URL,
        token,
        org_id=kw.pop("org_id", "1234567"),  # type: ignore[arg-type]
        policy=kw.pop("policy", NO_WAIT),  # type: ignore[arg-type]
        transport=mock_transport(emu),
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def emu() -> TrackerEmulator:
    return TrackerEmulator()


@pytest.fixture
def client(emu: TrackerEmulator) -> Iterator[TrackerClient]:
    c = make_client(emu)
    yield c
    c.close()


def searches(emu: TrackerEmulator) -> int:
    return len(emu.requests("POST", r"/_search$"))


# -- construction ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kw",
    [
        {"org_id": None},
        {"org_id": "1", "cloud_org_id": "2"},
        {"org_id": "1", "auth_scheme": "Bearer"},
        {"org_id": "1", "auth_scheme": "Basic"},
        {"org_id": "1", "api_version": "v1"},
    ],
)
def test_create_rejects_bad_settings(kw: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        TrackerClient.create(URL, "t", **kw)  # type: ignore[arg-type]


def test_sends_org_header_accept_language_and_default_v3(emu: TrackerEmulator, client: TrackerClient) -> None:
    key = emu.add_issue("OPS", "x")
    issue = client.get_issue(key)
    assert issue["status"]["display"] == "Open"  # Accept-Language: en
    assert issue["self"] == f"{URL}/v3/issues/{key}"
    assert emu.requests("GET")[0].path == f"/v3/issues/{key}"


def test_cloud_org_with_iam_token() -> None:
    emu = TrackerEmulator(org_id=None, cloud_org_id="bpf1")
    client = TrackerClient.create(
        URL,
        "tracker-token",
        cloud_org_id="bpf1",
        auth_scheme="Bearer",
        api_version="v2",
        policy=NO_WAIT,
        transport=mock_transport(emu),
    )
    assert client.myself()["login"] == "bridge-robot"
    assert emu.requests()[0].path == "/v2/myself"


# -- reading --------------------------------------------------------------------------------------


def test_iter_search_streams_every_page(emu: TrackerEmulator, client: TrackerClient) -> None:
    for n in range(25):
        emu.add_issue("OPS", f"i{n}")
    stream = client.iter_search(filter={"queue": "OPS"}, order="+key", per_page=10)
    first = next(stream)
    assert first["key"] == "OPS-1" and searches(emu) == 1  # a stream: one page at a time
    rest = list(stream)
    assert [i["key"] for i in [first, *rest]] == [f"OPS-{n}" for n in range(1, 26)]
    assert searches(emu) == 3
    assert [r.query for r in emu.requests("POST")] == [
        [("perPage", "10"), ("page", str(p))] for p in (1, 2, 3)
    ]


def test_iter_search_query_and_queue(emu: TrackerEmulator, client: TrackerClient) -> None:
    emu.add_issue("OPS", "a")
    emu.add_issue("OPS", "b")
    assert [i["key"] for i in client.iter_search(queue="OPS")] == ["OPS-1", "OPS-2"]
    desc = client.iter_search(query='Queue: OPS "Sort By": Updated DESC')
    assert [i["key"] for i in desc] == ["OPS-2", "OPS-1"]
    with pytest.raises(ValueError):
        client.iter_search(queue="OPS", query="Queue: OPS")  # refused at the call, not at the first page
    with pytest.raises(ValueError):
        client.iter_search()


def test_iter_search_drops_a_row_seen_twice_when_pages_shift(
    emu: TrackerEmulator, client: TrackerClient
) -> None:
    for n in range(4):
        emu.add_issue("OPS", f"i{n}")
    seen = []
    for issue in client.iter_search(filter={"queue": "OPS"}, order="-key", per_page=2):
        seen.append(issue["key"])
        if len(seen) == 1:
            emu.add_issue("OPS", "new")  # pushes OPS-3 from page 1 onto page 2
    assert seen == ["OPS-4", "OPS-3", "OPS-2", "OPS-1"]


def test_get_issues_batches_250_keys_into_3_searches(emu: TrackerEmulator, client: TrackerClient) -> None:
    keys = [emu.add_issue("OPS", f"i{n}") for n in range(250)]
    found = client.get_issues([*keys, "OPS-9999", keys[0]])
    assert sorted(i["key"] for i in found) == sorted(keys)
    assert searches(emu) == 3
    bodies = [r.body for r in emu.requests("POST", r"/_search$")]
    assert [len(b["keys"]) for b in bodies] == [100, 100, 51]
    assert all(r.query[0] == ("perPage", "100") for r in emu.requests("POST"))
    assert client.get_issues([]) == [] and searches(emu) == 3


def test_get_issue_errors(emu: TrackerEmulator, client: TrackerClient) -> None:
    with pytest.raises(NotFoundError):
        client.get_issue("OPS-404")
    assert len(emu.requests()) == 1  # a 404 is an answer, not a reason to retry


def test_users_and_reference_data(emu: TrackerEmulator, client: TrackerClient) -> None:
    for n in range(120):
        emu.add_user(f"user{n}", f"user{n}@example.com")
    users = client.list_users()
    assert len(users) == 122 and len({u["login"] for u in users}) == 122
    assert len(emu.requests("GET", "/users")) == 2
    assert client.get_user("user7")["email"] == "user7@example.com"  # type: ignore[index]
    assert client.get_user("nobody") is None
    me = client.myself()
    assert me["login"] == "bridge-robot" and str(me["uid"]) == emu.robot_uid
    assert {s["key"] for s in client.statuses()} >= {"open", "closed"}
    assert {r["key"] for r in client.resolutions()} >= {"fixed", "wontFix"}
    assert client.get_queue("OPS", expand="issueTypesConfig")["issueTypesConfig"]
    assert "issueTypesConfig" not in client.get_queue("OPS")


def test_issue_without_unset_fields_or_with_nulls_both_work() -> None:
    for omit in (True, False):
        emu = TrackerEmulator(omit_unset=omit)
        key = emu.add_issue("OPS", "x")
        issue = make_client(emu).get_issue(key)
        assert issue.get("assignee") is None and not issue.get("followers")


# -- large listings: past row 10,000 only a scroll goes on -------------------------------------------
# The emulator and the client both stop page pagination at row 50 here (the real limit is 10,000;
# tests/test_large_queues.py runs relink at that size), so a few dozen issues exercise the switch.

LIMIT = 50


@pytest.fixture
def low(emu: TrackerEmulator, client: TrackerClient) -> TrackerClient:
    emu.paged_limit = client.paged_limit = LIMIT
    return client


def scroll_starts(emu: TrackerEmulator) -> list[list[tuple[str, str]]]:
    return [r.query for r in emu.requests("POST", r"/_search$") if "scrollType" in dict(r.query)]


def continuations(emu: TrackerEmulator) -> list[str]:
    return [dict(r.query)["scrollId"] for r in emu.requests("POST", r"/_search$") if dict(r.query).get("scrollId")]


def releases(emu: TrackerEmulator) -> list[dict[str, str]]:
    return [r.body for r in emu.requests("POST", r"/system/search/scroll/_clear$")]


def test_a_listing_past_the_paged_limit_is_read_by_scroll_and_released(
    emu: TrackerEmulator, low: TrackerClient
) -> None:
    keys = emu.add_issues("OPS", (f"i{n}" for n in range(130)))
    found = [i["key"] for i in low.iter_search(queue="OPS", per_page=10, per_scroll=20)]
    assert sorted(found) == sorted(keys) and len(found) == 130
    requests = emu.requests("POST", r"/_search$")
    # Page 1 says X-Total-Count 50 (capped: it cannot tell 50 from more), so a scroll reads it all:
    # a filter (a queue cannot scroll), unsorted (no order asked for), the documented maximum size.
    assert requests[0].query == [("perPage", "10"), ("page", "1")]
    assert requests[1].query == [("scrollType", "unsorted"), ("perScroll", "20"), ("scrollTTLMillis", "60000")]
    assert requests[1].body == {"filter": {"queue": "OPS"}}
    assert len(continuations(emu)) == 6 and all(r.body == requests[1].body for r in requests[2:])
    assert all(r.status == 200 for r in emu.requests())  # no page past the limit was ever asked for
    assert releases(emu) == []  # read to its last page: the server let it go, no request spent
    assert emu.open_scrolls == 0 and emu.writes() == []
    assert [i["key"] for i in low.iter_search(filter={"queue": "OPS"})][:3] != ["OPS-1", "OPS-2", "OPS-3"]


def test_the_default_sizes_scroll_1000_a_page(emu: TrackerEmulator, low: TrackerClient) -> None:
    emu.add_issues("OPS", (f"i{n}" for n in range(60)))
    assert len(list(low.iter_search(filter={"queue": "OPS"}))) == 60
    assert scroll_starts(emu) == [
        [("scrollType", "unsorted"), ("perScroll", "1000"), ("scrollTTLMillis", "60000")]]
    with pytest.raises(ValueError):
        low.iter_search(queue="OPS", per_scroll=1001)


def test_an_ordered_listing_scrolls_sorted(emu: TrackerEmulator, low: TrackerClient) -> None:
    emu.add_issues("OPS", (f"i{n}" for n in range(70)))
    found = [i["key"] for i in low.iter_search(filter={"queue": "OPS"}, order="-key", per_page=20, per_scroll=30)]
    assert found == [f"OPS-{n}" for n in range(70, 0, -1)]
    assert scroll_starts(emu)[0][0] == ("scrollType", "sorted")
    emu.clear_log()
    query = 'Queue: OPS "Sort By": Updated DESC'
    assert len(list(low.iter_search(query=query, per_scroll=30))) == 70
    assert scroll_starts(emu)[0][0] == ("scrollType", "sorted")


def test_a_small_listing_only_pages(emu: TrackerEmulator, low: TrackerClient) -> None:
    emu.add_issues("OPS", (f"i{n}" for n in range(LIMIT - 1)))
    assert len(list(low.iter_search(queue="OPS", per_page=10))) == LIMIT - 1
    assert len(emu.requests()) == 5 and not scroll_starts(emu) and not releases(emu)


def test_a_page_that_would_reach_past_the_limit_is_never_asked_for(
    emu: TrackerEmulator, low: TrackerClient
) -> None:
    # 45 rows (X-Total-Count 45, under the limit), 20 a page: page 3 would end at row 60.
    keys = emu.add_issues("OPS", (f"i{n}" for n in range(45)))
    assert sorted(i["key"] for i in low.iter_search(queue="OPS", per_page=20)) == sorted(keys)
    assert [r.query for r in emu.requests("POST", r"/_search$")][:2] == [
        [("perPage", "20"), ("page", "1")], [("perPage", "20"), ("page", "2")]]
    assert len(scroll_starts(emu)) == 1 and all(r.status == 200 for r in emu.requests())


def test_a_listing_that_grows_past_the_limit_while_paged_goes_on_by_scroll(
    emu: TrackerEmulator, low: TrackerClient
) -> None:
    emu.add_issues("OPS", (f"i{n}" for n in range(30)))
    found = []
    for issue in low.iter_search(filter={"queue": "OPS"}, order="+key", per_page=10):
        found.append(issue["key"])
        if len(found) == 1:
            emu.add_issues("OPS", (f"late{n}" for n in range(40)))  # 70 now: page 2 says 50 (capped)
    assert found == [f"OPS-{n}" for n in range(1, 71)]  # every one, once, in order
    assert len(scroll_starts(emu)) == 1 and emu.open_scrolls == 0


def test_stopping_early_releases_the_scroll(emu: TrackerEmulator, low: TrackerClient) -> None:
    emu.add_issues("OPS", (f"i{n}" for n in range(130)))
    stream = low.iter_search(filter={"queue": "OPS"}, per_page=10, per_scroll=20)
    taken = list(itertools.islice(stream, 45))  # page 1 (10 rows), then 35 from the scroll
    assert len(taken) == 45 and emu.open_scrolls == 1
    stream.close()
    assert emu.open_scrolls == 0 and len(releases(emu)) == 1
    # Leaving the loop with `break` and dropping the generator releases it as well.
    for n, _ in enumerate(low.iter_search(filter={"queue": "OPS"}, per_page=10, per_scroll=20)):
        if n == 40:
            break
    assert emu.open_scrolls == 0 and len(releases(emu)) == 2
    # A doctor-style sample that stops within page 1 opens no scroll at all.
    assert len(list(itertools.islice(low.iter_search(filter={"queue": "OPS"}, per_page=5), 5))) == 5
    assert len(scroll_starts(emu)) == 2


def test_a_refused_scroll_page_releases_the_scroll_and_raises(emu: TrackerEmulator, low: TrackerClient) -> None:
    emu.add_issues("OPS", (f"i{n}" for n in range(130)))
    emu.inject("status", status=403, path="/_search", query="scrollId=", after=2)
    seen = []
    with pytest.raises(AuthError):
        for issue in low.iter_search(filter={"queue": "OPS"}, order="+key", per_page=10, per_scroll=20):
            seen.append(issue["key"])
    assert seen == [f"OPS-{n}" for n in range(1, 61)]  # page 1, then 3 scroll pages (the first repeats it)
    assert emu.open_scrolls == 0 and len(releases(emu)) == 1


def test_an_expired_scroll_is_read_again_from_the_start(emu: TrackerEmulator, low: TrackerClient) -> None:
    ticker = [0.0]
    emu.clock = lambda: ticker[0]
    keys = emu.add_issues("OPS", (f"i{n}" for n in range(130)))
    found = []
    for issue in low.iter_search(filter={"queue": "OPS"}, per_page=10, per_scroll=20):
        found.append(issue["key"])
        if len(found) == 50:
            ticker[0] += 61  # a slow consumer: the scroll's 60 s pass before it asks for more
    assert sorted(found) == sorted(keys)  # every issue, none twice
    assert len(scroll_starts(emu)) == 2 and [r.status for r in emu.requests() if r.status != 200] == [404]
    assert emu.open_scrolls == 0


def test_a_lost_answer_on_a_scroll_page_is_never_resent_with_the_same_id(
    emu: TrackerEmulator, low: TrackerClient
) -> None:
    # The page is served (the cursor moves on) and its answer is lost.  Sending that scroll id
    # again would get the page after it, and 20 issues would be missing without an error.
    keys = emu.add_issues("OPS", (f"i{n}" for n in range(130)))
    emu.inject("timeout_after", path="/_search", query="scrollId=", after=1)
    found = [i["key"] for i in low.iter_search(filter={"queue": "OPS"}, per_page=10, per_scroll=20)]
    assert sorted(found) == sorted(keys)
    sent = continuations(emu)
    assert len(sent) == len(set(sent))  # no scroll id went out twice
    assert len(scroll_starts(emu)) == 2 and emu.open_scrolls == 0
    assert len(releases(emu)) == 1  # the abandoned scroll; the one read to its end needs none


def test_scroll_restarts_are_bounded(emu: TrackerEmulator, low: TrackerClient) -> None:
    emu.add_issues("OPS", (f"i{n}" for n in range(130)))
    emu.inject("status", status=503, path="/_search", query="scrollId=", times=100)
    with pytest.raises(TransientError):
        list(low.iter_search(filter={"queue": "OPS"}, per_page=10, per_scroll=20))
    assert len(scroll_starts(emu)) == 3 and len(continuations(emu)) == 3  # never retried in place
    assert emu.open_scrolls == 0


def test_a_failed_release_is_only_logged(
    emu: TrackerEmulator, low: TrackerClient, caplog: pytest.LogCaptureFixture
) -> None:
    emu.add_issues("OPS", (f"i{n}" for n in range(130)))
    emu.inject("status", status=500, path="/scroll/_clear", times=100)
    emu.inject("status", status=500, path="/_search", query="scrollId=", after=1)
    with caplog.at_level(logging.DEBUG, logger="bridge"):
        assert len(list(low.iter_search(filter={"queue": "OPS"}, per_page=10, per_scroll=20))) == 130
    assert "could not release a search scroll" in caplog.text
    logged = caplog.text + " ".join(str(r.__dict__) for r in caplog.records)
    for pairs in releases(emu):
        for scroll_id, token in pairs.items():
            assert token and token not in logged and scroll_id not in logged


# -- writing --------------------------------------------------------------------------------------


def test_update_with_version_and_follower_ops(emu: TrackerEmulator, client: TrackerClient) -> None:
    emu.add_user("ann", "ann@example.com")
    key = emu.add_issue("OPS", "x", followers=["tracker-admin"])  # a follower added by hand
    issue = client.update_issue(key, {"followers": {"add": ["ann", "bridge-robot"]}}, version=1)
    assert issue["version"] == 2
    assert [f["id"] for f in issue["followers"]] == [emu.admin_uid, emu.uid_of("ann"), emu.robot_uid]
    issue = client.update_issue(key, {"followers": {"remove": ["ann"]}}, version=2)
    assert [f["id"] for f in issue["followers"]] == [emu.admin_uid, emu.robot_uid]  # the hand-added one stays
    issue = client.update_issue(key, {"assignee": "ann"}, version=3)
    assert issue["assignee"]["id"] == emu.uid_of("ann")
    issue = client.update_issue(key, {"assignee": None}, version=4)
    assert "assignee" not in issue and issue["version"] == 5
    assert [r.query for r in emu.requests("PATCH")] == [[("version", str(v))] for v in (1, 2, 3, 4)]
    with pytest.raises(ValueError):
        client.update_issue(key, {}, version=5)


def test_stale_version_is_a_conflict_and_is_not_retried(emu: TrackerEmulator, client: TrackerClient) -> None:
    key = emu.add_issue("OPS", "x")
    emu.set_assignee(key, "tracker-admin")  # a person edits meanwhile: version 2
    with pytest.raises(ConflictError) as caught:
        client.update_issue(key, {"assignee": "bridge-robot"}, version=1)
    assert caught.value.status == 409
    assert len(emu.requests("PATCH")) == 1
    assert emu.issue_json(key)["assignee"]["id"] == emu.admin_uid


def test_412_is_a_conflict_too() -> None:
    emu = TrackerEmulator(conflict_status=412)
    key = emu.add_issue("OPS", "x")
    with pytest.raises(ConflictError):
        make_client(emu).update_issue(key, {"assignee": "bridge-robot"}, version=9)


def test_unknown_user_and_version_cap_are_rejections(client: TrackerClient, emu: TrackerEmulator) -> None:
    key = emu.add_issue("OPS", "x")
    with pytest.raises(RejectedError) as caught:
        client.update_issue(key, {"followers": {"add": ["nobody"]}}, version=1)
    assert caught.value.status == 422
    capped = TrackerEmulator(version_cap=1)
    capped_key = capped.add_issue("OPS", "x")
    with pytest.raises(RejectedError) as caught:
        make_client(capped).update_issue(capped_key, {"assignee": "bridge-robot"}, version=1)
    assert caught.value.status == 423


def test_429_with_retry_after_is_retried(emu: TrackerEmulator, client: TrackerClient) -> None:
    key = emu.add_issue("OPS", "x")
    emu.inject("status", status=429, headers={"Retry-After": "3"}, path="/issues/", times=2)
    assert client.get_issue(key)["key"] == key
    assert client.stats.retries == 2 and client.stats.statuses["429"] == 2


def test_429_gives_up_with_the_servers_hint() -> None:
    emu = TrackerEmulator(rate_limit_per_second=1)
    emu.clock = lambda: 50.0  # the window never moves
    client = make_client(emu, policy=RetryPolicy(attempts=3, waits=False))
    client.myself()
    with pytest.raises(RateLimitedError) as caught:
        client.myself()
    assert caught.value.retry_after == 1.0
    assert len(emu.requests("GET")) == 4


def test_5xx_on_patch_is_retried_because_the_version_guards_it(
    emu: TrackerEmulator, client: TrackerClient
) -> None:
    key = emu.add_issue("OPS", "x")
    emu.inject("status", status=503, method="PATCH")
    issue = client.update_issue(key, {"assignee": "bridge-robot"}, version=1)
    assert issue["version"] == 2 and len(emu.requests("PATCH")) == 2


def test_lost_patch_answer_retries_into_a_conflict_never_a_double_write(
    emu: TrackerEmulator, client: TrackerClient
) -> None:
    key = emu.add_issue("OPS", "x")
    emu.inject("timeout_after", method="PATCH")  # applied, then the answer is lost
    with pytest.raises(ConflictError):
        client.update_issue(key, {"followers": {"add": ["tracker-admin"]}}, version=1)
    assert emu.issue_json(key)["version"] == 2  # applied exactly once


def test_5xx_on_execute_is_not_retried(emu: TrackerEmulator, client: TrackerClient) -> None:
    key = emu.add_issue("OPS", "x")
    emu.inject("status", status=500, path="/_execute")
    with pytest.raises(TransientError):
        client.execute_transition(key, "start_progress")
    assert len(emu.requests("POST", "/_execute")) == 1
    emu.inject("timeout_after", path="/_execute")
    with pytest.raises(TransientError):
        client.execute_transition(key, "start_progress")
    assert len(emu.requests("POST", "/_execute")) == 2
    assert emu.issue_json(key)["status"]["key"] == "inProgress"  # the lost one was applied, once


def test_transitions_and_execute(emu: TrackerEmulator, client: TrackerClient) -> None:
    key = emu.add_issue("OPS", "x")
    assert {t["id"]: t["to"]["key"] for t in client.transitions(key)} == {
        "start_progress": "inProgress",
        "close": "closed",
    }
    with pytest.raises(RejectedError):
        client.execute_transition(key, "close")  # a done status needs a resolution
    after = client.execute_transition(key, "close", resolution="fixed", comment="Resolved in Sentry")
    assert [(t["id"], t["to"]["key"]) for t in after] == [("reopen", "open")]
    issue = client.get_issue(key)
    assert issue["status"]["key"] == "closed" and issue["resolution"]["key"] == "fixed"
    with pytest.raises(ConflictError):
        client.execute_transition(key, "close", resolution="fixed")  # no longer available


def test_create_issue_twice_gives_one_issue(emu: TrackerEmulator, client: TrackerClient) -> None:
    fields = {"queue": "OPS", "summary": "ZeroDivisionError", "description": "https://sentry/1"}
    issue, created = client.create_issue(fields, unique="sentry-tracker-bridge:acme:1")
    assert created == "created" and issue["key"] == "OPS-1" and issue["unique"] == "sentry-tracker-bridge:acme:1"
    again, created_again = client.create_issue(fields, unique="sentry-tracker-bridge:acme:1")
    assert created_again == "existed" and again["key"] == "OPS-1"
    assert emu.issue_keys() == ["OPS-1"]
    assert client.find_by_unique("sentry-tracker-bridge:acme:1")["key"] == "OPS-1"  # type: ignore[index]
    assert client.find_by_unique("nope") is None


def test_create_retried_after_a_lost_answer_gives_the_issue_it_created(
    emu: TrackerEmulator, client: TrackerClient
) -> None:
    emu.inject("timeout_after", method="POST", path=r"/issues/$")
    issue, created = client.create_issue({"queue": "OPS", "summary": "x"}, unique="u-1")
    # The retry's 409 most likely meets this call's own first attempt (its answer was lost).
    assert issue["key"] == "OPS-1" and created == "lost"
    assert emu.issue_keys() == ["OPS-1"]
    # A later call with the same unique finds it, created before that call.
    again, created = client.create_issue({"queue": "OPS", "summary": "x"}, unique="u-1")
    assert again["key"] == "OPS-1" and created == "existed"


def test_create_conflict_without_a_match_is_raised(emu: TrackerEmulator, client: TrackerClient) -> None:
    emu.inject("status", status=409, method="POST", path=r"/issues/$")
    with pytest.raises(ConflictError):
        client.create_issue({"queue": "OPS", "summary": "x"}, unique="u-2")


def test_audit_comment_does_not_subscribe_the_robot(emu: TrackerEmulator, client: TrackerClient) -> None:
    key = emu.add_issue("OPS", "x")
    comment = client.add_comment(key, "Linked to Sentry issue 1")
    assert comment["text"] == "Linked to Sentry issue 1"
    issue = client.get_issue(key)
    assert "followers" not in issue and issue["version"] == 1


def test_changelog_follows_the_cursor(emu: TrackerEmulator, client: TrackerClient) -> None:
    key = emu.add_issue("OPS", "x")
    for login in ("bridge-robot", None, "tracker-admin", None):
        emu.set_assignee(key, login)
    entries = list(client.changelog(key, per_page=2))
    assert [e["type"] for e in entries] == ["IssueCreated"] + ["IssueUpdated"] * 4
    assert len(emu.requests("GET", "/changelog")) == 3
    assert [e["type"] for e in client.changelog(key, fields=["assignee"], per_page=1)] == ["IssueUpdated"] * 4


# -- bad answers and secrets ----------------------------------------------------------------------


def test_malformed_json_is_a_bad_response(emu: TrackerEmulator, client: TrackerClient) -> None:
    key = emu.add_issue("OPS", "x")
    emu.inject("malformed_json", method="GET")
    with pytest.raises(BadResponseError):
        client.get_issue(key)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        (r"/issues/OPS-1$", b"[]"),
        (r"/issues/OPS-1$", b'{"key": "OPS-1"}'),
        (r"/issues/OPS-1$", b'{"id": "a", "key": "OPS-1", "version": "7"}'),
        (r"/_search$", b'{"not": "a list"}'),
        (r"/transitions$", b'[{"id": "close", "to": "closed"}]'),
    ],
)
def test_wrong_shapes_are_bad_responses(
    emu: TrackerEmulator, client: TrackerClient, path: str, body: bytes
) -> None:
    key = emu.add_issue("OPS", "x")
    emu.inject("status", status=200, body=body, path=path)
    with pytest.raises(BadResponseError):
        if "search" in path:
            client.get_issues([key])
        elif "transitions" in path:
            client.transitions(key)
        else:
            client.get_issue(key)


def test_html_error_page_is_transient_and_retried(emu: TrackerEmulator, client: TrackerClient) -> None:
    key = emu.add_issue("OPS", "x")
    emu.inject("html", status=502)
    assert client.get_issue(key)["key"] == key


def test_token_never_appears_in_errors(emu: TrackerEmulator) -> None:
    secret = "y0_AgAAAAsecret-oauth-token"
    client = make_client(emu, token=secret)
    with pytest.raises(AuthError) as caught:
        client.myself()
    emu.add_token(secret, login="bridge-robot")
    emu.inject("status", status=500, times=10)
    with pytest.raises(TransientError) as transient:
        client.myself()
    for error in (caught.value, transient.value):
        assert isinstance(error, RemoteError)
        text = f"{error} {error.describe()} {error!r} {error.excerpt} {error.endpoint}"
        assert secret not in text
    assert secret not in repr(client)


# -- over real HTTP -------------------------------------------------------------------------------


def test_over_loopback_pagination_batching_and_a_reset(emu: TrackerEmulator) -> None:
    keys = [emu.add_issue("OPS", f"i{n}") for n in range(130)]
    with LoopbackServer(emu) as server:
        client = TrackerClient.create(
            server.url, "tracker-token", org_id="1234567", policy=NO_WAIT, timeout=5
        )
        try:
            assert [i["key"] for i in client.iter_search(queue="OPS", per_page=50)] == keys
            emu.inject("reset", method="POST", path="/_search")  # dropped before any answer: retried
            assert len(client.get_issues(keys)) == 130
            issue, created = client.create_issue({"queue": "OPS", "summary": "x"}, unique="loop-1")
            assert created == "created" and issue["self"] == f"{server.url}/v3/issues/{issue['key']}"
            client.execute_transition(issue["key"], "close", resolution="fixed")
            assert client.get_issue(issue["key"])["status"]["key"] == "closed"
        finally:
            client.close()
    assert searches(emu) == 3 + 3  # 3 pages, then 2 batches of keys plus the retried one


def test_over_loopback_connection_refused_is_unreachable() -> None:
    emu = TrackerEmulator()
    server = LoopbackServer(emu).start()
    url = server.url
    server.stop()
    client = TrackerClient.create(
        url, "tracker-token", org_id="1", policy=RetryPolicy(attempts=2, waits=False)
    )
    with pytest.raises(TransientError) as caught:
        client.myself()
    assert "tracker-token" not in caught.value.describe()


# -- queue triggers (push setup) ------------------------------------------------------------------


def test_triggers_create_read_change_and_vanish(emu: TrackerEmulator, client: TrackerClient) -> None:
    emu.set_rights("OPS", "bridge-robot", {"READ": "users", "WRITE": "users", "CREATE": "users", "GRANT": "users"})
    action = {"type": "Webhook", "endpoint": "https://b.example.com/hooks/tracker", "method": "POST",
              "contentType": "application/json", "headers": {}, "body": "{}"}
    made = client.create_trigger("OPS", {"name": "t", "actions": [action]})
    trigger_id = str(made["id"])
    assert made["version"] == 1 and client.get_trigger("OPS", trigger_id) == made
    changed = client.update_trigger("OPS", trigger_id, {"name": "u"}, version=1)
    assert changed["version"] == 2 and changed["name"] == "u"
    with pytest.raises(ConflictError):
        client.update_trigger("OPS", trigger_id, {"name": "v"}, version=1)
    with pytest.raises(ValueError, match="nothing to update"):
        client.update_trigger("OPS", trigger_id, {}, version=2)
    assert client.trigger_deliveries("OPS", trigger_id) == []
    emu.delete_trigger("OPS", trigger_id)
    assert client.get_trigger("OPS", trigger_id) is None
    emu.inject("mangle", method="POST", path="/triggers", mangle=lambda d: {**d, "version": "1"})
    with pytest.raises(BadResponseError, match="version"):
        client.create_trigger("OPS", {"name": "t", "actions": [action]})


def test_trigger_requests_are_refused_without_queue_admin_rights(client: TrackerClient) -> None:
    with pytest.raises(AuthError) as refused:
        client.create_trigger("OPS", {"name": "t", "actions": []})
    assert refused.value.status == 403 and refused.value.endpoint == "POST /v3/queues/OPS/triggers"
