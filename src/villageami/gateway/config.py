"""Gateway configuration: one YAML (or JSON) file per gateway, checked before anything runs.

``config.schema.json`` beside this module is generated from the pydantic model (``python -m
villageami.gateway.config``) and a test keeps the two in step, so editors can validate the file too.
Every error names its path inside the file (``meters[2].parent: ...``), see :func:`load_config`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import time
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, Self, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from villageami.contract.envelope import MeterRole
from villageami.contract.vmrs import CLOCK_KEY, VMRS, IntervalClass
from villageami.errors import VillageAmiError
from villageami.meters.profile import ProfileError, load_profile
from villageami.meters.url import UrlError, parse_meter_url

SCHEMA_PATH = Path(__file__).with_name("config.schema.json")
_ID = r"^[A-Za-z0-9._-]{1,64}$"


class ConfigIssue(BaseModel):
    path: str
    message: str

    def __str__(self) -> str:
        return f"{self.path or '(top level)'}: {self.message}"


class ConfigError(VillageAmiError):
    """A gateway config file that cannot be used; lists every problem with its path."""

    def __init__(self, source: str, issues: list[ConfigIssue]) -> None:
        self.source = source
        self.issues = issues
        lines = "\n".join(f"  {issue}" for issue in issues)
        super().__init__(f"gateway config {source} has {len(issues)} problem(s):\n{lines}")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)


class TlsConfig(_Model):
    ca_file: str | None = Field(
        default=None, alias="caFile", description="CA bundle that signed the broker cert"
    )
    cert_file: str | None = Field(
        default=None, alias="certFile", description="this gateway's client certificate"
    )
    key_file: str | None = Field(default=None, alias="keyFile", description="private key of certFile")


class BrokerConfig(_Model):
    url: str = Field(description="mqtt://host:port (plain, loopback/site LAN only) or mqtts://host:port")
    client_id: str | None = Field(
        default=None, alias="clientId", description="default: villageami-{gatewayId}"
    )
    username: str | None = None
    password: str | None = None
    password_file: str | None = Field(
        default=None, alias="passwordFile", description="read the password from here"
    )
    tls: TlsConfig | None = None
    keepalive_s: int = Field(default=30, alias="keepaliveS", ge=5, le=3600)
    topic_root: str = Field(default="openami/v1", alias="topicRoot")
    inflight_window: int = Field(default=20, alias="inflightWindow", ge=1, le=1000)
    backoff_initial_s: float = Field(default=0.5, alias="backoffInitialS", gt=0)
    backoff_max_s: float = Field(default=60.0, alias="backoffMaxS", gt=0)

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ValueError(f"broker url {value!r} must look like mqtt://host:1883 or mqtts://host:8883")
        return value

    @property
    def host(self) -> str:
        return urlsplit(self.url).hostname or ""

    @property
    def port(self) -> int:
        parts = urlsplit(self.url)
        return parts.port or (8883 if parts.scheme == "mqtts" else 1883)

    @property
    def uses_tls(self) -> bool:
        return urlsplit(self.url).scheme == "mqtts" or self.tls is not None


class BusConfig(_Model):
    """A serial wire (RS-485 segment). Meters name it with ``bus``; their URLs carry device and baud rate."""

    name: str = Field(pattern=_ID)
    port: str = Field(description="serial device, e.g. /dev/ttyUSB0; meter URLs on this bus must use it")
    inter_frame_s: float = Field(
        default=0.005, alias="interFrameS", ge=0, description="quiet time on the wire after each exchange"
    )


class MeterConfig(_Model):
    serial: str = Field(pattern=_ID, description="meterSerial as published")
    url: str = Field(description="driver URL for villageami.meters.factory.open_driver")
    profile: str = Field(description="meter profile name (shipped) or path")
    role: MeterRole = MeterRole.CUSTOMER
    parent: str | None = Field(default=None, description="serial of the upstream feeder/branch meter")
    bus: str | None = Field(default=None, description="name of the serial bus; none for TCP meters")
    prepaid: bool = False
    enforces_credit: bool = Field(
        default=True,
        alias="enforcesCredit",
        description="false: the meter does not open its relay at zero credit",
    )


class ScheduleConfig(_Model):
    """Read intervals per VMRS interval class (G16 defaults)."""

    instantaneous_s: float = Field(
        default=900, alias="instantaneousS", gt=0, description="1.7.0/32.7.0/14.7.0+1.8.0"
    )
    status_s: float = Field(
        default=900, alias="statusS", gt=0, description="credit, tamper, disconnect state"
    )
    clock_s: float = Field(default=86400, alias="clockS", gt=0, description="meter clock check")
    billing_at: time = Field(
        default=time(0, 0), alias="billingAt", description="daily billing snapshot, local time in timezone"
    )
    timezone: str = Field(
        default="UTC", description="IANA time zone of billingAt, e.g. Africa/Nairobi (zoneinfo names)"
    )
    read_timeout_s: float = Field(
        default=20, alias="readTimeoutS", gt=0, description="bound on one meter read"
    )
    tcp_concurrency: int = Field(default=8, alias="tcpConcurrency", ge=1, le=256)

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        zone_of(value)
        return value

    @field_validator("billing_at")
    @classmethod
    def _naive(cls, value: time) -> time:
        if value.tzinfo is not None:
            message = f"billingAt {value.isoformat()} must be a wall time without offset (see timezone)"
            raise ValueError(message)
        return value

    @property
    def zone(self) -> ZoneInfo:
        return zone_of(self.timezone)


def zone_of(name: str) -> ZoneInfo:
    """The zoneinfo zone called ``name``; ValueError naming it when the tz database does not know it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:
        raise ValueError(
            f"unknown IANA time zone {name!r} (expected a tz database name such as Africa/Nairobi or UTC)"
        ) from exc


