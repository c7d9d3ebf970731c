"""Issue 17, items 1-3 through the real command line: `config check` (every problem with its key
path, the offline lint, several files as one host's, `--json` for CI, no network and no state),
`config show` (the effective config with origins, secrets as ***), `config schema` (what editors
read, from the same models)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import socket
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any, get_args

import jsonschema
import pytest
from pydantic import BaseModel, SecretStr

from bridge.cli import main
from bridge.config import SECRETS, Settings
from bridge.config_schema import config_schema
from tests.conftest import Result

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "config" / "bridge.example.toml"
DEMO = ROOT / "config" / "demo.toml"
SCHEMA_FILE = ROOT / "config" / "bridge.schema.json"

SENTRY_SECRET = "SENTINEL-inline-sentry-5d1e"
TRACKER_SECRET = "SENTINEL-credential-tracker-77ab"
HOOK_SECRET = "SENTINEL-hook-file-0c4f"

MINIMAL = """\
[sentry]
organization = "acme"
projects = ["backend"]

[tracker]
org_id = "42"
queue = "OPS"
"""


def cli(*args: str, env: dict[str, str] | None = None) -> Result:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err):
        code = main(list(args), env=env or {}, out=out)
    return Result(code, out.getvalue(), err.getvalue())


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems(result: Result) -> list[dict[str, Any]]:
    data: dict[str, Any] = json.loads(result.out)
    return list(data["problems"])


def keyed(result: Result) -> dict[str | None, str]:
    return {p["key"]: p["message"] for p in problems(result)}


# -- check: the basics ---------------------------------------------------------------------------


def test_a_clean_file_passes_even_with_strict() -> None:
    for args in (("config", "check", str(EXAMPLE)), ("config", "check", "--strict", str(EXAMPLE))):
        result = cli(*args)
        assert result.code == 0, result
        assert result.out.splitlines() == [f"{EXAMPLE}: ok", "1 file(s) checked: 0 error(s), 0 warning(s)"]


def test_the_file_defaults_to_the_config_option_and_its_env(tmp_path: Path) -> None:
    good = write(tmp_path, "good.toml", MINIMAL)
    assert cli("--config", str(good), "config", "check").code == 0
    assert cli("config", "check", env={"BRIDGE_CONFIG": str(good)}).code == 0
    result = cli("config", "check", env={"BRIDGE_CONFIG": str(tmp_path / "gone.toml")})
    assert result.code == 2 and "gone.toml: error: config file not found" in result.out


def test_every_problem_is_listed_with_its_key_path_and_exit_2(tmp_path: Path) -> None:
    bad = write(tmp_path, "bad.toml", MINIMAL + """
[sync]
intervall_seconds = 30
concurrency = 99

[mapping.status.to_sentry]
closed = "done"
""")
    result = cli("config", "check", "--json", str(bad), env={"BRIDGE_SYNC__CONFLICT": "nobody"})
    assert result.code == 2, result
    found = keyed(result)
    assert set(found) >= {"sync.intervall_seconds", "sync.concurrency", "sync.conflict",
                          "mapping.status.to_sentry.closed"}, found
    assert found["sync.intervall_seconds"] == "unknown key"
    assert "(from $BRIDGE_SYNC__CONFLICT)" in found["sync.conflict"]
    data = json.loads(result.out)
    assert data["ok"] is False and data["files"] == [{"file": str(bad), "ok": False, "errors": 4, "warnings": 0}]
    # The same in text: one line per problem, each starting with the file.
    text = cli("config", "check", str(bad), env={"BRIDGE_SYNC__CONFLICT": "nobody"})
    assert text.code == 2 and "Traceback" not in text.out + text.err
    assert f"{bad}: error: sync.intervall_seconds: unknown key" in text.out.splitlines()
    assert text.out.splitlines()[-1] == "1 file(s) checked: 4 error(s), 0 warning(s)"


def test_a_file_that_is_not_toml_is_one_problem_of_that_file(tmp_path: Path) -> None:
    broken = write(tmp_path, "broken.toml", "[sentry\norganization = 'x'\n")
    result = cli("config", "check", "--json", str(broken))
    assert result.code == 2
    [problem] = problems(result)
    assert problem["key"] is None and problem["message"].startswith("not valid TOML:")


# -- check: a config repository's CI step -------------------------------------------------------------


def _repository(folder: Path) -> None:
    """Three bridges of one host, as kept in git; broken.toml has a typo and a user mapped twice."""
    write(folder, "config/acme.toml", MINIMAL + '\n[metrics]\nlisten = "127.0.0.1:9464"\n')
    write(folder, "config/beta.toml", MINIMAL.replace("acme", "beta").replace("OPS", "BETA")
          + '\n[state]\npath = "beta.db"\n\n[metrics]\nlisten = "127.0.0.1:9465"\n')
    write(folder, "config/broken.toml", MINIMAL.replace("acme", "gamma") + """
