"""Human-readable JSON for DLMS traffic: HDLC frames, wrapper PDUs or bare APDUs (``villageami dlms decode``).

``translate(data, keys)`` auto-detects the framing (HDLC starts and ends with 0x7E, the wrapper starts with
version 0x0001 and a matching length, anything else is a bare APDU, optionally behind an LLC header) and
returns a JSON-ready dict. With keys, ciphered APDUs are deciphered and shown as well.
"""

from __future__ import annotations

import contextlib
import string
from dataclasses import dataclass, fields
from enum import Enum
from typing import Any

from villageami.dlms.apdu import (
    LLC_HEADERS,
    Aare,
    Aarq,
    AccessSelection,
    Apdu,
    AttributeDescriptor,
    CipheredApdu,
    ConfirmedServiceError,
    Conformance,
    DataAccessResult,
    GeneralGloCiphering,
    InvokeIdAndPriority,
    MethodDescriptor,
    RangeDescriptor,
    decode_apdu,
)
from villageami.dlms.axdr import (
    CompactArray,
    CosemDate,
    CosemDateTime,
    CosemTime,
    Data,
    DataType,
    decode_data,
    ln_to_str,
)
from villageami.dlms.errors import CipheringError, DecodeError, DlmsError
from villageami.dlms.hdlc import FrameKind, HdlcFrame, HdlcParameters, HdlcStreamDecoder
from villageami.dlms.security import decrypt
from villageami.dlms.wrapper import HEADER_LENGTH, WRAPPER_VERSION, WrapperStreamDecoder


@dataclass(frozen=True, slots=True)
class TranslatorKeys:
    """Keys for deciphering; ``system_title`` is used when the APDU does not carry the sender's title."""

    encryption_key: bytes | None = None
    authentication_key: bytes | None = None
    system_title: bytes | None = None
    dedicated_key: bytes | None = None


def parse_hex(text: str) -> bytes:
    """Hex text that may contain whitespace, colons, dashes or a 0x prefix -> bytes. Raises DecodeError."""
    cleaned = "".join(text.split()).replace(":", "").replace("-", "")
    if cleaned[:2].lower() == "0x":
        cleaned = cleaned[2:]
    if not cleaned:
        raise DecodeError("no hex input given")
    if len(cleaned) % 2:
        raise DecodeError(f"hex input has an odd number of digits ({len(cleaned)})")
    bad = next((c for c in cleaned if c not in string.hexdigits), None)
    if bad is not None:
        raise DecodeError(f"hex input contains the non-hex character {bad!r}")
    return bytes.fromhex(cleaned)


# --------------------------------------------------------------------------- values


def _printable(raw: bytes) -> bool:
    return bool(raw) and all(32 <= b < 127 for b in raw)


def data_to_json(data: Data) -> dict[str, Any]:
    t = data.type
    out: dict[str, Any] = {"type": t.label}
    value = data.value
    if t in (DataType.ARRAY, DataType.STRUCTURE):
        out["items"] = [data_to_json(item) for item in value]
    elif t is DataType.COMPACT_ARRAY:
        assert isinstance(value, CompactArray)
        out["items"] = [data_to_json(item) for item in value.elements]
    elif t is DataType.OCTET_STRING:
        out["value"] = value.hex()
        if len(value) == 6:
            out["obis"] = ln_to_str(value)
        if len(value) == 12:
            with contextlib.suppress(DecodeError):
                out["date_time"] = str(CosemDateTime.decode_raw(value).to_datetime().isoformat())
        if _printable(value):
            out["ascii"] = value.decode("ascii")
    elif isinstance(value, CosemDateTime | CosemDate | CosemTime):
        out["value"] = value.encode_raw().hex()
        if isinstance(value, CosemDateTime):
            out["date_time"] = str(value)
    elif t in (DataType.NULL_DATA, DataType.DONT_CARE):
        pass
    else:
        out["value"] = value
    return out


