"""The hook receiver inside `run`: a small HTTP server on `push.listen` (localhost by default).

It is a security boundary, so each request is judged in this order, and the cheap checks come
first: the path and method (404/405); a `Content-Length` (411) of at most 1 MiB (413, the body
is not read); the body, read within a deadline; the signature or shared secret (401, before any
parse); the JSON (400).  Only then is a hint kept, and the answer (202) goes back at once: the
work happens in the next cycle, never in the request.  Nothing secret is logged: not the
secrets, not the signature, not the body.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from bridge.push.echoes import EchoBook
from bridge.push.hints import HintBox
from bridge.push.verify import MAX_BODY_BYTES, BadHook, Hint, sentry_hook, sentry_signature_ok, shared_secret_ok
from bridge.push.verify import tracker_hint as parse_tracker_hint

log = logging.getLogger("bridge.push")

READ_TIMEOUT_SECONDS = 5.0  # a client that sends its body slowly is cut off, not waited for
MAX_CONCURRENT = 32  # requests handled at once; beyond, 503 (a flood never takes every thread)


class HookCounters:
    """What the receiver saw, for `/metrics` and the tests."""

    def __init__(self, on_count: Callable[[str, str], None] | None = None) -> None:
        self._lock = threading.Lock()
        self.by_outcome: dict[tuple[str, str], int] = {}
        self.on_count = on_count  # e.g. the Prometheus counter of the daemon's /metrics

    def count(self, source: str, outcome: str) -> None:
        with self._lock:
            self.by_outcome[(source, outcome)] = self.by_outcome.get((source, outcome), 0) + 1
        if self.on_count is not None:
            self.on_count(source, outcome)

    def get(self, source: str, outcome: str) -> int:
        with self._lock:
            return self.by_outcome.get((source, outcome), 0)


class _Server(ThreadingHTTPServer):
    # The listen backlog: socketserver's default of 5 makes a burst of hooks (Sentry sends one per
    # change, at once) wait for SYN retransmits of a second or more instead of a prompt 202 or 503.
    request_queue_size = 128


class HookReceiver:
    """Serves `POST /hooks/sentry` and `POST /hooks/tracker` on its own thread."""

    def __init__(self, address: tuple[str, int], hints: HintBox, *, sentry_secret: str | None,
                 tracker_secret: str | None, counters: HookCounters | None = None,
                 echoes: EchoBook | None = None) -> None:
        self.hints = hints
        self.echoes = echoes or EchoBook()
        self.counters = counters or HookCounters()
        self._sentry_secret = sentry_secret.encode() if sentry_secret else None
        self._tracker_secret = tracker_secret.encode() if tracker_secret else None
        self._slots = threading.BoundedSemaphore(MAX_CONCURRENT)
        self._busy = 0  # requests holding a slot now
        self._busy_lock = threading.Lock()
        self._server = _Server(address, self._handler_class())
        self._server.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    @property
    def takes_sentry(self) -> bool:
        """Whether Sentry's hooks are accepted (a Sentry secret is set)."""
        return self._sentry_secret is not None

    @property
    def busy(self) -> int:
        """Requests being handled now (each holds one of MAX_CONCURRENT slots)."""
        with self._busy_lock:
            return self._busy

    def _hold(self, delta: int) -> None:
        with self._busy_lock:
            self._busy += delta

    def start(self) -> None:
        self._thread = threading.Thread(target=self._server.serve_forever, name="hooks", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    # -- judging one request ------------------------------------------------------------------
    def judge(self, path: str, headers: Callable[[str], str | None], body: bytes) -> tuple[int, dict[str, Any]]:
        """(status, answer) for a request whose body has been read; adds the hint it carries."""
        source = "sentry" if path == "/hooks/sentry" else "tracker"
        try:
            hint = self._hint(source, headers, body)
        except BadHook as bad:
            self.counters.count(source, str(bad.status))
            if bad.status == 401:
                log.warning("hook refused (%s): %s", source, bad.reason, extra={"event": "hook.refused"})
            return bad.status, {"error": bad.reason}
        if hint is None:
            self.counters.count(source, "ignored")
            return 200, {"ignored": True}
        kept = self.hints.add(hint)
        self.counters.count(source, "queued" if kept else "dropped")
        log.debug("hook: %s %s changed", hint.side, hint.ref, extra={"event": "hook.hint"})
        return 202, {"queued": kept}

    def _hint(self, source: str, headers: Callable[[str], str | None], body: bytes) -> Hint | None:
        if source == "sentry":
            if self._sentry_secret is None:
                raise BadHook(404, "Sentry hooks are not configured (push.sentry_secret)")
            if not sentry_signature_ok(self._sentry_secret, body, headers("Sentry-Hook-Signature")):
                raise BadHook(401, "bad or missing Sentry-Hook-Signature")
            hook = sentry_hook(body)
            if hook is None or self.echoes.is_echo(hook.hint.ref, hook.actor_type, hook.actor_id):
                return None  # another resource, or our own write coming back
            return hook.hint
        if self._tracker_secret is None:
            raise BadHook(404, "Tracker hooks are not configured (push.tracker_secret)")
        if not shared_secret_ok(self._tracker_secret, headers("X-Bridge-Secret")):
            raise BadHook(401, "bad or missing X-Bridge-Secret")
        return parse_tracker_hint(body)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "sentry-tracker-bridge"
            sys_version = ""
            timeout = READ_TIMEOUT_SECONDS

            def do_POST(self) -> None:  # noqa: N802 - the http.server name
                if not receiver._slots.acquire(blocking=False):
                    self._lost(503, {"error": "busy; the next poll carries the change"})
                    return
                receiver._hold(1)
                try:
                    self._post()
                finally:
                    receiver._hold(-1)
                    receiver._slots.release()

            def _post(self) -> None:
                if self.path not in ("/hooks/sentry", "/hooks/tracker"):
                    self._answer(404, {"error": "not found"})
                    return
                length = self.headers.get("Content-Length")
                if length is None or not length.strip().isdigit():
                    self._lost(411, {"error": "Content-Length required"})
                    return
                if int(length) > MAX_BODY_BYTES:
                    self._lost(413, {"error": f"body over {MAX_BODY_BYTES} bytes"})
                    return
                try:
                    body = self.rfile.read(int(length))
                except OSError:
                    return  # too slow or gone: nothing to answer
                if len(body) != int(length):
                    self._lost(400, {"error": "body shorter than Content-Length"})
                    return
                status, answer = receiver.judge(self.path, self.headers.get, body)
                self._answer(status, answer)

            def do_GET(self) -> None:  # noqa: N802
                self._answer(405 if self.path in ("/hooks/sentry", "/hooks/tracker") else 404,
                             {"error": "POST only" if self.path.startswith("/hooks/") else "not found"})

            do_PUT = do_DELETE = do_PATCH = do_GET  # noqa: N815

            def _lost(self, status: int, answer: dict[str, Any]) -> None:
                """A request on a hook path turned away before it was judged: counted, since a
                Sentry hook lost so is a change no hint points at (`bridge.push.trust`)."""
                if self.path in ("/hooks/sentry", "/hooks/tracker"):
                    receiver.counters.count(self.path.rsplit("/", 1)[1], str(status))
                self._answer(status, answer)

            def _answer(self, status: int, answer: dict[str, Any]) -> None:
                data = json.dumps(answer).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("Connection", "close")
                self.end_headers()
                self.wfile.write(data)
                self.close_connection = True

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                return  # never the default access log: it would print paths and peers to stderr

        return Handler
