"""Whether hooks can be trusted to name Sentry's changes, so that cycles may be focused.

A focused cycle (`bridge.core.focus`) skips the linked Sentry issues no hook named; that is only
safe while Sentry's hooks arrive.  Nothing in Sentry says when they stop (an integration
uninstalled, a webhook URL edited, a secret rotated on one side), so the daemon watches for the
signs and falls back to reading every link (the behaviour without hooks) when it sees one:

- Sentry hooks refused since the last cycle (a bad signature or body: a secret out of step);
  distrusted for `distrust_seconds`;
- a change a hook should have announced (a status change, an assignment) found by the rotating
  slice, with no hook for that issue within `grace_seconds` of finding it; distrusted likewise;
- a Sentry hook turned away (busy, too large, no length) or its hint dropped from a full box:
  the next scheduled cycle reads everything (the lost hook named a change no other read points
  at).

Only Sentry matters here: Tracker's changes are found by the incremental poll every cycle
whatever its trigger does.  Everything runs on the daemon's cycle thread.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

from bridge.core.focus import Focus
from bridge.push.receiver import HookCounters
from bridge.push.verify import Hint

log = logging.getLogger("bridge.push")

GRACE_SECONDS = 120.0  # a hook arrives within seconds; this leaves room for a slow one
DISTRUST_SECONDS = 3600.0
RECENT_KEPT = 50_000  # Sentry issue ids whose last hook time is remembered
REFUSED = ("400", "401")  # a secret or a format out of step: hooks cannot be relied on for a while
LOST = ("dropped", "503", "413", "411")  # one hook turned away: the change it named is pointed at by nothing


class HookTrust:
    """Decides, before each cycle, whether it may be focused, and on which hints."""

    def __init__(self, counters: HookCounters, *, configured: bool, clock: Callable[[], float] = time.monotonic,
                 grace_seconds: float = GRACE_SECONDS, distrust_seconds: float = DISTRUST_SECONDS) -> None:
        self.counters = counters
        self.configured = configured  # Sentry hooks on: push enabled with a Sentry secret
        self.clock = clock
        self.grace, self.distrust_for = grace_seconds, distrust_seconds
        self._recent: OrderedDict[str, float] = OrderedDict()
        self._suspects: dict[str, float] = {}
        self._refused_seen = self._refused()
        self._lost_seen = self._lost()
        self.distrusted_until = float("-inf")
        self.reason: str | None = None

    @property
    def trusted(self) -> bool:
        return self.configured and self.clock() >= self.distrusted_until

    def focus(self, hinted: Iterable[Hint], *, scheduled: bool = True) -> Focus | None:
        """The focus for the next cycle, from the hints drained for it; None: read every link.
        A cycle hooks brought forward (`scheduled=False`) reads what the hints name, trusted or
        not: a hint is a pointer even when hooks may miss other changes."""
        now = self.clock()
        sentry: set[str] = set()
        tracker: set[str] = set()
        for hint in hinted:
            if hint.side == "sentry":
                sentry.add(hint.ref)
                self._recent[hint.ref] = now
                self._recent.move_to_end(hint.ref)
            else:
                tracker.add(hint.ref)
        while len(self._recent) > RECENT_KEPT:
            self._recent.popitem(last=False)
        if not scheduled:
            return Focus(frozenset(sentry), frozenset(tracker), hinted=True)
        if not self.configured:
            return None
        refused = self._refused()
        if refused > self._refused_seen:
            self._distrust(now, f"{refused - self._refused_seen} Sentry hook(s) refused since the last cycle "
                                "(a bad signature or body: is push.sentry_secret the integration's client secret?)")
        self._refused_seen = refused
        for sid, found in list(self._suspects.items()):
            if self._recent.get(sid, float("-inf")) >= found - self.grace:
                del self._suspects[sid]  # its hook came after all
            elif now - found >= self.grace:
                del self._suspects[sid]
                self._distrust(now, f"Sentry issue {sid} changed and no hook named it within {self.grace:.0f} s "
                                    "(is the integration's webhook URL pointing at this bridge?)")
        lost = self._lost()
        lost_now, self._lost_seen = lost > self._lost_seen, lost
        if now < self.distrusted_until:
            return None
        if self.reason is not None:
            log.info("Sentry hooks trusted again: cycles read only the links hooks and polls point at",
                     extra={"event": "push.trusted"})
            self.reason = None
        if lost_now:
            log.warning("Sentry hooks were turned away (busy, too large, or too many hints waiting): this cycle "
                        "reads every link", extra={"event": "push.dropped"})
            return None
        return Focus(frozenset(sentry), frozenset(tracker))

    def found_unhinted(self, sentry_ids: Iterable[str]) -> None:
        """Links the slice found changed with no hook yet: they must see one within the grace."""
        now = self.clock()
        for sid in sentry_ids:
            self._suspects.setdefault(sid, now)

    def _distrust(self, now: float, why: str) -> None:
        if now >= self.distrusted_until:
            log.warning("Sentry hooks not trusted for %.0f s, every link is read each cycle: %s", self.distrust_for,
                        why, extra={"event": "push.distrusted"})
        self.distrusted_until = now + self.distrust_for
        self.reason = why

    def _lost(self) -> int:
        return sum(self.counters.get("sentry", outcome) for outcome in LOST)

    def _refused(self) -> int:
        return sum(self.counters.get("sentry", outcome) for outcome in REFUSED)
