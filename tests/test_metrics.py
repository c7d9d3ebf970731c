"""The metrics fed from the clients' counters: time spent waiting for rate limits is exported per
service and endpoint, as deltas between cycles, and a new client (after a reload) starts afresh."""

from __future__ import annotations

import pytest

from bridge.clients.http import RequestStats
from bridge.metrics import Metrics

LABEL = "PUT /api/0/organizations/acme/issues/{id}/"


def waited(metrics: Metrics, service: str = "sentry") -> float | None:
    return metrics.registry.get_sample_value(
        "bridge_api_rate_limit_wait_seconds_total", {"service": service, "endpoint": LABEL})


def test_rate_limit_waits_are_exported_as_deltas() -> None:
    metrics = Metrics(process=False)
    stats = RequestStats()
    stats.record_wait(LABEL, 0.75)
    metrics.observe_requests("sentry", stats)
    assert waited(metrics) == pytest.approx(0.75)
    metrics.observe_requests("sentry", stats)  # nothing new since: nothing added
    assert waited(metrics) == pytest.approx(0.75)
    stats.record_wait(LABEL, 0.5)
    metrics.observe_requests("sentry", stats)
    assert waited(metrics) == pytest.approx(1.25)
    reloaded = RequestStats()  # new clients after a config reload count from zero
    reloaded.record_wait(LABEL, 0.25)
    metrics.observe_requests("sentry", reloaded)
    assert waited(metrics) == pytest.approx(1.5)
    assert waited(metrics, "tracker") is None
