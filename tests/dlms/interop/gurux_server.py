"""A test-only DLMS meter built on gurux-dlms's server classes (GPL-2.0, test dependency only), used as an
interop oracle for villageami's client.

gurux-dlms 1.0.203's Python server path has latent bugs (see the project's dependency notes, §1.3). The
shims below work around the ones this scenario meets (numbered as in those notes), each from the outside
(subclass, override or a guarded class attribute), so an upstream fix is noticed rather than silently
masked. Scope: LN referencing over the TCP wrapper, no security or LLS, GET (normal and with-list), ACTION
on the disconnect control, RLRQ. HDLC over TCP (shim 9).
HLS-GMAC (shims 10-14 and 16) lives in gurux_secure_server.py, a subclass of GuruxMeter; ``meter_class``
and ``association_class`` are its hooks.
"""

from __future__ import annotations

import datetime
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gurux_dlms import GXDLMS, GXDateTime, GXDLMSServer, GXServerReply, ValueEventArgs
from gurux_dlms.ConnectionState import ConnectionState
from gurux_dlms.enums import Authentication, DataType, InterfaceType, SourceDiagnostic
from gurux_dlms.objects import (
    GXDLMSAssociationLogicalName,
    GXDLMSClock,
    GXDLMSData,
    GXDLMSDisconnectControl,
    GXDLMSRegister,
)
from gurux_dlms.objects.enums import ControlState

from villageami.dlms.hdlc import HdlcParameters

ENERGY_WH = 1234567
LLS_PASSWORD = b"12345678"


def _install_module_shims() -> None:
    """Shim 7 (part): handleMethodRequest calls onPreAction(list(e)) on a single ValueEventArgs."""
    if getattr(ValueEventArgs, "_villageami_iter_shim", False):
        return
    assert not hasattr(ValueEventArgs, "__iter__"), "gurux fixed ValueEventArgs iteration: drop the shim"

    def _iterate(self: Any) -> Iterator[Any]:
        yield self

    ValueEventArgs.__iter__ = _iterate
    ValueEventArgs._villageami_iter_shim = True


_install_module_shims()


class _ServerReply(GXServerReply):  # type: ignore[misc]
    """Shim 1: handleRequest calls setReply / setCount / getConnectionInfo, which GXServerReply lacks."""

    def setReply(self, value: Any) -> None:
        self.reply = value

    def setCount(self, value: int) -> None:
        self.count = value

    def getCount(self) -> int:
        return int(self.count)

    def getConnectionInfo(self) -> Any:
        return self.connectionInfo


class _LiveClock(GXDLMSClock):  # type: ignore[misc]
    """Shim 4: GET-normal never calls onPreRead, so refresh the time where the value is read."""

    def getValue(self, settings: Any, e: Any) -> Any:
        if e.index == 2:
            self.time = GXDateTime(datetime.datetime.now())
        return super().getValue(settings, e)


