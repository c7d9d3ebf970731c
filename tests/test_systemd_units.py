"""The unit files in systemd/ as systemd itself reads them.

`systemd-analyze verify` loads the units the way PID 1 would and checks that every `Exec*=`
binary exists and is executable.  The units point at /opt/sentry-tracker-bridge (where the
README installs the program), which does not exist on a development or CI machine, so the test
verifies copies in which that path is replaced by this environment's own console script: the
same program, installed the same way (pip), only in another virtualenv.

The template units (`sentry-tracker-bridge@.service`, `sentry-tracker-bridge-sync@.service`
and `.timer`, several bridges on one host) are verified as systemd starts them: as an instance,
`sentry-tracker-bridge@acme.service`, whose `%i` systemd expands; verify finds the template
beside it.  Their hardening must be the single units' own, directive for directive.

`systemd-analyze` comes with the `systemd` package.  The test never installs anything: .ci/run
installs it when it is missing.  Without it the test skips, except under CI (`$CI` set), where
a skip would hide a broken unit, so it fails instead.
"""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from bridge.config import SentrySettings, Settings, TrackerSettings
from bridge.daemon import stop_grace_seconds
from tests.conftest import required_tool

SYSTEMD = Path(__file__).resolve().parents[1] / "systemd"
UNITS = ("sentry-tracker-bridge.service", "sentry-tracker-bridge-sync.service", "sentry-tracker-bridge-sync.timer")
TEMPLATES = ("sentry-tracker-bridge@.service", "sentry-tracker-bridge-sync@.service",
             "sentry-tracker-bridge-sync@.timer")
INSTANCE = "acme"
INSTALLED = "/opt/sentry-tracker-bridge/bin/sentry-tracker-bridge"
# What an instance may (must) set differently from the single unit it mirrors.
PER_INSTANCE = {"Description", "Conflicts", "ExecStart", "Environment", "LoadCredential", "User", "StateDirectory"}


def systemd_analyze() -> str:
    return required_tool("systemd-analyze", "systemd")


def systemd_version(analyze: str) -> int:
    first = subprocess.run([analyze, "--version"], capture_output=True, text=True, timeout=30).stdout
    match = re.match(r"systemd (\d+)", first)
    return int(match.group(1)) if match else 0


