"""Builds the two API clients from settings: the one place where tokens leave the config."""

from __future__ import annotations

import httpx

from bridge.clients.http import RetryPolicy
from bridge.clients.sentry import SentryClient
from bridge.clients.tracker import TrackerClient
from bridge.config import Settings


def retry_policy_from(settings: Settings) -> RetryPolicy:
    return RetryPolicy(attempts=settings.sync.retry_attempts, deadline_seconds=settings.sync.retry_deadline_seconds)


def open_clients(
    settings: Settings,
    *,
    policy: RetryPolicy | None = None,
    sentry_transport: httpx.BaseTransport | None = None,
    tracker_transport: httpx.BaseTransport | None = None,
) -> tuple[SentryClient, TrackerClient]:
    policy = policy or retry_policy_from(settings)
    sentry = SentryClient.create(
        settings.sentry.url,
        settings.sentry.organization,
        settings.sentry_token(),
        policy=policy,
        transport=sentry_transport,
        timeout=settings.sentry.timeout_seconds,
        verify=settings.sentry.verify_tls,
        max_in_flight=settings.sync.concurrency,
    )
    return sentry, open_tracker(settings, policy=policy, transport=tracker_transport)


def open_tracker(settings: Settings, *, policy: RetryPolicy | None = None,
                 transport: httpx.BaseTransport | None = None) -> TrackerClient:
    """The Tracker client alone, for commands that need no Sentry token (`push setup`)."""
    return TrackerClient.create(
        settings.tracker.url,
        settings.tracker_token(),
        org_id=settings.tracker.org_id,
        cloud_org_id=settings.tracker.cloud_org_id,
        auth_scheme=settings.tracker.auth_scheme,
        api_version=settings.tracker.api_version,
        policy=policy or retry_policy_from(settings),
        transport=transport,
        timeout=settings.tracker.timeout_seconds,
        verify=settings.tracker.verify_tls,
        max_in_flight=settings.sync.concurrency,
    )
