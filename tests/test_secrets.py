"""Secrets never leak (issue 6, item 8).

Sentinel tokens go into the config (one inline, one through `token_file`, and through the
environment); every command of the CLI and the error paths (refused credentials on each side,
5xx, malformed JSON, timeouts, bad configs that carry a token, a bad token file) run through the
real command line against both emulators on loopback, with `-v`/`-vv` and JSON or text logs.
After each run the sentinels must appear nowhere the bridge writes: stdout, stderr, every log
record of any logger (httpx included), every file beside the config (state file, WAL, SHM, lock,
daemon output), and the text of every exception raised in the bridge's own code, caught or not.

The emulators do see the tokens (they authenticate with them); they are the remote side, not
the bridge, and their request logs hold method, path, query and body only.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
import pytest

from bridge.cli import build_parser, main
from bridge.clients.http import RetryPolicy
from bridge.errors import BridgeError
from bridge.sandbox.sentry_emulator import DEFAULT_SCOPES
from bridge.sandbox.tracker_emulator import ROBOT_LOGIN
from tests.conftest import BridgeEnv, Result

SENTRY_SECRET = "SENTINEL-SENTRY-7f3a"
TRACKER_SECRET = "SENTINEL-TRACKER-91bc"
SECRETS = (SENTRY_SECRET, TRACKER_SECRET)
REPO = Path(__file__).resolve().parents[1]
BRIDGE_DIR = REPO / "bridge"
NOT_OURS = (str(BRIDGE_DIR / "sandbox"),)
# Commands this file drives; a new command must be added here (and driven) to pass.
# `sandbox` reads no config and no token (it prints the emulators' own well-known test tokens);
# tests/test_sandbox.py drives it.
DRIVEN = {"sync", "run", "link", "unlink", "relink", "status", "conflicts", "doctor", "explain", "demo", "sandbox",
          "push", "config"}


def leaks(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def _bridge_thread() -> bool:
    """The CLI's own thread and the bridge's worker pools ("read-N", "write-N", "cycle-N")."""
    thread = threading.current_thread()
    return thread is threading.main_thread() or thread.name.startswith(("read", "write", "cycle"))


def exception_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc!s} | {exc!r} | {getattr(exc, '__notes__', '')}"


@contextlib.contextmanager
def exceptions_raised() -> Iterator[list[str]]:
    """The text of every error of the bridge's own hierarchy (`BridgeError`: what becomes an
    operator message, a log line or a failure row) raised in or passing through the bridge's
    code, in any thread, while the block runs: caught ones included.

    Library exceptions caught inside the bridge (pydantic's ValidationError naming a key a token
    was pasted into, say) are not emitted: what reaches the operator is a `ConfigError` built
    from scrubbed text, and that one is checked.  Anything escaping `main` is checked by `cli`."""
    seen: list[str] = []

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "exception" and isinstance(arg[1], BridgeError):
            seen.append(exception_text(arg[1]))
        return local

    def start(frame: FrameType, event: str, arg: Any) -> Any:
        if not _bridge_thread():
            sys.settrace(None)  # an emulator's server thread: not ours, and tracing it is slow
            return None
        name = frame.f_code.co_filename
        if name.startswith(str(BRIDGE_DIR)) and not name.startswith(NOT_OURS):
            return local
        return None

    previous = sys.gettrace()
    sys.settrace(start)
    threading.settrace(start)
    try:
        yield seen
    finally:
        sys.settrace(previous)
        threading.settrace(None)  # type: ignore[arg-type]


class SecretEnv:
    """The loopback harness with sentinel tokens, and a CLI runner that checks every output."""

    def __init__(self, env: BridgeEnv, caplog: pytest.LogCaptureFixture) -> None:
        self.env = env
        self.caplog = caplog
        env.sentry.add_token(SENTRY_SECRET, scopes=DEFAULT_SCOPES)
        env.tracker.add_token(TRACKER_SECRET, login=ROBOT_LOGIN)
        self.token_file = env.folder / "tracker.token"
        self.token_file.write_text(TRACKER_SECRET + "\n", encoding="utf-8")
        env.config(sentry={"token": SENTRY_SECRET}, tracker={"token": None, "token_file": "tracker.token"})
        self.runs = 0
        self.exceptions_checked = 0

    def cli(self, *args: str, expect: int | None = 0, env: dict[str, str] | None = None,
            verbose: str = "-v", log_format: str = "json") -> Result:
        out, err = io.StringIO(), io.StringIO()
        self.caplog.clear()
        with exceptions_raised() as raised, contextlib.redirect_stderr(err):
            try:
                code = main([verbose, "--log-format", log_format, "--config", str(self.env.path), *args],
                             env=env or {}, out=out, retry_policy=RetryPolicy(attempts=2, waits=False))
            except BaseException as exc:  # escaping main: it must not carry a token either
                assert not leaks(exception_text(exc)), f"{args}: a token in an escaping exception"
                raise
        result = Result(code, out.getvalue(), err.getvalue())
        where = f"{' '.join(args)} (exit {code})"
        assert expect is None or code == expect, f"{where}: wanted exit {expect}\n{result.out}\n{result.err}"
        assert not leaks(result.out), f"{where}: a token on stdout"
        assert not leaks(result.err), f"{where}: a token on stderr"
        logged = self.caplog.text + "".join(
            f"{r.getMessage()} {r.args!r} {r.exc_text or ''}" for r in self.caplog.records)
        assert not leaks(logged), f"{where}: a token in a log record"
        assert not [text for text in raised if leaks(text)], f"{where}: a token in an exception"
        self.exceptions_checked += len(raised)
        self.check_files(where)
        self.runs += 1
        return result

    def check_files(self, where: str) -> None:
        """Every file the bridge may have written: the state file and its WAL/SHM/lock, and
        anything else beside the config (except the config and the token file themselves)."""
        for path in sorted(self.env.folder.rglob("*")):
            if not path.is_file() or path in (self.env.path, self.token_file):
                continue
            data = path.read_bytes()
            for secret in SECRETS:
                assert secret.encode() not in data, f"{where}: {secret} in {path.name}"


@pytest.fixture
def secret_env(bridge_env: BridgeEnv, caplog: pytest.LogCaptureFixture) -> SecretEnv:
    caplog.set_level(logging.DEBUG)  # every logger, every level: httpx and httpcore too
    return SecretEnv(bridge_env, caplog)


def test_the_sentinels_reach_the_remotes(secret_env: SecretEnv) -> None:
    """The check must be able to fail: the tokens really are sent (and only ever there)."""
    env = secret_env.env
    sid, key = env.pair()
    secret_env.cli("link", sid, key)
    secret_env.cli("sync")
    assert env.sentry.requests() and env.tracker.requests()
    # A wrong inline token is refused: the sentinel is what authenticates.
    env.config(sentry={"token": "not-the-sentinel"})
    secret_env.cli("sync", expect=3)


def test_every_command_keeps_the_tokens_to_itself(secret_env: SecretEnv) -> None:
    env = secret_env.env
    commands = set(build_parser()._subparsers._group_actions[0].choices)  # type: ignore[union-attr]
    assert commands <= DRIVEN, f"drive the new command(s) here too: {sorted(commands - DRIVEN)}"

    pairs = [env.pair() for _ in range(3)]
    env.sentry.bookmark(pairs[0][0], "bob@example.com")
    cli = secret_env.cli
    cli("link", *pairs[0], *pairs[1])
    csv = env.folder / "pairs.csv"
    csv.write_text(f"sentry_id,tracker_key\n{pairs[2][0]},{pairs[2][1]}\n", encoding="utf-8")
    cli("link", "--file", str(csv))
    cli("sync", "--dry-run", "--json")
    cli("sync", "--dry-run")
    cli("sync", "--json")
    cli("sync", verbose="-vv", log_format="text")
    # A conflict to list and resolve.
    env.config(sync={"conflict": "manual"})
    env.sentry.set_status(pairs[1][0], "ignored")
    env.tracker.set_status(pairs[1][1], "inProgress")
    cli("sync")
    listed = json.loads(cli("conflicts", "--json").out)
    conflicts = listed if isinstance(listed, list) else listed.get("conflicts", [])
    assert conflicts, listed
    cli("conflicts")
    cli("conflicts", "resolve", str(conflicts[0]["id"]), "--take", "sentry")
    cli("status")
    cli("status", "--json")
    cli("explain", pairs[0][0])
    cli("explain", "--json", pairs[0][1])
    cli("doctor", expect=None)
    cli("doctor", "--json", expect=None)
    cli("unlink", pairs[2][0])
    cli("relink", "--json")
    cli("relink")
    # Creating issues (with the token on the create and on _findByUnique).
    env.config(create={"enabled": True})
    cli("sync", "--json")
    env.sentry.add_issue("backend", "a new error")
    cli("sync", "--json")
    cli("sync", "--backfill", "--force", "--json")
    # The token from the environment instead of the file.
    cli("sync", "--json", env={"BRIDGE_SENTRY__TOKEN": SENTRY_SECRET, "BRIDGE_TRACKER__TOKEN": TRACKER_SECRET})
    cli("demo", expect=None)
    # push setup: the token on the trigger requests, refused without queue admin rights, then granted.
    env.config(push={"public_url": "https://bridge.example.com", "tracker_secret": "a-hook-secret"})
    cli("push", "setup", "--dry-run")
    cli("push", "setup", expect=3)
    env.tracker.set_rights("OPS", ROBOT_LOGIN, {"READ": "users", "WRITE": "users", "CREATE": "users",
                                                "GRANT": "users"})
    cli("push", "setup", "--json")
    cli("push", "setup")
    # config: the inline token is warned about (by key, never by value), the others shown as ***.
    cli("config", "check")
    cli("config", "check", "--json")
    cli("config", "check", "--strict", expect=2)
    cli("config", "show")
    cli("config", "show", "--json")
    cli("config", "show", env={"BRIDGE_SENTRY__TOKEN": SENTRY_SECRET, "BRIDGE_TRACKER__TOKEN": TRACKER_SECRET})
    cli("config", "schema")
    assert secret_env.runs == 35 and secret_env.exceptions_checked > 0
    # The emulators log method, path, query and body: the tokens only ever travel in headers.
    assert not leaks(repr(env.sentry.log) + repr(env.tracker.log))


@pytest.mark.parametrize(("side", "status"), [("sentry", 401), ("sentry", 403), ("tracker", 401), ("tracker", 403)])
def test_refused_credentials(secret_env: SecretEnv, side: str, status: int) -> None:
    env = secret_env.env
    secret_env.cli("link", *env.pair())
    emulator = env.sentry if side == "sentry" else env.tracker
    emulator.inject("status", status=status, times=1000)
    secret_env.cli("sync", expect=3)
    secret_env.cli("sync", "--dry-run", "--json", expect=3)
    secret_env.cli("doctor", "--json", expect=1)
    secret_env.cli("relink", expect=None)


@pytest.mark.parametrize("side", ["sentry", "tracker"])
@pytest.mark.parametrize("kind", ["500", "malformed_json", "html", "reset"])
def test_server_trouble(secret_env: SecretEnv, side: str, kind: str) -> None:
    env = secret_env.env
    pairs = [env.pair() for _ in range(2)]
    secret_env.cli("link", *pairs[0], *pairs[1])
    secret_env.cli("sync")
    emulator = env.sentry if side == "sentry" else env.tracker
    # Every request fails: the cycle's error text goes to stderr and the logs.
    emulator.inject("status" if kind == "500" else kind, status=500, times=1000)  # type: ignore[arg-type]
    secret_env.cli("sync", expect=None)
    # Only the writes fail: the failure rows (status, explain) carry the error text.
    emulator.clear_faults()
    emulator.inject("status" if kind == "500" else kind, status=500, method="PUT" if side == "sentry" else "POST",
                    path=r"/issues/\d+/$" if side == "sentry" else r"/_execute$", times=1000)  # type: ignore[arg-type]
    env.sentry.set_status(pairs[0][0], "resolved")
    env.tracker.set_status(pairs[1][1], "closed", resolution="fixed")
    secret_env.cli("sync", "--json", expect=1)
    assert json.loads(secret_env.cli("status", "--json").out)["failures"]
    secret_env.cli("explain", "--json", pairs[0][0] if side == "tracker" else pairs[1][0], expect=None)


def test_timeouts(secret_env: SecretEnv) -> None:
    env = secret_env.env
    env.config(sentry={"timeout_seconds": 0.2}, tracker={"timeout_seconds": 0.2})
    sid, key = env.pair()
    secret_env.cli("link", sid, key)
    env.sentry.set_status(sid, "resolved")
    env.tracker.inject("timeout_after", method="POST", path=r"/_execute$")
    secret_env.cli("sync", expect=None)
    env.tracker.inject("timeout_before", path=r"/users")
    env.sentry.inject("timeout_before", path=r"/members/", times=2)
    secret_env.cli("sync", expect=None)
    secret_env.cli("doctor", expect=None)


@pytest.mark.parametrize(
    "change",
    [
        {"sentry": {"tokn": SENTRY_SECRET}},                     # an unknown key holding a token
        {"tracker": {"token": [TRACKER_SECRET]}},                # a token of the wrong type
        {"sentry": {"token": {"value": SENTRY_SECRET}}},         # a table where a string belongs
        {"sync": {"interval_seconds": SENTRY_SECRET}},           # a token pasted into the wrong key
        {"tracker": {"org_id": None, "cloud_org_id": None}},     # a real problem beside valid tokens
        {"tracker": {"token_file": "missing.token"}},            # a token file that is not there
        {"mapping": {"users": {SENTRY_SECRET: "alice"}}},        # a token where an e-mail belongs
    ],
)
def test_bad_configs_carrying_tokens(secret_env: SecretEnv, change: dict[str, Any]) -> None:
    env = secret_env.env
    env.config(**change)
    assert secret_env.cli("sync", expect=None).code in (1, 2)
    for command in (("sync", "--dry-run", "--json"), ("status", "--json"), ("doctor",), ("link", "1", "OPS-1"),
                    ("explain", "1"), ("relink",)):
        secret_env.cli(*command, expect=None)


def test_bad_environment_carrying_tokens(secret_env: SecretEnv) -> None:
    env = {
        "BRIDGE_SENTRY__TOKEN": SENTRY_SECRET,
        "BRIDGE_SENTRY__PROJECTS": f'["{SENTRY_SECRET}"',    # broken JSON that contains a token
        "BRIDGE_TRACKER__TOKEN": TRACKER_SECRET,
        "BRIDGE_SYNC__CONFLICT": TRACKER_SECRET,             # a token in a key with a choice
    }
    result = secret_env.cli("sync", expect=2, env=env)
    assert "BRIDGE_SENTRY__PROJECTS" in result.err and "sync.conflict" in result.err


def test_an_empty_token_file(secret_env: SecretEnv) -> None:
    secret_env.token_file.write_text("", encoding="utf-8")
    result = secret_env.cli("sync", expect=2)
    assert "tracker.token_file" in result.err


def test_the_daemon(secret_env: SecretEnv) -> None:
    """`run` as a real process: its stderr (JSON logs at -v), its metrics and its files."""
    env = secret_env.env
    sid, key = env.pair()
    secret_env.cli("link", sid, key)
    with socket_port() as port:
        env.config(sync={"interval_seconds": 1}, metrics={"listen": f"127.0.0.1:{port}"})
        env.tracker.inject("status", status=401, path=r"/users", times=1)  # one refused cycle first
        stderr = env.folder / "daemon.stderr"
        with stderr.open("wb") as sink:
            proc = subprocess.Popen(
                [sys.executable, "-m", "bridge", "-v", "--log-format", "json", "--config", str(env.path), "run"],
                cwd=REPO, env={"PATH": os.environ.get("PATH", "")}, stdin=subprocess.DEVNULL, stdout=sink,
                stderr=sink,
            )
        try:
            deadline = time.monotonic() + 15
            metrics = ""
            while time.monotonic() < deadline:
                if stderr.read_text(errors="replace").count('"cycle.summary"') >= 2:
                    with contextlib.suppress(httpx.HTTPError):
                        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
                    break
                time.sleep(0.1)
            else:
                pytest.fail("the daemon ran no two cycles:\n" + stderr.read_text(errors="replace"))
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(10)
    assert not leaks(metrics)
    assert not leaks(stderr.read_text(errors="replace"))
    secret_env.check_files("run")
    assert json.loads(secret_env.cli("status", "--json").out)["last_cycle"]["ok"]


@contextlib.contextmanager
def socket_port() -> Iterator[int]:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    yield port


def test_the_nets_catch_a_planted_sentinel(secret_env: SecretEnv, tmp_path: Path) -> None:
    """Each check can fail: a sentinel planted where the bridge legitimately echoes a value
    (the organisation is not a secret, so it appears in endpoints) is caught on stderr, in the
    logs and in exceptions; one planted in a file beside the state file is caught too."""
    env = secret_env.env
    secret_env.cli("link", *env.pair())
    env.config(sentry={"organization": SENTRY_SECRET})
    with pytest.raises(AssertionError, match="on stdout|on stderr|log record|exception"):
        secret_env.cli("sync", expect=None)
    for suffix in ("", "-wal", "-shm"):  # the org sentinel above is (rightly) recorded in the state file
        (env.folder / f"bridge.db{suffix}").unlink(missing_ok=True)
    (env.folder / "bridge.db-wal").write_bytes(b"xx" + TRACKER_SECRET.encode())
    with pytest.raises(AssertionError, match="bridge.db-wal"):
        secret_env.check_files("planted")
    (env.folder / "bridge.db-wal").unlink()
    with exceptions_raised() as raised:
        from bridge.config import load_settings

        (tmp_path / "bad.toml").write_text(f'[mapping.users]\n"{SENTRY_SECRET}" = "alice"\n', encoding="utf-8")
        with contextlib.suppress(BridgeError):
            load_settings(tmp_path / "bad.toml", {})  # the problem names the key
    assert any(leaks(text) for text in raised), raised
