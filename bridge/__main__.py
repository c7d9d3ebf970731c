"""`python -m bridge` is the same program as the `sentry-tracker-bridge` console script."""

from bridge.cli import main

raise SystemExit(main())
