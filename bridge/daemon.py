"""`run`: the bridge as a long-running service.

How it is put together, and why:

* **One lock for the whole life.**  The state lock is taken before anything else and released
  last, so a second `run` or a `sync` exits 4 for as long as the service lives.
* **APScheduler runs the clock, one worker thread runs the cycles.**  One interval job
  (`sync.interval_seconds`, optional jitter), `max_instances=1` (a cycle that overruns its
  interval is never doubled), `coalesce=True` and `misfire_grace_time=None` (a late start, e.g.
  after a suspend, still runs, once), the first cycle at start-up.  The job hands the cycle to a
  single worker thread that owns the engine, the store and the clients (SQLite connections may
  only be used by the thread that opened them).  Everything that touches them (open, a reload's
  rebuild, close) is queued on that worker, so it happens *between* cycles by construction.
* **The next cycle is the retry.**  A cycle that fails (or even crashes) is logged, counted and
  left; nothing loops.
* **Signals are read in the main thread from a wake-up pipe** (`signal.set_wakeup_fd`), never
  acted on inside a handler, so no lock can be taken re-entrantly.  SIGTERM/SIGINT set the
  engine's stop flag (the link in progress finishes, no new link starts), stop the scheduler and
  wait a bounded time for the worker; SIGHUP re-reads the config: a broken one is logged with
  every problem and the running one kept, a good one rebuilds clients and engine.
* **systemd gets READY=1 once the service is set up** (config valid, lock held, state file
  opened and migrated, metrics listening), *before* the first cycle: a cycle's length grows
  with the number of links and the remotes' speed, and `systemctl start` should neither hang on
  it nor hit `TimeoutStartSec=`; a remote that is down is the cycles' business (STATUS=,
  `/healthz`, the log), not a start-up failure.  STATUS= carries one line per cycle.
* **The watchdog pings only while cycles make progress**: a cycle in flight must show a request
  or a link committed within a stall window, and when idle the next cycle must start when due.
  A slow remote therefore never trips it (every request is bounded by the retry deadline and
  the timeouts), a wedged process does.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
import os
import random
import select
import signal
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from apscheduler.executors.pool import ThreadPoolExecutor as SchedulerPool
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from prometheus_client import disable_created_metrics

from bridge.clients.http import RetryPolicy
from bridge.config import Settings, load_settings
from bridge.connect import open_clients
from bridge.core.outcomes import JournalEntry
from bridge.core.report import CycleReport
from bridge.engine import Engine
from bridge.errors import BridgeError, ConfigError, RemoteError
from bridge.metrics import Health, Metrics, MetricsServer, cycle_result, parse_iso
from bridge.notify import Notifier
from bridge.push.echoes import EchoBook
from bridge.push.hints import HintBox
from bridge.push.receiver import HookCounters, HookReceiver
from bridge.push.trust import HookTrust
from bridge.store import StateLock, Store

log = logging.getLogger("bridge.daemon")

JOB_ID = "cycle"
# A run of the job this close to the scheduled time is the scheduled cycle, not a hinted one.
SCHEDULE_SLACK_SECONDS = 0.5
EXIT_OK, EXIT_FAILED = 0, 1
# Extra seconds of stall allowance on top of one request's worst case (retry deadline + timeouts).
STALL_MARGIN_SECONDS = 60.0
STOP_MARGIN_SECONDS = 5.0

T = TypeVar("T")


# -- pure helpers --------------------------------------------------------------------------------


def stall_seconds(settings: Settings) -> float:
    """How long a cycle may go without any sign of progress before the watchdog stops pinging:
    one request's worst case (all retries within the deadline, plus a timeout on either side)
    and a margin for local work between requests."""
    timeout = max(settings.sentry.timeout_seconds, settings.tracker.timeout_seconds)
    return settings.sync.retry_deadline_seconds + 2 * timeout + STALL_MARGIN_SECONDS


def stop_grace_seconds(settings: Settings) -> float:
    """How long SIGTERM waits for the link in progress: its requests are bounded by the retry
    deadline and the timeouts.  The unit's TimeoutStopSec= must be longer (it is 150 s)."""
    timeout = max(settings.sentry.timeout_seconds, settings.tracker.timeout_seconds)
    return settings.sync.retry_deadline_seconds + 2 * timeout + STOP_MARGIN_SECONDS


