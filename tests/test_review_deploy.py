"""Review of issue 17 (config check / show / schema, template units) and issue 16 (alerting), as an
ops team deploying several bridges from a config repository would meet them.  Each test fails on
0f017d2 and names the defect it shows.
"""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from tests.conftest import BridgeEnv
from tests.test_alerting import RULES, run_promtool
from tests.test_config_commands import MINIMAL, SCHEMA_FILE, cli, write
from tests.test_systemd_units import TEMPLATES, copy_units, instance, systemd_analyze, verify

# -- issue 17: config show says where each value came from -------------------------------------------


def test_show_does_not_credit_the_environment_with_a_row_it_did_not_change(tmp_path: Path) -> None:
    """An operator overrides one row of `to_sentry` for one instance from the unit's environment.
    Environment names are lower-cased, so the variable adds a new (dead) row `inprogress`
    and the file's `inProgress = "unresolved"` stays in force; `config show` nevertheless
    says the file's row came from the variable, so the operator reads "overridden" where
    nothing was.  (The README's advice to give such tables whole is about *setting* them;
    `show` exists precisely to tell which source won.)"""
    path = write(tmp_path, "acme.toml", MINIMAL + (
        '\n[mapping.status.to_sentry]\nopen = "unresolved"\ninProgress = "unresolved"\nneedInfo = "unresolved"\n'
        'resolved = "resolvedInNextRelease"\nclosed = "resolved"\n'))
    env = {"BRIDGE_MAPPING__STATUS__TO_SENTRY__INPROGRESS": "resolved"}
    shown = cli("config", "show", "--json", str(path), env=env)
    assert shown.code == 0, shown
    data = json.loads(shown.out)
    # The file's row is what the bridge uses for Tracker's inProgress...
    assert data["settings"]["mapping"]["status"]["to_sentry"]["inProgress"] == "unresolved"
    # ...so its origin is the file, not the variable.
    assert data["sources"]["mapping.status.to_sentry.inProgress"] == "file"


def test_show_redaction_keeps_other_keys_and_values_intact(tmp_path: Path) -> None:
    """`show` scrubs every known secret out of the whole printed text, keys and defaults
    included.  A short hook secret that also occurs in ordinary text (here the operator's
    shared Tracker secret "sentry") turns `[sentry]` into `[***]` and the default URL into
    "https://***.io": the TOML no longer parses (the docstring promises it does), and the
    redaction itself shows the secret to whoever reads the pasted output.  (`config check` does
    the same: with the sandbox token "sentry-token" its own advice reads "the systemd
    credential *** (LoadCredential=)", see the next test's output.)"""
    path = write(tmp_path, "weak.toml", MINIMAL + '\n[push]\nenabled = true\ntracker_secret = "sentry"\n')
    shown = cli("config", "show", str(path))
    assert shown.code == 0, shown
    parsed = tomllib.loads(shown.out)  # raises: `[***]` is not a TOML key
    assert parsed["sentry"]["url"] == "https://sentry.io"


# -- issue 17: config check vs. the real loader ---------------------------------------------------------


def test_check_refuses_a_token_in_the_file_that_every_real_command_refuses(bridge_env: BridgeEnv) -> None:
    """A token pasted with a non-breaking space (copied from a web page) sits in the file.  Every
    command that loads the config (sync, run, doctor) exits 2 on it, naming the key; `config
    check` -- the CI gate meant to fail "before a deployment does" -- passes it with exit 0
    (require_tokens=False drops the loader's token problems wholesale, including the problems
    of a token that *is* given)."""
    token = bridge_env.settings["tracker"]["token"]
    bridge_env.config(tracker={"token": token[:4] + "\u00a0" + token[4:]})
    dry = bridge_env.run("sync", "--dry-run")
    assert dry.code == 2 and "tracker.token: character 5 is not printable ASCII" in dry.err, dry
    checked = bridge_env.run("config", "check")
    assert checked.code == 2, f"config check exit {checked.code}, sync --dry-run exit 2\n{checked.out}"


