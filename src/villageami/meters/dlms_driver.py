"""DLMS/COSEM driver: reads a profile's DLMS-mapped keys over villageami's own DLMS stack.

One poll is one association: every mapped attribute (and the scaler_unit of registers not yet cached) goes
out in GET-with-list requests of at most ``max_list`` attributes (the meter's limit, from the profile), or as
single GETs when the meter did not grant multiple references. scaler_unit is cached per logical name for the
life of the driver: it is configuration, not a measurement. Disconnect and reconnect use the class 70
methods and read output_state and control_state back to confirm.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, TypeVar

from villageami.contract.vmrs import DISCONNECT_KEY
from villageami.dlms.apdu import AttributeDescriptor, Conformance, DataAccessResult
from villageami.dlms.axdr import Data, DataType
from villageami.dlms.client import DlmsClient
from villageami.dlms.cosem import ClassId, ScalerUnit, scaler_unit_attribute
from villageami.dlms.errors import AssociationError, DecodeError, DlmsError, LinkError, ServiceError
from villageami.errors import VillageAmiError
from villageami.meters.counters import InvocationCounterStore
from villageami.meters.driver import (
    ActionResult,
    KeyRead,
    MeterAction,
    MeterDriver,
    MeterError,
    MeterUnreachable,
    Scalar,
)
from villageami.meters.profile import DlmsAddress, Profile
from villageami.meters.profile import Protocol as ProfileProtocol

__all__ = ["DlmsDriver"]

_log = logging.getLogger(__name__)
T = TypeVar("T")
# Invocation counters reserved (persisted ahead) at a time: a restart skips at most this many.
COUNTER_BLOCK = 256
_OUTPUT_STATE, _CONTROL_STATE = 2, 3
_CONTROL_STATES = {0: "disconnected", 1: "connected", 2: "ready_for_reconnection"}


async def _direct(op: Callable[[], Awaitable[T]]) -> T:
    return await op()


def _source(point: DlmsAddress, attribute: int | None = None) -> str:
    return f"{point.logical_name}/{point.class_id}/{attribute or point.attribute}"


class DlmsDriver(MeterDriver):
    """One meter (logical device) through a :class:`DlmsClient`."""

    def __init__(
        self,
        client: DlmsClient,
        profile: Profile,
        *,
        max_list: int | None = None,
        guard: Callable[[Callable[[], Awaitable[Any]]], Awaitable[Any]] | None = None,
        description: str = "DLMS meter",
        counter_store: InvocationCounterStore | None = None,
        counter_key: str | None = None,
    ) -> None:
        self.client = client
        self.profile = profile
        self.max_list = max_list or profile.defaults.dlms.max_list
        self.description = description
        self._guard = guard or _direct
        self.points: dict[str, DlmsAddress] = {
            key: entry.dlms
            for key, entry in profile.entries_for(ProfileProtocol.DLMS).items()
            if entry.dlms is not None
        }
        self.scaler_units: dict[str, ScalerUnit] = {}
        self.requests_sent = 0
        # Set when the meter answered a GET-with-list with a malformed or mismatched response; from then on
        # this driver reads one attribute per GET (slower, but correct).
        self.with_list_unreliable = False
        # Ciphered meters reject a reused invocation counter; see meters/counters.py.
        self.counter_store = counter_store
        self.counter_key = counter_key or description
        self._counters_reserved_to: int | None = None

    def __str__(self) -> str:
        return self.description

    # -- association --

    def _wrap(self, err: Exception) -> MeterError:
        if isinstance(err, LinkError | TimeoutError | OSError):
            return MeterUnreachable(f"{self.description}: {err or 'timeout'}")
        if isinstance(err, AssociationError):
            return MeterError(f"{self.description}: association refused: {err}")
        return MeterError(f"{self.description}: {err}")

    def _reserve_counters(self) -> None:
        """Persist a counter above any this driver may use before the next check (a no-op without ciphering).

        Called before every association and operation; an operation uses far fewer than half a block.
        """
        security = self.client.session.security
        if security is None or self.counter_store is None:
            return
        try:
            if self._counters_reserved_to is None:
                stored = self.counter_store.load(self.counter_key)
                if stored is not None and stored > security.invocation_counter:
                    security.invocation_counter = stored
            reserved = self._counters_reserved_to
            if reserved is None or security.invocation_counter + COUNTER_BLOCK // 2 > reserved:
                reserved = security.invocation_counter + COUNTER_BLOCK
                self.counter_store.save(self.counter_key, reserved)
                self._counters_reserved_to = reserved
        except VillageAmiError as err:
            # Without a durable counter a ciphered request could reuse one: refuse rather than risk it.
            raise MeterError(f"{self.description}: {err}") from None

    async def connect(self) -> None:
        self._reserve_counters()
        if self.client.session.associated:
            return
        try:
            await self.client.associate()
        except (DlmsError, TimeoutError, OSError) as err:
            raise self._wrap(err) from None

    async def close(self) -> None:
        try:
            await self.client.release()
        except (DlmsError, TimeoutError, OSError):
            return  # a dead link must not raise on close

    # -- reading --

    async def _get_many(self, descriptors: list[AttributeDescriptor]) -> list[Data | DataAccessResult]:
        multiple = bool(self.client.session.negotiated_conformance & Conformance.MULTIPLE_REFERENCES)
        results: list[Data | DataAccessResult] = []
        if multiple and len(descriptors) > 1 and not self.with_list_unreliable:
            try:
                for start in range(0, len(descriptors), self.max_list):
                    chunk = descriptors[start : start + self.max_list]
                    self.requests_sent += 1
                    results.extend(await self.client.get_with_list(chunk))
                return results
            except DecodeError as err:
                # Some servers grant multiple-references but answer certain lists wrongly (seen with gurux's
                # server and a clock in the list). Link errors are not caught here: they mean a dead meter.
                _log.warning("%s: bad GET-with-list answer (%s); one GET per attribute now", self, err)
                self.with_list_unreliable = True
                results = []
        for descriptor in descriptors:
            self.requests_sent += 1
            try:
                results.append(await self.client.get(descriptor))
            except ServiceError as err:
                results.append(_refusal(err))
        return results

    async def read(self, keys: Sequence[str]) -> dict[str, KeyRead]:
        async def run() -> dict[str, KeyRead]:
            await self.connect()
            try:
                return await self._read(keys)
            except (DlmsError, TimeoutError, OSError) as err:
                raise self._wrap(err) from None

        result: dict[str, KeyRead] = await self._guard(run)
        return result

    async def _read(self, keys: Sequence[str]) -> dict[str, KeyRead]:
        now = datetime.now(UTC)
        results: dict[str, KeyRead] = {}
        wanted = [k for k in keys if k in self.points]
        for key in keys:
            if key not in self.points:
                results[key] = KeyRead(
                    key, None, None, now, error=f"not mapped in profile {self.profile.name}"
                )
        descriptors: list[AttributeDescriptor] = []
        index: list[tuple[str, str]] = []  # (kind, key or logical name)
        for key in wanted:
            point = self.points[key]
            descriptors.append(AttributeDescriptor.of(point.class_id, point.logical_name, point.attribute))
            index.append(("value", key))
        for ln, class_id in sorted({(p.logical_name, p.class_id) for p in self._needs_scaler(wanted)}):
            attribute = scaler_unit_attribute(class_id)
            assert attribute is not None  # _needs_scaler keeps only classes that have one
            descriptors.append(AttributeDescriptor.of(class_id, ln, attribute))
            index.append(("scaler_unit", ln))
        answers = await self._get_many(descriptors) if descriptors else []
        read_at = datetime.now(UTC)
        values: dict[str, Data | DataAccessResult] = {}
        for (kind, name), answer in zip(index, answers, strict=True):
            if kind == "scaler_unit":
                if isinstance(answer, Data):
                    with contextlib.suppress(DlmsError):
                        self.scaler_units[name] = ScalerUnit.from_data(answer)
            else:
                values[name] = answer
        for key in wanted:
            results[key] = self._convert(key, values[key], read_at)
        return {k: results[k] for k in keys}

    def _needs_scaler(self, keys: Sequence[str]) -> list[DlmsAddress]:
        return [
            p
            for p in (self.points[k] for k in keys)
            if scaler_unit_attribute(p.class_id) is not None
            and p.attribute == 2
            and p.scaler is None
            and p.logical_name not in self.scaler_units
        ]

    def _convert(self, key: str, answer: Data | DataAccessResult, read_at: datetime) -> KeyRead:
        point = self.points[key]
        source = _source(point)
        if isinstance(answer, DataAccessResult):
            return KeyRead(key, None, None, read_at, error=f"meter refused: {answer.label}", source=source)
        try:
            value, unit = self._value(point, answer)
        except (DlmsError, ValueError, TypeError) as err:
            return KeyRead(key, None, None, read_at, raw=answer.to_python(), error=str(err), source=source)
        return KeyRead(key, value, unit, read_at, raw=answer.to_python(), source=source)

    def _value(self, point: DlmsAddress, data: Data) -> tuple[Scalar, str | None]:
        if data.type is DataType.NULL_DATA:
            raise ValueError("meter returned null-data")
        if point.class_id == ClassId.CLOCK and point.attribute == 2:
            moment = data.as_date_time().to_datetime()
            return moment.isoformat(timespec="seconds"), None
        if point.class_id == ClassId.DISCONNECT_CONTROL:
            if point.attribute == _OUTPUT_STATE:
                return bool(data.value), None
            return int(data.value), None
        raw = data.value
        if data.type in (DataType.OCTET_STRING, DataType.VISIBLE_STRING, DataType.UTF8_STRING):
            text = raw.decode("ascii", errors="replace") if isinstance(raw, bytes | bytearray) else str(raw)
            return text.strip("\x00 "), point.unit
        if isinstance(raw, bool):
            return raw, point.unit
        if data.type is DataType.BIT_STRING:
            return int(str(raw), 2) if isinstance(raw, str) else int(raw), point.unit
        if not isinstance(raw, int | float):
            raise ValueError(f"unexpected {data.type.label} value {raw!r}")
        scaler, unit = 0, point.unit
        cached = self.scaler_units.get(point.logical_name)
        scaled_object = scaler_unit_attribute(point.class_id) is not None and point.attribute == 2
        if scaled_object and cached is not None:
            scaler = cached.scaler
            unit = point.unit or (cached.unit_text if cached.unit not in (0, 255) else None)
        if point.scaler is not None:
            scaler = point.scaler
        elif scaled_object and cached is None:
            # Publishing the unscaled register would be off by 10**scaler: omit it until scaler_unit reads.
            raise ValueError(
                f"scaler_unit of {point.logical_name} is unknown (its read was refused or malformed) and the "
                "profile gives no scaler"
            )
        if scaler == 0:
            return raw, unit
        if isinstance(raw, int):
            # Exact decimal scaling, then one rounding to float (10.0**-n is itself inexact).
            scaled = Decimal(raw).scaleb(scaler)
            return (int(scaled) if scaler > 0 else float(scaled)), unit
        return float(raw) * 10.0**scaler, unit

    # -- actions --

    async def act(self, action: MeterAction, params: Mapping[str, Any] | None = None) -> ActionResult:
        async def run() -> ActionResult:
            await self.connect()
            try:
                return await self._act(action)
            except (DlmsError, TimeoutError, OSError) as err:
                raise self._wrap(err) from None

        result: ActionResult = await self._guard(run)
        return result

    async def _act(self, action: MeterAction) -> ActionResult:
        if action is MeterAction.SYNC_CLOCK:
            clock = self.points.get("0.0.0")
            ln = clock.logical_name if clock else "0-0:1.0.0.255"
            now = datetime.now(UTC)
            await self.client.set(AttributeDescriptor.of(ClassId.CLOCK, ln, 2), Data.date_time(now))
            return ActionResult(action, True, f"clock set to {now.isoformat(timespec='seconds')}")
        point = self.points.get(DISCONNECT_KEY)
        if point is None:
            raise MeterError(f"profile {self.profile.name} maps no disconnect control ({DISCONNECT_KEY})")
        if action is MeterAction.DISCONNECT:
            await self.client.remote_disconnect(point.logical_name)
        elif action is MeterAction.RECONNECT:
            await self.client.remote_reconnect(point.logical_name)
        else:  # pragma: no cover - MeterAction is closed
            raise MeterError(f"unsupported action {action}")
        await asyncio.sleep(0)
        output, control = await self._get_many(
            [
                AttributeDescriptor.of(ClassId.DISCONNECT_CONTROL, point.logical_name, _OUTPUT_STATE),
                AttributeDescriptor.of(ClassId.DISCONNECT_CONTROL, point.logical_name, _CONTROL_STATE),
            ]
        )
        read_at = datetime.now(UTC)
        if isinstance(control, DataAccessResult):
            return ActionResult(action, False, f"control_state read-back refused: {control.label}")
        state = int(control.value)
        readback = KeyRead(
            DISCONNECT_KEY, state, None, read_at, raw=state, source=_source(point, _CONTROL_STATE)
        )
        output_text = "?" if isinstance(output, DataAccessResult) else str(bool(output.value)).lower()
        name = _CONTROL_STATES.get(state, f"code {state}")
        detail = f"control_state {name}, output_state {output_text}"
        if action is MeterAction.DISCONNECT:
            ok = state == 0
        else:
            ok = state in (1, 2)
            if state == 2:
                detail += " (needs a local button press to reconnect)"
        return ActionResult(action, ok, detail, {DISCONNECT_KEY: readback})


def _refusal(err: ServiceError) -> DataAccessResult:
    text = str(err)
    for member in DataAccessResult:
        if member.label in text:
            return member
    return DataAccessResult.OTHER_REASON
