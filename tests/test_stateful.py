"""A stateful property test of the engine against both emulators (issue 6, item 3).

A hypothesis `RuleBasedStateMachine` drives people changing things on both sides (status,
assignee, bookmarks, followers), new Sentry issues, injected API faults, concurrent edits that
make a version-guarded PATCH answer 409, sync cycles, and crashes at any point of a cycle followed
by a restart from the same SQLite file.  After two clean cycles it checks:

* every linked field is in step, or has an open conflict, or holds a value with no counterpart
  (an unmapped user: reported, never guessed);
* no person's change was lost: the last change a person made to a field is still what that side
  shows (`sync.conflict = "manual"`, so the bridge never overwrites a side that changed);
* every mapped bookmarker follows the Tracker issue (unless a person unfollowed them by hand after
  the bookmark), no follower the bridge had no reason to own was added or removed, and a follower
  it added for a bookmark that is gone was removed (when no followers write was ambiguous);
* at most one Tracker issue per Sentry issue, every new Sentry issue is linked exactly once;
* the second clean cycle makes zero writes.

Which changes a person may make and still expect to survive is the subtle part.  A state-based
sync compares each side with its baseline (what both sides held the last time they were in
step); a change that puts a side back to a value it held since then can be indistinguishable from
"no change", and the bridge may then legitimately carry the other side's change over it.  The
model therefore keeps, per link and field, every value each side held since the last *barrier*
(a cycle after which that link was committed in step with no conflict, so the baseline equals
what both sides show) -- values written by the bridge included, recorded by the emulators
themselves.  A change to a value outside that history is *checked*: it must survive.  A change
back into the history is *risky* and only the weaker in-step-or-conflict invariant applies.

Concurrent edits are injected only where the bridge's writes are version-guarded (a PATCH):
Sentry has no precondition and Tracker's `_execute` carries no version, so a person's edit in the
instant between the bridge's read and such a write can be overwritten by design.

Bugs the machine found are pinned by the plain xfail tests at the end of this file; the one that
left a pair out of step was tolerated through `KNOWN_STUCK` (now empty: fixed) so that it kept looking
for others.

Run the long profile with `pytest -m slow tests/test_stateful.py -s` (it is deselected by default; sizes:
`BRIDGE_LONG_EXAMPLES`, default 2000, `BRIDGE_LONG_STEPS`, default 40); `-s` prints the figures
(examples, cycles, crashes, faults injected and fired by kind, person changes checked).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
import re
import shutil
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from bridge.clients.http import RetryPolicy
from bridge.config import Settings
from bridge.connect import open_clients
from bridge.core.actions import Reconcile, is_write_kind
from bridge.core.focus import Focus
from bridge.core.mapping import sentry_assignee, sentry_state, status_in_step, tracker_status
from bridge.core.new_issue import sentry_id_from_unique
from bridge.engine import CycleReport, Engine
from bridge.sandbox.http import EmuRequest, EmuResponse, Fault, mock_transport
from bridge.sandbox.sentry_emulator import DEFAULT_TOKEN as SENTRY_TOKEN
from bridge.sandbox.sentry_emulator import SentryEmulator
from bridge.sandbox.tracker_emulator import DEFAULT_TOKEN as TRACKER_TOKEN
from bridge.sandbox.tracker_emulator import TrackerEmulator
from bridge.store import Store
from tests.test_engine import make_world

ORG = "acme"
PROJECT = "backend"
QUEUE = "OPS"
# Sentry people: alice and bob match Tracker by e-mail, carol through [mapping.users], dan has no
# Tracker account.  Tracker people: erin has no Sentry account.
SENTRY_PEOPLE = ("alice@example.com", "bob@example.com", "carol@corp.example", "dan@example.com")
TRACKER_PEOPLE = {"alice": "alice@example.com", "bob": "bob@example.com", "carol": "carol@example.com",
                  "erin": "erin@example.com"}
LOGIN_OF = {"alice@example.com": "alice", "bob@example.com": "bob", "carol@corp.example": "carol"}
EMAIL_OF = {login: email for email, login in LOGIN_OF.items()}
UNMAPPED = {"dan@example.com", "erin"}
FIELDS = ("status", "assignee", "priority")
SENTRY_PRIORITIES = ("low", "medium", "high")
# Every Tracker priority; the default tables map them many-to-one (blocker and critical -> high).
TRACKER_PRIORITIES = ("trivial", "minor", "normal", "critical", "blocker")

SENTRY_MOVES = ("unresolved", "resolved", "resolvedInNextRelease", "ignored", "ignored_until_escalating",
                "regression")
TRACKER_MOVES: tuple[tuple[str, str | None], ...] = (
    ("open", None), ("inProgress", None), ("needInfo", None), ("resolved", "fixed"), ("closed", "fixed"),
    ("closed", "wontFix"), ("closed", "duplicate"),
)

# Reads a fault can hit: (side, label, method, path regex, query regex).
READS: tuple[tuple[str, str, str, str, str | None], ...] = (
    ("sentry", "members", "GET", r"/members/$", None),
    ("sentry", "refresh", "GET", r"/issues/$", r"(^|&)group="),
    ("sentry", "bookmarks", "GET", r"/issues/$", r"query=bookmarks"),
    ("sentry", "new-issues", "GET", r"/issues/$", r"query=is:unresolved"),
    ("sentry", "issue-read", "GET", r"/issues/\d+/$", None),
    ("tracker", "users", "GET", r"/users$", None),
    ("tracker", "search", "POST", r"/_search$", None),
    ("tracker", "issue-read", "GET", r"/issues/[A-Z]+-\d+$", None),
    ("tracker", "transitions", "GET", r"/transitions$", None),
    ("tracker", "find-unique", "POST", r"/_findByUnique$", None),
)
# Writes a fault can hit, each caused by a person's change on the other side.
WRITES = ("tracker-status", "tracker-assignee", "tracker-followers", "tracker-priority", "sentry-status",
          "sentry-assignee", "sentry-priority", "create")
# (label, kind, status, headers)
FAULT_KINDS: tuple[tuple[str, str, int, dict[str, str]], ...] = (
    ("429+retry-after", "status", 429, {"Retry-After": "1"}),
    ("429", "status", 429, {}),
    ("500", "status", 500, {}),
    ("502", "status", 502, {}),
    ("503", "status", 503, {}),
    ("reset", "reset", 500, {}),
    ("timeout_before", "timeout_before", 500, {}),
    ("timeout_after", "timeout_after", 500, {}),
    ("409", "status", 409, {}),
    ("412", "status", 412, {}),
    ("423", "status", 423, {}),
)
# Version and lock statuses are Tracker's answers to writes; Sentry has no preconditions.
WRITES_ONLY = {"409", "412", "423"}
READ_FAULTS = tuple(kind for kind in FAULT_KINDS if kind[0] not in WRITES_ONLY)
# Write outcomes that are not clean failures: the write applied with its answer lost and the
# read-back failing too (the outcome stays unknown until the next cycle reads), on top of
# `timeout_after` (applied, answer lost, read-back possible) above.
LOST_UNREADABLE = ("lost+unreadable", "timeout_after", 500, {})
WRITE_FAULTS = (*FAULT_KINDS, LOST_UNREADABLE)

# Session totals, printed at the end of the module (run with -s to see them).
STATS: Counter[str] = Counter()


class Crash(BaseException):
    """The process dies here: nothing after this point runs (a BaseException, like SIGKILL's
    effect on the Python level: no `except Exception` handler sees it)."""


class Tripwire:
    """Stands in for a client or the store and raises `Crash` at a chosen call boundary.

    Boundaries are counted across all wrapped objects: point 2k is just before the k-th call,
    2k+1 just after it returned (the effect happened, the caller never learns of it)."""

    def __init__(self, target: Any, state: dict[str, int]) -> None:
        self._target = target
        self._state = state

    def _tick(self) -> None:
        self._state["seen"] += 1
        if self._state["seen"] == self._state["at"]:
            self._state["fired"] = 1
            raise Crash

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._target, name)
        if name.startswith("_") or not callable(attr):
            return attr

        def wrapped(*args: Any, **kwargs: Any) -> Any:
            self._tick()
            result = attr(*args, **kwargs)
            self._tick()
            return result

        return wrapped


class WatchedSentry(SentryEmulator):
    """The Sentry emulator, telling the model about every state-changing request it served."""

    def __init__(self) -> None:
        super().__init__(org=ORG)
        self.after_write: Callable[[str], None] | None = None

    def route(self, req: EmuRequest) -> EmuResponse:
        response = super().route(req)
        match = re.search(r"/issues/(\d+)/$", req.path)
        if req.method != "GET" and match and self.after_write is not None:
            self.after_write(match.group(1))
        return response


class WatchedTracker(TrackerEmulator):
    """The Tracker emulator with a hook that lets a person edit an issue just before a PATCH of
    the bridge reaches it (the version moves on: the PATCH answers 409), and that tells the model
    about every state-changing request it served."""

    def __init__(self) -> None:
        super().__init__()
        self.before_patch: Callable[[str], None] | None = None
        self.after_write: Callable[[str], None] | None = None

    def route(self, req: EmuRequest) -> EmuResponse:
        match = re.search(r"/issues/([A-Z]+-\d+)", req.path)
        key = match.group(1) if match else None
        if req.method == "PATCH" and key and self.before_patch is not None:
            self.before_patch(key)
        response = super().route(req)
        if req.method not in ("GET",) and key and self.after_write is not None:
            self.after_write(key)
        return response


@dataclass
class Track:
    """What the model knows about one Sentry issue and its Tracker issue."""

    sid: str
    key: str | None
    seeded: bool
    # Per field: is there a barrier yet; every value each side held since; the last person change.
    barrier: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(FIELDS, False))
    hist: dict[str, dict[str, set[Any]]] = field(
        default_factory=lambda: {f: {"sentry": set(), "tracker": set()} for f in FIELDS})
    # The last person change per field: (side, value, risky, contested).
    last: dict[str, tuple[str, Any, bool, bool] | None] = field(default_factory=lambda: dict.fromkeys(FIELDS))
    status_touched: bool = False
    bookmarks: set[str] = field(default_factory=set)
    first_bookmark: dict[str, int] = field(default_factory=dict)  # login -> op number
    last_unfollow: dict[str, int] = field(default_factory=dict)  # login -> op number (real hand unfollow)
    hand: dict[str, bool] = field(default_factory=dict)  # login -> follows by a person's hand
    ever_hand: set[str] = field(default_factory=set)
    maybe_owned: set[str] = field(default_factory=set)  # logins the bridge may have added
    # Per field: the sides people changed since its last barrier (both: a real conflict).
    touched: dict[str, set[str]] = field(default_factory=lambda: {f: set() for f in FIELDS})


# After a step: nothing (None), a cycle (0), or a cycle that crashes at call boundary k.
THEN = st.one_of(st.none(), st.just(0), st.integers(1, 120))


def then_cycle(step: Callable[..., None]) -> Callable[..., None]:
    """Let a step be followed by a cycle or a crashing cycle: most steps then see a cycle soon,
    and faults injected by a step hit the cycle right after it."""

    @functools.wraps(step)
    def wrapped(self: BridgeMachine, then: int | None, **kwargs: Any) -> None:
        step(self, **kwargs)
        if then == 0:
            # Every kind of cycle `run` makes, in turn (reproducible for an example).
            self.cycle(mode=("plain", "scheduled", "hinted", "plain")[self.op % 4])
        elif then is not None:
            self.crash_and_restart(then)

    return wrapped


class BridgeMachine(RuleBasedStateMachine):
    """The engine, two emulators, a state file, and a model of what people did."""

    def __init__(self) -> None:
        super().__init__()
        self.folder = Path(tempfile.mkdtemp(prefix="bridge-stateful-"))
        self.sentry = WatchedSentry()
        self.tracker = WatchedTracker()
        # No shortcut from open to closed: most status writes walk two or three transitions, so
        # faults can cut a path after its first step(s).  (needInfo is left out of the walks: the
        # bridge learns a workflow by walking it, and a dead end on the way is issue 13's.)
        self.tracker.edit_workflow(QUEUE, "open", {"start_progress": "inProgress"})
        self.tracker.edit_workflow(QUEUE, "inProgress", {"stop_progress": "open", "resolve": "resolved"})
        self.sentry.add_project(PROJECT)
        for email in SENTRY_PEOPLE:
            self.sentry.add_user(email)
        self.uid_login: dict[str, str] = {}
        for login, email in TRACKER_PEOPLE.items():
            self.uid_login[self.tracker.add_user(login, email)] = login
        self.settings = Settings(
            sentry={"url": "http://sentry.test", "organization": ORG, "projects": [PROJECT], "token": SENTRY_TOKEN},
            tracker={"url": "http://tracker.test", "org_id": "1234567", "token": TRACKER_TOKEN, "queue": QUEUE},
            state={"path": self.folder / "bridge.db"},
            # manual: the bridge never overwrites a side that changed, so no change may be lost.
            # The flap guard is tested in test_guards.py; random people would trip it here.
            # One worker: the order of requests (and so which one a fault hits) is reproducible.
            sync={"conflict": "manual", "flap_limit": 1000, "concurrency": 1,
                  "fields": {"priority": "both"}},
            create={"enabled": True, "query": "is:unresolved", "max_per_cycle": 50},
            mapping={"users": {"carol@corp.example": "carol"}},
        )
        self.tracks: dict[str, Track] = {}
        self.key_sid: dict[str, str] = {}
        self.op = 0
        self.faults: list[tuple[str, Fault, int]] = []
        self.concurrent: tuple[str, str, int, int] | None = None
        self.in_crash_cycle = False
        self.sentry.after_write = self._sentry_written
        self.tracker.after_write = self._tracker_written
        self.tracker.before_patch = self._maybe_concurrent_edit
        self.store, self.engine = self._start()
        self.seeded = False
        # What hooks would have named since the last cycle: Sentry sends them for a person's
        # status change or assignment, Tracker's trigger for any change of an issue.
        self.hooked_sids: set[str] = set()
        self.hooked_keys: set[str] = set()
        STATS["examples"] += 1

    # -- plumbing ------------------------------------------------------------------------------
    def _start(self) -> tuple[Store, Engine]:
        store = Store.open(self.settings.state.path)
        # Crashes here are of the process, never of the machine: no fsync needed (3x faster).
        store.db.execute("PRAGMA synchronous = OFF")
        sentry, tracker = open_clients(
            self.settings, policy=RetryPolicy(waits=False),
            sentry_transport=mock_transport(self.sentry, "http://sentry.test"),
            tracker_transport=mock_transport(self.tracker, "http://tracker.test"),
        )
        return store, Engine(self.settings, store, sentry, tracker)

    def _stop(self) -> None:
        self.engine.sentry.close()
        self.engine.tracker.close()
        self.store.close()

    def teardown(self) -> None:
        try:
            if self.seeded:
                self._final_checks()
        finally:
            self._stop()
            shutil.rmtree(self.folder, ignore_errors=True)

    # -- reading the truth -----------------------------------------------------------------------
    def s_value(self, sid: str, name: str) -> Any:
        issue = self.sentry.issue_json(sid)
        if name == "priority":
            return issue.get("priority")
        return sentry_state(issue) if name == "status" else sentry_assignee(issue)

    def t_value(self, key: str, name: str) -> Any:
        issue = self.tracker.issue_json(key)
        if name == "status":
            return tracker_status(issue)
        if name == "priority":
            return (issue.get("priority") or {}).get("key")
        ref = issue.get("assignee")
        return self.uid_login.get(str(ref["id"]), f"uid:{ref['id']}") if ref else None

    def followers(self, key: str) -> set[str]:
        return {self.uid_login.get(str(r["id"]), f"uid:{r['id']}")
                for r in self.tracker.issue_json(key).get("followers") or []}

    def value(self, track: Track, side: str, name: str) -> Any:
        if side == "sentry":
            return self.s_value(track.sid, name)
        return self.t_value(track.key, name) if track.key else None

    def in_step(self, name: str, s_value: Any, t_value: Any) -> bool:
        if name == "status":
            return status_in_step(s_value, t_value, self.settings.mapping.status)
        if name == "priority":
            table = self.settings.mapping.priority
            return table.to_tracker.get(s_value) == t_value or table.to_sentry.get(t_value) == s_value
        if s_value is None or t_value is None:
            return s_value is None and t_value is None
        return LOGIN_OF.get(s_value) == t_value

    # -- the model's bookkeeping ---------------------------------------------------------------
    def _remember(self, track: Track, side: str, name: str) -> None:
        track.hist[name][side].add(self.value(track, side, name))

    def _sentry_written(self, sid: str) -> None:
        track = self.tracks.get(sid)
        if track is not None:
            for name in FIELDS:
                self._remember(track, "sentry", name)

    def _tracker_written(self, key: str) -> None:
        sid = self.key_sid.get(key)
        if sid is not None and key in self.tracker.issue_keys():
            for name in FIELDS:
                self._remember(self.tracks[sid], "tracker", name)

    def _person(self, track: Track, side: str, name: str, before: Any) -> None:
        """A person changed `name` on `side`: classify it (checked or risky) and remember it."""
        self.op += 1
        after = self.value(track, side, name)
        if after == before:
            return  # a no-op is not a change
        risky = not track.barrier[name] or after in track.hist[name][side]
        track.hist[name][side].add(after)
        # The other side changed too since the barrier: a real conflict, which sync.conflict may
        # settle by overwriting the losing side.
        contested = "tracker" if side == "sentry" else "sentry"
        track.last[name] = (side, after, risky, contested in track.touched[name])
        track.touched[name].add(side)
        if side == "tracker" and track.key:
            self.hooked_keys.add(track.key)
        elif name == "status" or (name == "assignee" and after is not None):
            self.hooked_sids.add(track.sid)
        STATS["person changes (risky)" if risky else "person changes (checked)"] += 1
        if name == "status" and side == "sentry":
            track.status_touched = True

    @staticmethod
    def _count_outcomes(report: CycleReport | None) -> None:
        """What the engine observed of its writes, by kind and outcome (design §9): the figures that
        show the faults reached the outcomes they are meant to exercise."""
        for run in report.outcomes if report is not None else ():
            for entry in run.journal:
                if is_write_kind(entry.action):
                    STATS[f"outcome: {entry.action} {entry.outcome}"] += 1
            for action in run.actions:
                if isinstance(action, Reconcile):
                    entry = action.settlement.entry
                    STATS[f"outcome: {entry.action} judged later: {entry.outcome}"] += 1

    def _barriers(self, report: CycleReport) -> None:
        """After a cycle that ran to its end: links committed in step with no conflict have a
        baseline equal to what both sides show (a link with nothing to do has not moved since its
        last commit); the history starts again from there."""
        if report.fatal is not None or report.refused is not None:
            return
        failed = {o.sentry_id for o in report.outcomes if o.error is not None}
        conflicts = {(c["sentry_id"], c["field"]) for c in self.store.open_conflicts()}
        read = report.focus.ids if report.focus is not None else None  # a focused cycle read only these
        for link in self.store.links():
            track = self.tracks.get(link.sentry_id)
            if link.sentry_id in failed or track is None or track.key is None:
                continue
            if read is not None and link.sentry_id not in read:
                continue
            for name in FIELDS:
                s_value, t_value = self.s_value(track.sid, name), self.t_value(track.key, name)
                if (track.sid, name) in conflicts or not self.in_step(name, s_value, t_value):
                    continue
                track.barrier[name] = True
                track.hist[name] = {"sentry": {s_value}, "tracker": {t_value}}
                track.touched[name] = set()

    def _discover_created(self) -> None:
        """Tracker issues the bridge created, found by our `unique`; never two for one issue."""
        for key in self.tracker.issue_keys():
            if key in self.key_sid:
                continue
            sid = sentry_id_from_unique(ORG, self.tracker.issue_json(key).get("unique"))
            assert sid is not None, f"{key} was created without our unique key"
            track = self.tracks[sid]
            assert track.key is None, f"Sentry issue {sid} has two Tracker issues: {track.key} and {key}"
            track.key = key
            self.key_sid[key] = sid
            for name in FIELDS:
                self._remember(track, "tracker", name)

    def _before_cycle(self) -> None:
        """Logins the bridge may add this cycle: a mapped bookmarker who does not follow yet."""
        for track in self.tracks.values():
            followers = self.followers(track.key) if track.key else set()
            for email in track.bookmarks:
                login = LOGIN_OF.get(email)
                if login and login not in followers:
                    track.maybe_owned.add(login)

    def _after_cycle(self) -> None:
        for side, fault, times in self.faults:
            STATS[f"fault fired: {side} {fault.kind}{'-' + str(fault.status) if fault.kind == 'status' else ''}"] += (
                times - fault.times)
        self.faults.clear()
        self.sentry.clear_faults()
        self.tracker.clear_faults()
        self.concurrent = None
        self.tracker.clear_log()
        self.sentry.clear_log()
        self._discover_created()

    # -- setup ---------------------------------------------------------------------------------
    @initialize(conflict=st.sampled_from(("manual", "sentry", "tracker")))
    def seed(self, conflict: str) -> None:
        """Three linked pairs, and the conflict policy of this example: `manual` never overwrites
        a side people changed; `sentry` / `tracker` may overwrite the losing side of a real
        conflict, and nothing else."""
        self.conflict = conflict
        STATS[f"examples with sync.conflict = {conflict}"] += 1
        if conflict != "manual":
            self._stop()
            self.settings = self.settings.model_copy(
                update={"sync": self.settings.sync.model_copy(update={"conflict": conflict})})
            self.store, self.engine = self._start()
        seeds = (
            ("unresolved", None, "open", None, None, ["erin"]),
            ("resolved", None, "closed", "fixed", "alice@example.com", ["alice"]),
            ("ignored", "archived_forever", "closed", "wontFix", None, []),
        )
        for status, substatus, t_status, resolution, assignee, followers in seeds:
            sid = self.sentry.add_issue(PROJECT, f"seeded {status}", status=status, substatus=substatus,
                                        assignee=assignee)
            key = self.tracker.add_issue(QUEUE, f"seeded {status}", status=t_status, resolution=resolution,
                                         assignee=LOGIN_OF.get(assignee or ""), followers=followers)
            track = Track(sid, key, seeded=True, hand=dict.fromkeys(followers, True), ever_hand=set(followers))
            self.tracks[sid] = track
            self.key_sid[key] = sid
            self.store.add_link(sid, key)
        report = self.engine.run_cycle()
        assert report.ok, report.summary()
        self._after_cycle()
        self._barriers(report)
        assert all(all(t.barrier.values()) for t in self.tracks.values())
        self.seeded = True

    # -- people --------------------------------------------------------------------------------
    def _pick(self, index: int, *, tracker: bool = False) -> Track | None:
        tracks = [t for t in self.tracks.values() if t.key or not tracker]
        return tracks[index % len(tracks)] if tracks else None

    @rule(then=THEN, i=st.integers(0, 50), move=st.sampled_from(SENTRY_MOVES))
    @then_cycle
    def sentry_status(self, i: int, move: str) -> None:
        track = self._pick(i)
        assert track is not None
        before = self.s_value(track.sid, "status")
        if move == "regression":
            self.sentry.add_event(track.sid)  # a resolved issue regresses
        elif move == "ignored_until_escalating":
            self.sentry.set_status(track.sid, "ignored", substatus="archived_until_escalating")
        elif move == "resolvedInNextRelease":
            self.sentry.set_status(track.sid, "resolved", in_next_release=True)
        else:
            self.sentry.set_status(track.sid, move)
        self._person(track, "sentry", "status", before)

    @rule(then=THEN, i=st.integers(0, 50), move=st.sampled_from(TRACKER_MOVES))
    @then_cycle
    def tracker_status(self, i: int, move: tuple[str, str | None]) -> None:
        track = self._pick(i, tracker=True)
        if track is None or track.key is None:
            return
        before = self.t_value(track.key, "status")
        self.tracker.set_status(track.key, move[0], resolution=move[1])
        self._person(track, "tracker", "status", before)

    @rule(then=THEN, i=st.integers(0, 50), who=st.sampled_from((None, *SENTRY_PEOPLE)))
    @then_cycle
    def sentry_assign(self, i: int, who: str | None) -> None:
        track = self._pick(i)
        assert track is not None
        before = self.s_value(track.sid, "assignee")
        self.sentry.assign(track.sid, who)
        self._person(track, "sentry", "assignee", before)

    @rule(then=THEN, i=st.integers(0, 50), who=st.sampled_from((None, *TRACKER_PEOPLE)))
    @then_cycle
    def tracker_assign(self, i: int, who: str | None) -> None:
        track = self._pick(i, tracker=True)
        if track is None or track.key is None:
            return
        before = self.t_value(track.key, "assignee")
        self.tracker.set_assignee(track.key, who)
        self._person(track, "tracker", "assignee", before)

    @rule(then=THEN, i=st.integers(0, 50), priority=st.sampled_from(SENTRY_PRIORITIES))
    @then_cycle
    def sentry_priority(self, i: int, priority: str) -> None:
        track = self._pick(i)
        assert track is not None
        before = self.s_value(track.sid, "priority")
        self.sentry.set_priority(track.sid, priority)
        self._person(track, "sentry", "priority", before)

    @rule(then=THEN, i=st.integers(0, 50), priority=st.sampled_from(TRACKER_PRIORITIES))
    @then_cycle
    def tracker_priority(self, i: int, priority: str) -> None:
        track = self._pick(i, tracker=True)
        if track is None or track.key is None:
            return
        before = self.t_value(track.key, "priority")
        self.tracker.set_fields(track.key, {"priority": priority})
        self._person(track, "tracker", "priority", before)

    @rule(then=THEN, i=st.integers(0, 50), who=st.sampled_from(SENTRY_PEOPLE), on=st.booleans())
    @then_cycle
    def bookmark(self, i: int, who: str, on: bool) -> None:
        track = self._pick(i)
        assert track is not None
        self.op += 1
        self.sentry.bookmark(track.sid, who, on)
        login = LOGIN_OF.get(who)
        if on and who not in track.bookmarks and login:
            track.first_bookmark.setdefault(login, self.op)
        (track.bookmarks.add if on else track.bookmarks.discard)(who)

    @rule(then=THEN, i=st.integers(0, 50), login=st.sampled_from(tuple(TRACKER_PEOPLE)), on=st.booleans())
    @then_cycle
    def follow(self, i: int, login: str, on: bool) -> None:
        track = self._pick(i, tracker=True)
        if track is None or track.key is None:
            return
        self.op += 1
        was = login in self.followers(track.key)
        if on:
            self.tracker.add_follower(track.key, login)
        else:
            self.tracker.remove_follower(track.key, login)
        if was == on:
            return  # a no-op
        track.hand[login] = on
        if on:
            track.ever_hand.add(login)
        else:
            track.last_unfollow[login] = self.op

    @rule(then=THEN, who=st.sampled_from((None, *SENTRY_PEOPLE)),
          marks=st.sets(st.sampled_from(SENTRY_PEOPLE), max_size=2))
    @then_cycle
    def new_sentry_issue(self, who: str | None, marks: set[str]) -> None:
        self.op += 1
        sid = self.sentry.add_issue(PROJECT, f"new issue {len(self.tracks)}", assignee=who)
        track = Track(sid, None, seeded=False)
        self.tracks[sid] = track
        for email in sorted(marks):
            self.sentry.bookmark(sid, email)
            track.bookmarks.add(email)
            if email in LOGIN_OF:
                track.first_bookmark[LOGIN_OF[email]] = self.op
        for name in FIELDS:
            self._remember(track, "sentry", name)
        STATS["new sentry issues"] += 1

    def _person_step(self, name: str, **kwargs: Any) -> None:
        """Run the body of a people rule (without its optional cycle)."""
        inspect.unwrap(getattr(type(self), name))(self, **kwargs)

    # -- faults --------------------------------------------------------------------------------
    def _inject(self, side: str, label: str, what: tuple[str, str, int, dict[str, str]], *, method: str,
                path: str, query: str | None = None, times: int = 1, after: int = 0) -> None:
        name, kind, status, headers = what
        emulator = self.sentry if side == "sentry" else self.tracker
        fault = emulator.inject(kind, status=status, headers=dict(headers), method=method, path=path,  # type: ignore[arg-type]
                                query=query, times=times, after=after)
        self.faults.append((side, fault, times))
        STATS[f"fault injected: {side} {name}"] += 1
        STATS[f"fault target: {side} {label}"] += 1

    @rule(then=THEN, where=st.sampled_from(READS), what=st.sampled_from(READ_FAULTS),
          times=st.integers(1, 6), after=st.integers(0, 3))
    @then_cycle
    def read_fault(self, where: tuple[str, str, str, str, str | None], what: tuple[str, str, int, dict[str, str]],
                   times: int, after: int) -> None:
        """The next cycle's reads of one endpoint fail `times` times (5 attempts per request)."""
        side, label, method, path, query = where
        self._inject(side, label, what, method=method, path=path, query=query, times=times, after=after)

    @rule(then=THEN, i=st.integers(0, 50), write=st.sampled_from(WRITES), what=st.sampled_from(WRITE_FAULTS),
          value=st.integers(0, 50), times=st.integers(1, 6), after=st.integers(0, 2))
    @then_cycle
    def write_fault(self, i: int, write: str, what: tuple[str, str, int, dict[str, str]], value: int,
                    times: int, after: int) -> None:
        """A person changes one side, and the write that carries it to the other side fails
        (the write of a new issue's creation, for `create`).  `after` lets that many matching
        requests through first: a transition path cut after its first step(s), a follower
        removal failing after the add of the same plan landed."""
        name = what[0]
        if name in WRITES_ONLY and write.startswith("sentry"):
            return  # version and lock answers are Tracker's
        if what[0] == LOST_UNREADABLE[0]:
            times = 1000  # every attempt lands with its answer lost: only a read could tell
        if write == "create":
            self._person_step("new_sentry_issue", who=None, marks=set())
            self._inject("tracker", write, what, method="POST", path=r"/v3/issues/?$", times=times)
            self._unreadable(what, "tracker", r"/_findByUnique$", "POST")
            return
        track = self._pick(i, tracker=True)
        if track is None or track.key is None:
            return
        if write == "tracker-status":
            self._person_step("sentry_status", i=i, move=SENTRY_MOVES[value % len(SENTRY_MOVES)])
            self._inject("tracker", write, what, method="POST", path=rf"/issues/{track.key}/transitions/", times=times,
                         after=after)
            STATS[f"fault target: tracker-status after {after} step(s)"] += 1
            self._unreadable(what, "tracker", rf"/issues/{track.key}$")
        elif write in ("tracker-assignee", "tracker-followers", "tracker-priority"):
            if write == "tracker-assignee":
                self._person_step("sentry_assign", i=i, who=(None, *LOGIN_OF)[value % 4])
            elif write == "tracker-priority":
                self._person_step("sentry_priority", i=i, priority=SENTRY_PRIORITIES[value % 3])
            else:
                self._person_step("bookmark", i=i, who=tuple(LOGIN_OF)[value % 3], on=value % 2 == 0)
            self._inject("tracker", write, what, method="PATCH", path=rf"/issues/{track.key}$", times=times,
                         after=after if write == "tracker-followers" else 0)
            self._unreadable(what, "tracker", rf"/issues/{track.key}$")
        else:
            if write == "sentry-status":
                self._person_step("tracker_status", i=i, move=TRACKER_MOVES[value % len(TRACKER_MOVES)])
            elif write == "sentry-priority":
                self._person_step("tracker_priority", i=i, priority=TRACKER_PRIORITIES[value % 5])
            else:
                self._person_step("tracker_assign", i=i, who=(None, *TRACKER_PEOPLE)[value % 5])
            self._inject("sentry", write, what, method="PUT", path=rf"/issues/{track.sid}/$", times=times)
            self._unreadable(what, "sentry", rf"/issues/{track.sid}/$")

    def _unreadable(self, what: tuple[str, str, int, dict[str, str]], side: str, path: str,
                    method: str = "GET") -> None:
        """With `lost+unreadable`, the read-back after the lost answer fails for the whole cycle."""
        if what[0] == LOST_UNREADABLE[0]:
            self._inject(side, "read-back", ("503", "status", 503, {}), method=method, path=path, times=1000)

    @rule(then=THEN, i=st.integers(0, 50), who=st.sampled_from((None, *LOGIN_OF)),
          kind=st.sampled_from(("tag", "assignee", "status")), value=st.integers(0, 50), skip=st.integers(0, 1))
    @then_cycle
    def concurrent_edit(self, i: int, who: str | None, kind: str, value: int, skip: int) -> None:
        """A person assigns the Sentry issue (so the bridge will PATCH the Tracker issue), and
        another person edits that Tracker issue just before the bridge's PATCH (after `skip`
        PATCHes of it) reaches Tracker: the version moved on, the PATCH answers 409."""
        track = self._pick(i, tracker=True)
        if track is None or track.key is None:
            return
        before = self.s_value(track.sid, "assignee")
        self.sentry.assign(track.sid, who)
        self._person(track, "sentry", "assignee", before)
        self.concurrent = (track.key, kind, value, skip)
        STATS["fault injected: concurrent edit (409)"] += 1

    def _maybe_concurrent_edit(self, key: str) -> None:
        if self.concurrent is None or self.concurrent[0] != key:
            return
        _, kind, value, skip = self.concurrent
        if skip > 0:
            self.concurrent = (key, kind, value, skip - 1)
            return
        self.concurrent = None
        STATS["fault fired: concurrent edit (409)"] += 1
        track = self.tracks[self.key_sid[key]]
        if kind == "tag":
            self.tracker.set_fields(key, {"tags": {"add": [f"tag{value}"]}})
        elif kind == "assignee":
            before = self.t_value(key, "assignee")
            self.tracker.set_assignee(key, (None, *TRACKER_PEOPLE)[value % 5])
            self._person(track, "tracker", "assignee", before)
        else:
            before = self.t_value(key, "status")
            status, resolution = TRACKER_MOVES[value % len(TRACKER_MOVES)]
            self.tracker.set_status(key, status, resolution=resolution)
            self._person(track, "tracker", "status", before)

    # -- cycles and crashes --------------------------------------------------------------------
    @rule(mode=st.sampled_from(("plain", "plain", "scheduled", "hinted")), lost=st.booleans())
    def cycle(self, mode: str = "plain", lost: bool = False) -> None:
        """A cycle as `run` makes it: plain (no hooks), scheduled with trusted hooks (focused:
        what hooks, the poll, bookmark searches and retries point at, plus a slice), or brought
        forward by hooks (hinted).  `lost`: Sentry's hooks since the last cycle never arrived."""
        self._before_cycle()
        sids, keys = frozenset() if lost else frozenset(self.hooked_sids), frozenset(self.hooked_keys)
        self.hooked_sids.clear()
        self.hooked_keys.clear()
        focus = None if mode == "plain" else Focus(sids, keys, hinted=mode == "hinted")
        report = self.engine.run_cycle(focus=focus)
        STATS[f"cycles: {report.kind}"] += 1
        STATS["cycles"] += 1
        self._count_outcomes(report)
        self._after_cycle()
        self._barriers(report)
        self._check_conflicts_are_real()

    @rule(point=st.integers(1, 120))
    def crash_and_restart(self, point: int) -> None:
        """Run a cycle that dies at call boundary `point` (of the clients and the store), then
        start again from the state file: a new store, new clients, a new engine."""
        self._before_cycle()
        state = {"seen": 0, "at": point, "fired": 0}
        engine = self.engine
        engine.sentry, engine.tracker = Tripwire(engine.sentry, state), Tripwire(engine.tracker, state)
        engine.store = Tripwire(engine.store, state)  # type: ignore[assignment]
        self.in_crash_cycle = True
        try:
            report = engine.run_cycle()
        except Crash:
            report = None
        finally:
            engine.sentry, engine.tracker = engine.sentry._target, engine.tracker._target  # type: ignore[attr-defined]
            engine.store = engine.store._target  # type: ignore[attr-defined]
        STATS["cycles"] += 1
        STATS["crashes" if report is None else "crash points not reached"] += 1
        self._count_outcomes(report)
        self._after_cycle()
        self.in_crash_cycle = False
        self._stop()
        self.store, self.engine = self._start()
        STATS["restarts"] += 1

    @invariant()
    def links_are_one_to_one(self) -> None:
        links = self.store.links()
        assert len({link.tracker_key for link in links}) == len(links)
        for link in links:
            track = self.tracks[link.sentry_id]
            assert track.key in (None, link.tracker_key), (link, track.key)

    # -- the end -------------------------------------------------------------------------------
    def _final_checks(self) -> None:
        self.sentry.clear_faults()
        self.tracker.clear_faults()
        self.concurrent = None
        self._before_cycle()
        first = self.engine.run_cycle()
        assert first.ok, first.summary() | {"failed": [o.to_json() for o in first.failures],
                                            "create": first.create_failures}
        self._after_cycle()
        self._barriers(first)
        self._before_cycle()
        self.sentry.clear_log()
        self.tracker.clear_log()
        second = self.engine.run_cycle()
        assert second.ok, second.summary()
        # The second clean cycle makes zero writes.
        assert self.sentry.writes() == [] and self.tracker.writes() == [], (
            [(r.method, r.path, r.body) for r in self.sentry.writes() + self.tracker.writes()])
        STATS["clean cycle pairs"] += 1
        self._check_links()
        self._check_fields()
        self._check_conflicts_are_real()
        self._check_followers()

    def _check_links(self) -> None:
        links = {link.sentry_id: link.tracker_key for link in self.store.links()}
        assert self.store.pending_intents() == 0
        assert self.store.failures() == [], "a failure row outlived two clean cycles"
        for sid, track in self.tracks.items():
            if track.key is not None:
                assert links.get(sid) == track.key, (sid, track.key, links.get(sid))
            if not track.seeded and not track.status_touched:
                # A new unresolved issue gets exactly one Tracker issue, whatever happened.
                assert track.key is not None, f"new Sentry issue {sid} never got a Tracker issue"
        created = [k for k in self.tracker.issue_keys() if k not in {t.key for t in self.tracks.values() if t.seeded}]
        assert len(created) == len({self.key_sid[k] for k in created})
        STATS["links checked"] += len(links)

    def _check_fields(self) -> None:
        conflicts = {(c["sentry_id"], c["field"]) for c in self.store.open_conflicts()}
        for sid, track in self.tracks.items():
            if track.key is None:
                continue
            for name in FIELDS:
                s_value, t_value = self.s_value(sid, name), self.t_value(track.key, name)
                in_step = self.in_step(name, s_value, t_value)
                unmapped = s_value in UNMAPPED or t_value in UNMAPPED
                where = f"{sid}<->{track.key} {name}: sentry={s_value!r} tracker={t_value!r}"
                assert in_step or (sid, name) in conflicts or unmapped, f"out of step: {where}"
                assert not (in_step and (sid, name) in conflicts), f"a settled conflict is still open: {where}"
                last = track.last[name]
                if last is None or last[2]:
                    continue
                side, wanted, _, contested = last
                if contested and self.conflict not in ("manual", side):
                    STATS["last changes lost to sync.conflict (allowed)"] += 1
                    continue  # both sides changed and the other side wins: overwriting it is the rule
                shown = s_value if side == "sentry" else t_value
                assert shown == wanted, f"a person's change was lost or reverted: {side} set {wanted!r}; now {where}"
                STATS["last changes verified"] += 1

    def _check_conflicts_are_real(self) -> None:
        """A conflict is recorded only where people changed both sides since the last barrier:
        the bridge's own writes (landed, half-way, answer lost) are never taken for an edit."""
        for row in self.store.open_conflicts():
            track = self.tracks.get(row["sentry_id"])
            if track is None or row["field"] not in FIELDS:
                continue
            touched = track.touched[row["field"]]
            assert touched == {"sentry", "tracker"}, (
                f"a false conflict: {row['sentry_id']} {row['field']} sentry={row['sentry_value']!r} "
                f"tracker={row['tracker_value']!r}, but people changed only {sorted(touched) or 'nothing'}")
            STATS["conflicts checked as real"] += 1

    def _check_followers(self) -> None:
        for track in self.tracks.values():
            if track.key is None:
                continue
            followers = self.followers(track.key)
            for login in TRACKER_PEOPLE:
                email = EMAIL_OF.get(login)
                where = f"{track.sid}<->{track.key} follower {login}: followers={sorted(followers)}"
                unfollowed = track.last_unfollow.get(login, -1) > track.first_bookmark.get(login, 10**9)
                if email in track.bookmarks and not unfollowed:
                    assert login in followers, f"a mapped bookmarker does not follow: {where}"
                if login not in track.maybe_owned:
                    # Never the bridge's to add or remove: only people decide.
                    assert (login in followers) == track.hand.get(login, False), f"not the bridge's: {where}"
                if email and email not in track.bookmarks and login not in track.ever_hand:
                    # Added by the bridge for a bookmark that is gone: the bridge removes it (on
                    # seeded links and on the tickets it created alike).
                    assert login not in followers, f"a follower the bridge added outlived the bookmark: {where}"
            STATS["follower sets checked"] += 1


