"""One module per command.  Each has `register(subparsers)`, which adds its parser and sets
`handler` to a function `(Context) -> exit code`."""

from __future__ import annotations

from types import ModuleType

from bridge.commands import (
    config,
    conflicts,
    demo,
    doctor,
    explain,
    links,
    push,
    relink,
    run,
    sandbox,
    status,
    sync,
)

ALL: tuple[ModuleType, ...] = (sync, run, links, relink, status, conflicts, doctor, explain, demo, sandbox, push,
                               config)
