"""`sentry-tracker-bridge demo`: the real program against built-in emulators of both APIs.

It starts a Sentry and a Tracker emulator on loopback, writes a config file into a temporary
folder, links five pairs with the real `link` command, then runs real `sync` cycles while
people change things on both sides, printing what each cycle did.  Nothing leaves the machine.
"""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TextIO

from bridge.clients.http import RetryPolicy
from bridge.sandbox.http import LoopbackServer
from bridge.sandbox.sentry_emulator import SentryEmulator
from bridge.sandbox.tracker_emulator import TrackerEmulator

CONFIG = """\
[sentry]
url = "{sentry_url}"
organization = "acme"
projects = ["backend"]
token = "sentry-token"

[tracker]
url = "{tracker_url}"
org_id = "1234567"
token = "tracker-token"
queue = "OPS"

[state]
path = "demo.db"

[sync]
conflict = "sentry"
retry_attempts = 3
retry_deadline_seconds = 10

[mapping.status.to_tracker]
unresolved = "open"
"unresolved.regressed" = "open"
resolved = {{ status = "closed", resolution = "fixed" }}
resolvedInNextRelease = {{ status = "resolved", resolution = "fixed" }}
ignored = {{ status = "closed", resolution = "wontFix" }}

[mapping.users]
"carol@corp.example" = "carol"
"""


def seed(s: SentryEmulator, t: TrackerEmulator) -> list[tuple[str, str]]:
    """People on both sides (alice and bob match by e-mail, carol through [mapping.users], dan has
    no Tracker account) and five issues on each side, unlinked: the demo's and the sandbox's
    starting point."""
    s.add_project("backend")
    for email, name in (("alice@example.com", "Alice"), ("bob@example.com", "Bob"),
                        ("carol@corp.example", "Carol"), ("dan@example.com", "Dan")):
        s.add_user(email, name)
    for login, email in (("alice", "alice@example.com"), ("bob", "bob@example.com"),
                         ("carol", "carol@example.com")):
        t.add_user(login, email)
    rows: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
        ("ZeroDivisionError in billing.invoice_total", {}, {}),
        ("Timeout talking to payments", {"status": "resolved", "substatus": None}, {}),
        ("KeyError: 'user' in session middleware", {"status": "ignored", "substatus": "archived_forever"}, {}),
        ("Database connection pool exhausted", {"assignee": "alice@example.com"}, {}),
        ("TypeError in web/cart.js", {}, {}),
    ]
    pairs = []
    for title, sentry_kw, tracker_kw in rows:
        sid = s.add_issue("backend", title, **sentry_kw)
        key = t.add_issue("OPS", title, **tracker_kw)
        pairs.append((sid, key))
    return pairs


