"""Adversarial review of the uplink: the replay flag must not depend on the wall clock."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from gw_mqtt import Collector, first_arrivals
from test_gw_uplink import eventually, make_uplink, reading, running

import villageami.gateway.outbox as outbox_module
from villageami.gateway.outbox import Outbox

pytestmark = pytest.mark.integration


class _ClockAhead(datetime):
    """The gateway's clock one hour ahead (no RTC, wrong GNSS fix) until NTP steps it back."""

    @classmethod
    def now(cls, tz: Any = None) -> Any:
        return datetime.now(tz) + timedelta(hours=1)


def test_message_stored_before_a_backward_clock_step_is_still_flagged_replayed(
    mosquitto: tuple[str, int], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Before the fix the rule compared the row's wall-clock created_at with the session's wall-clock start:
    # after the clock stepped back, a reading that had waited out an outage went out as live.
    async def scenario() -> None:
        prefix = f"test/{uuid.uuid4().hex}"
        collector = Collector(*mosquitto, f"{prefix}/#")
        box = Outbox(tmp_path / "o.db")
        with monkeypatch.context() as patch:
            patch.setattr(outbox_module, "datetime", _ClockAhead)
            box.enqueue(*reading(prefix, 0))
        assert box.pending()[0].created_at > datetime.now(UTC)
        uplink = make_uplink(prefix, *mosquitto, box)
        try:
            async with running(uplink):
                assert await eventually(lambda: len(collector.payloads("/telemetry")) >= 1)
                box.enqueue(*reading(prefix, 1))
                uplink.notify()
                assert await eventually(lambda: len(collector.payloads("/telemetry")) >= 2)
            got = first_arrivals(collector.payloads("/telemetry"))
            assert got[0]["n"] == 0 and got[0].get("replayed") is True
            assert got[1]["n"] == 1 and "replayed" not in got[1]
        finally:
            collector.close()

    asyncio.run(scenario())
