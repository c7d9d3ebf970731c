"""Issue 17, item 4: several bridges on one host never share a lock, a state file or a metrics
port.

Each instance is run with what `sentry-tracker-bridge@NAME.service` gives the program, read from
the template unit itself with `%i` = NAME (its `ExecStart=`, `Environment=` and
`LoadCredential=`), with /etc and /var/lib moved under a temporary root and the credentials
copied into a per-instance `$CREDENTIALS_DIRECTORY` as systemd does.  Both configs say
`state.path = "bridge.db"` in one folder: only the unit keeps them apart, which is the point.
Two real daemons then run side by side against the emulators; a third config on the first's
metrics port is refused by `config check` over the host's files, and cannot start its listener.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from bridge.cli import main
from bridge.sandbox.sentry_emulator import DEFAULT_SCOPES
from bridge.sandbox.tracker_emulator import ROBOT_LOGIN
from tests.conftest import BridgeEnv, Result, base_config, deep_merge, to_toml
from tests.test_daemon import free_ports, wait_for

REPO = Path(__file__).resolve().parents[1]
TEMPLATE = REPO / "systemd" / "sentry-tracker-bridge@.service"
INSTALLED = "/opt/sentry-tracker-bridge/bin/sentry-tracker-bridge"




def unit_directives(path: Path) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";", "[")):
            key, _, value = line.partition("=")
            found.setdefault(key.strip(), []).append(value.strip())
    return found


class Instance:
    """`sentry-tracker-bridge@NAME.service` under `root`: its command line and environment as
    the template unit sets them, its state directory and credentials made as systemd makes them."""

    def __init__(self, root: Path, name: str) -> None:
        self.name = name
        self.root = root
        unit = unit_directives(TEMPLATE)
        self.argv = [sys.executable, "-m", "bridge",
                     *shlex.split(self.expand(unit["ExecStart"][0]).replace(INSTALLED, "", 1))]
        self.env = dict(self.expand(value).split("=", 1) for value in unit["Environment"])
        state_dir = root / "var" / "lib" / self.expand(unit["StateDirectory"][0])
        state_dir.mkdir(parents=True, mode=0o700)  # StateDirectory=
        credentials = root / "run" / "credentials" / f"sentry-tracker-bridge@{name}.service"
        credentials.mkdir(parents=True)
        for item in unit["LoadCredential"]:
            credential, source = self.expand(item).split(":", 1)
            shutil.copyfile(source, credentials / credential)
        self.env["CREDENTIALS_DIRECTORY"] = str(credentials)
        self.config = Path(self.argv[self.argv.index("--config") + 1])
        self.proc: subprocess.Popen[bytes] | None = None
        self.stderr = root / f"{name}.stderr"

    def expand(self, value: str) -> str:
        return (value.replace("%i", self.name)
                .replace("/etc/sentry-tracker-bridge", str(self.root / "etc" / "sentry-tracker-bridge"))
                .replace("/var/lib", str(self.root / "var" / "lib")))

    def cli(self, *args: str) -> Result:
        """A command against this instance, in-process, with the unit's environment."""
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stderr(err):
            code = main(["--config", str(self.config), *args], env=self.env, out=out)
        return Result(code, out.getvalue(), err.getvalue())

    def start(self) -> None:
        with self.stderr.open("wb") as stderr:
            self.proc = subprocess.Popen(
                [*self.argv[:3], "--log-format", "json", *self.argv[3:]], cwd=REPO,
                env={**self.env, "PATH": os.environ.get("PATH", "")},
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)

    def logs(self, event: str) -> list[dict[str, Any]]:
        records = []
        for line in self.stderr.read_text(encoding="utf-8", errors="replace").splitlines():
            with contextlib.suppress(ValueError):
                record = json.loads(line)
                if isinstance(record, dict) and record.get("event") == event:
                    records.append(record)
        return records

    def cycled(self) -> bool:
        return bool(self.logs("cycle.summary"))

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(5)


@pytest.fixture
def host(tmp_path: Path, bridge_env: BridgeEnv) -> Iterator[Callable[[str, dict[str, Any]], Instance]]:
    """Instances on one host under tmp_path; each gets NAME.toml and two token files of its own
    (tokens the emulators accept)."""
    etc = tmp_path / "etc" / "sentry-tracker-bridge"
    etc.mkdir(parents=True)
    made: list[Instance] = []

    def make(name: str, config: dict[str, Any]) -> Instance:
        (etc / f"{name}.toml").write_text(to_toml(config), encoding="utf-8")
        sentry_token, tracker_token = f"{name}-s-0123456789abcdef", f"{name}-t-fedcba9876543210"
        bridge_env.sentry.add_token(sentry_token, scopes=DEFAULT_SCOPES)
        bridge_env.tracker.add_token(tracker_token, login=ROBOT_LOGIN)
        (etc / f"{name}-sentry-token").write_text(sentry_token + "\n", encoding="utf-8")
        (etc / f"{name}-tracker-token").write_text(tracker_token + "\n", encoding="utf-8")
        made.append(Instance(tmp_path, name))
        return made[-1]

    yield make
    for instance in made:
        instance.stop()


