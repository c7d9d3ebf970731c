"""Issue 15, item 1 (`push setup`) and item 4's Tracker half: the queue trigger that sends hook
hints, made and kept by the real command line against the Tracker emulator on loopback, and the
emulator's triggers firing on a person's change, so that a hint reaches a real receiver.

The trigger is remembered by id in the state file (the API documents no listing); a run against
a trigger that is as wanted writes nothing remote."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

from bridge.clients.http import RetryPolicy
from bridge.clients.tracker import TrackerClient
from bridge.push.hints import HintBox
from bridge.push.receiver import HookReceiver
from bridge.push.setup import TRIGGER_NAME, Remembered
from bridge.push.verify import Hint
from bridge.sandbox.tracker_emulator import DEFAULT_TOKEN, ROBOT_LOGIN
from bridge.store import Store
from tests.test_daemon import wait_for

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv

SECRET = "trigger-shared-secret-4f1c9a"  # noqa: S105 - a test value
PUBLIC = "https://bridge.example.com"
ADMIN = {"READ": "users", "WRITE": "users", "CREATE": "users", "GRANT": "users"}


@pytest.fixture
def env(bridge_env: BridgeEnv) -> BridgeEnv:
    """The harness with push configured and the robot a queue admin (GRANT)."""
    bridge_env.config(push={"public_url": PUBLIC, "tracker_secret": SECRET})
    bridge_env.tracker.set_rights("OPS", ROBOT_LOGIN, ADMIN)
    return bridge_env


def trigger_writes(env: BridgeEnv) -> list[tuple[str, str, list[tuple[str, str]]]]:
    return [(r.method, r.path, r.query) for r in env.tracker.writes() if "/triggers" in r.path]


def remembered(env: BridgeEnv, queue: str = "OPS") -> Remembered | None:
    store = Store.open_read_only(env.state_path)
    try:
        return Remembered.parse(store.cursor(f"push.trigger.{queue}"))
    finally:
        store.close()


def the_trigger(env: BridgeEnv, queue: str = "OPS") -> dict[str, Any]:
    found = env.tracker.triggers(queue)
    assert len(found) == 1, found
    return found[0]


def no_secret(*texts: str) -> None:
    for text in texts:
        assert SECRET not in text


# -- setup through the CLI ------------------------------------------------------------------------


def test_setup_creates_one_trigger_aimed_at_the_receiver(env: BridgeEnv) -> None:
    result = env.expect(0, "push", "setup")
    trigger = the_trigger(env)
    assert trigger["name"] == TRIGGER_NAME and trigger["active"] is True and trigger["version"] == 1
    assert trigger["conditions"] == [{"type": "Event.update"}]
    [action] = trigger["actions"]
    assert action["type"] == "Webhook" and action["method"] == "POST"
    assert action["endpoint"] == f"{PUBLIC}/hooks/tracker"
    assert action["headers"] == {"X-Bridge-Secret": SECRET}
    assert action["contentType"] == "application/json" and action["authContext"] == {"type": "noauth"}
    assert json.loads(action["body"]) == {"key": "{{issue.key}}", "updatedAt": "{{issue.updatedAt.iso8601}}"}
    assert [(m, p) for m, p, _ in trigger_writes(env)] == [("POST", "/v3/queues/OPS/triggers")]
    kept = remembered(env)
    assert kept is not None and kept.trigger_id == str(trigger["id"])
    assert f"created trigger {trigger['id']}" in result.out
    no_secret(result.out, result.err, env.state_path.read_bytes().decode("latin-1"))


def test_a_second_run_changes_nothing(env: BridgeEnv) -> None:
    env.expect(0, "push", "setup")
    env.tracker.clear_log()
    result = env.expect(0, "push", "setup", "--json")
    assert trigger_writes(env) == [] and env.tracker.writes() == []
    assert the_trigger(env)["version"] == 1
    [step] = json.loads(result.out)["queues"]
    assert step["action"] == "none" and step["changes"] == [] and step["done"] is True
    assert json.loads(result.out)["trigger"]["actions"][0]["headers"] == {"X-Bridge-Secret": "***"}


def test_a_changed_public_url_or_secret_is_patched_with_the_version(env: BridgeEnv) -> None:
    env.expect(0, "push", "setup")
    trigger_id = str(the_trigger(env)["id"])
    env.tracker.clear_log()
    env.config(push={"public_url": "https://hooks.example.org/bridge/"})
    moved = env.expect(0, "push", "setup")
    assert trigger_writes(env) == [("PATCH", f"/v3/queues/OPS/triggers/{trigger_id}", [("version", "1")])]
    assert the_trigger(env)["actions"][0]["endpoint"] == "https://hooks.example.org/bridge/hooks/tracker"
    assert "updated trigger" in moved.out and "endpoint" in moved.out
    env.tracker.clear_log()
    env.config(push={"tracker_secret": "a-new-shared-secret"})
    rotated = env.expect(0, "push", "setup")
    assert trigger_writes(env) == [("PATCH", f"/v3/queues/OPS/triggers/{trigger_id}", [("version", "2")])]
    trigger = the_trigger(env)
    assert trigger["version"] == 3 and trigger["actions"][0]["headers"] == {"X-Bridge-Secret": "a-new-shared-secret"}
    assert "X-Bridge-Secret" in rotated.out and "a-new-shared-secret" not in rotated.out + rotated.err
    assert len(env.tracker.triggers()) == 1


def test_a_trigger_edited_by_an_admin_is_put_back(env: BridgeEnv) -> None:
    """Whatever an admin changed on it (here: switched off, another condition), the next run
    puts it back as wanted, with the version it has now."""
    env.expect(0, "push", "setup")
    trigger_id = str(the_trigger(env)["id"])
    env.tracker.edit_trigger("OPS", trigger_id, active=False)  # an admin, in the UI
    env.tracker.edit_trigger("OPS", trigger_id, conditions=[{"type": "Event.create"}])
    env.tracker.clear_log()
    result = env.expect(0, "push", "setup")
    assert trigger_writes(env) == [("PATCH", f"/v3/queues/OPS/triggers/{trigger_id}", [("version", "3")])]
    assert "active, conditions" in result.out
    again = the_trigger(env)
    assert again["active"] is True and again["conditions"] == [{"type": "Event.update"}]


def test_a_trigger_deleted_by_an_admin_is_created_again(env: BridgeEnv) -> None:
    env.expect(0, "push", "setup")
    first = str(the_trigger(env)["id"])
    env.tracker.delete_trigger("OPS", first)
    env.tracker.clear_log()
    result = env.expect(0, "push", "setup")
    second = str(the_trigger(env)["id"])
    assert second != first
    assert [(m, p) for m, p, _ in trigger_writes(env)] == [("POST", "/v3/queues/OPS/triggers")]
    kept = remembered(env)
    assert kept is not None and kept.trigger_id == second
    assert f"trigger {first} is gone" in result.out and f"created trigger {second}" in result.out


def test_a_dry_run_writes_nothing(env: BridgeEnv) -> None:
    result = env.expect(0, "push", "setup", "--dry-run")
    assert "would create a trigger" in result.out and "nothing written" in result.out
    assert '"X-Bridge-Secret": "***"' in result.out
    assert env.tracker.writes() == [] and env.tracker.triggers() == []
    assert not env.state_path.exists()  # not even a state file
    no_secret(result.out, result.err)
    env.expect(0, "push", "setup")
    env.config(push={"public_url": "https://elsewhere.example.com"})
    env.tracker.clear_log()
    before = env.state_path.read_bytes()
    planned = json.loads(env.expect(0, "push", "setup", "--dry-run", "--json").out)
    assert planned["dry_run"] is True
    assert [(s["action"], s["changes"], s["done"]) for s in planned["queues"]] == [("update", ["endpoint"], False)]
    assert env.tracker.writes() == [] and the_trigger(env)["actions"][0]["endpoint"] == f"{PUBLIC}/hooks/tracker"
    assert env.state_path.read_bytes() == before


def test_without_queue_admin_rights_it_is_exit_3_and_says_so(env: BridgeEnv) -> None:
    env.tracker.set_rights("OPS", ROBOT_LOGIN, {"READ": "users", "WRITE": "users", "CREATE": "users"})
    result = env.expect(3, "push", "setup")
    assert "queue administration rights" in result.err and "queue OPS" in result.err
    assert "Traceback" not in result.err and env.tracker.triggers() == []
    assert remembered(env) is None
    no_secret(result.out, result.err)


def test_missing_public_url_and_secret_are_exit_2_naming_both_keys(env: BridgeEnv) -> None:
    env.config(push={"public_url": None, "tracker_secret": None})
    result = env.expect(2, "push", "setup")
    assert "push.public_url: missing" in result.err and "push.tracker_secret: missing" in result.err
    assert env.tracker.requests() == [] and not env.state_path.exists()
    env.config(push={"public_url": PUBLIC, "tracker_secret_file": "nowhere.secret"})
    unreadable = env.expect(2, "push", "setup", "--dry-run")
    assert "push.tracker_secret_file: cannot read" in unreadable.err and "push.public_url" not in unreadable.err


def test_every_route_queue_gets_its_own_trigger(env: BridgeEnv) -> None:
    env.tracker.add_queue("WEB")
    env.tracker.set_rights("WEB", ROBOT_LOGIN, ADMIN)
    env.config(sentry={"projects": ["backend", "web"]}, create={"routes": {"web": "WEB"}})
    result = env.expect(0, "push", "setup")
    assert len(env.tracker.triggers("OPS")) == 1 and len(env.tracker.triggers("WEB")) == 1
    assert result.out.index("OPS:") < result.out.index("WEB:")
    web = remembered(env, "WEB")
    assert web is not None and web.trigger_id == str(the_trigger(env, "WEB")["id"])


def test_a_version_conflict_is_read_again_and_retried_once(env: BridgeEnv) -> None:
    env.expect(0, "push", "setup")
    env.config(push={"public_url": "https://moved.example.com"})
    env.tracker.clear_log()
    env.tracker.inject("status", status=409, method="PATCH", path="/triggers/")
    env.expect(0, "push", "setup")
    patches = [w for w in trigger_writes(env) if w[0] == "PATCH"]
    assert len(patches) == 2 and the_trigger(env)["actions"][0]["endpoint"] == "https://moved.example.com/hooks/tracker"


def test_a_create_with_a_lost_answer_is_not_repeated_and_says_what_to_check(env: BridgeEnv) -> None:
    env.tracker.inject("status", status=503, method="POST", path="/triggers")
    result = env.run("push", "setup")
    assert result.code in (1, 3), result
    assert len(trigger_writes(env)) == 1  # never retried: a repeat could make a second trigger
    assert "may have been created" in result.err and TRIGGER_NAME in result.err
    assert remembered(env) is None


def test_hidden_header_values_still_leave_a_second_run_without_writes(env: BridgeEnv) -> None:
    """If the answers hide header values (as the UI does for hidden variables), the state file's
    mark of the secret tells whether the trigger still carries the current one."""
    env.tracker.trigger_headers_hidden = True
    env.expect(0, "push", "setup")
    env.tracker.clear_log()
    env.expect(0, "push", "setup")
    assert trigger_writes(env) == []
    env.config(push={"tracker_secret": "rotated-secret-value"})
    env.expect(0, "push", "setup")
    assert [w[0] for w in trigger_writes(env)] == ["PATCH"]
    assert the_trigger(env)["actions"][0]["headers"] == {"X-Bridge-Secret": "rotated-secret-value"}


def test_a_normalised_answer_counts_as_unchanged(env: BridgeEnv) -> None:
    """The server may answer with its own forms: conditions wrapped in an Or group, the body as
    an object, ids on actions, extra condition parameters.  None of it is a difference."""
    env.expect(0, "push", "setup")

    def normalise(answer: dict[str, Any]) -> dict[str, Any]:
        answer["conditions"] = [{"type": "Or", "conditions": [{"type": "Event.update", "ignoreCase": True}]}]
        answer["actions"][0]["body"] = json.loads(answer["actions"][0]["body"])
        answer["actions"][0]["contentType"] = "application/json"
        return answer

    env.tracker.inject("mangle", method="GET", path="/triggers/", mangle=normalise)
    env.tracker.clear_log()
    env.expect(0, "push", "setup")
    assert trigger_writes(env) == []


def test_the_secret_is_never_printed_or_logged(env: BridgeEnv, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    runs = [env.run("-vv", "push", "setup", "--dry-run"), env.run("-vv", "push", "setup"),
            env.run("-vv", "push", "setup", "--json")]
    env.tracker.inject("status", status=422, method="PATCH", path="/triggers/",
                       body=json.dumps({"errors": {}, "errorMessages": [f"bad header {SECRET}"],
                                        "statusCode": 422}).encode())
    env.config(push={"public_url": "https://other.example.com"})
    refused = env.run("-vv", "push", "setup")
    assert refused.code == 1 and "bad header ***" in refused.err
    # An answer the client cannot use carries the trigger (and the secret) in its excerpt.
    env.tracker.clear_faults()
    env.tracker.inject("mangle", method="GET", path="/triggers/",
                       mangle=lambda d: {"actions": [{"headers": d["actions"][0]["headers"]}], "id": d["id"],
                                         "version": "two"})
    unusable = env.run("-vv", "push", "setup")
    assert unusable.code == 1 and "version is not an integer" in unusable.err and "***" in unusable.err
    for result in [*runs, refused, unusable]:
        no_secret(result.out, result.err)
    no_secret(caplog.text, env.state_path.read_bytes().decode("latin-1"))


# -- the emulator fires: a person's change reaches the receiver ------------------------------------


@pytest.fixture
def receiver() -> Iterator[HookReceiver]:
    hooks = HookReceiver(("127.0.0.1", 0), HintBox(), sentry_secret=None, tracker_secret=SECRET)
    hooks.start()
    yield hooks
    hooks.close()


def test_a_persons_status_change_delivers_a_hint_with_the_key_and_secret(env: BridgeEnv,
                                                                          receiver: HookReceiver) -> None:
    host, port = receiver.address
    env.config(push={"public_url": f"http://{host}:{port}"})
    key = env.tracker.add_issue("OPS", "A ticket")
    env.expect(0, "push", "setup")
    started = time.monotonic()
    env.tracker.set_status(key, "inProgress", by="bob")
    hint = wait_for("the hint", lambda: receiver.hints.drain(), timeout=5)
    assert hint == {Hint("tracker", key)} and time.monotonic() - started < 2
    assert receiver.counters.get("tracker", "queued") == 1 and receiver.counters.get("tracker", "401") == 0
    assert env.tracker.wait_for_deliveries()
    [entry] = env.tracker.deliveries()
    assert entry["response"]["status"] == 202 and entry["error"] is None
    sent = json.loads(entry["request"]["body"])
    assert sent["key"] == key and sent["updatedAt"].endswith("Z") and "T" in sent["updatedAt"]
    # The delivery log, as the API serves it to the bridge's client (doctor's future check).
    client = TrackerClient.create(env.tracker_url, DEFAULT_TOKEN, org_id="1234567", policy=RetryPolicy(waits=False))
    try:
        [logged] = client.trigger_deliveries("OPS", str(the_trigger(env)["id"]))
    finally:
        client.close()
    assert logged["issue"]["key"] == key and logged["response"]["status"] == 202


def test_a_wrong_secret_in_the_trigger_is_refused_by_the_receiver(env: BridgeEnv, receiver: HookReceiver) -> None:
    host, port = receiver.address
    env.config(push={"public_url": f"http://{host}:{port}", "tracker_secret": "not-what-the-receiver-has"})
    key = env.tracker.add_issue("OPS", "A ticket")
    env.expect(0, "push", "setup")
    env.tracker.set_assignee(key, "alice", by="bob")
    assert env.tracker.wait_for_deliveries()
    [entry] = env.tracker.deliveries()
    assert entry["response"]["status"] == 401 and len(receiver.hints) == 0


def test_a_create_that_lands_with_its_answer_lost_is_said_not_repeated(env: BridgeEnv) -> None:
    """Applied, answer lost (design section 9): the trigger exists on the server, nothing is
    remembered, and the operator is told to look for it; no second create is sent."""
    env.config(tracker={"timeout_seconds": 0.5})
    env.tracker.inject("timeout_after", method="POST", path="/triggers", times=1)
    result = env.run("push", "setup")
    assert result.code != 0 and "may have been created" in result.err and TRIGGER_NAME in result.err
    assert len(trigger_writes(env)) == 1 and len(env.tracker.triggers("OPS")) == 1
    assert remembered(env) is None
