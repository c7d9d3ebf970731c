"""sentry-tracker-bridge: keeps linked Sentry and Yandex Tracker issues in step."""

__version__ = "0.1.0"
