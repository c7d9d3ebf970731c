"""Sentry's own command line client, `sentry-cli` (the PyPI package ships the binary), against the
Sentry emulator over loopback HTTP: a third-party client that the emulator was not written for.

What sentry-cli 3.x sends (seen with `--log-level debug`): `issues list` pages through
`GET /api/0/projects/{org}/{project}/issues/?query=&cursor=` (an empty cursor on the first page,
then the Link header's cursor), and `issues resolve|mute|unresolve -i ID` send
`PUT /api/0/projects/{org}/{project}/issues/?id=ID` with `{"status": ..., "snoozeDuration": null}`
(`-n` asks for `resolvedInNextRelease`).  Nothing else: no auth or organization probe first.

The effect of each command is read back through the bridge's own `SentryClient`.  The binary comes
from the `test` extra; without it the tests skip, except under CI (`$CI` set), where a skip would
hide a broken emulator, so they fail instead.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from bridge.clients.http import RetryPolicy
from bridge.clients.sentry import SentryClient
from bridge.sandbox.sentry_emulator import DEFAULT_TOKEN

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv

CLI_TOKEN = "alice-cli-token"  # noqa: S105 - an emulator token: a person's own auth token
PROJECT_ISSUES = "/api/0/projects/acme/backend/issues/"


def find_sentry_cli() -> str | None:
    """The binary installed beside this Python (a venv's bin/), else on PATH."""
    beside = Path(sys.executable).parent / "sentry-cli"
    if beside.exists():
        return str(beside)
    return shutil.which("sentry-cli")


@pytest.fixture(scope="module")
def sentry_cli() -> str:
    found = find_sentry_cli()
    if found is None:
        if os.environ.get("CI"):
            pytest.fail("sentry-cli is missing: `pip install -e .[test]` installs it")
        pytest.skip("sentry-cli is not installed (`pip install -e .[test]` installs it)")
    return found


class Cli:
    """Runs sentry-cli against the emulator, configured only by the documented environment
    variables (docs.sentry.io/cli/configuration: SENTRY_URL, SENTRY_AUTH_TOKEN, SENTRY_ORG,
    SENTRY_PROJECT), from an empty folder with an empty HOME so no `.sentryclirc` interferes."""

    def __init__(self, binary: str, url: str, home: Path) -> None:
        self.binary = binary
        self.env = {
            "PATH": os.environ.get("PATH", ""),
            "HOME": str(home),
            "SENTRY_URL": url,
            "SENTRY_AUTH_TOKEN": CLI_TOKEN,
            "SENTRY_ORG": "acme",
            "SENTRY_PROJECT": "backend",
            "SENTRY_DISABLE_UPDATE_CHECK": "1",
            "SENTRY_LOAD_DOTENV": "0",
        }
        self.home = home

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(  # noqa: S603 - our own argv, no shell
            [self.binary, *args], env=self.env, cwd=self.home, capture_output=True, text=True, timeout=60,
            check=False,
        )
        assert result.returncode == 0, f"sentry-cli {' '.join(args)}: exit {result.returncode}\n{result.stderr}"
        return result


@pytest.fixture
def cli(bridge_env: BridgeEnv, sentry_cli: str, tmp_path: Path) -> Cli:
    bridge_env.sentry.add_token(CLI_TOKEN, user_email="alice@example.com")
    home = tmp_path / "home"
    home.mkdir()
    return Cli(sentry_cli, bridge_env.sentry_url, home)


@pytest.fixture
def bridge_client(bridge_env: BridgeEnv) -> Iterator[SentryClient]:
    client = SentryClient.create(bridge_env.sentry_url, "acme", DEFAULT_TOKEN, policy=RetryPolicy(waits=False))
    yield client
    client.close()


def listed_ids(output: str) -> list[str]:
    """The Issue ID column of sentry-cli's table."""
    rows = [line.split("|") for line in output.splitlines() if line.startswith("|")]
    return [cells[1].strip() for cells in rows[1:]]


def state(client: SentryClient, issue_id: str) -> tuple[str, str | None, dict[str, Any]]:
    issue = client.get_issues([issue_id])[0]
    return issue["status"], issue["substatus"], issue["statusDetails"]


def test_issues_list_pages_through_the_project_issues(bridge_env: BridgeEnv, cli: Cli) -> None:
    env = bridge_env
    env.sentry.add_project("web")
    ours = [env.sentry.add_issue("backend", f"Error {n}") for n in range(104)]
    resolved = env.sentry.add_issue("backend", "Fixed already", status="resolved")
    low = env.sentry.add_issue("backend", "Only a warning", level="info")  # low priority
    elsewhere = env.sentry.add_issue("web", "Another project")

    everything = listed_ids(cli.run("issues", "list").stdout)
    # `query=` is sent empty: every status and priority, but only this project's issues, and two
    # pages of 100 followed through the Link header.
    assert sorted(everything) == sorted([*ours, resolved, low])
    assert elsewhere not in everything
    lists = env.sentry.requests("GET", PROJECT_ISSUES)
    assert [dict(r.query).get("query") for r in lists] == ["", ""]
    assert dict(lists[0].query)["cursor"] == "" and dict(lists[1].query)["cursor"] != ""
    assert [r.status for r in lists] == [200, 200]

    assert len(listed_ids(cli.run("issues", "list", "--pages", "1").stdout)) == 100
    unresolved = listed_ids(cli.run("issues", "list", "--query", "is:unresolved").stdout)
    assert resolved not in unresolved and low in unresolved and len(unresolved) == 105


def test_resolve_mute_and_unresolve_by_id(bridge_env: BridgeEnv, cli: Cli, bridge_client: SentryClient) -> None:
    env = bridge_env
    env.sentry.add_project("web")
    first = env.sentry.add_issue("backend", "ZeroDivisionError")
    second = env.sentry.add_issue("backend", "KeyError")
    other = env.sentry.add_issue("web", "In another project")
    env.sentry.clear_log()

    assert "new status: resolved" in cli.run("issues", "resolve", "-i", first).stdout
    assert state(bridge_client, first) == ("resolved", None, {})
    assert state(bridge_client, second)[0] == "unresolved"

    cli.run("issues", "mute", "-i", second)
    assert state(bridge_client, second) == ("ignored", "archived_forever", {})

    cli.run("issues", "unresolve", "-i", first)
    assert state(bridge_client, first) == ("unresolved", "regressed", {})  # it was resolved before

    cli.run("issues", "resolve", "--next-release", "-i", first)
    status, _sub, details = state(bridge_client, first)
    assert status == "resolved" and details["inNextRelease"] is True

    # One PUT per command, to the project's bulk endpoint, with the issue as `id`.
    puts = env.sentry.requests("PUT")
    assert [(r.path, r.query) for r in puts] == [(PROJECT_ISSUES, [("id", issue)]) for issue in
                                                 (first, second, first, first)]
    assert [r.body for r in puts] == [{"status": s, "snoozeDuration": None} for s in
                                      ("resolved", "muted", "unresolved", "resolvedInNextRelease")]
    assert [r.status for r in puts] == [200] * 4
    # The person whose token sentry-cli used did it.
    alice = env.sentry.user_id("alice@example.com")
    kinds = [(a.type, a.user_id) for a in env.sentry.activities(first)]
    assert kinds == [("set_resolved", alice), ("set_unresolved", alice), ("set_resolved_in_release", alice)]

    # An issue of another project is out of this project's scope: nothing is changed (204).
    cli.run("issues", "resolve", "-i", other)
    assert state(bridge_client, other)[0] == "unresolved"
    assert env.sentry.requests("PUT")[-1].status == 204
