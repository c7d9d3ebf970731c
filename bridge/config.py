"""Configuration: one TOML file, overridden key by key from the environment (design §7).

Why it looks like this:

* Every model is frozen and forbids unknown keys (the bugwarrior lesson): a typo such as
  `intervall_seconds` is an error at start-up, not a silently ignored setting.
* `load_settings` collects *every* problem (schema, semantic checks, secrets) and raises one
  `ConfigError`, each problem one line that starts with its key path, so an operator fixes a
  file in one round instead of one error per restart.
* The environment wins over the file.  `BRIDGE_<SECTION>__<KEY>` (deeper with more `__`,
  case-insensitive; lists and tables as JSON) is read by a pydantic-settings `EnvSettingsSource`
  fed from an explicit mapping, so tests never touch `os.environ`.
* Secrets come from `token`, else `token_file`, else systemd credentials, and never appear in a
  message, `repr` or `str` (SecretStr, `hide_input_in_errors`, and a final scrub of the problems).
* Constructing `Settings(...)` directly (tests, the demo) uses only the given values; only
  `load_settings` reads a file and an environment.
"""

from __future__ import annotations

import json
import os
import re
import string
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

from bridge.core.values import SENTRY_WRITABLE_STATES, SentryWritableState
from bridge.errors import ConfigError

# -- vocabulary --------------------------------------------------------------------------------

#: The states Sentry's issue PUT accepts (the one list: `bridge.core.values`).
SENTRY_STATES: tuple[str, ...] = SENTRY_WRITABLE_STATES

#: The substatuses Sentry reports, by the status they occur with (a resolve clears substatus).
SENTRY_SUBSTATUSES: Mapping[str, tuple[str, ...]] = {
    "unresolved": ("ongoing", "escalating", "regressed", "new"),
    "ignored": ("archived_until_escalating", "archived_until_condition_met", "archived_forever"),
}

#: Event levels of a Sentry issue (`level` in the issue JSON).
SENTRY_LEVELS: tuple[str, ...] = ("sample", "debug", "info", "warning", "error", "fatal", "unknown")

#: Placeholders `create.description_template` may use; whoever renders it must supply them all.
DESCRIPTION_FIELDS: tuple[str, ...] = (
    "title",
    "short_id",
    "sentry_id",
    "project",
    "permalink",
    "culprit",
    "level",
    "first_seen",
    "last_seen",
    "count",
    "user_count",
)

ENV_PREFIX = "BRIDGE_"
ENV_DELIMITER = "__"
CONFIG_ENV = "BRIDGE_CONFIG"
DEFAULT_CONFIG_NAME = "bridge.toml"
CREDENTIALS_ENV = "CREDENTIALS_DIRECTORY"

# Lower-cased spelling -> canonical spelling of every state key `to_tracker` accepts.  Matching is
# case-insensitive because env var names are (BRIDGE_..._RESOLVEDINNEXTRELEASE arrives lower-cased).
_STATE_KEYS: dict[str, str] = {
    key.lower(): key
    for key in (
        *SENTRY_STATES,
        *(f"{status}.{sub}" for status, subs in SENTRY_SUBSTATUSES.items() for sub in subs),
    )
}
_STATE_HINT = "use {} or a refinement {}".format(
    ", ".join(SENTRY_STATES),
    " or ".join(f"{status}.<{'|'.join(subs)}>" for status, subs in SENTRY_SUBSTATUSES.items()),
)
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+$")
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

_MODEL_CONFIG = ConfigDict(frozen=True, extra="forbid", hide_input_in_errors=True)


# -- helpers for validators --------------------------------------------------------------------

Loc = tuple[str | int, ...]


def _problem(message: str) -> PydanticCustomError:
    # The message travels as context so braces in it (a template placeholder) are not formatted.
    return PydanticCustomError("bridge_config", "{problem}", {"problem": message})


def _raise_all(title: str, problems: list[tuple[Loc, str]]) -> None:
    """Raise one ValidationError carrying several located problems.

    pydantic merges a ValidationError raised inside a validator into the outer one (locations
    prefixed), which is how a single validator reports one line per bad key.
    """
    if problems:
        raise ValidationError.from_exception_data(
            title,
            [InitErrorDetails(type=_problem(msg), loc=loc, input=None) for loc, msg in problems],
            hide_input=True,
        )


def _canonical_state(key: str) -> str:
    canonical = _STATE_KEYS.get(key.lower())
    if canonical is None:
        raise _problem(f"unknown Sentry state ({_STATE_HINT})")
    return canonical


def _canonical_level(key: str) -> str:
    if key.lower() not in SENTRY_LEVELS:
        raise _problem(f"unknown Sentry level (use {', '.join(SENTRY_LEVELS)})")
    return key.lower()


def _normalise_url(value: str) -> str:
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise _problem("must be an http:// or https:// URL")
    url = value.rstrip("/")
    # The API's own prefix is the bridge's to add: "https://sentry.io/api/0" means "https://sentry.io".
    return url[: -len("/api/0")] if url.endswith("/api/0") else url


