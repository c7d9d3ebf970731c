"""The one place where HTTP requests are sent, retried and translated into `bridge.errors`.

Both API clients build on `ApiHttp`.  Retrying lives here (tenacity) so that every request of
the bridge follows the same rules:

* a request that never reached the server (connection refused, DNS, connect timeout) and a 429
  are always retried: nothing was applied;
* a timeout after sending, a dropped connection or a 5xx are retried only for requests marked
  `safe` (reads, and writes that cannot apply twice: absolute values, `version`-guarded PATCH,
  `unique`-guarded create); for the others the outcome is ambiguous and the caller decides;
* the wait honours `Retry-After`, else `X-Sentry-Rate-Limit-Reset`, else exponential backoff
  with full jitter; attempts *and* a total deadline bound it; tests switch the waits off.
"""

from __future__ import annotations

import bisect
import contextlib
import email.utils
import functools
import json
import logging
import random
import re
import ssl
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx
import tenacity

from bridge.errors import (
    AuthError,
    BadResponseError,
    ConflictError,
    NotFoundError,
    RateLimitedError,
    RedirectedError,
    RejectedError,
    RemoteError,
    TimedOutError,
    TransientError,
    UnreachableError,
)

log = logging.getLogger("bridge.http")

EXCERPT_CHARS = 200
# At most this many pacing waits before a request is sent anyway.
PACE_ROUNDS = 3
# Upper bounds (seconds) of the request-duration buckets: from a fast local answer to a timeout.
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one request.  `waits=False` keeps the attempts but never sleeps (tests)."""

    attempts: int = 5
    deadline_seconds: float = 60.0
    base_wait_seconds: float = 0.5
    max_wait_seconds: float = 30.0
    waits: bool = True

    def wait_for(self, error: BaseException, attempt: int) -> float:
        """Seconds to sleep before the next attempt after `error` (attempt counts from 1)."""
        if not self.waits:
            return 0.0
        if isinstance(error, RateLimitedError) and error.retry_after is not None:
            # The server said when; add a little jitter so parallel workers do not stampede.
            return min(self.max_wait_seconds, error.retry_after + random.uniform(0, 0.25))
        ceiling = min(self.max_wait_seconds, self.base_wait_seconds * (2 ** (attempt - 1)))
        return random.uniform(0, ceiling)


_ID_SEGMENT = re.compile(r"^(\d+|[A-Z][A-Z0-9_]*-\d+|[0-9a-f]{24}|[0-9a-f-]{32,36})$")


def endpoint_label(method: str, path: str) -> str:
    """`GET /api/0/organizations/acme/issues/123/` -> `GET /api/0/organizations/acme/issues/{id}/`:
    a bounded set of labels for metrics (ids and issue keys folded)."""
    parts = path.split("/")
    folded = [
        # the segment after "api" is Sentry's API version (/api/0/), not an id
        "{id}" if _ID_SEGMENT.match(part) and not (i and parts[i - 1] == "api") else part
        for i, part in enumerate(parts)
    ]
    return f"{method} {'/'.join(folded)}"


@dataclass
class RequestStats:
    """Counts of what was sent, for the cycle summary, metrics and tests.  Thread-safe.

    `by_endpoint` counts (endpoint label, status) pairs; `retries_by_endpoint` the retries;
    `waited_by_endpoint` the seconds spent waiting for a rate limit (the pacer's waits for the
    window to turn and the waits after a 429): at scale they tell a bridge bound by the APIs'
    budgets from one bound by latency.

    `latency_counts` counts requests by how long the server took (one slot per bucket of
    `LATENCY_BUCKETS`, the last for longer ones) and `latency_sum` adds their seconds: a fixed
    handful of numbers however many requests a long one-shot `sync` sends, which the daemon turns
    into a histogram after each cycle."""

    requests: Counter[str] = field(default_factory=Counter)
    statuses: Counter[str] = field(default_factory=Counter)
    by_endpoint: Counter[tuple[str, str]] = field(default_factory=Counter)
    retries_by_endpoint: Counter[str] = field(default_factory=Counter)
    waited_by_endpoint: dict[str, float] = field(default_factory=dict)
    latency_counts: list[int] = field(default_factory=lambda: [0] * (len(LATENCY_BUCKETS) + 1))
    latency_sum: float = 0.0
    retries: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def record(self, method: str, status: int | str, endpoint: str = "") -> None:
        with self._lock:
            self.requests[method] += 1
            self.statuses[str(status)] += 1
            self.by_endpoint[(endpoint or method, str(status))] += 1

    def record_retry(self, endpoint: str = "") -> None:
        with self._lock:
            self.retries += 1
            self.retries_by_endpoint[endpoint] += 1

    def record_wait(self, endpoint: str, seconds: float) -> None:
        with self._lock:
            self.waited_by_endpoint[endpoint] = self.waited_by_endpoint.get(endpoint, 0.0) + seconds

    def record_latency(self, seconds: float) -> None:
        """One request's time on the wire (sent to answered, or to the timeout)."""
        with self._lock:
            self.latency_counts[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
            self.latency_sum += seconds

    def latency(self) -> tuple[list[int], float]:
        """A consistent copy of (`latency_counts`, `latency_sum`)."""
        with self._lock:
            return list(self.latency_counts), self.latency_sum

    @property
    def total(self) -> int:
        return sum(self.requests.values())

    @property
    def writes(self) -> int:
        return sum(n for method, n in self.requests.items() if method not in ("GET", "HEAD"))

    def reset(self) -> None:
        with self._lock:
            self.requests.clear()
            self.statuses.clear()
            self.by_endpoint.clear()
            self.retries_by_endpoint.clear()
            self.waited_by_endpoint.clear()
            self.latency_counts = [0] * (len(LATENCY_BUCKETS) + 1)
            self.latency_sum = 0.0
            self.retries = 0


@dataclass
class _Window:
    remaining: int
    reset: float
    limit: int | None = None
    confirmed: bool = True


class Pacer:
    """Spends the budget a server advertises per endpoint (`X-Sentry-Rate-Limit-Limit`,
    `-Remaining` and `-Reset`, epoch seconds): when this window's budget is gone, requests wait
    for the window to turn instead of drawing a 429.  Servers that send no such headers are not
    paced.

    Within a window our own count is the budget (the advertised limit less what we sent, the
    requests still in flight at the turn included, since the server may count them in either
    window).  The server's `Remaining` only lowers it when it is below our own count: someone
    else spends the same budget.  Answers of parallel requests come back in any order, so taking
    every `Remaining` at face value minus what is still in flight would waste a slot in most
    windows; an answer from a window that has already turned tells nothing and is ignored."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._windows: dict[str, _Window] = {}
        self._inflight: Counter[str] = Counter()

    def delay(self, label: str, *, force: bool = False) -> float:
        """0: send now (counted as in flight until `done`).  Else: seconds to wait, then ask
        again.  `force` sends now whatever the budget says."""
        with self._lock:
            window = self._windows.get(label)
            now = self._clock()
            if window is not None and now >= window.reset:
                if window.limit:
                    # A new window: the advertised limit less what is still on the wire, until an
                    # answer tells when it ends.
                    budget = max(0, window.limit - self._inflight[label])
                    window = self._windows[label] = _Window(budget, now + 1.0, window.limit, False)
                else:
                    del self._windows[label]
                    window = None
            if window is None or window.remaining > 0 or force:
                if window is not None and window.remaining > 0:
                    window.remaining -= 1
                self._inflight[label] += 1
                return 0.0
            return max(0.01, window.reset - now + 0.01)

    def done(self, label: str, headers: Mapping[str, str] | None) -> None:
        """A request on `label` finished; learn the budget from its answer's headers, if any."""
        with self._lock:
            if self._inflight[label] > 0:
                self._inflight[label] -= 1
            if headers is None:
                return
            remaining = headers.get("x-sentry-rate-limit-remaining")
            reset = headers.get("x-sentry-rate-limit-reset")
            if remaining is None or reset is None:
                return
            try:
                left, until = int(remaining), float(reset)
                limit = int(headers.get("x-sentry-rate-limit-limit") or 0) or None
            except ValueError:
                return
            if until <= self._clock():
                return  # counted in a window that is over
            in_flight = self._inflight[label]
            window = self._windows.get(label)
            if window is None or (window.confirmed and until > window.reset):
                # First sight of this window: how many of ours it counted already is unknown, so
                # every request still in flight is taken as not yet counted.
                known_limit = limit or (window.limit if window else None)
                self._windows[label] = _Window(max(0, left - in_flight), until, known_limit)
                return
            if not window.confirmed:
                # The window assumed at the turn: our count since then stands; the server says when it ends.
                window.reset, window.confirmed = until, True
                window.limit = limit or window.limit
            if left < window.remaining:
                window.remaining = max(0, left - in_flight)


def parse_retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds to wait from `Retry-After` (delta or HTTP date), else `X-Sentry-Rate-Limit-Reset`."""
    now = time.time() if now is None else now
    value = headers.get("retry-after")
    if value:
        value = value.strip()
        try:
            return max(0.0, float(value))
        except ValueError:
            try:
                when = email.utils.parsedate_to_datetime(value)
            except (TypeError, ValueError):
                when = None
            if when is not None:
                return max(0.0, when.timestamp() - now)
    reset = headers.get("x-sentry-rate-limit-reset")
    if reset:
        try:
            return max(0.0, float(reset) - now)
        except ValueError:
            return None
    return None


@functools.cache
def default_tls() -> ssl.SSLContext:
    """The verifying TLS context every client shares: loading the CA bundle costs ~50 ms, which a
    one-shot command would otherwise pay for each of its two clients (and each reload)."""
    return httpx.create_ssl_context(verify=True)


def excerpt(text: str) -> str:
    """A short single-line piece of a response body for error messages."""
    flat = " ".join(text.split())
    return flat if len(flat) <= EXCERPT_CHARS else flat[: EXCERPT_CHARS - 1] + "…"


class ApiHttp:
    """One service's HTTP session: base URL, auth headers, timeouts, retries, error translation.

    The token lives only inside the `httpx.Client` default headers; it never appears in an error,
    a log line or `repr`.
    """

    def __init__(
        self,
        service: str,
        base_url: str,
        headers: Mapping[str, str],
        *,
        policy: RetryPolicy | None = None,
        transport: httpx.BaseTransport | None = None,
        timeout: float = 30.0,
        verify: bool = True,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        max_in_flight: int | None = None,
    ) -> None:
        self.service = service
        # `sync.concurrency` is per API: readers and writers of one cycle run at the same time, so
        # the cap is on requests on the wire, not on threads (a thread waiting for the rate-limit
        # window or a retry holds no slot).
        self._slots = threading.BoundedSemaphore(max_in_flight) if max_in_flight else None
        self.policy = policy or RetryPolicy()
        self.stats = RequestStats()
        self.pacer = Pacer(clock)
        self._sleep = sleep
        self._timeout = timeout
        self._client = httpx.Client(
            base_url=base_url.rstrip("/"),
            headers=dict(headers),
            timeout=timeout,
            verify=default_tls() if verify else False,
            transport=transport,
            follow_redirects=False,
        )

    def __repr__(self) -> str:
        return f"ApiHttp({self.service!r}, {str(self._client.base_url)!r})"

    @property
    def host(self) -> str:
        return self._client.base_url.host or str(self._client.base_url)

    def _why_no_connection(self, error: httpx.ConnectError) -> str:
        """The reason in words: a certificate nobody trusts, a refused port, a name that does not
        resolve (the exception's own text names the cause; it holds no header, so no token)."""
        cause: BaseException | None = error
        while cause is not None and not isinstance(cause, ssl.SSLCertVerificationError):
            cause = cause.__cause__ or cause.__context__
        if isinstance(cause, ssl.SSLCertVerificationError) or "CERTIFICATE_VERIFY_FAILED" in str(error):
            return f"certificate verify failed for {self.host}"
        text = str(error) or type(error).__name__
        if "Name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
            return f"cannot resolve {self.host} (DNS): {text}"
        if "Connection refused" in text:
            return f"connection refused by {self.host}: nothing listens on that port"
        return f"cannot connect to {self.host}: {text}"

    def close(self) -> None:
        self._client.close()

    @property
    def base_url(self) -> str:
        return str(self._client.base_url)

    def request(
        self,
        method: str,
        url: str,
        *,
        safe: bool,
        params: Any = None,
        json_body: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        """Send with retries; return a 2xx response or raise a `RemoteError` subclass.

        `url` is a path below the base URL, or an absolute URL on the same host (pagination links).
        """
        endpoint = f"{method} {httpx.URL(url).path or url}"
        label = endpoint_label(method, httpx.URL(url).path or url)

        def retry_wanted(state: tenacity.RetryCallState) -> bool:
            outcome = state.outcome
            if outcome is None or not outcome.failed:
                return False
            error = outcome.exception()
            if isinstance(error, (UnreachableError, RateLimitedError)):
                return True
            return safe and isinstance(error, TransientError)

        def wait(state: tenacity.RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome else None
            seconds = self.policy.wait_for(error, state.attempt_number) if error else 0.0
            if isinstance(error, RateLimitedError) and self.policy.waits:
                self.stats.record_wait(label, seconds)
            return seconds

        def before_sleep(state: tenacity.RetryCallState) -> None:
            self.stats.record_retry(label)
            error = state.outcome.exception() if state.outcome else None
            pause = state.next_action.sleep if state.next_action else 0.0
            log.debug("%s %s: %s; retry %d of %d in %.1f s", self.service, endpoint,
                      error.describe(body=False) if isinstance(error, RemoteError) else error,
                      state.attempt_number, max(1, self.policy.attempts) - 1, pause if self.policy.waits else 0.0,
                      extra={"event": "http.retry", "service": self.service})

        retrying = tenacity.Retrying(
            stop=tenacity.stop_after_attempt(max(1, self.policy.attempts))
            | tenacity.stop_after_delay(self.policy.deadline_seconds),
            wait=wait,
            retry=retry_wanted,
            before_sleep=before_sleep,
            sleep=self._sleep if self.policy.waits else (lambda _s: None),
            reraise=True,
        )
        lost = False

        def attempt() -> httpx.Response:
            nonlocal lost
            try:
                return self._send_once(method, url, endpoint, label, params, json_body, headers)
            except (UnreachableError, RateLimitedError):
                raise  # never reached the server, or refused before acting on it
            except TransientError:
                lost = True  # a write may have been applied: its answer is lost
                raise
            except RemoteError as exc:
                exc.after_lost_answer = lost
                raise

        return retrying(attempt)

    def _send_once(
        self,
        method: str,
        url: str,
        endpoint: str,
        label: str,
        params: Any,
        json_body: Any,
        headers: Mapping[str, str] | None,
    ) -> httpx.Response:
        common: dict[str, Any] = {"service": self.service, "endpoint": endpoint}
        for round_ in range(PACE_ROUNDS):
            # The last round sends whatever the budget says: pacing must never stall a request
            # (a server whose clock disagrees with ours still gets it, and its 429 is retried).
            wait = self.pacer.delay(label, force=round_ == PACE_ROUNDS - 1 or not self.policy.waits)
            if wait <= 0:
                break
            self.stats.record_wait(label, wait)
            self._sleep(wait)
        answer: httpx.Response | None = None
        sent = time.perf_counter()
        try:
            with self._slots or contextlib.nullcontext():
                sent = time.perf_counter()  # waiting for a slot is our queue, not the server's latency
                answer = self._client.request(
                    method, url, params=params, json=json_body, headers=dict(headers) if headers else None
                )
                self.stats.record_latency(time.perf_counter() - sent)
        except httpx.ConnectTimeout:
            self.stats.record(method, "connect-error", label)
            raise UnreachableError(f"no connection to {self.host} within {self._timeout:g} s", **common) from None
        except httpx.ConnectError as exc:
            self.stats.record(method, "connect-error", label)
            raise UnreachableError(self._why_no_connection(exc), **common) from None
        except httpx.TimeoutException:
            # Sent but never answered: the server's latency was at least the timeout, and a
            # histogram without these would look fastest exactly when the server is slowest.
            self.stats.record_latency(time.perf_counter() - sent)
            self.stats.record(method, "timeout", label)
            raise TimedOutError(f"no answer from {self.host} within {self._timeout:g} s", **common) from None
        except httpx.TransportError as exc:
            self.stats.record(method, "transport-error", label)
            raise TransientError(f"connection failed: {type(exc).__name__}", **common) from None
        finally:
            self.pacer.done(label, answer.headers if answer is not None else None)
        response = answer
        self.stats.record(method, response.status_code, label)
        status = response.status_code
        if 300 <= status < 400:
            where = response.headers.get("location") or "(no Location given)"
            raise RedirectedError(f"{self.host} answered {status}, a redirect to {where}; not followed (the token "
                                  "would go with it)", **common, status=status)
        if status < 400:
            return response
        body = excerpt(response.text)
        detail = {**common, "status": status, "excerpt": body}
        if status == 429:
            raise RateLimitedError(
                "rate limited", retry_after=parse_retry_after(response.headers), **detail
            )
        if status >= 500:
            raise TransientError(f"server error {status}", **detail)
        if status in (401, 403):
            raise AuthError(
                "credentials refused" if status == 401 else "permission denied (missing scope?)", **detail
            )
        if status == 404:
            raise NotFoundError("not found", **detail)
        if status in (409, 412):
            raise ConflictError("changed meanwhile (version conflict)", **detail)
        raise RejectedError(f"request refused ({status})", **detail)

    def json(self, response: httpx.Response) -> Any:
        """Parse a JSON body or raise `BadResponseError` with an excerpt."""
        try:
            return response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BadResponseError(
                "response is not JSON",
                service=self.service,
                endpoint=f"{response.request.method} {response.request.url.path}",
                status=response.status_code,
                excerpt=excerpt(response.text),
            ) from None

    def bad(self, response: httpx.Response, why: str) -> BadResponseError:
        """A `BadResponseError` for a response whose JSON does not have the expected shape."""
        return BadResponseError(
            why,
            service=self.service,
            endpoint=f"{response.request.method} {response.request.url.path}",
            status=response.status_code,
            excerpt=excerpt(response.text),
        )


def require(data: Any, keys: tuple[str, ...], http: ApiHttp, response: httpx.Response) -> dict[str, Any]:
    """Check that `data` is an object with `keys`; the shared shape check of both clients."""
    if not isinstance(data, dict):
        raise http.bad(response, f"expected a JSON object, got {type(data).__name__}")
    missing = [k for k in keys if k not in data]
    if missing:
        raise http.bad(response, f"missing field(s) {', '.join(missing)}")
    return data


def check_types(
    data: Mapping[str, Any], rules: Mapping[str, tuple[type, ...]], http: ApiHttp, response: httpx.Response
) -> None:
    """Fields that are present must have one of the allowed types: an assignee that is a string
    where an object (or null) belongs is a bad response, never "unassigned"."""
    for name, allowed in rules.items():
        if name in data and not isinstance(data[name], allowed):
            wanted = "/".join("null" if t is type(None) else t.__name__ for t in allowed)
            raise http.bad(response, f"field {name} is a {type(data[name]).__name__}, not {wanted}")


__all__ = ["ApiHttp", "RemoteError", "RequestStats", "RetryPolicy", "parse_retry_after", "require"]
