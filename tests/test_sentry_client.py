"""`SentryClient` against the Sentry emulator: in-process (MockTransport) and over real HTTP
(LoopbackServer)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bridge.clients.http import ApiHttp, Pacer, RetryPolicy
from bridge.clients.sentry import SentryClient, next_cursor
from bridge.errors import (
    AuthError,
    BadResponseError,
    NotFoundError,
    RateLimitedError,
    RejectedError,
    RemoteError,
    TransientError,
)
from bridge.sandbox.http import LoopbackServer, mock_transport
from bridge.sandbox.sentry_emulator import SentryEmulator

BASE = "http://sentry.test"
NO_WAITS = RetryPolicy(waits=False)


class Clock:
    """A settable clock for the emulator; `sleep` advances it instead of sleeping."""

    def __init__(self, start: datetime) -> None:
        self.moment = start
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.advance(seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock(datetime(2026, 3, 2, 12, 0, tzinfo=UTC))


@pytest.fixture
def emu(clock: Clock) -> SentryEmulator:
    e = SentryEmulator(now=clock)
    e.add_project("backend")
    e.add_project("web", has_releases=False)
    e.add_user("alice@example.com", "Alice", extra_emails=["alice@corp.example"])
    e.add_user("bob@example.com", "Bob", projects=["web"])
    e.add_user("carol@example.com", "Carol", sso_only=True)
    return e


@pytest.fixture
def client(emu: SentryEmulator) -> Iterator[SentryClient]:
    c = SentryClient.create(BASE, "acme", "sentry-token", policy=NO_WAITS, transport=mock_transport(emu))
    yield c
    c.close()


@pytest.fixture
def served(emu: SentryEmulator) -> Iterator[SentryClient]:
    """The same client over a real socket."""
    with LoopbackServer(emu) as server:
        c = SentryClient.create(server.url, "acme", "sentry-token", policy=NO_WAITS, timeout=5)
        yield c
        c.close()


def add_issues(emu: SentryEmulator, clock: Clock, n: int, project: str = "backend", **kw: Any) -> list[str]:
    ids = []
    for i in range(n):
        ids.append(emu.add_issue(project, f"Error {i}", **kw))
        clock.advance(1)
    return ids


def issue_gets(emu: SentryEmulator) -> list[dict[str, list[str]]]:
    out = []
    for r in emu.requests("GET", r"/issues/$"):
        params: dict[str, list[str]] = {}
        for k, v in r.query:
            params.setdefault(k, []).append(v)
        out.append(params)
    return out


# -- the Link header ---------------------------------------------------------------------------


def _with_link(value: str | None) -> httpx.Response:
    return httpx.Response(200, headers={"link": value} if value is not None else {})


def test_next_cursor_from_the_link_header() -> None:
    value = (
        "<https://sentry.io/api/0/organizations/acme/issues/?query=&cursor=1700000000000:0:1>; "
        'rel="previous"; results="false"; cursor="1700000000000:0:1", '
        "<https://sentry.io/api/0/organizations/acme/issues/?query=&cursor=1699999999000:2:0>; "
        'rel="next"; results="true"; cursor="1699999999000:2:0"'
    )
    assert next_cursor(_with_link(value)) == "1699999999000:2:0"
    last = value.replace('rel="next"; results="true"', 'rel="next"; results="false"')
    assert next_cursor(_with_link(last)) is None
    # Without a cursor attribute it comes from the URL; without `results` the page has results.
    assert next_cursor(_with_link('<https://x.test/a?&cursor=100:1:0>; rel="next"')) == "100:1:0"
    assert next_cursor(_with_link(None)) is None and next_cursor(_with_link("")) is None
    assert next_cursor(_with_link("junk")) is None


# -- reading -----------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["client", "served"])
def test_iter_issues_follows_link_across_pages(
    request: pytest.FixtureRequest, via: str, emu: SentryEmulator, clock: Clock
) -> None:
    sentry: SentryClient = request.getfixturevalue(via)
    ids = add_issues(emu, clock, 7)
    emu.set_status(ids[2], "resolved")
    found = [issue["id"] for issue in sentry.iter_issues("", per_page=3)]
    assert found == list(reversed(ids))  # sort=new, newest first, resolved included (query="")
    gets = issue_gets(emu)
    assert len(gets) == 3
    for params in gets:  # query always sent explicitly, all projects
        assert params["query"] == [""] and params["project"] == ["-1"] and params["sort"] == ["new"]
    assert sentry.stats.requests["GET"] == 3


def test_iter_issues_streams(client: SentryClient, emu: SentryEmulator, clock: Clock) -> None:
    add_issues(emu, clock, 5)
    pages = client.iter_issues("is:unresolved", per_page=2)
    next(pages)
    assert len(issue_gets(emu)) == 1  # the first item came before the second page was asked for
    assert len(list(pages)) == 4 and len(issue_gets(emu)) == 3


def test_iter_issues_loops_on_results_not_counts(
    client: SentryClient, emu: SentryEmulator, clock: Clock
) -> None:
    emu.add_project("legacy", auto_resolve_hours=24)
    live = []
    for n in range(6):
        old = n % 3 != 0
        issue = emu.add_issue(
            "legacy",
            f"E{n}",
            first_seen=clock() - timedelta(days=10 - n),
            last_seen=clock() - timedelta(days=3 if old else 0),
        )
        if not old:
            live.append(issue)
    found = [i["id"] for i in client.iter_issues("is:unresolved", per_page=2)]
    assert sorted(found) == sorted(live)
    assert len(issue_gets(emu)) == 3  # short (and even empty) pages did not stop the scan


def test_iter_issues_stats_period(client: SentryClient, emu: SentryEmulator, clock: Clock) -> None:
    old = emu.add_issue(
        "backend", "Old", first_seen=clock() - timedelta(days=200), last_seen=clock() - timedelta(days=100)
    )
    assert [i["id"] for i in client.iter_issues("")] == []  # the default 90-day window
    assert [i["id"] for i in client.iter_issues("", stats_period="180d")] == [old]


@pytest.mark.parametrize("via", ["client", "served"])
def test_get_issues_batches_group_ids(
    request: pytest.FixtureRequest, via: str, emu: SentryEmulator, clock: Clock
) -> None:
    sentry: SentryClient = request.getfixturevalue(via)
    ids = add_issues(emu, clock, 240)
    emu.set_status(ids[0], "ignored")
    emu.set_status(ids[1], "resolved")
    wanted = ids + [str(9_000_000_000 + n) for n in range(10)]  # 250 ids, 10 unknown
    found = sentry.get_issues(wanted)
    assert sorted(i["id"] for i in found) == sorted(ids)  # all statuses; unknown ids simply absent
    gets = issue_gets(emu)
    assert [len(g["group"]) for g in gets] == [100, 100, 50]
    assert all(g["project"] == ["-1"] and "query" not in g for g in gets)
    assert sentry.get_issues([]) == [] and len(issue_gets(emu)) == 3
    with pytest.raises(ValueError):
        sentry.get_issues(["BACKEND-1"])


def test_get_issue(client: SentryClient, emu: SentryEmulator) -> None:
    issue_id = emu.add_issue("backend", "Boom")
    assert client.get_issue(issue_id)["title"] == "Boom"
    with pytest.raises(NotFoundError):
        client.get_issue("123")


def test_bookmarked_issue_ids(client: SentryClient, emu: SentryEmulator, clock: Clock) -> None:
    ids = add_issues(emu, clock, 4)
    emu.bookmark(ids[0], "alice@example.com")
    emu.bookmark(ids[1], "alice@example.com")
    emu.set_status(ids[1], "resolved")  # still a bookmark: the search must not restrict status
    emu.bookmark(ids[2], "carol@example.com")
    assert client.bookmarked_issue_ids("alice@example.com") == {ids[0], ids[1]}
    assert client.bookmarked_issue_ids("carol@example.com") == set()  # SSO-only: Sentry cannot tell
    assert client.bookmarked_issue_ids("nobody@example.com") == set()
    queries = [g["query"][0] for g in issue_gets(emu)]
    assert queries[0] == "bookmarks:alice@example.com"


def test_list_members_all_pages(client: SentryClient, emu: SentryEmulator) -> None:
    for n in range(120):
        emu.add_user(f"user{n:03}@example.com")
    emu.add_user("invited@example.com", pending_invite=True)
    members = client.list_members()
    assert len(members) == 124 and len(emu.requests("GET", "/members/")) == 2
    alice = next(m for m in members if m["email"] == "alice@example.com")
    assert alice["id"] != alice["user"]["id"] == emu.user_id("alice@example.com")
    assert {e["email"] for e in alice["user"]["emails"]} == {"alice@example.com", "alice@corp.example"}
    assert next(m for m in members if m["email"] == "invited@example.com")["user"] is None


def test_list_installations(client: SentryClient, emu: SentryEmulator) -> None:
    assert [i["uuid"] for i in client.list_installations()] == [emu.installation_uuid]


# -- writing -----------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["client", "served"])
def test_resolved_in_next_release_falls_back(
    request: pytest.FixtureRequest, via: str, emu: SentryEmulator, caplog: pytest.LogCaptureFixture
) -> None:
    sentry: SentryClient = request.getfixturevalue(via)
    with_releases = emu.add_issue("backend", "A")
    without = emu.add_issue("web", "B")
    issue = sentry.update_issue(with_releases, {"status": "resolvedInNextRelease"})
    assert issue["status"] == "resolved" and issue["statusDetails"]["inNextRelease"] is True
    assert len(emu.requests("PUT")) == 1
    with caplog.at_level(logging.WARNING, logger="bridge.sentry"):
        issue = sentry.update_issue(without, {"status": "resolvedInNextRelease"})
    assert issue["status"] == "resolved" and "inNextRelease" not in issue["statusDetails"]
    assert [r.body for r in emu.requests("PUT", without)] == [
        {"status": "resolvedInNextRelease"},
        {"status": "resolved"},
    ]
    assert any(without in r.getMessage() and r.name == "bridge.sentry" for r in caplog.records)


def test_set_status_values(client: SentryClient, emu: SentryEmulator) -> None:
    issue_id = emu.add_issue("backend", "A")
    assert client.update_issue(issue_id, {"status": "ignored"})["substatus"] == "archived_forever"
    assert client.update_issue(issue_id, {"status": "unresolved"})["status"] == "unresolved"
    assert client.update_issue(issue_id, {"status": "resolved"})["status"] == "resolved"
    with pytest.raises(ValueError):
        client.update_issue(issue_id, {"status": "archived"})  # not a Sentry status: refused before sending
    assert len(emu.requests("PUT")) == 3


def test_assignee(client: SentryClient, emu: SentryEmulator) -> None:
    issue_id = emu.add_issue("backend", "A")
    alice = emu.user_id("alice@example.com")
    assert client.update_issue(issue_id, {"assignedTo": f"user:{alice}"})["assignedTo"]["email"] == "alice@example.com"
    assert client.update_issue(issue_id, {"assignedTo": ""})["assignedTo"] is None
    assert [r.body for r in emu.requests("PUT")] == [{"assignedTo": f"user:{alice}"}, {"assignedTo": ""}]


def test_rejected_put_is_not_retried(client: SentryClient, emu: SentryEmulator) -> None:
    issue_id = emu.add_issue("backend", "A")
    bob = emu.user_id("bob@example.com")
    with pytest.raises(RejectedError) as info:
        client.update_issue(issue_id, {"assignedTo": f"user:{bob}"})  # bob is not in the project's team
    assert info.value.status == 400 and "Cannot assign to non-team member" in info.value.excerpt
    assert len(emu.requests("PUT")) == 1 and client.stats.retries == 0


def test_upsert_external_issue(client: SentryClient, emu: SentryEmulator) -> None:
    issue_id = emu.add_issue("backend", "A")
    first = client.upsert_external_issue(
        emu.installation_uuid, issue_id, web_url="https://t.example/OPS-1", project="OPS", identifier="1"
    )
    again = client.upsert_external_issue(
        emu.installation_uuid, issue_id, web_url="https://t.example/OPS-1", project="OPS", identifier="1"
    )
    assert first == again and first["displayName"] == "OPS#1"
    assert client.get_issue(issue_id)["annotations"] == [
        {"displayName": "OPS#1", "url": "https://t.example/OPS-1"}
    ]


# -- failures ----------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["client", "served"])
def test_429_without_retry_after_is_retried(
    request: pytest.FixtureRequest, via: str, emu: SentryEmulator
) -> None:
    sentry: SentryClient = request.getfixturevalue(via)
    issue_id = emu.add_issue("backend", "A")
    emu.inject("status", status=429, method="GET")
    assert sentry.get_issue(issue_id)["id"] == issue_id
    assert [r.status for r in emu.requests("GET")] == [429, 200]
    assert sentry.stats.retries == 1


def test_429_wait_comes_from_the_reset_header(emu: SentryEmulator) -> None:
    # The emulator's clock runs 30 s ahead of the wall clock, so X-Sentry-Rate-Limit-Reset lies
    # about 30 s in the future: a wait near 30 s can only come from that header.
    emu._clock = lambda: datetime.now(UTC) + timedelta(seconds=30)
    issue_id = emu.add_issue("backend", "A")
    emu.inject("status", status=429, times=5)
    sentry = SentryClient.create(
        BASE,
        "acme",
        "sentry-token",
        policy=RetryPolicy(attempts=2, waits=False),
        transport=mock_transport(emu),
    )
    with pytest.raises(RateLimitedError) as info:
        sentry.get_issue(issue_id)
    assert info.value.retry_after is not None and 28 < info.value.retry_after < 32


def test_real_rate_limit_waits_until_reset(emu: SentryEmulator) -> None:
    """Against the emulator's own limiter: the client sleeps until the window resets (the sleep
    moves the emulator's clock), then succeeds."""
    clock = Clock(datetime.now(UTC) + timedelta(seconds=5))
    emu._clock = clock
    emu.rate_limit_per_second = 1
    issue_id = emu.add_issue("backend", "A")
    policy = RetryPolicy(attempts=3, base_wait_seconds=0.001, max_wait_seconds=30)
    http = ApiHttp(
        "sentry",
        BASE,
        {"Authorization": "Bearer sentry-token"},
        policy=policy,
        transport=mock_transport(emu),
        sleep=clock.sleep,
        clock=lambda: clock().timestamp(),
    )
    sentry = SentryClient(http, "acme")
    sentry.get_issue(issue_id)
    sentry.get_issue(issue_id)
    # The first answer said the budget was spent: the client waited for the window instead of
    # drawing a 429.
    assert [r.status for r in emu.requests("GET")] == [200, 200]
    assert len(clock.slept) == 1 and 0 < clock.slept[0] <= 1.02  # to the next 1-second window
    assert http.stats.waited_by_endpoint == {"GET /api/0/organizations/acme/issues/{id}/": clock.slept[0]}
    # A fresh client (knowing no budget) meets the spent window: the 429 is waited out by its
    # reset header, and from then on the pacer keeps it away.
    fresh = SentryClient(ApiHttp("sentry", BASE, {"Authorization": "Bearer sentry-token"}, policy=policy,
                                 transport=mock_transport(emu), sleep=clock.sleep,
                                 clock=lambda: clock().timestamp()), "acme")
    emu.clear_log()
    fresh.get_issue(issue_id)
    fresh.get_issue(issue_id)
    assert [r.status for r in emu.requests("GET")] == [429, 200, 200]
    # Both kinds of wait are counted as waiting for the rate limit: after the 429, and the pacing.
    assert sum(fresh.stats.waited_by_endpoint.values()) == pytest.approx(sum(clock.slept[1:]))
    assert len(clock.slept) == 3


