"""Stateful plausibility checks on normalised readings (G14: ``suspect`` says a read failed a check).

Per meter, the checker remembers the last accepted value of each cumulative register. A fresh reading is
marked ``suspect`` with a ``reason`` when

* a cumulative register (1.8.0, 2.8.0, 96.1.0) went down (the remembered value is kept, so one bad read does
  not make every later good read look like a jump);
* a voltage is outside the configured range;
* the meter clock differs from the gateway's read time by more than the drift threshold.

Readings that are already not ``good`` (comms_lost, or suspect from normalisation) are left as they are.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime

from villageami.contract.envelope import Quality
from villageami.contract.vmrs import CLOCK_KEY
from villageami.meters.normalise import VmrsReading

CUMULATIVE_KEYS = frozenset({"1.8.0", "2.8.0", "96.1.0"})
VOLTAGE_KEYS = frozenset({"32.7.0", "52.7.0", "72.7.0"})


@dataclass(frozen=True, slots=True)
class Thresholds:
    clock_drift_s: float = 120.0
    voltage_min_v: float = 180.0
    voltage_max_v: float = 270.0


@dataclass(slots=True)
class MeterChecks:
    """What the checker found on one meter's cycle, beside the adjusted readings."""

    readings: list[VmrsReading]
    clock_drift_s: float | None = None
    decreased: dict[str, tuple[float, float]] = field(default_factory=dict)


def clock_drift(reading: VmrsReading) -> float | None:
    """Meter clock minus the gateway time of the read, in seconds (None when the value is not a time)."""
    if not isinstance(reading.value, str):
        return None
    try:
        meter_time = datetime.fromisoformat(reading.value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if meter_time.tzinfo is None:
        return None
    return (meter_time - reading.read_at).total_seconds()


class PlausibilityChecker:
    def __init__(self, thresholds: Thresholds) -> None:
        self.thresholds = thresholds
        self._last: dict[tuple[str, str], float] = {}

    def check(self, meter_serial: str, readings: list[VmrsReading]) -> MeterChecks:
        result = MeterChecks(readings=[])
        for reading in readings:
            result.readings.append(self._check_one(meter_serial, reading, result))
        return result

    def _check_one(self, serial: str, reading: VmrsReading, result: MeterChecks) -> VmrsReading:
        if reading.quality is not Quality.GOOD:
            return reading
        value = reading.value
        numeric = isinstance(value, int | float) and not isinstance(value, bool)
        if reading.key in CUMULATIVE_KEYS and numeric:
            previous = self._last.get((serial, reading.key))
            if previous is not None and float(value) < previous:
                result.decreased[reading.key] = (previous, float(value))
                return replace(
                    reading,
                    quality=Quality.SUSPECT,
                    reason=f"cumulative register went down from {previous} to {value}",
                )
            self._last[(serial, reading.key)] = float(value)
        if reading.key in VOLTAGE_KEYS and numeric:
            low, high = self.thresholds.voltage_min_v, self.thresholds.voltage_max_v
            if not low <= float(value) <= high:
                return replace(
                    reading, quality=Quality.SUSPECT, reason=f"voltage {value} V outside {low}-{high} V"
                )
        if reading.key == CLOCK_KEY:
            drift = clock_drift(reading)
            result.clock_drift_s = drift
            if drift is not None and abs(drift) > self.thresholds.clock_drift_s:
                limit = self.thresholds.clock_drift_s
                reason = f"meter clock off by {drift:+.0f} s (threshold {limit:.0f} s)"
                return replace(reading, quality=Quality.SUSPECT, reason=reason)
        return reading
