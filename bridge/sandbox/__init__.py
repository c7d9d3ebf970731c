"""Local emulators of the Sentry and Tracker APIs, used by `demo` and by the tests."""
