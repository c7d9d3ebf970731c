"""The shared frame of both API emulators: routing, a request log, fault injection, latency,
and two ways to serve an emulator: as an `httpx.MockTransport` (in-process, fast) and as a real
HTTP server on loopback (for the CLI, the demo and third-party clients).

An emulator is a plain object with in-memory state and a `route(req) -> EmuResponse` method;
`EmulatorBase.serve()` wraps it with the log, the faults and one lock, so that both adapters
behave the same way.
"""

from __future__ import annotations

import contextlib
import copy
import http.server
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import parse_qsl, urlsplit

import httpx

FaultKind = Literal["status", "reset", "timeout_before", "timeout_after", "malformed_json", "html", "mangle"]


@dataclass
class EmuRequest:
    """A request as an emulator sees it; `headers` keys are lower-case."""

    method: str
    path: str
    query: list[tuple[str, str]]
    headers: dict[str, str]
    body: bytes
    base_url: str

    def arg(self, name: str, default: str | None = None) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return default

    def args(self, name: str) -> list[str]:
        return [value for key, value in self.query if key == name]

    def has_arg(self, name: str) -> bool:
        return any(key == name for key, _ in self.query)

    def json(self) -> Any:
        """The JSON body; raises `ValueError` when it is not JSON (emulators answer 400/422)."""
        if not self.body:
            return None
        return json.loads(self.body)


@dataclass
class EmuResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


def json_response(status: int, obj: Any, headers: dict[str, str] | None = None) -> EmuResponse:
    body = json.dumps(obj, separators=(",", ":")).encode()
    return EmuResponse(status, body, {"content-type": "application/json", **(headers or {})})


@dataclass
class Fault:
    """One injected fault.  `method`, `path` and `query` (regexes searched in the path and in the
    `k=v&k=v` query string) select requests; `times` is how many matching requests it hits;
    `after` skips that many matches first.

    `mangle` (kind "mangle") serves the request for real, then passes the JSON of the answer to
    the function and sends what it returns instead: a dropped field, a wrong type, a list where
    an object belongs (bytes are sent as they are).  The state change of a write still happens,
    as with a proxy that corrupts answers on the way back."""

    kind: FaultKind
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    method: str | None = None
    path: str | None = None
    times: int = 1
    after: int = 0
    query: str | None = None
    mangle: Callable[[Any], Any] | None = None

    def matches(self, req: EmuRequest) -> bool:
        if self.method and self.method.upper() != req.method:
            return False
        if self.query and not re.search(self.query, "&".join(f"{k}={v}" for k, v in req.query)):
            return False
        return not (self.path and not re.search(self.path, req.path))


class DropConnection(Exception):  # noqa: N818 - a signal to the adapter, not an error
    """The adapter must end the connection without an answer (`applied`: the state changed)."""

    def __init__(self, applied: bool) -> None:
        self.applied = applied


class HangUp(Exception):  # noqa: N818
    """The adapter must behave like a server that never answers (a client timeout)."""

    def __init__(self, applied: bool) -> None:
        self.applied = applied


def may_write(method: str, path: str) -> bool:
    """Whether a request may change state: anything but GET, except the POST searches."""
    return method != "GET" and not path.endswith(("/_search", "/_findByUnique"))


@dataclass
class LoggedRequest:
    method: str
    path: str
    query: list[tuple[str, str]]
    status: int | str
    body: Any


class Router:
    """Method + regex routes; the first full match wins.  Named groups become handler kwargs."""

    def __init__(self) -> None:
        self._routes: list[tuple[str, re.Pattern[str], Callable[..., EmuResponse]]] = []

    def add(self, method: str, pattern: str, handler: Callable[..., EmuResponse]) -> None:
        self._routes.append((method, re.compile(pattern), handler))

    def dispatch(self, req: EmuRequest, not_found: Callable[[], EmuResponse]) -> EmuResponse:
        allowed = False
        for method, pattern, handler in self._routes:
            match = pattern.fullmatch(req.path)
            if not match:
                continue
            if method != req.method:
                allowed = True
                continue
            return handler(req, **match.groupdict())
        if allowed:
            return json_response(405, {"detail": f'Method "{req.method}" not allowed.'})
        return not_found()


