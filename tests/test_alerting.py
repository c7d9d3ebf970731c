"""The alerting an ops team drops in: deploy/prometheus/alerts.yml (with its promtool unit tests in
alerts_test.yml) and the Grafana dashboard deploy/grafana/sentry-tracker-bridge.json.

Three kinds of check, because each catches what the others cannot:

* `promtool check rules` and `promtool test rules`: the rules parse, and each alert fires on the
  input series it should and stays quiet on the others (annotations checked as rendered).  An
  alert whose expression can never fire must fail its unit tests: a mutated copy proves it.
* Shape: every alert has a firing and a quiet case, a severity, a summary and a runbook line
  that names the command to run.
* Names: a rule or a panel that reads a metric the exporter does not have is silent forever,
  and nothing else would notice.  A real `run` against the emulators (metrics and push on, one
  write, one hook, one rate-limited request) is scraped, and every metric name in the rules'
  and the panels' PromQL must be among the *sample* names it exports (so with the `_total`,
  `_bucket`, `_count` and `_sum` the queries must use).

promtool comes with Debian's `prometheus` package.  The test never installs anything: .ci/run
installs it when it is missing.  Without it the promtool tests skip, except under CI (`$CI`
set), where a skip would hide broken rules, so they fail instead.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from tests.conftest import required_tool
from tests.test_daemon import Service, free_ports, scrape, total, wait_for

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv

REPO = Path(__file__).resolve().parents[1]
RULES = REPO / "deploy" / "prometheus" / "alerts.yml"
RULE_TESTS = REPO / "deploy" / "prometheus" / "alerts_test.yml"
DASHBOARD = REPO / "deploy" / "grafana" / "sentry-tracker-bridge.json"
# Series Prometheus makes itself for every target; the exporter cannot have them.
SCRAPE_SERIES = frozenset({"up"})
RUNBOOK_COMMAND = re.compile(r"`sentry-tracker-bridge (status|doctor|explain ID|conflicts|push setup)\b")
TRACKER_SECRET = "tracker-shared-secret-for-alerting"  # noqa: S105 - a test value
SENTRY_SECRET = "sentry-client-secret-for-alerting"  # noqa: S105


# -- reading the files ----------------------------------------------------------------------------


def alert_rules(path: Path = RULES) -> list[dict[str, Any]]:
    groups = yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]
    return [rule for group in groups for rule in group["rules"] if "alert" in rule]


def dashboard_exprs(path: Path = DASHBOARD) -> list[str]:
    """Every target's `expr`, in rows folded or not."""

    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels") or [])

    board = json.loads(path.read_text(encoding="utf-8"))
    return [t["expr"] for p in walk(board["panels"]) for t in p.get("targets") or []]


