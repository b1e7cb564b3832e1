"""Meter URL parsing: every scheme, and one clear error per kind of mistake."""

from __future__ import annotations

import pytest

from villageami.errors import VillageAmiError
from villageami.meters.url import Scheme, UrlError, parse_meter_url


def test_every_scheme_parses() -> None:
    tcp = parse_meter_url("dlms+tcp://10.0.0.5:4059?client=16&server=1&auth=none")
    assert (tcp.scheme, tcp.host, tcp.port, tcp.device) == (Scheme.DLMS_TCP, "10.0.0.5", 4059, None)
    assert tcp.int_param("client", 0) == 16 and tcp.protocol == "dlms"
    hdlc = parse_meter_url(
        "dlms+hdlc:///dev/ttyUSB0?baud=9600&client=17&server=1&physical=17&auth=low&password=x"
    )
    assert (hdlc.scheme, hdlc.device, hdlc.serial_port) == (Scheme.DLMS_HDLC, "/dev/ttyUSB0", "/dev/ttyUSB0")
    assert hdlc.int_param("baud", 0) == 9600 and hdlc.opt_int("physical") == 17
    over_tcp = parse_meter_url("dlms+hdlc+tcp://gw.local:7000?server=1")
    assert (over_tcp.scheme, over_tcp.host, over_tcp.port) == (Scheme.DLMS_HDLC_TCP, "gw.local", 7000)
    mb = parse_meter_url("modbus+tcp://127.0.0.1:5020?unit=3")
    assert (mb.scheme, mb.int_param("unit", 1), mb.serial_port) == (Scheme.MODBUS_TCP, 3, None)
    rtu = parse_meter_url("modbus+rtu:///dev/ttyS1?baud=2400&parity=E&unit=7")
    assert (rtu.device, rtu.str_param("parity", "N"), rtu.int_param("unit", 1)) == ("/dev/ttyS1", "E", 7)
    assert parse_meter_url("iec21:///dev/ttyUSB1").device == "/dev/ttyUSB1"
    assert parse_meter_url("iec21+tcp://[::1]:8000").host == "::1"
    gmac = parse_meter_url("dlms+tcp://h:1?auth=hls-gmac&key=000102&ekey=0a0b&title=4d4d4d0000000001")
    assert gmac.params["title"] == "4d4d4d0000000001"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("", "meter URL is empty"),
        ("127.0.0.1:502", "no scheme; use one of dlms+tcp"),
        ("http://x:1", "unknown scheme 'http'"),
        ("modbus+tcp://127.0.0.1?unit=1", "needs a port; e.g. modbus+tcp://HOST:PORT?unit=1"),
        ("modbus+tcp://:502", "needs a host"),
        ("modbus+tcp://h:99999", "bad host or port"),
        ("modbus+tcp://h:502/x", "has no path"),
        ("modbus+rtu://dev/ttyS0", "empty host and a device path"),
        ("modbus+rtu:///", "needs a serial device path"),
        ("modbus+tcp://h:502?unit=300", "parameter unit=300 is outside 0..247"),
        ("modbus+tcp://h:502?unit=one", "parameter unit='one' is not an integer"),
        ("modbus+tcp://h:502?baud=9600", "unknown parameter 'baud' for modbus+tcp"),
        ("modbus+tcp://h:502?unit=1&unit=2", "parameter 'unit' is given twice"),
        ("modbus+rtu:///dev/ttyS0?parity=X", "parameter parity='X' must be one of N, E, O"),
        ("dlms+tcp://h:4059?auth=hls", "parameter auth='hls' must be one of none, low, hls-gmac"),
        ("dlms+tcp://h:4059?auth=low", "auth=low needs password"),
        ("dlms+tcp://h:4059?auth=hls-gmac&key=00", "auth=hls-gmac needs key=HEX and ekey=HEX"),
        ("dlms+tcp://h:4059?key=zz", "parameter key is not hex"),
        ("dlms+tcp://h:4059?timeout=0", "timeout=0.0 must be in (0, 600]"),
        ("iec21+tcp://h:1?framing=7E1", "unknown parameter 'framing' for iec21+tcp"),
        ("modbus+tcp://h:502#frag", "no #fragment"),
    ],
)
def test_wrong_urls_give_one_clear_error(url: str, problem: str) -> None:
    with pytest.raises(UrlError) as caught:
        parse_meter_url(url)
    assert problem in str(caught.value)
    assert isinstance(caught.value, VillageAmiError)
    assert "\n" not in str(caught.value)


def test_secrets_never_appear_in_errors_or_str() -> None:
    with pytest.raises(UrlError) as caught:
        parse_meter_url("dlms+tcp://h:4059?password=hunter2&client=999")
    assert "hunter2" not in str(caught.value) and "password=***" in str(caught.value)
    url = parse_meter_url("dlms+tcp://h:4059?auth=low&password=hunter2")
    assert "hunter2" not in str(url) and url.params["password"] == "hunter2"
