"""`config check [FILE ...]`, `config show [FILE]`, `config schema`: configurations kept in git,
looked at with no network and no state file.

* `check` loads each file as the bridge would (the environment applied, every problem listed
  with its key path), then runs the offline lint (`bridge.config_lint`): one-sided or ambiguous
  mapping tables, routes nothing takes, secrets written inline, listeners on one port; files
  given together are taken as one host's bridges and checked against each other too.  Errors
  exit 2, warnings only with `--strict`.  Tokens are not required: CI has none (they are the
  host's credentials), and `doctor` and the service check them where they live.  A token or
  hook secret that *is* given (in the file, the environment, a token file or credential that is
  there) is checked as `run` would check it, so `check` never passes what `run` refuses.
* `show` prints the effective configuration (file, then environment, then token files and
  systemd credentials), every secret key's value as `***`, each value with where it came from.  The
  default output is TOML (it parses: a `# origin` comment after each value, unset keys
  commented out) because that is what the operator edits; `--json` is for scripts.
* `schema` prints the JSON Schema editors use (`bridge.config_schema`).

None of them opens the state file or calls an API: a CI runner with no network and no state
can run them, and so can an operator next to a running service.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bridge.cli import EXIT_CONFIG, EXIT_OK, Context
from bridge.config import Settings, config_layers, format_key, load_settings, scrub_secrets
from bridge.config_lint import Finding, from_problem, lint_settings, lint_together
from bridge.config_schema import config_schema
from bridge.config_sources import EffectiveConfig, Key, effective_config
from bridge.errors import ConfigError

VALUE_WIDTH = 44  # `key = value` padded to this before its `# origin` comment


def register(subparsers: Any) -> None:
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "config", help="check, show or describe config files (no network, no state file)")
    commands = parser.add_subparsers(dest="config_command", required=True, metavar="SUBCOMMAND")
    check = commands.add_parser(
        "check", help="validate config files offline: every problem with its key path; exit 2 on an error",
        description="Validate config files without network or state: every problem with its key path, plus "
                    "one-sided or ambiguous mapping tables, routes nothing takes, secrets written inline, and "
                    "(for several files, taken as one host's bridges) shared ports and state files.  Exit 2 on "
                    "an error, or on a warning with --strict.")
    check.add_argument("files", nargs="*", metavar="FILE",
                       help="config files (default: --config, then $BRIDGE_CONFIG, then ./bridge.toml)")
    check.add_argument("--json", action="store_true", help="print the result as one JSON object (for CI)")
    check.add_argument("--strict", action="store_true", help="warnings fail too (exit 2)")
    check.set_defaults(handler=run_check)
    show = commands.add_parser(
        "show", help="the effective config (file, environment, credentials), secrets as ***, with origins")
    show.add_argument("file", nargs="?", metavar="FILE",
                      help="config file (default: --config, then $BRIDGE_CONFIG, then ./bridge.toml)")
    show.add_argument("--json", action="store_true", help="print {config_path, settings, sources} as JSON")
    show.set_defaults(handler=run_show)
    schema = commands.add_parser("schema", help="the JSON Schema of the config file, for editors")
    schema.set_defaults(handler=run_schema)


# -- check -------------------------------------------------------------------------------------


@dataclass
class Checked:
    """One file as `check` saw it: its name as given, what loaded (None when it did not), and
    what was found."""

    name: str
    path: Path
    settings: Settings | None = None
    findings: list[Finding] = field(default_factory=list)

    def failed(self, strict: bool) -> bool:
        return any(f.level == "error" or strict for f in self.findings)


def check_file(name: str, env: Mapping[str, str]) -> Checked:
    """Load and lint one file.  Tokens are not required (CI has none), so `require_tokens` is
    off: a missing token passes, a given one that `run` would refuse does not, nor does a hook
    secret file that is there but unusable while hooks are on.  A file that does not load gets
    the loader's problems only, since the lint needs settings to look at."""
    path = Path(name).expanduser().absolute()
    checked = Checked(name, path)
    try:
        settings = load_settings(path, env, require_tokens=False)
        checked.settings = settings
        checked.findings = [from_problem(problem, path) for problem in settings.given_secret_problems()]
        checked.findings += lint_settings(settings, config_layers(path, env))
    except ConfigError as exc:
        checked.findings = [from_problem(problem, path) for problem in exc.problems]
    return checked


