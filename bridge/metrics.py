"""Prometheus metrics and `/healthz` for the daemon.

Why it looks like this:

* One `CollectorRegistry` per `Metrics` object, never prometheus-client's global default: the
  daemon builds its own at start-up, and tests can build as many as they like without
  "Duplicated timeseries" errors.
* Everything is fed once per cycle from what the cycle already produced (the `CycleReport` and
  the clients' `RequestStats`), so metrics cost nothing between cycles and need no hooks in the
  engine.  Request counters are fed as deltas of the clients' cumulative counts; a new client
  (after a config reload) starts a new baseline.
* `/healthz` answers from memory (no database, no network), so a wedged remote cannot make the
  health check itself hang.  It fails when no cycle has succeeded within three intervals.
* The server binds exactly where `[metrics] listen` says and nowhere else; it is off by default.
* Whatever an alert rule needs is a series of its own (deploy/prometheus/alerts.yml): the cycle
  interval (so "no success for three intervals" needs no number copied from the config) and
  which hook sources are configured (so "hooks stopped arriving" never fires where none were set
  up).
"""

from __future__ import annotations

import http.server
import logging
import socket
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, ProcessCollector
from prometheus_client.core import HistogramMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector

from bridge.clients.http import LATENCY_BUCKETS, RequestStats
from bridge.core.report import CycleReport
from bridge.errors import BridgeError

log = logging.getLogger("bridge.metrics")
K = TypeVar("K")

HEALTH_WINDOW_INTERVALS = 3
DURATION_BUCKETS = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0)
# Journal actions that record something without writing to a remote.
NOT_WRITES = frozenset({"conflict", "unmapped"})
HOOK_SOURCES = ("sentry", "tracker")


def cycle_result(report: CycleReport) -> str:
    """One word per cycle for the `bridge_cycles_total` label."""
    if report.fatal is not None:
        return "aborted"
    if report.refused is not None:
        return "refused"
    if report.interrupted:
        return "interrupted"
    return "ok" if report.ok else "failed"


@dataclass
class _Seen:
    """The cumulative counts of one `RequestStats` at the last call: the next call adds only
    what grew since."""

    stats: RequestStats
    requests: dict[tuple[str, str], int]
    retries: dict[str, int]
    waited: dict[str, float]
    latency: list[int]
    latency_sum: float


def _growth(now: Mapping[K, float], before: Mapping[K, float]) -> Iterator[tuple[K, float]]:
    """Keys whose cumulative count grew, with how much."""
    for key, value in now.items():
        delta = value - before.get(key, 0)
        if delta > 0:
            yield key, delta


class RequestDurations(Collector):
    """`bridge_api_request_duration_seconds{service}`: a histogram of how long each API took to
    answer.  The clients bucket every request as it goes (`RequestStats.record_latency`: one
    integer add), and `Metrics.observe_requests` adds what grew since the last cycle here, like
    the request counters; a `prometheus_client.Histogram` cannot take bucket counts, only single
    observations, which the clients would then have to keep until the cycle ends."""

    NAME = "bridge_api_request_duration_seconds"
    HELP = "Time from sending an API request to its answer (or to the timeout), by service"

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: dict[str, list[int]] = {}
        self._sums: dict[str, float] = {}

    def add(self, service: str, counts: list[int], seconds: float) -> None:
        """Add per-bucket counts (not cumulative; one more slot than `LATENCY_BUCKETS`)."""
        with self._lock:
            mine = self._counts.setdefault(service, [0] * (len(LATENCY_BUCKETS) + 1))
            for i, n in enumerate(counts):
                mine[i] += n
            self._sums[service] = self._sums.get(service, 0.0) + seconds

    def describe(self) -> Iterator[Metric]:
        yield HistogramMetricFamily(self.NAME, self.HELP, labels=["service"])

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily(self.NAME, self.HELP, labels=["service"])
        with self._lock:
            for service, counts in sorted(self._counts.items()):
                running, buckets = 0, []
                for bound, n in zip((*map(str, LATENCY_BUCKETS), "+Inf"), counts, strict=True):
                    running += n
                    buckets.append((bound, float(running)))
                family.add_metric([service], buckets, self._sums[service])
        yield family


