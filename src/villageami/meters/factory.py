"""``open_driver(url, profile)``: the one place that turns a meter URL and a profile into a driver.

URL parameters win over profile defaults (unit id, baud rate, DLMS addresses). With a :class:`BusArbiter`,
every meter on a serial port shares one port object and one lock, and TCP meters share a concurrency bound;
without one, the driver talks to its meter directly (``villageami read``).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from villageami.meters.bus import BusArbiter
from villageami.meters.counters import InvocationCounterStore
from villageami.meters.driver import MeterDriver
from villageami.meters.modbus_driver import ModbusDriver, PymodbusChannel
from villageami.meters.profile import Profile, ProfileError, ProfileIssue, load_profile
from villageami.meters.profile import Protocol as ProfileProtocol
from villageami.meters.url import MeterUrl, Scheme, UrlError, parse_meter_url

__all__ = ["SerialPorts", "open_driver"]

DEFAULT_TIMEOUT = {"modbus": 2.0, "dlms": 10.0, "iec21": 5.0}


class SerialPorts:
    """One shared Modbus channel per serial device, so several meters on an RS-485 port share it."""

    def __init__(self) -> None:
        self._channels: dict[str, PymodbusChannel] = {}

    def modbus_rtu(self, url: MeterUrl, profile: Profile, timeout: float) -> PymodbusChannel:
        assert url.device is not None
        channel = self._channels.get(url.device)
        if channel is None:
            serial = profile.defaults.serial
            channel = PymodbusChannel.rtu(
                url.device,
                baud=url.int_param("baud", serial.baud),
                parity=url.str_param("parity", serial.parity),
                data_bits=url.int_param("data_bits", serial.data_bits),
                stop_bits=url.int_param("stop_bits", serial.stop_bits),
                timeout=timeout,
            )
            self._channels[url.device] = channel
        return channel

    async def close(self) -> None:
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()


def _guard(
    arbiter: BusArbiter | None, port: str | None
) -> Callable[[Callable[[], Awaitable[Any]]], Any] | None:
    return arbiter.guard(port) if arbiter is not None else None


def open_driver(
    url: str | MeterUrl,
    profile: Profile | str,
    *,
    arbiter: BusArbiter | None = None,
    ports: SerialPorts | None = None,
    timeout: float | None = None,
    counter_store: InvocationCounterStore | None = None,
    counter_key: str | None = None,
) -> MeterDriver:
    """A driver (not yet connected) for the meter at ``url`` described by ``profile``.

    ``counter_store`` keeps DLMS invocation counters across restarts (under ``counter_key``, e.g. the meter
    serial); a ciphered DLMS meter without one works only until the process restarts.

    Raises UrlError for a bad URL and ProfileError for an unknown profile or one without registers for the
    URL's protocol.
    """
    meter_url = url if isinstance(url, MeterUrl) else parse_meter_url(url)
    loaded = profile if isinstance(profile, Profile) else load_profile(profile)
    protocol = ProfileProtocol(meter_url.protocol)
    if not loaded.entries_for(protocol):
        have = ", ".join(p.value for p in loaded.protocols)
        issue = ProfileIssue(path="protocols", message=f"no {protocol} registers (profile speaks {have})")
        raise ProfileError(loaded.name, [issue])
    seconds = meter_url.float_param("timeout", timeout or DEFAULT_TIMEOUT[meter_url.protocol])
    if protocol is ProfileProtocol.MODBUS:
        return _modbus(meter_url, loaded, arbiter, ports, seconds)
    if protocol is ProfileProtocol.DLMS:
        return _dlms(meter_url, loaded, arbiter, seconds, counter_store, counter_key)
    return _iec21(meter_url, loaded, arbiter, seconds)


def _modbus(
    url: MeterUrl, profile: Profile, arbiter: BusArbiter | None, ports: SerialPorts | None, timeout: float
) -> ModbusDriver:
    unit = url.int_param("unit", profile.defaults.modbus.unit)
    max_gap = url.opt_int("max_gap")
    if url.scheme is Scheme.MODBUS_TCP:
        assert url.host is not None and url.port is not None
        channel = PymodbusChannel.tcp(url.host, url.port, timeout)
        return ModbusDriver(
            channel, profile, unit=unit, timeout=timeout, max_gap=max_gap, guard=_guard(arbiter, None)
        )
    shared = ports is not None
    pool = ports or SerialPorts()
    channel = pool.modbus_rtu(url, profile, timeout)
    return ModbusDriver(
        channel,
        profile,
        unit=unit,
        timeout=timeout,
        max_gap=max_gap,
        guard=_guard(arbiter, url.device),
        owns_channel=not shared,
    )


def _dlms(
    url: MeterUrl,
    profile: Profile,
    arbiter: BusArbiter | None,
    timeout: float,
    counter_store: InvocationCounterStore | None,
    counter_key: str | None,
) -> MeterDriver:
    from villageami.dlms import transport
    from villageami.dlms.client import Authentication, ClientSettings, DlmsClient
    from villageami.meters.dlms_driver import DlmsDriver

    defaults = profile.defaults.dlms
    client_sap = url.int_param("client", defaults.client)
    server = url.int_param("server", defaults.server)
    physical = url.opt_int("physical") if "physical" in url.params else defaults.physical
    auth = Authentication(url.str_param("auth", defaults.auth))
    password = url.params.get("password")
    if auth is Authentication.LOW and password is None:
        raise UrlError(f"meter URL {url}: the profile asks for auth=low; add password=...")
    settings = ClientSettings(
        client_sap=client_sap,
        server_logical_address=server,
        server_physical_address=physical,
        authentication=auth,
        password=password.encode() if password is not None else None,
        system_title=bytes.fromhex(url.params["title"]) if "title" in url.params else None,
        authentication_key=bytes.fromhex(url.params["key"]) if "key" in url.params else None,
        encryption_key=bytes.fromhex(url.params["ekey"]) if "ekey" in url.params else None,
        response_timeout=timeout,
        connect_timeout=timeout,
    )
    link: Any
    if url.scheme is Scheme.DLMS_TCP:
        assert url.host is not None and url.port is not None
        link = transport.tcp_wrapper_link(url.host, url.port, client=client_sap, server=server)
    elif url.scheme is Scheme.DLMS_HDLC_TCP:
        assert url.host is not None and url.port is not None
        link = transport.hdlc_tcp_link(
            url.host, url.port, client=client_sap, server=server, physical=physical
        )
    else:
        assert url.device is not None
        baud = url.int_param("baud", profile.defaults.serial.baud)
        link = transport.hdlc_serial_link(
            url.device, baud=baud, client=client_sap, server=server, physical=physical
        )
    return DlmsDriver(
        DlmsClient(link, settings),
        profile,
        max_list=url.opt_int("max_list"),
        guard=_guard(arbiter, url.serial_port),
        description=f"DLMS meter {url}",
        counter_store=counter_store,
        counter_key=counter_key,
    )


def _iec21(url: MeterUrl, profile: Profile, arbiter: BusArbiter | None, timeout: float) -> MeterDriver:
    from villageami.meters.iec21_driver import Iec21Clock, Iec21Driver, transport_for_url

    mapping: dict[str, str | Iec21Clock] = {}
    for key, entry in profile.entries_for(ProfileProtocol.IEC21).items():
        address = entry.iec21
        if address is None:
            continue
        if address.data_set is not None:
            mapping[key] = address.data_set
        elif address.time is not None and address.date is not None:
            mapping[key] = Iec21Clock(address.time, address.date, address.utc_offset_delta)
    query = "&".join(f"{k}={v}" for k, v in url.params.items() if k == "framing")
    text = f"iec21+tcp://{url.host}:{url.port}" if url.scheme is Scheme.IEC21_TCP else f"iec21://{url.device}"
    transport = transport_for_url(text + (f"?{query}" if query else ""))
    # A serial/optical port carries one session at a time: the arbiter serialises meters sharing it.
    return Iec21Driver(transport, mapping, reply_timeout=timeout, guard=_guard(arbiter, url.serial_port))
