"""Issue 14, item 3: doctor's live probes, through the CLI against the emulators.  Each probe is
shown passing on a sound server and failing on one that breaks the assumption it removes."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from tests.conftest import BridgeEnv

PROBES = ("probe: Tracker incremental poll", "probe: Tracker pagination", "probe: Sentry group= batch read",
          "probe: Sentry pagination and rate-limit headers", "probe: Sentry bookmarks searches")


def checks_of(env: BridgeEnv) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in json.loads(env.run("doctor", "--json").out)["checks"]}


def seeded(env: BridgeEnv) -> BridgeEnv:
    for _ in range(3):
        env.pair()
    return env


def test_every_probe_passes_on_sound_servers_and_writes_nothing(bridge_env: BridgeEnv) -> None:
    env = seeded(bridge_env)
    env.sentry.clear_log()
    env.tracker.clear_log()
    checks = checks_of(env)
    for name in PROBES:
        assert checks[name]["level"] == "pass", checks[name]
    poll = checks["probe: Tracker incremental poll"]["detail"]
    assert "the poll the bridge sends (updatedAt from " in poll and "+0000) found OPS-3" in poll
    group = checks["probe: Sentry group= batch read"]["detail"]
    assert group == "asked for 5000000001, 5000000003 by group=, got exactly those (not 5000000002)", group
    assert "a bookmarks: search works for each of the 3 mapped people" in \
        checks["probe: Sentry bookmarks searches"]["detail"]
    assert env.sentry.writes() == [] and env.tracker.writes() == []


def test_a_server_that_reads_the_cursor_later_fails_the_poll_probe(bridge_env: BridgeEnv) -> None:
    env = seeded(bridge_env)
    env.tracker.misread_dates_by = timedelta(hours=5)  # as if the offset were ignored at UTC-5
    probe = checks_of(env)["probe: Tracker incremental poll"]
    assert probe["level"] == "fail"
    assert "did not find OPS-3" in probe["detail"] and "sync.full_resync_every = 1" in probe["advice"]


def test_the_poll_probe_needs_an_issue_and_says_so(bridge_env: BridgeEnv) -> None:
    probe = checks_of(bridge_env)["probe: Tracker incremental poll"]
    assert probe["level"] == "warn" and "no issue in OPS to prove it with" in probe["detail"]


def test_a_server_that_ignores_group_fails_the_batch_probe(bridge_env: BridgeEnv) -> None:
    env = seeded(bridge_env)
    env.sentry.add_issue("backend", "a fourth issue, not asked for")
    env.sentry.group_ignored = True
    probe = checks_of(env)["probe: Sentry group= batch read"]
    assert probe["level"] == "fail" and "needs an adapter" in probe["advice"], probe


def test_rate_limit_headers_are_named_or_the_default_pacing_is(bridge_env: BridgeEnv) -> None:
    env = seeded(bridge_env)
    env.sentry.rate_limit_per_second = None  # self-hosted: no headers
    notes = checks_of(env)["probe: Sentry pagination and rate-limit headers"]["notes"]
    assert any("no rate-limit headers (self-hosted Sentry sends none): the bridge paces by its defaults, at most "
               "4 request(s) at once" in n for n in notes), notes
    env.sentry.rate_limit_per_second = 40
    notes = checks_of(env)["probe: Sentry pagination and rate-limit headers"]["notes"]
    assert any("rate-limit headers present (limit " in n for n in notes), notes


def test_a_listing_without_a_link_header_is_not_taken_for_one_page(bridge_env: BridgeEnv) -> None:
    env = seeded(bridge_env)
    original = env.sentry.serve

    def without_link(req: Any) -> Any:
        answer = original(req)
        answer.headers = {k: v for k, v in answer.headers.items() if k.lower() != "link"}
        return answer

    env.sentry.serve = without_link  # type: ignore[method-assign]
    probe = checks_of(env)["probe: Sentry pagination and rate-limit headers"]
    assert probe["level"] == "warn" and "no Link header" in probe["detail"], probe


def test_people_the_bookmarks_search_cannot_see_are_named(bridge_env: BridgeEnv) -> None:
    env = seeded(bridge_env)
    next(u for u in env.sentry.users.values() if u.email == "bob@example.com").sso_only = True
    probe = checks_of(env)["probe: Sentry bookmarks searches"]
    assert probe["level"] == "warn" and "bob@example.com" in probe["detail"], probe
    env.sentry.inject("status", status=400, method="GET", path=r"/issues/$", query="alice", times=5)
    probe = checks_of(env)["probe: Sentry bookmarks searches"]
    assert probe["level"] == "fail" and any(n.startswith("alice@example.com:") for n in probe["notes"]), probe


def test_the_robots_rights_in_the_queue_are_read_not_tried(bridge_env: BridgeEnv) -> None:
    env = seeded(bridge_env)
    probe = checks_of(env)["probe: Tracker robot may edit"]
    assert probe["level"] == "pass" and "bridge-robot may edit issues in OPS" in probe["detail"], probe
    env.tracker.set_rights("OPS", "bridge-robot", {"READ": "users", "WRITE": "roles"})
    probe = checks_of(env)["probe: Tracker robot may edit"]
    assert probe["level"] == "warn" and "holds WRITE only through author" in probe["detail"], probe
    env.tracker.set_rights("OPS", "bridge-robot", {"READ": "users"})
    probe = checks_of(env)["probe: Tracker robot may edit"]
    assert probe["level"] == "fail" and "bridge-robot has no WRITE right" in probe["detail"], probe
    # What the probe predicted is what a sync meets: the write is refused.
    sid, key = env.pair()
    env.link((sid, key))
    env.sentry.set_status(sid, "resolved")
    assert env.run("sync").code != 0 and env.t_state(key) == ("open", None)
    assert env.tracker.writes() and all(r.status == 403 for r in env.tracker.writes())


def test_creating_needs_the_create_right(bridge_env: BridgeEnv) -> None:
    env = seeded(bridge_env)
    env.config(create={"enabled": True})
    env.tracker.set_rights("OPS", "bridge-robot", {"READ": "users", "WRITE": "groups"})
    probe = checks_of(env)["probe: Tracker robot may edit"]
    assert probe["level"] == "fail" and "bridge-robot has no CREATE right" in probe["detail"], probe


def test_rights_that_cannot_be_read_are_a_warning_not_a_guess(bridge_env: BridgeEnv) -> None:
    env = seeded(bridge_env)
    env.tracker.inject("status", status=403, method="GET", path=r"/permissions/users/", times=5)
    probe = checks_of(env)["probe: Tracker robot may edit"]
    assert probe["level"] == "warn" and "cannot tell" in probe["detail"], probe
