"""docs/contract.md: every JSON example validates, and the decision table covers G1-G30."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from villageami.contract.validation import is_valid, validate_message

DOC = Path(__file__).resolve().parents[2] / "docs" / "contract.md"
EXAMPLE = re.compile(
    r"<!-- validate: (?P<kind>[a-z-]+)(?: (?P<topic>\S+))? -->\n```json\n(?P<body>.*?)\n```", re.S
)


def _examples() -> list[tuple[str, str | None, str]]:
    return [(m["kind"], m["topic"], m["body"]) for m in EXAMPLE.finditer(DOC.read_text(encoding="utf-8"))]


def test_every_message_kind_has_an_example() -> None:
    kinds = {kind for kind, _, _ in _examples()}
    assert kinds == {"telemetry", "event", "command", "command-result", "status", "inventory"}


@pytest.mark.parametrize(("kind", "topic", "body"), _examples(), ids=lambda v: str(v)[:30])
def test_example_validates(kind: str, topic: str | None, body: str) -> None:
    problems = validate_message(json.loads(body), kind, topic)
    assert is_valid(problems), problems


def test_decision_table_covers_every_gap() -> None:
    text = DOC.read_text(encoding="utf-8")
    for number in range(1, 31):
        assert re.search(rf"^\| G{number} \|", text, re.M), f"G{number} missing from the decision table"
