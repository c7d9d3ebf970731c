"""The end-to-end harness: both emulators behind real loopback HTTP servers, a bridge.toml in
tmp_path, and the real command line (`bridge.cli.main`) run in-process.

The two loopback servers live for the whole session and get fresh emulators for every test:
stopping a `LoopbackServer` waits out `serve_forever`'s 0.5 s poll, which would cost a second
per test.  Everything a test can see (emulator state, config, state file) is still per test.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from bridge.cli import main
from bridge.clients.http import RetryPolicy
from bridge.sandbox.http import LoopbackServer
from bridge.sandbox.sentry_emulator import DEFAULT_TOKEN as SENTRY_TOKEN
from bridge.sandbox.sentry_emulator import SentryEmulator
from bridge.sandbox.tracker_emulator import DEFAULT_TOKEN as TRACKER_TOKEN
from bridge.sandbox.tracker_emulator import TrackerEmulator

PROJECT = "backend"
QUEUE = "OPS"
# Sentry members (all in the org-wide team, so anyone may be assigned anything).
SENTRY_PEOPLE = ("alice@example.com", "bob@example.com", "carol@corp.example", "dan@example.com")
# Tracker users: alice and bob match by e-mail; carol's Tracker e-mail differs (mapped by
# override); dan has no Tracker account at all.
TRACKER_PEOPLE = {"alice": "alice@example.com", "bob": "bob@example.com", "carol": "carol@example.com"}


class Result(NamedTuple):
    code: int
    out: str
    err: str


def base_config(sentry_url: str, tracker_url: str) -> dict[str, Any]:
    return {
        "sentry": {"url": sentry_url, "organization": "acme", "projects": [PROJECT], "token": SENTRY_TOKEN},
        "tracker": {"url": tracker_url, "org_id": "1234567", "token": TRACKER_TOKEN, "queue": QUEUE},
        "state": {"path": "bridge.db"},
        "sync": {"conflict": "sentry", "retry_attempts": 3, "retry_deadline_seconds": 10},
        # Only existing links are under test; creating issues would add writes of its own.
        "create": {"enabled": False},
        "mapping": {
            "status": {
                "to_tracker": {
                    "unresolved": "open",
                    "unresolved.regressed": "open",
                    "resolved": {"status": "closed", "resolution": "fixed"},
                    "resolvedInNextRelease": {"status": "resolved", "resolution": "fixed"},
                    "ignored": {"status": "closed", "resolution": "wontFix"},
                },
            },
            "users": {"carol@corp.example": "carol"},
        },
    }


# -- a tiny TOML writer (the config is plain data: strings, numbers, lists, tables) -------------


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML for {value!r}")


def to_toml(table: Mapping[str, Any], path: tuple[str, ...] = ()) -> str:
    scalars = {k: v for k, v in table.items() if not isinstance(v, Mapping) and v is not None}
    tables = {k: v for k, v in table.items() if isinstance(v, Mapping)}
    lines = []
    if path and (scalars or not tables):
        lines.append("[" + ".".join(_toml_key(p) for p in path) + "]")
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in scalars.items()]
    text = "\n".join(lines) + ("\n\n" if lines else "")
    return text + "".join(to_toml(v, (*path, k)) for k, v in tables.items())


def deep_merge(base: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """`changes` over `base`; a None value removes the key."""
    merged = copy.deepcopy(dict(base))
    for key, value in changes.items():
        if value is None:
            merged.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


# -- the harness --------------------------------------------------------------------------------


class BridgeEnv:
    """Both emulators, seeded; a config file; the CLI."""

    def __init__(self, folder: Path, sentry_srv: LoopbackServer, tracker_srv: LoopbackServer) -> None:
        self.folder = folder
        self.sentry = SentryEmulator(org="acme")
        self.tracker = TrackerEmulator()
        sentry_srv.emulator = self.sentry
        tracker_srv.emulator = self.tracker
        self.sentry_url, self.tracker_url = sentry_srv.url, tracker_srv.url
        self.sentry.add_project(PROJECT)
        for email in SENTRY_PEOPLE:
            self.sentry.add_user(email, email.split("@")[0].title())
        for login, email in TRACKER_PEOPLE.items():
            self.tracker.add_user(login, email)
        self.path = folder / "bridge.toml"
        self.state_path = folder / "bridge.db"
        self.settings = base_config(self.sentry_url, self.tracker_url)
        self.config()

    def config(self, **overrides: Any) -> dict[str, Any]:
        """Rewrite bridge.toml with `overrides` deep-merged in (sticky for later calls)."""
        self.settings = deep_merge(self.settings, overrides)
        self.path.write_text(to_toml(self.settings), encoding="utf-8")
        return self.settings

    def pair(self, *, tracker: Mapping[str, Any] | None = None, **sentry_kw: Any) -> tuple[str, str]:
        """One new issue on each side (not linked yet)."""
        number = len(self.sentry.issues) + 1
        sid = self.sentry.add_issue(PROJECT, f"Error number {number}", **sentry_kw)
        key = self.tracker.add_issue(QUEUE, f"Ticket for error {number}", **(tracker or {}))
        return sid, key

    def run(self, *args: str) -> Result:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["--config", str(self.path), *args], env={}, out=out,
                        retry_policy=RetryPolicy(waits=False))
        return Result(code, out.getvalue(), err.getvalue())

    def expect(self, code: int, *args: str) -> Result:
        result = self.run(*args)
        assert result.code == code, f"{args}: exit {result.code}, wanted {code}\n{result.out}\n{result.err}"
        return result

    def link(self, *pairs: tuple[str, str]) -> None:
        self.expect(0, "link", *[part for pair in pairs for part in pair])

    def sync_json(self, *args: str, expect: int = 0) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.expect(expect, "sync", "--json", *args).out)
        return data

    def status_json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.expect(0, "status", "--json").out)
        return data

    # -- reading the truth ---------------------------------------------------------------------
    def s_issue(self, sid: str) -> dict[str, Any]:
        return self.sentry.issue_json(sid)

    def t_issue(self, key: str) -> dict[str, Any]:
        return self.tracker.issue_json(key)

    def s_state(self, sid: str) -> tuple[str, str | None]:
        issue = self.s_issue(sid)
        return issue["status"], issue.get("substatus")

    def t_state(self, key: str) -> tuple[str, str | None]:
        issue = self.t_issue(key)
        return issue["status"]["key"], (issue.get("resolution") or {}).get("key")

    def s_assignee(self, sid: str) -> str | None:
        return (self.s_issue(sid).get("assignedTo") or {}).get("email")

    def t_assignee(self, key: str) -> str | None:
        ref = self.t_issue(key).get("assignee")
        return self.login_of(ref["id"]) if ref else None

    def t_followers(self, key: str) -> set[str]:
        return {self.login_of(ref["id"]) for ref in self.t_issue(key).get("followers") or []}

    def login_of(self, uid: str) -> str:
        for login in TRACKER_PEOPLE:
            if self.tracker.uid_of(login) == str(uid):
                return login
        return f"uid:{uid}"


def required_tool(name: str, package: str) -> str:
    """The path of a command-line tool a test runs: in CI (`.ci/run` installs `package`) a
    missing one fails the test, since a skip there would hide what it checks; elsewhere it skips."""
    found = shutil.which(name)
    if found is None:
        if os.environ.get("CI"):
            pytest.fail(f"{name} is missing; .ci/run installs Debian's {package} package for this test")
        pytest.skip(f"{name} is not installed (CI installs Debian's {package} package)")
    return found


@pytest.fixture(scope="session")
def _loopback() -> Iterator[tuple[LoopbackServer, LoopbackServer]]:
    servers = (LoopbackServer(SentryEmulator()), LoopbackServer(TrackerEmulator()))
    with servers[0] as sentry_srv, servers[1] as tracker_srv:
        yield sentry_srv, tracker_srv


@pytest.fixture
def bridge_env(tmp_path: Path, _loopback: tuple[LoopbackServer, LoopbackServer]) -> Iterator[BridgeEnv]:
    # main() points the "bridge" logger at the stderr of its run; put it back afterwards.
    logger = logging.getLogger("bridge")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    yield BridgeEnv(tmp_path, *_loopback)
    logger.handlers[:], logger.level, logger.propagate = saved