_STRING = re.compile(r'"(?:\\.|[^"\\])*"|\'(?:\\.|[^\'\\])*\'|`[^`]*`')
_LABEL_LIST = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
_WORD = re.compile(r"(?<![\w.:$])([A-Za-z_:][\w:]*)(\s*\()?")
_KEYWORDS = frozenset({"and", "or", "unless", "by", "without", "on", "ignoring", "group_left", "group_right",
                       "offset", "bool", "inf", "nan"})


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression reads: what is left once strings, label matchers,
    ranges, label lists and function calls are taken out.  (Names given as `{__name__=...}` are
    not seen; the rules and the dashboard do not use that form.)"""
    text = _STRING.sub('""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = _LABEL_LIST.sub(" ", text)
    return {m.group(1) for m in _WORD.finditer(text) if not m.group(2) and m.group(1).lower() not in _KEYWORDS}


def missing_names(exprs: list[str], exported: set[str]) -> dict[str, set[str]]:
    """{expression: the names in it the exporter does not have}, for the expressions with any."""
    found = {expr: metric_names(expr) - exported - SCRAPE_SERIES for expr in exprs}
    return {expr: names for expr, names in found.items() if names}


# -- promtool -------------------------------------------------------------------------------------


def promtool() -> str:
    return required_tool("promtool", "prometheus")


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)


def test_rules_pass_promtool_check() -> None:
    result = run_promtool("check", "rules", str(RULES))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_rules_pass_their_unit_tests() -> None:
    result = run_promtool("test", "rules", str(RULE_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_an_alert_that_can_never_fire_fails_its_unit_tests(tmp_path: Path) -> None:
    """Every alert's expression replaced by one that is always empty: each alert must show up
    among the failures (its firing case caught it), or its tests never looked."""
    rules = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    for group in rules["groups"]:
        for rule in group["rules"]:
            rule["expr"] = "vector(1) == 0"
    (tmp_path / RULES.name).write_text(yaml.safe_dump(rules), encoding="utf-8")
    shutil.copy(RULE_TESTS, tmp_path / RULE_TESTS.name)
    result = run_promtool("test", "rules", str(tmp_path / RULE_TESTS.name))
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    unnoticed = [rule["alert"] for rule in alert_rules() if f"alertname: {rule['alert']}," not in output]
    assert unnoticed == [], output


# -- shape ----------------------------------------------------------------------------------------


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    tests = yaml.safe_load(RULE_TESTS.read_text(encoding="utf-8"))
    assert tests["rule_files"] == [RULES.name]
    cases: dict[str, list[bool]] = {}
    for test in tests["tests"]:
        for case in test.get("alert_rule_test") or []:
            cases.setdefault(case["alertname"], []).append(bool(case.get("exp_alerts")))
    names = [rule["alert"] for rule in alert_rules()]
    assert len(names) == len(set(names)) and len(names) >= 9
    untested = {name: cases.get(name, []) for name in names if not (True in cases.get(name, [])
                                                                   and False in cases.get(name, []))}
    assert untested == {}, "alerts without both a firing and a quiet case (True: firing)"
    assert set(cases) <= set(names), f"tests of alerts that do not exist: {set(cases) - set(names)}"


def test_every_alert_says_how_bad_it_is_and_what_to_run() -> None:
    for rule in alert_rules():
        name, annotations = rule["alert"], rule.get("annotations") or {}
        assert rule.get("labels", {}).get("severity") in ("critical", "warning"), name
        assert annotations.get("summary"), name
        assert RUNBOOK_COMMAND.search(annotations.get("runbook", "")), f"{name}: the runbook names no command"
    # The two rules about the target itself name the documented job; nothing else filters on a job.
    by_job = {rule["alert"] for rule in alert_rules() if 'job="sentry-tracker-bridge"' in rule["expr"]}
    assert by_job == {"BridgeDown", "BridgeNotScraped"}
    assert 'job="sentry-tracker-bridge"' in (REPO / "README.md").read_text(encoding="utf-8")


def test_the_dashboard_is_one_importable_board_on_a_chosen_data_source() -> None:
    board = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    assert board["uid"] == "sentry-tracker-bridge" and board["title"]
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    assert {"job", "instance"} <= set(variables)
    panels = [p for p in board["panels"] if p["type"] != "row"]
    ids = [p["id"] for p in board["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel["targets"] and all(t["expr"] for t in panel["targets"]), panel["title"]
        # Every query is scoped to the chosen job and instances.
        for target in panel["targets"]:
            assert 'job="$job", instance=~"$instance"' in target["expr"], (panel["title"], target["expr"])
    titles = " | ".join(p["title"] for p in panels).lower()
    for subject in ("cycles", "writes", "failing", "conflicts", "rate-limit", "latency", "hooks"):
        assert subject in titles, subject


# -- names ----------------------------------------------------------------------------------------


def test_metric_names_are_read_out_of_promql() -> None:
    [hooks] = [r["expr"] for r in alert_rules() if r["alert"] == "BridgeHooksStopped"]
    assert metric_names(hooks) == {"bridge_push_configured", "bridge_writes_total", "bridge_hooks_total"}
    assert metric_names('histogram_quantile(0.95, sum by (le, service) (rate('
                        'bridge_api_request_duration_seconds_bucket{job="$job", x=~"a|b"}[$__rate_interval])))'
                        ) == {"bridge_api_request_duration_seconds_bucket"}
    assert metric_names("time() - bridge_last_success_timestamp_seconds > 3 * bridge_cycle_interval_seconds "
                        "offset 5m") == {"bridge_last_success_timestamp_seconds", "bridge_cycle_interval_seconds"}
    assert metric_names('absent(up{job="sentry-tracker-bridge"}) or vector(1e3) and on() bool_x') == {"up", "bool_x"}
    assert missing_names(["rate(nope_total[5m]) / up"], {"other"}) == {"rate(nope_total[5m]) / up": {"nope_total"}}


def test_every_metric_the_rules_and_the_dashboard_read_is_exported(bridge_env: BridgeEnv, tmp_path: Path) -> None:
    env = bridge_env
    sid, key = env.pair()
    env.link((sid, key))
    port, hooks_port = free_ports(2)
    env.config(sync={"interval_seconds": 2, "retry_attempts": 3, "retry_deadline_seconds": 5},
               metrics={"listen": f"127.0.0.1:{port}"},
               push={"enabled": True, "listen": f"127.0.0.1:{hooks_port}", "tracker_secret": TRACKER_SECRET,
                     "sentry_secret": SENTRY_SECRET, "min_gap_seconds": 0.5})
    # One rate-limited answer: retried after a wait, so retries and rate-limit waits have series.
    env.tracker.inject("status", status=429, headers={"Retry-After": "0"}, method="POST", path="/_search$", times=1)
    svc = Service(env, watchdog_usec=None)
    try:
        wait_for("the first cycle and the receiver", lambda: svc.cycles() and svc.logs("push.listening"), timeout=20)
        env.sentry.set_status(sid, "resolved")  # a write to Tracker
        answer = httpx.post(f"http://127.0.0.1:{hooks_port}/hooks/tracker", content=json.dumps({"key": key}).encode(),
                            headers={"X-Bridge-Secret": TRACKER_SECRET}, timeout=5)
        assert answer.status_code == 202
        samples = wait_for("a write, a hook and a rate-limit wait in /metrics", lambda: (
            s if total(s := scrape(port), "bridge_writes_total", side="tracker", outcome="ok") >= 1
            and total(s, "bridge_hooks_total", source="tracker", outcome="queued") >= 1
            and total(s, "bridge_api_rate_limit_wait_seconds_total", service="tracker") > 0 else None), timeout=20)
    finally:
        svc.close()
    exported = {name for name, _ in samples}

    # The series added for the rules carry what the config says.
    assert total(samples, "bridge_cycle_interval_seconds") == 2
    assert total(samples, "bridge_push_configured", source="tracker") == 1
    assert total(samples, "bridge_push_configured", source="sentry") == 1
    for service in ("sentry", "tracker"):
        count = total(samples, "bridge_api_request_duration_seconds_count", service=service)
        assert count >= 1 and total(samples, "bridge_api_request_duration_seconds_bucket", service=service,
                                    le="+Inf") == count

    rule_exprs = [rule["expr"] for rule in alert_rules()]
    board_exprs = dashboard_exprs()
    assert len(board_exprs) >= 20
    assert missing_names(rule_exprs, exported) == {}
    assert missing_names(board_exprs, exported) == {}
    assert set().union(*map(metric_names, rule_exprs)) - SCRAPE_SERIES, "no bridge metric found in the rules"

    # The same check on a copy of the rules with a metric the exporter never had must complain.
    bogus = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    bogus["groups"][0]["rules"][2]["expr"] = "time() - bridge_last_sucess_timestamp_seconds > 180"
    copy = tmp_path / "alerts.yml"
    copy.write_text(yaml.safe_dump(bogus), encoding="utf-8")
    complaints = missing_names([rule["expr"] for rule in alert_rules(copy)], exported)
    assert list(complaints.values()) == [{"bridge_last_sucess_timestamp_seconds"}]
