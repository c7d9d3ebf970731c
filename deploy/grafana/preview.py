"""Render preview.png: the dashboard's own queries, answered by a real Prometheus that scraped a
real `run` against the built-in emulators, drawn with matplotlib.

Grafana itself is not available here, so this is not a Grafana screenshot: it is what the panels'
PromQL returns over a few minutes of a staged day, laid out on the dashboard's grid.  The day is
compressed (a 2 s interval, a 1 s scrape, `$__rate_interval` = 10 s) and played in phases:

1. steady changes on both sides, with hooks from both;
2. the Tracker API answers some requests 429 (rate-limit waits, retries);
3. both sides change the same issues (sync.conflict = "manual": conflicts pile up) and one
   Sentry issue refuses every write (a failing link);
4. Sentry is down (aborted cycles), then back.

Needs the `prometheus` binary (Debian's prometheus package) and matplotlib (not a dependency of
the bridge: `pip install matplotlib` into a scratch venv that also has the bridge installed).
Run from the repository root:  python deploy/grafana/preview.py [--seconds 240] [--out PATH]
Everything listens on 127.0.0.1 only and stops at the end.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import random
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend is chosen first

from bridge.cli import main as bridge_cli  # noqa: E402
from bridge.sandbox.http import LoopbackServer  # noqa: E402
from bridge.sandbox.sentry_emulator import DEFAULT_TOKEN as SENTRY_TOKEN  # noqa: E402
from bridge.sandbox.sentry_emulator import SentryEmulator  # noqa: E402
from bridge.sandbox.tracker_emulator import DEFAULT_TOKEN as TRACKER_TOKEN  # noqa: E402
from bridge.sandbox.tracker_emulator import TrackerEmulator  # noqa: E402

HERE = Path(__file__).resolve().parent
DASHBOARD = HERE / "sentry-tracker-bridge.json"
JOB = "sentry-tracker-bridge"
RATE_INTERVAL = "10s"
PAIRS = 30
SENTRY_SECRET = "preview-sentry-secret"  # noqa: S105 - a throwaway value for a local run
TRACKER_SECRET = "preview-tracker-secret"  # noqa: S105


def free_port() -> int:
    """A loopback port nobody holds now: the bridge, its receiver and Prometheus each need one."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def toml(config: dict[str, Any]) -> str:
    """The few shapes this config needs: tables of strings, numbers, booleans and lists."""
    lines: list[str] = []

    def value(v: Any) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, (int, float)):
            return repr(v)
        if isinstance(v, list):
            return "[" + ", ".join(value(x) for x in v) + "]"
        return json.dumps(str(v))

    def table(path: str, body: dict[str, Any]) -> None:
        scalars = {k: v for k, v in body.items() if not isinstance(v, dict)}
        if scalars:
            lines.append(f"[{path}]")
            lines.extend(f"{json.dumps(k) if '.' in k else k} = {value(v)}" for k, v in scalars.items())
        for k, v in body.items():
            if isinstance(v, dict):
                table(f"{path}.{k}" if path else k, v)

    table("", config)
    return "\n".join(lines) + "\n"