def _run(examples: int, steps: int) -> None:
    """Run the machine; the engine's warnings (thousands of injected failures) stay quiet."""
    started = time.perf_counter()
    logger = logging.getLogger("bridge")
    quiet = logging.NullHandler()
    saved = (logger.handlers[:], logger.propagate)
    logger.handlers[:], logger.propagate = [quiet], False
    try:
        run_state_machine_as_test(BridgeMachine, settings=settings(
            max_examples=examples, stateful_step_count=steps, deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much], database=None,
        ))
    finally:
        logger.handlers[:], logger.propagate = saved
        STATS["seconds"] += round(time.perf_counter() - started)


@pytest.fixture(scope="module", autouse=True)
def _summary() -> Iterator[None]:
    """With -s: the figures of this session's machine runs (examples, cycles, crashes, faults)."""
    yield
    if not STATS:
        return

    def part(prefix: str) -> dict[str, int]:
        return {k.removeprefix(prefix): v for k, v in sorted(STATS.items()) if k.startswith(prefix)}

    plain = {k: v for k, v in sorted(STATS.items()) if not k.startswith(("fault", "outcome"))}
    injected, fired = part("fault injected: "), part("fault fired: ")
    print(f"\nstateful summary: {plain}"
          f"\n  faults injected: {sum(injected.values())} by kind {injected}"
          f"\n  faults fired (requests hit): {sum(fired.values())} by kind {fired}"
          f"\n  fault targets: {part('fault target: ')}"
          f"\n  write outcomes observed: {part('outcome: ')}")