class GuruxMeter(GXDLMSServer):  # type: ignore[misc]
    association_class: type[GXDLMSAssociationLogicalName] = GXDLMSAssociationLogicalName

    def __init__(self, interface: Any = InterfaceType.WRAPPER) -> None:
        super().__init__(True, interface)
        self.energy = GXDLMSRegister("1.0.1.8.0.255")
        self.energy.value = ENERGY_WH
        self.energy.scaler = 1  # gurux keeps 10**scaler: scaler 0
        self.energy.unit = 30
        self.energy.setDataType(2, DataType.UINT32)  # shim 15: an int would go out as double-long
        self.serial = GXDLMSData("0.0.96.1.1.255")
        self.serial.value = "GX0001"
        self.clock = _LiveClock("0.0.1.0.0.255")
        self.switch = GXDLMSDisconnectControl("0.0.96.3.10.255")
        self.switch.outputState = True
        self.switch.controlState = ControlState.CONNECTED
        association = self.association_class()
        items = [association, self.energy, self.serial, self.clock, self.switch]
        for item in items:  # shim 2: initialize() would append the whole list as one item
            association.objectList.append(item)
        for item in items:
            self.items.append(item)
        self.initialize()

    # Abstract hooks and shim 3 (missing notify*/transaction helpers).
    def isTarget(self, server_address: int, client_address: int) -> bool:
        return True

    def onValidateAuthentication(self, authentication: Any, password: Any) -> Any:
        if authentication == Authentication.NONE:
            return SourceDiagnostic.NONE
        if authentication == Authentication.LOW and bytes(password or b"") == LLS_PASSWORD:
            return SourceDiagnostic.NONE
        return SourceDiagnostic.AUTHENTICATION_FAILURE

    def onFindObject(self, object_type: Any, sn: int, ln: str) -> Any:
        return None

    def onPreRead(self, args: Any = None) -> None:
        for event in args or []:
            if event.target is self.clock and event.index == 2:
                self.clock.time = GXDateTime.now()

    def onPostRead(self, args: Any = None) -> None:
        return None

    def onPreWrite(self, args: Any) -> None:
        return None

    def onPostWrite(self, args: Any) -> None:
        return None

    def onPreAction(self, args: Any) -> None:
        # Shim 7: GXDLMSDisconnectControl has no invoke(); do methods 1 and 2 here.
        for event in args:
            if event.target is self.switch:
                connected = event.index == 2
                self.switch.outputState = connected
                self.switch.controlState = ControlState.CONNECTED if connected else ControlState.DISCONNECTED
                event.handled = True
                event.value = 0  # the handler does int(e.value); 0 = no return parameters

    def onPostAction(self, args: Any) -> None:
        return None

    def onPreGet(self, args: Any) -> None:
        return None

    def onPostGet(self, args: Any) -> None:
        return None

    def onConnected(self, info: Any) -> None:
        return None

    def onDisconnected(self, info: Any) -> None:
        return None

    def onInvalidConnection(self, info: Any) -> None:
        return None

    def onGetAttributeAccess(self, arg: Any) -> Any:
        from gurux_dlms.enums import AccessMode

        return AccessMode.READ_WRITE

    def onGetMethodAccess(self, arg: Any) -> Any:
        from gurux_dlms.enums import MethodAccessMode

        return MethodAccessMode.ACCESS

    def notifyRead(self, *args: Any) -> None:
        self.onPreRead(*args)

    def notifyConnected(self, info: Any) -> None:
        self.onConnected(info)

    def getTransaction(self) -> Any:
        return self.transaction

    def setTransaction(self, value: Any) -> None:
        self.transaction = value

    def handleReleaseRequest(self, data: Any) -> None:
        """Shim 8: gurux writes two wrong BER lengths in the RLRE; answer RLRE(reason normal) instead."""
        self.replyData.set(bytearray(bytes.fromhex("6303800100")))

    def handleSnrmRequest(self, data: Any) -> None:
        """Shim 9: gurux reads HDLC limits from ``self.hdlc`` (None). Negotiate from settings.hdlc and
        encode the UA parameters with villageami's own encoder."""
        limits = self.settings.hdlc
        limits.maxInfoTX = limits.maxInfoRX = 128
        limits.windowSizeTX = limits.windowSizeRX = 1
        GXDLMS.parseSnrmUaResponse(data, limits)
        self.reset(True)
        agreed = HdlcParameters(limits.maxInfoTX, limits.maxInfoRX, 1, 1)
        self.replyData.set(bytearray(agreed.encode()))
        self.settings.connected = ConnectionState.HDLC

    def generateDisconnectRequest(self) -> None:
        """Shim 9: same bug on DISC; answer UA without an information field."""
        return None

    def answer(self, data: bytes) -> bytes:
        reply = _ServerReply(bytearray(data))
        self.handleRequest(reply)
        return bytes(reply.reply or b"")


@contextmanager
def gurux_meter_server(
    interface: Any = InterfaceType.WRAPPER, meter_class: type[GuruxMeter] = GuruxMeter
) -> Iterator[tuple[int, list[GuruxMeter]]]:
    """Serve one ``meter_class`` per TCP connection (wrapper or HDLC) in a thread; yields (port, meters)."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    meters: list[GuruxMeter] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def serve(conn: socket.socket) -> None:
        meter = meter_class(interface)
        meters.append(meter)
        with conn:
            conn.settimeout(5)
            try:
                while data := conn.recv(4096):
                    answer = meter.answer(data)
                    if answer:
                        conn.sendall(answer)
            except OSError:
                pass
            except BaseException as exc:  # surfaced by the test through the errors list
                errors.append(exc)

    def accept_loop() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept_loop, daemon=True)
    thread.start()
    try:
        yield listener.getsockname()[1], meters
    finally:
        stop.set()
        thread.join(2)
        listener.close()
        if errors:
            raise errors[0]
