"""Issue 15, items 1 and 5 (first part): the hook receiver as a security boundary, over real
HTTP, and hints that bring the daemon's next cycle forward.

The receiver is fuzzed with hypothesis: whatever arrives, it never answers 5xx, and nothing
without the right signature or secret is ever kept as a hint."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.push.hints import HintBox
from bridge.push.receiver import MAX_CONCURRENT, HookReceiver
from bridge.push.verify import MAX_BODY_BYTES, Hint, sentry_signature_ok
from tests.test_daemon import Service, free_port, free_ports, scrape, total, wait_for

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv

SENTRY_SECRET = "sentry-client-secret-0123456789"  # noqa: S105 - a test value
TRACKER_SECRET = "tracker-shared-secret-9876543210"  # noqa: S105


def signed(body: bytes, secret: str = SENTRY_SECRET) -> dict[str, str]:
    return {"Sentry-Hook-Signature": hmac.new(secret.encode(), body, hashlib.sha256).hexdigest(),
            "Content-Type": "application/json"}


def issue_hook(issue_id: str, actor: str = "user") -> bytes:
    return json.dumps({"action": "resolved", "installation": {"uuid": "i-1"},
                       "data": {"issue": {"id": issue_id, "status": "resolved"}},
                       "actor": {"type": actor, "id": "1", "name": "Alice"}}).encode()


@pytest.fixture
def receiver() -> Iterator[HookReceiver]:
    box = HintBox(limit=1000)
    hooks = HookReceiver(("127.0.0.1", 0), box, sentry_secret=SENTRY_SECRET, tracker_secret=TRACKER_SECRET)
    hooks.start()
    yield hooks
    hooks.close()


def url(hooks: HookReceiver, path: str) -> str:
    host, port = hooks.address
    return f"http://{host}:{port}{path}"


def test_a_signed_sentry_hook_is_kept_as_a_hint(receiver: HookReceiver) -> None:
    body = issue_hook("5000000001")
    answer = httpx.post(url(receiver, "/hooks/sentry"), content=body, headers=signed(body))
    assert answer.status_code == 202 and answer.json() == {"queued": True}
    assert receiver.hints.drain() == {Hint("sentry", "5000000001")}


@pytest.mark.parametrize("headers", [{}, {"Sentry-Hook-Signature": ""}, {"Sentry-Hook-Signature": "00" * 32},
                                     {"Sentry-Hook-Signature": "not hex at all ✓".encode()}])
def test_a_bad_or_missing_signature_is_401_and_nothing_is_kept(receiver: HookReceiver, headers: dict[str, Any]) -> None:
    body = issue_hook("5000000001")
    answer = httpx.post(url(receiver, "/hooks/sentry"), content=body, headers=headers)
    assert answer.status_code == 401 and len(receiver.hints) == 0


def test_a_signature_of_another_body_or_secret_is_401(receiver: HookReceiver) -> None:
    body = issue_hook("5000000001")
    for headers in (signed(issue_hook("5000000002")), signed(body, secret="another secret")):
        assert httpx.post(url(receiver, "/hooks/sentry"), content=body, headers=headers).status_code == 401
    assert len(receiver.hints) == 0


def test_the_tracker_hint_needs_the_shared_secret(receiver: HookReceiver) -> None:
    body = json.dumps({"key": "OPS-7", "updatedAt": "2026-12-05T10:00:00.000+0000"}).encode()
    assert httpx.post(url(receiver, "/hooks/tracker"), content=body).status_code == 401
    assert httpx.post(url(receiver, "/hooks/tracker"), content=body,
                      headers={"X-Bridge-Secret": "wrong"}).status_code == 401
    assert len(receiver.hints) == 0
    ok = httpx.post(url(receiver, "/hooks/tracker"), content=body, headers={"X-Bridge-Secret": TRACKER_SECRET})
    assert ok.status_code == 202 and receiver.hints.drain() == {Hint("tracker", "OPS-7")}


def test_bodies_over_one_mebibyte_are_refused_unread(receiver: HookReceiver) -> None:
    body = b"{" + b" " * MAX_BODY_BYTES + b"}"
    answer = httpx.post(url(receiver, "/hooks/sentry"), content=body, headers=signed(body))
    assert answer.status_code == 413 and len(receiver.hints) == 0


def test_malformed_json_is_400_after_the_signature(receiver: HookReceiver) -> None:
    for body in (b"{not json", b"[1, 2]", b"\xff\xfe", json.dumps({"data": {"issue": {"id": "x'; DROP"}}}).encode()):
        answer = httpx.post(url(receiver, "/hooks/sentry"), content=body, headers=signed(body))
        assert answer.status_code == 400, body
    assert httpx.post(url(receiver, "/hooks/tracker"), content=b"{\"key\": 7}",
                      headers={"X-Bridge-Secret": TRACKER_SECRET}).status_code == 400
    assert len(receiver.hints) == 0


def test_our_own_echo_and_other_resources_are_ignored(receiver: HookReceiver) -> None:
    receiver.echoes.wrote("5000000001")  # the bridge just wrote this issue
    for body in (issue_hook("5000000001", actor="application"),
                 json.dumps({"action": "created", "data": {"installation": {"uuid": "i-1"}}}).encode()):
        answer = httpx.post(url(receiver, "/hooks/sentry"), content=body, headers=signed(body))
        assert answer.status_code == 200 and answer.json() == {"ignored": True}
    assert len(receiver.hints) == 0


def test_sentrys_own_changes_and_other_integrations_are_hints(receiver: HookReceiver) -> None:
    """Auto-resolve, escalation and `issue.created` come with the actor {"type": "application",
    "id": "sentry"}; another integration's change with its own app id.  Neither is our echo."""
    receiver.echoes.wrote("5000000001")
    system = json.dumps({"action": "resolved", "data": {"issue": {"id": "5000000001"}},
                         "actor": {"type": "application", "id": "sentry", "name": "Sentry"}}).encode()
    other = issue_hook("5000000002", actor="application")  # an app, on an issue the bridge did not write
    for body in (system, other):
        assert httpx.post(url(receiver, "/hooks/sentry"), content=body, headers=signed(body)).status_code == 202
    assert receiver.hints.drain() == {Hint("sentry", "5000000001"), Hint("sentry", "5000000002")}


