"""The effective configuration, value by value, with where each value came from and every secret
redacted: what `config show` prints.

Why it exists: a value can come from the file, from a `BRIDGE_...` variable that a unit or a
shell set, from a `token_file`, or from a systemd credential, and an operator looking at one
instance of several needs to see which one won without reading four places.  The values are the
ones `load_settings` produced (so a relative `state.path` is shown as the absolute path the
bridge uses); only the *origin* is worked out here, from the file's and the environment's
tables kept apart (`config_layers`).

Secrets never leave this module: every `SecretStr` becomes `***`, whatever its source (the
redaction is structural: only the secret keys' values are replaced), and `EffectiveConfig.scrub`
is the safety net for a long secret pasted into another key (`bridge.config.scrub_secrets`: only
secrets of 16 characters or more, so that ordinary text is never rewritten).  Nothing here
touches the network or the state file.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr

from bridge.config import (
    CREDENTIALS_ENV,
    SECRETS,
    ConfigLayers,
    SecretSetting,
    Settings,
    config_layers,
    env_path,
    format_key,
    load_settings,
    scrub_secrets,
)
from bridge.errors import ConfigError

REDACTED = "***"
FILE = "file"
DEFAULT = "default"
NOT_SET = "not set"

Key = tuple[str, ...]
_MISSING = object()


@dataclass(frozen=True)
class EffectiveConfig:
    """What a bridge started with this file and this environment would use.

    `values` is nested like the file (JSON-ready: paths as strings, secrets as `***`, unset as
    None); `sources` gives, for every leaf key path, where its value came from: `file`,
    `env NAME`, `token_file PATH`, `credential NAME`, `default` or `not set`."""

    config_path: Path
    values: dict[str, Any]
    sources: dict[Key, str]
    secrets: frozenset[str] = field(repr=False, default=frozenset())

    def source_table(self) -> dict[str, str]:
        """`sources` keyed by dotted key paths, as the problems name keys."""
        return {format_key(key): origin for key, origin in self.sources.items()}

    def scrub(self, text: str) -> str:
        """Belt and braces: a (long) secret pasted into a key that is not a secret one is redacted
        too; the secret keys themselves are `***` already (`scrub_secrets` says why short secrets
        are left alone here)."""
        return scrub_secrets(text, self.secrets)


def effective_config(path: Path, env: Mapping[str, str]) -> EffectiveConfig:
    """Load `path` under `env` as the bridge would (raising `ConfigError` with every problem) and
    say where each value came from.  Tokens are not required: a missing one shows as not set."""
    settings = load_settings(path, env, require_tokens=False)
    layers = config_layers(path, env)
    values: dict[str, Any] = {}
    sources: dict[Key, str] = {}
    _walk(settings, (), layers, values, sources)
    secrets: set[str] = set()
    for secret in SECRETS:
        shown, origin, raw = _secret(settings, secret, layers, env)
        _put(values, secret.key, shown)
        sources[secret.key] = origin
        if raw:
            secrets.add(raw)
    config_path = settings.config_path or Path(path).absolute()
    return EffectiveConfig(config_path, values, sources, frozenset(secrets))


def origin(key: Key, layers: ConfigLayers, rows: Collection[str] = ()) -> str:
    """Where the value at `key` came from: the environment wins over the file, the file over the
    models' defaults.  For a row of a table, `rows` are the keys of the table as loaded: a layer's
    row is credited with `key` when it is spelled the same, or, when the loader re-spelled it
    (e-mails are stored lower-cased, Sentry state keys in their canonical spelling), when it
    differs only by case and is not a row of its own (see `_find`)."""
    if _find(layers.env, key, rows) is not _MISSING:
        variable = _variable(key, layers.env_names)
        if variable is not None:
            return f"env {variable}"
    if _find(layers.file, key, rows) is not _MISSING:
        return FILE
    return DEFAULT


# -- walking the settings ----------------------------------------------------------------------


def _walk(model: BaseModel, prefix: Key, layers: ConfigLayers, node: dict[str, Any], sources: dict[Key, str]) -> None:
    """Sections become nested dicts; a table of rows (`routes`, `users`, `to_tracker`, ...) is a
    dict whose rows are leaves, so that each row has an origin of its own."""
    for name in type(model).model_fields:
        if not prefix and name == "config_path":
            continue  # the loader's, never the file's
        value = getattr(model, name)
        key = (*prefix, name)
        if isinstance(value, BaseModel):
            _walk(value, key, layers, node.setdefault(name, {}), sources)
        elif isinstance(value, dict) and value:
            table = node.setdefault(name, {})
            rows = [str(k) for k in value]
            for row, item in value.items():
                table[str(row)] = _plain(item)
                sources[(*key, str(row))] = origin((*key, str(row)), layers, rows)
        else:
            node[name] = _plain(value)
            sources[key] = origin(key, layers)


def _plain(value: Any) -> Any:
    """A JSON-ready copy; a secret is `***`, a row model drops its unset keys."""
    if isinstance(value, SecretStr):
        return REDACTED
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name)) for name in type(value).model_fields
                if getattr(value, name) is not None}
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return value


def _put(values: dict[str, Any], key: Key, value: Any) -> None:
    """Set a secret's shown value where `_walk` left its redacted or unset one."""
    node = values
    for part in key[:-1]:
        node = node.setdefault(part, {})
    node[key[-1]] = value


