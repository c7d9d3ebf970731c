"""The JSON Schema of the config file, generated from the pydantic models that validate it, so
that an editor (Taplo / Even Better TOML, tombi) completes keys and flags mistakes as the bridge
itself would, and never drifts from it: `config schema` prints it, `config/bridge.schema.json`
is its output (a test compares the two).

Where a file may hold more than the model's type says, the schema follows the file:

* a `to_tracker` row may be a plain status string, shorthand for `{ status = "..." }`;
* `tracker.org_id` and `cloud_org_id` may be numbers (Yandex 360 ids are; the model turns them
  into strings);
* `config_path` is set by the loader, never read from the file, so it is left out.

Where a validator refuses more than the type says, the model adds it to the schema
(`json_schema_extra` in `bridge.config`), never narrower than the validator: URLs must be
http(s):// with a host, listeners `host:port` with a port 1-65535, `sync.fields.followers` only
`to_tracker` or `off`.

It is declared as draft-07: what pydantic generates for these models uses nothing newer (a test
validates with both draft-07 and 2020-12 validators), and draft-07 is what editors' TOML
language servers understand best.  What the schema cannot say (a key's spelling is checked
case-insensitively, cross-section rules, the offline lint) stays with `config check`.
"""

from __future__ import annotations

import copy
from typing import Any

from bridge.config import Settings

DIALECT = "http://json-schema.org/draft-07/schema#"
TITLE = "sentry-tracker-bridge configuration"
DESCRIPTION = (
    "The TOML config file of sentry-tracker-bridge. Every key can also be set from the environment as "
    "BRIDGE_<SECTION>__<KEY>; unknown keys are errors. `sentry-tracker-bridge config check FILE` checks a file "
    "fully (cross-section rules and mapping tables too)."
)


def config_schema() -> dict[str, Any]:
    """The schema as a JSON-ready dict, `$schema` first."""
    schema = copy.deepcopy(Settings.model_json_schema(mode="validation"))
    schema["properties"].pop("config_path", None)
    definitions = schema["$defs"]
    target = definitions["TrackerTarget"]
    definitions["TrackerTarget"] = {
        "title": target.get("title", "TrackerTarget"),
        "description": target.get("description", ""),
        "anyOf": [
            {"type": "string", "minLength": 1, "description": 'shorthand for { status = "..." }'},
            {key: value for key, value in target.items() if key not in ("title", "description")},
        ],
    }
    tracker = definitions["TrackerSettings"]["properties"]
    for name in ("org_id", "cloud_org_id"):
        tracker[name]["anyOf"].insert(1, {"type": "integer"})
    body = {key: value for key, value in schema.items() if key not in ("title", "description")}
    return {"$schema": DIALECT, "title": TITLE, "description": DESCRIPTION, **body}
