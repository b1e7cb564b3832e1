"""CLI commands of villageami.meters: ``villageami read`` and ``villageami profile check|list|schema``.

``villageami read URL --profile NAME`` reads one meter and prints the telemetry envelope the gateway would
publish for it, built with ``villageami.contract.envelope``. A one-shot read is not part of a gateway's
persisted message sequence, so ``seq`` is always 0 and ``msgId`` is fresh on every run.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import typer

from villageami.contract.envelope import new_msg_id, telemetry
from villageami.contract.errors import ContractError
from villageami.contract.vmrs import SERIAL_KEY, canonical_key
from villageami.errors import VillageAmiError
from villageami.meters.driver import KeyRead, MeterDriver, MeterError, MeterUnreachable
from villageami.meters.factory import open_driver
from villageami.meters.normalise import Normalised, normalise_all
from villageami.meters.profile import (
    Profile,
    ProfileError,
    check_profile_file,
    load_profile,
    load_profile_file,
    profile_json_schema_text,
    shipped_profile_names,
)
from villageami.meters.profile import Protocol as ProfileProtocol
from villageami.meters.url import parse_meter_url

EXIT_OK = 0
EXIT_METER = 1  # the meter did not answer, or answered nothing publishable
EXIT_USAGE = 2  # bad URL, unknown profile or key, bad ids

ONE_SHOT_SEQ = 0
_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ReadError(VillageAmiError):
    """``villageami read`` cannot produce an envelope; the message says why."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def _keys(option: list[str] | None, profile: Profile, protocol: ProfileProtocol) -> list[str]:
    mapped = list(profile.entries_for(protocol))
    if not option:
        return mapped
    keys: list[str] = []
    for item in (k.strip() for chunk in option for k in chunk.split(",")):
        if not item:
            continue
        try:
            key = canonical_key(item)
        except ContractError as err:
            raise ReadError(str(err), EXIT_USAGE) from None
        if key not in mapped:
            raise ReadError(f"key {key} is not mapped by profile {profile.name} for {protocol}", EXIT_USAGE)
        if key not in keys:
            keys.append(key)
    return keys


async def _read(open_it: Callable[[], MeterDriver], keys: list[str]) -> dict[str, KeyRead]:
    driver = open_it()  # inside the loop: transports bind to the running event loop
    try:
        await driver.connect()
        return await driver.read(keys)
    finally:
        await driver.close()


def read_envelope(
    url: str,
    profile_name: str,
    *,
    keys: list[str] | None = None,
    feeder: str = "local",
    gateway: str = "villageami-cli",
    serial: str | None = None,
    timeout: float | None = None,
) -> tuple[dict[str, Any], Normalised]:
    """Read one meter and build its telemetry envelope. Raises ReadError / VillageAmiError with one line."""
    meter_url = parse_meter_url(url)
    profile = load_profile(profile_name)
    protocol = ProfileProtocol(meter_url.protocol)
    wanted = _keys(keys, profile, protocol)
    for what, value in (("--feeder", feeder), ("--gateway", gateway)):
        if _ID.fullmatch(value) is None:
            raise ReadError(f"{what} {value!r} must be 1-64 characters of A-Z a-z 0-9 . _ -", EXIT_USAGE)
    if serial is not None and _ID.fullmatch(serial) is None:
        raise ReadError(f"--serial {serial!r} must be 1-64 characters of A-Z a-z 0-9 . _ -", EXIT_USAGE)
    try:
        reads = asyncio.run(_read(lambda: open_driver(meter_url, profile, timeout=timeout), wanted))
    except MeterUnreachable as err:
        raise ReadError(f"meter unreachable: {err}", EXIT_METER) from None
    except MeterError as err:
        raise ReadError(f"meter error: {err}", EXIT_METER) from None
    result = normalise_all(reads, profile)
    if not result.readings:
        reasons = "; ".join(f"{k}: {why}" for k, why in result.omitted.items())
        raise ReadError(f"the meter answered but no key can be published ({reasons})", EXIT_METER)
    meter_serial = serial
    if meter_serial is None:
        read_serial = next((r.value for r in result.readings if r.key == SERIAL_KEY), None)
        if isinstance(read_serial, str) and _ID.fullmatch(read_serial):
            meter_serial = read_serial
        else:
            hint = f"the meter reported {read_serial!r}" if read_serial else "the profile reads no serial"
            raise ReadError(f"no usable meter serial ({hint}); pass --serial", EXIT_USAGE)
    envelope = telemetry(
        feeder_id=feeder,
        gateway_id=gateway,
        meter_serial=meter_serial,
        registers=result.entries(),
        ts=datetime.now(UTC),
        msg_id=new_msg_id(),
        seq=ONE_SHOT_SEQ,
    )
    return envelope, result