def _find(tree: Mapping[str, Any], key: Key, rows: Collection[str] = ()) -> Any:
    """The value at `key` in a layer, or `_MISSING`, by the loader's case rules.

    Section and key names match exactly (the file's must, and the environment's arrive
    lower-cased, as the names are).  The last part, a row of a table whose keys `rows` are as
    loaded, matches exactly, or in another case only when the layer's spelling is not itself a
    row: then the loader re-spelled it into `key` (`resolvedinnextrelease` from a variable name
    is the state `resolvedInNextRelease`, `Alice@Example.com` the e-mail `alice@example.com`).
    A row it kept as spelled is a row of its own: `BRIDGE_..._TO_SENTRY__INPROGRESS` adds a row
    `inprogress` and leaves the file's `inProgress` alone, so it is not credited with that one."""
    node: Any = tree
    for index, part in enumerate(key):
        if not isinstance(node, Mapping):
            return _MISSING
        if part in node:
            node = node[part]
            continue
        if index != len(key) - 1 or not rows:
            return _MISSING
        folded = [k for k in node if str(k).lower() == part.lower() and str(k) not in rows]
        if not folded:
            return _MISSING
        node = node[folded[-1]]
    return node


def _variable(key: Key, names: tuple[str, ...]) -> str | None:
    """The variable that supplied `key`: the one whose path is the longest prefix of it
    (`BRIDGE_MAPPING__USERS` supplies every row of the table it gives)."""
    lowered = tuple(part.lower() for part in key)
    best: tuple[int, str] | None = None
    for name in names:
        path = env_path(name)
        if lowered[: len(path)] == path and (best is None or len(path) > best[0]):
            best = (len(path), name)
    return None if best is None else best[1]


# -- secrets -----------------------------------------------------------------------------------


def _secret(
    settings: Settings, secret: SecretSetting, layers: ConfigLayers, env: Mapping[str, str]
) -> tuple[str | None, str, str | None]:
    """(what to show, where it came from, the raw secret for scrubbing).  The order is the
    loader's: the value itself, else the file named by `file_key`, else the credential."""
    merged = _find(layers.env, secret.key)
    if merged is _MISSING:
        merged = _find(layers.file, secret.key)
    given = isinstance(merged, str) and bool(merged.strip())
    raw, problem = _resolved(settings, secret)
    section = getattr(settings, secret.file_key[0])
    file_path = getattr(section, secret.file_key[1])
    if given:
        where = origin(secret.key, layers)
    elif file_path is not None:
        base = settings.config_path.parent if settings.config_path is not None else Path.cwd()
        absolute = file_path if Path(file_path).expanduser().is_absolute() else base / file_path
        where = f"{secret.file_key[1]} {absolute}"
    elif raw is not None:
        where = f"credential {secret.credential}"
    else:
        credentials = env.get(CREDENTIALS_ENV)
        where = NOT_SET if not credentials else f"{NOT_SET} (no credential {secret.credential} in ${CREDENTIALS_ENV})"
    if raw is None and problem:
        where += " (cannot be read)"
    return (REDACTED if raw is not None else None), where, raw


def _resolved(settings: Settings, secret: SecretSetting) -> tuple[str | None, bool]:
    """The secret as the bridge would use it, and whether a source was given but not readable."""
    section_name, name = secret.key
    if section_name in ("sentry", "tracker"):
        token = getattr(settings, section_name).token
        token_file = getattr(settings, section_name).token_file
        # load_settings resolved the token already (value, file or credential); None = none usable.
        return (token.get_secret_value() if token is not None else None), token_file is not None and token is None
    try:
        return settings.push_secret("sentry" if name.startswith("sentry") else "tracker"), False
    except ConfigError:
        return None, True
