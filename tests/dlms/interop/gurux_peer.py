"""Test-only helpers to drive gurux-dlms (GPL-2.0, test dependency only) over a socket against our simulator,
and to run the simulator on a background event loop so blocking gurux code can talk to it."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from gurux_dlms import GXByteBuffer, GXDLMSClient, GXReplyData
from gurux_dlms.enums import Authentication, InterfaceType, Security
from gurux_dlms.secure import GXDLMSSecureClient

from villageami.sim.dlms_server import DlmsSimulator


@contextmanager
def simulator_thread(sim: DlmsSimulator) -> Iterator[DlmsSimulator]:
    """Run ``sim`` on its own event loop in a daemon thread for the duration of the block."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(sim.start(), loop).result(5)
    try:
        yield sim
    finally:
        asyncio.run_coroutine_threadsafe(sim.stop(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


class GuruxSocketClient:
    """GXDLMSClient generating requests and parsing replies, with the socket loop written here."""

    def __init__(
        self,
        port: int,
        *,
        hdlc: bool,
        client_address: int = 16,
        authentication: Any = Authentication.NONE,
        password: bytes | None = None,
        timeout: float = 3.0,
        keys: tuple[bytes, bytes] | None = None,
        system_title: bytes = b"GXCLIENT",
    ) -> None:
        interface = InterfaceType.HDLC if hdlc else InterfaceType.WRAPPER
        if keys is None:
            self.client = GXDLMSClient(True, client_address, 1, authentication, password, interface)
        else:
            # HLS-GMAC with security suite 0: authenticated and encrypted xDLMS APDUs.
            self.client = GXDLMSSecureClient(True, client_address, 1, authentication, password, interface)
            cipher = self.client.settings.cipher
            cipher.security = Security.AUTHENTICATION_ENCRYPTION
            cipher.systemTitle = bytearray(system_title)
            cipher.blockCipherKey = bytearray(keys[0])
            cipher.authenticationKey = bytearray(keys[1])
        self.hdlc = hdlc
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)

    def close(self) -> None:
        self.sock.close()

    def _packet(self, data: bytes | None, reply: Any) -> None:
        if data:
            self.sock.sendall(bytes(data))
        notify = GXReplyData()
        buffer = GXByteBuffer()
        while not self.client.getData(buffer, reply, notify):
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("simulator closed the connection")
            buffer.set(chunk)

    def exchange(self, requests: Any) -> Any:
        """Send a request (list of frames) and follow block transfer / segmentation; return the reply."""
        if isinstance(requests, bytes | bytearray):
            requests = [requests]
        reply = GXReplyData()
        for request in requests:
            reply.clear()
            self._packet(request, reply)
            while reply.isMoreData():
                self._packet(self.client.receiverReady(reply), reply)
        return reply

    def connect(self) -> None:
        if self.hdlc:
            reply = self.exchange(self.client.snrmRequest())
            self.client.parseUAResponse(reply.data)
        reply = self.exchange(self.client.aarqRequest())
        self.client.parseAareResponse(reply.data)
        if self.client.getIsAuthenticationRequired():
            for request in self.client.getApplicationAssociationRequest():
                reply = self.exchange(request)
                self.client.parseApplicationAssociationResponse(reply.data)

    def read(self, obj: Any, attribute: int) -> Any:
        reply = self.exchange(self.client.read(obj, attribute))
        return self.client.updateValue(obj, attribute, reply.value)

    def read_list(self, items: list[tuple[Any, int]]) -> list[Any]:
        values: list[Any] = []
        for request in self.client.readList(items):
            values.extend(self.exchange(request).value)
        self.client.updateValues(items, values)
        return values

    def release(self) -> None:
        self.exchange(self.client.releaseRequest())
        if self.hdlc:
            self.exchange(self.client.disconnectRequest())
