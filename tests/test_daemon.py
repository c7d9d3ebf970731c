"""The daemon as operators run it: a real `python -m bridge run` subprocess against both
emulators on loopback (the conftest harness), with a test AF_UNIX datagram socket standing in
for systemd's `$NOTIFY_SOCKET`.

Every wait is a poll with a deadline; nothing sleeps to make an assertion true.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from conftest import BridgeEnv, deep_merge, to_toml
from prometheus_client.parser import text_string_to_metric_families

from bridge.daemon import watchdog_verdict
from bridge.metrics import Health
from bridge.notify import Notifier, socket_address, watchdog_interval

REPO = Path(__file__).resolve().parents[1]
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T | None], timeout: float = 10.0, every: float = 0.05,
             detail: Callable[[], object] | None = None) -> T:
    """Poll `check` until it returns something truthy; fail with `what` at the deadline, and with
    what `detail` says then (a timeout in CI is only worth its diagnosis)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            said = f"\n{detail()}" if detail is not None else ""
            pytest.fail(f"timed out after {timeout}s waiting for {what}{said}")
        time.sleep(every)


def free_ports(count: int) -> list[int]:
    """`count` distinct free loopback ports: every socket is held until all are chosen, so two
    calls cannot hand out the same number (the kernel picks a random free port each time)."""
    with contextlib.ExitStack() as stack:
        ports = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket())
            sock.bind(("127.0.0.1", 0))
            ports.append(int(sock.getsockname()[1]))
        return ports


def free_port() -> int:
    return free_ports(1)[0]


class Service:
    """One `run` subprocess: JSON log lines from its stderr, notify messages from its socket."""

    def __init__(self, env: BridgeEnv, *, watchdog_usec: int | None = 200_000) -> None:
        self.env = env
        self.folder = Path(tempfile.mkdtemp(prefix="stb-"))  # short: AF_UNIX paths max out at 107 bytes
        self.notify_path = self.folder / "notify"
        self.notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.notify.bind(str(self.notify_path))
        self.notify.settimeout(0.2)
        self.messages: list[str] = []
        # Drained all the time, as systemd does: a full datagram queue would slow the daemon down.
        self._listening = True
        self._listener = threading.Thread(target=self._listen, daemon=True)
        self._listener.start()
        self.stderr_path = env.folder / "daemon.stderr"
        child_env = {"PATH": os.environ.get("PATH", ""), "NOTIFY_SOCKET": str(self.notify_path)}
        if watchdog_usec:
            child_env["WATCHDOG_USEC"] = str(watchdog_usec)
        with self.stderr_path.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "--log-format", "json", "--config", str(env.path), "run"],
                cwd=REPO, env=child_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr,
            )

    # -- what it says -----------------------------------------------------------------------
    def stderr(self) -> str:
        return self.stderr_path.read_text(encoding="utf-8", errors="replace")

    def logs(self, event: str | None = None) -> list[dict[str, Any]]:
        records = []
        for line in self.stderr().splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and (event is None or record.get("event") == event):
                    records.append(record)
        return records

    def cycles(self) -> list[dict[str, Any]]:
        return self.logs("cycle.summary")

    def tail(self, lines: int = 40) -> str:
        """The end of its stderr, and whether it still runs: what a timed-out wait prints."""
        state = "running" if self.alive() else f"exited {self.proc.returncode}"
        return f"daemon {state}; the end of its stderr:\n" + "\n".join(self.stderr().splitlines()[-lines:])

    def _listen(self) -> None:
        while self._listening:
            with contextlib.suppress(TimeoutError, OSError):
                self.messages.append(self.notify.recv(4096).decode())

    def notes(self) -> list[str]:
        """Every notify datagram received so far, in order."""
        return list(self.messages)

    def note_with(self, prefix: str) -> list[str]:
        return [m for m in self.notes() if any(line.startswith(prefix) for line in m.split("\n"))]

    # -- what we do to it ---------------------------------------------------------------------
    def send(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def stop(self, signum: int = signal.SIGTERM, timeout: float = 10.0) -> tuple[int, float]:
        """Send `signum`; (exit code, seconds it took)."""
        started = time.monotonic()
        self.proc.send_signal(signum)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"the daemon did not exit within {timeout}s of {signal.Signals(signum).name}\n{self.stderr()}")
        return code, time.monotonic() - started

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(5)
        self._listening = False
        self._listener.join(5)
        self.notify.close()
        with contextlib.suppress(OSError):
            self.notify_path.unlink()
            self.folder.rmdir()


