"""The `villageami` command. Each layer registers its own sub-commands; this file only assembles them."""

from __future__ import annotations

import sys

import typer

from villageami import __version__
from villageami.errors import VillageAmiError


def build_app() -> typer.Typer:
    app = typer.Typer(
        name="villageami",
        help="Open metering stack for village mini-grids.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
    )

    @app.callback()
    def root() -> None:
        """Open metering stack for village mini-grids."""

    @app.command("version")
    def version() -> None:
        """Print the villageami version."""
        typer.echo(__version__)

    # Imported here so `villageami --help` stays cheap if a layer pulls heavy deps.
    from villageami.contract import commands as contract_commands
    from villageami.dlms import commands as dlms_commands
    from villageami.gateway import commands as gateway_commands
    from villageami.meters import commands as meters_commands
    from villageami.sim import commands as sim_commands

    for module in (contract_commands, dlms_commands, meters_commands, sim_commands, gateway_commands):
        module.register(app)
    return app


def main() -> None:
    """Entry point. Commands report their own errors; this is the net for any that escape, so a user never
    sees a traceback for bad input or a busy port: one ``error:`` line and exit code 2 (1 for OS errors)."""
    try:
        build_app()()
    except VillageAmiError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except OSError as exc:
        typer.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
