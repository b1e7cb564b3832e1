"""`villageami dlms decode`: framing auto-detection, JSON content, deciphering, bad input (exit 2)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from villageami.cli import build_app
from villageami.dlms.errors import DecodeError
from villageami.dlms.translator import TranslatorKeys, parse_hex, translate

CORPUS_FILE = Path(__file__).resolve().parents[1] / "data" / "corpus" / "dlms" / "dlms-frames.jsonl"
VECTORS = [json.loads(line) for line in CORPUS_FILE.read_text().splitlines()]
runner = CliRunner()
DUMMY_KEY = b"MYDUMMYGLOBALKEY".hex()


def decode(*args: str, stdin: str | None = None) -> tuple[int, Any, str]:
    result = runner.invoke(build_app(), ["dlms", "decode", *args], input=stdin)
    parsed = json.loads(result.stdout) if result.exit_code == 0 else None
    return result.exit_code, parsed, result.stderr


def test_bare_apdu() -> None:
    code, out, _ = decode("c001c1000100002b0100ff0200")
    assert code == 0 and out["framing"] == "none"
    apdu = out["apdu"]
    assert apdu["apdu"] == "get-request-normal" and apdu["invoke_id"] == 1
    assert apdu["attribute"] == {"class_id": 1, "obis": "0-0:43.1.0.255", "attribute_id": 2}


def test_get_with_list_response_values() -> None:
    code, out, _ = decode("c403c10200091049534b3130333037373737363433363600090c07e50603040e091700ffc400")
    assert code == 0
    first, second = out["apdu"]["results"]
    assert first["data"]["ascii"] == "ISK1030777764366"
    assert second["data"]["date_time"] == "2021-06-03T14:09:23+01:00"


def test_hdlc_frame_with_aarq() -> None:
    hex_ = "7ea02c02232110af9fe6e600601da109060760857405080101be10040e01000000065f1f0400001e1dffffc5e47e"
    code, out, _ = decode(hex_)
    assert code == 0 and out["framing"] == "hdlc"
    (frame,) = out["frames"]
    assert (frame["kind"], frame["destination"], frame["source"], frame["control"]) == (
        "I",
        "1/17",
        "16",
        "0x10",
    )
    assert frame["llc"] == "e6e600"
    assert frame["apdu"]["apdu"] == "AARQ"
    assert frame["apdu"]["user_information"]["proposed_conformance"]["hex"] == "001e1d"


def test_hdlc_ua_parameters() -> None:
    code, out, _ = decode("7ea01f21022373e6c781801205019a06019a070400000001080400000001cca27e")
    assert code == 0
    assert out["frames"][0]["kind"] == "UA"
    assert out["frames"][0]["parameters"]["max_info_transmit"] == 154


def test_wrapper_general_glo_ciphering_deciphered() -> None:
    hex_ = next(v["hex"] for v in VECTORS if v["hex"].startswith("0001000100010046db"))
    code, out, _ = decode(hex_, "--ek", DUMMY_KEY, "--ak", DUMMY_KEY)
    assert code == 0 and out["framing"] == "wrapper"
    (frame,) = out["frames"]
    assert (frame["source_wport"], frame["destination_wport"], frame["length"]) == (1, 1, 70)
    apdu = frame["apdu"]
    assert apdu["apdu"] == "general-glo-ciphering" and apdu["invocation_counter"] == 485
    assert apdu["deciphered"]["apdu"] == "data-notification"
    code, out, _ = decode(hex_)
    assert code == 0 and "deciphered" not in out["frames"][0]["apdu"]


def test_dedicated_ciphered_apdu_with_system_title() -> None:
    code, out, _ = decode(
        "d4233000000001aa07a549f82e6b8eea919659d91689bf995be6f93c95a7208718a3b84ee4",
        "--ek",
        "00112233445566778899aabbccddeeff",
        "--ak",
        "00112233445566778899aabbccddeeff",
        "--dedicated-key",
        "5e168412318ba71848c99b2b2ab33294",
        "--system-title",
        "4c475a2022604828",
    )
    assert code == 0
    inner = out["apdu"]["deciphered"]
    assert inner["apdu"] == "get-response-normal"
    assert inner["result"]["data"]["date_time"] == "2023-02-15T17:55:21"


def test_wrong_key_reports_decipher_error() -> None:
    hex_ = next(v["hex"] for v in VECTORS if v["hex"].startswith("0001000100010046db"))
    code, out, _ = decode(hex_, "--ek", "00" * 16, "--ak", "00" * 16)
    assert code == 0
    assert "does not verify" in out["frames"][0]["apdu"]["decipher_error"]


def test_ciphered_aarq_uses_its_calling_title() -> None:
    vector = next(v for v in VECTORS if v["hex"].startswith("6066a109060760857405080103a60a04084d4d4d"))
    code, out, _ = decode(
        vector["hex"], "--ek", "000102030405060708090a0b0c0d0e0f", "--ak", "d0d1d2d3d4d5d6d7d8d9dadbdcdddedf"
    )
    assert code == 0
    info = out["apdu"]["user_information"]
    assert info["apdu"] == "glo-initiate-request"
    assert info["deciphered"]["apdu"] == "initiate-request"
    assert info["deciphered"]["dedicated_key"] == "00112233445566778899aabbccddeeff"


def test_stdin_with_whitespace_and_colons() -> None:
    code, out, _ = decode("-", stdin="c4:01:c1:00\n 06 00 00 13 91\n")
    assert code == 0 and out["apdu"]["result"]["data"]["value"] == 5009


def test_push_with_llc_header() -> None:
    hex_ = next(v["hex"] for v in VECTORS if v["hex"].startswith("e6e7000f40000000090c"))
    code, out, _ = decode(hex_)
    assert code == 0 and out["llc"] == "e6e700" and out["apdu"]["apdu"] == "data-notification"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["zz"], "non-hex character 'z'"),
        (["c40"], "odd number of digits"),
        ([""], "no hex input"),
        (["ff00"], "unknown or unsupported APDU tag 0xff"),
        (["7ea00802232193bd657e"], "no valid HDLC frame"),
        (["0001000100010046db08"], "truncated"),
        (["7ea00a03"], "truncated HDLC frame"),
        (["c401c10101", "--ek", "0011"], "--ek must be 16 octets"),
    ],
)
def test_bad_input_exits_2_with_one_line(args: list[str], message: str) -> None:
    code, _, err = decode(*args)
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and message in err


def test_every_corpus_vector_translates() -> None:
    for vector in VECTORS:
        data = bytes.fromhex(vector["hex"])
        expect = vector["expect"]
        if expect.get("reject") or vector["kind"] == "axdr":
            continue
        result = translate(data, TranslatorKeys())
        json.dumps(result)  # JSON-ready
        assert result["framing"] in ("none", "hdlc", "wrapper")


def test_parse_hex_forms() -> None:
    assert parse_hex("0x C0:01-c1") == b"\xc0\x01\xc1"
    with pytest.raises(DecodeError):
        parse_hex("0x")


def test_bare_axdr_value() -> None:
    code, out, _ = decode("02051202d0120ca81112111e0fc0")
    assert code == 0 and "apdu" not in out
    assert [item["value"] for item in out["data"]["items"]] == [720, 3240, 18, 30, -64]


def test_segmented_hdlc_frames_are_reassembled() -> None:
    from villageami.dlms.apdu import GetResponseNormal
    from villageami.dlms.axdr import Data
    from villageami.dlms.hdlc import FrameKind, HdlcFrame, client_address, control_octet, server_address

    payload = b"\xe6\xe7\x00" + GetResponseNormal(Data.octet_string(bytes(range(200)))).encode()
    client, server = client_address(16), server_address(1, 17)
    first = HdlcFrame(client, server, control_octet(FrameKind.I, send_seq=0, recv_seq=1), payload[:120], True)
    last = HdlcFrame(client, server, control_octet(FrameKind.I, send_seq=1, recv_seq=1), payload[120:], False)
    code, out, _ = decode((first.encode() + last.encode()).hex())
    assert code == 0
    assert out["frames"][0]["segmented"] and "apdu" not in out["frames"][0]
    reassembled = out["frames"][1]["reassembled"]
    assert reassembled["segments_octets"] == len(payload) and reassembled["llc"] == "e6e700"
    assert reassembled["apdu"]["result"]["data"]["value"] == bytes(range(200)).hex()