@pytest.fixture
def service(bridge_env: BridgeEnv) -> Iterator[Callable[..., Service]]:
    started: list[Service] = []

    def start(**kw: Any) -> Service:
        svc = Service(bridge_env, **kw)
        started.append(svc)
        return svc

    yield start
    for svc in started:
        svc.close()


def scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str) -> float:
    return sum(v for (n, lab), v in samples.items() if n == name and all((k, x) in lab for k, x in labels.items()))


# -- the service, end to end --------------------------------------------------------------------


def test_cycles_on_schedule_with_notify_metrics_health_and_the_lock(
    bridge_env: BridgeEnv, service: Callable[..., Service]
) -> None:
    env = bridge_env
    pairs = [env.pair() for _ in range(3)]
    env.link(*pairs)
    port = free_port()
    env.config(sync={"interval_seconds": 1, "retry_attempts": 2, "retry_deadline_seconds": 2},
               metrics={"listen": f"127.0.0.1:{port}"})
    svc = service()

    # systemd hears READY=1 once the service is set up, then STATUS= per cycle and WATCHDOG=1.
    wait_for("READY=1", lambda: svc.note_with("READY=1"))
    cycles = wait_for("three cycles", lambda: c if len(c := svc.cycles()) >= 3 else None, timeout=8)
    stamps = [datetime.fromisoformat(c["time"]).timestamp() for c in cycles[:3]]
    gaps = [b - a for a, b in zip(stamps, stamps[1:], strict=False)]
    assert all(0.5 < gap < 1.8 for gap in gaps), f"cycles not one interval apart: {gaps}"
    assert all(c["ok"] and c["links"] == 3 for c in cycles)
    wait_for("STATUS= after a cycle", lambda: [m for m in svc.note_with("STATUS=") if "cycle ok: 3 links" in m])
    wait_for("WATCHDOG=1", lambda: svc.note_with("WATCHDOG=1"))
    history = env.status_json()
    assert len(history["cycles"]) >= 3 and history["last_cycle"]["ok"] and history["last_success"]

    # One instance: a second `run` and a `sync` both exit 4 while the service holds the lock.
    second = subprocess.run([sys.executable, "-m", "bridge", "--config", str(env.path), "run"],
                            cwd=REPO, env={"PATH": os.environ.get("PATH", "")}, capture_output=True, text=True,
                            timeout=20)
    assert second.returncode == 4, second.stderr
    assert "another instance holds" in second.stderr
    assert env.run("sync").code == 4

    # Metrics: one retried request shows up by endpoint and status, a write by side, field and
    # outcome, next to the cycle numbers.
    env.tracker.inject("status", status=503, method="POST", path="/_search$", times=1)
    env.sentry.set_status(pairs[0][0], "resolved")
    samples = wait_for("a retry and a write in /metrics", lambda: (
        s if total(s := scrape(port), "bridge_api_retries_total", service="tracker") >= 1
        and total(s, "bridge_writes_total", side="tracker", field="status", outcome="ok") >= 1 else None))
    assert env.t_state(pairs[0][1])[0] == "closed"
    assert total(samples, "bridge_api_requests_total", service="tracker", status="503") == 1
    assert total(samples, "bridge_api_requests_total", service="sentry", status="200") >= 6
    assert total(samples, "bridge_links") == 3
    assert total(samples, "bridge_cycles_total", result="ok") >= 3
    assert total(samples, "bridge_cycle_duration_seconds_count") >= 3
    assert total(samples, "bridge_failures") == 0 and total(samples, "bridge_conflicts") == 0
    assert abs(total(samples, "bridge_last_success_timestamp_seconds") - time.time()) < 10
    assert total(samples, "process_resident_memory_bytes") > 0
    health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)
    assert health.status_code == 200 and health.text.startswith("ok:")

    # Both remotes fail: within three intervals of the last success /healthz turns 503 and says why.
    page = b"<html>proxy 10.20.30.40 internal error, ticket 4711</html>"  # what a proxy might answer
    env.sentry.inject("status", status=500, times=10**6, body=page)
    env.tracker.inject("status", status=500, times=10**6, body=page)
    unhealthy = wait_for("/healthz 503", lambda: (
        r if (r := httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=5)).status_code == 503 else None),
        timeout=12)
    assert "no cycle has succeeded for" in unhealthy.text and "server error 500" in unhealthy.text
    assert "10.20.30.40" not in unhealthy.text  # /healthz never echoes a remote's answer
    # Aborted (the user lists could not be read) or failed link by link (users known, the poll
    # fell back to reading each link): either way not a success.
    after = scrape(port)
    assert total(after, "bridge_cycles_total", result="aborted") + total(after, "bridge_cycles_total",
                                                                          result="failed") >= 1
    assert svc.alive()  # failing cycles are logged and retried by the next cycle, never fatal

    env.sentry.clear_faults()
    env.tracker.clear_faults()
    code, took = svc.stop()
    assert code == 0 and took < 5
    wait_for("STOPPING=1", lambda: svc.note_with("STOPPING=1"))
    assert env.run("sync").code == 0  # the lock went with the process


