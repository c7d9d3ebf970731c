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


def duration_sample(metrics: Metrics, suffix: str, service: str = "tracker", **labels: str) -> float | None:
    return metrics.registry.get_sample_value(
        f"bridge_api_request_duration_seconds{suffix}", {"service": service, **labels})


def test_request_durations_are_a_histogram_fed_as_deltas() -> None:
    metrics = Metrics(process=False)
    stats = RequestStats()
    for seconds in (0.01, 0.1, 0.3, 45.0):  # 0.1 lands in le="0.1": a bucket's bound is inclusive
        stats.record_latency(seconds)
    metrics.observe_requests("tracker", stats)
    assert duration_sample(metrics, "_bucket", le="0.025") == 1
    assert duration_sample(metrics, "_bucket", le="0.1") == 2
    assert duration_sample(metrics, "_bucket", le="0.5") == 3
    assert duration_sample(metrics, "_bucket", le="30.0") == 3
    assert duration_sample(metrics, "_bucket", le="+Inf") == duration_sample(metrics, "_count") == 4
    assert duration_sample(metrics, "_sum") == pytest.approx(45.41)
    metrics.observe_requests("tracker", stats)  # nothing new since: nothing added
    assert duration_sample(metrics, "_count") == 4
    reloaded = RequestStats()  # new clients after a reload count from zero
    reloaded.record_latency(2.0)
    metrics.observe_requests("tracker", reloaded)
    assert duration_sample(metrics, "_count") == 5
    assert duration_sample(metrics, "_bucket", le="2.5") == 4
    assert duration_sample(metrics, "_sum") == pytest.approx(47.41)
    assert duration_sample(metrics, "_count", service="sentry") is None


def test_push_sources_and_the_interval_are_series_for_the_alert_rules() -> None:
    metrics = Metrics(process=False)
    metrics.set_push_configured(sentry=False, tracker=True)
    assert metrics.registry.get_sample_value("bridge_push_configured", {"source": "sentry"}) == 0
    assert metrics.registry.get_sample_value("bridge_push_configured", {"source": "tracker"}) == 1
    interval = [60.0]
    metrics.cycle_interval.set_function(lambda: interval[0])
    assert metrics.registry.get_sample_value("bridge_cycle_interval_seconds") == 60
    interval[0] = 300.0  # read at scrape time: a reload shows at once
    assert metrics.registry.get_sample_value("bridge_cycle_interval_seconds") == 300