def _result_json(result: Data | DataAccessResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    if isinstance(result, DataAccessResult):
        return {"data_access_result": result.label, "code": int(result)}
    return {"data": data_to_json(result)}


def _descriptor_json(descriptor: AttributeDescriptor | MethodDescriptor) -> dict[str, Any]:
    out: dict[str, Any] = {"class_id": descriptor.class_id, "obis": descriptor.obis}
    if isinstance(descriptor, AttributeDescriptor):
        out["attribute_id"] = descriptor.attribute_id
    else:
        out["method_id"] = descriptor.method_id
    return out


def _access_json(access: AccessSelection | None) -> dict[str, Any] | None:
    if access is None:
        return None
    out: dict[str, Any] = {"selector": access.selector, "parameters": data_to_json(access.parameters)}
    if access.selector == 1:
        try:
            rd: RangeDescriptor | None = access.range_descriptor
        except DecodeError:
            rd = None
        if rd is not None:
            out["range_descriptor"] = {
                "restricting_object": {
                    "class_id": rd.restricting_object.class_id,
                    "obis": ln_to_str(rd.restricting_object.logical_name),
                    "attribute_id": rd.restricting_object.attribute_id,
                    "data_index": rd.restricting_object.data_index,
                },
                "from": data_to_json(rd.from_value),
                "to": data_to_json(rd.to_value),
                "selected_values": len(rd.selected_values),
            }
    elif access.selector == 2:
        try:
            entry = access.entry_descriptor
        except DecodeError:
            entry = None
        if entry is not None:
            out["entry_descriptor"] = {f.name: getattr(entry, f.name) for f in fields(entry)}
    return out


def _field_json(name: str, value: Any, keys: TranslatorKeys, context: dict[str, Any]) -> Any:
    if isinstance(value, Data):
        return data_to_json(value)
    if isinstance(value, DataAccessResult):
        return {"data_access_result": value.label, "code": int(value)}
    if isinstance(value, Conformance):
        return {"hex": int(value).to_bytes(3, "big").hex(), "names": value.names()}
    if isinstance(value, Enum):
        return getattr(value, "label", value.name.lower())
    if isinstance(value, AttributeDescriptor | MethodDescriptor):
        return _descriptor_json(value)
    if isinstance(value, AccessSelection):
        return _access_json(value)
    if isinstance(value, Apdu):
        return apdu_to_json(value, keys, context)
    if isinstance(value, CosemDateTime):
        return {"value": value.encode_raw().hex(), "date_time": str(value)}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple):
        return [_field_json(name, v, keys, context) for v in value]
    return value


def apdu_to_json(
    apdu: Apdu, keys: TranslatorKeys | None = None, context: dict[str, Any] | None = None
) -> dict[str, Any]:
    """A JSON-ready description of one APDU (deciphered too when the keys allow)."""
    keys = keys or TranslatorKeys()
    context = context if context is not None else {}
    out: dict[str, Any] = {"apdu": apdu.name}
    if isinstance(apdu, Aarq) and apdu.calling_ap_title:
        context["client_system_title"] = apdu.calling_ap_title
    if isinstance(apdu, Aare) and apdu.responding_ap_title:
        context["server_system_title"] = apdu.responding_ap_title
    for f in fields(apdu):
        value = getattr(apdu, f.name)
        if isinstance(value, InvokeIdAndPriority):
            out["invoke_id"] = value.invoke_id
            out["service_class"] = "confirmed" if value.confirmed else "unconfirmed"
            out["priority"] = "high" if value.high_priority else "normal"
        elif f.name == "attributes" and isinstance(value, tuple):
            out["attributes"] = [
                {**_descriptor_json(descriptor), "access_selection": _access_json(access)}
                for descriptor, access in value
            ]
        elif f.name in ("result", "return_parameters") and not isinstance(value, Enum):
            out[f.name] = _result_json(value)
        elif f.name == "results":
            out["results"] = [_result_json(r) for r in value]
        else:
            out[f.name] = _field_json(f.name, value, keys, context)
    if isinstance(apdu, Aare):
        out["diagnostic_name"] = apdu.diagnostic_name
    if isinstance(apdu, ConfirmedServiceError):
        out["value_name"] = apdu.value_name
    if isinstance(apdu, CipheredApdu | GeneralGloCiphering):
        out.update(_decipher(apdu, keys, context))
    return out


