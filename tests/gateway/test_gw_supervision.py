"""Supervision (restart with backoff, counted) and the Prometheus endpoint."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.request
from pathlib import Path

from gw_fakes import FakeFleet, make_config, meter_entry, no_profile
from test_gw_reads import ALL, cycle

from villageami.gateway.app import Gateway, supervise
from villageami.gateway.metrics import GatewayMetrics


def test_failing_loop_is_restarted_and_counted() -> None:
    calls: list[int] = []
    restarts: list[tuple[str, str]] = []

    async def flaky() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError(f"boom {len(calls)}")
        await asyncio.sleep(3600)

    async def scenario() -> None:
        task = asyncio.create_task(
            supervise(
                "flaky", flaky, on_restart=lambda n, e: restarts.append((n, str(e))), backoff_initial=0.01
            )
        )
        for _ in range(200):
            if len(calls) >= 3:
                break
            await asyncio.sleep(0.01)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert len(calls) == 3
    assert restarts == [("flaky", "boom 1"), ("flaky", "boom 2")]


def test_metrics_endpoint_reports_reads_and_outbox(tmp_path: Path) -> None:
    fleet = FakeFleet()
    metrics = GatewayMetrics()
    config = make_config(tmp_path, [meter_entry("M1"), meter_entry("M2")])
    gateway = Gateway(
        config, base_dir=tmp_path, driver_factory=fleet, profile_loader=no_profile, metrics=metrics
    )
    fleet.meters["M2"].dead = True
    asyncio.run(cycle(gateway, ALL))
    port = metrics.serve("127.0.0.1", 0)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
            text = response.read().decode()
    finally:
        metrics.stop_serving()
    assert 'villageami_meter_reads_total{meter="M1",outcome="ok"} 1.0' in text
    assert 'villageami_meter_reads_total{meter="M2",outcome="failed"} 1.0' in text
    assert f"villageami_outbox_depth {float(gateway.outbox.depth())}" in text
    assert "villageami_read_cycle_seconds_count" in text
