"""Which Sentry hooks are the bridge's own writes coming back (design §10: echoes are dropped).

A hook names its actor; the bridge's own token acts as its integration, `{"type":
"application", "id": "<app uuid>"}`, but so does any other integration, and Sentry's own actions
(auto-resolve, escalation, `issue.created`) come as `{"type": "application", "id": "sentry"}`.
The bridge does not know its app's uuid offline, so an application hook is taken as an echo
only when the bridge itself wrote that issue moments before (`ECHO_SECONDS`).  Every other
application hook is a hint like a person's: dropping it would leave Sentry's own changes (and
other integrations') to the rotating slice of a focused cycle.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

ECHO_SECONDS = 120.0  # Sentry sends a hook within seconds of the change
KEPT = 50_000  # issues whose last write is remembered (bounded memory under a mass change)
SYSTEM_ACTOR = "sentry"


class EchoBook:
    """Thread-safe: the cycle's writers note, the receiver asks."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic, window: float = ECHO_SECONDS) -> None:
        self._written: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self.clock, self.window = clock, window

    def wrote(self, issue_id: str) -> None:
        """The bridge is about to write this Sentry issue (noted first: the hook may come back
        before the answer does)."""
        with self._lock:
            self._written[issue_id] = self.clock()
            self._written.move_to_end(issue_id)
            while len(self._written) > KEPT:
                self._written.popitem(last=False)

    def is_echo(self, issue_id: str, actor_type: str | None, actor_id: str | None) -> bool:
        """Whether a hook on `issue_id` by this actor is our own write coming back."""
        if actor_type != "application" or actor_id == SYSTEM_ACTOR:
            return False
        with self._lock:
            when = self._written.get(issue_id)
        return when is not None and self.clock() - when <= self.window