def watchdog_verdict(
    now: float,
    *,
    cycle_started: float | None,
    last_beat: float,
    last_cycle_end: float | None,
    started: float,
    interval: float,
    stall: float,
) -> str | None:
    """None when the watchdog may ping; otherwise why not (monotonic seconds throughout)."""
    if cycle_started is not None:
        quiet = now - max(last_beat, cycle_started)
        if quiet > stall:
            return f"the running cycle has shown no progress for {quiet:.0f}s"
        return None
    since = last_cycle_end if last_cycle_end is not None else started
    if now - since > interval + stall:
        return f"no cycle has started for {now - since:.0f}s although one is due every {interval:.0f}s"
    return None


def reload_problems(running: Settings, new: Settings) -> list[str]:
    """What a reload cannot change while the service runs."""
    problems = []
    if running.state.path != new.state.path:
        problems.append(f"state.path: cannot change while running (the lock is held on {running.state.path}); "
                        "restart the service instead")
    if (running.push.enabled, running.push.listen) != (new.push.enabled, new.push.listen):
        problems.append("push.enabled / push.listen: cannot change while running (the receiver is bound); "
                        "restart the service instead")
    return problems


def status_line(report: CycleReport, when: datetime) -> str:
    """The one-line STATUS= after a cycle."""
    s = report.summary()
    head = f"{when:%H:%M:%SZ} cycle {cycle_result(report)}"
    if report.fatal is not None:
        return f"{head}: {report.fatal.describe()}"
    if report.refused is not None:
        return f"{head}: {report.refused}"
    return (f"{head}: {s['links']} links, writes sentry={s['writes_sentry']} tracker={s['writes_tracker']}, "
            f"{s['failures']} failed, {s['conflicts']} conflicts, {s['duration_seconds'] or 0:.1f}s")


def cycle_problem(report: CycleReport) -> str | None:
    """Why a cycle did not count as a success (for /healthz), or None.  Never the remote's answer:
    /healthz may be read by anybody who reaches the port."""
    if report.fatal is not None:
        return report.fatal.describe(body=False)
    if report.refused is not None:
        return f"refused: {report.refused}"
    if report.interrupted:
        return "the last cycle was interrupted"
    if not report.ok:
        s = report.summary()
        why = f" (the Tracker poll failed: {report.poll_error})" if report.poll_error else ""
        return f"{s['failures']} link(s) and {s['create_failures']} create(s) failed in the last cycle{why}"
    return None


# -- small parts -----------------------------------------------------------------------------------