class OutboxConfig(_Model):
    path: str = "villageami-outbox.db"
    max_bytes: int = Field(default=256 * 1024 * 1024, alias="maxBytes", ge=4096)


class RulesConfig(_Model):
    auto_disconnect_on_credit_exhausted: bool = Field(
        default=False,
        alias="autoDisconnectOnCreditExhausted",
        description="open the relay locally at zero credit for meters with enforcesCredit: false",
    )
    credit_low_threshold: float = Field(default=5.0, alias="creditLowThreshold", ge=0)


class CommandsConfig(_Model):
    path: str = Field(default="villageami-commands.db", description="SQLite file of the command journal")
    ttl_s: dict[str, float] = Field(
        default_factory=lambda: {
            "disconnect": 900.0,
            "reconnect": 900.0,
            "read_now": 300.0,
            "sync_clock": 3600.0,
        },
        alias="ttlS",
        description="default TTL when a command has no expiresAt",
    )


class PlausibilityConfig(_Model):
    clock_drift_s: float = Field(default=120, alias="clockDriftS", gt=0)
    voltage_min_v: float = Field(default=180, alias="voltageMinV")
    voltage_max_v: float = Field(default=270, alias="voltageMaxV")

    @model_validator(mode="after")
    def _range(self) -> Self:
        if self.voltage_min_v >= self.voltage_max_v:
            raise ValueError(
                f"voltageMinV {self.voltage_min_v} must be below voltageMaxV {self.voltage_max_v}"
            )
        return self


class MetricsConfig(_Model):
    enabled: bool = True
    host: str = "127.0.0.1"
    port: int = Field(default=9108, ge=0, le=65535)


class LogConfig(_Model):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["json", "text"] = "json"


class GatewayConfig(_Model):
    feeder_id: str = Field(alias="feederId", pattern=_ID)
    gateway_id: str = Field(alias="gatewayId", pattern=_ID)
    broker: BrokerConfig
    buses: list[BusConfig] = Field(default_factory=list)
    meters: list[MeterConfig] = Field(default_factory=list)
    schedules: ScheduleConfig = ScheduleConfig()
    outbox: OutboxConfig = OutboxConfig()
    rules: RulesConfig = RulesConfig()
    commands: CommandsConfig = CommandsConfig()
    plausibility: PlausibilityConfig = PlausibilityConfig()
    metrics: MetricsConfig = MetricsConfig()
    log: LogConfig = LogConfig()

    @property
    def client_id(self) -> str:
        return self.broker.client_id or f"villageami-{self.gateway_id}"

    def meter(self, serial: str) -> MeterConfig | None:
        return next((m for m in self.meters if m.serial == serial), None)


class ReadClass(StrEnum):
    """The gateway's schedule groups; each maps to the VMRS interval classes it reads."""

    INSTANTANEOUS = "instantaneous"
    STATUS = "status"
    CLOCK = "clock"
    BILLING = "billing"
    STATIC = "static"


def keys_for(read_class: ReadClass) -> tuple[str, ...]:
    """VMRS keys read by one schedule group (instantaneous also carries 1.8.0, per G16)."""
    by_interval = {
        ReadClass.INSTANTANEOUS: (IntervalClass.INSTANTANEOUS,),
        ReadClass.STATUS: (IntervalClass.EVENT,),
        ReadClass.CLOCK: (IntervalClass.SYNC,),
        ReadClass.BILLING: (IntervalClass.BILLING,),
        ReadClass.STATIC: (IntervalClass.STATIC,),
    }[read_class]
    keys = [k for k, r in VMRS.items() if r.interval in by_interval]
    if read_class is ReadClass.INSTANTANEOUS:
        keys.append("1.8.0")
    if read_class is ReadClass.CLOCK and CLOCK_KEY not in keys:
        keys.append(CLOCK_KEY)
    return tuple(dict.fromkeys(keys))