def _decipher(
    apdu: CipheredApdu | GeneralGloCiphering, keys: TranslatorKeys, context: dict[str, Any]
) -> dict[str, Any]:
    if keys.encryption_key is None:
        return {}
    if isinstance(apdu, GeneralGloCiphering):
        title: bytes | None = apdu.system_title
    else:
        # Requests are ciphered with the client's title, responses with the server's.
        is_request = apdu.name.endswith("request") or apdu.name == "glo-initiate-request"
        title = (
            context.get("client_system_title" if is_request else "server_system_title") or keys.system_title
        )
    if title is None:
        return {"decipher_error": "the sender's system title is unknown: pass --system-title"}
    dedicated = apdu.name.startswith(("ded-", "general-ded"))
    key = keys.dedicated_key if dedicated else keys.encryption_key
    if key is None:
        return {"decipher_error": "a dedicated-key ciphered APDU needs --dedicated-key"}
    try:
        plaintext = decrypt(
            apdu.ciphered_text,
            security_control=apdu.security_control,
            system_title=title,
            invocation_counter=apdu.invocation_counter,
            encryption_key=key,
            authentication_key=keys.authentication_key or b"",
        )
        inner = decode_apdu(plaintext)
    except (CipheringError, DecodeError) as exc:
        return {"decipher_error": str(exc)}
    return {"plaintext": plaintext.hex(), "deciphered": apdu_to_json(inner, keys, context)}


# --------------------------------------------------------------------------- frames


