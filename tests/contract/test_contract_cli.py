"""`villageami validate`: exit codes, pointers, JSON Lines, stdin, file:line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from contract_cases import INVALID, TELEMETRY, TOPICS, upstream_example
from typer.testing import CliRunner

from villageami.cli import build_app

runner = CliRunner()


def run(*args: str, stdin: str | None = None) -> tuple[int, str, str]:
    result = runner.invoke(build_app(), ["validate", *args], input=stdin)
    return result.exit_code, result.stdout, result.stderr


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return str(path)


def test_valid_file_exits_0_with_warnings_printed(tmp_path: Path) -> None:
    path = write(tmp_path, "up.json", json.dumps(upstream_example(), indent=2))
    code, out, err = run(path)
    assert code == 0, out + err
    assert f"{path}:1: warning: /registers/2/obis: " in out
    assert "1 message(s): 1 valid, 0 invalid" in err


def test_invalid_message_exits_1_with_pointer_and_line(tmp_path: Path) -> None:
    bad = next(c for c in INVALID if c.name == "energy in Wh").message
    path = write(tmp_path, "msgs.jsonl", json.dumps(TELEMETRY) + "\n\n" + json.dumps(bad) + "\n")
    code, out, _ = run("--kind", "telemetry", path)
    assert code == 1
    assert f"{path}:3: error: /registers/0/unit: unit 'Wh' does not fit 1.8.0" in out
    assert f"{path}:1:" not in out


def test_unparsable_line_exits_2_naming_file_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "broken.jsonl", json.dumps(TELEMETRY) + "\n{not json\n")
    code, _, err = run(path)
    assert code == 2
    assert f"{path}:2: not valid JSON" in err


def test_broken_pretty_json_names_its_line(tmp_path: Path) -> None:
    text = json.dumps(TELEMETRY, indent=2).replace('"seq": 1041', '"seq": 1041,,', 1)
    path = write(tmp_path, "pretty.json", text)
    code, _, err = run(path)
    assert code == 2
    line = next(i for i, row in enumerate(text.splitlines(), 1) if ",," in row)
    assert f"{path}:{line}: not valid JSON" in err


def test_missing_file_exits_2_and_other_files_still_checked(tmp_path: Path) -> None:
    good = write(tmp_path, "good.json", json.dumps(TELEMETRY))
    code, _, err = run(str(tmp_path / "absent.json"), good)
    assert code == 2
    assert "absent.json: cannot read" in err
    assert "1 message(s): 1 valid" in err


def test_empty_input_exits_2(tmp_path: Path) -> None:
    code, _, err = run(write(tmp_path, "empty.json", "  \n"))
    assert code == 2 and "no JSON message" in err


def test_stdin_and_topic() -> None:
    code, out, _ = run("--topic", TOPICS["telemetry"], "-", stdin=json.dumps(TELEMETRY) + "\n")
    assert code == 0, out
    code, out, _ = run(
        "--topic",
        "openami/v1/other/pole-ems-0042/meter/DS1000-88421/telemetry",
        "-",
        stdin=json.dumps(TELEMETRY),
    )
    assert code == 1
    assert "<stdin>:1: error: /feederId:" in out


def test_root_problem_is_labelled() -> None:
    code, out, _ = run("-", stdin="[1, 2]")
    assert code == 1
    assert "<stdin>:1: error: (root): " in out


def test_unknown_kind_option_is_a_usage_error(tmp_path: Path) -> None:
    code, _, _ = run("--kind", "bogus", write(tmp_path, "m.json", json.dumps(TELEMETRY)))
    assert code == 2


def test_entry_point_subprocess(tmp_path: Path) -> None:
    path = write(tmp_path, "m.json", json.dumps(TELEMETRY))
    done = subprocess.run(
        [sys.executable, "-c", "from villageami.cli import main; main()", "validate", path],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr


def test_nan_is_not_json() -> None:
    code, _, err = run("-", stdin='{"registers": [{"obis": "1.8.0", "value": NaN}]}')
    assert code == 2
    assert "<stdin>:1: not valid JSON" in err
