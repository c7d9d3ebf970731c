"""One small error hierarchy for the whole bridge.

Clients translate HTTP outcomes into these at the boundary, the config loader raises
`ConfigError`, and the CLI turns any of them into one operator message and one exit code
(see `bridge.cli`).  Nothing above the clients ever looks at an HTTP status code.
"""

from __future__ import annotations


class BridgeError(Exception):
    """Base of every error the bridge raises on purpose."""


class ConfigError(BridgeError):
    """The configuration is unusable.  Carries every problem found, not only the first."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(self.problems) or "invalid configuration")


class LockHeldError(BridgeError):
    """Another instance holds the state lock."""


class StateFileError(BridgeError):
    """The state file cannot be used as it is (missing folder, damaged, read-only, written by a
    newer version).  The message is one sentence naming the file and the way back; the file is
    never changed by the check that found it."""


class RemoteError(BridgeError):
    """A remote API did not do what was asked.

    `service` is "sentry" or "tracker"; `endpoint` is "METHOD /path" without query or host;
    `status` is the HTTP status (None for transport failures); `excerpt` is a short, token-free
    piece of the response body for the operator.
    """

    def __init__(
        self,
        message: str,
        *,
        service: str,
        endpoint: str = "",
        status: int | None = None,
        excerpt: str = "",
    ) -> None:
        self.service = service
        self.endpoint = endpoint
        self.status = status
        self.excerpt = excerpt
        # An earlier attempt of the same request may have been applied with its answer lost (a
        # timeout, a dropped connection or a 5xx, then retried): a 409 after it may be our own
        # write meeting itself, not a person's edit.
        self.after_lost_answer = False
        super().__init__(message)

    def describe(self, *, body: bool = True) -> str:
        """One line for logs, the failures table and the operator.  `body=False` leaves out the
        remote's answer, for places anybody may read (the health endpoint)."""
        parts = [f"{self.service}: {self}"]
        if self.endpoint:
            parts.append(f"({self.endpoint}" + (f" -> {self.status})" if self.status else ")"))
        if self.excerpt and body:
            parts.append(f"body: {self.excerpt!r}")
        return " ".join(parts)


class TransientError(RemoteError):
    """Worth trying again later: 5xx, connection failures, timeouts."""


class UnreachableError(TransientError):
    """The remote could not be reached at all (DNS, refused connection, TLS failure)."""


class TimedOutError(TransientError):
    """The request was sent and no answer came within the timeout (it may have been applied)."""


class RedirectedError(RemoteError):
    """The remote answered with a redirect.  Never followed: the token would go with it to
    wherever it points.  The operator corrects the URL instead."""


class RateLimitedError(TransientError):
    """429.  `retry_after` is the server's hint in seconds, when it gave one."""

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class ConflictError(RemoteError):
    """409/412: somebody changed the object meanwhile (or a `unique` key already exists)."""


class NotFoundError(RemoteError):
    """404: the object is gone or was never there."""


class AuthError(RemoteError):
    """401/403: the credentials were refused or lack a scope."""


class RejectedError(RemoteError):
    """The remote understood the request and refused it (400, 422, 423, other 4xx)."""


class BadResponseError(RemoteError):
    """The remote answered something we cannot use: not JSON, an HTML page, missing fields."""


class MalformedItemError(BadResponseError):
    """One item of a list answer has the wrong shape (the rest may be fine): worth reading the
    items one by one, so that only the broken one fails."""

    @classmethod
    def of(cls, error: BadResponseError) -> MalformedItemError:
        return cls(str(error), service=error.service, endpoint=error.endpoint, status=error.status,
                   excerpt=error.excerpt)
