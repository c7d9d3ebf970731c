"""`doctor` against both emulators over loopback HTTP: a sound setup, deliberately broken
mappings (unknown status, unreachable target, missing resolution), under-scoped and refused
tokens, unreachable servers, user coverage, releases (the emulated release list); and the pure
analyses behind the verdicts."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from bridge.config import StatusMapping
from bridge.core.workflow import Transition
from bridge.doctor import format_path, reach, reach_level, round_trip, target_resolutions, user_coverage
from bridge.sandbox.sentry_emulator import DEFAULT_SCOPES

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv

BROKEN_WORKFLOW: dict[str, Any] = {
    # `closed` exists but no transition leads into it.
    "statuses": {"open": "new", "inProgress": "inProgress", "resolved": "done", "closed": "done"},
    "transitions": {
        "open": {"start": "inProgress"},
        "inProgress": {"stop": "open", "resolve": "resolved"},
        "resolved": {"reopen": "open"},
        "closed": {"reopen": "open"},
    },
}


def doctor(env: BridgeEnv, expect: int) -> dict[str, dict[str, Any]]:
    result = env.expect(expect, "doctor", "--json")
    data = json.loads(result.out)
    assert data["ok"] is (expect == 0)
    return {check["name"]: check for check in data["checks"]}


def level(checks: dict[str, dict[str, Any]], name: str) -> str:
    return str(checks[name]["level"])


def test_sound_setup_passes_with_paths_and_writes_nothing(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.pair()  # an open issue in the queue: something to learn the workflow from
    env.tracker.add_issue("OPS", "in progress", status="inProgress")
    env.sentry.clear_log()
    env.tracker.clear_log()

    checks = doctor(env, 0)

    for name in ("sentry: API reachable", "sentry: token", "sentry: organization", "sentry: token scopes",
                 "sentry: projects", "tracker: API reachable", "tracker: token and organisation",
                 "tracker: queue", "tracker: statuses", "tracker: resolutions", "users: [mapping.users]"):
        assert level(checks, name) == "pass", checks[name]
    closed = checks["tracker: workflow -> closed"]
    assert closed["level"] == "pass"
    assert "from open: open -[close]-> closed" in closed["notes"]
    assert "from inProgress: inProgress -[stop_progress]-> open -[close]-> closed" in closed["notes"]
    resolved = checks["tracker: workflow -> resolved"]
    assert "from open: open -[start_progress]-> inProgress -[resolve]-> resolved" in resolved["notes"]
    # Not provable without writing: said, not probed.
    assert level(checks, "write access") == "warn"
    # The default table maps ignored -> closed -> resolved.
    assert level(checks, "mapping: round trip") == "warn"
    assert "comes back different: ignored -> closed -> resolved" in checks["mapping: round trip"]["notes"]
    # dan has no Tracker account; tracker-admin has no Sentry account.
    assert "dan@example.com" in checks["users: Sentry -> Tracker"]["detail"]
    assert "tracker-admin" in checks["users: Tracker -> Sentry"]["detail"]
    assert level(checks, "users: bookmarks visible") == "pass"
    assert env.sentry.writes() == [] and env.tracker.writes() == []
    assert not env.state_path.exists()  # doctor never touches the state file


def test_plain_output_has_one_line_per_check_and_advice(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.pair()
    result = env.expect(0, "doctor")
    lines = result.out.splitlines()
    assert lines[0].startswith("PASS  state file: ") and "no file yet" in lines[0]
    assert lines[1].startswith("PASS  sentry: API reachable")
    assert any(line.startswith("WARN  write access") for line in lines)
    assert any(line.strip().startswith("advice: ") for line in lines)
    assert lines[-1].endswith("0 failed")


def test_unknown_status_in_the_mapping_fails(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.pair()
    env.config(mapping={"status": {"to_tracker": {"unresolved": "opened"}}})
    checks = doctor(env, 1)
    statuses = checks["tracker: statuses"]
    assert statuses["level"] == "fail"
    assert "opened" in statuses["detail"] and "to_tracker.unresolved = opened" in statuses["detail"]
    assert "tracker: workflow -> opened" not in checks


def test_unreachable_target_fails_and_shows_where_it_is_stuck(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.tracker.add_queue("BRK", workflow=BROKEN_WORKFLOW)
    for status, resolution in (("open", None), ("inProgress", None), ("resolved", "fixed"), ("closed", "fixed")):
        env.tracker.add_issue("BRK", f"an issue in {status}", status=status, resolution=resolution)
    env.config(tracker={"queue": "BRK"},
               mapping={"status": {"to_tracker": {"resolvedInNextRelease": {"status": "resolved",
                                                                            "resolution": "fixed"}}}})
    checks = doctor(env, 1)
    closed = checks["tracker: workflow -> closed"]
    assert closed["level"] == "fail"
    assert "from open: no known path" in closed["notes"]
    assert "BRK" in closed["advice"]
    resolved = checks["tracker: workflow -> resolved"]
    assert resolved["level"] == "pass"
    assert "from closed: closed -[reopen]-> open -[start]-> inProgress -[resolve]-> resolved" in resolved["notes"]
    # needInfo has no to_sentry... it is not in this queue; closed/resolved/open/inProgress all have rows.
    assert level(checks, "mapping: coverage") == "pass"


def test_unexplored_statuses_make_a_missing_path_a_warning_not_a_failure(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.tracker.add_queue("BRK", workflow=BROKEN_WORKFLOW)
    env.tracker.add_issue("BRK", "only open issues here")
    env.config(tracker={"queue": "BRK"})
    checks = doctor(env, 0)
    resolved = checks["tracker: workflow -> resolved"]
    assert resolved["level"] == "warn"
    assert "unexplored (no issue sits there): inProgress" in resolved["notes"]


def test_path_through_an_earlier_done_status_warns(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.tracker.add_queue("DNE", workflow={
        "statuses": {"open": "new", "resolved": "done", "closed": "done"},
        "transitions": {"open": {"resolve": "resolved"}, "resolved": {"close": "closed"},
                        "closed": {"reopen": "open"}},
    })
    env.tracker.add_issue("DNE", "open")
    env.tracker.add_issue("DNE", "resolved", status="resolved", resolution="fixed")
    env.config(tracker={"queue": "DNE"})
    checks = doctor(env, 0)
    closed = checks["tracker: workflow -> closed"]
    assert closed["level"] == "warn"
    assert "from open: open -[resolve]-> resolved -[close]-> closed" in closed["notes"]
    assert any("passes done status resolved before closed" in note for note in closed["notes"])


def test_done_status_without_resolution_and_unknown_resolution_fail(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.pair()
    env.config(mapping={"status": {"to_tracker": {"resolved": "closed",
                                                  "ignored": {"status": "closed", "resolution": "wontFixx"},
                                                  "unresolved": {"status": "open", "resolution": "fixed"}}}})
    checks = doctor(env, 1)
    resolutions = checks["tracker: resolutions"]
    assert resolutions["level"] == "fail"
    notes = "\n".join(resolutions["notes"])
    assert "to_tracker.resolved = closed is a done status but the row gives no resolution" in notes
    assert "'wontFixx' does not exist" in notes
    assert "to_tracker.unresolved = open: a resolution on a new status" in notes


def test_under_scoped_token_fails_the_scope_check(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.sentry.add_token("narrow-token", scopes=["event:read"])
    env.config(sentry={"token": "narrow-token"})
    checks = doctor(env, 1)
    scopes = checks["sentry: token scopes"]
    assert scopes["level"] == "fail"
    assert "member:read (listing members answered 403)" in scopes["detail"]
    assert "org:read (listing teams answered 403)" in scopes["detail"]
    assert "event:read" not in scopes["detail"]
    assert level(checks, "sentry: token") == "pass"
    assert "users: Sentry -> Tracker" not in checks  # cannot be checked without the member list


def test_refused_token_wrong_org_and_dead_tracker(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(sentry={"token": "not-a-token"}, tracker={"url": "http://127.0.0.1:9"})
    checks = doctor(env, 1)
    assert level(checks, "sentry: API reachable") == "pass"
    assert level(checks, "sentry: token") == "fail"
    assert "sentry: organization" not in checks
    assert level(checks, "tracker: API reachable") == "fail"
    assert "tracker.url" in checks["tracker: API reachable"]["advice"]
    assert "not-a-token" not in json.dumps(checks)

    env.config(sentry={"token": "sentry-token", "organization": "nope"}, tracker={"url": env.tracker_url,
                                                                                   "org_id": "999"})
    checks = doctor(env, 1)
    assert level(checks, "sentry: organization") == "fail"
    assert level(checks, "tracker: token and organisation") == "fail"


def test_missing_queue_and_project(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.config(sentry={"projects": ["backend", "web"]}, tracker={"queue": "NOPE"})
    checks = doctor(env, 1)
    assert level(checks, "tracker: queue") == "fail"
    projects = checks["sentry: projects"]
    assert projects["level"] == "fail" and "web" in projects["detail"] and "backend" not in projects["detail"]


def test_user_coverage_overrides_and_sso_only_people(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.pair()
    env.sentry.add_user("erin@example.com", "Erin", sso_only=True)
    env.tracker.add_user("erin", "erin@example.com")
    env.sentry.add_user("pending@example.com", pending_invite=True)
    env.config(mapping={"users": {"bob@example.com": "robert", "ghost@example.com": "alice"}})
    checks = doctor(env, 1)
    overrides = checks["users: [mapping.users]"]
    assert overrides["level"] == "fail"
    assert "no Tracker user: bob@example.com = robert" in overrides["notes"]
    assert "no Sentry member: ghost@example.com" in overrides["notes"]
    visible = checks["users: bookmarks visible"]
    assert visible["level"] == "warn" and "erin@example.com" in visible["detail"]
    assert any("pending@example.com" in n for n in checks["users: Sentry -> Tracker"]["notes"])


def test_releases_check_against_the_emulated_release_list(bridge_env: BridgeEnv) -> None:
    """doctor asks `GET /organizations/acme/releases/?project=<id>&per_page=1` for each project,
    which needs project:read (or project:releases), a scope the bridge's own token lacks."""
    env = bridge_env
    env.pair()
    checks = doctor(env, 0)
    releases = checks["sentry: releases"]
    assert releases["level"] == "warn"
    assert releases["detail"] == "could not list releases of backend (403)"
    assert "project:read" in releases["advice"]

    env.sentry.add_token("doctor-token", scopes=[*DEFAULT_SCOPES, "project:read"])
    env.config(sentry={"token": "doctor-token"})
    env.sentry.clear_log()
    checks = doctor(env, 0)
    assert checks["sentry: releases"]["level"] == "pass"
    assert checks["sentry: releases"]["detail"] == "backend have releases (resolvedInNextRelease works)"
    [asked] = env.sentry.requests("GET", r"/releases/$")
    assert (asked.status, asked.query) == (200, [("project", env.sentry._project("backend").id), ("per_page", "1")])

    for project in env.sentry.projects.values():
        project.releases.clear()
    checks = doctor(env, 0)
    assert checks["sentry: releases"]["level"] == "warn"
    assert checks["sentry: releases"]["detail"] == "no releases in backend"
    assert "map to resolved" in checks["sentry: releases"]["advice"]

    env.sentry.add_release("backend", "2.0.0")
    assert level(doctor(env, 0), "sentry: releases") == "pass"

    # Nothing maps to resolvedInNextRelease: no check at all.
    env.config(mapping={"status": {"to_sentry": {"resolved": "resolved"}}})
    assert "sentry: releases" not in doctor(env, 0)


