"""Topics: build/parse round trips, malformed topics, subscriptions, retained flags."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from villageami.contract.envelope import MessageKind
from villageami.contract.errors import TopicError
from villageami.contract.topics import Topic, build_topic, is_retained, parse_topic, subscription
from villageami.errors import VillageAmiError

ids = st.text(alphabet="ABCXYZabcxyz0189._-", min_size=1, max_size=64)
meter_kinds = [MessageKind.TELEMETRY, MessageKind.EVENT, MessageKind.COMMAND, MessageKind.COMMAND_RESULT]
gateway_kinds = [MessageKind.STATUS, MessageKind.COMMAND, MessageKind.COMMAND_RESULT, MessageKind.INVENTORY]


@pytest.mark.parametrize(
    ("args", "text"),
    [
        (("f1", "g1", "telemetry", "m1"), "openami/v1/f1/g1/meter/m1/telemetry"),
        (("f1", "g1", "event", "m1"), "openami/v1/f1/g1/meter/m1/event"),
        (("f1", "g1", "command", "m1"), "openami/v1/f1/g1/meter/m1/command"),
        (("f1", "g1", "command-result", "m1"), "openami/v1/f1/g1/meter/m1/command/result"),
        (("f1", "g1", "status"), "openami/v1/f1/g1/gateway/status"),
        (("f1", "g1", "command"), "openami/v1/f1/g1/gateway/command"),
        (("f1", "g1", "command-result"), "openami/v1/f1/g1/gateway/command/result"),
        (("f1", "g1", "inventory"), "openami/v1/f1/g1/gateway/inventory"),
    ],
)
def test_every_topic(args: tuple[str, ...], text: str) -> None:
    assert build_topic(*args) == text
    parsed = parse_topic(text)
    assert (parsed.feeder_id, parsed.gateway_id, parsed.kind.value) == args[:3]
    assert parsed.meter_serial == (args[3] if len(args) == 4 else None)


@given(ids, ids, ids, st.sampled_from(meter_kinds))
def test_meter_topic_round_trip(feeder: str, gateway: str, serial: str, kind: MessageKind) -> None:
    text = build_topic(feeder, gateway, kind, serial)
    assert parse_topic(text) == Topic(feeder, gateway, kind, serial)
    assert str(parse_topic(text)) == text


@given(ids, ids, st.sampled_from(gateway_kinds))
def test_gateway_topic_round_trip(feeder: str, gateway: str, kind: MessageKind) -> None:
    assert parse_topic(build_topic(feeder, gateway, kind)) == Topic(feeder, gateway, kind)


@given(ids, ids, ids)
def test_custom_root_round_trip(feeder: str, gateway: str, serial: str) -> None:
    root = "test-5f2a/openami/v1"
    text = build_topic(feeder, gateway, "telemetry", serial, root=root)
    assert text.startswith(root + "/")
    assert parse_topic(text, root=root) == Topic(feeder, gateway, MessageKind.TELEMETRY, serial)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "openami/v1",
        "openami/v2/f1/g1/meter/m1/telemetry",
        "openami/v1/f1/g1/meter/m1",
        "openami/v1/f1/g1/meter/m1/telemetry/extra",
        "openami/v1/f1/g1/meter/m1/status",
        "openami/v1/f1/g1/gateway/telemetry",
        "openami/v1/f1/g1/gateway/status/x",
        "openami/v1/f1/g1/meters/m1/telemetry",
        "openami/v1/f1/g1/meter//telemetry",
        "openami/v1/f 1/g1/meter/m1/telemetry",
        "openami/v1/f1/+/meter/m1/telemetry",
        "openami/v1/f1/g1/meter/#",
        "/openami/v1/f1/g1/gateway/status",
        "openami/v1/" + "f" * 65 + "/g1/gateway/status",
    ],
)
def test_malformed_topics_rejected(text: str) -> None:
    with pytest.raises(TopicError) as info:
        parse_topic(text)
    assert repr(text) in str(info.value)
    assert isinstance(info.value, VillageAmiError)


def test_invalid_builds() -> None:
    with pytest.raises(TopicError, match="meter serial"):
        build_topic("f1", "g1", "telemetry")
    with pytest.raises(TopicError, match="gateway-level"):
        build_topic("f1", "g1", "status", "m1")
    with pytest.raises(TopicError, match="'a/b'"):
        build_topic("a/b", "g1", "status")
    with pytest.raises(ValueError):
        build_topic("f1", "g1", "nonsense")


def test_subscriptions() -> None:
    assert subscription("f1", kind="telemetry") == "openami/v1/f1/+/meter/+/telemetry"
    assert subscription(kind="event") == "openami/v1/+/+/meter/+/event"
    assert subscription("f1", "g1") == "openami/v1/f1/g1/#"
    assert subscription("f1", "g1", "command", "m1") == "openami/v1/f1/g1/meter/m1/command"
    assert subscription("f1", "g1", "command", gateway_level=True) == "openami/v1/f1/g1/gateway/command"
    assert subscription(kind="status") == "openami/v1/+/+/gateway/status"
    assert subscription(kind="command-result") == "openami/v1/+/+/meter/+/command/result"
    with pytest.raises(TopicError):
        subscription("f#", kind="telemetry")


def test_retained() -> None:
    assert {k for k in MessageKind if is_retained(k)} == {MessageKind.STATUS, MessageKind.INVENTORY}
    assert parse_topic("openami/v1/f1/g1/gateway/status").retained
    assert not parse_topic("openami/v1/f1/g1/meter/m1/command").retained
