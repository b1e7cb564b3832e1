"""MQTT topics of the northbound contract: build, parse, subscribe, and which are retained.

::

    openami/v1/{feederId}/{gatewayId}/meter/{meterSerial}/telemetry        QoS 1, not retained
    openami/v1/{feederId}/{gatewayId}/meter/{meterSerial}/event            QoS 1, not retained
    openami/v1/{feederId}/{gatewayId}/meter/{meterSerial}/command          QoS 1, not retained
    openami/v1/{feederId}/{gatewayId}/meter/{meterSerial}/command/result   QoS 1, not retained
    openami/v1/{feederId}/{gatewayId}/gateway/status                       QoS 1, retained (and last will)
    openami/v1/{feederId}/{gatewayId}/gateway/command                      QoS 1, not retained
    openami/v1/{feederId}/{gatewayId}/gateway/command/result               QoS 1, not retained
    openami/v1/{feederId}/{gatewayId}/gateway/inventory                    QoS 1, retained

Every function takes ``root`` (default ``openami/v1``) so tests on a shared broker can use a unique prefix.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from villageami.contract.envelope import MessageKind
from villageami.contract.errors import TopicError

__all__ = [
    "DEFAULT_ROOT",
    "QOS",
    "Topic",
    "build_topic",
    "is_retained",
    "parse_topic",
    "subscription",
]

DEFAULT_ROOT = "openami/v1"
QOS = 1  # every northbound message (upstream mqtt.qos)

_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_METER_SUFFIX = {
    MessageKind.TELEMETRY: ("telemetry",),
    MessageKind.EVENT: ("event",),
    MessageKind.COMMAND: ("command",),
    MessageKind.COMMAND_RESULT: ("command", "result"),
}
_GATEWAY_SUFFIX = {
    MessageKind.STATUS: ("status",),
    MessageKind.COMMAND: ("command",),
    MessageKind.COMMAND_RESULT: ("command", "result"),
    MessageKind.INVENTORY: ("inventory",),
}
_METER_BY_SUFFIX = {v: k for k, v in _METER_SUFFIX.items()}
_GATEWAY_BY_SUFFIX = {v: k for k, v in _GATEWAY_SUFFIX.items()}
_RETAINED = frozenset({MessageKind.STATUS, MessageKind.INVENTORY})


def _check_id(value: str, what: str, *, wildcard: bool = False) -> str:
    if wildcard and value == "+":
        return value
    if not isinstance(value, str) or _ID.fullmatch(value) is None:
        raise TopicError(f"{what} {value!r} may not be a topic level: use 1-64 of A-Z a-z 0-9 . _ -")
    return value


@dataclass(frozen=True, slots=True)
class Topic:
    """A parsed topic. ``meter_serial`` is None for gateway-level topics."""

    feeder_id: str
    gateway_id: str
    kind: MessageKind
    meter_serial: str | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", MessageKind(self.kind))
        _check_id(self.feeder_id, "feederId")
        _check_id(self.gateway_id, "gatewayId")
        if self.meter_serial is None:
            if self.kind not in _GATEWAY_SUFFIX:
                raise TopicError(f"{self.kind} is a meter-level message: give a meter serial")
        else:
            _check_id(self.meter_serial, "meterSerial")
            if self.kind not in _METER_SUFFIX:
                raise TopicError(f"{self.kind} is a gateway-level message: it takes no meter serial")

    @property
    def retained(self) -> bool:
        return is_retained(self.kind)

    def to_text(self, root: str = DEFAULT_ROOT) -> str:
        if self.meter_serial is None:
            levels = ["gateway", *_GATEWAY_SUFFIX[self.kind]]
        else:
            levels = ["meter", self.meter_serial, *_METER_SUFFIX[self.kind]]
        return "/".join([root, self.feeder_id, self.gateway_id, *levels])

    def __str__(self) -> str:
        return self.to_text()


def build_topic(
    feeder_id: str,
    gateway_id: str,
    kind: MessageKind | str,
    meter_serial: str | None = None,
    *,
    root: str = DEFAULT_ROOT,
) -> str:
    """The topic text; ``meter_serial`` None means the gateway-level topic of that kind."""
    return Topic(feeder_id, gateway_id, MessageKind(kind), meter_serial).to_text(root)


def parse_topic(text: str, *, root: str = DEFAULT_ROOT) -> Topic:
    """Parse a concrete (wildcard-free) topic; :class:`TopicError` names the topic and what is wrong."""
    if not isinstance(text, str):
        raise TopicError(f"a topic must be text, got {type(text).__name__}: {text!r}")
    prefix = root + "/"
    if not text.startswith(prefix):
        raise TopicError(f"topic {text!r} does not start with {prefix!r}")
    levels = text[len(prefix) :].split("/")
    try:
        if len(levels) >= 4 and levels[2] == "meter":
            feeder_id, gateway_id, _, serial, *suffix = levels
            kind = _METER_BY_SUFFIX.get(tuple(suffix))
            if kind is None:
                raise TopicError(f"topic {text!r}: unknown meter message {'/'.join(suffix)!r}")
            return Topic(feeder_id, gateway_id, kind, serial)
        if len(levels) >= 4 and levels[2] == "gateway":
            feeder_id, gateway_id, _, *suffix = levels
            kind = _GATEWAY_BY_SUFFIX.get(tuple(suffix))
            if kind is None:
                raise TopicError(f"topic {text!r}: unknown gateway message {'/'.join(suffix)!r}")
            return Topic(feeder_id, gateway_id, kind, None)
    except TopicError as err:
        if text in str(err):
            raise
        raise TopicError(f"topic {text!r}: {err}") from err
    raise TopicError(
        f"topic {text!r} is not {root}/{{feederId}}/{{gatewayId}}/meter/{{meterSerial}}/... "
        "or .../gateway/..."
    )


def subscription(
    feeder_id: str = "+",
    gateway_id: str = "+",
    kind: MessageKind | str | None = None,
    meter_serial: str = "+",
    *,
    gateway_level: bool = False,
    root: str = DEFAULT_ROOT,
) -> str:
    """A subscription filter, e.g. all telemetry of a feeder: ``subscription("f1", kind="telemetry")``.

    ``kind`` None subscribes to everything under the gateway(s). Commands and results are meter level
    unless ``gateway_level`` is set; status and inventory are always gateway level.
    """
    _check_id(feeder_id, "feederId", wildcard=True)
    _check_id(gateway_id, "gatewayId", wildcard=True)
    base = f"{root}/{feeder_id}/{gateway_id}"
    if kind is None:
        return f"{base}/#"
    kind = MessageKind(kind)
    if kind in _METER_SUFFIX and not (gateway_level and kind in _GATEWAY_SUFFIX):
        _check_id(meter_serial, "meterSerial", wildcard=True)
        return "/".join([base, "meter", meter_serial, *_METER_SUFFIX[kind]])
    return "/".join([base, "gateway", *_GATEWAY_SUFFIX[kind]])


def is_retained(kind: MessageKind | str) -> bool:
    """Status and inventory are retained; telemetry, events, commands and results never are (G5)."""
    return MessageKind(kind) in _RETAINED
