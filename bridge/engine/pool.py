"""The write pool of a cycle: links with writes run on `sync.concurrency` workers (HTTP only, plus
the write-ahead notes), and each finished link is committed on the main thread, in one
transaction, as it comes in.  Whatever ends the cycle, every write started is waited for and
committed: a write that reached a server is never left without its baseline."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor, as_completed
from typing import TYPE_CHECKING

from bridge.core.linkrun import LinkRun
from bridge.core.mapping import UserMap
from bridge.core.report import CycleReport
from bridge.engine.executor import Executor

if TYPE_CHECKING:
    from bridge.engine.cycle import Engine


class WritePool:
    """Links with writes run on `sync.concurrency` workers (HTTP only); each run is committed on
    the main thread, in one transaction per link, as it comes in."""

    def __init__(self, engine: Engine, report: CycleReport, executor: Executor, users: UserMap) -> None:
        self._engine, self._report, self._executor, self._users = engine, report, executor, users
        self._pool: ThreadPoolExecutor | None = None
        self._running: dict[Future[bool], LinkRun] = {}

    def start(self, runs: Sequence[LinkRun]) -> None:
        if not runs:
            return  # most cycles write nothing: no threads for them
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self._engine.settings.sync.concurrency,
                                            thread_name_prefix="write")
        for run in runs:
            self._running[self._pool.submit(self._work, run)] = run

    def _work(self, run: LinkRun) -> bool:
        if self._engine.stop_requested.is_set():
            return False
        self._executor.run(run)
        return True

    def commit_done(self) -> None:
        """Commit the links whose writes have finished, without waiting for the others."""
        self._commit([f for f in self._running if f.done()])

    def drain(self) -> None:
        """Wait for every write started and commit it: a write that reached a server is never
        left without its baseline, whatever ended the cycle."""
        try:
            self._commit(as_completed(list(self._running)))
        finally:
            if self._pool is not None:
                self._pool.shutdown(wait=True)
                self._pool = None

    def _commit(self, futures: Iterable[Future[bool]]) -> None:
        for future in futures:
            run = self._running.pop(future)
            try:
                started = future.result()
            except Exception as exc:  # noqa: BLE001 - the executor catches its own; this is a last guard
                run.error, started = f"internal error: {type(exc).__name__}: {exc}", True
            if not started:
                self._report.interrupted = True
                continue
            self._engine.finish(self._report, run, self._users)