@contextlib.contextmanager
def process(args: list[str], log: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A child process for the length of the block, its output in `log`; stopped however the
    block ends, so no bridge or Prometheus outlives the run."""
    with log.open("wb") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)  # noqa: S603
    try:
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def wait_until(what: str, check: Callable[[], bool], timeout: float = 30.0) -> None:
    """Poll with a deadline: a process that never comes up ends the run with a sentence."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise SystemExit(f"timed out waiting for {what}")
        time.sleep(0.2)


def answers(url: str) -> bool:
    """Whether `url` answers 200 yet (the processes need a moment to listen)."""
    try:
        with urllib.request.urlopen(url, timeout=2) as reply:  # noqa: S310 - loopback only
            return bool(reply.status == 200)
    except OSError:
        return False


def post_hook(port: int, key: str) -> None:
    """What Tracker's queue trigger would send; the emulator has no triggers that post."""
    request = urllib.request.Request(f"http://127.0.0.1:{port}/hooks/tracker", data=json.dumps({"key": key}).encode(),
                                     headers={"X-Bridge-Secret": TRACKER_SECRET}, method="POST")
    with contextlib.suppress(OSError), urllib.request.urlopen(request, timeout=2):  # noqa: S310 - loopback only
        pass


def stage_a_day(sentry: SentryEmulator, tracker: TrackerEmulator, pairs: list[tuple[str, str]], hooks_port: int,
                seconds: float) -> None:
    """The four phases of the module docstring, each a quarter of `seconds`."""
    rng = random.Random(16)  # noqa: S311 - a reproducible play, not a secret
    started = time.monotonic()
    quarter = seconds / 4
    phase_done: set[int] = set()
    stuck_sid = pairs[-1][0]  # never picked for the random changes below
    while (elapsed := time.monotonic() - started) < seconds:
        phase = int(elapsed // quarter)
        if phase not in phase_done:
            phase_done.add(phase)
            if phase == 1:
                tracker.inject("status", status=429, headers={"Retry-After": "1"}, method="POST", path="/_search$",
                               times=40)
                tracker.inject("status", status=429, headers={"Retry-After": "1"}, method="GET", times=60)
            if phase == 2:
                tracker.clear_faults()
                # Tracker closes it, and Sentry refuses the write for good: a link that keeps failing.
                sentry.inject("status", status=400, method="PUT", path=f"/issues/{stuck_sid}/$", times=10**6)
                tracker.set_status(pairs[-1][1], "closed", resolution="fixed", by="bob")
            if phase == 3:
                sentry.inject("status", status=503, times=10**6)
        sid, key = rng.choice(pairs[:-1])
        if phase == 2 and rng.random() < 0.5:
            # Both sides change the same issue to values the mapping cannot reconcile: a conflict.
            sentry.set_status(sid, "ignored", by="alice@example.com")
            tracker.set_status(key, "inProgress", by="bob")
        elif rng.random() < 0.5:
            sentry.set_status(sid, rng.choice(["resolved", "unresolved"]), by="alice@example.com")
        else:
            if rng.random() < 0.5:
                tracker.set_status(key, "closed", resolution="fixed", by="bob")
            else:
                tracker.set_status(key, "open", by="bob")
            post_hook(hooks_port, key)  # what the queue trigger would send
        if phase == 3 and elapsed > 3.6 * quarter:
            sentry.clear_faults()  # Sentry is back for the last stretch
        time.sleep(rng.uniform(1.0, 3.0))


def query_range(prometheus: str, expr: str, start: float, end: float) -> list[dict[str, Any]]:
    """The panel's expression as Grafana would send it: its variables filled in (all instances,
    the one job, a rate interval of a few scrapes), over the whole run in 2 s steps."""
    expr = (expr.replace("$__rate_interval", RATE_INTERVAL).replace('instance=~"$instance"', 'instance=~".*"')
            .replace("$job", JOB))
    query = urllib.parse.urlencode({"query": expr, "start": start, "end": end, "step": 2})
    with urllib.request.urlopen(f"{prometheus}/api/v1/query_range?{query}", timeout=30) as reply:  # noqa: S310
        data = json.load(reply)
    if data.get("status") != "success":
        raise SystemExit(f"Prometheus refused {expr!r}: {data}")
    result: list[dict[str, Any]] = data["data"]["result"]
    return result


def legend(template: str, labels: dict[str, str]) -> str:
    """A target's `legendFormat` with `{{label}}` filled in, as Grafana names a series."""
    for name, value in labels.items():
        template = template.replace("{{" + name + "}}", value)
    return template


def human(value: float, unit: str) -> str:
    """A stat panel's number in the panel's unit, roughly as Grafana shows it."""
    if unit == "s":
        return f"{value:.0f} s" if value >= 10 else f"{value:.2f} s"
    if unit == "bytes":
        return f"{value / 2**20:.0f} MiB"
    return f"{value:.0f}" if value == int(value) else f"{value:.2f}"


def render(prometheus: str, start: float, end: float, out: Path) -> None:
    """Every panel at its place on the dashboard's 24-column grid: rows as headings, stat panels
    as their last values, time series as lines."""
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    panels = board["panels"]
    bottom = max(p["gridPos"]["y"] + p["gridPos"]["h"] for p in panels)
    unit_h = 0.42  # inches per grid row
    fig = plt.figure(figsize=(22, bottom * unit_h + 0.8))
    fig.suptitle(f"{board['title']} - the dashboard's queries over a staged {end - start:.0f} s run "
                 "(Prometheus + matplotlib, not Grafana)", fontsize=13, x=0.01, ha="left")
    top = 1 - 0.8 / (bottom * unit_h + 0.8)
    for panel in panels:
        pos = panel["gridPos"]
        left, width = pos["x"] / 24 + 0.03, pos["w"] / 24 - 0.036  # room for the y tick labels
        height = pos["h"] / bottom * top - 0.012
        lower = top - (pos["y"] + pos["h"]) / bottom * top + 0.006
        if panel["type"] == "row":
            fig.text(0.004, lower + height / 2, panel["title"], fontsize=12, fontweight="bold", va="center")
            continue
        ax = fig.add_axes((left, lower, width, height))
        ax.set_title(panel["title"], fontsize=9, loc="left")
        unit = panel["fieldConfig"]["defaults"].get("unit", "short")
        if panel["type"] == "stat":
            ax.set_axis_off()
            values = []
            mappings = {k: v["text"] for m in panel["fieldConfig"]["defaults"].get("mappings", [])
                        for k, v in m["options"].items()}
            for target in panel["targets"]:
                for serie in query_range(prometheus, target["expr"], start, end):
                    name = legend(target["legendFormat"], serie["metric"])
                    last = float(serie["values"][-1][1])
                    shown = mappings.get(f"{last:g}") or human(last, unit)
                    values.append(f"{name}: {shown}")
            ax.text(0.5, 0.4, "\n".join(values) or "no data", ha="center", va="center",
                    fontsize=14 if len(values) < 2 else 10, transform=ax.transAxes)
            continue
        for target in panel["targets"]:
            for serie in query_range(prometheus, target["expr"], start, end):
                xs = [float(t) - start for t, _ in serie["values"]]
                ys = [float(v) for _, v in serie["values"]]
                ax.plot(xs, ys, linewidth=1, label=legend(target["legendFormat"], serie["metric"]))
        ax.tick_params(labelsize=7)
        ax.set_xlim(0, end - start)
        ax.set_ylabel(unit, fontsize=7)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="upper left", ncol=3)
        else:
            ax.text(0.5, 0.5, "no data", ha="center", va="center", transform=ax.transAxes)
    fig.savefig(out, dpi=80)


def main() -> int:
    """Emulators, links, `run`, Prometheus, the staged day, the picture."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=240.0)
    parser.add_argument("--out", type=Path, default=HERE / "preview.png")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="stb-preview-"))
    sentry, tracker = SentryEmulator(org="acme"), TrackerEmulator()
    sentry.add_project("backend")
    for email in ("alice@example.com", "bob@example.com"):
        sentry.add_user(email, email.split("@")[0].title())
    for login in ("alice", "bob"):
        tracker.add_user(login, f"{login}@example.com")
    tracker.latency_seconds = sentry.latency_seconds = 0.01
    metrics_port, hooks_port, prom_port = free_port(), free_port(), free_port()
    with LoopbackServer(sentry) as sentry_srv, LoopbackServer(tracker) as tracker_srv:
        pairs = [(sentry.add_issue("backend", f"Error {n}"), tracker.add_issue("OPS", f"Ticket {n}"))
                 for n in range(PAIRS)]
        config = {
            "sentry": {"url": sentry_srv.url, "organization": "acme", "projects": ["backend"], "token": SENTRY_TOKEN},
            "tracker": {"url": tracker_srv.url, "org_id": "1234567", "token": TRACKER_TOKEN, "queue": "OPS"},
            "state": {"path": str(folder / "bridge.db")},
            "sync": {"interval_seconds": 2, "conflict": "manual", "retry_attempts": 3, "retry_deadline_seconds": 5,
                     "failure_backoff_max_seconds": 4},
            "create": {"enabled": False},
            "metrics": {"listen": f"127.0.0.1:{metrics_port}"},
            "push": {"enabled": True, "listen": f"127.0.0.1:{hooks_port}", "sentry_secret": SENTRY_SECRET,
                     "tracker_secret": TRACKER_SECRET, "min_gap_seconds": 1},
        }
        path = folder / "bridge.toml"
        path.write_text(toml(config), encoding="utf-8")
        said = io.StringIO()
        with contextlib.redirect_stderr(said):
            code = bridge_cli(["--config", str(path), "link", *[part for pair in pairs for part in pair]], env={},
                              out=io.StringIO())
        if code != 0:
            raise SystemExit(f"link exited {code}: {said.getvalue()}")
        sentry.subscribe_webhooks(f"http://127.0.0.1:{hooks_port}/hooks/sentry", SENTRY_SECRET)
        (folder / "prometheus.yml").write_text(json.dumps({
            "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
            "scrape_configs": [{"job_name": JOB, "static_configs": [{"targets": [f"127.0.0.1:{metrics_port}"]}]}],
        }), encoding="utf-8")
        bridge_args = [sys.executable, "-m", "bridge", "--config", str(path), "run"]
        prom_args = ["prometheus", f"--config.file={folder / 'prometheus.yml'}",
                     f"--storage.tsdb.path={folder / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prom_port}"]
        prometheus = f"http://127.0.0.1:{prom_port}"
        with process(bridge_args, folder / "bridge.log"), process(prom_args, folder / "prometheus.log"):
            wait_until("/metrics", lambda: answers(f"http://127.0.0.1:{metrics_port}/metrics"))
            wait_until("Prometheus", lambda: answers(f"{prometheus}/-/ready"))
            start = time.time()
            stage_a_day(sentry, tracker, pairs, hooks_port, args.seconds)
            time.sleep(5)  # the last cycles and scrapes
            end = time.time()
            render(prometheus, start, end, args.out)
    print(f"wrote {args.out} (logs in {folder})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
