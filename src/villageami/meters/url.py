"""Meter URLs: one string names the protocol, the path to the meter and its addressing.

- ``dlms+tcp://HOST:PORT?client=16&server=1&auth=none|low|hls-gmac``: DLMS over the IEC 62056-47 wrapper
- ``dlms+hdlc:///dev/ttyX?baud=9600&client=16&server=1&physical=17``: DLMS over HDLC on a serial port
- ``dlms+hdlc+tcp://HOST:PORT?...``: DLMS over HDLC through a TCP serial server
- ``modbus+tcp://HOST:PORT?unit=1``: Modbus TCP
- ``modbus+rtu:///dev/ttyX?baud=9600&parity=N&unit=1``: Modbus RTU on a serial port
- ``iec21:///dev/ttyX``: IEC 62056-21 mode C on a serial port
- ``iec21+tcp://HOST:PORT``: IEC 62056-21 through a TCP serial server

Every scheme accepts ``timeout`` (seconds). DLMS also takes ``password`` (LLS) and, for HLS-GMAC, ``key``
(authentication key, hex), ``ekey`` (encryption key, hex) and ``title`` (client system title, hex). A wrong
URL raises :class:`UrlError` with one message naming the problem; passwords and keys never appear in it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from urllib.parse import parse_qsl, urlsplit

from villageami.errors import VillageAmiError

__all__ = ["MeterUrl", "Scheme", "UrlError", "parse_meter_url"]

SECRET_PARAMS = frozenset({"password", "key", "ekey"})
_COMMON = {"timeout"}
_DLMS = {"client", "server", "auth", "password", "key", "ekey", "title", "max_list"}
_SERIAL = {"baud", "parity", "data_bits", "stop_bits"}


class UrlError(VillageAmiError):
    """A meter URL that cannot be used; the message names the problem (secrets redacted)."""


class Scheme(StrEnum):
    DLMS_TCP = "dlms+tcp"
    DLMS_HDLC = "dlms+hdlc"
    DLMS_HDLC_TCP = "dlms+hdlc+tcp"
    MODBUS_TCP = "modbus+tcp"
    MODBUS_RTU = "modbus+rtu"
    IEC21 = "iec21"
    IEC21_TCP = "iec21+tcp"

    @property
    def protocol(self) -> str:
        return self.value.split("+", 1)[0]

    @property
    def over_tcp(self) -> bool:
        return self.value.endswith("+tcp")


_ALLOWED: dict[Scheme, set[str]] = {
    Scheme.DLMS_TCP: _COMMON | _DLMS,
    Scheme.DLMS_HDLC: _COMMON | _DLMS | {"physical", "baud"},
    Scheme.DLMS_HDLC_TCP: _COMMON | _DLMS | {"physical"},
    Scheme.MODBUS_TCP: _COMMON | {"unit", "max_gap"},
    Scheme.MODBUS_RTU: _COMMON | _SERIAL | {"unit", "max_gap"},
    Scheme.IEC21: _COMMON | {"framing", "baud"},
    Scheme.IEC21_TCP: _COMMON,
}
_EXAMPLES = {
    Scheme.DLMS_TCP: "dlms+tcp://HOST:PORT?client=16&server=1",
    Scheme.DLMS_HDLC: "dlms+hdlc:///dev/ttyUSB0?baud=9600&client=16&server=1",
    Scheme.DLMS_HDLC_TCP: "dlms+hdlc+tcp://HOST:PORT?client=16&server=1",
    Scheme.MODBUS_TCP: "modbus+tcp://HOST:PORT?unit=1",
    Scheme.MODBUS_RTU: "modbus+rtu:///dev/ttyUSB0?baud=9600&unit=1",
    Scheme.IEC21: "iec21:///dev/ttyUSB0",
    Scheme.IEC21_TCP: "iec21+tcp://HOST:PORT",
}
_RANGES: dict[str, tuple[int, int]] = {
    "unit": (0, 247),
    "client": (0, 127),
    "server": (0, 16383),
    "physical": (0, 16383),
    "baud": (50, 4_000_000),
    "data_bits": (7, 8),
    "stop_bits": (1, 2),
    "max_gap": (0, 64),
    "max_list": (1, 64),
}
_CHOICES: dict[str, tuple[str, ...]] = {
    "auth": ("none", "low", "hls-gmac"),
    "parity": ("N", "E", "O"),
    "framing": ("7E1", "8N1"),
}


def redact(url: str) -> str:
    """The URL with secret parameter values replaced, for messages and logs."""
    head, sep, query = url.partition("?")
    if not sep:
        return url
    parts = []
    for item in query.split("&"):
        name, eq, _ = item.partition("=")
        parts.append(f"{name}=***" if eq and name in SECRET_PARAMS else item)
    return head + "?" + "&".join(parts)


@dataclass(frozen=True, slots=True)
class MeterUrl:
    """A parsed meter URL. ``device`` for serial schemes; ``host``/``port`` for TCP schemes."""

    scheme: Scheme
    host: str | None
    port: int | None
    device: str | None
    params: dict[str, str] = field(default_factory=dict)
    text: str = ""

    @property
    def protocol(self) -> str:
        return self.scheme.protocol

    @property
    def serial_port(self) -> str | None:
        """The serial device meters share (None over TCP): the key the bus arbiter serialises on."""
        return self.device

    @property
    def endpoint(self) -> str:
        return self.device if self.device is not None else f"{self.host}:{self.port}"

    def __str__(self) -> str:
        return redact(self.text)

    def int_param(self, name: str, default: int) -> int:
        return int(self.params[name]) if name in self.params else default

    def opt_int(self, name: str) -> int | None:
        return int(self.params[name]) if name in self.params else None

    def float_param(self, name: str, default: float) -> float:
        return float(self.params[name]) if name in self.params else default

    def str_param(self, name: str, default: str) -> str:
        return self.params.get(name, default)


def _fail(url: str, problem: str) -> UrlError:
    return UrlError(f"meter URL {redact(url)!r}: {problem}")


def parse_meter_url(url: str) -> MeterUrl:
    """Parse and check a meter URL. Raises UrlError naming the first problem."""
    if not isinstance(url, str) or not url.strip():
        raise UrlError("meter URL is empty")
    text = url.strip()
    if "://" not in text:
        raise _fail(text, f"no scheme; use one of {', '.join(s.value for s in Scheme)}")
    raw_scheme = text.split("://", 1)[0].lower()
    try:
        scheme = Scheme(raw_scheme)
    except ValueError:
        known = ", ".join(s.value for s in Scheme)
        raise _fail(text, f"unknown scheme {raw_scheme!r}; use one of {known}") from None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as err:
        raise _fail(text, f"bad host or port ({err}); e.g. {_EXAMPLES[scheme]}") from None
    if parts.fragment:
        raise _fail(text, "a meter URL has no #fragment")

    host: str | None = None
    device: str | None = None
    if scheme.over_tcp:
        if not parts.hostname:
            raise _fail(text, f"needs a host; e.g. {_EXAMPLES[scheme]}")
        if port is None:
            raise _fail(text, f"needs a port; e.g. {_EXAMPLES[scheme]}")
        if parts.path not in ("", "/"):
            raise _fail(text, f"a TCP meter URL has no path ({parts.path!r})")
        host = parts.hostname
    else:
        if parts.netloc:
            raise _fail(text, f"a serial URL has an empty host and a device path, e.g. {_EXAMPLES[scheme]}")
        if not parts.path or parts.path == "/":
            raise _fail(text, f"needs a serial device path; e.g. {_EXAMPLES[scheme]}")
        device = parts.path

    params: dict[str, str] = {}
    for name, value in parse_qsl(parts.query, keep_blank_values=True, strict_parsing=False):
        if name in params:
            raise _fail(text, f"parameter {name!r} is given twice")
        params[name] = value
    unknown = sorted(set(params) - _ALLOWED[scheme])
    if unknown:
        allowed = ", ".join(sorted(_ALLOWED[scheme]))
        raise _fail(text, f"unknown parameter {unknown[0]!r} for {scheme}; allowed: {allowed}")
    for name, value in params.items():
        _check_param(text, name, value)
    if scheme is Scheme.MODBUS_RTU and int(params.get("unit", "1")) == 0:
        # Unit 0 is the RTU broadcast address: no meter answers a read sent to it.
        raise _fail(text, "parameter unit=0 is the Modbus RTU broadcast address; use 1..247")
    if params.get("auth") == "low" and "password" not in params:
        raise _fail(text, "auth=low needs password=...")
    if params.get("auth") == "hls-gmac" and not {"key", "ekey"} <= set(params):
        raise _fail(text, "auth=hls-gmac needs key=HEX and ekey=HEX")
    return MeterUrl(scheme=scheme, host=host, port=port, device=device, params=params, text=text)


def _check_param(url: str, name: str, value: str) -> None:
    if name in _RANGES:
        low, high = _RANGES[name]
        try:
            number = int(value)
        except ValueError:
            raise _fail(url, f"parameter {name}={value!r} is not an integer") from None
        if not low <= number <= high:
            raise _fail(url, f"parameter {name}={number} is outside {low}..{high}")
    elif name in _CHOICES:
        if value not in _CHOICES[name]:
            raise _fail(url, f"parameter {name}={value!r} must be one of {', '.join(_CHOICES[name])}")
    elif name == "timeout":
        try:
            seconds = float(value)
        except ValueError:
            raise _fail(url, f"parameter timeout={value!r} is not a number of seconds") from None
        if not 0 < seconds <= 600:
            raise _fail(url, f"parameter timeout={seconds} must be in (0, 600] seconds")
    elif name in ("key", "ekey", "title"):
        try:
            bytes.fromhex(value)
        except ValueError:
            raise _fail(url, f"parameter {name} is not hex") from None
