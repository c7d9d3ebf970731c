"""`doctor`'s push checks (design §10): do hooks arrive?

Nothing here writes, and nothing sends a hook: each check reads what already exists.

- **receiver**: `GET /hooks/tracker` on `push.listen` answers 405 when `run` is up (a GET is never
  a hook, so the receiver's counters do not move).
- **public URL**: the same GET through `push.public_url`, which proves the operator's reverse
  proxy routes to the receiver (as Tracker's trigger will reach it).
- **Tracker trigger** per queue: the trigger `push setup` made (its id is in the state file) still
  exists, is active and aims at `<public_url>/hooks/tracker`; its delivery log (`GET /v3/queues/
  {q}/triggers/{id}/webhooks/log`) shows requests answered 2xx.  The log's entry shape is not
  documented: a status is looked for under the names seen in practice, and entries without one
  are counted, not judged.
- **hooks received**: the running daemon's `/metrics` (when `metrics.listen` is set): hooks
  queued and refused per source, and whether Sentry's hooks are trusted (focused cycles).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.parser import text_string_to_metric_families

from bridge.check import Check, Level
from bridge.clients.tracker import TrackerClient
from bridge.config import Settings
from bridge.errors import RemoteError, StateFileError
from bridge.push.setup import HOOK_PATH, Remembered, cursor_name, endpoint
from bridge.store import Store

PROBE_TIMEOUT = 5.0
LOG_ENTRIES = 20
Get = Callable[[str], httpx.Response]


def _get(url: str) -> httpx.Response:
    with httpx.Client(timeout=PROBE_TIMEOUT, follow_redirects=False, trust_env=False) as client:
        return client.get(url)


def local_url(listen: tuple[str, int]) -> str:
    """Where this host reaches a listener bound to `listen` (a wildcard bind: loopback)."""
    host, port = listen
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)  # noqa: S104 - read, not bound
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def remembered_triggers(state: Path, queues: Iterable[str]) -> dict[str, Remembered | None]:
    """The triggers `push setup` made, by queue, read from the state file without locking it."""
    found: dict[str, Remembered | None] = dict.fromkeys(queues)
    try:
        store = Store.open_read_only(state)
    except (FileNotFoundError, StateFileError):
        return found
    try:
        for queue in found:
            found[queue] = Remembered.parse(store.cursor(cursor_name(queue)))
    finally:
        store.close()
    return found


def delivery_status(entry: Mapping[str, Any]) -> int | str | None:
    """The HTTP status an entry of a trigger's delivery log records, or an error text, or None
    when the entry's shape is not one we know (it is not documented)."""
    for holder in (entry.get("response"), entry):
        if isinstance(holder, Mapping):
            for name in ("status", "statusCode", "httpStatus", "responseCode", "code"):
                value = holder.get(name)
                if isinstance(value, int) and not isinstance(value, bool):
                    return value
                if isinstance(value, str) and value.isdigit():
                    return int(value)
    error = entry.get("error") or entry.get("errorMessage")
    return str(error) if error else None


def log_verdict(name: str, entries: Sequence[Mapping[str, Any]]) -> Check:
    """What a trigger's latest deliveries say: all answered 2xx, some failed, or none yet."""
    if not entries:
        return Check(name, "pass", "no deliveries logged yet (no issue of the queue changed since the trigger was "
                                   "made)", "change an issue of the queue and run doctor again to see one arrive")
    outcomes = [delivery_status(entry) for entry in entries]
    known = [o for o in outcomes if o is not None]
    bad = [o for o in known if not (isinstance(o, int) and 200 <= o < 300)]
    shown = ", ".join(str(o) for o in bad[:3])
    if not known:
        return Check(name, "warn", f"{len(entries)} deliveries logged, in a shape this version cannot read (the "
                                   "log's format is not documented)", "read the log in Tracker's trigger settings")
    if len(bad) == len(known):
        return Check(name, "fail", f"the latest {len(known)} deliveries all failed ({shown})",
                     "the receiver must be reachable at push.public_url; check the proxy and that `run` is up, "
                     "and that the trigger's X-Bridge-Secret is push.tracker_secret (`push setup` sets it)")
    if bad:
        return Check(name, "warn", f"{len(bad)} of the latest {len(known)} deliveries failed ({shown})",
                     "a receiver restart or a proxy hiccup loses only hints: polling carries the change")
    return Check(name, "pass", f"the latest {len(known)} deliveries were answered 2xx")