class EmulatorBase:
    """State lock, request log, faults and latency shared by both emulators."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.router = Router()
        self.log: list[LoggedRequest] = []
        self.faults: list[Fault] = []
        self.latency_seconds = 0.0

    # -- subclasses ---------------------------------------------------------------------
    def route(self, req: EmuRequest) -> EmuResponse:
        raise NotImplementedError

    def fault_response(self, fault: Fault) -> EmuResponse:
        """The answer for a `status` fault; subclasses shape the body like the real API."""
        return EmuResponse(fault.status, fault.body, {"content-type": "application/json", **fault.headers})

    # -- faults -------------------------------------------------------------------------
    def inject(self, kind: FaultKind, **kw: Any) -> Fault:
        fault = Fault(kind=kind, **kw)
        with self.lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def _take_fault(self, req: EmuRequest) -> Fault | None:
        for fault in self.faults:
            if fault.times <= 0 or not fault.matches(req):
                continue
            if fault.after > 0:
                fault.after -= 1
                continue
            fault.times -= 1
            return fault
        return None

    # -- the log ------------------------------------------------------------------------
    def requests(self, method: str | None = None, path: str | None = None) -> list[LoggedRequest]:
        """Logged requests, optionally filtered by method and a regex searched in the path."""
        with self.lock:
            return [
                r
                for r in self.log
                if (method is None or r.method == method) and (path is None or re.search(path, r.path))
            ]

    def writes(self) -> list[LoggedRequest]:
        """Logged requests that may change state (anything but GET, and not searches)."""
        return [r for r in self.requests() if may_write(r.method, r.path)]

    def clear_log(self) -> None:
        with self.lock:
            self.log.clear()

    # -- serving ------------------------------------------------------------------------
    def serve(self, req: EmuRequest) -> EmuResponse:
        """Apply faults, route, log.  May raise `DropConnection` or `HangUp` for the adapter."""
        if self.latency_seconds:
            time.sleep(self.latency_seconds)
        try:
            body: Any = req.json()
        except ValueError:
            body = req.body.decode(errors="replace")
        with self.lock:
            fault = self._take_fault(req)
            status: int | str
            try:
                if fault is None:
                    response = self.route(req)
                elif fault.kind == "status":
                    response = self.fault_response(fault)
                elif fault.kind == "malformed_json":
                    response = EmuResponse(
                        200, b'{"id": "1", "truncated', {"content-type": "application/json"}
                    )
                elif fault.kind == "html":
                    response = EmuResponse(
                        fault.status, b"<html><body><h1>502 Bad Gateway</h1></body></html>",
                        {"content-type": "text/html"},
                    )
                elif fault.kind == "mangle":
                    response = _mangled(self.route(req), fault.mangle)
                elif fault.kind == "reset":
                    raise DropConnection(applied=False)
                elif fault.kind == "timeout_before":
                    raise HangUp(applied=False)
                else:  # timeout_after: the change is applied, the answer is lost
                    self.route(req)
                    raise HangUp(applied=True)
                status = response.status
            except (DropConnection, HangUp) as exc:
                self.log.append(LoggedRequest(req.method, req.path, req.query, type(exc).__name__, body))
                raise
            self.log.append(LoggedRequest(req.method, req.path, req.query, status, body))
            return response


def _mangled(response: EmuResponse, change: Callable[[Any], Any] | None) -> EmuResponse:
    """`response` with its JSON body passed through `change` (a deep copy: state is untouched)."""
    if change is None:
        return response
    try:
        data = json.loads(response.body) if response.body else None
    except ValueError:
        return response
    changed = change(copy.deepcopy(data))
    body = changed if isinstance(changed, bytes) else json.dumps(changed, separators=(",", ":")).encode()
    return EmuResponse(response.status, body, dict(response.headers))


# -- adapter 1: httpx.MockTransport ------------------------------------------------------------


def mock_transport(emulator: EmulatorBase, base_url: str = "http://emulator.test") -> httpx.MockTransport:
    """Serve `emulator` in-process; faults become the httpx exceptions a real socket would give."""

    def handler(request: httpx.Request) -> httpx.Response:
        url = request.url
        req = EmuRequest(
            method=request.method,
            path=url.path,
            query=parse_qsl(url.query.decode(), keep_blank_values=True),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=request.read(),
            base_url=f"{url.scheme}://{url.netloc.decode()}" if url.netloc else base_url,
        )
        try:
            response = emulator.serve(req)
        except DropConnection:
            raise httpx.RemoteProtocolError("Server disconnected without sending a response.") from None
        except HangUp:
            raise httpx.ReadTimeout("timed out") from None
        return httpx.Response(response.status, headers=response.headers, content=response.body)

    return httpx.MockTransport(handler)


# -- adapter 2: a real HTTP server on loopback ---------------------------------------------------


class LoopbackServer:
    """Runs an emulator on 127.0.0.1 in a background thread.  `hang_seconds` is how long a
    `HangUp` fault keeps the connection silent before closing it."""

    def __init__(self, emulator: EmulatorBase, port: int = 0, hang_seconds: float = 2.0) -> None:
        self.emulator = emulator
        self.hang_seconds = hang_seconds
        self._server = _ThreadingServer(("127.0.0.1", port), _make_handler(self))
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> LoopbackServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="emulator", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        if self._thread:
            self._thread.join(timeout=5)

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _ThreadingServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Dropped connections are part of the game here; stay quiet about them."""


def _make_handler(server: LoopbackServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        # Headers and body go out in separate writes; with Nagle on, each answer would wait for
        # the client's delayed ACK (~40 ms) and every benchmark would measure that instead.
        disable_nagle_algorithm = True

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            """Silence the default stderr access log."""

        def _handle(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("content-length") or 0)
            body = self.rfile.read(length) if length else b""
            host = self.headers.get("host") or server.url.split("://", 1)[1]
            req = EmuRequest(
                method=self.command,
                path=parts.path,
                query=parse_qsl(parts.query, keep_blank_values=True),
                headers={k.lower(): v for k, v in self.headers.items()},
                body=body,
                base_url=f"http://{host}",
            )
            try:
                response = server.emulator.serve(req)
            except DropConnection:
                self._drop()
                return
            except HangUp:
                time.sleep(server.hang_seconds)
                self._drop()
                return
            self.send_response(response.status)
            for key, value in response.headers.items():
                self.send_header(key, value)
            self.send_header("content-length", str(len(response.body)))
            self.end_headers()
            if response.body and self.command != "HEAD":
                self.wfile.write(response.body)

        def _drop(self) -> None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

        do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = _handle  # noqa: N815

    return Handler


def iter_pages(items: list[Any], page: int, per_page: int) -> Iterator[Any]:
    """Items of a 1-based page."""
    start = (page - 1) * per_page
    yield from items[start : start + per_page]