# -- loading and checking ----------------------------------------------------------------------


def _loc(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True, slots=True)
class _Parts:
    """What cross-reference checks need, taken from a valid config or salvaged from an invalid one.

    ``buses``/``meters`` hold the entries that validate on their own (meters with their index in the file);
    ``bus_names``/``serials`` every name written in the file, so an entry that failed the schema does not
    also make its references look dangling. Broker fields are raw strings (None when absent or not text).
    """

    buses: list[BusConfig]
    bus_names: set[str]
    meters: list[tuple[int, MeterConfig]]
    serials: set[str]
    password: str | None
    password_file: str | None
    tls: dict[str, str | None] | None
    ttl_kinds: list[str]

    @classmethod
    def of(cls, config: GatewayConfig) -> _Parts:
        b, tls = config.broker, config.broker.tls
        return cls(
            buses=list(config.buses),
            bus_names={x.name for x in config.buses},
            meters=list(enumerate(config.meters)),
            serials={m.serial for m in config.meters},
            password=b.password,
            password_file=b.password_file,
            tls=None
            if tls is None
            else {"caFile": tls.ca_file, "certFile": tls.cert_file, "keyFile": tls.key_file},
            ttl_kinds=list(config.commands.ttl_s),
        )

    @classmethod
    def salvage(cls, data: dict[str, Any]) -> _Parts:
        def items(name: str) -> list[Any]:
            value = data.get(name)
            return value if isinstance(value, list) else []

        def text(mapping: Any, key: str) -> str | None:
            value = mapping.get(key) if isinstance(mapping, dict) else None
            return value if isinstance(value, str) else None

        buses = [bus for raw in items("buses") if (bus := _valid(BusConfig, raw)) is not None]
        meters = [
            (i, m) for i, raw in enumerate(items("meters")) if (m := _valid(MeterConfig, raw)) is not None
        ]
        broker, commands = data.get("broker"), data.get("commands")
        raw_tls = broker.get("tls") if isinstance(broker, dict) else None
        ttl = commands.get("ttlS") if isinstance(commands, dict) else None
        return cls(
            buses=buses,
            bus_names={n for raw in items("buses") if (n := text(raw, "name")) is not None},
            meters=meters,
            serials={n for raw in items("meters") if (n := text(raw, "serial")) is not None},
            password=text(broker, "password"),
            password_file=text(broker, "passwordFile"),
            tls=None if not isinstance(raw_tls, dict) else {k: text(raw_tls, k) for k in _TLS_FILES},
            ttl_kinds=[str(k) for k in ttl] if isinstance(ttl, dict) else [],
        )


_TLS_FILES = ("caFile", "certFile", "keyFile")
_M = TypeVar("_M", bound=BaseModel)


def _valid(model: type[_M], raw: Any) -> _M | None:
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None


def _semantic_issues(parts: _Parts, base_dir: Path, check_urls: bool) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    serials: dict[str, int] = {}
    by_serial: dict[str, MeterConfig] = {}
    bus_names = {b.name for b in parts.buses}
    if len(bus_names) != len(parts.buses):
        issues.append(ConfigIssue(path="buses", message="bus names must be unique"))
    for i, meter in parts.meters:
        if meter.serial in serials:
            issues.append(
                ConfigIssue(
                    path=f"meters[{i}].serial",
                    message=f"serial {meter.serial!r} already used by meters[{serials[meter.serial]}]",
                )
            )
        serials.setdefault(meter.serial, i)
        by_serial.setdefault(meter.serial, meter)
        if meter.bus is not None and meter.bus not in parts.bus_names:
            known = ", ".join(sorted(parts.bus_names)) or "none"
            issues.append(
                ConfigIssue(path=f"meters[{i}].bus", message=f"unknown bus {meter.bus!r} (buses: {known})")
            )
        if "://" not in meter.url:
            message = f"{meter.url!r} is not a driver URL (scheme://...)"
            issues.append(ConfigIssue(path=f"meters[{i}].url", message=message))
        elif check_urls:
            issues += _url_issues(i, meter, {b.name: b for b in parts.buses})
    for i, meter in parts.meters:
        if meter.parent is None:
            continue
        if meter.parent == meter.serial:
            issues.append(ConfigIssue(path=f"meters[{i}].parent", message="a meter cannot be its own parent"))
        elif meter.parent not in parts.serials:
            issues.append(
                ConfigIssue(
                    path=f"meters[{i}].parent", message=f"parent {meter.parent!r} is not a configured meter"
                )
            )
        elif (parent := by_serial.get(meter.parent)) is not None and parent.role is MeterRole.CUSTOMER:
            issues.append(
                ConfigIssue(
                    path=f"meters[{i}].parent",
                    message=f"parent {meter.parent!r} is a customer meter, not a feeder/branch",
                )
            )
    if parts.password is not None and parts.password_file is not None:
        issues.append(ConfigIssue(path="broker", message="give password or passwordFile, not both"))
    files: list[tuple[str, str | None]] = [("broker.passwordFile", parts.password_file)]
    if parts.tls is not None:
        files += [(f"broker.tls.{name}", parts.tls.get(name)) for name in _TLS_FILES]
        if (parts.tls.get("certFile") is None) != (parts.tls.get("keyFile") is None):
            issues.append(ConfigIssue(path="broker.tls", message="certFile and keyFile go together"))
    for path, name in files:
        if name is not None and not resolve(base_dir, name).is_file():
            issues.append(ConfigIssue(path=path, message=f"file {name!r} does not exist"))
    for kind in parts.ttl_kinds:
        if kind not in ("disconnect", "reconnect", "read_now", "sync_clock"):
            issues.append(ConfigIssue(path=f"commands.ttlS.{kind}", message=f"unknown command type {kind!r}"))
    return issues