def test_engine_state_machine() -> None:
    """The default profile: 200 examples of up to 15 steps each."""
    _run(200, 15)


@pytest.mark.slow
def test_engine_state_machine_long() -> None:
    examples = int(os.environ.get("BRIDGE_LONG_EXAMPLES", "2000"))
    _run(examples, int(os.environ.get("BRIDGE_LONG_STEPS", "40")))


# -- what the machine found, as plain repros ----------------------------------------------------


def test_a_write_that_changes_nothing_is_not_taken_as_done(tmp_path: Path) -> None:
    w = make_world(tmp_path, sync={"conflict": "manual"})
    sid, key = w.pair()
    w.cycle()
    w.tracker.set_status(key, "resolved", resolution="fixed")
    w.cycle()
    assert w.sentry.issue_json(sid)["statusDetails"].get("inNextRelease")
    w.tracker.set_status(key, "closed", resolution="fixed")
    report = w.cycle()
    state, status = sentry_state(w.sentry.issue_json(sid)), w.t_status(key)
    in_step = status_in_step(state, status, w.engine.settings.mapping.status)
    recorded = report.failures or w.store.open_conflicts()
    assert in_step or recorded, f"sentry={state} tracker={status}: out of step, nothing recorded"


def test_a_recovered_link_leaves_no_failure_behind(tmp_path: Path) -> None:
    w = make_world(tmp_path)
    for _ in range(3):
        w.pair()
    w.cycle()
    w.sentry.inject("status", status=500, method="GET", path=r"/issues/$", query=r"(^|&)group=", times=100)
    assert len(w.cycle().failures) == 3
    w.sentry.clear_faults()
    assert w.cycle().ok
    assert w.store.failures() == []


