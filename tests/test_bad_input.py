"""Issue 13, item 7: bad input ends in one sentence and exit 2, through the real CLI: tokens
that are not one line of ASCII, `link --file` from a spreadsheet (a UTF-8 BOM) or in another
encoding, and `explain --json`, which prints JSON whatever happens."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv


@pytest.mark.parametrize(("token", "problem"), [
    ("abc\u00a0def-0123456789", "character 4 is not printable ASCII"),
    ("\u201cabcdef0123456789\u201d", "character 1 is not printable ASCII"),
])
def test_a_token_with_non_ascii_characters_is_refused(bridge_env: BridgeEnv, token: str, problem: str) -> None:
    env = bridge_env
    env.config(sentry={"token": token})
    result = env.expect(2, "sync")
    assert f"sentry.token: {problem}" in result.err
    assert token.strip("\u201c\u201d") not in result.err + result.out  # the token itself is never shown
    assert "Traceback" not in result.err


def test_a_token_file_with_more_than_one_line_is_refused(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    secret = env.folder / "tracker.token"
    secret.write_text("y0_AgAAAAtokenpart\nsecond-line-pasted-by-mistake\n", encoding="utf-8")
    settings = dict(env.settings["tracker"])
    settings.pop("token")
    env.settings["tracker"] = settings
    env.config(tracker={"token_file": str(secret)})
    result = env.expect(2, "sync")
    assert f"tracker.token (from {secret}): has more than one line" in result.err
    assert "y0_AgAAAAtokenpart" not in result.err


def test_link_file_from_a_spreadsheet_with_a_bom_is_read(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    sid, key = env.pair()
    csv = env.folder / "pairs.csv"
    csv.write_bytes("\ufeffsentry_id,tracker_key\r\n".encode() + f"{sid},{key}\r\n".encode())
    env.expect(0, "link", "--file", str(csv))
    assert env.status_json()["links"] == 1


def test_link_file_in_another_encoding_is_refused(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    sid, key = env.pair()
    csv = env.folder / "pairs.csv"
    csv.write_bytes(f"{sid},{key}\n".encode("utf-16"))
    result = env.expect(2, "link", "--file", str(csv))
    assert f"{csv}: not UTF-8 text" in result.err and "Traceback" not in result.err
    assert env.status_json()["links"] == 0


def test_explain_json_prints_json_when_it_cannot_explain(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    result = env.expect(1, "explain", "12345", "--json")  # no state file yet
    assert "nothing is linked yet" in json.loads(result.out)["error"]
    env.sync_json()
    result = env.expect(1, "explain", "12345", "--json")
    assert json.loads(result.out)["error"].startswith("not linked: 12345")
    sid, key = env.pair()
    env.link((sid, key))
    env.config(sentry={"token": "wrong-token"})
    result = env.expect(3, "explain", sid, "--json")
    data = json.loads(result.out)
    assert "401" in data["error"] and "sentry.token" in data["advice"]