# JSON Schema patterns for what `_normalise_url` and `_split_host_port` accept, so that an editor
# flags what the loader refuses.  Never narrower than the validators (the schema must accept
# every file the bridge accepts), only as close as a regular expression can say it: a URL is
# http(s):// and a host (urlsplit drops leading blanks and ignores the scheme's case); a listener
# is host:port with a port 1-65535 (leading zeros allowed, as int() allows them), a host with a
# colon only in brackets.
HTTP_URL_PATTERN = r"^[\x00-\x20]*[Hh][Tt][Tt][Pp][Ss]?://[^/?#]"
HOST_PORT_PATTERN = (
    r"^(?:[^:]+|\[[\s\S]*):0*(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])$"
)

SentryStateKey = Annotated[str, AfterValidator(_canonical_state)]
SentryLevelKey = Annotated[str, AfterValidator(_canonical_level)]
FieldDirection = Literal["both", "to_tracker", "to_sentry", "off"]
NonEmpty = Annotated[str, Field(min_length=1)]
HttpUrl = Annotated[str, AfterValidator(_normalise_url), Field(json_schema_extra={"pattern": HTTP_URL_PATTERN})]
HostPort = Annotated[str, Field(json_schema_extra={"pattern": HOST_PORT_PATTERN})]


# -- models ------------------------------------------------------------------------------------


class TrackerTarget(BaseModel):
    """Where a Sentry state lands in Tracker: a status key and, for closing ones, a resolution.

    A plain string in the file (`unresolved = "open"`) is shorthand for `{status = "open"}`.
    """

    model_config = _MODEL_CONFIG

    status: NonEmpty
    resolution: NonEmpty | None = None

    @model_validator(mode="before")
    @classmethod
    def _from_string(cls, data: Any) -> Any:
        return {"status": data} if isinstance(data, str) else data


def _default_to_tracker() -> dict[str, TrackerTarget]:
    return {
        "unresolved": TrackerTarget(status="open"),
        "unresolved.regressed": TrackerTarget(status="open"),
        "resolved": TrackerTarget(status="closed", resolution="fixed"),
        "resolvedInNextRelease": TrackerTarget(status="resolved", resolution="fixed"),
        "ignored": TrackerTarget(status="closed", resolution="wontFix"),
    }


def _default_to_sentry() -> dict[str, SentryWritableState]:
    return {
        "open": "unresolved",
        "inProgress": "unresolved",
        "needInfo": "unresolved",
        "resolved": "resolvedInNextRelease",
        "closed": "resolved",
    }


class StatusMapping(BaseModel):
    """One table per direction.  Keys of `to_tracker` are Sentry states, optionally refined as
    `status.substatus` (looked up before the plain status); keys of `to_sentry` are Tracker
    status keys.  A many-to-one table is fine: the sync keeps both raw values as its baseline."""

    model_config = _MODEL_CONFIG

    to_tracker: dict[SentryStateKey, TrackerTarget] = Field(default_factory=_default_to_tracker)
    to_sentry: dict[NonEmpty, SentryWritableState] = Field(default_factory=_default_to_sentry)


SentryPriority = Literal["low", "medium", "high"]


def _default_priority_to_tracker() -> dict[SentryPriority, str]:
    return {"high": "critical", "medium": "normal", "low": "minor"}


def _default_priority_to_sentry() -> dict[str, SentryPriority]:
    return {"blocker": "high", "critical": "high", "normal": "medium", "minor": "low", "trivial": "low"}


class PriorityMapping(BaseModel):
    """Sentry priority (`low`, `medium`, `high`) -> Tracker priority key, and back.  Many-to-one
    is fine (`blocker` and `critical` both -> `high`), as for statuses."""

    model_config = _MODEL_CONFIG

    to_tracker: dict[SentryPriority, NonEmpty] = Field(default_factory=_default_priority_to_tracker)
    to_sentry: dict[NonEmpty, SentryPriority] = Field(default_factory=_default_priority_to_sentry)


class MappingSettings(BaseModel):
    """How values translate between the two sides.

    `users` maps a Sentry e-mail to a Tracker login in both directions, so it must be one-to-one;
    everyone else is matched by e-mail.  Keys are stored lower-cased (e-mails compare
    case-insensitively).
    """

    model_config = _MODEL_CONFIG

    status: StatusMapping = Field(default_factory=StatusMapping)
    priority: PriorityMapping = Field(default_factory=PriorityMapping)
    users: dict[str, NonEmpty] = Field(default_factory=dict)

    @field_validator("users", mode="before")
    @classmethod
    def _check_users(cls, value: Any) -> Any:
        if not isinstance(value, Mapping):
            return value  # the schema reports the wrong type
        problems: list[tuple[Loc, str]] = []
        seen_email: dict[str, str] = {}
        seen_login: dict[str, str] = {}
        for email, login in value.items():
            key = str(email)
            if not _EMAIL.match(key):
                problems.append(((key,), "not an e-mail address (keys are Sentry e-mails)"))
            folded = key.lower()
            if folded in seen_email:
                problems.append(((key,), f"duplicate mapping: the same e-mail as {seen_email[folded]!r}"))
            seen_email.setdefault(folded, key)
            if not isinstance(login, str) or not login.strip():
                problems.append(((key,), "must be a Tracker login (a non-empty string)"))
                continue
            if login in seen_login and seen_login[login].lower() != folded:
                problems.append(
                    ((key,), f"duplicate mapping: {seen_login[login]!r} already maps to login {login!r}")
                )
            seen_login.setdefault(login, key)
        _raise_all("mapping.users", problems)
        return {str(email).lower(): login for email, login in value.items()}


