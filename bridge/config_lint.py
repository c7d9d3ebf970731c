"""Offline checks of configurations that load: what `config check` adds to the validation
`load_settings` does, with no network and no state file.

Pure functions over `Settings` (plus the file's own table, to tell a secret written in the file
from one the environment gave).  Each finding names the key to edit and says what would go
wrong at run time, so that a config repository's CI fails before a deployment does.  What is
checked, concretely (the README's "config check" says the same to operators):

* **Mapping tables** (`[mapping.status]`, `[mapping.priority]`; only for a field whose
  `sync.fields` direction is not `off`):
  - *unmapped*: a Sentry value with no `to_tracker` row (a `status.substatus` row alone does not
    cover its plain status) while the field flows to Tracker: such an issue is only reported;
  - *one-sided*, while the field flows both ways: a Tracker value some `to_tracker` row writes
    but no `to_sentry` row reads (a person moving a ticket there is reported, never carried
    back), or a Sentry value some `to_sentry` row writes but no `to_tracker` row reads;
  - *ambiguous*: the one-sided case where two or more values of one side land on one value of
    the other (`resolved` and `ignored` both to `closed`, no `to_sentry.closed`): which value a
    move back should give is written nowhere.
  A many-to-one table *with* its reverse row is a decision, not a mistake, and is not reported
  (`doctor`'s round-trip check shows where such a state comes back different).
* **Routes** (`[create.routes]`, project -> queue): the status mapping is one table for every
  queue, so a route is left uncovered only when nothing would ever take it: creation is off (no
  new issue is created, so the route sends nothing), or, with `sentry.projects` empty (every
  project), its key cannot be a Sentry project slug.  A route whose project is not polled is an
  error of the loader already.
* **Users mapped twice** (one e-mail twice, one login for two e-mails) are errors of the loader,
  the environment's rows merged in first; nothing is left to add here.
* **Secrets written inline** in the file (not from the environment): a warning naming the file
  key and the systemd credential to use instead; never the value.
* **Rows lower-cased by a variable name**: `BRIDGE_MAPPING__STATUS__TO_SENTRY__INPROGRESS` arrives
  lower-cased, and where a table keeps its keys' case (Tracker status and priority keys, routes)
  it adds a row `inprogress` of its own while the file's (or the default) `inProgress` stays.
  Whether Tracker has a key `inprogress` cannot be known offline, so only a row that differs from
  another row of the file, the table or the default table by case alone is reported (a warning).
* **Ports**: `metrics.listen` and an enabled `push.listen` on one port in one process.

Across files (`lint_together`, the files of one host): two listeners on one port are errors (the
second bridge cannot start its listener); one state file for two is a warning, since the
template units give every instance a state file of its own whatever the file says.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel

from bridge.config import (
    ENV_DELIMITER,
    ENV_PREFIX,
    SECRETS,
    SENTRY_STATES,
    ConfigLayers,
    PriorityMapping,
    SentryPriority,
    Settings,
    StatusMapping,
    env_path,
    format_key,
)
from bridge.core.mapping import base_state

Level = Literal["error", "warning"]

# Sentry project slugs are lower-case letters, digits, "-" and "_".
_SLUG = re.compile(r"^[a-z0-9_-]+$")
# A key path as the loader's problems start: `a.b."quoted.key"[0].c`.
_KEY_PATH = re.compile(r'^((?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*")(?:\.(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*")|\[\d+\])*)')
_WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "*"})  # noqa: S104 - names, never bound
_LOCAL_NAMES = {"localhost": "127.0.0.1"}


@dataclass(frozen=True)
class Finding:
    """One problem: `key` is the key path to edit (None for the file as a whole)."""

    level: Level
    key: str | None
    message: str

    def line(self) -> str:
        """`level: key: message`, the shape of one line of `config check` after the file name."""
        return f"{self.level}: {self.key}: {self.message}" if self.key else f"{self.level}: {self.message}"


def from_problem(problem: str, path: Path) -> Finding:
    """A line of `ConfigError` as a finding: the loader starts each line with its key path (or
    with the file's path when the file itself cannot be read)."""
    head = f"{path}: "
    if problem.startswith(head):
        return Finding("error", None, problem[len(head):])
    match = _KEY_PATH.match(problem)
    if match is None or match.group(1) == "config":
        rest = problem[len(match.group(1)):] if match else problem
        return Finding("error", None, rest.removeprefix(": "))
    return Finding("error", match.group(1), problem[match.end():].removeprefix(": ").strip())


def lint_settings(settings: Settings, layers: ConfigLayers) -> list[Finding]:
    """Every offline finding for one configuration that loaded; `layers` are the file's and the
    environment's tables it loaded from (`config_layers`)."""
    findings: list[Finding] = []
    for name, direction in settings.sync.fields.model_dump().items():
        table = _TableView.of(name, getattr(settings.mapping, name, None))
        if table is not None and direction != "off":
            findings += table.findings(direction)
    findings += _routes(settings)
    findings += _lower_cased_rows(settings, layers)
    findings += _inline_secrets(layers.file)
    findings += _own_ports(settings)
    return findings


def lint_together(configs: Sequence[tuple[str, Settings]]) -> list[tuple[str, Finding]]:
    """Findings between files taken as one host's bridges, each on the later file of a pair."""
    findings: list[tuple[str, Finding]] = []
    listeners: list[tuple[str, str, tuple[str, int]]] = []
    states: dict[Path, str] = {}
    for name, settings in configs:
        mine = _listeners(settings)
        for key, address in mine:
            clash = next((other for other in listeners if _overlap(other[2], address)), None)
            if clash is not None:
                findings.append((name, Finding(
                    "error", key, f"{_show(address)} is also {clash[1]} of {clash[0]}: two bridges on one host cannot "
                                  "listen on one port (the second cannot start its listener); give each its own port")))
        listeners += [(name, key, address) for key, address in mine]
        state = settings.state.path
        if state in states:
            findings.append((name, Finding(
                "warning", "state.path",
                f"the same state file as {states[state]} ({state}): two bridges started with these files by hand or "
                "by the single units would share one state file and one lock (the second exits 4); instances of "
                "sentry-tracker-bridge@.service each get their own (/var/lib/sentry-tracker-bridge/NAME/bridge.db)")))
        states.setdefault(state, name)
    return findings


# -- mapping tables ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _TableView:
    """A field's two tables as plain values: Sentry value -> Tracker value and back, the Sentry
    values the bridge can meet, and how a refined Sentry key falls back to its plain value."""

    field: str
    sentry_values: tuple[str, ...]
    forward: Mapping[str, str]
    backward: Mapping[str, str]
    base: Callable[[str], str]

    @classmethod
    def of(cls, name: str, table: BaseModel | None) -> _TableView | None:
        if isinstance(table, StatusMapping):
            forward = {state: target.status for state, target in table.to_tracker.items()}
            return cls(name, SENTRY_STATES, forward, dict(table.to_sentry), base_state)
        if isinstance(table, PriorityMapping):
            forward = {str(priority): key for priority, key in table.to_tracker.items()}
            return cls(name, get_args(SentryPriority), forward, dict(table.to_sentry), str)
        return None  # a field without value tables (people map through mapping.users)

    def lookup(self, value: str) -> str | None:
        """Where a Sentry value lands: its own row, else its plain value's (as the sync looks up)."""
        return self.forward.get(value) or self.forward.get(self.base(value))

    def key(self, direction: str, row: str) -> str:
        """The key path of a row, present or missing: where the operator adds or fixes it."""
        return format_key(("mapping", self.field, direction, row))

    def findings(self, direction: str) -> list[Finding]:
        """Unmapped, one-sided and ambiguous rows (module docstring), for the field's direction:
        only a field flowing both ways reads both tables, so only then can one be one-sided."""
        out: list[Finding] = []
        both = direction == "both"
        field = self.field
        if both:
            landing: dict[str, list[str]] = {}
            for sentry_key, tracker_value in self.forward.items():
                landing.setdefault(tracker_value, []).append(sentry_key)
            for tracker_value, origins in sorted(landing.items()):
                if tracker_value in self.backward:
                    continue
                if len({self.base(origin) for origin in origins}) > 1:
                    out.append(Finding("warning", self.key("to_sentry", tracker_value), (
                        f"missing, and ambiguous: {_and(origins)} map to {tracker_value!r} in to_tracker, so which "
                        f"Sentry {field} a ticket a person moves to {tracker_value!r} should take is written nowhere "
                        "(reported, never carried back); add the row")))
                else:
                    out.append(Finding("warning", self.key("to_sentry", tracker_value), (
                        f"missing: one-sided, to_tracker maps {_and(origins)} to {tracker_value!r} but nothing maps "
                        f"{tracker_value!r} back, so a ticket a person moves there is reported, never carried to "
                        "Sentry; add the row")))
        reported: set[str] = set()
        if both:
            writers: dict[str, list[str]] = {}
            for tracker_key, sentry_value in self.backward.items():
                writers.setdefault(sentry_value, []).append(tracker_key)
            for sentry_value, keys in sorted(writers.items()):
                if self.lookup(sentry_value) is not None:
                    continue
                reported.add(sentry_value)
                if len(keys) > 1:
                    out.append(Finding("warning", self.key("to_tracker", sentry_value), (
                        f"missing, and ambiguous: {_and(sorted(keys))} map to {sentry_value!r} in to_sentry, so "
                        f"which Tracker {field} a Sentry issue a person sets to {sentry_value!r} should take is "
                        "written nowhere (reported, never carried over); add the row")))
                else:
                    out.append(Finding("warning", self.key("to_tracker", sentry_value), (
                        f"missing: one-sided, to_sentry maps {keys[0]!r} to {sentry_value!r} but nothing maps "
                        f"{sentry_value!r} to Tracker, so a Sentry issue a person sets to it is reported, never "
                        "carried over; add the row")))
        if direction in ("both", "to_tracker"):
            for value in self.sentry_values:
                if value not in reported and self.lookup(value) is None:
                    out.append(Finding("warning", self.key("to_tracker", value), (
                        f"missing: a Sentry issue whose {field} is {value!r} has no Tracker {field} to go to "
                        "(reported as unmapped, never carried over)")))
        return out


def _and(items: Sequence[str]) -> str:
    """'a', 'a' and 'b', 'a', 'b' and 'c'."""
    quoted = [repr(item) for item in items]
    return quoted[0] if len(quoted) == 1 else ", ".join(quoted[:-1]) + " and " + quoted[-1]


# -- routes, secrets, ports --------------------------------------------------------------------


def _routes(settings: Settings) -> list[Finding]:
    """Routes no new issue would ever take (the loader refuses one to a project not polled)."""
    create = settings.create
    if not create.routes:
        return []
    if not create.enabled or create.max_per_cycle == 0:
        why = "create.enabled = false" if not create.enabled else "create.max_per_cycle = 0"
        return [Finding("warning", "create.routes", (
            f"{why}: no new issue is created, so no route is ever taken (relink and push setup still visit "
            "their queues, doctor skips them); remove the table or turn creating on"))]
    if settings.sentry.projects:
        return []  # the loader refuses a route to a project that is not polled
    return [Finding("warning", format_key(("create", "routes", project)), (
        "not a Sentry project slug (lower-case letters, digits, - and _), so no project's new issues take this route"))
        for project in create.routes if not _SLUG.match(project)]


def _lower_cased_rows(settings: Settings, layers: ConfigLayers) -> list[Finding]:
    """Rows a variable named one by one that are rows of their own only because variable names
    arrive lower-cased (module docstring).  A row the loader re-spelled (a Sentry state key, an
    e-mail) is the row it names, and a row given in a JSON table keeps its case: neither is one."""
    findings = []
    for key, rows, defaults in _tables(settings):
        env_rows = _at(layers.env, key)
        if not isinstance(env_rows, Mapping):
            continue
        file_rows = _at(layers.file, key)
        others = [*rows, *(file_rows if isinstance(file_rows, Mapping) else ()), *defaults]
        for row in map(str, env_rows):
            path = tuple(part.lower() for part in (*key, row))
            variable = next((name for name in layers.env_names
                             if env_path(name) == path), None)
            if row not in rows or variable is None:
                continue
            twin = next((str(other) for other in others if str(other) != row and str(other).lower() == row), None)
            if twin is None:
                continue
            whole = ENV_PREFIX + ENV_DELIMITER.join(key).upper()
            fate = ("which stays in force" if twin in rows
                    else "and the table from the environment replaces the default table whole")
            findings.append(Finding("warning", format_key((*key, row)), (
                f"a row of its own, made by ${variable}: variable names arrive lower-cased, so it does not change "
                f"{twin!r} ({fate}); to set {twin!r} from the environment give the table as JSON, whose keys keep "
                f"their case: {whole}='{{\"{twin}\": ...}}', and remove ${variable}")))
    return findings


def _tables(model: BaseModel, prefix: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], list[str], list[str]]]:
    """(key path, row keys as loaded, row keys of the default) of every table in `model`."""
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        if isinstance(value, BaseModel):
            yield from _tables(value, (*prefix, name))
        elif isinstance(value, dict):
            default = info.get_default(call_default_factory=True)
            yield (*prefix, name), [str(k) for k in value], [str(k) for k in default or {}]