class Progress:
    """Signs of life from the worker, read by the watchdog thread (monotonic clock)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self.started = clock()
        self.cycle_started: float | None = None
        self.last_cycle_end: float | None = None
        self.last_beat = self.started
        self._requests = -1

    def beat(self) -> None:
        with self._lock:
            self.last_beat = self._clock()

    def requests_seen(self, total: int) -> None:
        with self._lock:
            if total != self._requests:
                self._requests = total
                self.last_beat = self._clock()

    def cycle_began(self) -> None:
        with self._lock:
            self.cycle_started = self.last_beat = self._clock()

    def cycle_ended(self) -> None:
        with self._lock:
            self.cycle_started = None
            self.last_cycle_end = self.last_beat = self._clock()

    def verdict(self, *, interval: float, stall: float) -> str | None:
        with self._lock:
            return watchdog_verdict(self._clock(), cycle_started=self.cycle_started, last_beat=self.last_beat,
                                    last_cycle_end=self.last_cycle_end, started=self.started,
                                    interval=interval, stall=stall)


class WatchedStore(Store):
    """The engine's store; every per-link commit is a sign of progress for the watchdog (a cycle
    over many links that are all in step makes no request for a while, but commits each link)."""

    def __init__(self, db: Any, path: Path | None = None) -> None:
        super().__init__(db, path)
        self.beat: Callable[[], None] = _nothing

    def commit_run(self, *args: Any, **kwargs: Any) -> list[JournalEntry]:
        self.beat()
        return super().commit_run(*args, **kwargs)

    def record_failure(self, *args: Any, **kwargs: Any) -> int:
        self.beat()
        return super().record_failure(*args, **kwargs)


class SignalPipe:
    """Signals delivered as bytes on a socket pair, read by the main thread when it is ready."""

    def __init__(self, signums: Iterable[int]) -> None:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)
        self._old_fd = signal.set_wakeup_fd(self._write.fileno(), warn_on_full_buffer=False)
        # A Python-level handler must exist for the C handler to write the byte; it does nothing.
        self._old = {signum: signal.signal(signum, _note_signal) for signum in signums}

    def wait(self, timeout: float | None = None) -> list[int]:
        readable, _, _ = select.select([self._read], [], [], timeout)
        if not readable:
            return []
        try:
            return list(self._read.recv(64))
        except BlockingIOError:
            return []

    def close(self) -> None:
        for signum, handler in self._old.items():
            signal.signal(signum, handler)
        signal.set_wakeup_fd(self._old_fd)
        self._read.close()
        self._write.close()


def _nothing() -> None:
    """No watchdog is listening."""


def _note_signal(signum: int, frame: object) -> None:
    """The byte on the wake-up pipe is the message; nothing to do here."""


def _route_scheduler_logs() -> None:
    """APScheduler's warnings (e.g. a run skipped because a cycle still runs) go through our
    handler and format; its per-run INFO chatter stays out."""
    ours = logging.getLogger("bridge")
    theirs = logging.getLogger("apscheduler")
    theirs.handlers[:] = ours.handlers
    theirs.setLevel(logging.WARNING)
    theirs.propagate = False


# -- the daemon ----------------------------------------------------------------------------------


class Daemon:
    def __init__(
        self,
        config_path: Path,
        env: Mapping[str, str],
        *,
        retry_policy: RetryPolicy | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.config_path = config_path
        self.env = env
        self.retry_policy = retry_policy
        self.notifier = notifier or Notifier.from_env(env)
        self.stopping = threading.Event()
        self.metrics = Metrics()
        self.health = Health(60)
        # The interval /healthz judges by, as a series for the alert rules (it follows reloads).
        self.metrics.cycle_interval.set_function(lambda: self.health.interval_seconds)
        self.progress = Progress()
        self.settings: Settings | None = None
        self._worker = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="cycle")
        self._scheduler: BackgroundScheduler | None = None
        # Owned by the worker thread only:
        self._store: WatchedStore | None = None
        self._engine: Engine | None = None
        self._server: MetricsServer | None = None
        # Push (design section 10): hooks are hints that bring the next cycle forward.
        self.hints = HintBox(on_new=self._wake)
        self.echoes = EchoBook()
        self.hook_counters = HookCounters(lambda source, outcome: self.metrics.hooks.labels(source, outcome).inc())
        self._receiver: HookReceiver | None = None
        # Whether cycles may read only what hooks point at (set when the receiver starts).
        self.trust = HookTrust(self.hook_counters, configured=False)
        self._wake_lock = threading.Lock()
        self._cycle_running = threading.Event()
        self._last_start = float("-inf")  # time.monotonic() of the last cycle's start
        # When the next scheduled cycle is due (time.monotonic()).  A run of the job before then
        # was brought forward by hooks: a hinted cycle, which leaves this schedule as it is.
        self._scheduled_due = float("-inf")

    # -- life cycle (main thread) -----------------------------------------------------------
    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; the exit code of `run`.  Raises ConfigError (exit 2) and
        LockHeldError (exit 4) at start-up, like `sync`."""
        settings = load_settings(self.config_path, self.env)
        _route_scheduler_logs()
        with StateLock(settings.state.path):
            try:
                return self._serve(settings)
            finally:
                self._worker.shutdown(wait=False, cancel_futures=True)
                self.notifier.close()

    def _serve(self, settings: Settings) -> int:
        self.settings = settings
        self.health.set_interval(settings.sync.interval_seconds + settings.sync.jitter_seconds)
        try:
            self._on_worker(self._open, settings)
            self._on_worker(self._listen, settings)
            self._start_receiver(settings)
        except BaseException:
            self._on_worker(self._close)
            raise
        signals = SignalPipe((signal.SIGTERM, signal.SIGINT, signal.SIGHUP))
        watchdog_stop = threading.Event()
        try:
            self._scheduler = self._start_scheduler(settings)
            self.notifier.ready(status="started; first cycle running")
            log.info("service started: a cycle every %ds (jitter up to %gs), state %s, pid %d",
                     settings.sync.interval_seconds, settings.sync.jitter_seconds, settings.state.path, os.getpid(),
                     extra={"event": "daemon.started"})
            self._start_watchdog(watchdog_stop)
            self._wait_for_stop(signals)
            return self._shutdown(signals)
        except BaseException:
            # Not the way out we planned (a bug): still stop cycles and close the state file.
            self.stopping.set()
            if self._scheduler is not None and self._scheduler.running:
                self._scheduler.shutdown(wait=False)
            with contextlib.suppress(Exception):
                self._worker.submit(self._close).result(timeout=stop_grace_seconds(settings))
            raise
        finally:
            watchdog_stop.set()
            signals.close()
            if self._receiver is not None:
                self._receiver.close()

    def _start_scheduler(self, settings: Settings) -> BackgroundScheduler:
        scheduler = BackgroundScheduler(
            timezone=UTC,
            executors={"default": SchedulerPool(max_workers=1)},
        )
        scheduler.add_job(
            self._tick,
            trigger=self._trigger(settings),
            id=JOB_ID,
            name="sync cycle",
            max_instances=1,  # an overrunning cycle is never doubled; the skipped start is logged
            coalesce=True,  # starts missed while suspended or busy collapse into one
            misfire_grace_time=None,  # ...which runs however late it is: no cycle is silently dropped
            next_run_time=datetime.now(UTC),  # the first cycle at start-up
        )
        scheduler.start()
        return scheduler

    @staticmethod
    def _trigger(settings: Settings) -> IntervalTrigger:
        return IntervalTrigger(seconds=settings.sync.interval_seconds, timezone=UTC,
                               jitter=settings.sync.jitter_seconds or None)

    def _wait_for_stop(self, signals: SignalPipe) -> None:
        while True:
            for signum in signals.wait():
                if signum in (signal.SIGTERM, signal.SIGINT):
                    log.info("%s received: finishing the link in progress, then stopping",
                             signal.Signals(signum).name, extra={"event": "daemon.stopping"})
                    return
                if signum == signal.SIGHUP:
                    self._reload()

    def _shutdown(self, signals: SignalPipe) -> int:
        self.stopping.set()  # the engine's stop flag: no new link starts
        self.notifier.stopping(status="stopping: finishing the link in progress")
        if self._scheduler is not None:
            self._scheduler.shutdown(wait=False)  # no new cycle; joins only the scheduler's own thread
        settings = self.settings
        grace = stop_grace_seconds(settings) if settings else 60.0
        deadline = time.monotonic() + grace
        closed = self._worker.submit(self._close)  # runs after the cycle in flight, if any
        while not closed.done():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                self._exit_now(f"the link in progress did not finish within {grace:.0f}s")
            # A second SIGTERM/SIGINT (Ctrl-C twice at a terminal) means "now".
            if {signal.SIGTERM, signal.SIGINT} & set(signals.wait(min(remaining, 0.1))):
                self._exit_now("stop signal received twice")
        closed.result()
        self._worker.shutdown(wait=True)
        log.info("stopped", extra={"event": "daemon.stopped"})
        return EXIT_OK

    @staticmethod
    def _exit_now(why: str) -> None:
        log.error("%s: exiting without waiting (the next run re-reads both sides and adopts whatever was "
                  "written)", why, extra={"event": "daemon.stop_forced"})
        for handler in logging.getLogger("bridge").handlers:
            handler.flush()
        os._exit(EXIT_FAILED)  # the worker is inside a request: its thread cannot be joined

    def _reload(self) -> None:
        if self.stopping.is_set() or self.settings is None:
            return
        self.notifier.reloading()
        log.info("SIGHUP received: reloading %s", self.config_path, extra={"event": "config.reloading"})
        try:
            new = load_settings(self.config_path, self.env)
            problems = reload_problems(self.settings, new)
            if problems:
                raise ConfigError(problems)
        except ConfigError as exc:
            log.error("configuration reload refused, %d problem(s); still running with the previous configuration",
                      len(exc.problems), extra={"event": "config.reload_refused"})
            for problem in exc.problems:
                log.error("  - %s", problem, extra={"event": "config.problem"})
            self.notifier.ready(status=f"reload refused ({len(exc.problems)} problem(s)); previous configuration kept")
            return
        # Applied on the worker, so after the cycle in flight; the main thread stays free for signals.
        self._worker.submit(self._apply, new)

    def _start_watchdog(self, stop: threading.Event) -> None:
        interval = self.notifier.watchdog_seconds
        if interval is None:
            return

        def loop() -> None:
            silent = False
            while not stop.wait(interval):
                try:
                    why = self._watchdog_verdict()
                except Exception:  # noqa: BLE001 - a dead watchdog thread would get a healthy service killed
                    log.exception("watchdog check failed; pinging anyway", extra={"event": "daemon.watchdog_error"})
                    why = None
                if why is None:
                    self.notifier.watchdog()
                    silent = False
                elif not silent:
                    log.error("watchdog: not pinging systemd because %s", why, extra={"event": "daemon.wedged"})
                    silent = True

        threading.Thread(target=loop, name="watchdog", daemon=True).start()

    def _watchdog_verdict(self) -> str | None:
        engine, settings = self._engine, self.settings
        if engine is not None:
            with contextlib.suppress(RuntimeError):  # a counter grew while we summed it: next time
                self.progress.requests_seen(engine.sentry.stats.total + engine.tracker.stats.total)
        if settings is None:
            return None
        return self.progress.verdict(interval=settings.sync.interval_seconds + settings.sync.jitter_seconds,
                                     stall=stall_seconds(settings))

    def _on_worker(self, fn: Callable[..., T], *args: Any) -> T:
        return self._worker.submit(fn, *args).result()

    # -- the scheduler's job (APScheduler's thread) -------------------------------------------
    def _tick(self) -> None:
        """Hand the cycle to the worker and wait for it, so `max_instances=1` sees it running.
        Hints that arrived during the cycle bring the next one forward."""
        if self.stopping.is_set():
            return
        settings = self.settings
        with self._wake_lock:
            self._cycle_running.set()
            now = self._last_start = time.monotonic()
            scheduled = settings is None or now >= self._scheduled_due - SCHEDULE_SLACK_SECONDS
            if scheduled and settings is not None:
                self._scheduled_due = now + settings.sync.interval_seconds + random.uniform(  # noqa: S311
                    0, settings.sync.jitter_seconds)
        try:
            try:
                future = self._worker.submit(self._cycle, not scheduled)
            except RuntimeError:
                return  # shutting down
            future.result()
        finally:
            with self._wake_lock:
                self._cycle_running.clear()
            self._keep_schedule()
        if len(self.hints):
            self._wake()

    def _keep_schedule(self) -> None:
        """The job's next run is the next scheduled cycle, whatever ran now: a hinted cycle must
        not push the schedule back (APScheduler counts the interval from the run it just made)."""
        scheduler = self._scheduler
        if scheduler is None or self.stopping.is_set() or self._scheduled_due == float("-inf"):
            return
        delay = max(0.0, self._scheduled_due - time.monotonic())
        with contextlib.suppress(Exception):  # the job is gone: the scheduler is shutting down
            scheduler.modify_job(JOB_ID, next_run_time=datetime.now(UTC) + timedelta(seconds=delay))

    # -- push ---------------------------------------------------------------------------------
    def _start_receiver(self, settings: Settings) -> None:
        if not settings.push.enabled:
            self.metrics.set_push_configured(sentry=False, tracker=False)
            return
        sentry_secret, tracker_secret = settings.push_secret("sentry"), settings.push_secret("tracker")
        if sentry_secret is None and tracker_secret is None:
            raise ConfigError(["push: enabled, but neither push.sentry_secret nor push.tracker_secret is set "
                               "(hooks without a secret are never accepted)"])
        try:
            self._receiver = HookReceiver(settings.push.address(), self.hints, sentry_secret=sentry_secret,
                                          tracker_secret=tracker_secret, counters=self.hook_counters,
                                          echoes=self.echoes)
        except OSError as exc:
            raise ConfigError([f"push.listen: cannot listen on {settings.push.listen}: "
                               f"{exc.strerror or exc}"]) from None
        self._receiver.start()
        self.metrics.set_push_configured(sentry=sentry_secret is not None, tracker=tracker_secret is not None)
        focusing = sentry_secret is not None and settings.push.focused_cycles
        self.trust = HookTrust(self.hook_counters, configured=focusing)
        host, port = self._receiver.address
        log.info("hooks on http://%s:%d/hooks/sentry and /hooks/tracker (%s)", host, port,
                 ", ".join(side for side, secret in (("sentry", sentry_secret), ("tracker", tracker_secret)) if secret),
                 extra={"event": "push.listening"})

    def _wake(self) -> None:
        """A hint arrived: bring the next cycle forward, but never closer than
        `push.min_gap_seconds` to the last start (a flood of hints is one cycle per gap).  During
        a cycle nothing is moved: `_tick` wakes again when it ends, if hints wait."""
        scheduler, settings = self._scheduler, self.settings
        if scheduler is None or settings is None or not settings.push.enabled or self.stopping.is_set():
            return
        with self._wake_lock:
            if self._cycle_running.is_set():
                return
            delay = max(0.0, self._last_start + settings.push.min_gap_seconds - time.monotonic())
            when = datetime.now(UTC) + timedelta(seconds=delay)
            job = scheduler.get_job(JOB_ID)
            if job is None or (job.next_run_time is not None and job.next_run_time <= when):
                return
            scheduler.modify_job(JOB_ID, next_run_time=when)

    # -- on the worker thread ---------------------------------------------------------------
    def _open(self, settings: Settings) -> None:
        try:
            store = WatchedStore.open(settings.state.path)
        except sqlite3.Error as exc:
            raise BridgeError(f"cannot open the state file {settings.state.path}: {exc}") from None
        if not isinstance(store, WatchedStore):  # Store.open builds `cls`; this keeps mypy and us honest
            raise BridgeError("internal: Store.open did not build a WatchedStore")
        store.beat = self.progress.beat
        self._store = store
        self._engine = self._build_engine(settings, store)
        last = parse_iso(store.last_success())
        if last is not None:
            self.health.succeeded(last.timestamp())
        self.metrics.set_last_success(last)
        self._refresh_state_gauges(store)

    def _build_engine(self, settings: Settings, store: Store) -> Engine:
        sentry, tracker = open_clients(settings, policy=self.retry_policy)
        sentry.on_write = self.echoes.wrote  # so the receiver knows our own writes coming back
        engine = Engine(settings, store, sentry, tracker)
        engine.stop_requested = self.stopping  # one flag for every engine this daemon builds
        return engine

    def _listen(self, settings: Settings) -> None:
        address = settings.metrics.address()
        if address is None:
            return
        self._server = MetricsServer(address, self.metrics, self.health).start()
        host, port = self._server.address
        log.info("metrics on http://%s:%d/metrics and /healthz", host if ":" not in host else f"[{host}]", port,
                 extra={"event": "metrics.listening"})

    def _cycle(self, brought_forward: bool = False) -> None:
        engine = self._engine
        if self.stopping.is_set() or engine is None:
            return
        self.progress.cycle_began()
        hinted = self.hints.drain()  # this cycle reads them all; hints from now on wake the next
        if hinted:
            log.info("cycle brought forward by %d hook hint(s)", len(hinted), extra={"event": "push.cycle"})
        focus = self.trust.focus(hinted, scheduled=not brought_forward)
        self.metrics.hooks_trusted.set(int(self.trust.trusted))
        try:
            report = engine.run_cycle(respect_backoff=True, focus=focus)
        except RemoteError as exc:
            log.error("cycle failed: %s; the next cycle is the retry", exc.describe(), extra={"event": "cycle.failed"})
            self._cycle_failed("aborted", exc.describe())
            return
        except Exception as exc:  # noqa: BLE001 - a bug in one cycle must not end the service
            log.exception("cycle crashed; the next cycle is the retry", extra={"event": "cycle.crashed"})
            self._cycle_failed("crashed", f"cycle crashed: {type(exc).__name__}: {exc}")
            return
        finally:
            self.progress.cycle_ended()
        self.trust.found_unhinted(report.unhinted)
        self._observe(engine, report)

    def _cycle_failed(self, result: str, problem: str) -> None:
        self.metrics.cycles.labels(result).inc()
        self.health.failed(problem)
        self.notifier.status(f"{datetime.now(UTC):%H:%M:%SZ} {problem}")
        if self._engine is not None:
            self._observe_requests(self._engine)

    def _observe(self, engine: Engine, report: CycleReport) -> None:
        self.metrics.observe_cycle(report)
        self._observe_requests(engine)
        if self._store is not None:
            self._refresh_state_gauges(self._store)
        problem = cycle_problem(report)
        if problem is None:
            finished = report.finished or datetime.now(UTC)
            self.health.succeeded(finished.timestamp())
            self.metrics.set_last_success(finished)
        else:
            self.health.failed(problem)
        self.notifier.status(status_line(report, report.finished or datetime.now(UTC)))

    def _observe_requests(self, engine: Engine) -> None:
        self.metrics.observe_requests("sentry", engine.sentry.stats)
        self.metrics.observe_requests("tracker", engine.tracker.stats)

    def _refresh_state_gauges(self, store: Store) -> None:
        self.metrics.set_state(links=store.link_count(), failures=len(store.failures()),
                               conflicts=len(store.open_conflicts()))

    def _apply(self, new: Settings) -> None:
        """A good new configuration: new clients and engine (same store), new schedule and
        metrics address when they changed."""
        old, store, engine = self.settings, self._store, self._engine
        if self.stopping.is_set() or old is None or store is None:
            return
        try:
            fresh = self._build_engine(new, store)
        except BridgeError as exc:
            log.error("configuration reload failed: %s; still running with the previous configuration", exc,
                      extra={"event": "config.reload_refused"})
            self.notifier.ready(status="reload failed; previous configuration kept")
            return
        self._engine, self.settings = fresh, new
        if engine is not None:
            self._close_clients(engine)
        # push.focused_cycles may be switched either way by a reload (the receiver stays bound).
        self.trust.configured = (self._receiver is not None and self._receiver.takes_sentry
                                 and new.push.focused_cycles)
        if (new.sync.interval_seconds, new.sync.jitter_seconds) != (old.sync.interval_seconds, old.sync.jitter_seconds):
            self.health.set_interval(new.sync.interval_seconds + new.sync.jitter_seconds)
            if self._scheduler is not None and not self.stopping.is_set():
                with self._wake_lock:
                    self._scheduled_due = float("-inf")  # the new schedule's first run is a scheduled one
                self._scheduler.reschedule_job(JOB_ID, trigger=self._trigger(new))
        if new.metrics.listen != old.metrics.listen:
            self._relisten(new)
        log.info("configuration reloaded from %s", self.config_path, extra={"event": "config.reloaded"})
        self.notifier.ready(status=f"configuration reloaded at {datetime.now(UTC):%H:%M:%SZ}")

    def _relisten(self, new: Settings) -> None:
        previous = self._server
        if previous is not None:
            previous.stop()
            self._server = None
        try:
            self._listen(new)
        except BridgeError as exc:
            log.error("%s; metrics are off until the next reload or restart", exc, extra={"event": "metrics.failed"})

    def _close(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None
        if self._engine is not None:
            self._close_clients(self._engine)
            self._engine = None
        if self._store is not None:
            self._store.close()
            self._store = None

    @staticmethod
    def _close_clients(engine: Engine) -> None:
        for client in (engine.sentry, engine.tracker):
            with contextlib.suppress(Exception):
                client.close()


def run_daemon(config_path: Path, env: Mapping[str, str], *, retry_policy: RetryPolicy | None = None) -> int:
    """`sentry-tracker-bridge run`."""
    # This process serves metrics: no `*_created` series beside every counter and histogram.
    disable_created_metrics()  # type: ignore[no-untyped-call]
    return Daemon(config_path, env, retry_policy=retry_policy).run()