def test_a_failed_follower_removal_is_retried(tmp_path: Path) -> None:
    w = make_world(tmp_path, sync={"concurrency": 1})
    sid, key = w.pair()
    w.sentry.bookmark(sid, "bob@example.com")
    w.cycle()
    w.sentry.bookmark(sid, "bob@example.com", on=False)
    w.sentry.bookmark(sid, "alice@example.com")
    w.tracker.inject("status", status=500, method="PATCH", after=1, times=10)  # the add passes, the remove fails
    assert not w.cycle().ok
    w.tracker.clear_faults()
    w.cycle()
    w.cycle()
    assert [f["display"] for f in w.tracker.issue_json(key)["followers"]] == ["alice"]


def test_a_concurrent_edit_before_a_transition_is_not_overwritten(tmp_path: Path) -> None:
    w = make_world(tmp_path, sync={"conflict": "manual", "concurrency": 1})
    sid, key = w.pair()
    w.cycle()
    w.sentry.set_status(sid, "resolved")
    w.sentry.assign(sid, "alice@example.com")
    serve, edited = w.tracker.route, []

    def route(req: EmuRequest) -> EmuResponse:
        if req.method == "POST" and req.path.endswith("/_execute") and not edited:
            edited.append(key)
            w.tracker.set_assignee(key, "bob")  # a person, between the bridge's read and its writes
        return serve(req)

    w.tracker.route = route  # type: ignore[method-assign]
    w.cycle()
    w.cycle()
    assert edited
    assert w.tracker.issue_json(key)["assignee"]["display"] == "bob" or w.store.open_conflicts()


def test_a_newer_note_never_replaces_an_older_unsettled_one() -> None:
    """Found by the long profile: a path cut by a crash after its first step is judged next
    cycle (the bridge's own step), which then notes its own walk and crashes before its commit;
    the newer note had replaced the older one, so the step taken first looked like a person's
    edit: a false conflict.  One note per attempt keeps both until a commit settles them."""
    machine = BridgeMachine()
    try:
        machine.seed(conflict="manual")
        machine._person_step("sentry_status", i=0, move="ignored")
        machine.crash_and_restart(41)
        machine._person_step("concurrent_edit", i=0, kind="tag", skip=0, value=0, who=None)
        machine.crash_and_restart(37)
        machine.cycle()  # checks that every open conflict is a real one
    finally:
        machine.teardown()
