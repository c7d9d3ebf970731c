"""The workflow as defined (`GET /workflows/{id}`), read in both documented body forms, and the
verdicts drawn from it before any step."""

from __future__ import annotations

from bridge.core.workflow import Definition, definition_problem, parse_definition

STRINGS = {"steps": [
    {"status": "open", "actions": [{"id": "start", "target": "inProgress"}, {"id": "close", "target": "closed"}]},
    {"status": "inProgress", "actions": [{"id": "stop", "target": "open"}]},
    {"status": "closed", "actions": []},
]}
REFS = {"steps": [
    {"status": {"key": "open", "id": "1"}, "actions": [{"id": "start", "target": {"key": "inProgress"}},
                                                      {"id": "close", "target": {"key": "closed"}}]},
    {"status": {"key": "inProgress"}, "actions": [{"id": "stop", "target": {"key": "open"}}]},
    {"status": {"key": "closed"}},
]}


def test_both_body_forms_give_the_same_definition() -> None:
    expected = Definition({"open": frozenset({"inProgress", "closed"}), "inProgress": frozenset({"open"}),
                           "closed": frozenset()})
    assert parse_definition(STRINGS) == expected
    assert parse_definition(REFS) == expected


def test_a_body_of_another_shape_concludes_nothing() -> None:
    for doc in ({}, {"steps": []}, {"steps": "open"}, {"steps": [{"actions": []}]},
                {"steps": [{"status": "open", "actions": [{"id": "x"}]}]}, {"steps": [["open"]]},
                {"steps": [{"status": {"id": 1, "display": "Open"}, "actions": []}]}):  # numeric ids only
        assert parse_definition(doc) is None, doc


def test_leading_to_walks_the_arrows_backwards() -> None:
    definition = parse_definition(STRINGS)
    assert definition is not None
    assert definition.leading_to("closed") == {"open", "inProgress", "closed"}
    assert definition.leading_to("open") == {"open", "inProgress"}  # closed is final


def test_problems_name_the_rows_the_queue_and_what_it_has() -> None:
    definition = parse_definition(STRINGS)
    assert definition is not None
    rows = ['mapping.status.to_tracker.unresolved = "opened"']
    assert definition_problem(definition, "OPS", "closed", "opened", rows) == (
        'mapping.status.to_tracker.unresolved = "opened": queue OPS has no status "opened" '
        "(it has closed, inProgress, open)")
    assert definition_problem(definition, "OPS", "closed", "open", ['x = "open"']) == (
        'x = "open": queue OPS\'s workflow has no way from closed to open')
    assert definition_problem(definition, "OPS", "inProgress", "closed", []) is None
