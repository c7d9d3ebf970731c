"""The Tracker emulator's queue triggers (reference §13) over raw HTTP, and how they fire: which
changes fire them, how `{{...}}` variables render, and that sending never blocks or breaks the
emulator.  These say nothing about our own client (tests/test_push_setup.py drives that)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from bridge.sandbox.http import mock_transport
from bridge.sandbox.tracker_emulator import ADMIN_LOGIN, ROBOT_LOGIN, TrackerEmulator

BASE = "http://tracker.test"
AUTH = {"Authorization": "OAuth tracker-token", "X-Org-ID": "1234567"}
ADMIN = {"READ": "users", "WRITE": "users", "CREATE": "users", "GRANT": "users"}


class Clock:
    def __init__(self) -> None:
        self.at = datetime(2026, 12, 5, 9, 30, 15, 250000, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.at += timedelta(seconds=1)
        return self.at


@pytest.fixture
def emu() -> TrackerEmulator:
    emulator = TrackerEmulator(now=Clock())
    emulator.set_rights("OPS", ROBOT_LOGIN, ADMIN)
    return emulator


@pytest.fixture
def api(emu: TrackerEmulator) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=BASE, transport=mock_transport(emu), headers=AUTH) as client:
        yield client


def webhook(endpoint: str = "http://127.0.0.1:9/hooks", **extra: Any) -> dict[str, Any]:
    return {"type": "Webhook", "endpoint": endpoint, "method": "POST", "contentType": "application/json",
            "headers": {"X-Bridge-Secret": "s"}, "authContext": {"type": "noauth"},
            "body": '{"key": "{{issue.key}}"}', **extra}


def make(api: httpx.Client, conditions: list[Any] | None = None, **action: Any) -> dict[str, Any]:
    body = {"name": "hints", "actions": [webhook(**action)],
            "conditions": conditions if conditions is not None else [{"type": "Event.update"}]}
    answer = api.post("/v3/queues/OPS/triggers", json=body)
    assert answer.status_code == 200, answer.text
    data: dict[str, Any] = answer.json()
    return data


# -- the API --------------------------------------------------------------------------------------


def test_create_read_and_change_with_the_version(api: httpx.Client) -> None:
    made = make(api)
    assert made["version"] == 1 and made["active"] is True and made["queue"]["key"] == "OPS"
    assert made["actions"][0]["id"] == 1 and made["self"].endswith(f"/v3/queues/OPS/triggers/{made['id']}")
    path = f"/v2/queues/OPS/triggers/{made['id']}"
    assert api.get(path).json() == {**made, "self": made["self"].replace("/v3/", "/v2/"),
                                    "queue": {**made["queue"], "self": made["queue"]["self"].replace("/v3/", "/v2/")}}
    changed = api.patch(path, params={"version": 1}, json={"name": "renamed"})
    assert changed.status_code == 200 and changed.json()["version"] == 2 and changed.json()["name"] == "renamed"
    same = api.patch(path, params={"version": 2}, json={"name": "renamed"})
    assert same.json()["version"] == 2  # nothing changed: no new version
    stale = api.patch(path, params={"version": 1}, json={"active": False})
    assert stale.status_code == 409 and api.get(path).json()["active"] is True
    assert api.patch(path, json={"active": False}).status_code == 400  # the version is required
    assert api.get("/v3/queues/OPS/triggers/999").status_code == 404


def test_managing_triggers_needs_the_admin_right(emu: TrackerEmulator, api: httpx.Client) -> None:
    made = make(api)
    emu.set_rights("OPS", ROBOT_LOGIN, {"READ": "users", "WRITE": "users", "CREATE": "users"})
    assert api.post("/v3/queues/OPS/triggers", json={"name": "x", "actions": [webhook()]}).status_code == 403
    assert api.get(f"/v3/queues/OPS/triggers/{made['id']}").status_code == 403
    assert api.patch(f"/v3/queues/OPS/triggers/{made['id']}", params={"version": 1}, json={}).status_code == 403
    emu.add_token("admin-token", login=ADMIN_LOGIN)  # the queue's lead is its admin
    lead = api.get(f"/v3/queues/OPS/triggers/{made['id']}", headers={"Authorization": "OAuth admin-token"})
    assert lead.status_code == 200


@pytest.mark.parametrize("body", [
    {"actions": [webhook()]},
    {"name": "x", "actions": []},
    {"name": "x", "actions": [webhook(endpoint="ftp://x")]},
    {"name": "x", "actions": [webhook(method="PATCH")]},
    {"name": "x", "actions": [webhook(headers={"X": 1})]},
    {"name": "x", "actions": [webhook()], "conditions": [{"type": "Or"}]},
])
def test_a_malformed_trigger_is_422(api: httpx.Client, body: dict[str, Any]) -> None:
    answer = api.post("/v3/queues/OPS/triggers", json=body)
    assert answer.status_code == 422 and set(answer.json()) == {"errors", "errorMessages", "statusCode"}


def test_a_queue_holds_a_bounded_number_of_triggers(emu: TrackerEmulator, api: httpx.Client) -> None:
    emu.max_triggers_per_queue = 3
    for _ in range(3):
        make(api)
    assert api.post("/v3/queues/OPS/triggers", json={"name": "x", "actions": [webhook()]}).status_code == 422
    emu.add_queue("WEB")
    emu.set_rights("WEB", ROBOT_LOGIN, ADMIN)
    assert api.post("/v3/queues/WEB/triggers", json={"name": "x", "actions": [webhook()]}).status_code == 200
    assert api.get("/v3/queues/WEB/triggers/1").status_code == 404  # trigger 1 is OPS's


def test_the_delivery_log_is_v3_only_newest_first_and_limited(emu: TrackerEmulator, api: httpx.Client) -> None:
    emu.deliver_triggers = False
    made = make(api)
    key = emu.add_issue("OPS", "x")
    for summary in ("a", "b", "c"):
        emu.set_fields(key, {"summary": summary})
    log = api.get(f"/v3/queues/OPS/triggers/{made['id']}/webhooks/log")
    assert log.status_code == 200 and [e["id"] for e in log.json()] == [3, 2, 1]
    assert [e["id"] for e in api.get(f"/v3/queues/OPS/triggers/{made['id']}/webhooks/log",
                                     params={"limit": 2}).json()] == [3, 2]
    assert api.get(f"/v3/queues/OPS/triggers/{made['id']}/webhooks/log", params={"limit": 101}).status_code == 400
    assert api.get(f"/v2/queues/OPS/triggers/{made['id']}/webhooks/log").status_code == 404


# -- firing ---------------------------------------------------------------------------------------


def test_which_changes_fire_which_triggers(emu: TrackerEmulator, api: httpx.Client) -> None:
    emu.deliver_triggers = False
    update = make(api)["id"]
    create = make(api, [{"type": "Event.create"}])["id"]
    status = make(api, [{"type": "Or", "conditions": [{"type": "FieldChangedCondition", "field": "status"}]}])["id"]
    off = make(api)["id"]
    api.patch(f"/v3/queues/OPS/triggers/{off}", params={"version": 1}, json={"active": False})
    key = emu.add_issue("OPS", "x")  # create
    emu.set_assignee(key, "tracker-admin")  # update (assignee)
    emu.set_status(key, "inProgress")  # update (status)
    api.patch(f"/v3/issues/{key}", json={"summary": "by the robot"})  # the API, any token: update
    emu.add_comment(key, "hi", by=ADMIN_LOGIN)  # a comment that makes its author a follower: update
    fired: dict[int, list[str]] = {}
    for entry in emu.deliveries():
        fired.setdefault(entry["triggerId"], []).append(entry["issue"]["key"])
    assert len(fired[create]) == 1 and len(fired[status]) == 1
    assert len(fired[update]) == 4  # assignee, status, the robot's PATCH, the comment that added a follower
    assert off not in fired


def test_variables_render_as_documented(emu: TrackerEmulator, api: httpx.Client) -> None:
    emu.deliver_triggers = False
    body = {"key": "{{issue.key}}", "iso": "{{issue.updatedAt.iso8601}}", "plain": "{{issue.updatedAt}}",
            "epoch": "{{issue.updatedAt.unixEpoch}}", "summary": "{{issue.summary.json}}",
            "tags": "{{issue.tags.json}}", "status": "{{issue.status}}", "nothing": "{{issue.noSuchField}}"}
    make(api, body=body, headers={"X-Issue": "{{ issue.key }}"})
    key = emu.add_issue("OPS", 'Say "hi"', tags=["a", "b"])
    emu.set_status(key, "inProgress")
    [entry] = emu.deliveries()
    sent = json.loads(entry["request"]["body"])
    updated = datetime.fromisoformat(sent["iso"].replace("Z", "+00:00"))
    assert sent["key"] == key and sent["iso"].endswith("Z") and len(sent["iso"]) == 24
    assert sent["plain"] == f"{updated.day:02d} december 2026" and sent["epoch"] == str(int(updated.timestamp()))
    assert sent["summary"] == '"Say \\"hi\\""' and sent["tags"] == '["a", "b"]'
    assert sent["status"] == "In progress" and sent["nothing"] == ""
    assert entry["request"]["headers"]["X-Issue"] == key
    assert entry["request"]["headers"]["Content-Type"] == "application/json"
    assert entry["error"] == "not sent: delivery is off (deliver_triggers = False)"


def test_nothing_is_started_without_a_trigger(emu: TrackerEmulator) -> None:
    before = sum(t.name == "tracker-trigger" for t in threading.enumerate())
    key = emu.add_issue("OPS", "x")
    emu.set_status(key, "inProgress")
    assert emu._outbox is None and emu.deliveries() == []
    assert sum(t.name == "tracker-trigger" for t in threading.enumerate()) <= before  # earlier tests' may stop


class Capture(BaseHTTPRequestHandler):
    seen: list[tuple[str, dict[str, str], bytes]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        Capture.seen.append((self.path, dict(self.headers), body))
        self.send_response(204)
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        return


def test_requests_are_sent_in_the_background_with_their_headers(emu: TrackerEmulator, api: httpx.Client) -> None:
    Capture.seen = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Capture)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        make(api, endpoint=f"http://127.0.0.1:{server.server_address[1]}/hooks/tracker")
        key = emu.add_issue("OPS", "x")
        emu.set_status(key, "inProgress")
        assert emu.wait_for_deliveries(5)
    finally:
        server.shutdown()
        server.server_close()
    [(path, headers, body)] = Capture.seen
    assert path == "/hooks/tracker" and headers["X-Bridge-Secret"] == "s" and json.loads(body) == {"key": key}
    [entry] = emu.deliveries()
    assert entry["response"]["status"] == 204 and entry["durationMs"] is not None


def test_a_silent_endpoint_never_holds_up_the_emulator(emu: TrackerEmulator, api: httpx.Client) -> None:
    """An endpoint that takes the connection and never answers: the change returns at once, the
    API goes on answering, and the request ends as a timeout in the log."""
    emu.trigger_timeout = 0.3
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        make(api, endpoint=f"http://127.0.0.1:{silent.getsockname()[1]}/hooks")
        key = emu.add_issue("OPS", "x")
        started = time.monotonic()
        for status in ("inProgress", "open", "inProgress"):
            emu.set_status(key, status)
        assert api.get(f"/v3/issues/{key}").status_code == 200
        assert time.monotonic() - started < 0.2
        assert emu.wait_for_deliveries(5)
    entries = emu.deliveries()
    assert len(entries) == 3 and all("Timeout" in str(e["error"]) and e["response"] is None for e in entries)


def test_a_refused_connection_is_a_log_entry_not_an_error(emu: TrackerEmulator, api: httpx.Client) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    make(api, endpoint=f"http://127.0.0.1:{port}/hooks")
    key = emu.add_issue("OPS", "x")
    emu.set_status(key, "inProgress")
    assert emu.wait_for_deliveries(5)
    [entry] = emu.deliveries()
    assert "ConnectError" in str(entry["error"])