class SentrySettings(BaseModel):
    """Where Sentry is and how to authenticate (an internal-integration token with
    event:write, member:read and org:read)."""

    model_config = _MODEL_CONFIG

    url: HttpUrl = "https://sentry.io"
    organization: NonEmpty
    projects: list[NonEmpty] = Field(default_factory=list)
    token: SecretStr | None = None
    token_file: Path | None = None
    app_installation: NonEmpty | None = None
    verify_tls: bool = True
    timeout_seconds: float = Field(default=30.0, gt=0)


class TrackerSettings(BaseModel):
    """Where Tracker is, which organisation (exactly one org header is sent) and which queue."""

    # org ids are numbers in Yandex 360; accept `org_id = 1234567` as well as a string.
    model_config = ConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True, coerce_numbers_to_str=True
    )

    url: HttpUrl = "https://api.tracker.yandex.net"
    # Where people open issues: the Tracker key is shown on Sentry as <web_url>/<KEY>.
    web_url: HttpUrl = "https://tracker.yandex.ru"
    org_id: NonEmpty | None = None
    cloud_org_id: NonEmpty | None = None
    token: SecretStr | None = None
    token_file: Path | None = None
    auth_scheme: Literal["OAuth", "Bearer"] = "OAuth"
    queue: NonEmpty
    api_version: Literal["v2", "v3"] = "v3"
    verify_tls: bool = True
    timeout_seconds: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _check_org(self) -> TrackerSettings:
        problems: list[tuple[Loc, str]] = []
        if self.org_id and self.cloud_org_id:
            problems.append(
                (
                    ("cloud_org_id",),
                    "set exactly one of org_id (Yandex 360, sent as X-Org-ID) or "
                    "cloud_org_id (Yandex Cloud, sent as X-Cloud-Org-ID), not both",
                )
            )
        elif not self.org_id and not self.cloud_org_id:
            problems.append(
                (
                    ("org_id",),
                    "missing; set exactly one of org_id (Yandex 360, sent as X-Org-ID) or "
                    "cloud_org_id (Yandex Cloud, sent as X-Cloud-Org-ID)",
                )
            )
        if self.auth_scheme == "Bearer" and not self.cloud_org_id:
            problems.append(
                (
                    ("auth_scheme",),
                    "Bearer (an IAM token) works only with a Yandex Cloud organisation; set cloud_org_id",
                )
            )
        _raise_all("tracker", problems)
        return self


class StateSettings(BaseModel):
    """The SQLite state file; relative paths are relative to the config file's folder."""

    model_config = _MODEL_CONFIG

    path: Path = Path("bridge.db")
    keep_days: int = Field(default=30, ge=1)


class FieldsSettings(BaseModel):
    """Which way each field flows."""

    model_config = _MODEL_CONFIG

    status: FieldDirection = "both"
    assignee: FieldDirection = "both"
    # The schema says what the validator below does (a Literal of its own would lose its reason).
    followers: Annotated[FieldDirection, Field(json_schema_extra={"enum": ["to_tracker", "off"]})] = "to_tracker"
    priority: FieldDirection = "off"

    @field_validator("followers")
    @classmethod
    def _followers_one_way(cls, value: FieldDirection) -> FieldDirection:
        # Sentry bookmarks are per user and the API only bookmarks for the caller.
        if value not in ("to_tracker", "off"):
            raise _problem(
                "must be to_tracker or off: Sentry bookmarks are per user and cannot be written for others"
            )
        return value


