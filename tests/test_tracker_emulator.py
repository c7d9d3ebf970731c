"""The Tracker emulator against the reference ("What a faithful test fake must reproduce"), over
raw HTTP (httpx + MockTransport), so these tests say nothing about our own client."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest

from bridge.sandbox.http import mock_transport
from bridge.sandbox.tracker_emulator import DEFAULT_WORKFLOW, TrackerEmulator

BASE = "http://tracker.test"
AUTH = {"Authorization": "OAuth tracker-token", "X-Org-ID": "1234567", "Accept-Language": "en"}
TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+0000$")


class Clock:
    """A controllable `now` so updatedAt filters and ordering are deterministic."""

    def __init__(self) -> None:
        self.at = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.at += timedelta(seconds=1)
        return self.at


@pytest.fixture
def emu() -> TrackerEmulator:
    return TrackerEmulator(now=Clock())


def http(emu: TrackerEmulator, **headers: str) -> httpx.Client:
    merged = {**AUTH, **headers}
    return httpx.Client(
        base_url=BASE, transport=mock_transport(emu), headers={k: v for k, v in merged.items() if v}
    )


@pytest.fixture
def api(emu: TrackerEmulator) -> Iterator[httpx.Client]:
    with http(emu) as client:
        yield client


def assert_error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert set(body) == {"errors", "errorMessages", "statusCode"}
    assert body["statusCode"] == status
    assert isinstance(body["errors"], dict)
    assert body["errorMessages"] and all(isinstance(m, str) for m in body["errorMessages"])
    return dict(body)


def patch(api: httpx.Client, key: str, body: Any, version: int | None = None, **kw: Any) -> httpx.Response:
    params = {"version": version} if version is not None else None
    return api.patch(f"/v3/issues/{key}", params=params, json=body, **kw)


def followers(issue: dict[str, Any]) -> list[str]:
    return [f["id"] for f in issue.get("followers", [])]


# -- routing, headers, document -----------------------------------------------------------------


def test_v2_and_v3_answer_the_same_with_or_without_slash_by_key_or_id(
    emu: TrackerEmulator, api: httpx.Client
) -> None:
    key = emu.add_issue("OPS", "Disk full")
    v3 = api.get(f"/v3/issues/{key}").json()
    v2 = api.get(f"/v2/issues/{key}/").json()
    by_id = api.get(f"/v3/issues/{v3['id']}").json()
    assert v3["self"] == f"{BASE}/v3/issues/{key}" and v2["self"] == f"{BASE}/v2/issues/{key}"
    strip = lambda d: re.sub(r"/v[23]/", "/vX/", str(d))  # noqa: E731
    assert strip(v2) == strip(v3) == strip(by_id)
    # every self is on the emulator and can be followed
    for ref in (
        v3["self"],
        v3["status"]["self"],
        v3["createdBy"]["self"],
        v3["queue"]["self"],
        v3["type"]["self"],
        v3["priority"]["self"],
    ):
        assert ref.startswith(BASE)
        assert api.get(ref).status_code == 200, ref


def test_issue_document_shape(emu: TrackerEmulator, api: httpx.Client) -> None:
    key = emu.add_issue(
        "OPS",
        "Disk full",
        assignee="tracker-admin",
        tags=["sentry"],
        unique="u1",
        description="https://sentry.example/issues/1/",
    )
    doc = api.get(f"/v3/issues/{key}").json()
    assert re.fullmatch(r"[0-9a-f]{24}", doc["id"]) and doc["key"] == "OPS-1" and doc["version"] == 1
    assert TS.match(doc["createdAt"]) and TS.match(doc["updatedAt"])
    assert doc["assignee"] == {
        "self": f"{BASE}/v3/users/{emu.admin_uid}",
        "id": emu.admin_uid,
        "display": "Tracker Admin",
        "passportUid": int(emu.admin_uid),
    }
    assert "login" not in doc["assignee"]
    assert doc["tags"] == ["sentry"] and doc["unique"] == "u1"
    assert doc["status"]["key"] == "open" and doc["statusType"]["key"] == "new"
    assert "resolution" not in doc and "followers" not in doc  # unset fields are omitted by default


def test_omit_unset_knob_gives_nulls_and_empty_arrays() -> None:
    emu = TrackerEmulator(omit_unset=False)
    key = emu.add_issue("OPS", "x")
    with http(emu) as api:
        doc = api.get(f"/v3/issues/{key}").json()
    assert doc["assignee"] is None and doc["resolution"] is None and doc["followers"] == []


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Authorization": ""}, 401),
        ({"Authorization": "OAuth wrong-secret-token"}, 401),
        ({"Authorization": "Basic tracker-token"}, 401),
        ({"X-Org-ID": ""}, 401),
        ({"X-Cloud-Org-ID": "1234567"}, 401),  # both org headers
        ({"X-Org-ID": "999"}, 401),
        ({"Authorization": "Bearer tracker-token"}, 401),  # IAM without X-Cloud-Org-ID
    ],
)
def test_auth_and_exactly_one_org_header(emu: TrackerEmulator, headers: dict[str, str], status: int) -> None:
    key = emu.add_issue("OPS", "x")
    with http(emu, **headers) as api:
        response = api.get(f"/v3/issues/{key}")
    assert_error(response, status)
    assert "wrong-secret-token" not in response.text


def test_org_header_is_case_insensitive_and_knob_changes_the_code(emu: TrackerEmulator) -> None:
    with http(emu, **{"X-Org-ID": "", "x-org-id": "1234567"}) as api:
        assert api.get("/v2/myself").status_code == 200
    emu.org_error_status = 403
    with http(emu, **{"X-Org-ID": ""}) as api:
        assert_error(api.get("/v2/myself"), 403)


def test_cloud_org_takes_bearer_with_cloud_header_only() -> None:
    emu = TrackerEmulator(org_id=None, cloud_org_id="bpf123")
    with http(
        emu, **{"X-Org-ID": "", "X-Cloud-Org-ID": "bpf123", "Authorization": "Bearer tracker-token"}
    ) as api:
        me = api.get("/v2/myself").json()
        assert me["login"] == "bridge-robot" and me["cloudUid"]
    with http(emu) as api:  # X-Org-ID against a cloud org
        assert_error(api.get("/v2/myself"), 401)


def test_accept_language_picks_display_strings(emu: TrackerEmulator) -> None:
    key = emu.add_issue("OPS", "x")
    with http(emu, **{"Accept-Language": ""}) as api:
        assert api.get(f"/v3/issues/{key}").json()["status"]["display"] == "Открыт"
    with http(emu) as api:
        assert api.get(f"/v3/issues/{key}").json()["status"]["display"] == "Open"


def test_unknown_route_and_method_give_tracker_errors(api: httpx.Client) -> None:
    assert_error(api.get("/v3/issues/OPS-404"), 404)
    assert_error(api.get("/v3/nothing-here"), 404)
    assert_error(api.delete("/v3/issues/_search"), 405)


# -- versions -------------------------------------------------------------------------------------


def test_patch_with_current_version_bumps_version_and_updated_by(
    emu: TrackerEmulator, api: httpx.Client
) -> None:
    key = emu.add_issue("OPS", "x")
    before = api.get(f"/v3/issues/{key}").json()
    response = patch(api, key, {"summary": "y"}, version=1)
    assert response.status_code == 200
    doc = response.json()
    assert doc["summary"] == "y" and doc["version"] == 2
    assert doc["updatedBy"]["id"] == emu.robot_uid and doc["updatedAt"] > before["updatedAt"]
    # a PATCH that changes nothing is not a new version
    assert patch(api, key, {"summary": "y"}, version=2).json()["version"] == 2


@pytest.mark.parametrize("use_if_match", [False, True])
def test_stale_version_is_409_and_changes_nothing(
    emu: TrackerEmulator, api: httpx.Client, use_if_match: bool
) -> None:
    key = emu.add_issue("OPS", "x")
    emu.set_assignee(key, "tracker-admin")  # a person edits: version 2
    if use_if_match:
        response = patch(api, key, {"summary": "y"}, headers={"If-Match": '"1"'})
    else:
        response = patch(api, key, {"summary": "y"}, version=1)
    assert_error(response, 409)
    doc = api.get(f"/v3/issues/{key}").json()
    assert doc["summary"] == "x" and doc["version"] == 2


def test_conflict_status_knob_gives_412() -> None:
    emu = TrackerEmulator(conflict_status=412)
    key = emu.add_issue("OPS", "x")
    with http(emu) as api:
        assert_error(patch(api, key, {"summary": "y"}, version=7), 412)


def test_version_cap_gives_423() -> None:
    emu = TrackerEmulator(version_cap=3)
    key = emu.add_issue("OPS", "x")
    with http(emu) as api:
        assert patch(api, key, {"summary": "a"}).json()["version"] == 2
        assert patch(api, key, {"summary": "b"}).json()["version"] == 3
        assert_error(patch(api, key, {"summary": "c"}), 423)
        assert_error(api.post(f"/v3/issues/{key}/transitions/start_progress/_execute"), 423)
        assert api.get(f"/v3/issues/{key}").json()["summary"] == "b"


def test_default_caps_are_10100_for_robots_and_11100_for_people(emu: TrackerEmulator) -> None:
    key = emu.add_issue("OPS", "x")
    emu._issues[key].version = 10100  # reaching the cap by 10k edits would be slow
    emu.add_user("alice", "alice@example.com")
    emu.add_token("alice-token", login="alice")
    with http(emu) as api:
        assert_error(patch(api, key, {"summary": "robot"}), 423)
    with http(emu, Authorization="OAuth alice-token") as api:
        assert patch(api, key, {"summary": "person"}).json()["version"] == 10101


# -- PATCH semantics ------------------------------------------------------------------------------


def test_followers_array_operations(emu: TrackerEmulator, api: httpx.Client) -> None:
    uids = {name: emu.add_user(name, f"{name}@example.com") for name in ("ann", "bob", "cat", "dan")}
    key = emu.add_issue("OPS", "x", followers=["ann"])

    def run(value: Any) -> list[str]:
        response = patch(api, key, {"followers": value})
        assert response.status_code == 200, response.text
        return followers(response.json())

    assert run({"add": ["bob", uids["ann"]]}) == [uids["ann"], uids["bob"]]  # a set: no duplicate ann
    assert run({"add": [int(uids["cat"])]}) == [uids["ann"], uids["bob"], uids["cat"]]
    assert run({"remove": ["bob", "dan"]}) == [uids["ann"], uids["cat"]]  # dan was never there: no error
    assert run({"replace": [{"target": "ann", "replacement": {"id": uids["dan"]}}]}) == [
        uids["dan"],
        uids["cat"],
    ]
    assert run({"set": ["bob"]}) == [uids["bob"]]
    assert run(["ann", "cat"]) == [uids["ann"], uids["cat"]]
    assert run([]) == []
    run(["ann"])
    assert run(None) == []


def test_assignee_as_login_uid_object_and_null(emu: TrackerEmulator, api: httpx.Client) -> None:
    uid = emu.add_user("ann", "ann@example.com")
    key = emu.add_issue("OPS", "x")
    for value in ("ann", uid, int(uid), {"id": uid}):
        emu.set_assignee(key, None)
        assert patch(api, key, {"assignee": value}).json()["assignee"]["id"] == uid
    doc = patch(api, key, {"assignee": None}).json()
    assert "assignee" not in doc


def test_tags_operations(emu: TrackerEmulator, api: httpx.Client) -> None:
    key = emu.add_issue("OPS", "x", tags=["a"])
    assert patch(api, key, {"tags": {"add": ["b"]}}).json()["tags"] == ["a", "b"]
    assert patch(api, key, {"tags": {"remove": ["a"]}}).json()["tags"] == ["b"]


@pytest.mark.parametrize(
    ("body", "bad_field"),
    [
        ({"followers": {"add": ["nobody"]}}, "followers"),
        ({"assignee": "nobody"}, "assignee"),
        ({"noSuchField": 1}, "noSuchField"),
        ({"summary": 5}, "summary"),
        ({"key": "OPS-9"}, "key"),
        ({"resolution": "fixed"}, "resolution"),
        ({"status": "closed"}, "status"),
    ],
)
def test_invalid_patch_is_422_and_changes_nothing(
    emu: TrackerEmulator, api: httpx.Client, body: dict[str, Any], bad_field: str
) -> None:
    key = emu.add_issue("OPS", "x")
    error = assert_error(patch(api, key, {"summary": "changed", **body}), 422)
    assert bad_field in error["errors"]
    doc = api.get(f"/v3/issues/{key}").json()
    assert doc["version"] == 1 and doc["summary"] == "x" and doc["status"]["key"] == "open"


def test_status_in_patch_knob(emu: TrackerEmulator, api: httpx.Client) -> None:
    emu.status_in_patch_status = 400
    key = emu.add_issue("OPS", "x")
    assert_error(patch(api, key, {"status": "closed"}), 400)


def test_local_fields_are_listed_and_written_by_full_id(emu: TrackerEmulator, api: httpx.Client) -> None:
    field_id = emu.add_local_field("OPS", "sentryUrl", name="Sentry link")
    key = emu.add_issue("OPS", "x")
    listed = api.get("/v2/queues/OPS/localFields").json()
    assert [(f["id"], f["key"], f["schema"]["type"], f["type"]) for f in listed] == [
        (field_id, "sentryUrl", "string", "local")
    ]
    assert re.fullmatch(r"[0-9a-f]{24}--sentryUrl", field_id)
    assert patch(api, key, {field_id: "https://s/1"}).json()[field_id] == "https://s/1"
    assert_error(patch(api, key, {"sentryUrl": "short key"}), 422)


# -- changelog ------------------------------------------------------------------------------------


def test_changelog_records_changes_in_order_with_cursor_pages(
    emu: TrackerEmulator, api: httpx.Client
) -> None:
    emu.add_user("ann", "ann@example.com")
    key = emu.add_issue("OPS", "x")
    patch(api, key, {"followers": {"add": ["ann"]}})
    api.post(f"/v3/issues/{key}/transitions/start_progress/_execute")
    emu.set_assignee(key, "ann")

    entries = api.get(f"/v3/issues/{key}/changelog").json()
    assert [e["type"] for e in entries] == ["IssueCreated", "IssueUpdated", "IssueWorkflow", "IssueUpdated"]
    upd = entries[1]
    assert upd["updatedBy"]["id"] == emu.robot_uid and upd["transport"] == "api"
    assert upd["fields"][0]["field"]["id"] == "followers"
    assert upd["fields"][0]["from"] == [] and upd["fields"][0]["to"][0]["display"] == "ann"
    wf = entries[2]["fields"][0]
    assert (wf["field"]["id"], wf["from"]["key"], wf["to"]["key"]) == ("status", "open", "inProgress")
    assert entries[3]["transport"] == "front" and entries[3]["updatedBy"]["id"] == emu.admin_uid

    first = api.get(f"/v3/issues/{key}/changelog", params={"perPage": 2})
    assert len(first.json()) == 2 and "X-Total-Count" not in first.headers
    next_url = first.links["next"]["url"]
    assert f"id={entries[1]['id']}" in next_url
    rest = api.get(next_url).json()
    assert [e["id"] for e in rest] == [e["id"] for e in entries[2:]]
    only_status = api.get(f"/v3/issues/{key}/changelog", params={"field": "status"}).json()
    assert [e["type"] for e in only_status] == ["IssueWorkflow"]


# -- workflows and transitions --------------------------------------------------------------------


def test_transitions_are_listed_from_the_current_status_only(emu: TrackerEmulator, api: httpx.Client) -> None:
    key = emu.add_issue("OPS", "x")
    listed = api.get(f"/v3/issues/{key}/transitions").json()
    assert {t["id"]: t["to"]["key"] for t in listed} == DEFAULT_WORKFLOW["transitions"]["open"]
    assert listed[0]["self"] == f"{BASE}/v3/issues/{key}/transitions/{listed[0]['id']}"
    assert api.get(listed[0]["self"]).json()["id"] == listed[0]["id"]
    expanded = api.get(f"/v3/issues/{key}", params={"expand": "transitions"}).json()
    assert expanded["transitions"] == listed


def test_execute_unavailable_transition_is_409(emu: TrackerEmulator, api: httpx.Client) -> None:
    key = emu.add_issue("OPS", "x")
    assert_error(api.post(f"/v3/issues/{key}/transitions/resolve/_execute"), 409)
    assert_error(api.post(f"/v3/issues/{key}/transitions/bogus/_execute"), 409)
    emu.transition_error_status = 422
    assert_error(api.post(f"/v3/issues/{key}/transitions/resolve/_execute"), 422)
    assert api.get(f"/v3/issues/{key}").json()["version"] == 1


def test_done_status_needs_a_resolution(emu: TrackerEmulator, api: httpx.Client) -> None:
    key = emu.add_issue("OPS", "x")
    error = assert_error(api.post(f"/v3/issues/{key}/transitions/close/_execute", json={}), 422)
    assert "resolution" in error["errors"]
    assert_error(api.post(f"/v3/issues/{key}/transitions/close/_execute", json={"resolution": "nope"}), 422)
    assert api.get(f"/v3/issues/{key}").json()["status"]["key"] == "open"


def test_execute_moves_status_and_answers_the_next_transitions(
    emu: TrackerEmulator, api: httpx.Client
) -> None:
    key = emu.add_issue("OPS", "x")
    response = api.post(
        f"/v3/issues/{key}/transitions/close/_execute", json={"resolution": "wontFix", "comment": "Not a bug"}
    )
    assert response.status_code == 200
    assert [(t["id"], t["to"]["key"]) for t in response.json()] == [("reopen", "open")]
    doc = api.get(f"/v3/issues/{key}").json()
    assert doc["status"]["key"] == "closed" and doc["previousStatus"]["key"] == "open"
    assert doc["resolution"]["key"] == "wontFix" and doc["resolution"]["id"] == "2"
    assert doc["resolvedBy"]["id"] == emu.robot_uid and TS.match(doc["resolvedAt"])
    assert doc["version"] == 2 and doc["statusStartTime"] == doc["updatedAt"]
    assert [c["text"] for c in api.get(f"/v3/issues/{key}/comments").json()] == ["Not a bug"]
    assert "followers" not in doc  # a transition comment does not subscribe the robot (assumption)

    api.post(f"/v3/issues/{key}/transitions/reopen/_execute")
    reopened = api.get(f"/v3/issues/{key}").json()
    assert (
        reopened["status"]["key"] == "open" and "resolution" not in reopened and "resolvedAt" not in reopened
    )


def test_closed_to_in_progress_takes_two_steps(emu: TrackerEmulator, api: httpx.Client) -> None:
    key = emu.add_issue("OPS", "x", status="closed", resolution="fixed")
    assert "start_progress" not in [t["id"] for t in api.get(f"/v3/issues/{key}/transitions").json()]
    after = api.post(f"/v3/issues/{key}/transitions/reopen/_execute").json()
    assert "start_progress" in [t["id"] for t in after]
    api.post(f"/v3/issues/{key}/transitions/start_progress/_execute")
    assert api.get(f"/v3/issues/{key}").json()["status"]["key"] == "inProgress"


def test_execute_honours_a_version_when_given(emu: TrackerEmulator, api: httpx.Client) -> None:
    key = emu.add_issue("OPS", "x")
    emu.set_assignee(key, "tracker-admin")
    assert_error(
        api.post(f"/v3/issues/{key}/transitions/start_progress/_execute", params={"version": 1}), 409
    )


def test_custom_workflow_queue(emu: TrackerEmulator, api: httpx.Client) -> None:
    emu.add_queue(
        "SUP",
        workflow={"statuses": {"new": "new", "done": "done"}, "transitions": {"new": {"finish": "done"}}},
        initial_status="new",
    )
    key = emu.add_issue("SUP", "x")
    assert key == "SUP-1"
    assert api.get(f"/v3/issues/{key}").json()["status"]["key"] == "new"
    emu.require_resolution = False
    assert api.post(f"/v3/issues/{key}/transitions/finish/_execute").status_code == 200
    statuses = {s["key"]: s["type"] for s in api.get("/v3/statuses").json()}
    assert statuses["done"] == "done" and statuses["closed"] == "done" and statuses["needInfo"] == "paused"


# -- search ---------------------------------------------------------------------------------------


def search(api: httpx.Client, body: dict[str, Any], **params: Any) -> httpx.Response:
    return api.post("/v3/issues/_search", json=body, params=params)


def keys_of(response: httpx.Response) -> list[str]:
    assert response.status_code == 200, response.text
    return [i["key"] for i in response.json()]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"queue": "OPS", "keys": ["OPS-1"]},
        {"filter": {"queue": "OPS"}, "query": "Queue: OPS"},
        {"queue": None, "keys": None, "filter": None, "query": None},
    ],
)
def test_search_needs_exactly_one_non_null_selector(
    emu: TrackerEmulator, api: httpx.Client, body: dict[str, Any]
) -> None:
    emu.add_issue("OPS", "x")
    assert_error(search(api, body), 400)


def test_search_with_nulls_for_unused_selectors_like_the_official_client(
    emu: TrackerEmulator, api: httpx.Client
) -> None:
    emu.add_issue("OPS", "x")
    emu.add_queue("SUP")
    emu.add_issue("SUP", "y")
    body = {"filter": None, "filterId": None, "query": None, "keys": None, "queue": "OPS", "order": None}
    assert keys_of(search(api, body)) == ["OPS-1"]
    assert keys_of(search(api, {"keys": ["SUP-1", "OPS-1", "OPS-404"]})) == ["SUP-1", "OPS-1"]
    assert keys_of(search(api, {"keys": "OPS-1"})) == ["OPS-1"]


def test_search_filter_equality_list_and_updated_range(emu: TrackerEmulator, api: httpx.Client) -> None:
    emu.add_user("ann", "ann@example.com")
    k1 = emu.add_issue("OPS", "a", assignee="ann")
    k2 = emu.add_issue("OPS", "b", tags=["t"])
    k3 = emu.add_issue("OPS", "c", status="closed", resolution="fixed")
    emu.set_assignee(k1, "tracker-admin")  # k1 is now the most recently updated
    middle = api.get(f"/v3/issues/{k2}").json()["updatedAt"]

    assert keys_of(search(api, {"filter": {"assignee": "tracker-admin"}})) == [k1]
    assert keys_of(search(api, {"filter": {"status": ["open", "closed"], "queue": "OPS"}})) == [k1, k2, k3]
    assert keys_of(search(api, {"filter": {"resolution": "fixed"}})) == [k3]
    assert keys_of(search(api, {"filter": {"assignee": None}})) == [k2, k3]
    assert keys_of(search(api, {"filter": {"tags": "t"}})) == [k2]
    assert keys_of(search(api, {"filter": {"queue": "OPS", "updatedAt": {"from": middle}}})) == [k1, k2, k3]
    assert keys_of(search(api, {"filter": {"updatedAt": {"from": middle, "to": middle}}})) == [k2]
    assert keys_of(search(api, {"filter": {"queue": "OPS"}, "order": "-updatedAt"})) == [k1, k3, k2]
    assert keys_of(search(api, {"filter": {"queue": "OPS"}, "order": ["+status", "-key"]})) == [k3, k2, k1]
    assert_error(search(api, {"filter": {"bogus": 1}}), 422)


def test_search_query_subset(emu: TrackerEmulator, api: httpx.Client) -> None:
    k1 = emu.add_issue("OPS", "a")
    k2 = emu.add_issue("OPS", "b")
    emu.set_assignee(k1, "tracker-admin")
    stamp = datetime.strptime(api.get(f"/v3/issues/{k2}").json()["updatedAt"], "%Y-%m-%dT%H:%M:%S.%f%z")
    literal = stamp.strftime("%Y-%m-%d %H:%M:%S")
    q = f'Queue: OPS Updated: >= "{literal}" "Sort By": Updated DESC'
    assert keys_of(search(api, {"query": q})) == [k1, k2]
    q = f'Queue: OPS AND Updated: > "{literal}" "Sort By": Updated ASC'
    assert keys_of(search(api, {"query": q})) == [k1]
    assert keys_of(search(api, {"query": "Queue: OPS Assignee: empty()"})) == [k2]
    assert_error(search(api, {"query": "Queue: OPS Priority: changed(to: high)"}), 400)
    # Forms of the real language the emulator does not evaluate are refused, never answered with
    # an empty list that looks real.
    for unsupported in ("Queue: OPS Status: !closed", "Queue: OPS Status: open, inProgress",
                        "Queue: OPS Key: >OPS-1", "Queue: OPS Assignee: me()", "Queue: OPS Status: ~clos"):
        assert_error(search(api, {"query": unsupported}), 400)
    assert keys_of(search(api, {"query": 'Queue: OPS Status: "open"'})) == [k1, k2]


def test_search_pages_with_totals_link_next_and_seek(emu: TrackerEmulator, api: httpx.Client) -> None:
    for n in range(7):
        emu.add_issue("OPS", f"i{n}")
    first = search(api, {"queue": "OPS"}, perPage=3)
    assert keys_of(first) == ["OPS-1", "OPS-2", "OPS-3"]
    assert first.headers["X-Total-Count"] == "7" and first.headers["X-Total-Pages"] == "3"
    assert first.links["next"]["url"] == f"{BASE}/v3/issues/_search?perPage=3&page=2"
    assert first.links["seek"]["url"] == f"{BASE}/v3/issues/_search?perPage=3{{&page}}"
    second = api.post(first.links["next"]["url"], json={"queue": "OPS"})
    assert keys_of(second) == ["OPS-4", "OPS-5", "OPS-6"]
    last = search(api, {"queue": "OPS"}, perPage=3, page=3)
    assert keys_of(last) == ["OPS-7"] and "next" not in last.links and "seek" in last.links
    default = search(api, {"queue": "OPS"})
    assert len(default.json()) == 7 and default.headers["X-Total-Pages"] == "1"
    assert_error(search(api, {"queue": "OPS"}, perPage="x"), 400)


def test_search_pages_are_recomputed(emu: TrackerEmulator, api: httpx.Client) -> None:
    for n in range(4):
        emu.add_issue("OPS", f"i{n}")
    body = {"filter": {"queue": "OPS"}, "order": "+updatedAt"}
    assert keys_of(search(api, body, perPage=2)) == ["OPS-1", "OPS-2"]
    emu.set_assignee("OPS-1", "tracker-admin")  # moves to the end between the two page requests
    assert keys_of(search(api, body, perPage=2, page=2)) == ["OPS-4", "OPS-1"]


def test_scroll_is_fixed_at_the_first_request(emu: TrackerEmulator, api: httpx.Client) -> None:
    for n in range(5):
        emu.add_issue("OPS", f"i{n}")
    assert_error(search(api, {"queue": "OPS"}, scrollType="sorted"), 400)
    first = search(api, {"filter": {"queue": "OPS"}}, scrollType="sorted", perScroll=2)
    assert keys_of(first) == ["OPS-1", "OPS-2"] and first.headers["X-Total-Count"] == "5"
    scroll_id = first.headers["X-Scroll-Id"]
    emu.add_issue("OPS", "late")
    second = search(api, {"filter": {"queue": "OPS"}}, scrollId=scroll_id)
    third = search(api, {"filter": {"queue": "OPS"}}, scrollId=scroll_id)
    assert keys_of(second) == ["OPS-3", "OPS-4"] and keys_of(third) == ["OPS-5"]
    assert "X-Scroll-Id" not in third.headers


class Ticker:
    """A monotonic clock for scroll lifetimes, moved by hand."""

    def __init__(self) -> None:
        self.at = 1000.0

    def __call__(self) -> float:
        return self.at


def test_page_pagination_stops_at_row_10000(emu: TrackerEmulator, api: httpx.Client) -> None:
    emu.add_issues("OPS", (f"i{n}" for n in range(10_050)))
    last = search(api, {"queue": "OPS"}, perPage=100, page=100)
    assert keys_of(last)[-1] == "OPS-10000"
    # The totals stop at the limit (yandex_tracker_client#13): nothing says rows are missing.
    assert last.headers["X-Total-Count"] == "10000" and last.headers["X-Total-Pages"] == "100"
    assert "next" not in last.links
    refused = assert_error(search(api, {"queue": "OPS"}, perPage=100, page=101), 400)
    assert refused["errorMessages"] == ["Request exceeds 10000 items limit"]
    assert_error(search(api, {"filter": {"queue": "OPS"}}, perPage=1000, page=11), 400)
    assert keys_of(search(api, {"filter": {"queue": "OPS"}}, perPage=1000, page=10))[-1] == "OPS-10000"
    assert api.post("/v3/issues/_count", json={"filter": {"queue": "OPS"}}).json() == 10_050
    # Other paged listings are not limited.
    assert search(api, {"queue": "OPS"}, perPage=100, page=2).status_code == 200


def test_paged_limit_knobs(emu: TrackerEmulator, api: httpx.Client) -> None:
    emu.add_issues("OPS", (f"i{n}" for n in range(12)))
    emu.paged_limit = 10
    assert keys_of(search(api, {"queue": "OPS"}, perPage=5, page=2))[-1] == "OPS-10"
    assert search(api, {"queue": "OPS"}, perPage=5).headers["X-Total-Count"] == "10"
    assert_error(search(api, {"queue": "OPS"}, perPage=5, page=3), 400)
    assert_error(search(api, {"queue": "OPS"}, perPage=11), 400)  # one page past the limit too
    emu.paged_limit_status, emu.paged_totals_capped = 422, False
    assert search(api, {"queue": "OPS"}, perPage=5).headers["X-Total-Count"] == "12"
    assert_error(search(api, {"queue": "OPS"}, perPage=5, page=3), 422)


def test_scroll_pages_ids_tokens_links_and_release(emu: TrackerEmulator, api: httpx.Client) -> None:
    emu.add_issues("OPS", (f"i{n}" for n in range(5)))
    body = {"filter": {"queue": "OPS"}}
    first = search(api, body, scrollType="sorted", perScroll=2, scrollTTLMillis=10_000)
    assert keys_of(first) == ["OPS-1", "OPS-2"] and first.headers["X-Total-Count"] == "5"
    one, token = first.headers["X-Scroll-Id"], first.headers["X-Scroll-Token"]
    assert first.links["next"]["url"] == f"{BASE}/v3/issues/_search?scrollTTLMillis=10000&scrollId={one}"
    assert "scrollType=sorted" in first.links["first"]["url"]
    second = api.post(first.links["next"]["url"], json=body)
    assert keys_of(second) == ["OPS-3", "OPS-4"]
    two = second.headers["X-Scroll-Id"]
    assert two != one and second.headers["X-Scroll-Token"] == token and emu.open_scrolls == 1
    # Every page id leads to the scroll's one cursor: an id sent again gets the page after.
    assert keys_of(search(api, body, scrollId=one)) == ["OPS-5"]
    assert emu.open_scrolls == 0  # the last page released it
    assert_error(search(api, body, scrollId=two), 404)
    # A scroll left half-read stays open until it is released (any of its page ids will do).
    left = search(api, body, scrollType="unsorted", perScroll=2)
    assert emu.open_scrolls == 1
    released = api.post("/v3/system/search/scroll/_clear",
                        json={left.headers["X-Scroll-Id"]: left.headers["X-Scroll-Token"], "gone": "x"})
    assert released.status_code == 200 and emu.open_scrolls == 0
    assert api.post("/v2/system/search/scroll/_clear", json={"gone": "x"}).status_code == 200
    assert emu.writes() == []  # searching and releasing change no data


def test_unsorted_scroll_has_every_issue_in_no_particular_order(emu: TrackerEmulator, api: httpx.Client) -> None:
    keys = emu.add_issues("OPS", (f"i{n}" for n in range(30)))
    seen: list[str] = []
    response = search(api, {"query": "Queue: OPS"}, scrollType="unsorted", perScroll=7)
    while True:
        seen += keys_of(response)
        if "X-Scroll-Id" not in response.headers:
            break
        response = search(api, {"query": "Queue: OPS"}, scrollId=response.headers["X-Scroll-Id"])
    assert sorted(seen) == sorted(keys) and seen != keys
    assert_error(search(api, {"filter": {"queue": "OPS"}}, scrollType="sorted", perScroll=1001), 400)
    assert_error(search(api, {"filter": {"queue": "OPS"}}, scrollType="random"), 400)
    assert_error(search(api, {"keys": ["OPS-1"]}, scrollType="sorted"), 400)


def test_scrolls_expire_after_their_ttl_and_are_capped(emu: TrackerEmulator, api: httpx.Client) -> None:
    emu.clock = ticker = Ticker()
    emu.add_issues("OPS", (f"i{n}" for n in range(6)))
    body = {"filter": {"queue": "OPS"}}
    first = search(api, body, scrollType="sorted", perScroll=2)  # the default TTL: 60 s
    ticker.at += 59
    second = search(api, body, scrollId=first.headers["X-Scroll-Id"], scrollTTLMillis=5000)  # renewed, 5 s
    ticker.at += 5
    gone = assert_error(search(api, body, scrollId=second.headers["X-Scroll-Id"]), 404)
    assert "expired" in gone["errorMessages"][0] and emu.open_scrolls == 0
    emu.scroll_gone_status = 410
    assert_error(search(api, body, scrollId="never-was"), 410)
    emu.max_open_scrolls = 2
    for _ in range(2):
        search(api, body, scrollType="sorted", perScroll=2)
    assert_error(search(api, body, scrollType="sorted", perScroll=2), 429)
    ticker.at += 61  # both expire: room again
    assert search(api, body, scrollType="sorted", perScroll=2).status_code == 200
    assert emu.open_scrolls == 1


def test_count_answers_a_bare_integer(emu: TrackerEmulator, api: httpx.Client) -> None:
    emu.add_issue("OPS", "a")
    emu.add_issue("OPS", "b")
    assert api.post("/v3/issues/_count", json={"filter": {"queue": "OPS"}}).json() == 2


# -- create ---------------------------------------------------------------------------------------


def test_create_201_and_unique_409_without_duplicate(emu: TrackerEmulator, api: httpx.Client) -> None:
    body = {
        "queue": "OPS",
        "summary": "From Sentry",
        "unique": "sentry-acme-1",
        "followers": ["tracker-admin"],
        "type": {"key": "bug"},
    }
    created = api.post("/v3/issues/", json=body)
    assert created.status_code == 201
    doc = created.json()
    assert (doc["key"], doc["version"], doc["status"]["key"], doc["type"]["key"]) == (
        "OPS-1",
        1,
        "open",
        "bug",
    )
    assert followers(doc) == [emu.admin_uid] and doc["createdBy"]["id"] == emu.robot_uid
    again = api.post("/v3/issues", json={**body, "summary": "retry"})
    assert_error(again, 409)
    assert emu.issue_keys() == ["OPS-1"]
    found = api.post("/v3/issues/_findByUnique", params={"unique": "sentry-acme-1"})
    assert found.status_code == 200 and found.json()["key"] == "OPS-1"
    assert_error(api.post("/v2/issues/_findByUnique", params={"unique": "other"}), 404)


@pytest.mark.parametrize(
    "body",
    [
        {"queue": "OPS"},
        {"summary": "x"},
        {"queue": "NOPE", "summary": "x"},
        {"queue": "OPS", "summary": "x", "assignee": "nobody"},
        {"queue": "OPS", "summary": "x", "status": "closed"},
    ],
)
def test_invalid_create_is_422_and_creates_nothing(
    emu: TrackerEmulator, api: httpx.Client, body: dict[str, Any]
) -> None:
    assert_error(api.post("/v3/issues/", json=body), 422)
    assert emu.issue_keys() == []


def test_trigger_knob_bumps_the_version_after_the_create_answer(
    emu: TrackerEmulator, api: httpx.Client
) -> None:
    emu.trigger_tag = "triaged"
    created = api.post("/v3/issues/", json={"queue": "OPS", "summary": "x"}).json()
    assert created["version"] == 1
    now = api.get(f"/v3/issues/{created['key']}").json()
    assert now["version"] == 2 and now["tags"] == ["triaged"]


# -- comments -------------------------------------------------------------------------------------


def test_comment_adds_author_to_followers_unless_told_not_to(emu: TrackerEmulator, api: httpx.Client) -> None:
    key = emu.add_issue("OPS", "x")
    quiet = api.post(
        f"/v3/issues/{key}/comments", params={"isAddToFollowers": "false"}, json={"text": "audit"}
    )
    assert quiet.status_code == 201
    c = quiet.json()
    assert isinstance(c["id"], int) and c["longId"] and c["version"] == 1 and c["text"] == "audit"
    doc = api.get(f"/v3/issues/{key}").json()
    assert "followers" not in doc and doc["version"] == 1
    api.post(f"/v3/issues/{key}/comments", json={"text": "loud"})
    doc = api.get(f"/v3/issues/{key}").json()
    assert followers(doc) == [emu.robot_uid] and doc["version"] == 2
    types = [e["type"] for e in api.get(f"/v3/issues/{key}/changelog").json()]
    assert types == ["IssueCreated", "IssueCommentAdded", "IssueCommentAdded"]
    assert_error(api.post(f"/v3/issues/{key}/comments", json={}), 422)


# -- users and reference data ---------------------------------------------------------------------


def test_users_myself_and_lookup(emu: TrackerEmulator, api: httpx.Client) -> None:
    for n in range(3):
        emu.add_user(f"user{n}", f"user{n}@example.com")
    me = api.get("/v2/myself").json()
    assert me["login"] == "bridge-robot" and str(me["uid"]) == emu.robot_uid
    assert me["uid"] == me["trackerUid"] == me["passportUid"]
    page = api.get("/v2/users", params={"perPage": 2})
    assert len(page.json()) == 2 and page.headers["X-Total-Count"] == "5" and "next" in page.links
    assert api.get("/v2/users/user1").json()["email"] == "user1@example.com"
    assert api.get(f"/v2/users/{emu.uid_of('user1')}").json()["login"] == "user1"
    assert_error(api.get("/v2/users/nobody"), 404)


def test_reference_data(api: httpx.Client) -> None:
    resolutions = {r["key"]: r["id"] for r in api.get("/v2/resolutions").json()}
    assert resolutions["fixed"] == 1 and resolutions["wontFix"] == 2
    queue = api.get("/v2/queues/OPS", params={"expand": "all"}).json()
    assert queue["key"] == "OPS" and queue["workflows"] and queue["issueTypesConfig"][0]["resolutions"]
    assert "workflows" not in api.get("/v2/queues/OPS").json()
    fields = {f["id"]: f["schema"]["type"] for f in api.get("/v2/fields/").json()}
    assert fields["followers"] == "array" and fields["tags"] == "array" and fields["assignee"] == "user"
    assert api.get("/v2/applications").json() == []


# -- faults and rate limits -----------------------------------------------------------------------


def test_fault_responses_have_the_tracker_error_shape(emu: TrackerEmulator, api: httpx.Client) -> None:
    emu.inject("status", status=503, path="/myself")
    assert_error(api.get("/v2/myself"), 503)
    assert api.get("/v2/myself").status_code == 200


@pytest.mark.parametrize("retry_after", [True, False])
def test_rate_limit_per_token_in_one_second_windows(retry_after: bool) -> None:
    emu = TrackerEmulator(rate_limit_per_second=2, retry_after_on_429=retry_after)
    now = [100.2]
    emu.clock = lambda: now[0]
    with http(emu) as api:
        assert api.get("/v2/myself").status_code == 200
        assert api.get("/v2/myself").status_code == 200
        limited = api.get("/v2/myself")
        assert_error(limited, 429)
        assert ("Retry-After" in limited.headers) is retry_after
        if retry_after:
            assert limited.headers["Retry-After"] == "1"
        now[0] = 101.0
        assert api.get("/v2/myself").status_code == 200


# -- the people API -------------------------------------------------------------------------------


def test_people_api_jumps_statuses_and_validates(emu: TrackerEmulator, api: httpx.Client) -> None:
    key = emu.add_issue("OPS", "x")
    emu.set_status(key, "closed", resolution="fixed", by="tracker-admin")  # no transition needed
    doc = api.get(f"/v3/issues/{key}").json()
    assert (doc["status"]["key"], doc["resolution"]["key"], doc["version"]) == ("closed", "fixed", 2)
    assert doc["updatedBy"]["id"] == emu.admin_uid
    with pytest.raises(ValueError, match="resolution"):
        emu.add_issue("OPS", "y", status="resolved")
    with pytest.raises(ValueError):
        emu.set_assignee(key, "nobody")
    emu.add_follower(key, "bridge-robot")
    emu.add_follower(key, "bridge-robot")  # no change, no version
    assert api.get(f"/v3/issues/{key}").json()["version"] == 3
    emu.remove_follower(key, "bridge-robot")
    assert emu.issue_json(key)["version"] == 4 and "followers" not in emu.issue_json(key)
    emu.set_fields(key, {"tags": {"add": ["x"]}})
    assert emu.issue_json(key, BASE)["tags"] == ["x"]
    assert emu.issue_json(key, BASE) == api.get(f"/v3/issues/{key}").json()
