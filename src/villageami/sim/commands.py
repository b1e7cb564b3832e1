"""`villageami sim ...`: meter simulators. Each simulator module adds its own sub-command."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    from villageami.sim import dlms_server, iec21_server, modbus_server

    sim_app = typer.Typer(help="Run a meter simulator.", no_args_is_help=True)
    for module in (dlms_server, modbus_server, iec21_server):
        module.register(sim_app)
    app.add_typer(sim_app, name="sim")
