"""Issue 14, item 4: `sandbox` serves both emulators on their own, printing URLs, tokens and a
ready config that the real program (and any other client) can use, until Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def test_sandbox_serves_a_ready_config_until_ctrl_c(tmp_path: Path) -> None:
    process = subprocess.Popen([sys.executable, "-m", "bridge", "sandbox"], stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert process.stdout is not None
        lines: list[str] = []
        for line in process.stdout:
            lines.append(line)
            if line.startswith("Serving until Ctrl-C."):
                break
        text = "".join(lines)
        config = text.split("A ready config (save it as bridge.toml):\n", 1)[1].split("Serving until", 1)[0]
        sentry_url = next(line.split()[2] for line in lines if line.startswith("Sentry emulator:"))
        # Another client: the emulator answers with the printed token.
        answer = httpx.get(f"{sentry_url}/api/0/organizations/acme/issues/", params={"query": "", "project": "-1"},
                           headers={"Authorization": "Bearer sentry-token"}, timeout=10)
        assert answer.status_code == 200 and len(answer.json()) == 5
        # The real program, with the printed config as it is.
        (tmp_path / "bridge.toml").write_text(config, encoding="utf-8")

        def bridge(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "bridge", "--config", str(tmp_path / "bridge.toml"), *args],
                                  capture_output=True, text=True, cwd=ROOT, timeout=60)

        assert bridge("link", "5000000002", "OPS-2").returncode == 0
        synced = bridge("sync", "--json")
        assert synced.returncode == 0, synced.stderr
        assert json.loads(synced.stdout)["writes_tracker"] >= 1  # OPS-2 follows its resolved Sentry issue
        assert (tmp_path / "sandbox.db").exists()
    finally:
        process.send_signal(signal.SIGINT)
        rest, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert "sandbox stopped" in rest and "Traceback" not in err


def test_a_port_in_use_is_a_sentence() -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = subprocess.run([sys.executable, "-m", "bridge", "sandbox", "--sentry-port", str(port)],
                                capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert result.returncode == 2, result.stderr
    assert f"--sentry-port {port}" in result.stderr and "Address already in use" in result.stderr
    assert "Traceback" not in result.stderr