class SyncSettings(BaseModel):
    """How often and how carefully to sync."""

    model_config = _MODEL_CONFIG

    interval_seconds: int = Field(default=60, ge=1)
    jitter_seconds: float = Field(default=0.0, ge=0)
    conflict: Literal["sentry", "tracker", "manual"] = "sentry"
    link_source: Literal["sentry", "tracker"] = "sentry"
    fields: FieldsSettings = Field(default_factory=FieldsSettings)
    max_changes_per_cycle: int | None = Field(default=None, ge=1)
    full_resync_every: int = Field(default=10, ge=1)
    overlap_seconds: int = Field(default=120, ge=0)
    concurrency: int = Field(default=4, ge=1, le=32)
    retry_attempts: int = Field(default=5, ge=1)
    retry_deadline_seconds: float = Field(default=60.0, gt=0)
    failure_backoff_max_seconds: int = Field(default=3600, ge=1)
    flap_limit: int = Field(default=6, ge=2)
    flap_window_cycles: int = Field(default=10, ge=2)

    def mass_change_limit(self, link_count: int) -> int:
        """The mass-change guard: the configured cap, else 20% of the links but at least 50."""
        if self.max_changes_per_cycle is not None:
            return self.max_changes_per_cycle
        return max(50, link_count // 5)


class LevelRoute(BaseModel):
    """Tracker issue type and priority keys for new issues of one Sentry level."""

    model_config = _MODEL_CONFIG

    type: NonEmpty | None = None
    priority: NonEmpty | None = None


def _default_levels() -> dict[str, LevelRoute]:
    return {
        "fatal": LevelRoute(type="bug", priority="critical"),
        "error": LevelRoute(type="bug", priority="normal"),
        "warning": LevelRoute(type="bug", priority="minor"),
        "info": LevelRoute(type="task", priority="trivial"),
    }


DEFAULT_DESCRIPTION_TEMPLATE = (
    "Sentry issue: {permalink}\n"
    "\n"
    "Culprit: {culprit}\n"
    "Level: {level}\n"
    "First seen: {first_seen}\n"
    "Last seen: {last_seen}\n"
    "Events: {count}, users affected: {user_count}\n"
)


class CreateSettings(BaseModel):
    """Creating a Tracker issue for each new Sentry issue that matches `query`."""

    model_config = _MODEL_CONFIG

    enabled: bool = True
    query: str = "is:unresolved"
    max_per_cycle: int = Field(default=50, ge=0)
    routes: dict[NonEmpty, NonEmpty] = Field(default_factory=dict)
    levels: dict[SentryLevelKey, LevelRoute] = Field(default_factory=_default_levels)
    summary_max_chars: int = Field(default=255, ge=1)
    description_template: str = DEFAULT_DESCRIPTION_TEMPLATE
    tags: list[NonEmpty] = Field(default_factory=lambda: ["sentry"])
    reference_field: NonEmpty | None = None
    # A tag naming the Sentry issue, e.g. "sentry-{sentry_id}": set on new issues, and a Tracker
    # issue that already carries it is linked instead of a new one being created.
    reference_tag: NonEmpty | None = None

    @field_validator("reference_tag")
    @classmethod
    def _check_reference_tag(cls, value: str | None) -> str | None:
        if value is not None and (value.count("{sentry_id}") != 1 or value.replace("{sentry_id}", "").count("{")):
            raise _problem('must contain "{sentry_id}" once and no other placeholder, e.g. "sentry-{sentry_id}"')
        return value

    @field_validator("description_template")
    @classmethod
    def _check_template(cls, value: str) -> str:
        # Caught here, a typo in a placeholder is a start-up error, not a failed create at 3 a.m.
        try:
            parsed = list(string.Formatter().parse(value))
        except ValueError as exc:
            raise _problem(f"not a valid template: {exc}") from None
        unknown = sorted({name for _, name, _, _ in parsed if name is not None} - set(DESCRIPTION_FIELDS))
        if unknown:
            raise _problem(
                "unknown placeholder(s) "
                + ", ".join("{" + name + "}" for name in unknown)
                + "; available: "
                + ", ".join("{" + name + "}" for name in DESCRIPTION_FIELDS)
            )
        return value


class MetricsSettings(BaseModel):
    """An optional Prometheus endpoint; off unless `listen` is set."""

    model_config = _MODEL_CONFIG

    listen: HostPort | None = None

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str | None) -> str | None:
        if value is not None and _split_host_port(value) is None:
            raise _problem('must be "host:port" with a port 1-65535, e.g. "127.0.0.1:9464" or "[::1]:9464"')
        return value

    def address(self) -> tuple[str, int] | None:
        """`(host, port)` to bind, or None when metrics are off."""
        return None if self.listen is None else _split_host_port(self.listen)


class PushSettings(BaseModel):
    """Hooks as hints (design section 10): off unless `enabled`.  The receiver binds to
    localhost by default; put a reverse proxy with TLS in front of it to take hooks from outside.
    Secrets come from the value, else `*_file`, else the systemd credentials `sentry-hook-secret`
    and `tracker-hook-secret`; never from the environment's logs or the state file."""

    model_config = _MODEL_CONFIG

    enabled: bool = False
    listen: HostPort = "127.0.0.1:8788"
    # Where Tracker's queue trigger reaches the receiver from outside (the operator's TLS reverse
    # proxy in front of `listen`); `push setup` aims the trigger at `<public_url>/hooks/tracker`.
    public_url: HttpUrl | None = None
    sentry_secret: SecretStr | None = None  # the integration's client secret (signs Sentry's hooks)
    sentry_secret_file: Path | None = None
    tracker_secret: SecretStr | None = None  # shared with the queue trigger (X-Bridge-Secret)
    tracker_secret_file: Path | None = None
    # Hinted cycles at most this often: the pace of a flood of hints, and most of a hinted
    # change's wait (bench_push at N = 10,000, 50 ms latency: p95 2.4 s with 2.0, see the README).
    min_gap_seconds: float = Field(default=1.0, ge=0.1, le=3600)
    # With Sentry hooks on and trusted, incremental cycles read only the links hooks, the Tracker
    # poll, bookmark searches and retries point at, plus a rotating slice of the rest (every link
    # at least once every `sync.full_resync_every` cycles).  False: every cycle reads every link.
    focused_cycles: bool = True

    @field_validator("listen")
    @classmethod
    def _check_listen(cls, value: str) -> str:
        if _split_host_port(value) is None:
            raise _problem('must be "host:port" with a port 1-65535, e.g. "127.0.0.1:8788"')
        return value

    def address(self) -> tuple[str, int]:
        found = _split_host_port(self.listen)
        if found is None:  # the validator refused it already
            raise ValueError(self.listen)
        return found


