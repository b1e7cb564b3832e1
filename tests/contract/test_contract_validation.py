"""Message validation: the upstream examples, valid messages of every kind, and the invalid catalogue."""

from __future__ import annotations

import copy

import pytest
from contract_cases import INVALID, TELEMETRY, TOPICS, VALID, Invalid, upstream_example

from villageami.contract.envelope import MessageKind
from villageami.contract.validation import Problem, detect_kind, is_valid, validate_message


def errors(problems: list[Problem]) -> list[Problem]:
    return [p for p in problems if p.severity == "error"]


def test_upstream_example_is_valid_with_deprecation_warnings() -> None:
    problems = validate_message(upstream_example())
    assert is_valid(problems), problems
    warnings = {p.pointer: p.message for p in problems if p.severity == "warning"}
    assert "deprecated alias" in warnings["/registers/2/obis"]
    assert "0.0.96.3.10.255" in warnings["/registers/2/obis"]
    assert "msgId" in warnings["/msgId"]


def test_upstream_example_on_its_topic() -> None:
    topic = "openami/v1/feeder-north-paravur-01/pole-ems-0042/meter/DS1000-88421/telemetry"
    assert is_valid(validate_message(upstream_example(), "auto", topic))


def test_wiki_example_without_sip_or_disconnect_is_valid() -> None:
    # meter-vmrs.html carries the same example with another serial, no sipCallId and no 96.11.1 register.
    message = upstream_example()
    message["meterSerial"] = "DDZ1513-88421"
    del message["sipCallId"]
    message["registers"] = message["registers"][:2]
    problems = validate_message(message)
    assert is_valid(problems)
    assert not any("alias" in p.message for p in problems)


def test_upstream_example_without_schema_version_still_valid() -> None:
    message = upstream_example()
    del message["schemaVersion"]
    problems = validate_message(message)
    assert is_valid(problems)
    assert any(p.pointer == "/schemaVersion" and p.severity == "warning" for p in problems)


@pytest.mark.parametrize("name", sorted(VALID))
def test_valid_messages_have_no_problems(name: str) -> None:
    kind, message = VALID[name]
    assert validate_message(message, kind) == []
    assert validate_message(message) == []  # auto-detected kind
    assert detect_kind(message) is MessageKind(kind)


@pytest.mark.parametrize("name", sorted(k for k in VALID if k != "last-will"))
def test_valid_messages_on_their_topic(name: str) -> None:
    kind, message = VALID[name]
    assert validate_message(message, "auto", TOPICS[kind]) == []


def test_catalogue_is_large_enough() -> None:
    assert len(INVALID) >= 30
    assert len({case.name for case in INVALID}) == len(INVALID)
    assert {case.kind for case in INVALID} >= {k.value for k in MessageKind}


@pytest.mark.parametrize("case", INVALID, ids=lambda c: c.name)
def test_invalid_message_is_rejected_at_pointer(case: Invalid) -> None:
    problems = validate_message(case.message, case.kind, case.topic)
    assert not is_valid(problems), f"{case.name}: accepted"
    pointers = [p.pointer for p in errors(problems)]
    assert case.pointer in pointers, f"{case.name}: errors at {pointers}, expected {case.pointer!r}"
    for problem in errors(problems):
        assert problem.message and problem.message[0] != " "


def test_newer_minor_version_warns_but_validates() -> None:
    message = copy.deepcopy(TELEMETRY)
    message["schemaVersion"] = "0.9"
    problems = validate_message(message)
    assert is_valid(problems)
    assert [p.pointer for p in problems] == ["/schemaVersion"]


def test_unknown_register_warns() -> None:
    message = copy.deepcopy(TELEMETRY)
    message["registers"].append({"obis": "31.7.0", "value": 1.2, "unit": "A", "quality": "good"})
    problems = validate_message(message)
    assert is_valid(problems)
    assert [(p.pointer, p.severity) for p in problems] == [
        (f"/registers/{len(message['registers']) - 1}/obis", "warning")
    ]


def test_kind_from_topic_and_conflicting_kind() -> None:
    assert validate_message(TELEMETRY, "auto", TOPICS["telemetry"]) == []
    problems = validate_message(TELEMETRY, "event", TOPICS["telemetry"])
    assert not is_valid(problems)
    assert any(p.pointer == "" and "topic" in p.message for p in problems)


def test_malformed_topic_is_a_problem_not_an_exception() -> None:
    problems = validate_message(TELEMETRY, "auto", "openami/v2/x")
    assert not is_valid(problems)
    assert "openami/v2/x" in problems[0].message


def test_unknown_kind_name() -> None:
    problems = validate_message(TELEMETRY, "bogus")
    assert not is_valid(problems) and "bogus" in problems[0].message


def test_problem_text() -> None:
    assert str(Problem("/ts", "bad", "error")) == "/ts: error: bad"
    assert str(Problem("", "bad", "warning")) == "/: warning: bad"