[state]
path = "gamma.db"

[sync.fields]
status = "sideways"

[mapping.users]
"alice@example.com" = "alice"
"ALICE@example.com" = "alice2"
""")


def test_the_ci_step_over_a_config_repository_names_the_bad_file_and_key(tmp_path: Path) -> None:
    """What a config repository's CI runs, through a shell and its glob, as a child process."""
    _repository(tmp_path)
    command = f"{shlex.quote(sys.executable)} -m bridge config check config/*.toml --json"
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
    result = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    data = json.loads(result.stdout)
    assert data["ok"] is False
    assert {f["file"]: f["ok"] for f in data["files"]} == {
        "config/acme.toml": True, "config/beta.toml": True, "config/broken.toml": False}
    bad = {(p["file"], p["key"]) for p in data["problems"] if p["level"] == "error"}
    assert bad == {("config/broken.toml", "sync.fields.status"),
                   ("config/broken.toml", 'mapping.users."ALICE@example.com"')}
    message = next(p["message"] for p in data["problems"] if p["key"] == 'mapping.users."ALICE@example.com"')
    assert "duplicate mapping: the same e-mail as 'alice@example.com'" in message
    # Fixed, the same step passes.
    broken = tmp_path / "config" / "broken.toml"
    text = broken.read_text().replace('"sideways"', '"both"')
    broken.write_text(text.replace('"ALICE@example.com" = "alice2"\n', ""))
    fixed = subprocess.run(command, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert fixed.returncode == 0, fixed.stdout + fixed.stderr
    assert json.loads(fixed.stdout)["ok"] is True


# -- check: no network, no state -------------------------------------------------------------------


def test_check_and_show_touch_neither_the_network_nor_the_state(tmp_path: Path) -> None:
    """Both APIs point at a listening socket that records every connection; one config's state
    folder is missing, the other's state file is garbage: both files pass, nothing connected,
    nothing was created or changed beside them."""
    with socket.socket() as trap:
        trap.bind(("127.0.0.1", 0))
        trap.listen(8)
        url = f"http://127.0.0.1:{trap.getsockname()[1]}"
        remote = f'\n[sentry]\nurl = "{url}"\norganization = "acme"\n\n[tracker]\nurl = "{url}"\norg_id = "1"\n' \
                 f'queue = "OPS"\n\n[push]\npublic_url = "{url}"\n'
        missing = write(tmp_path, "missing.toml", remote + '\n[state]\npath = "no-such-folder/bridge.db"\n')
        damaged = write(tmp_path, "damaged.toml", remote + '\n[state]\npath = "damaged.db"\n')
        (tmp_path / "damaged.db").write_bytes(b"this is not SQLite")
        before = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.iterdir()}
        env = {"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(ROOT)}
        runs = [["config", "check", str(missing), str(damaged)], ["config", "check", "--json", str(damaged)],
                ["config", "show", str(missing)], ["config", "show", "--json", str(damaged)]]
        for args in runs:
            result = subprocess.run([sys.executable, "-m", "bridge", *args], env=env, capture_output=True, text=True,
                                    timeout=60, cwd=tmp_path)
            assert result.returncode == 0, (args, result.stdout, result.stderr)
        trap.setblocking(False)
        with pytest.raises(BlockingIOError):
            trap.accept()  # nobody knocked
    after = {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in tmp_path.iterdir()}
    assert after == before  # no lock, no WAL, no state file, no folder made; the garbage untouched
    # A command that does look at the state refuses both (so the check above could have failed).
    assert "no-such-folder does not exist" in cli("--config", str(missing), "status").err
    assert "is damaged" in cli("--config", str(damaged), "status").err


# -- check: the offline lint ---------------------------------------------------------------------------


def test_the_default_mapping_is_clean_in_every_direction(tmp_path: Path) -> None:
    for status in ("both", "to_tracker", "to_sentry"):
        for priority in ("off", "both"):
            fields = f'\n[sync.fields]\nstatus = "{status}"\npriority = "{priority}"\n'
            path = write(tmp_path, "b.toml", MINIMAL + fields)
            result = cli("config", "check", "--strict", "--json", str(path))
            assert result.code == 0 and problems(result) == [], (status, priority, result.out)


ONE_SIDED = MINIMAL + """
[mapping.status.to_tracker]
unresolved = "open"
resolved = { status = "closed", resolution = "fixed" }
ignored = { status = "closed", resolution = "wontFix" }
resolvedInNextRelease = { status = "released", resolution = "fixed" }

[mapping.status.to_sentry]
open = "unresolved"
"""


def test_one_sided_and_ambiguous_status_tables_are_named(tmp_path: Path) -> None:
    path = write(tmp_path, "m.toml", ONE_SIDED)
    result = cli("config", "check", "--json", str(path))
    assert result.code == 0, result  # warnings
    found = keyed(result)
    assert set(found) == {"mapping.status.to_sentry.closed", "mapping.status.to_sentry.released"}, found
    assert found["mapping.status.to_sentry.closed"].startswith(
        "missing, and ambiguous: 'resolved' and 'ignored' map to 'closed' in to_tracker")
    assert found["mapping.status.to_sentry.released"].startswith(
        "missing: one-sided, to_tracker maps 'resolvedInNextRelease' to 'released' but nothing maps 'released' back")
    assert all(p["level"] == "warning" for p in problems(result))
    assert cli("config", "check", "--strict", str(path)).code == 2
    # Flowing one way, the reverse table is never read: nothing to say.
    one_way = cli("config", "check", "--json", str(path), env={"BRIDGE_SYNC__FIELDS__STATUS": "to_tracker"})
    assert problems(one_way) == []
    # The reverse row settles the ambiguity: a many-to-one table with its way back is a decision.
    settled = write(tmp_path, "s.toml", ONE_SIDED + 'closed = "resolved"\nreleased = "resolvedInNextRelease"\n')
    assert problems(cli("config", "check", "--json", str(settled))) == []


def test_the_other_direction_and_unmapped_values(tmp_path: Path) -> None:
    path = write(tmp_path, "m.toml", MINIMAL + """
[sync.fields]
priority = "both"

[mapping.status.to_tracker]
"unresolved.regressed" = "open"
resolved = { status = "closed", resolution = "fixed" }

[mapping.status.to_sentry]
open = "unresolved"
inProgress = "unresolved"
closed = "resolved"
wontfix = "ignored"

[mapping.priority.to_tracker]
high = "critical"
medium = "normal"

[mapping.priority.to_sentry]
critical = "high"
normal = "medium"
minor = "low"
""")
    found = keyed(cli("config", "check", "--json", str(path)))
    assert set(found) == {"mapping.status.to_tracker.unresolved", "mapping.status.to_tracker.ignored",
                          "mapping.status.to_tracker.resolvedInNextRelease", "mapping.priority.to_tracker.low"}, found
    # Two Tracker statuses to one Sentry state that has no row back (the refined row alone does
    # not cover plain `unresolved`): ambiguous.
    assert found["mapping.status.to_tracker.unresolved"].startswith(
        "missing, and ambiguous: 'inProgress' and 'open' map to 'unresolved' in to_sentry")
    assert found["mapping.status.to_tracker.ignored"].startswith("missing: one-sided, to_sentry maps 'wontfix'")
    assert found["mapping.status.to_tracker.resolvedInNextRelease"].startswith(
        "missing: a Sentry issue whose status is 'resolvedInNextRelease' has no Tracker status")
    assert found["mapping.priority.to_tracker.low"].startswith("missing: one-sided, to_sentry maps 'minor' to 'low'")
    # Priority off: its tables are not read, so not judged.
    off = keyed(cli("config", "check", "--json", str(path), env={"BRIDGE_SYNC__FIELDS__PRIORITY": "off"}))
    assert "mapping.priority.to_tracker.low" not in off and len(off) == 3


def test_users_mapped_twice_in_the_file_or_through_the_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "u.toml", MINIMAL + '\n[mapping.users]\n"alice@example.com" = "alice"\n'
                                               '"bob@example.com" = "bob"\n')
    assert cli("config", "check", str(path)).code == 0
    result = cli("config", "check", "--json", str(path), env={"BRIDGE_MAPPING__USERS": '{"carol@example.com": "bob"}'})
    assert result.code == 2
    assert keyed(result) == {'mapping.users."carol@example.com"': "duplicate mapping: 'bob@example.com' already maps "
                                                                  "to login 'bob' (from $BRIDGE_MAPPING__USERS)"}


