"""Issue 13, items 1, 5 and 6 through the real CLI: a mapping typo never walks a ticket, network
trouble is named (timeouts, TLS, redirects, refused connections, DNS, a wrong organization), and
a transition that did not land is tried again in the same cycle."""

from __future__ import annotations

import http.server
import json
import sqlite3
import ssl
import threading
from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
import trustme

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv

EXECUTE = r"/transitions/[^/]+/_execute/?$"


def journal(env: BridgeEnv, sid: str) -> list[tuple[str, str, str, str]]:
    with sqlite3.connect(env.state_path) as db:
        return [tuple(r) for r in db.execute(
            "SELECT field, action, outcome, detail FROM journal WHERE sentry_id = ? ORDER BY id", [sid])]


# -- 1. a mapping typo never moves a ticket ----------------------------------------------------------


def test_a_status_the_tracker_lacks_is_never_walked_towards(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    sid, key = env.pair(status="resolved", substatus=None, tracker={"status": "closed", "resolution": "fixed"})
    env.link((sid, key))
    env.sync_json()
    env.config(mapping={"status": {"to_tracker": {"unresolved": "opened", "unresolved.regressed": "opened"}}})
    env.sentry.set_status(sid, "unresolved", substatus="regressed")
    result = env.expect(1, "sync", "--json")
    assert env.t_state(key) == ("closed", "fixed")  # not one step taken
    assert env.tracker.requests("POST", EXECUTE) == []
    [failure] = env.status_json()["failures"]
    expected = ('mapping.status.to_tracker.unresolved = "opened" and mapping.status.to_tracker.unresolved.regressed'
                ' = "opened": Tracker has no status "opened" (it has closed, inProgress, needInfo, open, resolved)')
    assert expected in failure["error"], failure["error"]
    assert json.loads(result.out)["failures"] == 1
    # doctor fails on it, and on a to_sentry key Tracker does not have.
    env.config(mapping={"status": {"to_sentry": {"reopened": "unresolved"}}})
    checks = {c["name"]: c for c in json.loads(env.expect(1, "doctor", "--json").out)["checks"]}
    notes = "\n".join(checks["tracker: statuses"]["notes"])
    assert checks["tracker: statuses"]["level"] == "fail"
    assert 'mapping.status.to_tracker.unresolved = "opened": Tracker has no status "opened" (it has ' in notes
    assert 'mapping.status.to_sentry.reopened: Tracker has no status "reopened"' in notes


def test_a_status_only_another_queue_has_is_never_walked_towards(bridge_env: BridgeEnv) -> None:
    """The organisation has `testing` (queue DEV), OPS does not: the queue's workflow definition
    says so before any step, instead of a walk through OPS looking for it."""
    env = bridge_env
    env.tracker.add_queue("DEV", workflow={"statuses": {"open": "new", "testing": "inProgress", "closed": "done"},
                                           "transitions": {"open": {"test": "testing"}}})
    sid, key = env.pair(status="resolved", substatus=None, tracker={"status": "closed", "resolution": "fixed"})
    env.link((sid, key))
    env.sync_json()
    env.config(mapping={"status": {"to_tracker": {"unresolved": "testing", "unresolved.regressed": "testing"}}})
    env.sentry.set_status(sid, "unresolved", substatus="ongoing")
    env.expect(1, "sync", "--json")
    assert env.t_state(key) == ("closed", "fixed")  # not one step taken
    assert env.tracker.requests("POST", EXECUTE) == []
    [failure] = env.status_json()["failures"]
    expected = ('mapping.status.to_tracker.unresolved = "testing" and mapping.status.to_tracker.unresolved.regressed'
                ' = "testing": queue OPS has no status "testing" (it has closed, inProgress, needInfo, open, resolved)')
    assert expected in failure["error"], failure["error"]
    # doctor fails on it, and on a to_sentry key no queue of the bridge has (DEV's status).
    env.config(mapping={"status": {"to_sentry": {"open": "unresolved", "closed": "resolved", "testing": "unresolved"}}})
    checks = {c["name"]: c for c in json.loads(env.expect(1, "doctor", "--json").out)["checks"]}
    definition = checks["tracker: workflow definition"]
    assert definition["level"] == "fail"
    notes = "\n".join(definition["notes"])
    assert ('mapping.status.to_tracker.unresolved = "testing": queue OPS has no status "testing" (it has closed, '
            'inProgress, needInfo, open, resolved)') in notes
    assert 'mapping.status.to_sentry.testing: no queue the bridge uses (OPS) has status "testing"' in notes


def test_a_target_the_workflow_cannot_reach_from_here_takes_no_step(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    sid, key = env.pair(status="resolved", substatus=None, tracker={"status": "closed", "resolution": "fixed"})
    env.link((sid, key))
    env.sync_json()
    env.tracker.edit_workflow("OPS", "closed", {})  # an admin made closed final
    env.sentry.set_status(sid, "unresolved", substatus="ongoing")
    env.expect(1, "sync", "--json")
    assert env.t_state(key) == ("closed", "fixed")
    assert env.tracker.requests("POST", EXECUTE) == []
    [failure] = env.status_json()["failures"]
    assert ('mapping.status.to_tracker.unresolved = "open" and mapping.status.to_tracker.unresolved.regressed = '
            '"open": queue OPS\'s workflow has no way from closed to open' in failure["error"]), failure["error"]
    checks = {c["name"]: c for c in json.loads(env.run("doctor", "--json").out)["checks"]}
    definition = checks["tracker: workflow definition"]
    assert definition["level"] == "warn"
    assert ('mapping.status.to_tracker.unresolved = "open": queue OPS\'s workflow has no way there from closed'
            in definition["notes"])


def test_exploring_never_enters_a_status_that_leads_nowhere_near_the_target(bridge_env: BridgeEnv) -> None:
    """open offers needInfo first; from needInfo the workflow only leads to closed, a dead end.
    Without the definition, exploring the unknown would step into needInfo; with it, the walk
    goes open -> inProgress -> resolved."""
    env = bridge_env
    env.config(mapping={"status": {"to_tracker": {"resolved": {"status": "resolved", "resolution": "fixed"}}}})
    env.tracker.edit_workflow("OPS", "open", {"need_info": "needInfo", "start_progress": "inProgress"})
    env.tracker.edit_workflow("OPS", "needInfo", {"close": "closed"})
    env.tracker.edit_workflow("OPS", "closed", {})
    sid, key = env.pair()
    env.link((sid, key))
    env.sync_json()
    env.sentry.set_status(sid, "resolved")
    env.sync_json()
    assert env.t_state(key) == ("resolved", "fixed")
    steps = [r.path.split("/transitions/")[1].split("/")[0] for r in env.tracker.requests("POST", EXECUTE)]
    assert steps == ["start_progress", "resolve"]


def test_unreadable_definitions_fall_back_to_the_statuses_and_say_so_once(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.tracker.workflows_status = 403
    pairs = [env.pair() for _ in range(3)]
    env.link(*pairs)
    env.sync_json()
    for sid, _ in pairs:
        env.sentry.set_status(sid, "resolved")
    err = env.expect(0, "sync").err
    assert [env.t_state(key) for _, key in pairs] == [("closed", "fixed")] * 3
    warned = [line for line in err.splitlines() if "workflow definitions of queue OPS" in line]
    assert len(warned) == 1 and "403" in warned[0], err
    checks = {c["name"]: c for c in json.loads(env.expect(0, "doctor", "--json").out)["checks"]}
    assert checks["tracker: OPS workflow definition"]["level"] == "warn"


def test_a_definition_read_that_fails_on_the_way_falls_back_once_per_cycle(bridge_env: BridgeEnv) -> None:
    """The definitions are a guard, not the source of truth: while they cannot be read (5xx),
    moves go on as before, checked against the organisation's statuses, and the failing read
    is not repeated by every walk of the cycle."""
    env = bridge_env
    env.config(mapping={"status": {"to_tracker": {"resolved": {"status": "resolved", "resolution": "fixed"}}}})
    pairs = [env.pair() for _ in range(4)]
    env.link(*pairs)
    env.sync_json()
    for sid, _ in pairs:
        env.sentry.set_status(sid, "resolved")
    env.tracker.inject("status", status=503, method="GET", path=r"/queues/OPS/workflows/?$", times=10_000)
    env.tracker.clear_log()
    env.sync_json()
    assert [env.t_state(key) for _, key in pairs] == [("resolved", "fixed")] * 4
    reads = env.tracker.requests("GET", r"/queues/OPS/workflows/?$")
    assert 1 <= len(reads) <= 5, len(reads)  # one read and its retries (5 attempts), not one per link


# -- 6. a transition that did not land is tried again at once -----------------------------------------


@pytest.mark.parametrize("fault", ["status", "timeout_before"])
def test_a_transition_that_did_not_land_is_retried_in_the_same_cycle(bridge_env: BridgeEnv, fault: str) -> None:
    env = bridge_env
    env.config(tracker={"timeout_seconds": 0.5})
    sid, key = env.pair()
    env.link((sid, key))
    env.sync_json()
    env.sentry.set_status(sid, "resolved")
    env.tracker.inject(fault, status=503, method="POST", path=EXECUTE, times=1)
    report = env.sync_json()  # exit 0: nothing failed
    assert env.t_state(key) == ("closed", "fixed") and report["failures"] == 0
    assert len(env.tracker.requests("POST", EXECUTE)) == 2


# -- 5. network errors, named ------------------------------------------------------------------------


def test_a_host_that_never_answers_is_named_with_the_wait(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(sentry={"timeout_seconds": 0.3})
    env.link(env.pair())
    env.sentry.inject("timeout_before", method="GET", path=r"/members/$", times=1000)
    result = env.expect(3, "-v", "sync")
    assert "no answer from 127.0.0.1 within 0.3 s" in result.err
    assert "advice: check sentry.url and that the host answers" in result.err
    # -v: every retry with its wait
    assert "sentry GET /api/0/organizations/acme/members/: sentry: no answer from 127.0.0.1 within 0.3 s" in result.err
    retries = [line for line in result.err.splitlines() if "sentry GET /api/0/organizations/acme/members/: " in line]
    assert [line.split("; ")[-1] for line in retries] == [f"retry {n} of 4 in 0.0 s" for n in (1, 2, 3, 4)]


def test_a_redirect_is_never_followed(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.link(env.pair())
    before = len(env.sentry.requests())
    env.sentry.inject("status", status=301, times=1000, headers={"Location": "https://sentry.example.com/api/0/"})
    result = env.expect(3, "sync")
    assert "answered 301, a redirect to https://sentry.example.com/api/0/; not followed" in result.err
    assert "advice: set sentry.url to the address the redirect points to" in result.err
    assert [r.status for r in env.sentry.requests()[before:]] == [301]  # one request, not followed, not retried


def test_a_refused_connection_and_an_unknown_host_say_so(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.link(env.pair())
    env.config(sentry={"url": "http://127.0.0.1:9"})  # discard port: nothing listens
    result = env.expect(3, "sync")
    assert "connection refused by 127.0.0.1: nothing listens on that port" in result.err
    env.config(sentry={"url": "http://bridge-test.invalid"})
    result = env.expect(3, "sync")
    assert "cannot resolve bridge-test.invalid (DNS)" in result.err


def test_a_wrong_organization_gets_advice(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.link(env.pair())
    env.config(sentry={"organization": "acme-corp"})
    result = env.expect(3, "sync")
    assert "advice: check sentry.organization: the organization's slug" in result.err


def test_a_sentry_url_with_the_api_prefix_is_accepted(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(sentry={"url": f"{env.sentry_url}/api/0/"})
    sid, key = env.pair(status="resolved", substatus=None)
    env.link((sid, key))
    env.sync_json()
    assert env.t_state(key)[0] == "closed"


@pytest.fixture
def untrusted_https() -> Iterator[str]:
    """An HTTPS server whose certificate comes from a CA this machine does not trust."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server = http.server.HTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"https://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_an_untrusted_certificate_is_named_and_verification_stays_on(bridge_env: BridgeEnv,
                                                                     untrusted_https: str) -> None:
    env = bridge_env
    env.link(env.pair())
    env.config(sentry={"url": untrusted_https})
    result = env.expect(3, "sync")
    assert "certificate verify failed for 127.0.0.1" in result.err
    assert "SSL_CERT_FILE" in result.err and "verification stays on" in result.err
