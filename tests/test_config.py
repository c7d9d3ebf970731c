"""Configuration: TOML + environment, secrets, paths, and every problem reported at once."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any, get_args, get_origin

import pytest
from pydantic import BaseModel, SecretStr, ValidationError

from bridge.config import (
    DEFAULT_DESCRIPTION_TEMPLATE,
    MetricsSettings,
    SentrySettings,
    Settings,
    StatusMapping,
    SyncSettings,
    TrackerSettings,
    TrackerTarget,
    load_settings,
    resolve_config_path,
)
from bridge.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "bridge.example.toml"
DEMO = ROOT / "config" / "demo.toml"

SENTRY_TOKEN = "sntrys_0123456789abcdefSECRET"
TRACKER_TOKEN = "y0_AgAAAAtrackerSECRET987654"
TOKENS = {"BRIDGE_SENTRY__TOKEN": SENTRY_TOKEN, "BRIDGE_TRACKER__TOKEN": TRACKER_TOKEN}

MINIMAL = """
[sentry]
organization = "acme"

[tracker]
org_id = "42"
queue = "OPS"
"""


def write(tmp_path: Path, text: str, name: str = "bridge.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def load(tmp_path: Path, text: str, env: dict[str, str] | None = None, **kw: Any) -> Settings:
    return load_settings(write(tmp_path, text), TOKENS if env is None else env, **kw)


def problems(tmp_path: Path, text: str, env: dict[str, str] | None = None, **kw: Any) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, env, **kw)
    return info.value.problems


# -- loading ----------------------------------------------------------------------------------


def test_example_file_loads_with_tokens_from_the_environment() -> None:
    settings = load_settings(EXAMPLE, TOKENS)
    assert settings.sentry.organization == "acme"
    assert settings.sentry.projects == ["backend", "web"]
    assert settings.tracker.org_id == "1234567"
    assert settings.tracker.cloud_org_id is None
    assert settings.sentry_token() == SENTRY_TOKEN
    assert settings.tracker_token() == TRACKER_TOKEN
    assert settings.state.path == EXAMPLE.parent / "bridge.db"
    assert settings.config_path == EXAMPLE
    assert settings.mapping.status.to_tracker["ignored"] == TrackerTarget(
        status="closed", resolution="wontFix"
    )
    assert settings.mapping.status.to_sentry["resolved"] == "resolvedInNextRelease"
    assert settings.create.description_template == DEFAULT_DESCRIPTION_TEMPLATE
    assert settings.metrics.listen is None


def test_example_file_needs_tokens_and_says_so() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(EXAMPLE, {})
    assert info.value.problems == [
        "sentry.token: missing; set it, token_file, BRIDGE_SENTRY__TOKEN or a systemd credential"
        " (sentry-token in $CREDENTIALS_DIRECTORY)",
        "tracker.token: missing; set it, token_file, BRIDGE_TRACKER__TOKEN or a systemd credential"
        " (tracker-token in $CREDENTIALS_DIRECTORY)",
    ]


def test_demo_file_loads() -> None:
    settings = load_settings(DEMO, {})
    assert settings.tracker.queue == "DEMO"
    assert settings.sentry_token() == "demo-sentry-token"


def test_minimal_file_gets_the_contract_defaults(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL)
    assert settings.sentry.url == "https://sentry.io"
    assert settings.tracker.url == "https://api.tracker.yandex.net"
    assert settings.tracker.auth_scheme == "OAuth"
    assert settings.tracker.api_version == "v3"
    assert settings.sync.interval_seconds == 60
    assert settings.sync.conflict == "sentry"
    assert settings.sync.link_source == "sentry"
    assert (settings.sync.fields.status, settings.sync.fields.assignee, settings.sync.fields.followers) == (
        "both",
        "both",
        "to_tracker",
    )
    assert settings.create.enabled is True
    assert settings.create.query == "is:unresolved"
    assert settings.create.max_per_cycle == 50
    assert settings.create.tags == ["sentry"]
    assert settings.create.levels["fatal"].priority == "critical"
    assert settings.mapping.status.to_tracker == {
        "unresolved": TrackerTarget(status="open"),
        "unresolved.regressed": TrackerTarget(status="open"),
        "resolved": TrackerTarget(status="closed", resolution="fixed"),
        "resolvedInNextRelease": TrackerTarget(status="resolved", resolution="fixed"),
        "ignored": TrackerTarget(status="closed", resolution="wontFix"),
    }
    assert settings.mapping.status.to_sentry == {
        "open": "unresolved",
        "inProgress": "unresolved",
        "needInfo": "unresolved",
        "resolved": "resolvedInNextRelease",
        "closed": "resolved",
    }
    assert settings.mapping.users == {}
    assert settings.state.path == tmp_path / "bridge.db"


def test_trailing_slash_is_dropped_from_urls_and_numeric_org_id_is_accepted(tmp_path: Path) -> None:
    text = MINIMAL.replace('org_id = "42"', "org_id = 42").replace(
        "[sentry]", '[sentry]\nurl = "https://sentry.example.com/"'
    )
    settings = load(tmp_path, text)
    assert settings.sentry.url == "https://sentry.example.com"
    assert settings.tracker.org_id == "42"


# -- environment --------------------------------------------------------------------------------


def test_environment_overrides_the_file(tmp_path: Path) -> None:
    text = MINIMAL + '\n[sync]\ninterval_seconds = 30\n[mapping.users]\n"alice@example.com" = "alice"\n'
    env = {
        **TOKENS,
        "BRIDGE_SYNC__INTERVAL_SECONDS": "15",  # scalar, wins over the file
        "bridge_sync__fields__status": "off",  # nested twice, lower-case name
        "BRIDGE_Sync__Fields__Assignee": "to_sentry",  # mixed case
        "BRIDGE_SENTRY__PROJECTS": '["backend", "web"]',  # list as JSON
        "BRIDGE_SENTRY__VERIFY_TLS": "false",
        "BRIDGE_MAPPING__USERS": '{"bob@example.com": "bob"}',  # table merged over the file's
        "BRIDGE_TRACKER__QUEUE": "ENV",
        "BRIDGE_CONFIG": "/elsewhere.toml",  # names the file; not a setting
        "UNRELATED": "x",
    }
    settings = load(tmp_path, text, env)
    assert settings.sync.interval_seconds == 15
    assert settings.sync.fields.status == "off"
    assert settings.sync.fields.assignee == "to_sentry"
    assert settings.sentry.projects == ["backend", "web"]
    assert settings.sentry.verify_tls is False
    assert settings.mapping.users == {"alice@example.com": "alice", "bob@example.com": "bob"}
    assert settings.tracker.queue == "ENV"


def test_environment_can_set_a_status_row_despite_lower_cased_names(tmp_path: Path) -> None:
    env = {**TOKENS, "BRIDGE_MAPPING__STATUS__TO_TRACKER__RESOLVEDINNEXTRELEASE": "done"}
    settings = load(tmp_path, MINIMAL, env)
    assert settings.mapping.status.to_tracker["resolvedInNextRelease"] == TrackerTarget(status="done")


def test_environment_whole_table_as_json_keeps_case(tmp_path: Path) -> None:
    env = {**TOKENS, "BRIDGE_MAPPING__STATUS__TO_SENTRY": '{"inProgress": "unresolved", "done": "resolved"}'}
    settings = load(tmp_path, MINIMAL, env)
    assert settings.mapping.status.to_sentry == {"inProgress": "unresolved", "done": "resolved"}


def test_explicit_env_mapping_ignores_os_environ(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BRIDGE_SYNC__INTERVAL_SECONDS", "7")
    assert load(tmp_path, MINIMAL, dict(TOKENS)).sync.interval_seconds == 60
    for name, value in TOKENS.items():
        monkeypatch.setenv(name, value)
    assert load_settings(tmp_path / "bridge.toml").sync.interval_seconds == 7


def test_environment_invalid_json_names_the_variable(tmp_path: Path) -> None:
    env = {**TOKENS, "BRIDGE_SENTRY__PROJECTS": "backend,web", "BRIDGE_SYNC__INTERVAL_SECONDS": "0"}
    found = problems(tmp_path, MINIMAL, env)
    assert len(found) == 2
    assert found[0].startswith("sentry.projects: $BRIDGE_SENTRY__PROJECTS is not valid JSON")
    assert "backend,web" not in found[0]
    assert found[1] == (
        "sync.interval_seconds: Input should be greater than or equal to 1"
        " (from $BRIDGE_SYNC__INTERVAL_SECONDS)"
    )


def test_environment_unknown_key_is_an_error(tmp_path: Path) -> None:
    assert problems(tmp_path, MINIMAL, {**TOKENS, "BRIDGE_SYNC__INTERVALL": "5"}) == [
        "sync.intervall: unknown key (from $BRIDGE_SYNC__INTERVALL)"
    ]


def test_only_values_the_environment_supplied_are_blamed_on_it(tmp_path: Path) -> None:
    text = MINIMAL.replace("[sentry]", "[sentry]\ntimeout_seconds = 0")
    env = {**TOKENS, "BRIDGE_SENTRY": '{"projects": ["web", ""]}', "BRIDGE_SYNC": "{bad"}
    found = problems(tmp_path, text, env)
    assert found[:2] == [
        "sentry.projects[1]: String should have at least 1 character (from $BRIDGE_SENTRY)",
        "sentry.timeout_seconds: Input should be greater than 0",
    ]
    assert len(found) == 3 and found[2].startswith("sync: $BRIDGE_SYNC is not valid JSON")


# -- secrets ----------------------------------------------------------------------------------


def test_token_file_is_relative_to_the_config_folder_and_stripped(tmp_path: Path) -> None:
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "sentry").write_text(f"  {SENTRY_TOKEN}\n")
    (tmp_path / "tracker-token").write_text(TRACKER_TOKEN + "\n")
    text = MINIMAL.replace("[sentry]", '[sentry]\ntoken = ""\ntoken_file = "secrets/sentry"').replace(
        "[tracker]", f'[tracker]\ntoken_file = "{tmp_path / "tracker-token"}"'
    )
    settings = load(tmp_path, text, {})
    assert settings.sentry_token() == SENTRY_TOKEN
    assert settings.tracker_token() == TRACKER_TOKEN
    assert settings.sentry.token_file == tmp_path / "secrets" / "sentry"


def test_token_wins_over_token_file(tmp_path: Path) -> None:
    text = MINIMAL.replace("[sentry]", '[sentry]\ntoken_file = "does-not-exist"')
    assert load(tmp_path, text).sentry_token() == SENTRY_TOKEN


def test_unreadable_or_empty_token_file_is_a_problem(tmp_path: Path) -> None:
    (tmp_path / "empty").write_text("\n")
    text = MINIMAL.replace("[sentry]", '[sentry]\ntoken_file = "missing"').replace(
        "[tracker]", '[tracker]\ntoken_file = "empty"'
    )
    assert problems(tmp_path, text, {}) == [
        f"sentry.token_file: cannot read {tmp_path / 'missing'}: No such file or directory",
        f"tracker.token_file: {tmp_path / 'empty'} is empty",
    ]


def test_systemd_credentials_are_the_last_source(tmp_path: Path) -> None:
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "sentry-token").write_text(SENTRY_TOKEN + "\n")
    (creds / "tracker-token").write_text(TRACKER_TOKEN)
    settings = load(tmp_path, MINIMAL, {"CREDENTIALS_DIRECTORY": str(creds)})
    assert settings.sentry_token() == SENTRY_TOKEN
    assert settings.tracker_token() == TRACKER_TOKEN
    # A token given explicitly still wins over the credential.
    settings = load(
        tmp_path, MINIMAL, {"CREDENTIALS_DIRECTORY": str(creds), "BRIDGE_TRACKER__TOKEN": "other-1"}
    )
    assert settings.tracker_token() == "other-1"


def test_require_tokens_false_loads_without_tokens(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL, {}, require_tokens=False)
    assert settings.sentry.token is None
    with pytest.raises(ConfigError, match=r"^sentry\.token: missing"):
        settings.sentry_token()


def test_directly_constructed_settings_resolve_tokens(tmp_path: Path) -> None:
    (tmp_path / "t").write_text(TRACKER_TOKEN)
    settings = Settings(
        sentry=SentrySettings(organization="acme", token=SecretStr(SENTRY_TOKEN)),
        tracker=TrackerSettings(org_id="1", queue="OPS", token_file=tmp_path / "t"),
    )
    assert settings.sentry_token() == SENTRY_TOKEN
    assert settings.tracker_token() == TRACKER_TOKEN


def test_tokens_never_appear_in_errors_or_repr(tmp_path: Path) -> None:
    text = f"""