def test_routes_nothing_takes(tmp_path: Path) -> None:
    routes = '\n[create.routes]\nweb = "WEB"\n"Web App" = "APP"\n'
    every_project = write(tmp_path, "r.toml", MINIMAL.replace('projects = ["backend"]\n', "") + routes)
    found = keyed(cli("config", "check", "--json", str(every_project)))
    assert list(found) == ['create.routes."Web App"'], found
    assert found['create.routes."Web App"'].startswith("not a Sentry project slug")
    off = keyed(cli("config", "check", "--json", str(every_project), env={"BRIDGE_CREATE__ENABLED": "false"}))
    assert list(off) == ["create.routes"] and off["create.routes"].startswith("create.enabled = false: no new issue")
    # A route to a project that is not polled is the loader's error, with its key.
    polled = write(tmp_path, "p.toml", MINIMAL + routes)
    result = cli("config", "check", "--json", str(polled))
    assert result.code == 2
    assert keyed(result)["create.routes.web"] == "project is not in sentry.projects, so never polled"


def test_secrets_written_inline_are_warned_about_and_never_shown(tmp_path: Path) -> None:
    path = write(tmp_path, "s.toml", MINIMAL.replace('projects = ["backend"]\n', f'token = "{SENTRY_SECRET}"\n')
                 + f'\n[push]\nenabled = true\ntracker_secret = "{HOOK_SECRET}"\n')
    env = {"BRIDGE_TRACKER__TOKEN": TRACKER_SECRET}  # from the environment: not the file's problem
    result = cli("config", "check", "--json", str(path), env=env)
    assert result.code == 0, result
    found = keyed(result)
    assert set(found) == {"sentry.token", "push.tracker_secret"}
    assert "sentry.token_file" in found["sentry.token"] and "credential sentry-token" in found["sentry.token"]
    assert "push.tracker_secret_file" in found["push.tracker_secret"]
    assert "credential tracker-hook-secret" in found["push.tracker_secret"]
    strict = cli("config", "check", "--strict", str(path), env=env)
    assert strict.code == 2
    for text in (result.out, result.err, strict.out, strict.err):
        assert SENTRY_SECRET not in text and TRACKER_SECRET not in text and HOOK_SECRET not in text