def _apdu_payload(payload: bytes, keys: TranslatorKeys, context: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if payload[:3] in LLC_HEADERS:
        out["llc"] = payload[:3].hex()
        payload = payload[3:]
    if payload:
        try:
            out["apdu"] = apdu_to_json(decode_apdu(payload), keys, context)
        except DecodeError as exc:
            out["apdu_error"] = str(exc)
            out["payload"] = payload.hex()
    return out


def _hdlc_frame_json(frame: HdlcFrame, keys: TranslatorKeys, context: dict[str, Any]) -> dict[str, Any]:
    kind = frame.kind
    out: dict[str, Any] = {
        "frame": "hdlc",
        "kind": kind.value,
        "destination": str(frame.destination),
        "source": str(frame.source),
        "control": f"0x{frame.control:02x}",
        "poll_final": frame.poll_final,
        "segmented": frame.segmented,
    }
    if kind is FrameKind.I:
        out["send_seq"], out["recv_seq"] = frame.send_seq, frame.recv_seq
    elif kind in (FrameKind.RR, FrameKind.RNR):
        out["recv_seq"] = frame.recv_seq
    info = frame.information
    if not info:
        return out
    if kind in (FrameKind.SNRM, FrameKind.UA):
        try:
            params = HdlcParameters.decode(info)
            out["parameters"] = {f.name: getattr(params, f.name) for f in fields(params)}
        except DecodeError as exc:
            out["information"], out["parameters_error"] = info.hex(), str(exc)
    elif frame.segmented or (kind is FrameKind.I and info[:3] not in LLC_HEADERS):
        out["information"] = info.hex()  # a segment: the APDU spans several frames
    else:
        out.update(_apdu_payload(info, keys, context))
    return out


def _reassemble_segments(
    frames: list[HdlcFrame], described: list[dict[str, Any]], keys: TranslatorKeys, context: dict[str, Any]
) -> None:
    """Join the information fields of segmented I/UI frames; decode the APDU at the last segment."""
    pending: dict[tuple[str, str], bytes] = {}
    for frame, out in zip(frames, described, strict=True):
        if frame.kind not in (FrameKind.I, FrameKind.UI) or not frame.information:
            continue
        direction = (str(frame.source), str(frame.destination))
        if frame.segmented:
            pending[direction] = pending.get(direction, b"") + frame.information
        elif direction in pending:
            joined = pending.pop(direction) + frame.information
            out["reassembled"] = {"segments_octets": len(joined), **_apdu_payload(joined, keys, context)}


def _looks_like_wrapper(data: bytes) -> bool:
    # No APDU tag is 0x00, so a leading 00 01 can only be the wrapper version.
    return len(data) >= HEADER_LENGTH and int.from_bytes(data[0:2], "big") == WRAPPER_VERSION


def translate(data: bytes, keys: TranslatorKeys | None = None) -> dict[str, Any]:
    """Decode HDLC frames, wrapper PDUs or one bare APDU. Raises DecodeError when nothing decodes."""
    keys = keys or TranslatorKeys()
    context: dict[str, Any] = {}
    if not data:
        raise DecodeError("empty input")
    if len(data) >= 2 and data[-1] == 0x7E and (data[0] == 0x7E or 0x7E in data[:-1]):
        # Starts and ends with a flag; junk before the first flag (a reader joining mid-stream) is skipped.
        decoder = HdlcStreamDecoder()
        frames = decoder.feed(data)
        if not frames and data[0] != 0x7E:
            return _bare_apdu(data, keys, context)
        if not frames:
            raise DecodeError(
                "input starts and ends with 0x7E but holds no valid HDLC frame (check FCS/length)"
            )
        result: dict[str, Any] = {
            "framing": "hdlc",
            "frames": [_hdlc_frame_json(f, keys, context) for f in frames],
        }
        _reassemble_segments(frames, result["frames"], keys, context)
        if decoder.skipped_octets:
            result["skipped_octets"] = decoder.skipped_octets
        return result
    if data[0] == 0x7E:
        # No APDU or A-XDR tag is 0x7E, so this is an HDLC frame cut short (a capture that stopped early).
        raise DecodeError(
            f"input starts with the HDLC flag 0x7E but does not end with one: truncated HDLC frame "
            f"({len(data)} octets)"
        )
    if _looks_like_wrapper(data):
        try:
            pdus = WrapperStreamDecoder().feed(data)
        except DecodeError as exc:
            raise DecodeError(f"wrapper input: {exc}") from None
        if not pdus or sum(HEADER_LENGTH + p.length for p in pdus) != len(data):
            raise DecodeError("wrapper input is truncated: the length field asks for more octets than given")
        return {
            "framing": "wrapper",
            "frames": [
                {
                    "frame": "wrapper",
                    "version": p.version,
                    "source_wport": p.source_wport,
                    "destination_wport": p.destination_wport,
                    "length": p.length,
                    **_apdu_payload(p.payload, keys, context),
                }
                for p in pdus
            ],
        }
    return _bare_apdu(data, keys, context)


def _bare_apdu(data: bytes, keys: TranslatorKeys, context: dict[str, Any]) -> dict[str, Any]:
    payload = data
    out: dict[str, Any] = {"framing": "none"}
    if payload[:3] in LLC_HEADERS:
        out["llc"] = payload[:3].hex()
        payload = payload[3:]
    try:
        out["apdu"] = apdu_to_json(decode_apdu(payload), keys, context)
    except DlmsError as exc:
        try:  # not an APDU: perhaps a bare A-XDR value (an attribute as read from a capture)
            out["data"] = data_to_json(decode_data(payload))
        except DlmsError:
            raise DecodeError(f"not an HDLC frame, wrapper PDU, APDU or A-XDR value: {exc}") from None
    return out
