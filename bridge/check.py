"""One verdict of `doctor`: a name, a level, a detail and advice.  Its own module so that the
checks (bridge/doctor.py) and the live probes (bridge/probes.py) speak the same type."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

Level = Literal["pass", "warn", "fail"]
LEVELS: tuple[Level, ...] = ("pass", "warn", "fail")


@dataclass(frozen=True)
class Check:
    """One verdict.  `notes` are extra lines (transition paths, the people concerned)."""

    name: str
    level: Level
    detail: str
    advice: str = ""
    notes: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "level": self.level, "detail": self.detail, "advice": self.advice,
                "notes": list(self.notes)}