def test_listeners_on_one_port_in_one_file(tmp_path: Path) -> None:
    path = write(tmp_path, "p.toml", MINIMAL + '\n[metrics]\nlisten = "0.0.0.0:8788"\n\n[push]\nenabled = true\n')
    result = cli("config", "check", "--json", str(path))
    assert result.code == 2
    assert keyed(result)["push.listen"].startswith("127.0.0.1:8788 is on the port of metrics.listen (0.0.0.0:8788)")
    # Push off: nothing binds its port.
    assert cli("config", "check", str(path), env={"BRIDGE_PUSH__ENABLED": "false"}).code == 0


def test_several_files_are_one_host_shared_ports_and_state_files(tmp_path: Path) -> None:
    one = write(tmp_path, "one.toml", MINIMAL + '\n[state]\npath = "shared.db"\n[metrics]\nlisten = "127.0.0.1:9464"\n')
    two = write(tmp_path, "two.toml", MINIMAL + '\n[state]\npath = "two.db"\n[metrics]\nlisten = "[::1]:9464"\n')
    three = write(tmp_path, "three.toml", MINIMAL + '\n[state]\npath = "shared.db"\n[metrics]\n'
                  'listen = "localhost:9464"\n[push]\nenabled = true\nlisten = "0.0.0.0:9465"\n')
    four = write(tmp_path, "four.toml", MINIMAL + '\n[state]\npath = "four.db"\n[push]\nenabled = true\n'
                                                  'listen = "127.0.0.1:9465"\n')
    assert cli("config", "check", str(one), str(two)).code == 0  # other hosts' loopbacks
    result = cli("config", "check", "--json", str(one), str(two), str(three), str(four))
    assert result.code == 2
    found = {(p["file"], p["key"]): (p["level"], p["message"]) for p in problems(result)}
    assert found[(str(three), "metrics.listen")] == ("error", (
        f"localhost:9464 is also metrics.listen of {one}: two bridges on one host cannot listen on one port (the "
        "second cannot start its listener); give each its own port"))
    assert found[(str(four), "push.listen")][1].startswith(f"127.0.0.1:9465 is also push.listen of {three}")
    level, message = found[(str(three), "state.path")]
    assert level == "warning" and message.startswith(f"the same state file as {one} ({tmp_path / 'shared.db'})")
    assert len(found) == 3, found
    # Each file alone is fine: the clash is between them.
    for path in (one, three, four):
        assert cli("config", "check", str(path)).code == 0
    # One file named twice is one bridge, not two.
    assert cli("config", "check", str(one), str(one)).code == 0


