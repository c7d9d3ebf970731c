"""Logging to stderr as text or JSON lines, friendly to journald (no timestamps of our own in
text mode when journald adds them is left to the operator: `--log-format json` carries one)."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

# Keys that engine log calls pass through `extra=` and that JSON lines carry as fields.
FIELDS = ("event", "link", "side", "field", "outcome", "cycle_kind", "links", "links_read", "writes_sentry",
          "writes_tracker", "failures", "conflicts", "duration_seconds", "ok", "dry_run")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in FIELDS:
            if hasattr(record, key):
                data[key] = getattr(record, key)
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return json.dumps(data, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).strftime("%H:%M:%S")
        message = record.getMessage()
        link = getattr(record, "link", None)
        if link and str(link) not in message:
            message = f"link {link}: {message}"  # which pair a line is about, always
        return f"{stamp} {record.levelname.lower():7} {message}"


def configure(verbosity: int = 0, fmt: str = "text") -> None:
    """verbosity: -1 quiet (warnings), 0 info, 1+ debug."""
    level = logging.WARNING if verbosity < 0 else logging.INFO if verbosity == 0 else logging.DEBUG
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger("bridge")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    # httpx logs every request at INFO with full URLs; keep it at debug level only.
    logging.getLogger("httpx").setLevel(logging.DEBUG if verbosity > 1 else logging.WARNING)
