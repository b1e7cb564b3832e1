"""MQTT uplink: drains the outbox to the broker, PUBACK-gated, and delivers commands to the gateway.

paho-mqtt 2.2 (callback API v2, MQTT 3.1.1, QoS 1) runs its network loop in its own thread; every callback
is handed to the asyncio loop with ``call_soon_threadsafe``, so all state here is touched by one thread.

Reconnection is ours, not paho's: each connection gets a fresh paho client. When a connection drops, whatever
paho still held is discarded and the pump restarts from the lowest seq still in the outbox, so the outbox is
the only source of truth and messages go out in seq order. A message whose PUBACK was lost is sent again with
the same msgId (QoS 1 is at-least-once; the head-end deduplicates on msgId).

A message is a *replay* (``replayed: true`` + ``publishedAt``) when it was stored before the current broker
session started (it waited out an outage or a restart) or it was already sent once without PUBACK. "Stored
before" is decided by seq (at most the outbox's last seq when the session started), never by comparing
wall-clock times, so a clock stepped back by NTP cannot turn a replay into a live message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode

from villageami.errors import VillageAmiError
from villageami.gateway.outbox import Outbox, StoredMessage

log = logging.getLogger("villageami.gateway.uplink")


class BrokerConnectError(VillageAmiError, ConnectionError):
    """The broker could not be used: it refused the CONNECT (credentials, ACL) or the TLS handshake failed.

    Unlike an unreachable broker, this does not heal by itself: it is logged at ERROR (still retried).
    """


@dataclass(frozen=True, slots=True)
class TlsFiles:
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None


@dataclass(frozen=True, slots=True)
class BrokerSettings:
    host: str
    port: int = 1883
    client_id: str = ""
    username: str | None = None
    password: str | None = None
    tls: TlsFiles | None = None
    keepalive: int = 30
    connect_timeout: float = 5.0
    # A persistent session lets the broker hold QoS 1 commands while the gateway is away; expiresAt
    # protects against executing stale ones.
    clean_session: bool = False


@dataclass(frozen=True, slots=True)
class RetainedMessage:
    topic: str
    payload: bytes


@dataclass(slots=True)
class UplinkStats:
    connects: int = 0
    failed_connects: int = 0
    disconnects: int = 0
    published: int = 0
    acked: int = 0


class Uplink:
    """Keeps one MQTT connection alive forever and moves outbox messages over it."""

    def __init__(
        self,
        settings: BrokerSettings,
        outbox: Outbox,
        *,
        last_will: RetainedMessage,
        birth: Callable[[], Sequence[RetainedMessage]] = lambda: (),
        goodbye: Callable[[], RetainedMessage | None] = lambda: None,
        subscriptions: Sequence[str] = (),
        on_message: Callable[[str, bytes], None] | None = None,
        inflight_window: int = 20,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        on_publish_latency: Callable[[float], None] | None = None,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self._last_will = last_will
        self._birth = birth
        self._goodbye = goodbye
        self._subscriptions = list(subscriptions)
        self._on_message = on_message
        self._window = max(1, inflight_window)
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._on_latency = on_publish_latency
        self.stats = UplinkStats()
        self.connected = asyncio.Event()
        self._wake = asyncio.Event()
        self._lost = asyncio.Event()
        # CONNACK outcome: None when accepted, else the broker's reason ("Not authorized", ...).
        self._connack: asyncio.Future[str | None] | None = None
        self._client: mqtt.Client | None = None
        self._inflight: dict[int, tuple[StoredMessage, float]] = {}
        self._sent_before: set[int] = set()
        # Highest seq stored when the current session started: anything up to it waited, i.e. is a replay.
        self._session_last_seq = 0
        self._loop: asyncio.AbstractEventLoop | None = None

    # -- public ----------------------------------------------------------------------------------------------

    def notify(self) -> None:
        """New messages are in the outbox: wake the pump."""
        self._wake.set()

    async def run(self) -> None:
        """Connect, pump, reconnect with exponential backoff. Runs until cancelled."""
        self._loop = asyncio.get_running_loop()
        backoff = self._backoff_initial
        try:
            while True:
                try:
                    await self._connect()
                except (OSError, ConnectionError, TimeoutError) as exc:
                    self.stats.failed_connects += 1
                    self._log_connect_failure(exc, backoff)
                    self._drop_client()
                    await asyncio.sleep(backoff)
                    backoff = min(backoff * 2, self._backoff_max)
                    continue
                backoff = self._backoff_initial
                try:
                    await self._pump()
                except asyncio.CancelledError:
                    await self._close_gracefully()
                    raise
                self.stats.disconnects += 1
                self._drop_client()
                log.warning("broker connection lost", extra={"host": self.settings.host})
                await asyncio.sleep(backoff)
        finally:
            self._drop_client()

    # -- connection ------------------------------------------------------------------------------------------

    def _log_connect_failure(self, exc: BaseException, retry_in: float) -> None:
        s = self.settings
        broker = f"{s.host}:{s.port}"
        extra = {"host": s.host, "port": s.port, "retryInS": retry_in}
        if isinstance(exc, ssl.SSLError):
            # SSLCertVerificationError is an OSError too: name the handshake, not "connection failed".
            if isinstance(exc, ssl.SSLCertVerificationError):
                reason = f"certificate verify failed: {exc.verify_message}"
            else:
                reason = str(exc.reason or exc)
            message = (
                f"TLS handshake with broker {broker} failed: {reason}"
                " (check broker.tls.caFile against the broker's certificate and the URL host)"
            )
            log.error(message, extra=extra | {"error": str(exc)})
        elif isinstance(exc, BrokerConnectError):
            log.error(str(exc), extra=extra | {"error": str(exc)})
        else:
            detail = str(exc) or type(exc).__name__
            log.warning(f"broker {broker} unreachable: {detail}", extra=extra | {"error": detail})

    def _make_client(self) -> mqtt.Client:
        s = self.settings
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=s.client_id,
            clean_session=s.clean_session,
            protocol=mqtt.MQTTv311,
            reconnect_on_failure=False,
        )
        client.connect_timeout = s.connect_timeout
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        if s.tls is not None:
            client.tls_set(
                ca_certs=s.tls.ca_file,
                certfile=s.tls.cert_file,
                keyfile=s.tls.key_file,
                cert_reqs=ssl.CERT_REQUIRED,
                tls_version=ssl.PROTOCOL_TLS_CLIENT,
            )
        client.will_set(self._last_will.topic, self._last_will.payload, qos=1, retain=True)
        client.on_connect = self._cb_connect
        client.on_disconnect = self._cb_disconnect
        client.on_publish = self._cb_publish
        client.on_message = self._cb_message
        return client

    async def _connect(self) -> None:
        loop = asyncio.get_running_loop()
        self._lost.clear()
        self._connack = loop.create_future()
        client = self._make_client()
        self._client = client
        s = self.settings
        # connect() blocks on the TCP (and TLS) handshake, bounded by connect_timeout.
        await asyncio.wait_for(
            asyncio.to_thread(client.connect, s.host, s.port, s.keepalive), timeout=s.connect_timeout + 1
        )
        client.loop_start()
        refusal = await asyncio.wait_for(self._connack, timeout=s.connect_timeout)
        if refusal is not None:
            who = f"user {s.username!r}" if s.username is not None else "no user name"
            raise BrokerConnectError(
                f"broker {s.host}:{s.port} refused the connection: {refusal} ({who}; check broker.username,"
                " the password and the broker's ACL)"
            )
        self.stats.connects += 1
        self._session_last_seq = self.outbox.last_seq()
        for topic in self._subscriptions:
            client.subscribe(topic, qos=1)
        for retained in self._birth():
            client.publish(retained.topic, retained.payload, qos=1, retain=True)
        self.connected.set()
        log.info("broker connected", extra={"host": s.host, "port": s.port})

    def _drop_client(self) -> None:
        self.connected.clear()
        client, self._client = self._client, None
        # Messages paho still holds are forgotten: they are all still in the outbox.
        for message, _ in self._inflight.values():
            self._sent_before.add(message.seq)
        self._inflight.clear()
        if client is not None:
            with contextlib.suppress(Exception):
                client.disconnect()
            with contextlib.suppress(Exception):
                client.loop_stop()

    async def _close_gracefully(self) -> None:
        client = self._client
        if client is not None and self.connected.is_set():
            goodbye = self._goodbye()
            if goodbye is not None:
                info = client.publish(goodbye.topic, goodbye.payload, qos=1, retain=True)
                with contextlib.suppress(Exception):
                    await asyncio.to_thread(info.wait_for_publish, 2.0)
        self._drop_client()

    # -- pump ------------------------------------------------------------------------------------------------

    async def _pump(self) -> None:
        last_sent = 0
        while not self._lost.is_set():
            self._wake.clear()
            free = self._window - len(self._inflight)
            if free > 0:
                for message in self.outbox.pending(after_seq=last_sent, limit=free):
                    if not self._publish(message):
                        return
                    last_sent = message.seq
            wake = asyncio.ensure_future(self._wake.wait())
            lost = asyncio.ensure_future(self._lost.wait())
            try:
                await asyncio.wait({wake, lost}, return_when=asyncio.FIRST_COMPLETED, timeout=5.0)
            finally:
                wake.cancel()
                lost.cancel()

    def _publish(self, message: StoredMessage) -> bool:
        client = self._client
        if client is None:
            return False
        replayed = message.seq in self._sent_before or message.seq <= self._session_last_seq
        info = client.publish(
            message.topic, message.wire_payload(replayed=replayed), qos=1, retain=message.retain
        )
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("publish refused by client", extra={"seq": message.seq, "rc": int(info.rc)})
            self._lost.set()
            return False
        self._inflight[info.mid] = (message, time.monotonic())
        self.stats.published += 1
        return True

    # -- paho callbacks (paho thread) -> event loop ----------------------------------------------------------

    def _call(self, fn: Callable[..., None], *args: Any) -> None:
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(fn, *args)

    def _cb_connect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        # paho maps MQTT 3.1.1 return codes to v5 reason codes: compare by failure, report by name.
        self._call(self._on_connack, client, str(reason) if reason.is_failure else None)

    def _cb_disconnect(self, client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        self._call(self._on_lost, client)

    def _cb_publish(self, client: mqtt.Client, userdata: Any, mid: int, reason: Any, props: Any) -> None:
        self._call(self._on_puback, client, mid)

    def _cb_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        self._call(self._on_incoming, message.topic, bytes(message.payload))

    # -- event-loop side -------------------------------------------------------------------------------------

    def _on_connack(self, client: mqtt.Client, refusal: str | None) -> None:
        if client is self._client and self._connack is not None and not self._connack.done():
            self._connack.set_result(refusal)

    def _on_lost(self, client: mqtt.Client) -> None:
        if client is self._client:
            self._lost.set()
            if self._connack is not None and not self._connack.done():
                self._connack.set_exception(ConnectionError("broker closed the connection before CONNACK"))

    def _on_puback(self, client: mqtt.Client, mid: int) -> None:
        if client is not self._client:
            return  # an ack from a connection we already gave up: the message will be sent again
        entry = self._inflight.pop(mid, None)
        if entry is None:
            return  # birth/goodbye messages are not outbox messages
        message, sent_at = entry
        self.outbox.ack(message.seq)
        self._sent_before.discard(message.seq)
        self.stats.acked += 1
        latency = time.monotonic() - sent_at
        if self._on_latency is not None:
            self._on_latency(latency)
        self._wake.set()

    def _on_incoming(self, topic: str, payload: bytes) -> None:
        if self._on_message is not None:
            try:
                self._on_message(topic, payload)
            except Exception:
                log.exception("command handler failed", extra={"topic": topic})