def _at(tree: Mapping[str, Any], key: tuple[str, ...]) -> Any:
    """The value at `key` in a layer's table, or None."""
    node: Any = tree
    for part in key:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _inline_secrets(file_table: Mapping[str, Any]) -> list[Finding]:
    """Secrets in the file's own table: one from the environment is the unit's or the shell's
    business, not the repository's.  An empty value counts as unset, as for the loader."""
    findings = []
    for secret in SECRETS:
        section = file_table.get(secret.key[0])
        value = section.get(secret.key[1]) if isinstance(section, Mapping) else None
        if isinstance(value, str) and value.strip():
            findings.append(Finding("warning", format_key(secret.key), (
                "a secret written in the file: whoever reads the file or its git history has it; put it in "
                f"{format_key(secret.file_key)} (a file only root can read) or the systemd credential "
                f"{secret.credential} (LoadCredential=), and remove it here")))
    return findings


def _listeners(settings: Settings) -> list[tuple[str, tuple[str, int]]]:
    """What `run` binds: the metrics endpoint when set, the hook receiver when enabled."""
    found = []
    metrics = settings.metrics.address()
    if metrics is not None:
        found.append(("metrics.listen", metrics))
    if settings.push.enabled:
        found.append(("push.listen", settings.push.address()))
    return found


def _own_ports(settings: Settings) -> list[Finding]:
    """One process cannot bind one port twice: the second listener would fail at start."""
    listeners = _listeners(settings)
    if len(listeners) == 2 and _overlap(listeners[0][1], listeners[1][1]):
        return [Finding("error", "push.listen", (
            f"{_show(listeners[1][1])} is on the port of metrics.listen ({_show(listeners[0][1])}): the daemon binds "
            "both, and the second bind fails; give the receiver its own port"))]
    return []


def _overlap(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Whether two listeners would fight over a port: the same port, and the same host or a
    wildcard on either side."""
    if a[1] != b[1]:
        return False
    host_a, host_b = (_LOCAL_NAMES.get(h.lower(), h.lower()) for h in (a[0], b[0]))
    return host_a == host_b or host_a in _WILDCARD_HOSTS or host_b in _WILDCARD_HOSTS


def _show(address: tuple[str, int]) -> str:
    """`host:port` as written in a config, brackets for IPv6."""
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