def _split_host_port(value: str) -> tuple[str, int] | None:
    host, sep, port = value.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        return None
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or (":" in host and not value.startswith("[")):
        return None
    return host, int(port)


class Settings(BaseSettings):
    """The whole configuration.  Build it with `load_settings`; direct construction takes only
    the given values (no file, no environment), which is what tests and the demo want."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_DELIMITER,
        case_sensitive=False,
        frozen=True,
        extra="forbid",
        hide_input_in_errors=True,
    )

    sentry: SentrySettings
    tracker: TrackerSettings
    state: StateSettings = Field(default_factory=StateSettings)
    sync: SyncSettings = Field(default_factory=SyncSettings)
    create: CreateSettings = Field(default_factory=CreateSettings)
    mapping: MappingSettings = Field(default_factory=MappingSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    push: PushSettings = Field(default_factory=PushSettings)
    #: The file these settings came from; set by `load_settings`, never read from the input.
    config_path: Path | None = None
    # The part of the environment `load_settings` was given that secrets are looked up in later
    # (`$CREDENTIALS_DIRECTORY` alone, so no token of the environment is kept); None: os.environ.
    _loader_env: dict[str, str] | None = PrivateAttr(default=None)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Only explicit values: `load_settings` merges the file and the environment it was given.
        return (init_settings,)

    @model_validator(mode="after")
    def _check_cross_section(self) -> Settings:
        problems: list[tuple[Loc, str]] = []
        for name, direction in self.sync.fields.model_dump().items():
            table = getattr(self.mapping, name, None)
            if not isinstance(table, BaseModel):
                continue  # a field without value tables (people map through mapping.users)
            for key, to, what in (("to_tracker", "to_tracker", f"Sentry {name} values to Tracker"),
                                  ("to_sentry", "to_sentry", f"Tracker {name} values to Sentry")):
                if direction in ("both", to) and not getattr(table, key):
                    problems.append((("mapping", name, key), f'empty, but sync.fields.{name} = "{direction}" writes '
                                                             f"{what}"))
        if self.sentry.projects:
            for project in self.create.routes:
                if project not in self.sentry.projects:
                    problems.append(
                        (("create", "routes", project), "project is not in sentry.projects, so never polled")
                    )
        _raise_all("settings", problems)
        return self

    def sentry_token(self) -> str:
        """The Sentry token: `token`, else `token_file`, else the systemd credential."""
        return self._token("sentry", self.sentry.token, self.sentry.token_file)

    def tracker_token(self) -> str:
        """The Tracker token: `token`, else `token_file`, else the systemd credential."""
        return self._token("tracker", self.tracker.token, self.tracker.token_file)

    def push_secret(self, side: Literal["sentry", "tracker"]) -> str | None:
        """A hook secret: the value, else its file, else the systemd credential
        `{side}-hook-secret`; None when none is set (that side's hooks are then refused)."""
        secret, problems, _ = self._push_secret(side)
        if problems:
            raise ConfigError(problems)
        return secret

    def given_secret_problems(self) -> list[str]:
        """What `push_secret` would raise for a hook secret that *is* given (inline, or a file or
        credential that exists and this user can read) while hooks are on: `config check` reports
        these, as `run` refuses them; a secret file that is absent here (a CI runner) is not one.
        The tokens need nothing here: `load_settings` checks a given token already."""
        if not self.push.enabled:
            return []
        found: list[str] = []
        for side in ("sentry", "tracker"):
            _, problems, absent = self._push_secret(side)
            if not absent:
                found += problems
        return found

    def _push_secret(self, side: Literal["sentry", "tracker"]) -> tuple[str | None, list[str], bool]:
        """(secret, problems, absent), `absent` as for `_read_secret`."""
        value = self.push.sentry_secret if side == "sentry" else self.push.tracker_secret
        path = self.push.sentry_secret_file if side == "sentry" else self.push.tracker_secret_file
        if value is not None and value.get_secret_value().strip():
            return value.get_secret_value().strip(), [], False
        base = self.config_path.parent if self.config_path is not None else Path.cwd()
        credentials = self._secrets_env().get(CREDENTIALS_ENV)
        if path is None and credentials and (Path(credentials) / f"{side}-hook-secret").is_file():
            path = Path(credentials) / f"{side}-hook-secret"
        if path is None:
            return None, [], True
        path = path.expanduser() if path.expanduser().is_absolute() else base / path.expanduser()
        secret, problems, absent = _read_secret(path, f"push.{side}_secret_file")
        return (None if secret is None else secret.get_secret_value()), problems, absent

    def _token(self, service: str, token: SecretStr | None, token_file: Path | None) -> str:
        base = self.config_path.parent if self.config_path is not None else Path.cwd()
        secret, _, problems, _ = _resolve_secret(service, token, token_file, base, self._secrets_env())
        if secret is None:
            raise ConfigError(problems)
        return secret.get_secret_value()

    def _secrets_env(self) -> Mapping[str, str]:
        """Where `$CREDENTIALS_DIRECTORY` is looked up: the environment `load_settings` was given
        (only that variable is kept), else, for settings built directly, the process's."""
        return os.environ if self._loader_env is None else self._loader_env


# -- secrets -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SecretSetting:
    """One setting that holds a secret, and the two safer places the same secret may live
    instead: a file named by another key, and a systemd credential (`LoadCredential=`)."""

    key: tuple[str, str]
    file_key: tuple[str, str]
    credential: str


#: Every secret of the configuration.  `config show` redacts them and names where each came
#: from; `config check` warns about one written inline in a file.  A test keeps this table in
#: step with the models (every `SecretStr` field is listed).
SECRETS: tuple[SecretSetting, ...] = (
    SecretSetting(("sentry", "token"), ("sentry", "token_file"), "sentry-token"),
    SecretSetting(("tracker", "token"), ("tracker", "token_file"), "tracker-token"),
    SecretSetting(("push", "sentry_secret"), ("push", "sentry_secret_file"), "sentry-hook-secret"),
    SecretSetting(("push", "tracker_secret"), ("push", "tracker_secret_file"), "tracker-hook-secret"),
)



def _read_secret(path: Path, key: str) -> tuple[SecretStr | None, list[str], bool]:
    """(secret, problems, absent).  `absent`: the problem is only that the file is not *here*
    for this user (it does not exist, or this user may not read it), which is what a CI runner or
    an operator's shell sees of a file only the service's host or user can read; a file that is
    there but empty, not UTF-8 or a folder is a problem wherever it is read."""
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (FileNotFoundError, NotADirectoryError, PermissionError) as exc:
        return None, [f"{key}: cannot read {path}: {exc.strerror or type(exc).__name__}"], True
    except OSError as exc:
        return None, [f"{key}: cannot read {path}: {exc.strerror or type(exc).__name__}"], False
    except UnicodeDecodeError:
        return None, [f"{key}: {path} is not UTF-8 text"], False
    if not text:
        return None, [f"{key}: {path} is empty"], False
    return SecretStr(text), [], False


def _token_shape(key: str, secret: SecretStr) -> list[str]:
    """A token is one line of ASCII: anything else would fail later as a garbled HTTP header (or
    send half a file).  The problem names where the token came from, never the token."""
    value = secret.get_secret_value()
    problems: list[str] = []
    if "\n" in value or "\r" in value:
        problems.append(f"{key}: has more than one line; it must hold the token alone")
    odd = next((i for i, ch in enumerate(value) if not (ch.isascii() and ch.isprintable()) and ch not in "\r\n"), None)
    if odd is not None:
        problems.append(f"{key}: character {odd + 1} is not printable ASCII (a smart quote, a non-breaking space or "
                        "a stray control character copied with it?); tokens are plain ASCII")
    return problems


def _resolve_secret(
    service: str, token: SecretStr | None, token_file: Path | None, base_dir: Path, env: Mapping[str, str]
) -> tuple[SecretStr | None, Path | None, list[str], bool]:
    """(secret, absolute token_file, problems, absent).  An empty `token` counts as unset, so
    the example file's `token = ""` falls through to the other sources.  A token that is not one
    line of ASCII is a problem, wherever it came from.  `absent`: the problems only say that no
    token is to be had here (none given, or a token file this user cannot find or read), which
    `load_settings(require_tokens=False)` tolerates; a token that is given but unusable is not."""
    secret, path, problems, absent = _find_secret(service, token, token_file, base_dir, env)
    if secret is not None:
        given = token is not None and bool(token.get_secret_value().strip())
        source = "" if given else f" (from {path})" if path is not None else " (from the systemd credential)"
        shape = _token_shape(f"{service}.token{source}", secret)
        if shape:
            return None, path, shape, False
    return secret, path, problems, absent


def _find_secret(
    service: str, token: SecretStr | None, token_file: Path | None, base_dir: Path, env: Mapping[str, str]
) -> tuple[SecretStr | None, Path | None, list[str], bool]:
    file_path = None
    if token_file is not None:
        file_path = token_file.expanduser()
        file_path = file_path if file_path.is_absolute() else base_dir / file_path
    if token is not None and token.get_secret_value().strip():
        return SecretStr(token.get_secret_value().strip()), file_path, [], False
    if file_path is not None:
        secret, problems, absent = _read_secret(file_path, f"{service}.token_file")
        return secret, file_path, problems, absent
    credentials = env.get(CREDENTIALS_ENV)
    if credentials:
        candidate = Path(credentials) / f"{service}-token"
        if candidate.is_file():
            secret, problems, absent = _read_secret(candidate, f"{service}.token")
            return secret, None, problems, absent
    return (
        None,
        None,
        [
            f"{service}.token: missing; set it, token_file, {ENV_PREFIX}{service.upper()}{ENV_DELIMITER}TOKEN"
            f" or a systemd credential ({service}-token in ${CREDENTIALS_ENV})"
        ],
        True,
    )


# -- loading -----------------------------------------------------------------------------------


def resolve_config_path(cli_value: str | None, env: Mapping[str, str], cwd: Path) -> Path:
    """`--config`, then `$BRIDGE_CONFIG`, then `./bridge.toml`; relative to `cwd`."""
    chosen = cli_value or env.get(CONFIG_ENV) or DEFAULT_CONFIG_NAME
    path = Path(chosen).expanduser()
    return path if path.is_absolute() else cwd / path


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' env source, reading a given mapping instead of `os.environ`."""

    def __init__(self, settings_cls: type[BaseSettings], env: Mapping[str, str]) -> None:
        self._given_env = env
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        # case_sensitive=False: pydantic-settings matches lower-cased names.
        return {name.lower(): value for name, value in self._given_env.items()}


def _bridge_vars(env: Mapping[str, str]) -> dict[str, str]:
    """The BRIDGE_<SECTION>... variables (not $BRIDGE_CONFIG, which names the file)."""
    sections = tuple(name for name in Settings.model_fields if name != "config_path")
    found: dict[str, str] = {}
    for name, value in env.items():
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX):
            continue
        head = upper[len(ENV_PREFIX) :].split(ENV_DELIMITER, 1)[0].lower()
        if head in sections:
            found[name] = value
    return found