def test_sigterm_mid_cycle_finishes_the_link_and_leaves_consistent_state(
    bridge_env: BridgeEnv, service: Callable[..., Service]
) -> None:
    env = bridge_env
    pairs = [env.pair(status="resolved", substatus=None) for _ in range(12)]
    env.link(*pairs)
    env.config(sync={"interval_seconds": 60})
    env.tracker.latency_seconds = env.sentry.latency_seconds = 0.05
    svc = service(watchdog_usec=None)

    # Each new link closes its Tracker issue; stop as soon as the first transition went out.
    wait_for("a write in flight", lambda: env.tracker.requests("POST", "/_execute"), every=0.01)
    code, took = svc.stop()
    assert code == 0, svc.stderr()
    assert took < 5
    assert svc.logs("cycle.interrupted"), "the cycle should have stopped between links"
    [cycle] = svc.cycles()
    assert 1 <= cycle["writes_tracker"] < len(pairs)
    # Every link that was started was finished: each written link is closed, nothing half-done.
    written = {r["link"] for r in svc.logs("link.write")}
    assert {sid for sid, key in pairs if env.t_state(key)[0] == "closed"} == written
    state = env.status_json()
    assert state["last_cycle"]["finished"] and state["pending_intents"] == 0 and state["failures"] == []

    env.tracker.latency_seconds = env.sentry.latency_seconds = 0.0
    assert env.sync_json()["ok"]
    assert all(env.t_state(key) == ("closed", "fixed") for _, key in pairs)
    before = len(env.sentry.writes()) + len(env.tracker.writes())
    again = env.sync_json()
    assert again["writes_sentry"] == again["writes_tracker"] == 0
    assert len(env.sentry.writes()) + len(env.tracker.writes()) == before


def test_a_second_stop_signal_exits_at_once(bridge_env: BridgeEnv, service: Callable[..., Service]) -> None:
    env = bridge_env
    env.link(env.pair())
    env.sentry.latency_seconds = env.tracker.latency_seconds = 3.0  # the first cycle is stuck in a request
    svc = service(watchdog_usec=None)
    wait_for("READY=1", lambda: svc.note_with("READY=1"))
    svc.send(signal.SIGTERM)
    wait_for("the stop to begin", lambda: svc.logs("daemon.stopping"))
    code, took = svc.stop(signal.SIGINT)
    assert code == 1 and took < 1.5, svc.stderr()
    assert svc.logs("daemon.stop_forced")
    assert env.run("status").code == 0  # the state file opens fine after the hard exit