[sentry]
organization = "acme"
token = "{SENTRY_TOKEN}"
tokne = "{SENTRY_TOKEN}"
timeout_seconds = "{SENTRY_TOKEN}"

[tracker]
org_id = "1"
queue = "OPS"
token = "{TRACKER_TOKEN}"
auth_scheme = "{TRACKER_TOKEN}"

[metrics]
listen = "{TRACKER_TOKEN}"

[mapping.users]
"{SENTRY_TOKEN}" = "x"
"""
    with pytest.raises(ConfigError) as info:
        load(tmp_path, text, {})
    text_out = "\n".join(info.value.problems) + str(info.value) + repr(info.value)
    assert len(info.value.problems) >= 5
    assert SENTRY_TOKEN not in text_out and TRACKER_TOKEN not in text_out
    assert all(SENTRY_TOKEN not in str(e) for e in _chain(info.value))

    settings = load(tmp_path, MINIMAL)
    for shown in (repr(settings), str(settings), repr(settings.sentry), settings.model_dump_json()):
        assert SENTRY_TOKEN not in shown and TRACKER_TOKEN not in shown

    with pytest.raises(ValidationError) as direct:
        SentrySettings(organization="acme", token=SecretStr(SENTRY_TOKEN), timeout_seconds=SENTRY_TOKEN)  # type: ignore[arg-type]
    assert SENTRY_TOKEN not in str(direct.value)


def _chain(error: BaseException) -> list[BaseException]:
    found: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in found:
        found.append(current)
        current = current.__cause__ or current.__context__
    return found


# -- paths --------------------------------------------------------------------------------------


def test_relative_state_path_is_relative_to_the_config_folder(tmp_path: Path) -> None:
    sub = tmp_path / "etc"
    sub.mkdir()
    path = write(sub, MINIMAL + '\n[state]\npath = "data/bridge.db"\n')
    settings = load_settings(path, TOKENS)
    assert settings.state.path == sub / "data" / "bridge.db"
    path = write(sub, MINIMAL + f'\n[state]\npath = "{tmp_path / "abs.db"}"\n')
    assert load_settings(path, TOKENS).state.path == tmp_path / "abs.db"


def test_resolve_config_path_fallbacks(tmp_path: Path) -> None:
    env = {"BRIDGE_CONFIG": "/etc/bridge/env.toml"}
    assert resolve_config_path("my.toml", env, tmp_path) == tmp_path / "my.toml"
    assert resolve_config_path("/abs/cli.toml", env, tmp_path) == Path("/abs/cli.toml")
    assert resolve_config_path(None, env, tmp_path) == Path("/etc/bridge/env.toml")
    assert resolve_config_path(None, {"BRIDGE_CONFIG": "rel.toml"}, tmp_path) == tmp_path / "rel.toml"
    assert resolve_config_path(None, {}, tmp_path) == tmp_path / "bridge.toml"
    assert resolve_config_path(None, {"BRIDGE_CONFIG": ""}, tmp_path) == tmp_path / "bridge.toml"


def test_missing_file_is_one_problem_naming_the_path(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(tmp_path / "nope.toml", TOKENS)
    assert len(info.value.problems) == 1
    assert info.value.problems[0].startswith(f"{tmp_path / 'nope.toml'}: config file not found")


def test_toml_syntax_error_is_one_problem_with_line_and_column(tmp_path: Path) -> None:
    found = problems(tmp_path, "[sentry]\norganization = acme\n")
    assert len(found) == 1
    assert found[0].startswith(f"{tmp_path / 'bridge.toml'}: not valid TOML")
    assert "line 2" in found[0] and "column" in found[0]


# -- schema -------------------------------------------------------------------------------------


def test_settings_are_frozen(tmp_path: Path) -> None:
    settings = load(tmp_path, MINIMAL)
    with pytest.raises(ValidationError):
        settings.sync = SyncSettings()  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.sync.interval_seconds = 5  # type: ignore[misc]
    with pytest.raises(ValidationError):
        settings.mapping.status.to_tracker["resolved"].status = "x"  # type: ignore[misc]


def test_unknown_keys_are_rejected_at_every_level(tmp_path: Path) -> None:
    text = MINIMAL + '\nbogus = 1\n[sync.fields]\ncomments = "both"\n[extra]\nx = 1\n'
    text = text.replace("[sentry]", '[sentry]\nconfig_path = "x"')
    found = problems(tmp_path, "config_path = 'x'\n" + text)
    assert found == [
        "sentry.config_path: unknown key",
        "tracker.bogus: unknown key",
        "sync.fields.comments: unknown key",
        "config_path: unknown key",
        "extra: unknown key",
    ]


def test_missing_required_keys(tmp_path: Path) -> None:
    assert problems(tmp_path, "[sentry]\n[tracker]\norg_id = '1'\n") == [
        "sentry.organization: required, but not set",
        "tracker.queue: required, but not set",
    ]


@pytest.mark.parametrize(
    ("snippet", "expected"),
    [
        ("[sync]\ninterval_seconds = 0", "sync.interval_seconds: Input should be greater than or equal to 1"),
        ("[sync]\nconcurrency = 33", "sync.concurrency: Input should be less than or equal to 32"),
        ("[sync]\njitter_seconds = -1", "sync.jitter_seconds: Input should be greater than or equal to 0"),
        (
            "[sync]\nmax_changes_per_cycle = 0",
            "sync.max_changes_per_cycle: Input should be greater than or equal to 1",
        ),
        ("[sync]\nflap_limit = 1", "sync.flap_limit: Input should be greater than or equal to 2"),
        (
            "[sync]\nflap_window_cycles = 1",
            "sync.flap_window_cycles: Input should be greater than or equal to 2",
        ),
        ("[sync]\nretry_deadline_seconds = 0", "sync.retry_deadline_seconds: Input should be greater than 0"),
        ("[sync]\nconflict = 'newest'", "sync.conflict: Input should be 'sentry', 'tracker' or 'manual'"),
        ("[sync]\nlink_source = 'both'", "sync.link_source: Input should be 'sentry' or 'tracker'"),
        ("[create]\nmax_per_cycle = -1", "create.max_per_cycle: Input should be greater than or equal to 0"),
    ],
)
def test_schema_bounds(tmp_path: Path, snippet: str, expected: str) -> None:
    assert problems(tmp_path, MINIMAL + "\n" + snippet + "\n") == [expected]


def test_urls_must_be_http(tmp_path: Path) -> None:
    text = MINIMAL.replace("[sentry]", '[sentry]\nurl = "sentry.io"')
    assert problems(tmp_path, text) == ["sentry.url: must be an http:// or https:// URL"]


# -- semantic checks ----------------------------------------------------------------------------


def test_tracker_needs_exactly_one_org(tmp_path: Path) -> None:
    both = MINIMAL.replace('org_id = "42"', 'org_id = "42"\ncloud_org_id = "bpf1"')
    assert problems(tmp_path, both)[0].startswith("tracker.cloud_org_id: set exactly one of org_id")
    neither = MINIMAL.replace('org_id = "42"', "")
    assert problems(tmp_path, neither)[0].startswith("tracker.org_id: missing; set exactly one of org_id")
    cloud = MINIMAL.replace('org_id = "42"', 'cloud_org_id = "bpf1"\nauth_scheme = "Bearer"')
    assert load(tmp_path, cloud).tracker.cloud_org_id == "bpf1"


def test_bearer_needs_a_cloud_org(tmp_path: Path) -> None:
    text = MINIMAL.replace('org_id = "42"', 'org_id = "42"\nauth_scheme = "Bearer"')
    assert problems(tmp_path, text) == [
        "tracker.auth_scheme: Bearer (an IAM token) works only with a Yandex Cloud organisation;"
        " set cloud_org_id"
    ]


def test_to_tracker_keys_must_be_sentry_states(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + """
[mapping.status.to_tracker]
unresolved = "open"
"unresolved.bogus" = "open"
"resolved.regressed" = "open"
archived = "closed"
"ignored.archived_forever" = { status = "closed", resolution = "wontFix" }
"UNRESOLVED.Escalating" = "open"
"""
    )
    found = problems(tmp_path, text)
    assert [line.split(": ", 1)[0] for line in found] == [
        'mapping.status.to_tracker."unresolved.bogus"',
        'mapping.status.to_tracker."resolved.regressed"',
        "mapping.status.to_tracker.archived",
    ]
    assert all(": unknown Sentry state (" in line for line in found)
    good = text.replace('"unresolved.bogus" = "open"\n', "").replace('"resolved.regressed" = "open"\n', "")
    good = good.replace('archived = "closed"\n', "")
    table = load(tmp_path, good).mapping.status.to_tracker
    assert set(table) == {"unresolved", "ignored.archived_forever", "unresolved.escalating"}


def test_to_tracker_values_need_a_status(tmp_path: Path) -> None:
    text = MINIMAL + '\n[mapping.status.to_tracker]\nresolved = { resolution = "fixed" }\nignored = ""\n'
    assert problems(tmp_path, text) == [
        "mapping.status.to_tracker.resolved.status: required, but not set",
        "mapping.status.to_tracker.ignored.status: String should have at least 1 character",
    ]


def test_to_sentry_values_must_be_writable_sentry_states(tmp_path: Path) -> None:
    text = MINIMAL + '\n[mapping.status.to_sentry]\nopen = "unresolved"\nclosed = "archived"\n'
    assert problems(tmp_path, text) == [
        "mapping.status.to_sentry.closed: Input should be 'unresolved', 'resolved', 'resolvedInNextRelease'"
        " or 'ignored'"
    ]


@pytest.mark.parametrize(
    ("direction", "empty", "complaint"),
    [
        ("both", "to_tracker", "mapping.status.to_tracker: empty"),
        ("both", "to_sentry", "mapping.status.to_sentry: empty"),
        ("to_tracker", "to_tracker", "mapping.status.to_tracker: empty"),
        ("to_sentry", "to_sentry", "mapping.status.to_sentry: empty"),
        ("to_tracker", "to_sentry", None),
        ("to_sentry", "to_tracker", None),
        ("off", "to_tracker", None),
    ],
)
def test_a_direction_needs_its_table(
    tmp_path: Path, direction: str, empty: str, complaint: str | None
) -> None:
    text = MINIMAL + f'\n[sync.fields]\nstatus = "{direction}"\n[mapping.status.{empty}]\n'
    if complaint is None:
        assert load(tmp_path, text).sync.fields.status == direction
    else:
        found = problems(tmp_path, text)
        assert len(found) == 1 and found[0].startswith(complaint)
        assert f'sync.fields.status = "{direction}"' in found[0]


@pytest.mark.parametrize("direction", ["both", "to_sentry"])
def test_followers_cannot_be_written_to_sentry(tmp_path: Path, direction: str) -> None:
    text = MINIMAL + f'\n[sync.fields]\nfollowers = "{direction}"\n'
    assert problems(tmp_path, text) == [
        "sync.fields.followers: must be to_tracker or off: Sentry bookmarks are per user and cannot be"
        " written for others"
    ]
    assert load(tmp_path, MINIMAL + '\n[sync.fields]\nfollowers = "off"\n').sync.fields.followers == "off"


def test_users_keys_are_emails_normalised_to_lower_case(tmp_path: Path) -> None:
    text = MINIMAL + '\n[mapping.users]\n"Alice@Example.com" = "alice"\n"bob@example.com" = "bob"\n'
    assert load(tmp_path, text).mapping.users == {"alice@example.com": "alice", "bob@example.com": "bob"}


def test_users_problems(tmp_path: Path) -> None:
    text = (
        MINIMAL
        + """