def env_path(name: str) -> tuple[str, ...]:
    """The key path a `BRIDGE_...` variable names, lower-cased as pydantic-settings reads it."""
    return tuple(name[len(ENV_PREFIX) :].lower().split(ENV_DELIMITER))


def _env_overrides(env: Mapping[str, str], problems: list[str]) -> tuple[dict[str, Any], list[str]]:
    """The nested dict the environment contributes and the variables it came from; a variable
    whose JSON does not parse becomes a problem and contributes nothing."""
    variables = _bridge_vars(env)
    try:
        return _MappingEnvSource(Settings, variables)(), list(variables)
    except SettingsError:
        pass
    # Find the culprits one by one so the message names the variable, never its value.
    good: dict[str, str] = {}
    for name, value in variables.items():
        try:
            _MappingEnvSource(Settings, {name: value})()
        except SettingsError as exc:
            cause = exc.__cause__
            why = f": {cause}" if isinstance(cause, json.JSONDecodeError) else ""
            problems.append(
                f"{format_key(env_path(name))}: ${name} is not valid JSON (lists and tables are given as"
                f" JSON, e.g. BRIDGE_SENTRY__PROJECTS='[\"backend\"]'){why}"
            )
        else:
            good[name] = value
    return _MappingEnvSource(Settings, good)(), list(good)


