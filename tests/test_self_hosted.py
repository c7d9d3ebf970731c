"""A self-hosted Sentry sends no `X-Sentry-Rate-Limit-*` headers (its rate-limit middleware returns
early: `reference/sentry-api.md` §6), so the bridge has no advertised budget to pace by.  The whole
CLI, with the retry policy a config file gives (no test shortcuts: real sleeps), must still sync,
and a 429 that something in front of Sentry sends, bare or with `Retry-After`, is waited out by the
client's defaults.  The defaults themselves, step by step, are in test_sentry_client.py
(`test_self_hosted_without_rate_limit_headers_uses_the_default_pacing`)."""

from __future__ import annotations

import contextlib
import io
import json
import re
import time
from typing import TYPE_CHECKING

from bridge.cli import main
from bridge.sandbox.http import EmuRequest, EmuResponse

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv

RETRY = re.compile(r"sentry (GET|PUT) (\S+): .*; retry (\d+) of (\d+) in ([\d.]+) s")


def test_full_sync_against_a_self_hosted_sentry_with_default_pacing(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.sentry.rate_limit_headers = False  # self-hosted
    # The retry policy of a config that says nothing about it: 5 attempts within 60 s.
    env.config(sync={"retry_attempts": None, "retry_deadline_seconds": None}, create={"enabled": True})
    pairs = [env.pair() for _ in range(3)]
    env.link(*pairs)
    env.sync_json()
    (s1, t1), (s2, t2), (s3, t3) = pairs
    env.tracker.set_status(t1, "closed", resolution="fixed", by="bob")
    env.sentry.set_status(s2, "resolved")
    env.sentry.assign(s3, "alice@example.com")
    env.sentry.add_issue("backend", "A new error to create a ticket for")

    answers: list[EmuResponse] = []
    serve = env.sentry.serve

    def recorded(req: EmuRequest) -> EmuResponse:
        response = serve(req)
        answers.append(response)
        return response

    env.sentry.serve = recorded  # type: ignore[method-assign]
    # Something in front of Sentry limits: a bare 429 on the batch refresh, one with Retry-After
    # on the write.
    faults = [
        env.sentry.inject("status", status=429, method="GET", path=r"/organizations/acme/issues/$", query="group="),
        env.sentry.inject("status", status=429, method="PUT", path=rf"/issues/{s1}/$", headers={"Retry-After": "1"}),
    ]

    out, err = io.StringIO(), io.StringIO()
    started = time.monotonic()
    with contextlib.redirect_stderr(err):
        code = main(["--config", str(env.path), "-v", "sync", "--json", "--full"], env={}, out=out)
    elapsed = time.monotonic() - started

    assert code == 0, err.getvalue()
    report = json.loads(out.getvalue())
    assert report["ok"] and report["full"] and report["failures"] == 0  # --full: every link refreshed
    assert report["created"] == 1 and env.status_json()["links"] == 4  # the new issue got its ticket
    assert [f.times for f in faults] == [0, 0]
    assert env.s_state(s1) == ("resolved", None)
    assert env.t_state(t2) == ("closed", "fixed")
    assert env.t_assignee(t3) == "alice"
    # Not one answer advertised a budget, the two 429s included.
    assert sorted(r.status for r in answers if r.status == 429) == [429, 429]
    assert [h for r in answers for h in r.headers if h.lower().startswith("x-sentry-rate-limit")] == []
    # The waits were the defaults': the bare 429 within the first backoff step (0.5 s), the other
    # as long as Retry-After said (plus at most 0.25 s of jitter), really slept.
    retries = {method: float(pause) for method, _path, attempt, _of, pause in RETRY.findall(err.getvalue())
               if attempt == "1"}
    assert set(retries) == {"GET", "PUT"}, err.getvalue()
    assert 0 <= retries["GET"] <= 0.5
    assert 1.0 <= retries["PUT"] <= 1.3
    assert elapsed >= 1.0
    assert [of for _m, _p, _a, of, _s in RETRY.findall(err.getvalue())] == ["4", "4"]  # of 5 attempts
