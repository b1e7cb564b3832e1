"""CLI of villageami.gateway: `villageami gateway check CONFIG` and `villageami gateway run CONFIG`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from villageami.errors import VillageAmiError

# LogRecord attributes that are not "extra" fields.
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, plus every ``extra`` field."""

    def format(self, record: logging.LogRecord) -> str:
        body: dict[str, Any] = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S") + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        body |= {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        if record.exc_info:
            body["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(body, default=str).decode()


def setup_logging(level: str, fmt: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        formatter: logging.Formatter = JsonFormatter()
        formatter.converter = time.gmtime
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def register(app: typer.Typer) -> None:
    """Add this layer's commands to the root app."""
    gateway_app = typer.Typer(
        help="The edge gateway: read meters, publish OpenAMI over MQTT.", no_args_is_help=True
    )

    @gateway_app.command("check")
    def check(config: Annotated[Path, typer.Argument(help="gateway config file (YAML or JSON)")]) -> None:
        """Check a gateway config file and explain every problem with its path."""
        from villageami.gateway.config import load_config

        try:
            cfg = load_config(config)
        except VillageAmiError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        buses = {m.bus for m in cfg.meters if m.bus is not None}
        typer.echo(
            f"{config}: ok: gateway {cfg.gateway_id} on feeder {cfg.feeder_id}, {len(cfg.meters)} meter(s), "
            f"{len(buses)} serial bus(es), broker {cfg.broker.host}:{cfg.broker.port}"
        )

    @gateway_app.command("run")
    def run(config: Annotated[Path, typer.Argument(help="gateway config file (YAML or JSON)")]) -> None:
        """Run the gateway until SIGINT/SIGTERM."""
        from villageami.gateway.app import Gateway
        from villageami.gateway.config import load_config

        try:
            cfg = load_config(config)
        except VillageAmiError as exc:
            typer.echo(str(exc), err=True)
            raise typer.Exit(1) from None
        setup_logging(cfg.log.level, cfg.log.format)

        async def main() -> None:
            gateway = Gateway(cfg, base_dir=config.parent)
            task = asyncio.create_task(gateway.run())
            loop = asyncio.get_running_loop()
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.add_signal_handler(sig, task.cancel)
            with contextlib.suppress(asyncio.CancelledError):
                await task

        try:
            asyncio.run(main())
        except VillageAmiError as exc:
            typer.echo(f"gateway stopped: {exc}", err=True)
            raise typer.Exit(1) from None

    app.add_typer(gateway_app, name="gateway")
