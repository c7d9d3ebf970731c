"""systemd's notify protocol (sd_notify(3)) without a dependency: one datagram per message to the
AF_UNIX socket named by `$NOTIFY_SOCKET`.

Why by hand: the protocol is a newline-separated `KEY=value` text in one datagram, and the
libraries that wrap it either need libsystemd at build time or are unmaintained.  The rules we
follow from the man page:

* no `$NOTIFY_SOCKET` (not started by systemd, or `Type=` is not notify): every call is a no-op;
* an address starting with `@` is in the abstract namespace (a leading NUL byte);
* the watchdog applies only when `$WATCHDOG_PID` is unset or names this process, and the ping
  interval is half of `$WATCHDOG_USEC`, as sd_watchdog_enabled(3) recommends;
* sending never raises and never blocks for long (a datagram queue that nobody drains is full
  after a handful of messages): losing a status line must never stop a sync.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Mapping

log = logging.getLogger("bridge.notify")

NOTIFY_SOCKET_ENV = "NOTIFY_SOCKET"
WATCHDOG_USEC_ENV = "WATCHDOG_USEC"
WATCHDOG_PID_ENV = "WATCHDOG_PID"
STATUS_MAX_CHARS = 200
SEND_TIMEOUT_SECONDS = 1.0


def socket_address(value: str) -> str | bytes | None:
    """The address to `sendto`: a filesystem path, or bytes for the abstract namespace."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None  # systemd only ever passes absolute paths or @names; anything else is not ours


def watchdog_interval(env: Mapping[str, str], pid: int | None = None) -> float | None:
    """Seconds between WATCHDOG=1 pings (half the timeout), or None when no watchdog is asked of
    this process."""
    raw = env.get(WATCHDOG_USEC_ENV, "")
    owner = env.get(WATCHDOG_PID_ENV, "")
    if owner and owner != str(os.getpid() if pid is None else pid):
        return None  # the watchdog belongs to another process (e.g. our parent)
    try:
        usec = int(raw)
    except ValueError:
        return None
    return usec / 2_000_000 if usec > 0 else None


def one_line(text: str) -> str:
    """A STATUS= value: one line (the protocol is newline-separated), bounded in length."""
    flat = " ".join(text.split())
    return flat if len(flat) <= STATUS_MAX_CHARS else flat[: STATUS_MAX_CHARS - 1] + "…"


class Notifier:
    """Sends notify messages; a disabled notifier (no socket) accepts every call and does nothing."""

    def __init__(self, address: str | bytes | None, *, watchdog_seconds: float | None = None) -> None:
        self.address = address
        self.watchdog_seconds = watchdog_seconds if address is not None else None
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._warned = False

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Notifier:
        return cls(socket_address(env.get(NOTIFY_SOCKET_ENV, "")), watchdog_seconds=watchdog_interval(env))

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        """Send `KEY=value` fields in one datagram; True when it was delivered to the socket."""
        if self.address is None:
            return False
        payload = "\n".join(fields).encode()
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    self._sock.settimeout(SEND_TIMEOUT_SECONDS)
                self._sock.sendto(payload, self.address)
            except OSError as exc:
                if not self._warned:  # once: a missing socket would otherwise flood the log
                    log.warning("cannot notify systemd: %s", exc, extra={"event": "notify.failed"})
                    self._warned = True
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={one_line(status)}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={one_line(text)}")

    def reloading(self) -> bool:
        # MONOTONIC_USEC lets systemd >= 253 (Type=notify-reload) match the READY=1 that follows.
        return self.send("RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}")

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={one_line(status)}"] if status else []))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def close(self) -> None:
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
