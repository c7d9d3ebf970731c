"""Issue 15: `doctor` checks that hooks arrive: the receiver answers, the public URL leads to it,
Tracker's trigger exists, aims at us and its delivery log shows 2xx answers, and the running
daemon's counters show hooks queued and none refused.  Through the CLI against the emulators and
a real `run`."""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from bridge.push.checks import delivery_status, log_verdict
from bridge.sandbox.tracker_emulator import ROBOT_LOGIN
from tests.test_daemon import Service, free_ports, wait_for
from tests.test_push import SENTRY_SECRET, TRACKER_SECRET, issue_hook, signed

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv

ADMIN = {"READ": "users", "WRITE": "users", "CREATE": "users", "GRANT": "users"}


def push_checks(env: BridgeEnv) -> dict[str, dict[str, Any]]:
    checks = json.loads(env.run("doctor", "--json").out)["checks"]
    return {c["name"]: c for c in checks if c["name"].startswith("push: ")}


@pytest.fixture
def pushed(bridge_env: BridgeEnv) -> tuple[BridgeEnv, int, int]:
    env = bridge_env
    port, metrics_port = free_ports(2)
    env.config(metrics={"listen": f"127.0.0.1:{metrics_port}"},
               push={"enabled": True, "listen": f"127.0.0.1:{port}", "public_url": f"http://127.0.0.1:{port}",
                     "sentry_secret": SENTRY_SECRET, "tracker_secret": TRACKER_SECRET, "min_gap_seconds": 0.2},
               sync={"interval_seconds": 300})
    env.tracker.set_rights("OPS", ROBOT_LOGIN, ADMIN)
    return env, port, metrics_port


def test_no_push_checks_when_push_is_off(bridge_env: BridgeEnv) -> None:
    assert push_checks(bridge_env) == {}


def test_with_the_service_down_and_no_trigger_doctor_says_what_is_missing(pushed: tuple[BridgeEnv, int, int]) -> None:
    env, port, _ = pushed
    checks = push_checks(env)
    assert checks["push: receiver"]["level"] == "warn" and "no answer" in checks["push: receiver"]["detail"]
    assert checks["push: Tracker trigger OPS"]["level"] == "warn"
    assert "push setup" in checks["push: Tracker trigger OPS"]["advice"]
    assert checks["push: hooks received"]["level"] == "warn"  # /metrics does not answer
    assert env.tracker.writes() == [] and env.sentry.writes() == []


def test_a_working_setup_passes_every_push_check(pushed: tuple[BridgeEnv, int, int],
                                                  request: pytest.FixtureRequest) -> None:
    env, port, metrics_port = pushed
    sid, key = env.pair()
    env.link((sid, key))
    env.expect(0, "push", "setup")
    env.sentry.subscribe_webhooks(f"http://127.0.0.1:{port}/hooks/sentry", SENTRY_SECRET)
    svc = Service(env)
    request.addfinalizer(svc.close)
    wait_for("the receiver", lambda: svc.logs("push.listening") and svc.cycles())
    env.tracker.set_status(key, "inProgress", by="bob")  # the trigger fires
    wait_for("a delivery", lambda: any(d for t in env.tracker._triggers.values() for d in t.deliveries), timeout=10)
    checks = push_checks(env)
    assert checks["push: hooks received"]["level"] == "warn"  # Sentry's hooks: none arrived yet
    assert "no Sentry hook has arrived" in checks["push: hooks received"]["detail"]
    env.sentry.assign(sid, "alice@example.com", by="alice@example.com")  # Sentry sends its hook
    wait_for("the Sentry hook", lambda: env.sentry.hook_deliveries, timeout=10)
    wait_for("the assignment in Tracker", lambda: env.t_assignee(key) == "alice", timeout=10)
    # The trigger fires on the bridge's own write too: its cycle finds nothing to do.
    wait_for("the daemon settled", lambda: svc.cycles()[-1]["writes_tracker"] == 0, timeout=10)
    env.tracker.clear_log()
    checks = push_checks(env)
    for name in ("push: receiver", "push: public URL", "push: Tracker trigger OPS", "push: hooks received"):
        assert checks[name]["level"] == "pass", checks[name]
    assert re.search(r"the latest \d+ deliveries were answered 2xx", checks["push: Tracker trigger OPS"]["detail"])
    assert "1 from sentry, " in checks["push: hooks received"]["detail"]
    assert env.tracker.writes() == []  # doctor only reads (the daemon settled before the log was cleared)
    # A refused Sentry hook (a secret out of step) is what the counters then show.
    body = issue_hook(sid)
    assert httpx.post(f"http://127.0.0.1:{port}/hooks/sentry", content=body,
                      headers=signed(body, "an-old-secret")).status_code == 401
    counted = push_checks(env)["push: hooks received"]
    assert counted["level"] == "warn" and "1 sentry" in counted["detail"], counted
    assert SENTRY_SECRET not in json.dumps(counted) and TRACKER_SECRET not in env.run("doctor").out


def test_a_deleted_trigger_and_failing_deliveries_fail(pushed: tuple[BridgeEnv, int, int]) -> None:
    env, port, _ = pushed
    key = env.pair()[1]
    env.expect(0, "push", "setup")
    env.tracker.set_status(key, "inProgress", by="bob")  # fired while nothing listens
    wait_for("the failed delivery", lambda: any(d.get("error") for t in env.tracker._triggers.values()
                                                for d in t.deliveries), timeout=10)
    failing = push_checks(env)["push: Tracker trigger OPS"]
    assert failing["level"] == "fail" and "the latest 1 deliveries all failed" in failing["detail"], failing
    trigger_id = next(iter(env.tracker._triggers))
    env.tracker.delete_trigger("OPS", trigger_id)
    gone = push_checks(env)["push: Tracker trigger OPS"]
    assert gone["level"] == "fail" and "is gone" in gone["detail"]


def test_a_public_url_that_leads_elsewhere_fails(pushed: tuple[BridgeEnv, int, int]) -> None:
    env, _, _ = pushed
    env.config(push={"public_url": env.tracker_url})  # something answers there, not the receiver
    check = push_checks(env)["push: public URL"]
    assert check["level"] == "fail" and "not the receiver's 405" in check["detail"]


@pytest.mark.parametrize(("entry", "status"), [
    ({"response": {"status": 202}}, 202), ({"statusCode": "500"}, 500), ({"httpStatus": 404}, 404),
    ({"error": "ConnectError: refused"}, "ConnectError: refused"), ({"something": "else"}, None),
])
def test_a_delivery_logs_status_is_read_from_the_shapes_seen(entry: dict[str, Any], status: Any) -> None:
    assert delivery_status(entry) == status


def test_a_log_of_unknown_shape_is_counted_not_judged() -> None:
    verdict = log_verdict("x", [{"foo": 1}, {"bar": 2}])
    assert verdict.level == "warn" and "2 deliveries logged, in a shape" in verdict.detail
    mixed = log_verdict("x", [{"status": 200}, {"status": 503}])
    assert mixed.level == "warn" and "1 of the latest 2 deliveries failed (503)" in mixed.detail
