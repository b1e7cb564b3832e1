"""The gateway process: wires config, drivers, scheduler, outbox, uplink and commands, and supervises loops.

Every long-running loop (one per serial bus, the TCP group, the uplink, the housekeeping loop) runs under
:func:`supervise`: an exception is logged with the loop's name, counted (``villageami_loop_restarts``) and the
loop restarts after an exponential backoff. Nothing a meter or the broker does can stop the gateway.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from villageami import __version__
from villageami.contract.envelope import CommandType, DisconnectState, inventory_meter
from villageami.gateway.config import GatewayConfig, MeterConfig, ReadClass, keys_for, password_of, resolve
from villageami.gateway.control import LOCAL_ISSUER, CommandJournal, CommandProcessor
from villageami.gateway.events import EdgeStateStore, EventDetector
from villageami.gateway.messages import DetectedEvent, Northbound, OutboxItem
from villageami.gateway.metrics import GatewayMetrics
from villageami.gateway.outbox import Eviction, Outbox
from villageami.gateway.plausibility import PlausibilityChecker, Thresholds
from villageami.gateway.scheduler import MeterPoller, Scheduler
from villageami.gateway.uplink import BrokerSettings, RetainedMessage, TlsFiles, Uplink
from villageami.meters.counters import InvocationCounterStore, JsonFileCounterStore
from villageami.meters.driver import MeterDriver
from villageami.meters.normalise import VmrsReading
from villageami.meters.profile import Profile, load_profile
from villageami.meters.url import UrlError, parse_meter_url

log = logging.getLogger("villageami.gateway")

DriverFactory = Callable[[MeterConfig, Profile | None], MeterDriver]
ProfileLoader = Callable[[str], Profile | None]


class MeterDrivers:
    """The default driver factory: ``villageami.meters.factory.open_driver`` with one shared bus arbiter.

    Meters on one serial port share one port object and one lock (the arbiter); the scheduler owns the
    dead-meter backoff, so the arbiter's own backoff is kept negligible here.
    """

    def __init__(self, config: GatewayConfig, counter_store: InvocationCounterStore | None = None) -> None:
        self.config = config
        self.counter_store = counter_store
        self._factory = importlib.import_module("villageami.meters.factory")
        bus_module = importlib.import_module("villageami.meters.bus")
        gaps = [b.inter_frame_s for b in config.buses] or [0.005]
        self.arbiter = bus_module.BusArbiter(
            inter_frame_gap=max(gaps),
            tcp_concurrency=config.schedules.tcp_concurrency,
            backoff_initial=0.001,
            backoff_max=0.001,
        )
        self.ports = self._factory.SerialPorts()

    def __call__(self, meter: MeterConfig, profile: Profile | None) -> MeterDriver:
        driver: MeterDriver = self._factory.open_driver(
            meter.url,
            profile if profile is not None else meter.profile,
            arbiter=self.arbiter,
            ports=self.ports,
            counter_store=self.counter_store,
            counter_key=meter.serial,
        )
        return driver

    async def close(self) -> None:
        await self.ports.close()


def default_profile_loader(name: str) -> Profile | None:
    return load_profile(name)


async def supervise(
    name: str,
    run: Callable[[], Awaitable[None]],
    *,
    on_restart: Callable[[str, BaseException | None], None],
    backoff_initial: float = 0.5,
    backoff_max: float = 30.0,
) -> None:
    """Run ``run`` forever: on error (or unexpected return) log, count and restart after a backoff."""
    backoff = backoff_initial
    while True:
        started = time.monotonic()
        error: BaseException | None = None
        try:
            await run()
            log.error("loop returned unexpectedly; restarting", extra={"loop": name})
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = exc
            log.exception("loop failed; restarting", extra={"loop": name, "error": str(exc)})
        on_restart(name, error)
        if time.monotonic() - started > 60:
            backoff = backoff_initial  # it ran fine for a while: this is a new problem, not a crash loop
        await asyncio.sleep(backoff)
        backoff = min(backoff * 2, backoff_max)


def bus_key(meter: MeterConfig, shared_endpoints: set[str]) -> str | None:
    """The wire a meter shares with others: a configured bus, a serial device, or a shared TCP endpoint."""
    if meter.bus is not None:
        return meter.bus
    try:
        url = parse_meter_url(meter.url)
    except UrlError:
        return None
    if url.serial_port is not None:
        return url.serial_port
    return url.endpoint if url.endpoint in shared_endpoints else None


class Gateway:
    """One running gateway. ``run()`` until cancelled; the unit tests drive its parts directly."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        base_dir: Path | None = None,
        driver_factory: DriverFactory | None = None,
        profile_loader: ProfileLoader = default_profile_loader,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self.config = config
        self.base_dir = base_dir or Path.cwd()
        self.clock = clock
        self.boot_ts = clock()
        self.metrics = metrics or GatewayMetrics()
        self.restarts: dict[str, int] = {}
        self.northbound = Northbound(config.feeder_id, config.gateway_id, config.broker.topic_root)
        self.outbox = Outbox(
            resolve(self.base_dir, config.outbox.path),
            max_bytes=config.outbox.max_bytes,
            gap_event=lambda gap: self.northbound.data_gap(gap, self.clock()),
            on_eviction=self._evicted,
        )
        self.evicted_telemetry = 0
        self.detector = EventDetector(
            credit_low_threshold=config.rules.credit_low_threshold,
            clock_drift_threshold_s=config.plausibility.clock_drift_s,
        )
        p = config.plausibility
        self.plausibility = PlausibilityChecker(Thresholds(p.clock_drift_s, p.voltage_min_v, p.voltage_max_v))
        self._drivers: MeterDrivers | None = None
        if driver_factory is None:
            # Beside the command journal: the gateway's durable state lives in one folder.
            counters = resolve(self.base_dir, config.commands.path).with_name("dlms-invocation-counters.json")
            self._drivers = MeterDrivers(config, JsonFileCounterStore(counters))
            driver_factory = self._drivers
        self.pollers = self._build_pollers(driver_factory, profile_loader)
        self.scheduler = Scheduler(
            config,
            self,
            plausibility=self.plausibility,
            detector=self.detector,
            clock=clock,
            on_cycle=lambda loop, s: self.metrics.cycle_seconds.labels(loop).observe(s),
        )
        self.journal = CommandJournal(resolve(self.base_dir, config.commands.path))
        # Raised conditions per meter live next to the journal, so a restart resumes the edges (events.py).
        self.edge_store = EdgeStateStore(resolve(self.base_dir, config.commands.path))
        self._saved_edges: dict[str, dict[str, Any]] = self.edge_store.load()
        self.detector.restore(self._saved_edges)
        self.control = CommandProcessor(
            config,
            self.northbound,
            self.enqueue,
            self.journal,
            self.pollers,
            self.scheduler,
            self.detector,
            publish_events=self.events,
            on_rescan=self._republish_inventory,
            on_status=lambda status: self.metrics.commands.labels(status).inc(),
            clock=clock,
        )
        self.uplink = Uplink(
            self._broker_settings(),
            self.outbox,
            last_will=self.northbound.last_will(),
            birth=self._birth,
            goodbye=lambda: self._status("offline", reason="gateway stopped"),
            subscriptions=self.northbound.command_subscriptions(),
            on_message=self.control.handle_message,
            inflight_window=config.broker.inflight_window,
            backoff_initial=config.broker.backoff_initial_s,
            backoff_max=config.broker.backoff_max_s,
            on_publish_latency=self.metrics.publish_latency.observe,
        )
        self._local_pending: set[str] = set()

    # -- construction ----------------------------------------------------------------------------------------

    def _build_pollers(self, factory: DriverFactory, loader: ProfileLoader) -> dict[str, MeterPoller]:
        endpoints: dict[str, int] = {}
        for meter in self.config.meters:
            with contextlib.suppress(UrlError):
                url = parse_meter_url(meter.url)
                endpoints[url.endpoint] = endpoints.get(url.endpoint, 0) + 1
        shared = {e for e, n in endpoints.items() if n > 1}
        locks: dict[str, asyncio.Lock] = {}
        pollers: dict[str, MeterPoller] = {}
        for meter in self.config.meters:
            profile = loader(meter.profile)
            key = bus_key(meter, shared)
            lock = locks.setdefault(key, asyncio.Lock()) if key is not None else asyncio.Lock()
            pollers[meter.serial] = MeterPoller(meter, factory(meter, profile), profile, lock, bus=key)
        return pollers

    def _broker_settings(self) -> BrokerSettings:
        b = self.config.broker
        tls = None
        if b.uses_tls:
            t = b.tls
            tls = TlsFiles(
                None if t is None or t.ca_file is None else str(resolve(self.base_dir, t.ca_file)),
                None if t is None or t.cert_file is None else str(resolve(self.base_dir, t.cert_file)),
                None if t is None or t.key_file is None else str(resolve(self.base_dir, t.key_file)),
            )
        return BrokerSettings(
            host=b.host,
            port=b.port,
            client_id=self.config.client_id,
            username=b.username,
            password=password_of(self.config, self.base_dir),
            tls=tls,
            keepalive=b.keepalive_s,
        )

    # -- northbound ------------------------------------------------------------------------------------------

    def enqueue(self, item: OutboxItem) -> None:
        topic, kind, build = item
        self.outbox.enqueue(topic, kind, build)
        self.metrics.outbox_depth.set(self.outbox.depth())
        self.metrics.outbox_bytes.set(self.outbox.stored_bytes())
        self.uplink.notify()

    def _evicted(self, eviction: Eviction) -> None:
        self.evicted_telemetry += eviction.count
        self.metrics.evicted.inc(eviction.count)
        log.warning("outbox full: telemetry evicted", extra={"evicted": eviction.count})

    def _status(self, state: str, **extra: Any) -> RetainedMessage:
        return self.northbound.status(
            state,
            self.clock(),
            fw=__version__,
            boot_ts=self.boot_ts,
            buffer_depth=self.outbox.depth(),
            evicted_telemetry=self.evicted_telemetry,
            meter_count=len(self.pollers),
            **extra,
        )

    def inventory(self) -> RetainedMessage:
        all_keys: list[str] = []
        for rc in ReadClass:
            all_keys.extend(keys_for(rc))
        meters = []
        for poller in self.pollers.values():
            m = poller.config
            identity = poller.profile.identity if poller.profile is not None else None
            meters.append(
                inventory_meter(
                    m.serial,
                    read_path=_read_path(m.url),
                    registers=poller.supported(dict.fromkeys(all_keys)),
                    role=m.role,
                    vendor=None if identity is None else identity.vendor,
                    model=None if identity is None else identity.model,
                    profile=None if poller.profile is None else poller.profile.name,
                    prepaid=m.prepaid,
                )
            )
        return self.northbound.inventory(meters, self.clock(), __version__)

    def _birth(self) -> list[RetainedMessage]:
        return [self._status("online"), self.inventory()]

    def _republish_inventory(self) -> None:
        client = self.uplink._client
        if client is not None:
            for message in self._birth():
                client.publish(message.topic, message.payload, qos=1, retain=True)

    # -- ReadSink (called by the scheduler) ------------------------------------------------------------------

    def telemetry(self, serial: str, readings: Sequence[VmrsReading], ts: datetime) -> None:
        try:
            self.enqueue(self.northbound.telemetry(serial, [r.to_entry() for r in readings], ts))
        except Exception:
            self._rollback_edges({serial})
            raise

    def events(self, events: Iterable[DetectedEvent]) -> None:
        events = list(events)
        try:
            for event in events:
                self.enqueue(self.northbound.event(event))
        except Exception:
            self._rollback_edges({e.meter_serial for e in events})
            raise
        self.save_edges()

    def _rollback_edges(self, serials: Iterable[str]) -> None:
        """An outbox write failed after the detector moved on: go back to the last saved edge state.

        The detector flips its state before the event is stored; keeping the flipped state would mean the
        edge is never reported. Going back re-detects it at the next read (events already stored may then
        be sent twice, which docs/gateway.md allows; losing one it does not).
        """
        for serial in serials:
            self.detector.restore({serial: self._saved_edges.get(serial, {})})

    def read_done(self, serial: str, ok: bool, readings: Sequence[VmrsReading], seconds: float) -> None:
        self.save_edges()
        self.metrics.reads.labels(serial, "ok" if ok else "failed").inc()
        if ok:
            self.apply_local_rules(serial)

    def save_edges(self) -> None:
        """Persist the edge state of meters that changed; called after their events are in the outbox."""
        now = self.clock()
        for serial in sorted(self.detector.take_touched()):
            snapshot = self.detector.snapshot(serial)
            if self._saved_edges.get(serial) != snapshot:
                self.edge_store.save(serial, snapshot, now)
                self._saved_edges[serial] = snapshot

    # -- local autonomy --------------------------------------------------------------------------------------

    def apply_local_rules(self, serial: str) -> str | None:
        """Credit-exhausted auto-disconnect for meters that do not enforce credit themselves.

        Works with the uplink down: it only needs the meter, the journal and the outbox. Returns the
        commandId when a local command was issued. The relay is closed again (local reconnect) once credit
        is back above zero, but only if the last relay command for that meter came from this rule.
        """
        meter = self.config.meter(serial)
        if (
            meter is None
            or meter.enforces_credit
            or not self.config.rules.auto_disconnect_on_credit_exhausted
        ):
            return None
        if serial in self._local_pending and self._local_busy(serial):
            return None
        state = self.detector.disconnect_state(serial)
        exhausted = self.detector.credit_exhausted(serial)
        if exhausted and state == DisconnectState.CONNECTED:
            ctype, reason = CommandType.DISCONNECT, "credit_exhausted"
        elif not exhausted and state == DisconnectState.DISCONNECTED:
            last = self.journal.latest_for_meter(serial)
            if last is None or last.issued_by != LOCAL_ISSUER or last.type != CommandType.DISCONNECT:
                return None
            ctype, reason = CommandType.RECONNECT, "credit_restored"
        else:
            return None
        command_id = self.control.submit_local(serial, ctype, reason)
        self._local_pending.add(serial)
        log.info(
            "local rule issued a command", extra={"meter": serial, "type": ctype.value, "reason": reason}
        )
        return command_id

    def _local_busy(self, serial: str) -> bool:
        last = self.journal.latest_for_meter(serial)
        busy = last is not None and last.status.value in ("accepted", "executing")
        if not busy:
            self._local_pending.discard(serial)
        return busy

    # -- running ---------------------------------------------------------------------------------------------

    def _restarted(self, name: str, error: BaseException | None) -> None:
        self.restarts[name] = self.restarts.get(name, 0) + 1
        self.metrics.loop_restarts.labels(name).inc()

    def loops(self) -> dict[str, Callable[[], Awaitable[None]]]:
        buses: dict[str, list[MeterPoller]] = {}
        tcp: list[MeterPoller] = []
        for poller in self.pollers.values():
            if poller.bus is None:
                tcp.append(poller)
            else:
                buses.setdefault(poller.bus, []).append(poller)
        loops: dict[str, Callable[[], Awaitable[None]]] = {
            "uplink": self.uplink.run,
            "housekeeping": self._housekeeping,
        }
        for name, members in buses.items():
            loops[f"bus:{name}"] = _bind(self.scheduler.run_loop, f"bus:{name}", members, concurrent=False)
        if tcp:
            loops["tcp"] = _bind(self.scheduler.run_loop, "tcp", tcp, concurrent=True)
        return loops

    async def _housekeeping(self) -> None:
        while True:
            self.metrics.outbox_depth.set(self.outbox.depth())
            self.metrics.outbox_bytes.set(self.outbox.stored_bytes())
            self.metrics.connected.set(1 if self.uplink.connected.is_set() else 0)
            await asyncio.sleep(5)

    async def run(self) -> None:
        """Run every loop under supervision until cancelled."""
        if self.config.metrics.enabled:
            port = self.metrics.serve(self.config.metrics.host, self.config.metrics.port)
            log.info("metrics served", extra={"port": port})
        self.control.recover()
        tasks = [
            asyncio.create_task(supervise(name, loop, on_restart=self._restarted), name=name)
            for name, loop in self.loops().items()
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await self.control.cancel_all()
            for poller in self.pollers.values():
                await poller.reset()
            if self._drivers is not None:
                with contextlib.suppress(Exception):
                    await self._drivers.close()
            self.metrics.stop_serving()
            self.outbox.close()
            self.journal.close()
            self.edge_store.close()


def _bind(fn: Callable[..., Awaitable[None]], *args: Any, **kwargs: Any) -> Callable[[], Awaitable[None]]:
    def call() -> Awaitable[None]:
        return fn(*args, **kwargs)

    return call


def _read_path(url: str) -> str:
    """The inventory's read path: the URL scheme, e.g. ``dlms+hdlc`` -> ``dlms-hdlc`` (docs/contract.md)."""
    scheme = url.split("://", 1)[0].lower().replace("+", "-")
    cleaned = re.sub(r"[^a-z0-9._-]", "-", scheme).lstrip("-._")[:32]
    return cleaned or "unknown"