def test_two_instances_run_side_by_side_with_their_own_state_lock_and_port(
    bridge_env: BridgeEnv, host: Callable[[str, dict[str, Any]], Instance]
) -> None:
    env = bridge_env
    env.sentry.add_project("web")
    env.tracker.add_queue("WEB")
    ports = dict(zip(("acme", "beta"), free_ports(2), strict=True))
    common = deep_merge(base_config(env.sentry_url, env.tracker_url), {
        "sentry": {"token": None}, "tracker": {"token": None},  # tokens are the instance's credentials
        "sync": {"interval_seconds": 1, "retry_attempts": 2, "retry_deadline_seconds": 2}})
    acme = host("acme", deep_merge(common, {"metrics": {"listen": f"127.0.0.1:{ports['acme']}"}}))
    beta = host("beta", deep_merge(common, {"sentry": {"projects": ["web"]}, "tracker": {"queue": "WEB"},
                                            "metrics": {"listen": f"127.0.0.1:{ports['beta']}"}}))

    # What each instance would use: own state file (so own lock), own port, tokens from its credentials.
    shown = {i.name: json.loads(i.cli("config", "show", "--json").out) for i in (acme, beta)}
    state = {name: Path(data["settings"]["state"]["path"]) for name, data in shown.items()}
    assert state == {name: acme.root / "var" / "lib" / "sentry-tracker-bridge" / name / "bridge.db"
                     for name in ("acme", "beta")}
    assert {f"{path}.lock" for path in state.values()} == {f"{state['acme']}.lock", f"{state['beta']}.lock"}
    assert len({data["settings"]["metrics"]["listen"] for data in shown.values()}) == 2
    for data in shown.values():
        assert data["sources"]["state.path"] == "env BRIDGE_STATE__PATH"
        assert data["sources"]["sentry.token"] == "credential sentry-token"
        assert data["sources"]["tracker.token"] == "credential tracker-token"
    # The files alone (as CI sees them) share "bridge.db": a warning, since the unit separates them.
    checked = Result(*_check(acme.config, beta.config))
    assert checked.code == 0, checked
    assert [(p["file"], p["key"], p["level"]) for p in json.loads(checked.out)["problems"]] == [
        (str(beta.config), "state.path", "warning")]

    # Each links its own pair, in its own state file.
    pair_a = (env.sentry.add_issue("backend", "acme's error"), env.tracker.add_issue("OPS", "acme's ticket"))
    pair_b = (env.sentry.add_issue("web", "beta's error"), env.tracker.add_issue("WEB", "beta's ticket"))
    assert acme.cli("link", *pair_a).code == 0 and beta.cli("link", *pair_b).code == 0

    acme.start()
    beta.start()
    for instance in (acme, beta):
        wait_for(f"{instance.name}'s first cycle", instance.cycled)
        assert httpx.get(f"http://127.0.0.1:{ports[instance.name]}/healthz", timeout=5).status_code == 200
    # Each daemon holds its own lock: a one-shot sync of either is refused, each by its own lock.
    for instance in (acme, beta):
        locked = instance.cli("sync")
        assert locked.code == 4 and f"{instance.name}/bridge.db.lock" in locked.err, locked
        assert instance.proc is not None
        assert Path(f"{state[instance.name]}.lock").read_text().strip() == str(instance.proc.pid)
    # ... and syncs its own link.
    env.sentry.set_status(pair_a[0], "resolved")
    env.sentry.set_status(pair_b[0], "ignored")
    wait_for("both tickets closed", lambda: env.t_state(pair_a[1]) == ("closed", "fixed")
             and env.t_state(pair_b[1]) == ("closed", "wontFix"))
    assert json.loads(acme.cli("status", "--json").out)["links"] == 1
    assert json.loads(beta.cli("status", "--json").out)["links"] == 1

    # A third bridge on acme's metrics port: `config check` over the host's files refuses it ...
    gamma = host("gamma", deep_merge(common, {"metrics": {"listen": f"127.0.0.1:{ports['acme']}"}}))
    result = Result(*_check(acme.config, beta.config, gamma.config))
    assert result.code == 2
    errors = [p for p in json.loads(result.out)["problems"] if p["level"] == "error"]
    assert [(p["file"], p["key"]) for p in errors] == [(str(gamma.config), "metrics.listen")]
    assert f"is also metrics.listen of {acme.config}" in errors[0]["message"]
    # ... and started anyway, it cannot listen there and gives up; the other two run on.
    gamma.start()
    assert gamma.proc is not None
    code = gamma.proc.wait(20)
    assert code != 0 and "metrics.listen: cannot listen on" in gamma.stderr.read_text(), gamma.stderr.read_text()
    assert acme.proc is not None and beta.proc is not None
    assert acme.proc.poll() is None and beta.proc.poll() is None
    assert acme.stop() == 0 and beta.stop() == 0


def _check(*configs: Path) -> tuple[int, str, str]:
    """`config check --json` over the host's files, as a config repository's CI runs it."""
    result = subprocess.run([sys.executable, "-m", "bridge", "config", "check", "--json", *map(str, configs)],
                            cwd=REPO, env={"PATH": os.environ.get("PATH", "")}, capture_output=True, text=True,
                            timeout=60)
    return result.returncode, result.stdout, result.stderr