def _url_issues(i: int, meter: MeterConfig, buses: dict[str, BusConfig]) -> list[ConfigIssue]:
    """The meter's URL parses, its profile loads, and a serial URL matches its bus's port."""
    try:
        load_profile(meter.profile)
    except ProfileError as exc:
        return [ConfigIssue(path=f"meters[{i}].profile", message=str(exc).replace("\n", " "))]
    try:
        url = parse_meter_url(meter.url)
    except UrlError as exc:
        return [ConfigIssue(path=f"meters[{i}].url", message=str(exc))]
    bus = buses.get(meter.bus) if meter.bus is not None else None
    if bus is not None and url.serial_port is not None and url.serial_port != bus.port:
        message = f"URL uses {url.serial_port} but bus {bus.name!r} is on {bus.port}"
        return [ConfigIssue(path=f"meters[{i}].url", message=message)]
    return []


def resolve(base_dir: Path, name: str) -> Path:
    """Relative file names in the config are relative to the config file's folder."""
    path = Path(name)
    return path if path.is_absolute() else base_dir / path


def parse_config(
    data: Any, source: str = "<config>", base_dir: Path | None = None, *, check_urls: bool = True
) -> GatewayConfig:
    """Validate already-parsed data; raises :class:`ConfigError` listing every issue with its path.

    ``check_urls`` False skips meter URLs and profiles (tests with in-memory drivers make them up).
    """
    if not isinstance(data, dict):
        raise ConfigError(
            source, [ConfigIssue(path="", message="the config must be a mapping (YAML/JSON object)")]
        )
    base_dir = base_dir or Path.cwd()
    try:
        config = GatewayConfig.model_validate(data)
    except ValidationError as exc:
        issues = [ConfigIssue(path=_loc(tuple(e["loc"])), message=e["msg"]) for e in exc.errors()]
        # Cross-references of the entries that did validate are checked too: one run shows every problem.
        issues += _semantic_issues(_Parts.salvage(data), base_dir, check_urls)
        raise ConfigError(source, issues) from None
    issues = _semantic_issues(_Parts.of(config), base_dir, check_urls)
    if issues:
        raise ConfigError(source, issues)
    return config


def load_config(path: str | Path, *, check_urls: bool = True) -> GatewayConfig:
    """Read and check a gateway config file (YAML or JSON)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            str(path), [ConfigIssue(path="", message=f"cannot read the file: {exc.strerror}")]
        ) from exc
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark is not None else "unknown place"
        raise ConfigError(
            str(path), [ConfigIssue(path="", message=f"not valid YAML/JSON at {where}")]
        ) from exc
    return parse_config(data, str(path), path.parent, check_urls=check_urls)


def password_of(config: GatewayConfig, base_dir: Path) -> str | None:
    broker = config.broker
    if broker.password_file is not None:
        return resolve(base_dir, broker.password_file).read_text(encoding="utf-8").strip()
    return broker.password


def json_schema() -> dict[str, Any]:
    schema = GatewayConfig.model_json_schema(by_alias=True)
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = "https://villageami.org/schemas/gateway-config.schema.json"
    schema["title"] = "villageami gateway configuration"
    return schema


def _main() -> None:  # pragma: no cover - regenerates the checked-in schema
    SCHEMA_PATH.write_text(json.dumps(json_schema(), indent=2, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":  # pragma: no cover
    _main()