def test_other_paths_and_methods_are_refused(receiver: HookReceiver) -> None:
    assert httpx.get(url(receiver, "/hooks/sentry")).status_code == 405
    assert httpx.post(url(receiver, "/metrics"), content=b"{}").status_code == 404
    assert httpx.post(url(receiver, "/hooks/sentry/extra"), content=b"{}").status_code == 404


def test_a_request_without_content_length_is_411(receiver: HookReceiver) -> None:
    host, port = receiver.address
    with socket.create_connection((host, port), timeout=5) as sock:
        sock.sendall(b"POST /hooks/sentry HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.0 411")


def test_a_flood_of_hints_stays_bounded(receiver: HookReceiver) -> None:
    """10,000 hints, 500 distinct issues: 500 entries kept; a box at its limit drops (and
    counts) the rest instead of growing."""
    box = receiver.hints
    for n in range(10_000):
        box.add(Hint("tracker", f"OPS-{n % 500 + 1}"))
    assert len(box) == 500 and box.received == 10_000 and box.dropped == 0
    small = HintBox(limit=100)
    for n in range(10_000):
        small.add(Hint("sentry", str(5_000_000_000 + n)))
    assert len(small) == 100 and small.dropped == 9_900


def test_more_requests_at_once_than_slots_get_503_not_threads(receiver: HookReceiver) -> None:
    """A client that opens connections and sends slowly holds at most MAX_CONCURRENT slots."""
    host, port = receiver.address
    socks = []
    try:
        for _ in range(MAX_CONCURRENT):
            sock = socket.create_connection((host, port), timeout=5)
            sock.sendall(b"POST /hooks/sentry HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n")  # body never sent
            socks.append(sock)
        wait_for("every slot taken", lambda: receiver.busy == MAX_CONCURRENT, timeout=20)
        body = issue_hook("5000000009")
        answer = httpx.post(url(receiver, "/hooks/sentry"), content=body, headers=signed(body))
        assert answer.status_code == 503
    finally:
        for sock in socks:
            sock.close()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/hooks/sentry", "/hooks/tracker", "/hooks/x", "/"]),
       body=st.binary(max_size=2048) | st.builds(lambda d: json.dumps(d).encode(),
                                                   st.recursive(st.none() | st.text(max_size=20) | st.integers(),
                                                                lambda c: st.dictionaries(st.text(max_size=8), c,
                                                                                          max_size=4), max_leaves=10)),
       signature=st.none() | st.text(max_size=70), secret=st.none() | st.text(max_size=40))