# -- show ------------------------------------------------------------------------------------------


def test_show_names_every_origin_and_redacts_every_secret(tmp_path: Path) -> None:
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "tracker-token").write_text(TRACKER_SECRET + "\n", encoding="utf-8")
    (tmp_path / "hook.secret").write_text(HOOK_SECRET, encoding="utf-8")
    path = write(tmp_path, "acme.toml", MINIMAL.replace('projects = ["backend"]\n',
                                                        f'projects = ["backend"]\ntoken = "{SENTRY_SECRET}"\n')
                 + '\n[state]\npath = "acme.db"\n\n[push]\ntracker_secret_file = "hook.secret"\n'
                 + '\n[mapping.users]\n"Alice@Example.com" = "alice"\n')
    env = {"BRIDGE_SYNC__INTERVAL_SECONDS": "30", "BRIDGE_MAPPING__USERS": '{"bob@example.com": "bob"}',
           "CREDENTIALS_DIRECTORY": str(credentials)}
    shown = cli("config", "show", str(path), env=env)
    assert shown.code == 0, shown
    for secret in (SENTRY_SECRET, TRACKER_SECRET, HOOK_SECRET):
        assert secret not in shown.out + shown.err
    parsed = tomllib.loads(shown.out)  # it is TOML
    assert parsed["sync"]["interval_seconds"] == 30 and parsed["state"]["path"] == str(tmp_path / "acme.db")
    assert parsed["sentry"]["token"] == parsed["tracker"]["token"] == parsed["push"]["tracker_secret"] == "***"
    lines = shown.out.splitlines()

    def origin_of(prefix: str) -> str:
        [line] = [line for line in lines if line.startswith(prefix)]
        return line.rsplit("  # ", 1)[1]

    assert origin_of("interval_seconds = 30") == "env BRIDGE_SYNC__INTERVAL_SECONDS"
    assert origin_of('organization = "acme"') == "file"
    assert origin_of("conflict = ") == "default"
    assert origin_of('"alice@example.com" = "alice"') == "file"
    assert origin_of('"bob@example.com" = "bob"') == "env BRIDGE_MAPPING__USERS"
    assert origin_of('tracker_secret = "***"') == f"tracker_secret_file {tmp_path / 'hook.secret'}"
    assert "# app_installation = (not set)" in shown.out

    data = json.loads(cli("config", "show", "--json", str(path), env=env).out)
    assert data["config_path"] == str(path)
    sources = data["sources"]
    assert sources["sentry.token"] == "file"
    assert sources["tracker.token"] == "credential tracker-token"
    assert sources["sync.interval_seconds"] == "env BRIDGE_SYNC__INTERVAL_SECONDS"
    assert sources["state.path"] == "file" and data["settings"]["state"]["path"] == str(tmp_path / "acme.db")
    assert sources['mapping.users."bob@example.com"'] == "env BRIDGE_MAPPING__USERS"
    assert sources["push.sentry_secret"] == "not set (no credential sentry-hook-secret in $CREDENTIALS_DIRECTORY)"
    assert data["settings"]["push"]["sentry_secret"] is None and data["settings"]["tracker"]["token"] == "***"
    # The environment's token wins over the file's, and says so; a token_file names itself.
    (tmp_path / "sentry.token").write_text(SENTRY_SECRET, encoding="utf-8")
    env2 = {"BRIDGE_TRACKER__TOKEN": TRACKER_SECRET, "BRIDGE_SENTRY__TOKEN": "",
            "BRIDGE_SENTRY__TOKEN_FILE": "sentry.token"}
    again = cli("config", "show", "--json", str(path), env=env2)
    assert SENTRY_SECRET not in again.out and TRACKER_SECRET not in again.out
    sources = json.loads(again.out)["sources"]
    assert sources["tracker.token"] == "env BRIDGE_TRACKER__TOKEN"
    assert sources["sentry.token"] == f"token_file {tmp_path / 'sentry.token'}"
    assert sources["sentry.token_file"] == "env BRIDGE_SENTRY__TOKEN_FILE"