[mapping.users]
"alice@example.com" = "alice"
"ALICE@example.com" = "alice2"
"carol@example.com" = "alice"
"dave" = "dave"
"erin@example.com" = ""
"""
    )
    assert problems(tmp_path, text) == [
        "mapping.users.\"ALICE@example.com\": duplicate mapping: the same e-mail as 'alice@example.com'",
        'mapping.users."carol@example.com": duplicate mapping:'
        " 'alice@example.com' already maps to login 'alice'",
        "mapping.users.dave: not an e-mail address (keys are Sentry e-mails)",
        'mapping.users."erin@example.com": must be a Tracker login (a non-empty string)',
    ]


@pytest.mark.parametrize("listen", ["9464", ":9464", "host:", "host:0", "host:70000", "::1:9464", "a:b"])
def test_metrics_listen_must_be_host_port(tmp_path: Path, listen: str) -> None:
    found = problems(tmp_path, MINIMAL + f'\n[metrics]\nlisten = "{listen}"\n')
    assert len(found) == 1 and found[0].startswith('metrics.listen: must be "host:port"')


def test_metrics_address() -> None:
    assert MetricsSettings().address() is None
    assert MetricsSettings(listen="0.0.0.0:9464").address() == ("0.0.0.0", 9464)
    assert MetricsSettings(listen="[::1]:9464").address() == ("::1", 9464)


def test_create_levels_template_and_routes(tmp_path: Path) -> None:
    text = (
        MINIMAL.replace('organization = "acme"', 'organization = "acme"\nprojects = ["backend"]')
        + """
