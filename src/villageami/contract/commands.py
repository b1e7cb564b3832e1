"""CLI commands of villageami.contract: ``villageami validate``."""

from __future__ import annotations

import sys
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

import orjson
import typer

EXIT_VALID = 0
EXIT_INVALID = 1
EXIT_UNREADABLE = 2


class KindChoice(StrEnum):
    AUTO = "auto"
    TELEMETRY = "telemetry"
    EVENT = "event"
    COMMAND = "command"
    COMMAND_RESULT = "command-result"
    STATUS = "status"
    INVENTORY = "inventory"


@dataclass(frozen=True, slots=True)
class InputMessage:
    line: int
    document: Any


class InputError(Exception):
    """Input that cannot be read or parsed; the message names the file and line."""


def read_messages(label: str, text: str) -> list[InputMessage]:
    """One JSON document, or JSON Lines (one document per non-blank line). Strict JSON: no NaN/Infinity."""
    if not text.strip():
        raise InputError(f"{label}:1: no JSON message in the input")
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as whole_error:
        lines = text.splitlines()
        messages: list[InputMessage] = []
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                messages.append(InputMessage(number, orjson.loads(line)))
            except orjson.JSONDecodeError as line_error:
                if not messages:  # not JSON Lines either: report the whole-document error
                    raise InputError(
                        f"{label}:{whole_error.lineno}: not valid JSON: {whole_error.msg} "
                        f"(column {whole_error.colno})"
                    ) from None
                raise InputError(
                    f"{label}:{number}: not valid JSON: {line_error.msg} (column {line_error.colno})"
                ) from None
        return messages
    first_line = text[: len(text) - len(text.lstrip())].count("\n") + 1
    return [InputMessage(first_line, document)]


def _read(source: str) -> tuple[str, str]:
    if source == "-":
        return "<stdin>", sys.stdin.read()
    try:
        with open(source, encoding="utf-8") as handle:
            return source, handle.read()
    except (OSError, UnicodeDecodeError) as err:
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise InputError(f"{source}: cannot read: {reason}") from None


def validate_command(
    files: Annotated[
        list[str],
        typer.Argument(metavar="FILE...", help="JSON or JSON Lines files; '-' reads standard input."),
    ],
    kind: Annotated[
        KindChoice, typer.Option("--kind", help="Message kind; auto tells it from the topic or the fields.")
    ] = KindChoice.AUTO,
    topic: Annotated[
        str | None, typer.Option("--topic", help="Topic the messages came on; ids must match it.")
    ] = None,
) -> None:
    """Validate northbound messages. Exit 0 valid (warnings allowed), 1 invalid, 2 unreadable input."""
    from villageami.contract.validation import is_valid, validate_message

    unreadable = invalid = False
    counts = {"messages": 0, "invalid": 0, "warnings": 0}
    for source in files:
        try:
            label, text = _read(source)
            messages = read_messages(label, text)
        except InputError as err:
            typer.echo(str(err), err=True)
            unreadable = True
            continue
        for item in messages:
            problems = validate_message(item.document, kind.value, topic)
            counts["messages"] += 1
            for problem in problems:
                pointer = problem.pointer or "(root)"
                typer.echo(f"{label}:{item.line}: {problem.severity}: {pointer}: {problem.message}")
                counts["warnings"] += problem.severity == "warning"
            if not is_valid(problems):
                invalid = True
                counts["invalid"] += 1
    typer.echo(
        f"{counts['messages']} message(s): {counts['messages'] - counts['invalid']} valid, "
        f"{counts['invalid']} invalid, {counts['warnings']} warning(s)",
        err=True,
    )
    if unreadable:
        raise typer.Exit(EXIT_UNREADABLE)
    if invalid:
        raise typer.Exit(EXIT_INVALID)


def register(app: typer.Typer) -> None:
    """Add this layer's commands to the root app."""
    app.command("validate")(validate_command)