def register(app: typer.Typer) -> None:
    """Add this layer's commands to the root app."""

    @app.command("read")
    def read_command(
        url: Annotated[str, typer.Argument(help="Meter URL, e.g. modbus+tcp://127.0.0.1:5020?unit=1")],
        profile: Annotated[str, typer.Option("--profile", help="Profile name or YAML path.")],
        keys: Annotated[
            list[str] | None, typer.Option("--keys", help="VMRS keys (comma-separated); default all mapped.")
        ] = None,
        feeder: Annotated[str, typer.Option("--feeder", help="feederId of the envelope.")] = "local",
        gateway: Annotated[
            str, typer.Option("--gateway", help="gatewayId of the envelope.")
        ] = "villageami-cli",
        serial: Annotated[
            str | None, typer.Option("--serial", help="meterSerial; default: the serial the meter reports.")
        ] = None,
        timeout: Annotated[float | None, typer.Option("--timeout", help="Seconds per request.")] = None,
        compact: Annotated[bool, typer.Option("--compact", help="One line of JSON.")] = False,
    ) -> None:
        """Read one meter and print its telemetry envelope (as the gateway would publish it)."""
        # pymodbus logs connection failures itself; the one error line below says it for the user.
        logging.getLogger("pymodbus").setLevel(logging.CRITICAL)
        try:
            envelope, result = read_envelope(
                url, profile, keys=keys, feeder=feeder, gateway=gateway, serial=serial, timeout=timeout
            )
        except ReadError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(err.exit_code) from None
        except VillageAmiError as err:
            typer.echo(f"error: {err}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
        for key, why in result.omitted.items():
            typer.echo(f"note: {key} omitted: {why}", err=True)
        option = 0 if compact else orjson.OPT_INDENT_2
        typer.echo(orjson.dumps(envelope, option=option).decode())

    profile_app = typer.Typer(help="Meter profiles: check, list, schema.", no_args_is_help=True)

    @profile_app.command("check")
    def check_command(
        files: Annotated[list[str], typer.Argument(metavar="FILE...", help="Profile YAML files.")],
    ) -> None:
        """Check profile files; print every problem with its path. Exit 1 if any file fails."""
        failed = 0
        for file in files:
            issues = check_profile_file(file)
            if not issues:
                loaded = load_profile_file(file)
                protocols = ", ".join(p.value for p in loaded.protocols)
                typer.echo(f"{file}: ok ({loaded.name}, {len(loaded.registers)} registers, {protocols})")
                continue
            failed += 1
            for issue in issues:
                typer.echo(f"{file}: {issue}", err=True)
        if failed:
            raise typer.Exit(1)

    @profile_app.command("list")
    def list_command() -> None:
        """List the shipped profiles."""
        for name in shipped_profile_names():
            try:
                loaded = load_profile(name)
            except ProfileError as err:  # a broken shipped profile is a bug; say so, keep listing
                typer.echo(f"{name}: BROKEN: {err}", err=True)
                continue
            protocols = ",".join(p.value for p in loaded.protocols)
            typer.echo(f"{name}\t{loaded.identity.vendor} {loaded.identity.model}\t{protocols}")

    @profile_app.command("schema")
    def schema_command() -> None:
        """Print the JSON Schema of the profile format."""
        typer.echo(profile_json_schema_text(), nl=False)

    app.add_typer(profile_app, name="profile")