def console_script(folder: Path) -> Path:
    """This environment's `sentry-tracker-bridge` (pip puts it beside the interpreter); a stub
    when the package is not installed, since verify only needs an executable file there."""
    beside = Path(sys.executable).parent / "sentry-tracker-bridge"
    if beside.is_file() and os.access(beside, os.X_OK):
        return beside
    stub = folder / "bin" / "sentry-tracker-bridge"
    stub.parent.mkdir(exist_ok=True)
    stub.write_text(f"#!/bin/sh\nexec {sys.executable} -m bridge \"$@\"\n")
    stub.chmod(stub.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return stub


def copy_units(tmp_path: Path, names: tuple[str, ...]) -> list[Path]:
    program = console_script(tmp_path)
    folder = tmp_path / "units"
    folder.mkdir(exist_ok=True)
    copies = []
    for name in names:
        text = (SYSTEMD / name).read_text(encoding="utf-8")
        copy = folder / name
        copy.write_text(text.replace(INSTALLED, str(program)), encoding="utf-8")
        copies.append(copy)
    return copies


def instance(template: Path, name: str = INSTANCE) -> Path:
    """The path systemd would load `unit@NAME.service` from: the template beside it."""
    return template.with_name(template.name.replace("@.", f"@{name}."))


@pytest.fixture
def unit_copies(tmp_path: Path) -> list[Path]:
    return copy_units(tmp_path, UNITS)


@pytest.fixture
def instance_copies(tmp_path: Path) -> list[Path]:
    """`sentry-tracker-bridge@acme.service` and friends, from copies of the templates."""
    return [instance(template) for template in copy_units(tmp_path, TEMPLATES)]


def verify(analyze: str, units: list[Path]) -> tuple[int, str, list[str]]:
    """Exit code, output, and the lines about our units (by file or unit name)."""
    result = subprocess.run([analyze, "verify", *map(str, units)], capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    names = (*UNITS, "sentry-tracker-bridge@", "sentry-tracker-bridge-sync@")
    return result.returncode, output, [line for line in output.splitlines() if any(n in line for n in names)]


def test_units_pass_systemd_analyze_verify(unit_copies: list[Path]) -> None:
    analyze = systemd_analyze()
    result = subprocess.run([analyze, "verify", *map(str, unit_copies)], capture_output=True, text=True, timeout=120)
    output = result.stdout + result.stderr
    # verify exits 0 on "Unknown key" and unparsable values (it only warns), so any line about
    # our files is a failure too; lines about the host's own units are not ours to judge.
    ours = [line for line in output.splitlines() if any(name in line for name in UNITS)]
    assert result.returncode == 0 and not ours, output


def test_instances_of_the_templates_pass_systemd_analyze_verify(instance_copies: list[Path]) -> None:
    analyze = systemd_analyze()
    assert [p.name for p in instance_copies] == [
        "sentry-tracker-bridge@acme.service", "sentry-tracker-bridge-sync@acme.service",
        "sentry-tracker-bridge-sync@acme.timer"]
    code, output, ours = verify(analyze, instance_copies)
    assert code == 0 and not ours, output


def test_verify_of_an_instance_catches_a_broken_template(instance_copies: list[Path]) -> None:
    """The check above can fail: a typo in the template, or a program that is not there, is
    reported about the instance (or its template's file)."""
    analyze = systemd_analyze()
    template = instance_copies[0].with_name(TEMPLATES[0])
    good = template.read_text(encoding="utf-8")
    template.write_text(good.replace("ProtectHome=yes", "ProtectHomme=yes"), encoding="utf-8")
    assert verify(analyze, instance_copies[:1])[2], "an unknown key in the template went unnoticed"
    template.write_text(good.replace(str(Path(good.split("ExecStart=")[1].split()[0])), "/nonexistent/stb"),
                        encoding="utf-8")
    code, output, ours = verify(analyze, instance_copies[:1])
    assert code != 0 and ours, output


def test_service_hardening_stays_low_exposure(unit_copies: list[Path], instance_copies: list[Path]) -> None:
    analyze = systemd_analyze()
    if systemd_version(analyze) < 250:
        pytest.skip("`systemd-analyze security --offline` needs systemd 250 or newer")
    for unit in [*unit_copies[:2], *instance_copies[:2]]:
        # Exposure is 0-10 on screen and 0-100 for --threshold; 2.0 ("OK") and above fails.
        result = subprocess.run([analyze, "security", "--offline=yes", "--threshold=20", str(unit)],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stdout + result.stderr


def directives(name: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in (SYSTEMD / name).read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


def test_units_match_what_the_program_expects() -> None:
    service = directives("sentry-tracker-bridge.service")
    oneshot = directives("sentry-tracker-bridge-sync.service")
    assert service["Type"] == ["notify"] and service["NotifyAccess"] == ["main"] and service["WatchdogSec"]
    assert service["ExecStart"][0].endswith(" run") and oneshot["ExecStart"][0].endswith(" sync")
    assert oneshot["Type"] == ["oneshot"]
    for unit in (service, oneshot):
        assert INSTALLED in unit["ExecStart"][0] and "--config /etc/sentry-tracker-bridge/bridge.toml" in unit[
            "ExecStart"][0]
        # The config reads tokens from $CREDENTIALS_DIRECTORY/<service>-token.
        assert sorted(c.split(":")[0] for c in unit["LoadCredential"]) == ["sentry-token", "tracker-token"]
        state_dir = unit["StateDirectory"][0]
        assert f"BRIDGE_STATE__PATH=/var/lib/{state_dir}/bridge.db" in unit["Environment"]
        assert unit["DynamicUser"] == ["yes"] and unit["User"] == ["sentry-tracker-bridge"]

    # SIGTERM waits for the link in progress; systemd must not SIGKILL before the daemon gives up.
    settings = Settings(sentry=SentrySettings(organization="acme", token=SecretStr("x" * 8)),
                        tracker=TrackerSettings(org_id="1", queue="OPS", token=SecretStr("y" * 8)))
    timeout_stop = service["TimeoutStopSec"][0]
    assert timeout_stop.endswith("s") and float(timeout_stop[:-1]) > stop_grace_seconds(settings)


def test_templates_mirror_the_single_units_hardening() -> None:
    """Every directive of the single units is the template's too, unchanged, except what makes
    an instance an instance; and nothing is added."""
    for single, template in zip(UNITS, TEMPLATES, strict=True):
        mine, theirs = directives(template), directives(single)
        assert set(mine) == set(theirs), (template, set(mine) ^ set(theirs))
        differs = {key for key in mine if mine[key] != theirs[key]}
        assert differs <= PER_INSTANCE, (template, differs - PER_INSTANCE)


def test_each_instance_has_its_own_config_state_tokens_and_user() -> None:
    service = directives("sentry-tracker-bridge@.service")
    oneshot = directives("sentry-tracker-bridge-sync@.service")
    timer = directives("sentry-tracker-bridge-sync@.timer")
    assert service["ExecStart"][0].endswith(" run") and oneshot["ExecStart"][0].endswith(" sync")
    for unit in (service, oneshot):
        assert f"{INSTALLED} --config /etc/sentry-tracker-bridge/%i.toml " in unit["ExecStart"][0]
        # The bridge reads sentry-token / tracker-token; each instance loads them from its own files.
        assert unit["LoadCredential"] == ["sentry-token:/etc/sentry-tracker-bridge/%i-sentry-token",
                                          "tracker-token:/etc/sentry-tracker-bridge/%i-tracker-token"]
        assert unit["StateDirectory"] == ["sentry-tracker-bridge/%i"]
        assert "BRIDGE_STATE__PATH=/var/lib/sentry-tracker-bridge/%i/bridge.db" in unit["Environment"]
        assert unit["DynamicUser"] == ["yes"] and unit["User"] == ["stb-%i"]
    # An instance runs as a service or from its timer, never both; other instances are not concerned.
    assert service["Conflicts"] == ["sentry-tracker-bridge-sync@%i.timer sentry-tracker-bridge-sync@%i.service"]
    assert oneshot["Conflicts"] == timer["Conflicts"] == ["sentry-tracker-bridge@%i.service"]


def test_an_instance_name_of_27_characters_gets_a_strictly_valid_dynamic_user(tmp_path: Path) -> None:
    """PID 1 makes a dynamic user only under systemd's strict user-name rule (at most 31
    characters); `systemd-analyze verify` merely notes a longer one.  `stb-` leaves 27 characters
    for the instance name (`sentry-tracker-bridge-` left 9: "production" did not start)."""
    analyze = systemd_analyze()
    units = [instance(template, "production-team-infra-27chr") for template in copy_units(tmp_path, TEMPLATES)]
    _, output, _ = verify(analyze, units)
    assert "does not match strict user/group name rules" not in output, output
