"""Issue 13, item 2: the state file.  A wrong path, a damaged file, a read-only file or folder and
a file from a newer version each end in one sentence and exit 2, through the real CLI, and the
file is left exactly as it was.  New state files are private (0600)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from bridge.store import MIGRATIONS, SCHEMA

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv

ROOT = Path(__file__).resolve().parent.parent
# Every command that opens the state file, with what it needs besides.
COMMANDS = (("sync",), ("status",), ("conflicts",), ("link", "1", "OPS-1"), ("relink",), ("explain", "1"))


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def assert_one_sentence(err: str, *needles: str) -> None:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: state file"), err
    for needle in needles:
        assert needle in lines[0], (needle, err)


def test_a_missing_folder_is_refused_never_a_fresh_start(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(state={"path": "no-such-dir/bridge.db"})
    for command in COMMANDS:
        result = env.expect(2, *command)
        assert_one_sentence(result.err, str(env.folder / "no-such-dir"), "does not exist", "StateDirectory")
    assert not (env.folder / "no-such-dir").exists()  # never created behind the operator's back


@pytest.mark.parametrize("damage", ["not sqlite", "torn pages"])
def test_a_damaged_file_is_refused_and_left_untouched(bridge_env: BridgeEnv, damage: str) -> None:
    env = bridge_env
    if damage == "not sqlite":
        env.state_path.write_bytes(b"this is a config file someone pointed state.path at\n" * 50)
    else:
        sid, key = env.pair()
        env.link((sid, key))
        env.sync_json()
        with sqlite3.connect(env.state_path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            pages = db.execute("PRAGMA page_count").fetchone()[0]
        assert pages > 3
        data = bytearray(env.state_path.read_bytes())
        size = len(data) // pages
        for page in range(2, pages):  # every page but the header page: torn writes on a dying disk
            data[page * size + 8: page * size + 64] = b"\xff" * 56
        env.state_path.write_bytes(bytes(data))
    before = digest(env.state_path)
    for command in COMMANDS:
        result = env.expect(2, *command)
        assert_one_sentence(result.err, str(env.state_path), "damaged", "restore a copy", "relink")
    assert digest(env.state_path) == before
    assert not Path(f"{env.state_path}-wal").exists() or damage == "torn pages"
    checks = {c["name"]: c for c in json.loads(env.run("doctor", "--json").out)["checks"]}
    assert checks["state file"]["level"] == "fail" and "damaged" in checks["state file"]["detail"]
    assert digest(env.state_path) == before


def test_a_file_from_a_newer_version_is_refused(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.sync_json()  # a real state file
    with sqlite3.connect(env.state_path) as db:
        db.execute("INSERT INTO _sqlite_migrations (migration_set, name, applied_at) VALUES (?, ?, ?)",
                   [SCHEMA.name, "m099_from_the_future", "2027-01-01"])
    before = digest(env.state_path)
    for command in COMMANDS:
        result = env.expect(2, *command)
        assert_one_sentence(result.err, "newer version", "m099_from_the_future", "upgrade")
    checks = {c["name"]: c for c in json.loads(env.run("doctor", "--json").out)["checks"]}
    assert checks["state file"]["level"] == "fail"
    assert digest(env.state_path) == before


def test_the_known_migrations_are_exactly_the_registered_ones(tmp_path: Path) -> None:
    import sqlite_utils

    db = sqlite_utils.Database(str(tmp_path / "empty.db"))
    assert tuple(m.name for m in SCHEMA.pending(db)) == MIGRATIONS


def test_new_state_and_lock_files_are_private(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    old = os.umask(0o022)
    try:
        env.sync_json()
    finally:
        os.umask(old)
    assert stat.S_IMODE(env.state_path.stat().st_mode) == 0o600
    assert stat.S_IMODE(Path(f"{env.state_path}.lock").stat().st_mode) == 0o600
    checks = {c["name"]: c for c in json.loads(env.run("doctor", "--json").out)["checks"]}
    assert checks["state file"]["level"] == "pass"
    # A file other users may read gets a warning from doctor.
    env.state_path.chmod(0o644)
    checks = {c["name"]: c for c in json.loads(env.run("doctor", "--json").out)["checks"]}
    assert checks["state file"]["level"] == "warn" and "chmod 600" in checks["state file"]["detail"]


def test_doctor_names_a_missing_folder(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(state={"path": "nowhere/bridge.db"})
    checks = {c["name"]: c for c in json.loads(env.run("doctor", "--json").out)["checks"]}
    assert checks["state file"]["level"] == "fail"
    assert "does not exist" in checks["state file"]["detail"]


def _without_root_powers() -> list[str]:
    """Root writes anything whatever the mode bits: run the child without that power."""
    if os.geteuid() != 0:
        return []
    setpriv = shutil.which("setpriv")
    assert setpriv, "running as root: the read-only test needs setpriv (util-linux) to drop CAP_DAC_OVERRIDE"
    caps = "-dac_override,-dac_read_search,-fowner"
    return [setpriv, f"--inh-caps={caps}", f"--bounding-set={caps}"]


@pytest.mark.parametrize("what", ["file", "folder"])
def test_a_read_only_state_file_or_folder_is_a_sentence(bridge_env: BridgeEnv, what: str) -> None:
    env = bridge_env
    env.sync_json()
    with sqlite3.connect(env.state_path) as db:
        db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    if what == "file":
        env.state_path.chmod(0o444)
    else:
        env.folder.chmod(0o555)
    before = digest(env.state_path)

    def run(command: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*_without_root_powers(), sys.executable, "-m", "bridge", "--config", str(env.path),
                               command], capture_output=True, text=True, cwd=ROOT, timeout=60,
                              env={**os.environ, "PYTHONPATH": str(ROOT)})

    try:
        result = run("sync")
        looked = run("status")  # reading needs no write access
    finally:
        env.folder.chmod(0o755)
        env.state_path.chmod(0o600)
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert_one_sentence(result.stderr, str(env.state_path), "cannot be written", "write access")
    assert looked.returncode == 0 and "links: 0" in looked.stdout, (looked.stdout, looked.stderr)
    assert digest(env.state_path) == before