def test_show_says_a_token_is_missing_or_unreadable(tmp_path: Path) -> None:
    path = write(tmp_path, "t.toml", MINIMAL.replace('queue = "OPS"', 'queue = "OPS"\ntoken_file = "gone"'))
    data = json.loads(cli("config", "show", "--json", str(path)).out)
    assert data["sources"]["sentry.token"] == "not set" and data["settings"]["sentry"]["token"] is None
    assert data["sources"]["tracker.token"] == f"token_file {tmp_path / 'gone'} (cannot be read)"


def test_show_of_a_bad_config_is_one_message_and_exit_2(tmp_path: Path) -> None:
    path = write(tmp_path, "bad.toml", MINIMAL + "\n[sync]\nintervall_seconds = 3\n")
    result = cli("config", "show", str(path))
    assert result.code == 2 and result.out == ""
    assert result.err == "configuration problems:\n  - sync.intervall_seconds: unknown key\n"


# -- schema ----------------------------------------------------------------------------------------


def test_the_schema_is_the_committed_file_and_the_models() -> None:
    result = cli("config", "schema")
    assert result.code == 0
    printed = json.loads(result.out)
    assert printed == config_schema()
    assert printed == json.loads(SCHEMA_FILE.read_text(encoding="utf-8")), (
        "config/bridge.schema.json is stale: sentry-tracker-bridge config schema > config/bridge.schema.json")
    assert set(printed["properties"]) == set(Settings.model_fields) - {"config_path"}


@pytest.mark.parametrize("validator", [jsonschema.Draft7Validator, jsonschema.Draft202012Validator])
def test_the_schema_accepts_what_the_bridge_accepts_and_refuses_mistakes(validator: Any, tmp_path: Path) -> None:
    schema = config_schema()
    validator.check_schema(schema)
    check = validator(schema)
    for path in (EXAMPLE, DEMO):
        assert list(check.iter_errors(tomllib.loads(path.read_text(encoding="utf-8")))) == [], path
    # The file's shorthands: a status string for a target, a number for org_id.
    loose = tomllib.loads(MINIMAL.replace('org_id = "42"', "org_id = 42")
                          + '\n[mapping.status.to_tracker]\nunresolved = "open"\n')
    assert list(check.iter_errors(loose)) == []
    for mistake in ('\n[sync]\nintervall_seconds = 3\n', '\n[sync]\nconflict = "nobody"\n',
                    '\n[sync]\nconcurrency = 0\n', '\n[sync.fields]\nstatus = "sideways"\n',
                    '\n[mapping.status.to_sentry]\nclosed = "done"\n', '\n[extra]\nkey = 1\n'):
        assert list(check.iter_errors(tomllib.loads(MINIMAL + mistake))), mistake


def test_the_example_points_editors_at_the_schema() -> None:
    first = EXAMPLE.read_text(encoding="utf-8").splitlines()[0]
    assert first == "#:schema ./bridge.schema.json"
    assert (EXAMPLE.parent / first.split(" ", 1)[1]).resolve() == SCHEMA_FILE


def test_every_secret_of_the_models_is_in_the_secrets_table() -> None:
    """`config show` redacts and `config check` looks for what SECRETS lists: a new secret
    setting must be listed there."""
    found = []
    for section, info in Settings.model_fields.items():
        model = info.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            continue
        for name, field in model.model_fields.items():
            if SecretStr in (field.annotation, *get_args(field.annotation)):
                found.append((section, name))
    assert sorted(found) == sorted(secret.key for secret in SECRETS)
    for secret in SECRETS:
        section = Settings.model_fields[secret.file_key[0]].annotation
        assert isinstance(section, type) and issubclass(section, BaseModel)
        assert secret.file_key[1] in section.model_fields


# -- review follow-ups (tests/test_review_deploy.py): check vs. the loader, origins, schema, redaction --