def run_check(ctx: Context) -> int:
    """Every file alone, then the files that loaded against each other (one host's bridges);
    exit 2 when any file failed, so a CI job fails on it."""
    names = list(ctx.args.files) or [str(ctx.config_path())]
    files: list[Checked] = []
    for name in names:
        path = Path(name).expanduser().absolute()
        if all(other.path != path for other in files):  # one file named twice is one bridge
            files.append(check_file(name, ctx.env))
    loaded = [(c.name, c.settings) for c in files if c.settings is not None]
    by_name = {c.name: c for c in files}
    for name, finding in lint_together(loaded):
        by_name[name].findings.append(finding)
    strict = bool(ctx.args.strict)
    secrets = _secrets(c.settings for c in files)
    errors = sum(1 for c in files for f in c.findings if f.level == "error")
    warnings = sum(1 for c in files for f in c.findings if f.level == "warning")
    ok = not any(c.failed(strict) for c in files)
    if ctx.args.json:
        ctx.print(scrub_secrets(json.dumps({
            "ok": ok, "strict": strict, "counts": {"errors": errors, "warnings": warnings},
            "files": [{"file": c.name, "ok": not c.failed(strict),
                       "errors": sum(1 for f in c.findings if f.level == "error"),
                       "warnings": sum(1 for f in c.findings if f.level == "warning")} for c in files],
            "problems": [{"file": c.name, "level": f.level, "key": f.key, "message": f.message}
                         for c in files for f in c.findings],
        }, indent=2), secrets))
        return EXIT_OK if ok else EXIT_CONFIG
    for checked in files:
        if not checked.findings:
            ctx.print(f"{checked.name}: ok")
        for finding in checked.findings:
            ctx.print(scrub_secrets(f"{checked.name}: {finding.line()}", secrets))
    summary = f"{len(files)} file(s) checked: {errors} error(s), {warnings} warning(s)"
    if warnings and not strict:
        summary += " (warnings fail only with --strict)"
    ctx.print(summary)
    return EXIT_OK if ok else EXIT_CONFIG


def _secrets(all_settings: Iterable[Settings | None]) -> list[str]:
    """The tokens and hook secrets the files resolved: the lint never quotes a value, but a
    loader problem about a key a secret was pasted into must not show it either (belt and braces,
    as the loader's own)."""
    found = []
    for settings in all_settings:
        if settings is None:
            continue
        for section in (settings.sentry, settings.tracker):
            if section.token is not None:
                found.append(section.token.get_secret_value())
        for side in ("sentry", "tracker"):
            try:
                secret = settings.push_secret(side)
            except ConfigError:
                continue
            if secret is not None:
                found.append(secret)
    return found



# -- show --------------------------------------------------------------------------------------


def run_show(ctx: Context) -> int:
    """FILE, else the file every other command would read (`--config`, `$BRIDGE_CONFIG`, ...)."""
    path = Path(ctx.args.file).expanduser().absolute() if ctx.args.file else ctx.config_path()
    effective = effective_config(path, ctx.env)
    if ctx.args.json:
        ctx.print(effective.scrub(json.dumps({
            "config_path": str(effective.config_path), "settings": effective.values,
            "sources": effective.source_table()}, indent=2)))
    else:
        ctx.print(effective.scrub(render_toml(effective)))
    return EXIT_OK


def render_toml(effective: EffectiveConfig) -> str:
    """The effective config as TOML that parses, each value followed by `# origin`; unset keys
    are comments, since TOML has no null."""
    lines = [
        f"# Effective configuration of {effective.config_path}: the file, the environment over it, then",
        "# token files and systemd credentials. After each value, where it came from: file, env VARIABLE,",
        "# token_file PATH, credential NAME, or default. Secrets are shown as \"***\": do not load this back.",
    ]
    _render_table(effective.values, (), effective.sources, lines)
    return "\n".join(lines)


def _render_table(node: dict[str, Any], key: Key, sources: dict[Key, str], lines: list[str]) -> None:
    """A key with an origin is a value (a row of a table is one too, written inline); anything
    else is a table of its own, after the values, as TOML wants."""
    leaves = [(name, value) for name, value in node.items() if (*key, name) in sources]
    tables = [(name, value) for name, value in node.items() if (*key, name) not in sources]
    if key and (leaves or not tables):
        lines += ["", f"[{format_key(key)}]"]
    for name, value in leaves:
        text = f"# {format_key((name,))} = (not set)" if value is None else f"{format_key((name,))} = {_toml(value)}"
        lines.append(f"{text:<{VALUE_WIDTH}}  # {sources[(*key, name)]}")
    for name, value in tables:
        _render_table(value, (*key, name), sources, lines)


def _toml(value: Any) -> str:
    """One value as TOML: the effective config holds only these JSON-ready types."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{format_key((k,))} = {_toml(v)}" for k, v in value.items()) + " }" if value else "{}"
    raise TypeError(f"no TOML for {type(value).__name__}")


# -- schema ------------------------------------------------------------------------------------


def run_schema(ctx: Context) -> int:
    """Printed, not written to a file: `> config/bridge.schema.json` puts it where editors look."""
    ctx.print(json.dumps(config_schema(), indent=2))
    return EXIT_OK
