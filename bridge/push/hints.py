"""Hints waiting for the next cycle: coalesced per issue, bounded in memory.

A flood of hints (10,000 in a minute) must cost neither memory nor API budget: the same issue
hinted twice is one entry, the box holds at most `limit` entries (beyond that a hint is dropped
and counted: the next poll sees the change anyway), and the daemon wakes at most once per
`push.min_gap_seconds` however many hints arrive.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from bridge.push.verify import Hint

DEFAULT_LIMIT = 50_000


class HintBox:
    """Thread-safe: receiver threads add, the cycle drains."""

    def __init__(self, limit: int = DEFAULT_LIMIT, on_new: Callable[[], None] | None = None) -> None:
        self.limit = limit
        self.on_new = on_new
        self._hints: set[Hint] = set()
        self._lock = threading.Lock()
        self.received = 0
        self.dropped = 0

    def add(self, hint: Hint) -> bool:
        """Keep `hint` for the next cycle; False when the box is full (the hint is dropped)."""
        with self._lock:
            self.received += 1
            if hint in self._hints:
                return True
            if len(self._hints) >= self.limit:
                self.dropped += 1
                return False
            self._hints.add(hint)
        if self.on_new is not None:
            self.on_new()
        return True

    def drain(self) -> set[Hint]:
        """Everything waiting, now handed to a cycle."""
        with self._lock:
            taken, self._hints = self._hints, set()
        return taken

    def __len__(self) -> int:
        with self._lock:
            return len(self._hints)