class Metrics:
    """The daemon's metrics in a registry of their own."""

    def __init__(self, *, process: bool = True) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        if process:
            # process_resident_memory_bytes, process_cpu_seconds_total, open fds: the idle cost.
            ProcessCollector(registry=r)
        self.cycle_duration = Histogram(
            "bridge_cycle_duration_seconds", "Wall time of one sync cycle", buckets=DURATION_BUCKETS, registry=r)
        self.cycles = Counter(
            "bridge_cycles", "Sync cycles by result (ok, failed, aborted, refused, interrupted, crashed)",
            ["result"], registry=r)
        self.writes = Counter("bridge_writes", "Remote writes by side, field and outcome",
                              ["side", "field", "outcome"], registry=r)
        self.failures = Gauge("bridge_failures", "Links recorded as failing and waiting for a retry", registry=r)
        self.conflicts = Gauge("bridge_conflicts", "Open conflicts waiting for a person", registry=r)
        self.links = Gauge("bridge_links", "Linked issue pairs", registry=r)
        self.last_success = Gauge("bridge_last_success_timestamp_seconds",
                                  "Unix time when the last successful cycle finished (0: never)", registry=r)
        self.requests = Counter("bridge_api_requests", "API requests by service, endpoint and status code",
                                ["service", "endpoint", "status"], registry=r)
        self.retries = Counter("bridge_api_retries", "API request retries by service and endpoint",
                               ["service", "endpoint"], registry=r)
        self.rate_limit_wait = Counter(
            "bridge_api_rate_limit_wait_seconds",
            "Seconds spent waiting for an API's rate limit (its advertised window, or after a 429)",
            ["service", "endpoint"], registry=r)
        self.hooks = Counter(
            "bridge_hooks", "Hook requests received by source (sentry, tracker) and outcome (queued, ignored, "
            "dropped, or the refusal's HTTP status)", ["source", "outcome"], registry=r)
        self.push_configured = Gauge(
            "bridge_push_configured", "1 when hooks from this source are received (push enabled and its secret set)",
            ["source"], registry=r)
        self.cycle_interval = Gauge(
            "bridge_cycle_interval_seconds", "The longest expected gap between cycle starts: sync.interval_seconds "
            "plus sync.jitter_seconds (/healthz fails after three of these without a success)", registry=r)
        self.request_durations = RequestDurations()
        r.register(self.request_durations)
        self.hooks_trusted = Gauge(
            "bridge_hooks_trusted", "1 while Sentry hooks are configured and trusted, so incremental cycles read only "
            "the links hooks, the Tracker poll and bookmark searches point at (plus a rotating slice); 0 when they "
            "are off or distrusted (refused hooks, a change no hook named) and every link is read", registry=r)
        for result in ("ok", "failed", "aborted", "refused", "interrupted", "crashed"):
            self.cycles.labels(result)  # present from the start, so rate() works from the first scrape
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def observe_cycle(self, report: CycleReport) -> None:
        if report.finished is not None:
            self.cycle_duration.observe(max(0.0, (report.finished - report.started).total_seconds()))
        self.cycles.labels(cycle_result(report)).inc()
        self.links.set(report.links)
        for outcome in report.outcomes:
            for entry in outcome.journal:
                if entry.action not in NOT_WRITES:
                    self.writes.labels(entry.side or "-", entry.field, entry.outcome).inc()

    def set_state(self, *, links: int, failures: int, conflicts: int) -> None:
        """Gauges read from the state file after each cycle (and at start-up)."""
        self.links.set(links)
        self.failures.set(failures)
        self.conflicts.set(conflicts)

    def set_last_success(self, when: datetime | None) -> None:
        self.last_success.set(when.timestamp() if when else 0)

    def set_push_configured(self, sentry: bool, tracker: bool) -> None:
        """Which hook sources the receiver accepts: an alert on hooks that stopped arriving
        reads this, so that a source nobody set up never looks "stopped"."""
        for source, on in zip(HOOK_SOURCES, (sentry, tracker), strict=True):
            self.push_configured.labels(source).set(1 if on else 0)

    def observe_requests(self, service: str, stats: RequestStats) -> None:
        """Add what `stats` counted since the last call for this service.  A different stats
        object (new clients after a reload) starts from zero."""
        with self._lock:
            latency, latency_sum = stats.latency()
            now = _Seen(stats, dict(stats.by_endpoint), dict(stats.retries_by_endpoint),
                        dict(stats.waited_by_endpoint), latency, latency_sum)
            seen = self._seen.get(service)
            if seen is None or seen.stats is not stats:
                seen = _Seen(stats, {}, {}, {}, [0] * len(latency), 0.0)
            for (endpoint, status), n in _growth(now.requests, seen.requests):
                self.requests.labels(service, endpoint, status).inc(n)
            for endpoint, n in _growth(now.retries, seen.retries):
                self.retries.labels(service, endpoint).inc(n)
            for endpoint, seconds in _growth(now.waited, seen.waited):
                self.rate_limit_wait.labels(service, endpoint).inc(seconds)
            grown = [max(0, a - b) for a, b in zip(now.latency, seen.latency, strict=True)]
            if any(grown):
                self.request_durations.add(service, grown, max(0.0, now.latency_sum - seen.latency_sum))
            self._seen[service] = now