def test_sighup_reload_bad_keeps_running_good_takes_effect(
    bridge_env: BridgeEnv, service: Callable[..., Service]
) -> None:
    env = bridge_env
    env.tracker.add_user("dave", "dave@elsewhere.example")  # dan's Tracker account, not matched by e-mail
    sid, key = env.pair(assignee="dan@example.com")
    env.link((sid, key))
    env.config(sync={"interval_seconds": 1})
    svc = service(watchdog_usec=None)
    wait_for("the first cycle", svc.cycles)
    assert env.t_issue(key).get("assignee") is None  # dan is unmapped: reported, never guessed

    # A broken file: every problem is logged, the running configuration stays, cycles go on.
    good = env.settings
    env.path.write_text(to_toml(deep_merge(good, {"sync": {"intervall_seconds": 5, "conflict": "maybe"}})))
    svc.send(signal.SIGHUP)
    wait_for("the reload refusal", lambda: svc.logs("config.reload_refused"))
    problems = " | ".join(r["message"] for r in svc.logs("config.problem"))
    assert "sync.intervall_seconds" in problems and "sync.conflict" in problems
    wait_for("RELOADING=1", lambda: svc.note_with("RELOADING=1"))
    wait_for("READY=1 with the refusal", lambda: [m for m in svc.note_with("READY=1") if "refused" in m])
    seen = len(svc.cycles())
    wait_for("two more cycles on the old configuration", lambda: len(svc.cycles()) >= seen + 2)
    assert svc.alive()

    # A good file: the new mapping takes effect on the next cycle.
    env.path.write_text(to_toml(deep_merge(good, {"mapping": {"users": {"dan@example.com": "dave"}}})))
    svc.send(signal.SIGHUP)
    wait_for("the reload", lambda: svc.logs("config.reloaded"))
    dave = env.tracker.uid_of("dave")
    wait_for("dan's issue assigned to dave in Tracker",
             lambda: str((env.t_issue(key).get("assignee") or {}).get("id")) == dave)
    assert env.t_state(key)[0] == "open"

    code, _ = svc.stop(signal.SIGINT)
    assert code == 0


def test_bad_config_and_unusable_metrics_address_fail_at_start(
    bridge_env: BridgeEnv, service: Callable[..., Service]
) -> None:
    env = bridge_env
    env.path.write_text(to_toml(deep_merge(env.settings, {"sync": {"interval_seconds": 0}})))
    svc = service(watchdog_usec=None)
    assert svc.proc.wait(20) == 2
    assert "sync.interval_seconds" in svc.stderr()

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        env.config(metrics={"listen": f"127.0.0.1:{taken.getsockname()[1]}"})
        svc = service(watchdog_usec=None)
        assert svc.proc.wait(20) == 1
    assert "cannot listen on" in svc.stderr()
    assert not svc.note_with("READY=1")
    assert env.run("sync").code == 0  # nothing left holding the lock


# -- the small parts, in-process ------------------------------------------------------------------


def test_notifier_speaks_the_protocol_to_paths_and_abstract_sockets() -> None:
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        name = f"stb-test-{os.getpid()}"
        sock.bind(b"\0" + name.encode())
        sock.settimeout(2)
        notifier = Notifier.from_env({"NOTIFY_SOCKET": f"@{name}"})
        assert notifier.ready(status="two\nlines") and notifier.stopping()
        assert sock.recv(4096) == b"READY=1\nSTATUS=two lines"
        assert sock.recv(4096) == b"STOPPING=1"
        assert notifier.reloading()
        assert sock.recv(4096).startswith(b"RELOADING=1\nMONOTONIC_USEC=")
        notifier.close()
    assert not Notifier.from_env({}).ready()  # not under systemd: a quiet no-op
    assert socket_address("/run/x") == "/run/x" and socket_address("relative") is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000"}) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "1"}, pid=2) is None
    assert watchdog_interval({"WATCHDOG_USEC": "30000000", "WATCHDOG_PID": "2"}, pid=2) == 15.0
    assert watchdog_interval({"WATCHDOG_USEC": "nonsense"}) is None


def test_watchdog_pings_only_while_cycles_progress() -> None:
    common = {"started": 0.0, "interval": 60.0, "stall": 200.0}
    assert watchdog_verdict(100.0, cycle_started=None, last_beat=0.0, last_cycle_end=None, **common) is None
    assert watchdog_verdict(500.0, cycle_started=None, last_beat=0.0, last_cycle_end=None, **common)
    assert watchdog_verdict(500.0, cycle_started=None, last_beat=450.0, last_cycle_end=450.0, **common) is None
    assert watchdog_verdict(500.0, cycle_started=100.0, last_beat=450.0, last_cycle_end=90.0, **common) is None
    stuck = watchdog_verdict(500.0, cycle_started=100.0, last_beat=250.0, last_cycle_end=90.0, **common)
    assert stuck and "no progress for 250s" in stuck


def test_health_needs_a_success_within_three_intervals() -> None:
    health = Health(10, clock=lambda: 1000.0)
    assert health.check() == (False, "no cycle has succeeded yet")
    health.succeeded(1000.0)
    assert health.check()[0]
    health.failed("tracker: server error 500")
    assert health.check(1029.0)[0]
    ok, why = health.check(1031.0)
    assert not ok and "for 31s" in why and "tracker: server error 500" in why