def paced_client(emu: SentryEmulator, clock: Clock, policy: RetryPolicy) -> tuple[SentryClient, ApiHttp]:
    """A client whose sleeps move the emulator's clock instead of the wall clock."""
    http = ApiHttp("sentry", BASE, {"Authorization": "Bearer sentry-token"}, policy=policy,
                   transport=mock_transport(emu), sleep=clock.sleep, clock=lambda: clock().timestamp())
    return SentryClient(http, "acme"), http


def test_self_hosted_without_rate_limit_headers_uses_the_default_pacing(
    emu: SentryEmulator, clock: Clock, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A self-hosted Sentry advertises no budget (no X-Sentry-Rate-Limit-* headers).  The defaults
    (`RetryPolicy()`: 5 attempts, 60 s, 0.5 s base, 30 s cap) then mean: nothing is paced (the
    pacer spends only an advertised budget); a 429 with no header at all is retried after an
    exponential backoff with full jitter, uniform(0, 0.5 * 2**(n-1)); a 429 with `Retry-After`
    (a proxy in front may add one) is retried after it, plus up to 0.25 s of jitter."""
    ceilings: list[tuple[float, float]] = []

    def uniform(low: float, high: float) -> float:
        ceilings.append((low, high))
        return high  # the longest wait the policy allows: what the assertions check

    monkeypatch.setattr("bridge.clients.http.random.uniform", uniform)
    issue_id = emu.add_issue("backend", "A")
    emu.rate_limit_headers = False
    sentry, http = paced_client(emu, clock, RetryPolicy())

    # A proxy limits to 2 per second and says nothing: the client cannot pace, so it draws 429s
    # and backs off, and every request still gets through.
    emu.rate_limit_per_second = 2
    for _ in range(4):
        assert sentry.get_issue(issue_id)["id"] == issue_id
    statuses = [r.status for r in emu.requests("GET")]
    assert statuses.count(200) == 4 and statuses.count(429) >= 1
    assert clock.slept == [high for _low, high in ceilings]  # only retry waits: no pacing
    assert all(high in (0.5, 1.0, 2.0, 4.0) for _low, high in ceilings)

    # A 429 with no header at all: 0.5 s, then 1 s; then the answer.
    emu.rate_limit_per_second = None
    clock.slept.clear()
    ceilings.clear()
    emu.clear_log()
    emu.inject("status", status=429, times=2)
    assert sentry.get_issue(issue_id)["id"] == issue_id
    assert [r.status for r in emu.requests("GET")] == [429, 429, 200]
    assert ceilings == [(0, 0.5), (0, 1.0)] and clock.slept == [0.5, 1.0]

    # A 429 with Retry-After: that long, plus the jitter.
    clock.slept.clear()
    ceilings.clear()
    emu.inject("status", status=429, headers={"Retry-After": "3"})
    assert sentry.update_issue(issue_id, {"status": "resolved"})["status"] == "resolved"
    assert ceilings == [(0, 0.25)] and clock.slept == [3.25]
    label = "PUT /api/0/organizations/acme/issues/{id}/"
    assert http.stats.waited_by_endpoint[label] == 3.25 and http.stats.retries_by_endpoint[label] == 1

    # The same limit, advertised (sentry.io): the budget is spent, then the client waits for the
    # window to turn instead of drawing 429s.
    emu.rate_limit_headers, emu.rate_limit_per_second = True, 2
    clock.slept.clear()
    emu.clear_log()
    clock.advance(1)
    for _ in range(4):
        sentry.get_issue(issue_id)
    assert [r.status for r in emu.requests("GET")] == [200] * 4
    assert len(clock.slept) == 1 and 0 < clock.slept[0] <= 1.02


def test_5xx_is_retried(client: SentryClient, emu: SentryEmulator) -> None:
    issue_id = emu.add_issue("backend", "A")
    emu.inject("status", status=500, times=1)
    emu.inject("html", status=502, times=1)
    assert client.update_issue(issue_id, {"status": "resolved"})["status"] == "resolved"  # PUT is safe: absolute value
    assert [r.status for r in emu.requests("PUT")] == [500, 502, 200]
    emu.inject("status", status=503, times=10)
    with pytest.raises(TransientError):
        client.get_issue(issue_id)


def test_malformed_json_is_a_bad_response(client: SentryClient, emu: SentryEmulator) -> None:
    issue_id = emu.add_issue("backend", "A")
    emu.inject("malformed_json")
    with pytest.raises(BadResponseError):
        client.get_issue(issue_id)
    emu.inject("status", status=200, body=b'{"detail": "not an issue"}')
    with pytest.raises(BadResponseError, match="missing field"):
        client.get_issue(issue_id)
    emu.inject("status", status=200, body=b'{"id": "1"}', path=r"/issues/$")
    with pytest.raises(BadResponseError, match="list"):
        list(client.iter_issues(""))


def test_pagination_that_does_not_advance_is_an_error() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        link = '<http://sentry.test/x?&cursor=1:0:0>; rel="next"; results="true"; cursor="1:0:0"'
        return httpx.Response(
            200, json=[{"id": "1", "status": "unresolved", "project": {}}], headers={"Link": link}
        )

    sentry = SentryClient.create(BASE, "acme", "t", policy=NO_WAITS, transport=httpx.MockTransport(handler))
    with pytest.raises(BadResponseError, match="does not advance"):
        list(sentry.iter_issues(""))


def test_next_page_stays_on_our_host() -> None:
    """A self-hosted Sentry with a wrong url-prefix writes links to another host; the client
    keeps its own URL and takes only the cursor, so the token never goes elsewhere."""
    hosts: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hosts.append(request.url.host)
        if "cursor" in request.url.params:
            return httpx.Response(200, json=[{"id": "2", "status": "unresolved", "project": {}}])
        link = '<http://elsewhere.example/api/0/x/?&cursor=5:0:0>; rel="next"; results="true"; cursor="5:0:0"'
        return httpx.Response(
            200, json=[{"id": "1", "status": "unresolved", "project": {}}], headers={"Link": link}
        )

    sentry = SentryClient.create(BASE, "acme", "t", policy=NO_WAITS, transport=httpx.MockTransport(handler))
    assert [i["id"] for i in sentry.iter_issues("")] == ["1", "2"]
    assert hosts == ["sentry.test", "sentry.test"]


def test_token_never_in_errors(emu: SentryEmulator) -> None:
    secret = "sntrys_SuperSecretValue123"
    sentry = SentryClient.create(BASE, "acme", secret, policy=NO_WAITS, transport=mock_transport(emu))
    texts = [repr(sentry), repr(sentry.http)]
    with pytest.raises(AuthError) as info:
        sentry.get_issue("1")
    errors: list[RemoteError] = [info.value]
    emu.add_token(secret, scopes=["org:ci"])  # an org auth token: no issue access
    with pytest.raises(AuthError) as info:
        list(sentry.iter_issues(""))
    errors.append(info.value)
    emu.add_token(secret)
    emu.inject("malformed_json")
    with pytest.raises(BadResponseError) as bad:
        sentry.list_members()
    errors.append(bad.value)
    for error in errors:
        texts += [str(error), error.describe(), error.excerpt, error.endpoint, repr(error)]
    assert not [t for t in texts if secret in t]


def test_loopback_roundtrip_smoke(served: SentryClient, emu: SentryEmulator, clock: Clock) -> None:
    ids = add_issues(emu, clock, 3)
    emu.bookmark(ids[1], "alice@example.com")
    assert served.bookmarked_issue_ids("alice@example.com") == {ids[1]}
    alice = emu.user_id("alice@example.com")
    assert served.update_issue(ids[0], {"assignedTo": f"user:{alice}"})["assignedTo"]["name"] == "Alice"
    assert len(served.list_members()) == 3
    started = time.monotonic()
    served.get_issues(ids)
    assert time.monotonic() - started < 5


def test_pacer_spends_the_advertised_budget_then_waits_for_the_window() -> None:
    now = [1000.2]
    pacer = Pacer(clock=lambda: now[0])
    label = "PUT /api/0/organizations/acme/issues/{id}/"
    headers = {"x-sentry-rate-limit-limit": "5", "x-sentry-rate-limit-remaining": "3",
               "x-sentry-rate-limit-reset": "1001"}
    assert pacer.delay(label) == 0.0  # nothing known yet
    assert pacer.delay(label) == 0.0  # a second one goes out in parallel
    pacer.done(label, headers)  # the server has counted 2; one of ours is still in flight
    assert [pacer.delay(label) for _ in range(2)] == [0.0, 0.0]
    assert pacer.delay(label) == pytest.approx(0.81)  # budget spent: wait for the next window
    assert pacer.delay(label) == pytest.approx(0.81)  # and so does everyone else
    for left in ("1", "0", "2"):  # the rest come back, in any order
        pacer.done(label, {**headers, "x-sentry-rate-limit-remaining": left})
    now[0] = 1001.0
    assert [pacer.delay(label) for _ in range(5)] == [0.0] * 5  # the new window: the advertised limit
    assert pacer.delay(label) > 0
    pacer.done("other", {"x-sentry-rate-limit-remaining": "0"})  # no reset: not paced
    assert pacer.delay("other") == 0.0


def window_headers(left: int, reset: int = 1001) -> dict[str, str]:
    return {"x-sentry-rate-limit-limit": "5", "x-sentry-rate-limit-remaining": str(left),
            "x-sentry-rate-limit-reset": str(reset)}


def paced_window(now: list[float]) -> tuple[Pacer, str]:
    """A pacer that knows the 5-per-second window ending at 1001 and has spent all of it."""
    pacer = Pacer(clock=lambda: now[0])
    label = "PUT /api/0/organizations/acme/issues/{id}/"
    pacer.delay(label)
    pacer.done(label, window_headers(0))
    return pacer, label


def test_pacer_answers_out_of_order_waste_no_slot() -> None:
    now = [1000.9]
    pacer, label = paced_window(now)
    now[0] = 1001.01  # the window turns; four workers were waiting for it
    assert [pacer.delay(label) for _ in range(4)] == [0.0] * 4
    # The server counted them in some order; the answers come back in another.
    for left in (1, 4, 2, 3):
        pacer.done(label, window_headers(left, 1002))
    assert pacer.delay(label) == 0.0  # the fifth slot of the window is used
    assert pacer.delay(label) > 0  # and no sixth


def test_pacer_leaves_room_for_others_spending_the_same_budget() -> None:
    now = [1000.9]
    pacer, label = paced_window(now)
    now[0] = 1001.01
    assert [pacer.delay(label) for _ in range(2)] == [0.0] * 2
    pacer.done(label, window_headers(1, 1002))  # 4 used: someone else sent two
    assert pacer.delay(label) > 0  # the last slot may be taken by our other request in flight


def test_pacer_counts_requests_in_flight_at_the_turn_against_the_new_window() -> None:
    now = [1000.5]
    pacer, label = paced_window(now)
    now[0] = 1001.0
    assert [pacer.delay(label) for _ in range(5)] == [0.0] * 5
    for _ in range(3):
        pacer.done(label, window_headers(2, 1002))
    now[0] = 1002.0  # two are still on the wire: the server may count them in the new window
    assert [pacer.delay(label) for _ in range(3)] == [0.0] * 3
    assert pacer.delay(label) > 0
    pacer.done(label, window_headers(0, 1002))  # a late answer from the window that is over
    assert pacer.delay(label) == pytest.approx(1.01)  # changes nothing: still wait for 1003


def test_endpoint_labels_fold_ids_but_not_the_api_version() -> None:
    from bridge.clients.http import endpoint_label

    assert endpoint_label("PUT", "/api/0/organizations/acme/issues/5000000001/") == (
        "PUT /api/0/organizations/acme/issues/{id}/")
    assert endpoint_label("POST", "/v3/issues/OPS-12/transitions/close/_execute") == (
        "POST /v3/issues/{id}/transitions/close/_execute")
