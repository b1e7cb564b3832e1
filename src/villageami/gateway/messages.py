"""The gateway's side of the northbound contract: topics and envelopes for one gateway, ready for the outbox.

Every builder returns ``(topic, kind, build)`` where ``build(msg_id, seq)`` produces the envelope once the
outbox has allocated msgId and seq in its transaction.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import orjson

from villageami.contract import envelope, topics
from villageami.contract.envelope import EventState, EventType, MessageKind, Severity
from villageami.gateway.outbox import EnvelopeBuilder, MeterGap
from villageami.gateway.uplink import RetainedMessage

OutboxItem = tuple[str, str, EnvelopeBuilder]


@dataclass(frozen=True, slots=True)
class DetectedEvent:
    """An edge-detected event for one meter, before it gets msgId/seq."""

    meter_serial: str
    type: EventType
    severity: Severity
    state: EventState
    ts: datetime
    detail: Mapping[str, Any] | None = None
    registers: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True, slots=True)
class Northbound:
    feeder_id: str
    gateway_id: str
    root: str = topics.DEFAULT_ROOT

    def topic(self, kind: MessageKind, meter_serial: str | None = None) -> str:
        return topics.build_topic(self.feeder_id, self.gateway_id, kind, meter_serial, root=self.root)

    def command_subscriptions(self) -> list[str]:
        return [
            topics.subscription(self.feeder_id, self.gateway_id, MessageKind.COMMAND, root=self.root),
            topics.subscription(
                self.feeder_id, self.gateway_id, MessageKind.COMMAND, gateway_level=True, root=self.root
            ),
        ]

    def telemetry(
        self, meter_serial: str, registers: Sequence[Mapping[str, Any]], ts: datetime
    ) -> OutboxItem:
        def build(msg_id: str, seq: int) -> dict[str, Any]:
            return envelope.telemetry(
                feeder_id=self.feeder_id,
                gateway_id=self.gateway_id,
                meter_serial=meter_serial,
                registers=registers,
                ts=ts,
                msg_id=msg_id,
                seq=seq,
            )

        return self.topic(MessageKind.TELEMETRY, meter_serial), MessageKind.TELEMETRY.value, build

    def event(self, ev: DetectedEvent) -> OutboxItem:
        def build(msg_id: str, seq: int) -> dict[str, Any]:
            return envelope.event(
                feeder_id=self.feeder_id,
                gateway_id=self.gateway_id,
                meter_serial=ev.meter_serial,
                event_type=ev.type,
                severity=ev.severity,
                state=ev.state,
                ts=ev.ts,
                msg_id=msg_id,
                seq=seq,
                detail=ev.detail,
                registers=ev.registers,
            )

        return self.topic(MessageKind.EVENT, ev.meter_serial), MessageKind.EVENT.value, build

    def data_gap(self, gap: MeterGap, now: datetime) -> OutboxItem:
        """A data_gap event on the meter's event topic (or the gateway's id when the meter is unknown)."""
        detail: dict[str, Any] = {
            "firstSeq": gap.first_seq,
            "lastSeq": gap.last_seq,
            "evictedMessages": gap.count,
            "reason": "outbox full: oldest telemetry evicted",
        }
        if gap.first_ts is not None:
            detail["fromTs"] = gap.first_ts
        if gap.last_ts is not None:
            detail["toTs"] = gap.last_ts
        serial = gap.meter_serial or self.gateway_id
        ev = DetectedEvent(serial, EventType.DATA_GAP, Severity.MEDIUM, EventState.MOMENTARY, now, detail)
        return self.event(ev)

    def command_result(
        self,
        meter_serial: str | None,
        command_id: str,
        status: str,
        ts: datetime,
        detail: Mapping[str, Any] | None = None,
        registers: Sequence[Mapping[str, Any]] = (),
    ) -> OutboxItem:
        def build(msg_id: str, seq: int) -> dict[str, Any]:
            return envelope.command_result(
                feeder_id=self.feeder_id,
                gateway_id=self.gateway_id,
                meter_serial=meter_serial,
                command_id=command_id,
                status=status,
                ts=ts,
                msg_id=msg_id,
                seq=seq,
                detail=detail,
                registers=registers,
            )

        return self.topic(MessageKind.COMMAND_RESULT, meter_serial), "command_result", build

    # -- retained, outside the outbox (state, not history) ---------------------------------------------------

    def status(self, state: str, ts: datetime | None, **fields: Any) -> RetainedMessage:
        body = envelope.gateway_status(
            feeder_id=self.feeder_id, gateway_id=self.gateway_id, state=state, ts=ts, **fields
        )
        return RetainedMessage(self.topic(MessageKind.STATUS), orjson.dumps(body))

    def last_will(self) -> RetainedMessage:
        body = envelope.last_will(self.feeder_id, self.gateway_id)
        return RetainedMessage(self.topic(MessageKind.STATUS), orjson.dumps(body))

    def inventory(self, meters: Sequence[Mapping[str, Any]], ts: datetime, fw: str) -> RetainedMessage:
        body = envelope.gateway_inventory(
            feeder_id=self.feeder_id, gateway_id=self.gateway_id, ts=ts, meters=meters, fw=fw
        )
        return RetainedMessage(self.topic(MessageKind.INVENTORY), orjson.dumps(body))