def _env_origin(loc: tuple[str | int, ...], overrides: Mapping[str, Any], names: list[str]) -> str | None:
    """The variable that supplied the value at `loc`, when the environment supplied it at all."""
    node: Any = overrides
    keys: list[str] = []
    for item in loc:
        if item == "[key]":
            continue
        if not isinstance(node, Mapping):
            break  # inside a list or a scalar the environment supplied whole
        if item not in node:
            return None
        node = node[item]
        keys.append(str(item).lower())
    matches = [name for name in names if tuple(keys[: len(env_path(name))]) == env_path(name)]
    return max(matches, key=lambda name: len(env_path(name)), default=None)


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except FileNotFoundError:
        problem = (
            f"{path}: config file not found (give --config FILE, set ${CONFIG_ENV} or create ./bridge.toml)"
        )
    except tomllib.TOMLDecodeError as exc:
        problem = f"{path}: not valid TOML: {exc}"
    except UnicodeDecodeError:
        problem = f"{path}: not valid TOML: not UTF-8 text"
    except OSError as exc:
        problem = f"{path}: cannot read: {exc.strerror or type(exc).__name__}"
    raise ConfigError([problem])


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """`override` wins; tables merge key by key, everything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        current = merged.get(key)
        if isinstance(current, Mapping) and isinstance(value, Mapping):
            merged[key] = _deep_merge(current, value)
        else:
            merged[key] = value
    return merged


def format_key(loc: Iterable[str | int]) -> str:
    """A pydantic location as a TOML-ish key path: `mapping.status.to_tracker."unresolved.bogus"`.
    Public because `config check` and `config show` name keys the same way as the problems do."""
    out = ""
    for item in loc:
        if item == "[key]":
            continue  # pydantic's marker for "the dict key itself was invalid"
        if isinstance(item, int):
            out += f"[{item}]"
            continue
        part = item if _BARE_KEY.match(item) else json.dumps(item)
        out += f".{part}" if out else part
    return out


_MESSAGES = {
    "extra_forbidden": "unknown key",
    "missing": "required, but not set",
}


def _format_errors(exc: ValidationError, overrides: Mapping[str, Any], env_names: list[str]) -> list[str]:
    lines = []
    for error in exc.errors(include_input=False, include_url=False):
        loc = tuple(error["loc"])
        message = _MESSAGES.get(error["type"], error["msg"])
        origin = _env_origin(loc, overrides, env_names)
        suffix = f" (from ${origin})" if origin else ""
        lines.append(f"{format_key(loc) or 'config'}: {message}{suffix}")
    return lines


def _section_order(problem: str) -> int:
    head = re.split(r"[.:\[ ]", problem, maxsplit=1)[0]
    fields = list(Settings.model_fields)
    return fields.index(head) if head in fields else len(fields)


#: The shortest secret `scrub_secrets` removes from free text (see there).
SCRUB_MIN_LENGTH = 16


def scrub_secrets(text: str, secrets: Iterable[str]) -> str:
    """`text` with every known secret of at least `SCRUB_MIN_LENGTH` (16) characters replaced by
    `***`: the safety net for a secret pasted into a key that is not a secret one (a token where
    an e-mail belongs ends up in the key path of a problem).

    The rule: secret values are redacted where they are printed, structurally (a secret key
    prints `***`, a message names the key, never the value); this net only catches the rest, and
    only secrets long enough never to be ordinary text.  A short one ("sentry", "sentry-token")
    also occurs in section names, URLs and advice, which replacing would garble (a `[***]` table
    is not TOML) while showing the secret to whoever reads the garbled text.  Real API tokens
    and generated hook secrets are far longer than 16 characters."""
    for secret in sorted(set(secrets), key=len, reverse=True):
        if len(secret) >= SCRUB_MIN_LENGTH:
            text = text.replace(secret, "***")
    return text


def _scrub(problems: list[str], secrets: Iterable[str]) -> list[str]:
    """Belt and braces: no message may carry a token, even one pasted into the wrong key."""
    known = list(secrets)
    return [scrub_secrets(problem, known) for problem in problems]


def _raw_secrets(data: Mapping[str, Any]) -> list[str]:
    found = []
    for section_name, key in (secret.key for secret in SECRETS):
        section = data.get(section_name)
        if isinstance(section, Mapping) and isinstance(section.get(key), str):
            found.append(section[key].strip())
    return found


def _raw_token_source(value: Any) -> tuple[SecretStr | None, Path | None] | None:
    """`token` and `token_file` of a section that failed validation, when they are usable, so a
    missing token is reported together with the section's other problems."""
    if not isinstance(value, Mapping):
        return None
    token, token_file = value.get("token"), value.get("token_file")
    if not isinstance(token, str | None) or not isinstance(token_file, str | None):
        return None
    return (None if token is None else SecretStr(token)), (None if token_file is None else Path(token_file))


