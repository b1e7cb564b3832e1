"""Durable DLMS invocation counters: the file store, and a ciphered meter read across a gateway restart."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from villageami.meters.counters import CounterStoreError, JsonFileCounterStore, MemoryCounterStore
from villageami.meters.dlms_driver import COUNTER_BLOCK, DlmsDriver
from villageami.meters.driver import MeterError
from villageami.meters.factory import open_driver
from villageami.sim.dlms_app import SecurityPolicy
from villageami.sim.dlms_server import DlmsSimulator


def test_file_store_survives_a_new_instance(tmp_path: Path) -> None:
    path = tmp_path / "state" / "counters.json"
    store = JsonFileCounterStore(path)
    assert store.load("m1") is None
    store.save("m1", 512)
    store.save("m2", 7)
    again = JsonFileCounterStore(path)
    assert again.load("m1") == 512 and again.load("m2") == 7
    assert json.loads(path.read_text()) == {"m1": 512, "m2": 7}
    assert [p.name for p in path.parent.iterdir()] == ["counters.json"]  # no temp file left behind


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "is not JSON"), ('{"m1": -1}', "counters >= 0"), ('{"m1": "5"}', "counters >= 0")],
)
def test_file_store_rejects_a_damaged_file_naming_it(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "counters.json"
    path.write_text(content)
    with pytest.raises(CounterStoreError, match=message) as caught:
        JsonFileCounterStore(path)
    assert str(path) in str(caught.value)


def _hls_url(port: int, policy: SecurityPolicy) -> str:
    return (
        f"dlms+tcp://127.0.0.1:{port}?client=1&server=1&auth=hls-gmac&timeout=2"
        f"&key={policy.authentication_key.hex()}&ekey={policy.encryption_key.hex()}&title={b'VAMCLI01'.hex()}"
    )


def test_ciphered_meter_is_read_again_after_a_restart_only_with_persisted_counters() -> None:
    async def main() -> None:
        policy = SecurityPolicy()
        store = MemoryCounterStore()
        async with DlmsSimulator(policy=policy) as sim:
            url = _hls_url(sim.port, policy)
            first = open_driver(url, "dlms-generic-prepaid-1ph", counter_store=store, counter_key="m1")
            assert isinstance(first, DlmsDriver)
            async with first:
                assert (await first.read(["1.8.0", "32.7.0"]))["32.7.0"].ok
                used = first.client.invocation_counter
            reserved = store.load("m1")
            assert reserved is not None and reserved >= used + COUNTER_BLOCK // 2

            # A restarted gateway with the same store starts above every counter the meter has seen.
            second = open_driver(url, "dlms-generic-prepaid-1ph", counter_store=store, counter_key="m1")
            assert isinstance(second, DlmsDriver)
            async with second:
                assert (await second.read(["1.8.0"]))["1.8.0"].ok
                assert second.client.invocation_counter > reserved - 1

            # Without a store the counter restarts from 0 and the meter refuses the replay.
            forgetful = open_driver(url, "dlms-generic-prepaid-1ph")
            with pytest.raises(MeterError):
                async with forgetful:
                    await forgetful.read(["1.8.0"])

    asyncio.run(asyncio.wait_for(main(), 30))