def test_check_tolerates_absent_secrets_but_not_given_ones_that_run_refuses(tmp_path: Path) -> None:
    """A token or hook secret that is not here (CI has none) passes; one that is given but that
    `run` refuses fails the check, whether inline, from the environment, a token file or a
    hook secret file."""
    (tmp_path / "empty.secret").write_text("\n", encoding="utf-8")
    absent = write(tmp_path, "absent.toml", MINIMAL.replace('queue = "OPS"', 'queue = "OPS"\ntoken_file = "gone"')
                   + '\n[push]\nenabled = true\ntracker_secret_file = "gone"\n')
    assert cli("config", "check", str(absent)).code == 0
    empty = write(tmp_path, "empty.toml",
                  MINIMAL.replace('queue = "OPS"', 'queue = "OPS"\ntoken_file = "empty.secret"'))
    assert keyed(cli("config", "check", "--json", str(empty))) == {
        "tracker.token_file": f"{tmp_path / 'empty.secret'} is empty"}
    hook = write(tmp_path, "hook.toml", MINIMAL + '\n[push]\nenabled = true\nsentry_secret_file = "empty.secret"\n')
    result = cli("config", "check", "--json", str(hook))
    assert result.code == 2 and set(keyed(result)) == {"push.sentry_secret_file"}
    # Hooks off: `run` never reads the secret, so neither does the check.
    assert cli("config", "check", str(hook), env={"BRIDGE_PUSH__ENABLED": "false"}).code == 0
    garbled = cli("config", "check", "--json", str(write(tmp_path, "ok.toml", MINIMAL)),
                  env={"BRIDGE_SENTRY__TOKEN": SENTRY_SECRET[:4] + "\u201c" + SENTRY_SECRET[4:]})
    assert garbled.code == 2
    assert keyed(garbled)["sentry.token"].startswith("character 5 is not printable ASCII")


def test_show_credits_the_environment_with_exactly_the_rows_it_set(tmp_path: Path) -> None:
    """Variable names arrive lower-cased: a row of a table the loader re-spells (Sentry states)
    is the row it names and the variable wins it; in a table that keeps its keys' case it is a
    row of its own, which `config check` warns about; a JSON table keeps its keys' case."""
    path = write(tmp_path, "acme.toml", MINIMAL + (
        '\n[mapping.status.to_tracker]\nunresolved = "open"\nresolvedInNextRelease = "resolved"\n'
        'resolved = { status = "closed", resolution = "fixed" }\n'
        'ignored = { status = "closed", resolution = "wontFix" }\n'
        '\n[mapping.status.to_sentry]\nopen = "unresolved"\ninProgress = "unresolved"\n'
        'resolved = "resolvedInNextRelease"\nclosed = "resolved"\n\n[mapping.users]\n"Alice@Example.com" = "alice"\n'))
    env = {"BRIDGE_MAPPING__STATUS__TO_TRACKER__RESOLVEDINNEXTRELEASE": "closed",
           "BRIDGE_MAPPING__STATUS__TO_SENTRY__INPROGRESS": "resolved"}
    data = json.loads(cli("config", "show", "--json", str(path), env=env).out)
    sources, status = data["sources"], data["settings"]["mapping"]["status"]
    assert status["to_tracker"]["resolvedInNextRelease"] == {"status": "closed"}
    assert sources["mapping.status.to_tracker.resolvedInNextRelease"] == (
        "env BRIDGE_MAPPING__STATUS__TO_TRACKER__RESOLVEDINNEXTRELEASE")
    assert sources["mapping.status.to_tracker.unresolved"] == "file"
    assert sources["mapping.status.to_sentry.inProgress"] == "file"
    assert sources["mapping.status.to_sentry.inprogress"] == "env BRIDGE_MAPPING__STATUS__TO_SENTRY__INPROGRESS"
    assert sources['mapping.users."alice@example.com"'] == "file"
    found = keyed(cli("config", "check", "--json", str(path), env=env))
    assert set(found) == {"mapping.status.to_sentry.inprogress"}, found
    message = found["mapping.status.to_sentry.inprogress"]
    assert "$BRIDGE_MAPPING__STATUS__TO_SENTRY__INPROGRESS" in message
    assert "'inProgress' (which stays in force)" in message
    assert """BRIDGE_MAPPING__STATUS__TO_SENTRY='{"inProgress": ...}'""" in message
    # Done as advised: the JSON table's key keeps its case and overrides the file's row.
    advised = {"BRIDGE_MAPPING__STATUS__TO_TRACKER__RESOLVEDINNEXTRELEASE": "closed",
               "BRIDGE_MAPPING__STATUS__TO_SENTRY": '{"inProgress": "resolved"}'}
    data = json.loads(cli("config", "show", "--json", str(path), env=advised).out)
    assert data["settings"]["mapping"]["status"]["to_sentry"]["inProgress"] == "resolved"
    assert data["sources"]["mapping.status.to_sentry.inProgress"] == "env BRIDGE_MAPPING__STATUS__TO_SENTRY"
    assert keyed(cli("config", "check", "--json", str(path), env=advised)) == {}