@pytest.mark.parametrize(("section", "key", "value"), [
    ("sentry", "url", "sentry.example.com"),           # no scheme: the loader wants http(s)://
    ("metrics", "listen", "9464"),                      # a port alone: the loader wants host:port
    ("push", "listen", "127.0.0.1:99999"),              # no such port
    ("sync.fields", "followers", "both"),               # the loader: to_tracker or off only
])
def test_the_schema_refuses_values_the_loader_refuses(tmp_path: Path, section: str, key: str, value: str) -> None:
    """The committed schema is what editors flag mistakes with; these values are refused by every
    command yet shown as fine in the editor, although a JSON Schema can say each of them
    (`pattern` for URLs and host:port, an `enum` for followers)."""
    line = f'{key} = "{value}"\n'
    head = f"[{section}]\n"
    text = MINIMAL.replace(head, head + line) if head in MINIMAL else MINIMAL + "\n" + head + line
    path = write(tmp_path, "x.toml", text)
    assert cli("config", "check", str(path)).code == 2  # the loader refuses it
    schema = json.loads(SCHEMA_FILE.read_text(encoding="utf-8"))
    errors = list(jsonschema.Draft7Validator(schema).iter_errors(tomllib.loads(text)))
    assert errors, f"the schema accepts {section}.{key} = {value!r}"


# -- issue 17: template units ------------------------------------------------------------------------


def test_an_instance_name_of_ten_characters_gets_a_valid_dynamic_user(tmp_path: Path) -> None:
    """`User=sentry-tracker-bridge-%i` with `DynamicUser=yes`: the prefix is 22 characters, so any
    instance name over 9 characters ("production", "acme-stage", "team-infra") gives a user
    name over systemd's strict 31-character limit.  systemd-analyze only prints a notice (so
    the existing verify test passes), and the README says "systemd accepts longer ones with a
    notice" -- but PID 1 allocates a dynamic user only for a strictly valid name
    (dynamic_user_acquire: `valid_user_group_name(name, VALID_USER_ALLOW_NUMERIC)`, no RELAX),
    so such an instance does not start at all (217/USER)."""
    analyze = systemd_analyze()
    units = [instance(template, "production") for template in copy_units(tmp_path, TEMPLATES)]
    _, output, _ = verify(analyze, units)
    notices = [line for line in output.splitlines() if "does not match strict user/group name rules" in line]
    assert notices == [], notices[0]


# -- issue 16: alert rules ------------------------------------------------------------------------------


def promtool_test(tmp_path: Path, tests: list[dict[str, Any]]) -> str:
    """Run promtool's unit tests `tests` against the shipped rules; the output ('' when they pass)."""
    (tmp_path / "alerts.yml").write_text(RULES.read_text(encoding="utf-8"), encoding="utf-8")
    spec = {"rule_files": ["alerts.yml"], "evaluation_interval": "1m", "tests": tests}
    (tmp_path / "review_test.yml").write_text(json.dumps(spec), encoding="utf-8")  # JSON is YAML
    result = run_promtool("test", "rules", str(tmp_path / "review_test.yml"))
    return "" if result.returncode == 0 else re.sub(r"\n{2,}", "\n", result.stdout + result.stderr)


def test_one_open_conflict_is_not_a_growing_pile(tmp_path: Path) -> None:
    """alerts.yml: "One conflict is ordinary work, not an alert; a pile that grows means nobody is
    handling them."  The expression (`bridge_conflicts > 0 and delta(bridge_conflicts[6h]) > 0`)
    fires on the first conflict of the day once it has been open 30 minutes: with
    sync.conflict = "manual" every single manual decision becomes a warning."""
    failed = promtool_test(tmp_path, [{
        "name": "one conflict, open for two hours, nothing else",
        "interval": "1m",
        "input_series": [{"series": 'bridge_conflicts{job="sentry-tracker-bridge", instance="one:9464"}',
                          "values": "0x60 1x300"}],
        "alert_rule_test": [{"eval_time": "120m", "alertname": "BridgeConflictsGrowing", "exp_alerts": []}],
    }])
    assert failed == "", failed