class Health:
    """Whether a cycle succeeded recently enough; read by `/healthz` from another thread."""

    def __init__(self, interval_seconds: float, *, clock: Any = time.time) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.interval_seconds = float(interval_seconds)
        self.last_success: float | None = None
        self.last_problem: str | None = None

    def set_interval(self, seconds: float) -> None:
        with self._lock:
            self.interval_seconds = float(seconds)

    def succeeded(self, at: float | None = None) -> None:
        with self._lock:
            self.last_success = self._clock() if at is None else at
            self.last_problem = None

    def failed(self, problem: str) -> None:
        with self._lock:
            self.last_problem = problem

    def check(self, now: float | None = None) -> tuple[bool, str]:
        """(healthy, one line saying why)."""
        with self._lock:
            now = self._clock() if now is None else now
            window = HEALTH_WINDOW_INTERVALS * self.interval_seconds
            problem = f"; last problem: {self.last_problem}" if self.last_problem else ""
            if self.last_success is None:
                return False, f"no cycle has succeeded yet{problem}"
            age = max(0.0, now - self.last_success)
            if age > window:
                return False, (f"no cycle has succeeded for {age:.0f}s (limit {window:.0f}s, "
                               f"{HEALTH_WINDOW_INTERVALS} intervals){problem}")
            return True, f"last successful cycle finished {age:.0f}s ago"


class MetricsServer:
    """`GET /metrics` (Prometheus text or OpenMetrics, by `Accept`) and `GET /healthz`."""

    def __init__(self, address: tuple[str, int], metrics: Metrics, health: Health) -> None:
        host, port = address
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
        except OSError as exc:
            raise BridgeError(f"metrics.listen: cannot resolve {host!r}: {exc.strerror or exc}") from None

        class Server(http.server.ThreadingHTTPServer):
            address_family = family
            daemon_threads = True

        try:
            self._server = Server((host, port), _make_handler(metrics, health))
        except OSError as exc:
            raise BridgeError(f"metrics.listen: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> tuple[str, int]:
        host, port = self._server.server_address[:2]
        return str(host), int(port)

    def start(self) -> MetricsServer:
        self._thread = threading.Thread(target=self._server.serve_forever, name="metrics", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join(timeout=5)
            self._thread = None
        self._server.server_close()


def _make_handler(metrics: Metrics, health: Health) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "sentry-tracker-bridge"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            """Scrapes every 15 s would drown the log; stay quiet."""

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
                self._reply(200, encoder(metrics.registry), content_type)
            elif path == "/healthz":
                ok, reason = health.check()
                self._reply(200 if ok else 503, f"{'ok' if ok else 'unhealthy'}: {reason}\n".encode(),
                            "text/plain; charset=utf-8")
            else:
                self._reply(404, b"not found: try /metrics or /healthz\n", "text/plain; charset=utf-8")

        def _reply(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Cache-Control", "no-store")
            self.end_headers()
            self.wfile.write(body)

    return Handler


def parse_iso(value: str | None) -> datetime | None:
    """A timestamp from the state file (ISO 8601, UTC when no zone is given)."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
