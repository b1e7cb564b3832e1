"""Prometheus metrics of one gateway, on a private registry (tests run several gateways in a process)."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server


class GatewayMetrics:
    def __init__(self) -> None:
        self._server: Any = None
        self.registry = CollectorRegistry()
        self.reads = Counter(
            "villageami_meter_reads", "Meter reads by outcome", ["meter", "outcome"], registry=self.registry
        )
        self.cycle_seconds = Histogram(
            "villageami_read_cycle_seconds",
            "Duration of one read cycle of a loop (bus or TCP group)",
            ["loop"],
            buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600),
            registry=self.registry,
        )
        self.outbox_depth = Gauge(
            "villageami_outbox_depth", "Messages waiting in the outbox", registry=self.registry
        )
        self.outbox_bytes = Gauge(
            "villageami_outbox_bytes", "Payload bytes in the outbox", registry=self.registry
        )
        self.evicted = Counter(
            "villageami_outbox_evicted",
            "Telemetry messages evicted to bound the outbox",
            registry=self.registry,
        )
        self.publish_latency = Histogram(
            "villageami_publish_latency_seconds",
            "Time from publish to PUBACK",
            buckets=(0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30),
            registry=self.registry,
        )
        self.loop_restarts = Counter(
            "villageami_loop_restarts",
            "Supervised loops restarted after an error",
            ["loop"],
            registry=self.registry,
        )
        self.commands = Counter(
            "villageami_commands", "Command results published, by status", ["status"], registry=self.registry
        )
        self.connected = Gauge(
            "villageami_broker_connected", "1 while the MQTT session is up", registry=self.registry
        )

    def serve(self, host: str, port: int) -> int:
        """Start the /metrics HTTP endpoint; returns the bound port (port 0 picks a free one)."""
        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        self._server = server
        return int(server.server_port)

    def stop_serving(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()

    def value(self, name: str, labels: dict[str, str] | None = None) -> float:
        """A sample's current value (for tests and the status message); 0 when absent."""
        found = self.registry.get_sample_value(name, labels or {})
        return 0.0 if found is None else float(found)