[create]
description_template = "{permalink} {summary}"
[create.routes]
backend = "BE"
web = "WEB"
[create.levels]
critical = { type = "bug" }
"""
    )
    assert problems(tmp_path, text) == [
        "create.levels.critical: unknown Sentry level"
        " (use sample, debug, info, warning, error, fatal, unknown)",
        "create.description_template: unknown placeholder(s) {summary}; available: {title}, {short_id},"
        " {sentry_id}, {project}, {permalink}, {culprit}, {level}, {first_seen}, {last_seen}, {count},"
        " {user_count}",
    ]
    # The cross-section check runs once the sections themselves are valid.
    fixed = text.replace(" {summary}", "").replace("critical = ", "Fatal = ")
    assert problems(tmp_path, fixed) == [
        "create.routes.web: project is not in sentry.projects, so never polled"
    ]
    settings = load(tmp_path, fixed.replace('web = "WEB"\n', ""))
    assert settings.create.routes == {"backend": "BE"}
    assert settings.create.levels == {"fatal": settings.create.levels["fatal"]}


def test_template_syntax_error(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + '\n[create]\ndescription_template = "{permalink"\n')
    assert len(found) == 1 and found[0].startswith("create.description_template: not a valid template")


def test_a_bad_file_lists_every_problem_at_once(tmp_path: Path) -> None:
    text = """
