"""SIGTERM and SIGINT in one-shot commands: finish the link in hand, commit, then stop.

`systemctl stop` sends the timer's oneshot unit SIGTERM; a person at a terminal presses Ctrl-C.
Python's defaults would end the process mid-write (SIGTERM) or raise `KeyboardInterrupt` wherever
the main thread happens to be (SIGINT), leaving a cycle marked as running and writes unjournaled.
Inside `graceful_stop` the first signal only sets the engine's stop flag: no new link starts, the
links in hand are committed, and the cycle is closed as interrupted.  A second signal means "now":
it raises `KeyboardInterrupt` (the cycle's row is still closed on the way out).
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType

log = logging.getLogger("bridge.interrupt")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopNow(KeyboardInterrupt):
    """A second stop signal: stop at once.  Carries the signal, so that the exit code says which
    one it was (143 after SIGTERM, 130 after SIGINT)."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


@dataclass
class Stop:
    """What arrived, if anything: `exit_code` is the shell's 128 + signal number."""

    signals: list[signal.Signals] = field(default_factory=list)

    @property
    def received(self) -> signal.Signals | None:
        return self.signals[0] if self.signals else None

    @property
    def exit_code(self) -> int | None:
        return None if self.received is None else 128 + int(self.received)


@contextmanager
def graceful_stop(flag: threading.Event) -> Iterator[Stop]:
    """Turn SIGTERM/SIGINT into `flag.set()` while the block runs (main thread only)."""
    stop = Stop()

    def handler(signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum)
        if stop.signals:
            log.warning("%s received again: stopping now", name.name, extra={"event": "cycle.stop_now"})
            raise StopNow(signum)
        stop.signals.append(name)
        flag.set()
        log.warning("%s received: finishing the links in hand, then stopping (again to stop at once)",
                    name.name, extra={"event": "cycle.stopping"})

    if threading.current_thread() is not threading.main_thread():
        yield stop  # signals reach the main thread only; a caller elsewhere has its own way to stop
        return
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