def test_fuzz_never_5xx_and_nothing_unsigned_is_kept(receiver: HookReceiver, path: str, body: bytes,
                                                     signature: str | None, secret: str | None) -> None:
    headers: dict[str, str] = {}
    # Only what an HTTP client can send at all: printable ASCII without edge blanks.
    if signature and signature.isascii() and signature.isprintable() and signature == signature.strip():
        headers["Sentry-Hook-Signature"] = signature
    if secret and secret.isascii() and secret.isprintable() and secret == secret.strip():
        headers["X-Bridge-Secret"] = secret
    answer = httpx.post(url(receiver, path), content=body, headers=headers)
    assert answer.status_code < 500
    assert len(receiver.hints) == 0  # no valid signature or secret: never a hint
    assert sentry_signature_ok(SENTRY_SECRET.encode(), body, headers.get("Sentry-Hook-Signature")) is False


# -- the daemon: hints bring the next cycle forward -------------------------------------------------


@pytest.fixture
def daemon(bridge_env: BridgeEnv) -> Iterator[Service]:
    """One `run` subprocess of the bridge_env config, stopped at the end."""
    svc = Service(bridge_env)
    yield svc
    svc.close()


def push_config(env: BridgeEnv, port: int, metrics_port: int | None = None) -> None:
    if metrics_port is not None:
        env.config(metrics={"listen": f"127.0.0.1:{metrics_port}"})
    env.config(sync={"interval_seconds": 300}, push={"enabled": True, "listen": f"127.0.0.1:{port}",
                                                      "sentry_secret": SENTRY_SECRET,
                                                      "tracker_secret": TRACKER_SECRET, "min_gap_seconds": 0.5})


def test_a_hinted_change_crosses_in_seconds_not_an_interval(bridge_env: BridgeEnv,
                                                            request: pytest.FixtureRequest) -> None:
    env = bridge_env
    port = free_port()
    push_config(env, port)
    sid, key = env.pair()
    env.link((sid, key))
    svc: Service = request.getfixturevalue("daemon")
    wait_for("the first cycle", lambda: svc.cycles())
    wait_for("the receiver", lambda: svc.logs("push.listening"))
    env.tracker.set_status(key, "closed", resolution="fixed", by="bob")
    started = time.monotonic()
    body = json.dumps({"key": key}).encode()
    assert httpx.post(f"http://127.0.0.1:{port}/hooks/tracker", content=body,
                      headers={"X-Bridge-Secret": TRACKER_SECRET}).status_code == 202
    wait_for("the change in Sentry", lambda: env.s_state(sid)[0] == "resolved", timeout=10)
    assert time.monotonic() - started < 5  # the interval is 300 s
    assert svc.logs("push.cycle")
    secrets_seen = [s for s in (SENTRY_SECRET, TRACKER_SECRET) if s in svc.stderr()]
    assert secrets_seen == []  # never logged