def test_empty_queue_cannot_teach_the_workflow(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    checks = doctor(env, 0)
    assert level(checks, "tracker: workflow") == "warn"
    assert "no issue in OPS" in checks["tracker: workflow"]["detail"]


# -- the pure analyses -------------------------------------------------------------------------


def test_reach_and_format_path() -> None:
    graph = {
        "open": (Transition("start", "inProgress"), Transition("close", "closed")),
        "inProgress": (Transition("resolve", "resolved"),),
        "closed": (),
    }
    result = reach(graph, "resolved")
    assert format_path("open", result.paths["open"]) == "open -[start]-> inProgress -[resolve]-> resolved"
    assert result.stuck == ("closed",)
    assert result.unexplored == ("resolved",)
    assert reach_level(result, explored=True) == "warn"  # closed is stuck, the rest reaches it
    assert reach_level(reach({"closed": ()}, "open"), explored=True) == "fail"
    assert reach_level(reach(graph, "closed"), explored=True) == "warn"  # unexplored statuses may lead there


def test_round_trip_finds_flips_in_both_directions() -> None:
    table = StatusMapping.model_validate({
        "to_tracker": {"unresolved": "open", "resolved": {"status": "closed", "resolution": "fixed"},
                       "ignored": {"status": "closed", "resolution": "wontFix"}},
        "to_sentry": {"open": "unresolved", "inProgress": "unresolved", "closed": "resolved"},
    })
    flips, tracker_flips = round_trip(table)
    assert flips == ["ignored -> closed -> resolved"]
    assert tracker_flips == ["inProgress -> unresolved -> open"]
    table = StatusMapping.model_validate({"to_tracker": {"unresolved": "open"}, "to_sentry": {"open": "unresolved"}})
    assert round_trip(table) == ([], [])


def test_target_resolutions_respects_what_the_queue_allows() -> None:
    table = StatusMapping.model_validate({"to_tracker": {"resolved": {"status": "closed", "resolution": "later"}}})
    types = {"closed": "done", "open": "new"}
    assert target_resolutions(table, types, ["fixed", "later"], {}) == []
    problems = target_resolutions(table, types, ["fixed", "later"], {"bug": frozenset({"fixed"})})
    assert problems == [("fail", "to_tracker.resolved = closed: resolution 'later' is not allowed in the queue "
                                 "for issue type(s) bug")]


def test_user_coverage_matches_by_email_override_and_flags_ambiguity() -> None:
    members = [
        {"email": "a@x", "user": {"id": "1", "email": "a@x", "hasPasswordAuth": True}},
        {"email": "b@x", "user": {"id": "2", "email": "b@x", "hasPasswordAuth": False}},
        {"email": "c@x", "user": {"id": "3", "email": "c@x"}},
        {"email": "inv@x", "user": None},
    ]
    tracker_users = [
        {"uid": 10, "login": "a", "email": "a@x"},
        {"uid": 11, "login": "bee", "email": "b@elsewhere"},
        {"uid": 12, "login": "c1", "email": "c@x"},
        {"uid": 13, "login": "c2", "email": "c@x"},  # two Tracker users share c's e-mail: nobody matches
        {"uid": 14, "login": "gone", "email": "g@x", "dismissed": True},
        {"uid": 15, "login": "robot", "email": "r@x"},
    ]
    cov = user_coverage(members, tracker_users, {"b@x": "bee"}, exclude_logins=["robot"])
    assert cov.matched == (("a@x", "a"), ("b@x", "bee"))
    assert cov.sentry_only == ("c@x",)
    assert cov.tracker_only == ("c1", "c2")
    assert cov.pending == ("inv@x",)
    assert cov.sso_only == ("b@x",)
    assert cov.sso_unknown is False


def test_route_queues_and_app_installation(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.pair()
    env.tracker.add_queue("WEB")
    env.config(create={"enabled": True, "routes": {"backend": "WEB"}},
               sentry={"app_installation": env.sentry.installation_uuid})
    checks = doctor(env, 0)
    assert level(checks, "tracker: create.routes queues") == "pass"
    assert level(checks, "sentry: app installation") == "pass"

    env.config(create={"routes": {"backend": "NOPE"}}, sentry={"app_installation": "0000-not-installed"})
    checks = doctor(env, 1)
    assert checks["tracker: create.routes queues"]["detail"] == "not found: NOPE"
    assert level(checks, "sentry: app installation") == "fail"


def test_a_server_error_is_not_taken_for_a_valid_token(bridge_env: BridgeEnv) -> None:
    env = bridge_env
    env.sentry.inject("status", status=502, method="GET", path=r"/issues/$", times=10)
    checks = doctor(env, 1)
    assert level(checks, "sentry: API reachable") == "fail"
    assert "502" in checks["sentry: API reachable"]["detail"]
    assert "sentry: token" not in checks
