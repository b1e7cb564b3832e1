"""Decode rate of a GET-with-list response of 10 registers: villageami vs gurux-dlms, same run.

The response carries what a gateway reads per meter: 10 results (energy, power, voltages, currents, frequency,
each a value or a {scaler, unit} structure, plus the clock). villageami decodes with ``decode_apdu`` and turns
the results into plain Python values; gurux-dlms (GPL-2.0, benchmark-only import) decodes the same bytes
with ``GXDLMSClient.getData`` (PDU interface, no framing), which also returns plain values.
Run: ``python bench/dlms_codec.py``.
"""

from __future__ import annotations

import os
import platform

from _common import rate
from villageami.dlms.apdu import GetResponseWithList, InvokeIdAndPriority, decode_apdu
from villageami.dlms.axdr import CosemDateTime, Data, DataType


def ten_register_response() -> bytes:
    def scaler_unit(scaler: int, unit: int) -> Data:
        return Data.structure([Data(DataType.INTEGER, scaler), Data(DataType.ENUM, unit)])

    results = (
        Data(DataType.DOUBLE_LONG_UNSIGNED, 1842512),  # 1.8.0 Wh
        scaler_unit(0, 30),
        Data(DataType.DOUBLE_LONG_UNSIGNED, 3250),  # 2.8.0 Wh
        Data(DataType.DOUBLE_LONG, 412),  # 1.7.0 W
        Data(DataType.LONG_UNSIGNED, 2298),  # 32.7.0 V x0.1
        scaler_unit(-1, 35),
        Data(DataType.LONG_UNSIGNED, 1250),  # 31.7.0 A x0.01
        Data(DataType.LONG_UNSIGNED, 5001),  # 14.7.0 Hz x0.01
        Data(DataType.DOUBLE_LONG_UNSIGNED, 99),  # 0.0.96.7.21 power failures
        Data.date_time(CosemDateTime(2026, 6, 22, 1, 15, 30, 2, 0, -60, 0)),  # clock
    )
    return GetResponseWithList(results, InvokeIdAndPriority(1)).encode()


def main() -> None:
    message = ten_register_response()

    def villageami_decode() -> object:
        apdu = decode_apdu(message)
        assert isinstance(apdu, GetResponseWithList)
        return [r.to_python() for r in apdu.results if isinstance(r, Data)]

    ours = rate(villageami_decode)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}")  # fmt: skip
    print(f"message: GET-with-list response, 10 results, {len(message)} octets")
    print(f"villageami decode_apdu:       {ours:12,.0f} APDUs/s")
    try:
        from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData
        from gurux_dlms.enums import Authentication, InterfaceType
    except ImportError:
        print("gurux-dlms not installed (pip install -e '.[dev]'): no comparison")
        return

    client = GXDLMSClient(True, 16, 1, Authentication.NONE, None, InterfaceType.PDU)

    def gurux_decode() -> object:
        reply = GXReplyData()
        client.getData(GXByteBuffer(message), reply, None)
        return reply.value

    expected = villageami_decode()
    got = gurux_decode()
    assert [v if not isinstance(v, bytearray) else bytes(v) for v in got] == expected, "decoders disagree"
    theirs = rate(gurux_decode)
    print(f"gurux-dlms GXDLMSClient.getData: {theirs:9,.0f} APDUs/s")
    print(f"ratio villageami / gurux-dlms: {ours / theirs:.1f}x")


if __name__ == "__main__":
    main()