class Demo:
    def __init__(self, out: TextIO, folder: Path, retry_policy: RetryPolicy | None) -> None:
        self.out = out
        self.folder = folder
        self.retry_policy = retry_policy
        self.sentry = SentryEmulator(org="acme")
        self.tracker = TrackerEmulator()
        self.config = folder / "bridge.toml"

    def say(self, text: str = "") -> None:
        print(text, file=self.out)

    def cli(self, *args: str) -> int:
        from bridge.cli import main

        self.say(f"$ sentry-tracker-bridge {' '.join(args)}")
        code = main(["-q", "--config", str(self.config), *args], env={}, out=self.out,
                    retry_policy=self.retry_policy)
        if code in (130, 143):
            raise KeyboardInterrupt  # the command stopped for a signal: so does the demo
        return code

    def seed(self) -> list[tuple[str, str]]:
        return seed(self.sentry, self.tracker)

    def run(self) -> int:
        pairs = self.seed()
        with LoopbackServer(self.sentry) as s_srv, LoopbackServer(self.tracker) as t_srv:
            self.config.write_text(CONFIG.format(sentry_url=s_srv.url, tracker_url=t_srv.url))
            self.say(f"Sentry emulator at {s_srv.url}, Tracker emulator at {t_srv.url}")
            self.say(f"config and state in {self.folder}\n")

            self.say("== 1. Link five existing pairs")
            self.cli("link", *[part for pair in pairs for part in pair])

            self.say("\n== 2. First sync: Sentry is the source for new links (creation starts watching now)")
            self.cli("sync")
            self._show(pairs)

            self.say("\n== 3. People work on both sides")
            (_s1, t1), (s2, _t2), (s3, _t3), (s4, _t4), (s5, t5) = pairs
            self._act(f"Tracker: bob closes {t1} as fixed", lambda: self.tracker.set_status(
                t1, "closed", resolution="fixed", by="bob"))
            self._act(f"Sentry: {s2} regresses", lambda: self.sentry.set_status(
                s2, "unresolved", substatus="regressed"))
            self._act(f"Sentry: {s4} is reassigned to carol@corp.example (mapped by override)",
                      lambda: self.sentry.assign(s4, "carol@corp.example"))
            self._act(f"Sentry: bob bookmarks {s5}", lambda: self.sentry.bookmark(s5, "bob@example.com"))
            self._act(f"Tracker: alice takes {t5}", lambda: self.tracker.set_assignee(t5, "alice", by="alice"))
            self._act(f"Sentry: {s3} is assigned to dan, who has no Tracker account",
                      lambda: self.sentry.assign(s3, "dan@example.com"))
            fresh: list[str] = []
            self._act("Sentry: a new error appears, assigned to bob and bookmarked by alice",
                      lambda: fresh.append(self._new_error()))
            self.say("")
            self.cli("sync")
            new_pair = next(((sid, key) for sid, key in self._links() if sid in fresh), None)
            if new_pair:
                pairs.append(new_pair)
                self.say(f"   (created {new_pair[1]} for Sentry issue {new_pair[0]}; its unique key makes a repeat "
                         "impossible)")
            self._show(pairs)

            self.say("\n== 4. Sync again right away: everything is in step, zero writes")
            before = len(self.sentry.writes()) + len(self.tracker.writes())
            self.cli("sync")
            after = len(self.sentry.writes()) + len(self.tracker.writes())
            self.say(f"write requests seen by the emulators during that cycle: {after - before}")

            self.say("\n== 5. Bookmarks come and go; a hand-added follower survives")
            self._act(f"Tracker: carol follows {t5} by hand",
                      lambda: self.tracker.add_follower(t5, "carol", by="carol"))
            self._act(f"Sentry: bob removes his bookmark on {s5}",
                      lambda: self.sentry.bookmark(s5, "bob@example.com", on=False))
            self.cli("sync")
            self._show([(s5, t5)])

            self.say("\n== 6. Status")
            self.cli("status")
            self.say("\n(unmapped users are reported, never guessed: dan stays unassigned in Tracker)")

            self.say("\n== 7. Doctor: is this configuration sound?")
            self.cli("doctor")
            self.say(f"\n== 8. Explain: why does {s3} look the way it does?")
            self.cli("explain", s3)

            self.say("\n== 9. Push: the service with hooks on; a change crosses in about a second")
            self._push(s4, pairs[3][1])
        return 0

    def _push(self, sid: str, key: str) -> None:
        """`run` as a child process with `[push]` on, the Sentry emulator sending its signed
        webhooks to it; a person resolves an issue and the ticket follows, long before the
        60 s interval."""
        port = _free_port()
        secret = "demo-hook-secret"  # noqa: S105 - the demo's own throwaway secret
        config = self.folder / "push.toml"
        config.write_text(self.config.read_text() + PUSH_CONFIG.format(port=port, secret=secret))
        self.sentry.subscribe_webhooks(f"http://127.0.0.1:{port}/hooks/sentry", secret)
        self.say(f"$ sentry-tracker-bridge --config {config.name} run   (a cycle every 60 s; hooks on port {port})")
        # Our own interpreter and module, our own config file: nothing untrusted is run.
        service = subprocess.Popen([sys.executable, "-m", "bridge", "-q", "--config", str(config), "run"],  # noqa: S603
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            if not _wait(lambda: _listening(port), 20):
                self.say("   (the service did not start listening; skipped)")
                return
            time.sleep(1.0)  # its first cycle
            self._act(f"Sentry: alice resolves {sid}", lambda: self.sentry.set_status(
                sid, "resolved", by="alice@example.com"))
            started = time.monotonic()
            crossed = _wait(lambda: self.tracker.issue_json(key)["status"]["key"] == "closed", 15)
            took = time.monotonic() - started
            self.say(f"   {key} closed in Tracker {took:.1f} s later" if crossed
                     else f"   {key} not closed within {took:.0f} s (the next poll carries it)")
            self._show([(sid, key)])
        finally:
            service.send_signal(signal.SIGTERM)
            try:
                service.wait(20)
            except subprocess.TimeoutExpired:
                service.kill()
                service.wait(5)

    def _new_error(self) -> str:
        sid = self.sentry.add_issue("backend", "OSError: [Errno 28] No space left on device", level="fatal",
                                    assignee="bob@example.com")
        self.sentry.bookmark(sid, "alice@example.com")
        return sid

    def _links(self) -> list[tuple[str, str]]:
        from bridge.store import Store

        store = Store.open(self.folder / "demo.db")
        try:
            return [(link.sentry_id, link.tracker_key) for link in store.links()]
        finally:
            store.close()

    def _act(self, text: str, change: object) -> None:
        self.say(f"  - {text}")
        if callable(change):
            change()

    def _show(self, pairs: Sequence[tuple[str, str]]) -> None:
        for sid, key in pairs:
            s = self.sentry.issue_json(sid)
            t = self.tracker.issue_json(key)
            s_state = s["status"] + (f"/{s['substatus']}" if s.get("substatus") else "")
            s_who = (s.get("assignedTo") or {}).get("email") or "-"
            t_who = (t.get("assignee") or {}).get("display") or "-"
            followers = ",".join(sorted(f.get("display", "?") for f in t.get("followers") or [])) or "-"
            resolution = (t.get("resolution") or {}).get("key")
            t_state = t["status"]["key"] + (f"/{resolution}" if resolution else "")
            self.say(f"   sentry {sid:>10} {s_state:<28} {s_who:<20} | tracker {key:<6} {t_state:<16} "
                     f"{t_who:<8} followers: {followers}")


PUSH_CONFIG = """
[push]
enabled = true
listen = "127.0.0.1:{port}"
sentry_secret = "{secret}"
min_gap_seconds = 0.5
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _wait(check: Callable[[], bool], seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return False


def run_demo(out: TextIO, *, retry_policy: RetryPolicy | None = None) -> int:
    """The demo, start to end; Ctrl-C ends it at once with a line (exit 130), never carries on."""
    with tempfile.TemporaryDirectory(prefix="bridge-demo-") as folder:
        try:
            return Demo(out, Path(folder), retry_policy).run()
        except KeyboardInterrupt:
            print("\ndemo stopped (Ctrl-C)", file=out, flush=True)
            return 130