[sentry]
organization = "acme"
projekts = ["web"]

[tracker]
org_id = "1"
cloud_org_id = "bpf"
queue = "OPS"

[sync]
interval_seconds = 0
[sync.fields]
followers = "both"

[mapping.status.to_tracker]
"unresolved.bogus" = "open"

[mapping.status.to_sentry]
closed = "done"

[mapping.users]
"nobody" = "x"

[metrics]
listen = "localhost"
"""
    found = problems(tmp_path, text, {"BRIDGE_SYNC__CONCURRENCY": "0"})
    assert [line.split(": ", 1)[0] for line in found] == [
        "sentry.projekts",
        "sentry.token",
        "tracker.cloud_org_id",
        "tracker.token",
        "sync.interval_seconds",
        "sync.fields.followers",
        "sync.concurrency",
        'mapping.status.to_tracker."unresolved.bogus"',
        "mapping.status.to_sentry.closed",
        "mapping.users.nobody",
        "metrics.listen",
    ]
    assert found[7].startswith('mapping.status.to_tracker."unresolved.bogus": unknown Sentry state')


def test_helpers_on_sync_settings() -> None:
    assert SyncSettings().mass_change_limit(10) == 50
    assert SyncSettings().mass_change_limit(1000) == 200
    assert SyncSettings(max_changes_per_cycle=3).mass_change_limit(1000) == 3


def test_tracker_target_accepts_a_plain_string() -> None:
    table = StatusMapping(to_tracker={"resolved": "closed"}, to_sentry={})  # type: ignore[dict-item]
    assert table.to_tracker["resolved"] == TrackerTarget(status="closed", resolution=None)


# -- the example documents every key ------------------------------------------------------------
#
# Rule: a settings field counts as documented when the example file sets it (a real key), or shows
# it commented out as `# key = value` (a comment line whose text after "# " parses as one TOML
# key/value pair) below the header of its table.  Commenting out is how the example shows keys that
# are unset by default (None) or mutually exclusive (org_id / cloud_org_id).  For a table of
# models (`create.levels`, `mapping.status.to_tracker`) the table must be present and its rows,
# together, must use every field of the row model.  `config_path` is set by the loader, not by
# the file, so it is exempt.

_HEADER = re.compile(r"^\s*\[([^\[\]]+)\]\s*(#.*)?$")


def _documented_keys(text: str) -> tuple[dict[str, Any], set[tuple[str, ...]]]:
    parsed = tomllib.loads(text)
    commented: set[tuple[str, ...]] = set()
    table: tuple[str, ...] = ()
    for line in text.splitlines():
        header = _HEADER.match(line)
        if header:
            table = tuple(part.strip().strip('"') for part in header.group(1).split("."))
            continue
        if line.startswith("# "):
            try:
                pair = tomllib.loads(line[2:])
            except tomllib.TOMLDecodeError:
                continue
            if len(pair) == 1:
                commented.add((*table, next(iter(pair))))
    return parsed, commented


def _model(annotation: Any) -> type[BaseModel] | None:
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def _undocumented(
    model: type[BaseModel], parsed: Any, commented: set[tuple[str, ...]], prefix: tuple[str, ...]
) -> list[str]:
    missing: list[str] = []
    for name, info in model.model_fields.items():
        if model is Settings and name == "config_path":
            continue
        path = (*prefix, name)
        present = isinstance(parsed, dict) and name in parsed
        if not present and path not in commented:
            missing.append(".".join(path))
            continue
        value = parsed.get(name) if present else None
        nested = _model(info.annotation)
        if nested is not None:
            missing += _undocumented(nested, value if isinstance(value, dict) else {}, commented, path)
        elif get_origin(info.annotation) is dict and (row := _model(get_args(info.annotation)[1])):
            rows = (
                [r for r in (value or {}).values() if isinstance(r, dict)] if isinstance(value, dict) else []
            )
            used = {key for r in rows for key in r}
            missing += [".".join((*path, "<row>", field)) for field in row.model_fields if field not in used]
    return missing


def test_example_documents_every_settings_field() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    parsed, commented = _documented_keys(text)
    assert _undocumented(Settings, parsed, commented, ()) == []


def test_the_documentation_check_can_fail() -> None:
    text = EXAMPLE.read_text(encoding="utf-8")
    broken = text.replace("flap_limit = 6\n", "").replace("# listen = ", "# listen: ")
    broken = broken.replace('resolved = { status = "closed", resolution = "fixed" }', 'resolved = "closed"')
    broken = broken.replace(
        'resolvedInNextRelease = { status = "resolved", resolution = "fixed" }',
        'resolvedInNextRelease = "resolved"',
    ).replace('ignored = { status = "closed", resolution = "wontFix" }', 'ignored = "closed"')
    parsed, commented = _documented_keys(broken)
    assert _undocumented(Settings, parsed, commented, ()) == [
        "sync.flap_limit",
        "mapping.status.to_tracker.<row>.status",
        "mapping.status.to_tracker.<row>.resolution",
        "metrics.listen",
        "push.listen",
    ]