def trigger_checks(settings: Settings, tracker: TrackerClient, queues: Sequence[str]) -> list[Check]:
    """Each queue's trigger: made, active, aimed at us, delivering."""
    checks: list[Check] = []
    public = settings.push.public_url
    if settings.push_secret("tracker") is None:
        return checks
    made = remembered_triggers(settings.state.path, queues)
    for queue, remembered in made.items():
        name = f"push: Tracker trigger {queue}"
        if remembered is None:
            checks.append(Check(name, "warn", f"no trigger made for {queue}: Tracker's changes wait for the poll",
                                "run `sentry-tracker-bridge push setup` (it needs queue administration rights)"))
            continue
        try:
            trigger = tracker.get_trigger(queue, remembered.trigger_id)
        except RemoteError as exc:
            checks.append(Check(name, "warn", f"trigger {remembered.trigger_id} cannot be read: "
                                              f"{exc.describe(body=False)}",
                                "reading triggers needs queue administration rights"))
            continue
        if trigger is None:
            checks.append(Check(name, "fail", f"trigger {remembered.trigger_id} is gone (deleted in Tracker?)",
                                "run `sentry-tracker-bridge push setup` to make it again"))
            continue
        aims = {str(action.get("endpoint")) for action in trigger.get("actions") or [] if isinstance(action, Mapping)}
        if trigger.get("active") is False:
            checks.append(Check(name, "fail", f"trigger {remembered.trigger_id} is switched off",
                                "switch it on in Tracker, or run `push setup`"))
            continue
        if public is not None and endpoint(str(public)) not in aims:
            aimed = ", ".join(sorted(aims)) or "-"
            checks.append(Check(name, "fail", f"trigger {remembered.trigger_id} aims at {aimed}, not "
                                              f"{endpoint(str(public))}", "run `sentry-tracker-bridge push setup`"))
            continue
        try:
            entries = tracker.trigger_deliveries(queue, remembered.trigger_id, limit=LOG_ENTRIES)
        except RemoteError as exc:
            checks.append(Check(name, "warn", f"trigger {remembered.trigger_id} is in place; its delivery log cannot "
                                              f"be read: {exc.describe(body=False)}"))
            continue
        verdict = log_verdict(name, entries)
        checks.append(Check(name, verdict.level, f"trigger {remembered.trigger_id}: {verdict.detail}", verdict.advice))
    return checks


def reach_check(name: str, url: str, get: Get, *, down_level: Level, down_advice: str) -> Check:
    """`GET <url>/hooks/tracker` must be the receiver's 405 (a GET is never taken as a hook)."""
    target = url.rstrip("/") + HOOK_PATH
    try:
        answer = get(target)
    except httpx.HTTPError as exc:
        return Check(name, down_level, f"{target}: no answer ({type(exc).__name__})", down_advice)
    if answer.status_code == 405:
        return Check(name, "pass", f"{target} answers as the receiver does")
    return Check(name, "fail", f"{target} answered {answer.status_code}, not the receiver's 405",
                 "the address leads somewhere else: check push.listen / push.public_url and the proxy's route")


def counters_check(settings: Settings, get: Get) -> Check | None:
    """What the running daemon's receiver counted, from its /metrics."""
    address = settings.metrics.address()
    name = "push: hooks received"
    if address is None:
        return Check(name, "pass", "metrics.listen is not set, so the receiver's counts cannot be read here",
                     "set metrics.listen to see bridge_hooks_total and bridge_hooks_trusted")
    try:
        text = get(local_url(address) + "/metrics").text
    except httpx.HTTPError:
        return Check(name, "warn", "the daemon's /metrics does not answer: is `run` running?",
                     "systemctl status sentry-tracker-bridge")
    counts: dict[tuple[str, str], float] = {}
    trusted: float | None = None
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "bridge_hooks_total":
                key = (sample.labels.get("source", ""), sample.labels.get("outcome", ""))
                counts[key] = counts.get(key, 0) + sample.value
            elif sample.name == "bridge_hooks_trusted":
                trusted = sample.value
    notes = tuple(f"{source} {outcome}: {int(value)}" for (source, outcome), value in sorted(counts.items()))
    refused = {source: int(sum(v for (s, o), v in counts.items() if s == source and o in ("400", "401")))
               for source in ("sentry", "tracker")}
    queued = {source: int(counts.get((source, "queued"), 0)) for source in ("sentry", "tracker")}
    if refused["sentry"] or refused["tracker"]:
        which = " and ".join(f"{n} {s}" for s, n in refused.items() if n)
        return Check(name, "warn", f"hooks refused since the daemon started: {which}",
                     "a refused Sentry hook is a secret out of step (push.sentry_secret must be the integration's "
                     "Client Secret); a refused Tracker hook, a trigger made with another secret (`push setup`)",
                     notes)
    if settings.push_secret("sentry") is not None and trusted == 0:
        return Check(name, "warn", "Sentry hooks are distrusted: every cycle reads every link",
                     "the daemon's log says why (event push.distrusted)", notes)
    got = ", ".join(f"{n} from {s}" for s, n in queued.items()) or "none"
    return Check(name, "pass", f"hooks queued since the daemon started: {got}", "", notes)


def push_checks(settings: Settings, tracker: TrackerClient | None, queues: Sequence[str], *,
                get: Get = _get) -> list[Check]:
    """Every push check, when push is enabled (none otherwise)."""
    if not settings.push.enabled:
        return []
    checks = [reach_check("push: receiver", local_url(settings.push.address()), get, down_level="warn",
                          down_advice="start the service (`run`); doctor only looks")]
    if settings.push.public_url is not None:
        checks.append(reach_check("push: public URL", str(settings.push.public_url), get, down_level="warn",
                                  down_advice="Tracker reaches the receiver there: check DNS, TLS and the proxy "
                                              "(or this host cannot reach its own public address)"))
    elif settings.push_secret("tracker") is not None:
        checks.append(Check("push: public URL", "warn", "push.public_url is not set: `push setup` cannot aim "
                                                        "Tracker's trigger", "set it to your proxy's https address"))
    if tracker is not None:
        checks += trigger_checks(settings, tracker, queues)
    counted = counters_check(settings, get)
    if counted is not None:
        checks.append(counted)
    return checks
