"""CLI commands of villageami.dlms: ``villageami dlms decode``."""

from __future__ import annotations

import sys
from typing import Annotated

import orjson
import typer

from villageami.dlms.errors import DlmsError


def _key(text: str | None, name: str, length: int) -> bytes | None:
    from villageami.dlms.translator import parse_hex

    if text is None:
        return None
    value = parse_hex(text)
    if len(value) != length:
        raise DlmsError(f"{name} must be {length} octets ({2 * length} hex digits), got {len(value)}")
    return value


def register(app: typer.Typer) -> None:
    """Add this layer's commands to the root app."""
    dlms_app = typer.Typer(help="DLMS/COSEM tools.", no_args_is_help=True)

    @dlms_app.command("decode")
    def decode(
        hex_input: Annotated[
            str, typer.Argument(metavar="HEX", help="frame or APDU as hex; '-' reads stdin")
        ],
        ek: Annotated[str | None, typer.Option("--ek", help="global encryption key (hex)")] = None,
        ak: Annotated[str | None, typer.Option("--ak", help="authentication key (hex)")] = None,
        system_title: Annotated[
            str | None, typer.Option("--system-title", help="sender system title (hex) if not in the input")
        ] = None,
        dedicated_key: Annotated[
            str | None, typer.Option("--dedicated-key", help="dedicated key (hex) for ded-* APDUs")
        ] = None,
    ) -> None:
        """Decode an HDLC frame, wrapper PDU or bare APDU and print it as JSON."""
        from villageami.dlms.translator import TranslatorKeys, parse_hex, translate

        text = sys.stdin.read() if hex_input == "-" else hex_input
        try:
            keys = TranslatorKeys(
                encryption_key=_key(ek, "--ek", 16),
                authentication_key=_key(ak, "--ak", 16),
                system_title=_key(system_title, "--system-title", 8),
                dedicated_key=_key(dedicated_key, "--dedicated-key", 16),
            )
            result = translate(parse_hex(text), keys)
        except DlmsError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None
        typer.echo(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode())

    app.add_typer(dlms_app, name="dlms")