@dataclass(frozen=True)
class ConfigLayers:
    """The two inputs `load_settings` merges, kept apart: the file's table, and the table the
    environment contributes with the variables behind it.  `config show` reads them to say
    where each value came from, `config check` to see what is written in the file itself."""

    file: Mapping[str, Any]
    env: Mapping[str, Any]
    env_names: tuple[str, ...]


def config_layers(path: Path, env: Mapping[str, str]) -> ConfigLayers:
    """The layers of `path` under `env`.  Raises `ConfigError` when the file cannot be read; a
    variable whose JSON does not parse contributes nothing (`load_settings` reports it)."""
    overrides, names = _env_overrides(env, [])
    return ConfigLayers(_read_toml(Path(path).expanduser().absolute()), overrides, tuple(names))


def load_settings(
    path: Path, env: Mapping[str, str] | None = None, *, require_tokens: bool = True
) -> Settings:
    """Read `path`, apply the environment over it, validate, and resolve paths and secrets.

    Raises `ConfigError` with every problem found.  `env` defaults to `os.environ`.  With
    `require_tokens=False` (commands that never call an API, `config check` on a CI runner) a
    *missing* token is not a problem: none given, or a `token_file` this user cannot find or read.
    A token that is given but unusable (not one line of ASCII, an empty token file) still is,
    since every command that calls an API refuses it.
    """
    env = os.environ if env is None else env
    path = Path(path).expanduser().absolute()
    base_dir = path.parent
    raw = _read_toml(path)
    problems: list[str] = []
    if "config_path" in raw:
        problems.append("config_path: unknown key")
        raw = {key: value for key, value in raw.items() if key != "config_path"}
    overrides, env_names = _env_overrides(env, problems)
    data = _deep_merge(raw, overrides)

    settings: Settings | None = None
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        problems.extend(_format_errors(exc, overrides, env_names))

    secrets = _raw_secrets(data)
    updates: dict[str, Any] = {}
    for service in ("sentry", "tracker"):
        section = getattr(settings, service) if settings is not None else None
        given = (section.token, section.token_file) if section else _raw_token_source(data.get(service))
        if given is None:
            continue  # the section is not even a table: its own problem says so
        token, given_file = given
        secret, token_file, secret_problems, absent = _resolve_secret(service, token, given_file, base_dir, env)
        if secret is not None:
            secrets.append(secret.get_secret_value())
        if require_tokens or not absent:
            problems.extend(secret_problems)
        if section is not None:
            updates[service] = section.model_copy(update={"token": secret, "token_file": token_file})

    if problems or settings is None:
        ordered = sorted(dict.fromkeys(problems), key=_section_order)
        raise ConfigError(_scrub(ordered, secrets))

    state_path = settings.state.path.expanduser()
    updates["state"] = settings.state.model_copy(
        update={"path": state_path if state_path.is_absolute() else base_dir / state_path}
    )
    updates["config_path"] = path
    loaded = settings.model_copy(update=updates)
    loaded._loader_env = {CREDENTIALS_ENV: env[CREDENTIALS_ENV]} if CREDENTIALS_ENV in env else {}
    return loaded