@pytest.mark.parametrize(("section", "key", "value", "accepted"), [
    ("metrics", "listen", "[::1]:9464", True),
    ("metrics", "listen", "localhost:09464", True),
    ("push", "listen", "0.0.0.0:65535", True),
    ("metrics", "listen", "127.0.0.1:0", False),
    ("metrics", "listen", "::1:9464", False),
    ("metrics", "listen", "host:", False),
    ("sentry", "url", "HTTPS://sentry.example.com/", True),
    ("tracker", "web_url", "http://tracker.local/api/0", True),
    ("push", "public_url", "https://bridge.example.com", True),
    ("tracker", "url", "ftp://tracker.local", False),
    ("push", "public_url", "https://", False),
    ("sync.fields", "followers", "off", True),
    ("sync.fields", "followers", "to_sentry", False),
])
def test_the_schema_patterns_agree_with_the_loader(tmp_path: Path, section: str, key: str, value: str,
                                                   accepted: bool) -> None:
    """The patterns and enums the schema adds never refuse what the loader accepts."""
    head = f"[{section}]\n"
    text = MINIMAL.replace(head, head + f'{key} = "{value}"\n') if head in MINIMAL else (
        MINIMAL + f'\n{head}{key} = "{value}"\n')
    assert (cli("config", "check", str(write(tmp_path, "x.toml", text))).code == 0) is accepted
    errors = list(jsonschema.Draft7Validator(config_schema()).iter_errors(tomllib.loads(text)))
    assert (errors == []) is accepted, errors


def test_short_secrets_are_redacted_where_they_stand_and_nowhere_else(tmp_path: Path) -> None:
    """The secret keys print *** whatever the secret's length; the text-wide safety net takes only
    secrets of 16 characters or more, so a short one does not garble names, URLs and advice."""
    path = write(tmp_path, "short.toml", MINIMAL.replace('queue = "OPS"', 'queue = "OPS"\ntoken = "sentry-token"')
                 + '\n[push]\nenabled = true\ntracker_secret = "sentry"\n')
    shown = cli("config", "show", str(path))
    parsed = tomllib.loads(shown.out)
    assert parsed["tracker"]["token"] == parsed["push"]["tracker_secret"] == "***"
    assert parsed["sentry"]["organization"] == "acme" and parsed["sentry"]["url"] == "https://sentry.io"
    assert parsed["sync"]["conflict"] == "sentry"  # a default that happens to be the hook secret, left alone
    assert [line.split(" = ")[0] for line in shown.out.splitlines() if '"***"' in line and " = " in line] == [
        "token", "tracker_secret"]
    found = keyed(cli("config", "check", "--json", str(path)))
    assert "credential tracker-token (LoadCredential=)" in found["tracker.token"]
    assert "credential tracker-hook-secret (LoadCredential=)" in found["push.tracker_secret"]
    # A long secret pasted where it does not belong is still caught by the net.
    pasted = write(tmp_path, "pasted.toml",
                   MINIMAL.replace('queue = "OPS"', f'queue = "OPS"\ntoken = "{TRACKER_SECRET}"')
                   + f'\n[mapping.users]\n"{TRACKER_SECRET}" = "alice"\n')
    result = cli("config", "check", str(pasted))
    assert result.code == 2 and TRACKER_SECRET not in result.out + result.err


def test_hook_secrets_come_from_the_credentials_of_the_environment_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`config show FILE` under an environment (a unit's, given to `main`) finds the hook secret
    credential in that environment's $CREDENTIALS_DIRECTORY, not the calling process's."""
    credentials = tmp_path / "credentials"
    credentials.mkdir()
    (credentials / "sentry-hook-secret").write_text(HOOK_SECRET, encoding="utf-8")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path / "elsewhere"))  # the process's: not looked at
    path = write(tmp_path, "c.toml", MINIMAL)
    shown = cli("config", "show", "--json", str(path), env={"CREDENTIALS_DIRECTORY": str(credentials)})
    data = json.loads(shown.out)
    assert data["sources"]["push.sentry_secret"] == "credential sentry-hook-secret"
    assert data["settings"]["push"]["sentry_secret"] == "***" and HOOK_SECRET not in shown.out