def test_a_flood_of_hints_is_one_cycle_per_gap(bridge_env: BridgeEnv, request: pytest.FixtureRequest) -> None:
    env = bridge_env
    port = free_port()
    push_config(env, port)
    env.link(env.pair())
    svc: Service = request.getfixturevalue("daemon")
    wait_for("the receiver", lambda: svc.logs("push.listening") and svc.cycles())
    before = len(svc.cycles())
    started = time.monotonic()

    def flood() -> None:
        with httpx.Client() as client:
            for n in range(300):
                client.post(f"http://127.0.0.1:{port}/hooks/tracker", content=json.dumps({"key": f"OPS-{n}"}).encode(),
                            headers={"X-Bridge-Secret": TRACKER_SECRET})

    threads = [threading.Thread(target=flood) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    time.sleep(1.0)
    elapsed = time.monotonic() - started
    cycles = len(svc.cycles()) - before
    assert 1 <= cycles <= elapsed / 0.5 + 2, (cycles, elapsed)  # at most one per min_gap_seconds


def test_a_busy_push_port_is_a_sentence_and_exit_2(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        push_config(env, taken.getsockname()[1])
        result = env.run("run")
    assert result.code == 2 and "push.listen: cannot listen on 127.0.0.1:" in result.err, result.err
    assert "Traceback" not in result.err


def test_push_without_any_secret_is_refused(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(push={"enabled": True, "listen": f"127.0.0.1:{free_port()}"})
    result = env.run("run")
    assert result.code == 2 and "neither push.sentry_secret nor push.tracker_secret" in result.err


def test_the_receiver_binds_to_localhost_by_default() -> None:
    from bridge.config import PushSettings

    assert PushSettings().address()[0] == "127.0.0.1"


def test_the_sentry_emulator_signs_its_hooks_as_sentry_does(receiver: HookReceiver) -> None:
    from bridge.sandbox.sentry_emulator import SentryEmulator

    sentry = SentryEmulator(org="acme")
    sentry.add_project("backend")
    sentry.add_user("alice@example.com", "Alice")
    sid = sentry.add_issue("backend", "boom")
    sentry.subscribe_webhooks(url(receiver, "/hooks/sentry"), SENTRY_SECRET)
    sentry.set_status(sid, "resolved", by="alice@example.com")
    wait_for("the hook", lambda: sentry.hook_deliveries)
    assert sentry.hook_deliveries == [(url(receiver, "/hooks/sentry"), 202)]
    assert receiver.hints.drain() == {Hint("sentry", sid)}
    sentry.set_priority(sid, "low")  # no webhook for priority, as in Sentry
    time.sleep(0.2)
    assert len(sentry.hook_deliveries) == 1


def test_a_sentry_change_crosses_by_hook_and_our_echo_is_ignored(bridge_env: BridgeEnv,
                                                                 request: pytest.FixtureRequest) -> None:
    env = bridge_env
    port, metrics_port = free_ports(2)
    push_config(env, port, metrics_port)
    sid, key = env.pair()
    env.link((sid, key))
    env.sentry.subscribe_webhooks(f"http://127.0.0.1:{port}/hooks/sentry", SENTRY_SECRET)
    svc: Service = request.getfixturevalue("daemon")
    wait_for("the receiver", lambda: svc.logs("push.listening") and svc.cycles())
    started = time.monotonic()
    env.sentry.set_status(sid, "resolved", by="alice@example.com")
    wait_for("the change in Tracker", lambda: env.t_state(key)[0] == "closed", timeout=10)
    assert time.monotonic() - started < 5  # the interval is 300 s
    # Tracker -> Sentry: the bridge's own PUT comes back as a hook from an application: ignored.
    env.tracker.set_status(key, "open", by="bob")
    body = json.dumps({"key": key}).encode()
    httpx.post(f"http://127.0.0.1:{port}/hooks/tracker", content=body, headers={"X-Bridge-Secret": TRACKER_SECRET})
    wait_for("the change in Sentry", lambda: env.s_state(sid)[0] == "unresolved", timeout=10)
    wait_for("the echo", lambda: len(env.sentry.hook_deliveries) >= 2, timeout=5)
    assert [status for _, status in env.sentry.hook_deliveries] == [202, 200]  # the echo: ignored
    # What /metrics says of the hooks (what an alert on "hooks stopped arriving" reads).
    samples = scrape(metrics_port)
    assert total(samples, "bridge_hooks_total", source="sentry", outcome="queued") == 1
    assert total(samples, "bridge_hooks_total", source="sentry", outcome="ignored") == 1
    assert total(samples, "bridge_hooks_total", source="tracker", outcome="queued") == 1
