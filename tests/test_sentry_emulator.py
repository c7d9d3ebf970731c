"""The Sentry emulator answers like Sentry: shapes checked against the OpenAPI subset, behaviour
against `reference/sentry-api.md` ("What a faithful test fake must reproduce")."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from openapi_schema_validator import OAS30Validator

from bridge.sandbox.http import mock_transport
from bridge.sandbox.sentry_emulator import (
    DEFAULT_QUERY,
    NO_RELEASE_MESSAGE,
    Cursor,
    SentryEmulator,
    parse_query,
    sequence_page,
)

# The part of Sentry's published OpenAPI schema the bridge uses (see its `info`), kept here so
# that a fresh clone validates the emulator's answers too.
SPEC_PATH = Path(__file__).resolve().parent / "data" / "sentry-openapi-subset.json"
BASE = "http://sentry.test"
ORG = "/api/0/organizations/acme"
T0 = datetime(2026, 3, 2, 12, 0, 0, tzinfo=UTC)
Api = Callable[..., httpx.Client]
BAD_ACTOR = "Could not parse actor. Format should be `type:id` where type is `team` or `user`."


class Clock:
    def __init__(self, start: datetime = T0) -> None:
        self.moment = start

    def __call__(self) -> datetime:
        return self.moment

    def advance(self, seconds: float) -> None:
        self.moment += timedelta(seconds=seconds)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def emu(clock: Clock) -> SentryEmulator:
    e = SentryEmulator(now=clock)
    e.add_project("backend")
    e.add_project("web", has_releases=False)
    e.add_user("alice@example.com", "Alice", extra_emails=["alice@corp.example"])
    e.add_user("bob@example.com", "Bob", projects=["web"])
    e.add_user("carol@example.com", "Carol", sso_only=True)
    e.add_user("dave@example.com", pending_invite=True)
    e.add_token("alice-token", user_email="alice@example.com")
    e.add_token("bob-token", user_email="bob@example.com")
    return e


@pytest.fixture
def api(emu: SentryEmulator) -> Iterator[Api]:
    clients: list[httpx.Client] = []

    def make(token: str | None = "sentry-token") -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        client = httpx.Client(base_url=BASE, transport=mock_transport(emu), headers=headers)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def issue_ids(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [item["id"] for item in response.json()]


def links(response: httpx.Response) -> dict[str, dict[str, str]]:
    out = {}
    for part in response.headers["link"].split(", <"):
        url = part.split(">")[0].lstrip("<")
        attrs = dict(re.findall(r'(\w+)="([^"]*)"', part))
        out[attrs["rel"]] = {"url": url, **attrs}
    return out


# -- OpenAPI shapes ----------------------------------------------------------------------------

# The OAS marks as required some list fields that Sentry adds only on request (`expand=`) or for
# event-matching queries; like the "required" statusDetails keys the reference calls a
# schema-generation artifact, they are not demanded of plain list items.
EXPAND_ONLY = {
    "inbox",
    "owners",
    "integrationIssues",
    "sentryAppIssues",
    "latestEventHasAttachments",
    "sessionCount",
    "matchingEventId",
    "matchingEventEnvironment",
}


def _spec() -> dict[str, Any]:
    return json.loads(SPEC_PATH.read_text(encoding="utf-8"))


def _deref(node: Any, spec: dict[str, Any], depth: int = 0) -> Any:
    if depth > 50:
        raise RuntimeError("$ref cycle")
    if isinstance(node, dict):
        if "$ref" in node:
            target: Any = spec
            for part in node["$ref"].lstrip("#/").split("/"):
                target = target[part.replace("~1", "/").replace("~0", "~")]
            return _deref(target, spec, depth + 1)
        return {k: _deref(v, spec, depth) for k, v in node.items()}
    if isinstance(node, list):
        return [_deref(v, spec, depth) for v in node]
    return node


def response_schema(path: str, method: str, status: str = "200") -> dict[str, Any]:
    spec = _spec()
    operation = spec["paths"][path][method]
    return _deref(operation["responses"][status]["content"]["application/json"]["schema"], spec)


def assert_valid(instance: Any, schema: dict[str, Any]) -> None:
    validator = OAS30Validator(schema, format_checker=OAS30Validator.FORMAT_CHECKER)
    errors = [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(instance)]
    assert not errors, "\n".join(errors[:20])


def list_schema() -> dict[str, Any]:
    schema = response_schema("/api/0/organizations/{organization_id_or_slug}/issues/", "get")
    items = schema["items"]
    assert set(items["required"]) >= EXPAND_ONLY  # the relaxation only ever removes these
    items["required"] = [k for k in items["required"] if k not in EXPAND_ONLY]
    return schema


@pytest.fixture
def seeded(emu: SentryEmulator) -> dict[str, str]:
    """Issues in every state the serializer distinguishes."""
    ids = {
        "plain": emu.add_issue("backend", "ZeroDivisionError: division by zero", culprit="app.views"),
        "assigned": emu.add_issue("backend", "KeyError: 'x'", assignee="alice@example.com"),
        "ignored": emu.add_issue("web", "TypeError", status="ignored"),
        "next": emu.add_issue("backend", "ValueError"),
        "team": emu.add_issue("backend", "OSError"),
        "low": emu.add_issue("web", "Slow page", level="info"),
    }
    emu.set_status(ids["next"], "resolved", in_next_release=True, by="alice@example.com")
    emu.bookmark(ids["plain"], "alice@example.com")
    emu.issues[ids["team"]].assignee = ("team", emu.team_id("backend"))
    return ids


def test_list_matches_openapi(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    response = api().get(f"{ORG}/issues/", params={"project": "-1", "query": ""})
    assert len(response.json()) == len(seeded)
    assert_valid(response.json(), list_schema())
    expanded = api().get(
        f"{ORG}/issues/",
        params=[
            ("project", "-1"),
            ("query", "is:unresolved is:for_review"),
            ("expand", "inbox"),
            ("expand", "sentryAppIssues"),
            ("expand", "integrationIssues"),
            ("expand", "latestEventHasAttachments"),
            ("expand", "sessions"),
        ],
    )
    assert expanded.json() and all("inbox" in item and "sessionCount" in item for item in expanded.json())
    assert_valid(expanded.json(), list_schema())


def test_group_list_matches_openapi(api: Api, seeded: dict[str, str]) -> None:
    params = [("group", i) for i in seeded.values()] + [("project", "-1")]
    response = api().get(f"{ORG}/issues/", params=params)
    assert sorted(issue_ids(response)) == sorted(seeded.values())
    assert_valid(response.json(), list_schema())


def test_detail_matches_openapi(api: Api, seeded: dict[str, str]) -> None:
    schema = response_schema("/api/0/organizations/{organization_id_or_slug}/issues/{issue_id}/", "get")
    for issue_id in seeded.values():
        response = api("alice-token").get(f"{ORG}/issues/{issue_id}/")
        assert response.status_code == 200
        assert_valid(response.json(), schema)


def test_put_matches_openapi(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    schema = response_schema("/api/0/organizations/{organization_id_or_slug}/issues/{issue_id}/", "put")
    alice = emu.user_id("alice@example.com")
    bodies = [
        {"status": "resolved"},
        {"status": "resolvedInNextRelease"},
        {"status": "ignored", "statusDetails": {"ignoreCount": 10, "ignoreWindow": 60}},
        {"status": "unresolved"},
        {"assignedTo": f"user:{alice}"},
        {"assignedTo": ""},
        {"isBookmarked": True},
    ]
    for body in bodies:
        response = api().put(f"{ORG}/issues/{seeded['plain']}/", json=body)
        assert response.status_code == 200, (body, response.text)
        assert_valid(response.json(), schema)


def test_members_match_openapi(api: Api) -> None:
    schema = response_schema("/api/0/organizations/{organization_id_or_slug}/members/", "get")
    response = api().get(f"{ORG}/members/")
    assert {m["email"] for m in response.json()} >= {"alice@example.com", "dave@example.com"}
    assert_valid(response.json(), schema)


def test_teams_team_members_and_installations_match_openapi(api: Api, emu: SentryEmulator) -> None:
    teams = api().get(f"{ORG}/teams/")
    assert_valid(
        teams.json(), response_schema("/api/0/organizations/{organization_id_or_slug}/teams/", "get")
    )
    team_members = api().get("/api/0/teams/acme/backend/members/")
    assert_valid(
        team_members.json(),
        response_schema("/api/0/teams/{organization_id_or_slug}/{team_id_or_slug}/members/", "get"),
    )
    installs = api().get(f"{ORG}/sentry-app-installations/")
    assert installs.json()[0]["uuid"] == emu.installation_uuid
    assert_valid(
        installs.json(),
        response_schema("/api/0/organizations/{organization_id_or_slug}/sentry-app-installations/", "get"),
    )


def test_external_issue_matches_openapi(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    body = {
        "issueId": int(seeded["plain"]),
        "webUrl": "https://tracker.example/OPS-1",
        "project": "OPS",
        "identifier": "1",
    }
    response = api().post(
        f"/api/0/sentry-app-installations/{emu.installation_uuid}/external-issues/", json=body
    )
    assert response.status_code == 200
    assert_valid(
        response.json(), response_schema("/api/0/sentry-app-installations/{uuid}/external-issues/", "post")
    )
    listed = api().get(f"{ORG}/issues/{seeded['plain']}/external-issues/")
    assert_valid(
        listed.json(),
        response_schema(
            "/api/0/organizations/{organization_id_or_slug}/issues/{issue_id}/external-issues/", "get"
        ),
    )


# -- issue JSON --------------------------------------------------------------------------------


def test_issue_json_shapes(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    item = api().get(f"{ORG}/issues/{seeded['assigned']}/").json()
    assert isinstance(item["id"], str) and item["id"].isdigit()
    assert item["count"] == "1" and item["userCount"] == 1
    assert item["shortId"].startswith("BACKEND-")
    assert item["assignedTo"] == {
        "type": "user",
        "id": emu.user_id("alice@example.com"),
        "name": "Alice",
        "email": "alice@example.com",
    }
    assert item["permalink"] == f"{BASE}/organizations/acme/issues/{item['id']}/"
    team = api().get(f"{ORG}/issues/{seeded['team']}/").json()["assignedTo"]
    assert team == {"type": "team", "id": emu.team_id("backend"), "name": "backend"}
    ignored = api().get(f"{ORG}/issues/{seeded['ignored']}/").json()
    assert (ignored["status"], ignored["substatus"]) == ("ignored", "archived_forever")
    nxt = api().get(f"{ORG}/issues/{seeded['next']}/").json()
    assert nxt["status"] == "resolved" and nxt["substatus"] is None
    assert nxt["statusDetails"]["inNextRelease"] is True
    assert nxt["statusDetails"]["actor"]["email"] == "alice@example.com"
    plain = emu.issue_json(seeded["plain"])  # no user context, as in webhooks
    assert plain["permalink"] is None and plain["isBookmarked"] is False


def test_bookmarks_and_seen_are_per_caller(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    url = f"{ORG}/issues/{seeded['plain']}/"
    assert api("alice-token").get(url).json()["isBookmarked"] is True
    assert api("alice-token").get(url).json()["isSubscribed"] is True  # bookmarking subscribes
    assert api().get(url).json()["isBookmarked"] is False
    assert api("bob-token").get(url).json()["isBookmarked"] is False
    # hasSeen: a no-op for the integration's proxy user, per user for members
    assert api().put(url, json={"hasSeen": True}).json()["hasSeen"] is False
    assert api("alice-token").put(url, json={"hasSeen": True}).json()["hasSeen"] is True
    assert api().get(url).json()["hasSeen"] is False
    detail = api().get(url).json()
    assert [u["email"] for u in detail["seenBy"]] == ["alice@example.com"]
    assert "alice@example.com" in [p["email"] for p in detail["participants"]]


# -- listing -----------------------------------------------------------------------------------


def test_default_query_when_query_is_absent(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    absent = set(issue_ids(api().get(f"{ORG}/issues/", params={"project": "-1"})))
    explicit = set(issue_ids(api().get(f"{ORG}/issues/", params={"project": "-1", "query": DEFAULT_QUERY})))
    assert absent == explicit == {seeded["plain"], seeded["assigned"], seeded["team"]}
    assert seeded["low"] not in absent  # unresolved, but low priority
    everything = set(issue_ids(api().get(f"{ORG}/issues/", params={"project": "-1", "query": ""})))
    assert everything == set(seeded.values())


def test_ninety_day_window_on_last_seen(api: Api, emu: SentryEmulator, clock: Clock) -> None:
    old = emu.add_issue(
        "backend", "Old", first_seen=clock() - timedelta(days=200), last_seen=clock() - timedelta(days=100)
    )
    recent = emu.add_issue("backend", "Recent")
    q = {"project": "-1", "query": ""}
    assert issue_ids(api().get(f"{ORG}/issues/", params=q)) == [recent]
    assert set(issue_ids(api().get(f"{ORG}/issues/", params={**q, "statsPeriod": "120d"}))) == {old, recent}
    start, end = (clock() - timedelta(days=101)).isoformat(), (clock() - timedelta(days=99)).isoformat()
    assert issue_ids(api().get(f"{ORG}/issues/", params={**q, "start": start, "end": end})) == [old]
    assert api().get(f"{ORG}/issues/", params={**q, "start": start}).status_code == 400
    # group= ignores the window (and the query and the status)
    assert issue_ids(api().get(f"{ORG}/issues/", params={"group": old, "project": "-1"})) == [old]


def test_group_parameter(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    wanted = [seeded["ignored"], seeded["next"], "999999999"]
    response = api().get(
        f"{ORG}/issues/",
        params=[("group", i) for i in wanted] + [("query", "is:unresolved"), ("project", "-1")],
    )
    assert set(issue_ids(response)) == {seeded["ignored"], seeded["next"]}  # unknown ids simply absent
    assert "link" not in response.headers
    bad = api().get(
        f"{ORG}/issues/", params=[("group", seeded["plain"]), ("group", "abc"), ("project", "-1")]
    )
    assert (bad.status_code, bad.json()) == (400, {"detail": "Group ids must be integers"})


def test_pagination_follows_link_with_exact_template(api: Api, emu: SentryEmulator, clock: Clock) -> None:
    created = []
    for n in range(7):
        created.append(emu.add_issue("backend", f"E{n}"))
        clock.advance(60)
    seen: list[str] = []
    response = api().get(f"{ORG}/issues/", params={"project": "-1", "query": "", "sort": "new", "limit": 3})
    first = links(response)
    assert first["previous"]["results"] == "false" and first["next"]["results"] == "true"
    assert response.headers["x-hits"] == "7" and response.headers["x-max-hits"] == "1000"
    template = (
        r"<http://sentry\.test/api/0/organizations/acme/issues/\?project=-1&query=&sort=new&limit=3"
        r'&cursor=(\d+:\d+:1)>; rel="previous"; results="false"; cursor="\1", '
        r"<http://sentry\.test/api/0/organizations/acme/issues/\?project=-1&query=&sort=new&limit=3"
        r'&cursor=(\d+:\d+:0)>; rel="next"; results="true"; cursor="\2"'
    )
    assert re.fullmatch(template, response.headers["link"]), response.headers["link"]
    pages = 0
    while True:
        pages += 1
        seen.extend(issue_ids(response))
        nxt = links(response)["next"]
        if nxt["results"] != "true":
            break
        response = api().get(nxt["url"])
    assert pages == 3
    assert seen == list(reversed(created))  # newest first, each once
    assert links(response)["previous"]["results"] == "true"


def test_cursor_pages_stay_put_when_new_issues_arrive(api: Api, emu: SentryEmulator, clock: Clock) -> None:
    created = []
    for n in range(6):
        created.append(emu.add_issue("backend", f"E{n}"))
        clock.advance(1)
    page1 = api().get(f"{ORG}/issues/", params={"project": "-1", "query": "", "sort": "new", "limit": 3})
    emu.add_issue("backend", "Brand new")  # sorts first; must not shift the next page
    page2 = api().get(links(page1)["next"]["url"])
    assert issue_ids(page1) + issue_ids(page2) == list(reversed(created))


def test_equal_scores_page_by_offset(api: Api, emu: SentryEmulator) -> None:
    created = {emu.add_issue("backend", f"Same time {n}") for n in range(5)}  # the clock does not move
    seen: list[str] = []
    url, params = f"{ORG}/issues/", {"project": "-1", "query": "", "sort": "new", "limit": 2}
    response = api().get(url, params=params)
    while True:
        seen.extend(issue_ids(response))
        nxt = links(response)["next"]
        if nxt["results"] != "true":
            break
        assert nxt["cursor"].split(":")[1] != "0"  # same score: the offset does the work
        response = api().get(nxt["url"])
    assert sorted(seen) == sorted(created) and len(seen) == 5


def test_sequence_paginator_previous_page() -> None:
    scores = [50, 40, 40, 30, 20, 10]
    lo, hi, prev, nxt = sequence_page(scores, 2, None)
    assert (lo, hi, str(prev), prev.has_results, str(nxt), nxt.has_results) == (
        0,
        2,
        "50:0:1",
        False,
        "40:1:0",
        True,
    )
    lo, hi, prev, nxt = sequence_page(scores, 2, nxt)
    assert (lo, hi) == (2, 4)
    lo, hi, _prev, _nxt = sequence_page(scores, 2, prev)
    assert (lo, hi) == (0, 2)


@pytest.mark.parametrize("cursor", ["abc", "1:2", "1:x:0", "1:2:3:4"])
def test_invalid_cursor(api: Api, cursor: str) -> None:
    response = api().get(f"{ORG}/issues/", params={"project": "-1", "query": "", "cursor": cursor})
    assert (response.status_code, response.json()) == (400, {"detail": "Invalid cursor parameter."})
    with pytest.raises(ValueError):
        Cursor.parse(cursor)


def test_limit_is_clamped_to_100(api: Api, emu: SentryEmulator) -> None:
    for n in range(105):
        emu.add_issue("backend", f"E{n}")
    response = api().get(f"{ORG}/issues/", params={"project": "-1", "query": "", "limit": "500"})
    assert len(issue_ids(response)) == 100 and links(response)["next"]["results"] == "true"
    assert api().get(f"{ORG}/issues/", params={"query": "", "limit": "many"}).status_code == 400


def test_short_pages_from_auto_resolve(api: Api, emu: SentryEmulator, clock: Clock) -> None:
    emu.add_project("legacy", auto_resolve_hours=24)
    live = emu.add_issue("legacy", "Live")
    stale = [
        emu.add_issue(
            "legacy",
            f"Stale {n}",
            first_seen=clock() - timedelta(days=5 - n),
            last_seen=clock() - timedelta(days=3),
        )
        for n in range(3)
    ]
    shown = api().get(f"{ORG}/issues/{stale[0]}/").json()
    assert shown["status"] == "resolved" and shown["statusDetails"] == {"autoResolved": True}
    response = api().get(
        f"{ORG}/issues/", params={"project": "-1", "query": "is:unresolved", "sort": "new", "limit": 2}
    )
    assert issue_ids(response) == [live]  # 2 found, 1 dropped after the search
    assert links(response)["next"]["results"] == "true"
    response = api().get(links(response)["next"]["url"])
    assert issue_ids(response) == [] and links(response)["next"]["results"] == "false"


def test_project_parameter(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    q = {"query": ""}
    # an integration's proxy user is in no team: no project means nothing (send project=-1)
    assert issue_ids(api().get(f"{ORG}/issues/", params=q)) == []
    assert len(issue_ids(api().get(f"{ORG}/issues/", params={**q, "project": "-1"}))) == len(seeded)
    web = next(p for p in emu.projects.values() if p.slug == "web")
    only_web = set(issue_ids(api().get(f"{ORG}/issues/", params={**q, "project": web.id})))
    assert only_web == {seeded["ignored"], seeded["low"]}
    assert set(issue_ids(api().get(f"{ORG}/issues/", params={**q, "project": "web"}))) == only_web
    # bob's token: member projects by default; with closed membership other projects are refused
    assert set(issue_ids(api("bob-token").get(f"{ORG}/issues/", params=q))) == only_web
    emu.open_membership = False
    backend = next(p for p in emu.projects.values() if p.slug == "backend")
    assert api("bob-token").get(f"{ORG}/issues/", params={**q, "project": backend.id}).status_code == 403
    assert api().get(f"{ORG}/issues/", params={**q, "project": "424242"}).status_code == 403


# -- search ------------------------------------------------------------------------------------


def test_bookmarks_search(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    emu.bookmark(seeded["next"], "alice@example.com")  # resolved: a search without is: finds it
    emu.bookmark(seeded["ignored"], "carol@example.com")  # SSO-only: invisible to search

    def search(query: str, token: str = "sentry-token") -> set[str]:
        return set(issue_ids(api(token).get(f"{ORG}/issues/", params={"project": "-1", "query": query})))

    assert search("bookmarks:alice@example.com") == {seeded["plain"], seeded["next"]}
    assert search("bookmarks:ALICE@example.com") == {seeded["plain"], seeded["next"]}
    assert search("bookmarks:alice@corp.example") == set()  # only the primary address resolves
    assert search("bookmarks:carol@example.com") == set()
    assert search("bookmarks:nobody@example.com") == set()  # unknown: empty, not an error
    assert search("bookmarks:me", "alice-token") == {seeded["plain"], seeded["next"]}
    assert search("bookmarks:me") == set()
    api().put(f"{ORG}/issues/{seeded['low']}/", json={"isBookmarked": True})  # the proxy user's own
    assert search("bookmarks:me") == {seeded["low"]}
    assert search("bookmarks:alice@example.com is:unresolved") == {seeded["plain"]}


def test_search_subset(api: Api, emu: SentryEmulator, seeded: dict[str, str], clock: Clock) -> None:
    def search(query: str, token: str = "sentry-token") -> set[str]:
        return set(issue_ids(api(token).get(f"{ORG}/issues/", params={"project": "-1", "query": query})))

    everything = set(seeded.values())
    assert search("is:assigned") == {seeded["assigned"], seeded["team"]}
    assert search("is:unassigned") == everything - {seeded["assigned"], seeded["team"]}
    assert search("assigned:alice@example.com") == {seeded["assigned"]}
    assert search("assigned:me", "alice-token") == {seeded["assigned"]}
    assert search("assigned:#backend") == {seeded["team"]}
    assert search("assigned:none is:unresolved") == {seeded["plain"], seeded["low"]}
    assert search("is:archived") == search("is:ignored") == {seeded["ignored"]}
    assert search("is:archived_forever") == {seeded["ignored"]}
    assert search("!is:unresolved") == {seeded["ignored"], seeded["next"]}
    assert search("is:[resolved, ignored]") == {seeded["ignored"], seeded["next"]}
    assert search(f"issue.id:[{seeded['plain']},{seeded['low']}]") == {seeded["plain"], seeded["low"]}
    assert search("issue.priority:low") == {seeded["low"]}
    assert search("division") == {seeded["plain"]}
    assert search('"by zero" is:unresolved') == {seeded["plain"]}
    assert search("environment:prod") == set()  # a tag the emulator does not have
    old = emu.add_issue(
        "backend", "Old", first_seen=clock() - timedelta(days=20), last_seen=clock() - timedelta(days=10)
    )
    assert search("lastSeen:+7d") == {old}
    assert old not in search("lastSeen:-7d")
    assert search("firstSeen:+14d") == {old}
    assert search(f"firstSeen:<{(clock() - timedelta(days=15)).date().isoformat()}") == {old}


@pytest.mark.parametrize(
    "query", ['title:"unterminated', "is:bogus", "is:", "a OR b", "lastSeen:-yesterday", "issue.id:[1,"]
)
def test_malformed_search(api: Api, query: str) -> None:
    response = api().get(f"{ORG}/issues/", params={"project": "-1", "query": query})
    assert response.status_code == 400
    assert response.json()["detail"].startswith("Error parsing search query: ")


def test_parse_query_terms() -> None:
    terms = parse_query(
        'is:unresolved !assigned:"a b" issue.priority:[high, medium] free lastSeen:>2024-01-01'
    )
    assert [(t.key, t.op, t.values, t.negated) for t in terms] == [
        ("is", "=", ("unresolved",), False),
        ("assigned", "=", ("a b",), True),
        ("issue.priority", "=", ("high", "medium"), False),
        ("", "=", ("free",), False),
        ("lastSeen", ">", ("2024-01-01",), False),
    ]


# -- PUT ---------------------------------------------------------------------------------------


def put(api: Api, issue_id: str, body: Any, token: str = "sentry-token") -> httpx.Response:
    return api(token).put(f"{ORG}/issues/{issue_id}/", json=body)


def test_put_status_values(api: Api, emu: SentryEmulator, seeded: dict[str, str], clock: Clock) -> None:
    issue = seeded["plain"]
    resolved = put(api, issue, {"status": "resolved"}).json()
    assert (resolved["status"], resolved["substatus"], resolved["statusDetails"]) == ("resolved", None, {})
    assert resolved["shortId"] and resolved["project"]["slug"] == "backend"  # the full issue comes back
    again = put(api, issue, {"status": "unresolved"}).json()
    assert (again["status"], again["substatus"]) == ("unresolved", "regressed")
    muted = put(api, issue, {"status": "muted"}).json()
    assert (muted["status"], muted["substatus"], muted["statusDetails"]) == (
        "ignored",
        "archived_forever",
        {},
    )
    # unresolving a recently first-seen ignored issue: "new"; an older one: "ongoing"
    assert put(api, issue, {"status": "unresolved"}).json()["substatus"] == "new"
    old = emu.add_issue("backend", "Old", status="ignored", first_seen=clock() - timedelta(days=30))
    assert put(api, old, {"status": "unresolved"}).json()["substatus"] == "ongoing"
    snoozed = put(api, issue, {"status": "ignored", "statusDetails": {"ignoreDuration": 30}}).json()
    assert snoozed["substatus"] == "archived_until_condition_met"
    assert "ignoreUntil" in snoozed["statusDetails"] and snoozed["statusDetails"]["actor"]["id"]
    clock.advance(31 * 60)
    assert api().get(f"{ORG}/issues/{issue}/").json()["status"] == "unresolved"  # the snooze expired
    nxt = put(api, issue, {"status": "resolvedInNextRelease"}).json()
    assert nxt["status"] == "resolved" and nxt["statusDetails"]["inNextRelease"] is True
    explicit = put(api, old, {"status": "ignored", "substatus": "archived_until_escalating"}).json()
    assert explicit["substatus"] == "archived_until_escalating"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"status": "archived"}, "status"),
        ({"status": "closed"}, "status"),
        ({"assignedTo": None}, "assignedTo"),
        ({"isBookmarked": "maybe"}, "isBookmarked"),
        ({"substatus": "sleeping"}, "substatus"),
    ],
)
def test_put_field_errors(
    api: Api, emu: SentryEmulator, seeded: dict[str, str], body: Any, field: str
) -> None:
    before = emu.issue_json(seeded["plain"])
    response = put(api, seeded["plain"], body)
    assert response.status_code == 400 and field in response.json()
    assert emu.issue_json(seeded["plain"]) == before


def test_put_next_release_needs_releases(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    response = put(api, seeded["low"], {"status": "resolvedInNextRelease"})  # project "web": no releases
    assert response.status_code == 400 and NO_RELEASE_MESSAGE in response.text
    nested = put(api, seeded["low"], {"status": "resolved", "statusDetails": {"inNextRelease": True}})
    assert nested.json() == {"statusDetails": {"inNextRelease": [NO_RELEASE_MESSAGE]}}
    assert emu.issues[seeded["low"]].status == "unresolved"
    assert put(api, seeded["low"], {"status": "resolved"}).json()["status"] == "resolved"
    emu.no_release_behaviour = "500"
    assert put(api, seeded["plain"], {"status": "resolved"}).status_code == 200
    assert put(api, seeded["ignored"], {"status": "resolvedInNextRelease"}).status_code == 500


def test_put_assignment_forms(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    issue = seeded["plain"]
    alice = emu.user_id("alice@example.com")
    for form in (f"user:{alice}", alice, "alice@example.com"):
        put(api, issue, {"assignedTo": ""})
        assert put(api, issue, {"assignedTo": form}).json()["assignedTo"]["id"] == alice
    assert put(api, issue, {"assignedTo": ""}).json()["assignedTo"] is None
    team = emu.team_id("backend")
    assert put(api, issue, {"assignedTo": f"team:{team}"}).json()["assignedTo"]["name"] == "backend"
    member = emu.member_id("alice@example.com")
    assert member != alice
    errors = {
        f"user:{member}": "User does not exist",  # a member id is not a user id
        f"user:{emu.user_id('bob@example.com')}": "Cannot assign to non-team member",
        "carol@example.com": BAD_ACTOR,
        f"user:{emu.proxy_user_id}": "User is not a member of this organization",
        f"team:{emu.team_id('web')}": "Cannot assign to a team without access to the project",
    }
    for form, message in errors.items():
        response = put(api, issue, {"assignedTo": form})
        assert (response.status_code, response.json()) == (400, {"assignedTo": [message]}), form
    # an SSO-only user cannot be named by e-mail, but the user id works
    assert put(api, issue, {"assignedTo": f"user:{emu.user_id('carol@example.com')}"}).status_code == 200


def test_activity_log(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    issue = seeded["plain"]
    alice = emu.user_id("alice@example.com")
    put(api, issue, {"status": "resolved"})
    put(api, issue, {"status": "resolved"})  # already resolved: nothing recorded
    put(api, issue, {"assignedTo": f"user:{alice}"})
    put(api, issue, {"assignedTo": alice})  # same assignee: nothing recorded
    put(api, issue, {"assignedTo": ""})
    put(api, issue, {"assignedTo": ""})
    emu.set_status(issue, "unresolved", by="alice@example.com")
    activity = api().get(f"{ORG}/issues/{issue}/activities/").json()["activity"]
    assert [a["type"] for a in activity] == ["set_unresolved", "unassigned", "assigned", "set_resolved"]
    assigned = activity[2]
    assert assigned["data"] == {
        "assignee": alice,
        "assigneeEmail": "alice@example.com",
        "assigneeType": "user",
    }
    assert assigned["sentry_app"]["slug"] == "sentry-tracker-bridge"
    assert activity[0]["user"]["email"] == "alice@example.com" and activity[0]["sentry_app"] is None
    assert api().get(f"{ORG}/issues/{issue}/").json()["activity"] == activity


def test_unbookmark_drops_subscription(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    url = f"{ORG}/issues/{seeded['plain']}/"
    put(api, seeded["plain"], {"isSubscribed": True}, "alice-token")
    off = api("alice-token").put(url, json={"isBookmarked": False}).json()
    assert (off["isBookmarked"], off["isSubscribed"]) == (False, False)


def test_bulk_put(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    ids = [seeded["plain"], seeded["assigned"]]
    response = api().put(
        f"{ORG}/issues/", params=[("id", i) for i in ids] + [("project", "-1")], json={"status": "resolved"}
    )
    assert response.json() == {"status": "resolved", "statusDetails": {}, "inbox": None}
    assert all(emu.issues[i].status == "resolved" for i in ids)
    gone = api().put(f"{ORG}/issues/", params={"id": "999", "project": "-1"}, json={"status": "resolved"})
    assert gone.status_code == 204


def test_regression_and_merge(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    emu.add_event(seeded["next"])
    again = api().get(f"{ORG}/issues/{seeded['next']}/").json()
    assert (again["status"], again["substatus"], again["count"]) == ("unresolved", "regressed", "2")
    emu.merge([seeded["low"]], into=seeded["plain"])
    assert api().get(f"{ORG}/issues/{seeded['low']}/").json()["id"] == seeded["plain"]
    assert issue_ids(api().get(f"{ORG}/issues/", params={"group": seeded["low"], "project": "-1"})) == []


# -- members, teams, external issues ------------------------------------------------------------


def test_members(api: Api, emu: SentryEmulator) -> None:
    members = api().get(f"{ORG}/members/").json()
    by_email = {m["email"]: m for m in members}
    alice = by_email["alice@example.com"]
    assert (
        alice["id"]
        == emu.member_id("alice@example.com")
        != alice["user"]["id"]
        == emu.user_id("alice@example.com")
    )
    assert [e["email"] for e in alice["user"]["emails"]] == ["alice@example.com", "alice@corp.example"]
    assert by_email["dave@example.com"]["user"] is None and by_email["dave@example.com"]["pending"] is True
    assert by_email["carol@example.com"]["user"]["hasPasswordAuth"] is False
    found = api().get(f"{ORG}/members/", params={"query": "email:alice@corp.example"}).json()
    assert [m["email"] for m in found] == ["alice@example.com"]
    found = api().get(f"{ORG}/members/", params={"query": f"user.id:{alice['user']['id']}"}).json()
    assert [m["email"] for m in found] == ["alice@example.com"]
    assert api().get(f"{ORG}/members/", params={"query": "nosuchkey:1"}).json() == []


def test_members_pagination(api: Api, emu: SentryEmulator) -> None:
    response = api().get(f"{ORG}/members/", params={"per_page": "2"})
    emails: list[str] = []
    while True:
        emails.extend(m["email"] for m in response.json())
        nxt = links(response)["next"]
        if nxt["results"] != "true":
            break
        response = api().get(nxt["url"])
    assert emails == sorted(m.email for m in emu.members.values())
    plain = api().get(f"{ORG}/members/")
    assert plain.headers["link"].startswith(
        f'<{BASE}{ORG}/members/?&cursor=100:-1:1>; rel="previous"; results="false"'
    )


def test_external_issue_upsert_and_search(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    url = f"/api/0/sentry-app-installations/{emu.installation_uuid}/external-issues/"
    body = {
        "issueId": int(seeded["plain"]),
        "webUrl": "https://tracker.example/OPS-1",
        "project": "OPS",
        "identifier": "1",
    }
    first = api().post(url, json=body).json()
    second = (
        api().post(url, json={**body, "identifier": "<2>", "webUrl": "https://tracker.example/OPS-2"}).json()
    )
    assert first["id"] == second["id"] and second["displayName"] == "OPS#&lt;2&gt;"
    issue = api().get(f"{ORG}/issues/{seeded['plain']}/").json()
    assert issue["annotations"] == [{"displayName": "OPS#&lt;2&gt;", "url": "https://tracker.example/OPS-2"}]

    def search(query: str) -> set[str]:
        return set(issue_ids(api().get(f"{ORG}/issues/", params={"project": "-1", "query": query})))

    assert search("is:linked") == {seeded["plain"]}
    assert seeded["plain"] not in search("is:unlinked")
    other_app = emu.add_app("other-app")
    emu.add_token("other-token", scopes=["event:admin", "event:write"], app="other-app")
    assert api("other-token").post(url, json=body).status_code == 403  # not its installation
    assert (
        api("other-token")
        .post(f"/api/0/sentry-app-installations/{other_app}/external-issues/", json=body)
        .status_code
        == 200
    )
    assert api().post(url, json={**body, "issueId": 999}).status_code == 404
    assert api().post(url, json={**body, "issueId": "x"}).json() == {
        "detail": "issueId is required, and must be an integer"
    }
    missing = api().post(url, json={"issueId": int(seeded["plain"])})
    assert missing.status_code == 400 and set(missing.json()) == {"webUrl", "project", "identifier"}
    assert api().delete(f"{url}{first['id']}/").status_code == 403  # needs event:admin
    emu.add_token("admin-token", scopes=["event:admin"])
    assert api("admin-token").delete(f"{url}{first['id']}/").status_code == 204
    assert search("is:linked") == {seeded["plain"]}  # the other app's link remains
    assert api("admin-token").delete(f"{url}{first['id']}/").status_code == 404


# -- auth, errors, rate limits -----------------------------------------------------------------


def test_auth(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    url = f"{ORG}/issues/{seeded['plain']}/"
    assert api(None).get(url).status_code == 401
    unknown = api("nope").get(url)
    assert (unknown.status_code, unknown.json()) == (401, {"detail": "Invalid token"})
    emu.add_token("sntrys_ci", scopes=["org:ci"])
    assert api("sntrys_ci").get(url).status_code == 403
    emu.add_token("reader", scopes=["event:read"])
    assert api("reader").get(url).status_code == 200
    assert api("reader").put(url, json={"status": "resolved"}).status_code == 403
    assert api("reader").get(f"{ORG}/members/").status_code == 403
    assert api().get("/api/0/organizations/other/issues/").json() == {
        "detail": "The requested resource does not exist"
    }
    missing = api().get(f"{ORG}/issues/123/")
    assert (missing.status_code, missing.json()) == (404, {"detail": "The requested resource does not exist"})
    assert api().get(f"{ORG}/issues/{emu.issues[seeded['plain']].short_id}/").json()["id"] == seeded["plain"]


def test_rate_limits(api: Api, emu: SentryEmulator, clock: Clock, seeded: dict[str, str]) -> None:
    url = f"{ORG}/issues/{seeded['plain']}/"
    emu.rate_limit_per_second = 2
    client = api()
    responses = [client.get(url) for _ in range(3)]
    assert [r.status_code for r in responses] == [200, 200, 429]
    reset = str(int(clock().timestamp()) + 1)
    assert [r.headers["x-sentry-rate-limit-remaining"] for r in responses] == ["1", "0", "0"]
    for r in responses:
        assert (
            r.headers["x-sentry-rate-limit-limit"] == "2" and r.headers["x-sentry-rate-limit-reset"] == reset
        )
        assert "x-sentry-rate-limit-concurrentlimit" in r.headers
        assert "x-sentry-rate-limit-concurrentremaining" in r.headers
    limited = responses[2]
    assert limited.headers["content-type"].startswith("text/html") and "retry-after" not in limited.headers
    assert json.loads(limited.text) == (
        "You are attempting to use this endpoint too frequently. Limit is 2 requests in 1 seconds"
    )
    assert client.put(url, json={"hasSeen": True}).status_code == 200  # another method: another window
    assert api("alice-token").get(url).status_code == 200  # another caller too
    clock.advance(1)
    assert client.get(url).status_code == 200
    emu.retry_after_on_429 = True
    client.get(url)
    assert client.get(url).headers["retry-after"] == "1"
    emu.rate_limit_per_second = None  # self-hosted: no headers at all
    assert not [h for h in client.get(url).headers if h.startswith("x-sentry-rate-limit")]


def test_fault_bodies_look_like_sentry(api: Api, emu: SentryEmulator) -> None:
    emu.inject("status", status=429)
    limited = api().get(f"{ORG}/members/")
    assert limited.status_code == 429 and isinstance(json.loads(limited.text), str)
    assert "x-sentry-rate-limit-reset" in limited.headers and "retry-after" not in limited.headers
    emu.inject("status", status=500)
    assert api().get(f"{ORG}/members/").json()["detail"] == "Internal Error"
    emu.inject("status", status=502)
    assert api().get(f"{ORG}/members/").headers["content-type"] == "text/html"


def test_deprecated_issue_path(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    response = api().get(f"/api/0/issues/{seeded['plain']}/")
    assert response.status_code == 200 and "x-sentry-deprecation-date" in response.headers
    emu.brownout = True
    gone = api().get(f"/api/0/issues/{seeded['plain']}/")
    assert (gone.status_code, gone.json()) == (410, {"message": "This API no longer exists."})


def test_self_hosted_answers_carry_no_rate_limit_headers(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    """`rate_limit_headers = False`: a self-hosted Sentry (its rate-limit middleware returns early),
    with a limit kept by something in front of it: the 429s come, the five headers never do."""
    url = f"{ORG}/issues/{seeded['plain']}/"
    emu.rate_limit_headers = False
    emu.rate_limit_per_second = 1
    client = api()
    answers = [client.get(url), client.get(url)]
    emu.inject("status", status=429, method="GET")
    emu.rate_limit_per_second = None
    answers.append(client.get(url))
    emu.retry_after_on_429 = True
    emu.inject("status", status=429, method="GET")
    answers.append(client.get(url))
    assert [r.status_code for r in answers] == [200, 429, 429, 429]
    for response in answers:
        assert not [h for h in response.headers if h.startswith("x-sentry-rate-limit")], response.headers
    assert "retry-after" not in answers[2].headers and answers[3].headers["retry-after"] == "1"
    assert isinstance(json.loads(answers[2].text), str)  # still Sentry's 429 body


# -- the project-scoped issue endpoints (what sentry-cli uses) ----------------------------------

PROJECT = "/api/0/projects/acme/backend/issues/"


def test_project_issue_list(api: Api, emu: SentryEmulator, seeded: dict[str, str], clock: Clock) -> None:
    old = emu.add_issue("backend", "Old", first_seen=clock() - timedelta(days=200))
    backend = {k for k, v in seeded.items() if emu.issues[v].project_id == emu._project("backend").id}
    everything = api().get(PROJECT, params={"query": ""})
    # Only this project, every status, and no 90-day event window (unlike the org list).
    assert sorted(issue_ids(everything)) == sorted([seeded[k] for k in backend] + [old])
    assert old not in issue_ids(api().get(f"{ORG}/issues/", params={"query": "", "project": "-1"}))
    # No query: the default one (unresolved, high or medium priority).
    default = issue_ids(api().get(PROJECT))
    assert seeded["next"] not in default and seeded["plain"] in default
    # Items are the issue plus the 24h stats; no org-list extras.
    item = everything.json()[0]
    org_item = api().get(f"{ORG}/issues/", params={"group": item["id"], "project": "-1"}).json()[0]
    assert set(org_item) - set(item) == {"lifetime", "filtered", "derivedData"}
    assert list(item["stats"]) == ["24h"] and len(item["stats"]["24h"]) == 24
    two_weeks = api().get(PROJECT, params={"query": "", "statsPeriod": "14d"}).json()[0]["stats"]
    assert list(two_weeks) == ["14d"] and len(two_weeks["14d"]) == 14
    assert "stats" not in api().get(PROJECT, params={"query": "", "statsPeriod": ""}).json()[0]
    bad = api().get(PROJECT, params={"statsPeriod": "7d"})
    assert (bad.status_code, bad.json()) == (400, {"detail": "Invalid stats_period. Valid choices are '', '24h', "
                                                             "and '14d'"})
    # Pages: an empty cursor is the first page; then the Link header's cursor.
    first = api().get(PROJECT, params={"query": "", "limit": "2", "cursor": ""})
    assert len(first.json()) == 2 and links(first)["next"]["results"] == "true"
    second = api().get(links(first)["next"]["url"])
    assert issue_ids(first) + issue_ids(second) == issue_ids(everything)[:4]
    assert api().get(PROJECT, params={"cursor": "bad"}).status_code == 400
    # The project is the id or the slug; unknown: 404; not visible to the caller: 403.
    by_id = api().get(f"/api/0/projects/acme/{emu._project('backend').id}/issues/", params={"query": ""})
    assert issue_ids(by_id) == issue_ids(everything)
    assert api().get("/api/0/projects/acme/nope/issues/").status_code == 404
    assert api().get("/api/0/projects/other-org/backend/issues/").status_code == 404
    emu.open_membership = False
    assert api("bob-token").get(PROJECT).status_code == 403  # bob is only in web's team


def test_project_bulk_put_by_id(api: Api, emu: SentryEmulator, seeded: dict[str, str]) -> None:
    body = {"status": "resolved", "snoozeDuration": None}  # what sentry-cli sends
    done = api("alice-token").put(PROJECT, params={"id": seeded["plain"]}, json=body)
    assert (done.status_code, done.json()) == (200, {"status": "resolved", "statusDetails": {}, "inbox": None})
    assert emu.issues[seeded["plain"]].status == "resolved"
    assert emu.activities(seeded["plain"])[-1].user_id == emu.user_id("alice@example.com")
    muted = api().put(PROJECT, params={"id": seeded["assigned"]}, json={"status": "muted", "snoozeDuration": None})
    assert muted.json()["status"] == "ignored" and emu.issues[seeded["assigned"]].substatus == "archived_forever"
    # An issue of another project is out of scope: 204, nothing changes.
    other = api().put(PROJECT, params={"id": seeded["low"]}, json=body)
    assert other.status_code == 204 and emu.issues[seeded["low"]].status == "unresolved"
    wrong = api().put(PROJECT, params={"id": seeded["plain"]}, json={"status": "unresolved", "snoozeDuration": "x"})
    assert (wrong.status_code, wrong.json()) == (400, {"snoozeDuration": ["A valid integer is required."]})
    assert api().put(PROJECT, params={"id": "x"}, json=body).status_code == 400
    assert api("no-such-token").put(PROJECT, params={"id": seeded["plain"]}, json=body).status_code == 401
    emu.add_token("reader", scopes=["event:read"])
    assert api("reader").put(PROJECT, params={"id": seeded["plain"]}, json=body).status_code == 403


# -- releases (what doctor asks) -----------------------------------------------------------------

RELEASES = f"{ORG}/releases/"
# "List an Organization's Releases" is not in the OpenAPI subset; this is the documented item
# (docs.sentry.io/api/releases/list-an-organizations-releases/; the required fields and types of
# `OrganizationRelease` in getsentry/sentry api-docs/components/schemas/releases/organization-release.json).
RELEASE_SCHEMA: dict[str, Any] = {
    "type": "array",
    "items": {
        "type": "object",
        "required": ["authors", "commitCount", "data", "dateCreated", "dateReleased", "deployCount", "firstEvent",
                     "lastCommit", "lastDeploy", "lastEvent", "newGroups", "owner", "projects", "ref",
                     "shortVersion", "version", "url"],
        "properties": {
            "authors": {"type": "array", "items": {"type": "object"}},
            "commitCount": {"type": "integer"},
            "data": {"type": "object"},
            "dateCreated": {"type": "string", "format": "date-time"},
            "dateReleased": {"type": "string", "format": "date-time", "nullable": True},
            "deployCount": {"type": "integer"},
            "firstEvent": {"type": "string", "format": "date-time", "nullable": True},
            "lastCommit": {"type": "object", "nullable": True},
            "lastDeploy": {"type": "object", "nullable": True},
            "lastEvent": {"type": "string", "format": "date-time", "nullable": True},
            "newGroups": {"type": "integer"},
            "owner": {"type": "object", "nullable": True},
            "projects": {"type": "array", "items": {"type": "object", "required": ["name", "slug"], "properties": {
                "name": {"type": "string"}, "slug": {"type": "string"}}}},
            "ref": {"type": "string", "nullable": True},
            "shortVersion": {"type": "string"},
            "version": {"type": "string"},
            "url": {"type": "string", "nullable": True},
        },
    },
}


def test_releases_list(api: Api, emu: SentryEmulator, clock: Clock) -> None:
    emu.add_token("releases-token", scopes=["event:read", "project:read"])
    backend, web = emu._project("backend").id, emu._project("web").id
    clock.advance(60)
    emu.add_release("backend", "2.0.0")
    clock.advance(60)
    emu.add_release("web", "web@3.1")
    emu.add_release("backend", "web@3.1")  # the same release, in both projects

    client = api("releases-token")
    listed = client.get(RELEASES, params=[("project", backend), ("project", web)])
    assert listed.status_code == 200
    assert_valid(listed.json(), RELEASE_SCHEMA)
    assert [r["version"] for r in listed.json()] == ["web@3.1", "2.0.0", "1.0.0"]  # newest first
    assert [p["slug"] for p in listed.json()[0]["projects"]] == ["backend", "web"]
    assert [r["version"] for r in client.get(RELEASES, params={"project": web}).json()] == ["web@3.1"]
    assert [r["version"] for r in client.get(RELEASES, params={"project": "-1", "query": "WEB@"}).json()] == [
        "web@3.1"]
    assert client.get(RELEASES, params={"project": backend, "status": "archived"}).json() == []
    # Offset pages with Sentry's Link header, as doctor's `per_page=1` asks for.
    one = client.get(RELEASES, params={"project": backend, "per_page": "1"})
    assert [r["version"] for r in one.json()] == ["web@3.1"]
    assert links(one)["next"]["results"] == "true" and links(one)["previous"]["results"] == "false"
    assert [r["version"] for r in client.get(links(one)["next"]["url"]).json()] == ["2.0.0"]
    # A project without releases lists nothing; one the integration is in no team of: nothing.
    emu._project("web").releases.clear()
    assert client.get(RELEASES, params={"project": web}).json() == []
    assert client.get(RELEASES).json() == []
    # Errors: a slug is not an id; an unknown project; the bridge's default scopes lack project:read.
    slug = client.get(RELEASES, params={"project": "backend"})
    assert (slug.status_code, slug.json()) == (400, {"detail": "Invalid project parameter. Values must be numbers."})
    assert client.get(RELEASES, params={"project": "999"}).status_code == 403
    assert client.get(RELEASES, params={"project": backend, "status": "gone"}).status_code == 400
    assert client.get(RELEASES, params={"project": backend, "per_page": "101"}).status_code == 400
    assert api().get(RELEASES, params={"project": backend}).status_code == 403
