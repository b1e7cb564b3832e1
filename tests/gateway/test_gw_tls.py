"""The uplink against a real TLS broker with per-gateway credentials and an ACL (G18).

A private Mosquitto on an ephemeral port gets a throwaway CA, a server certificate for 127.0.0.1/localhost,
a password file and an ACL that confines the gateway's user to ``openami/v1/{feederId}/{gatewayId}/#``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import hashlib
import ipaddress
import logging
import os
import secrets
import shutil
import socket
import ssl
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import paho.mqtt.client as mqtt
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from gw_fakes import FakeFleet, config_data, meter_entry, no_profile
from gw_mqtt import MOSQUITTO, Collector, free_port, wait_until
from paho.mqtt.enums import CallbackAPIVersion

from villageami.gateway.app import Gateway
from villageami.gateway.config import parse_config
from villageami.gateway.outbox import EnvelopeBuilder, Outbox
from villageami.gateway.uplink import BrokerSettings, RetainedMessage, TlsFiles, Uplink

pytestmark = pytest.mark.integration

MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
UPLINK_LOG = "villageami.gateway.uplink"

# -- throwaway PKI -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    def write(self, folder: Path, name: str) -> tuple[Path, Path]:
        cert_path, key_path = folder / f"{name}.pem", folder / f"{name}.key"
        cert_path.write_bytes(self.cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            self.key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return cert_path, key_path


def _certificate(
    subject: str, key: ec.EllipticCurvePrivateKey, issuer: Issued | None, *, ca: bool
) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    issuer_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]) if issuer is None else None
    issuer_key = key if issuer is None else issuer.key
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
        .issuer_name(issuer_name or issuer.cert.subject)  # type: ignore[union-attr]
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False
        )
    )


def make_ca(name: str) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    usage = x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=False, data_encipherment=False,
        key_agreement=False, key_cert_sign=True, crl_sign=True, encipher_only=False, decipher_only=False,
    )  # fmt: skip
    builder = _certificate(name, key, None, ca=True).add_extension(usage, critical=True)
    return Issued(key, builder.sign(key, hashes.SHA256()))


def issue_server_cert(ca: Issued) -> Issued:
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    builder = (
        _certificate("localhost", key, ca, ca=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
    )
    return Issued(key, builder.sign(ca.key, hashes.SHA256()))


# -- mosquitto password file ---------------------------------------------------------------------------------


def mosquitto_password_line(user: str, password: str) -> str:
    """mosquitto 2.0's own format: ``user:$7$iterations$base64(salt)$base64(PBKDF2-SHA512)``."""
    salt, iterations = secrets.token_bytes(12), 101
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"{user}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}\n"


def write_password_file(path: Path, users: dict[str, str]) -> None:
    if Path(MOSQUITTO_PASSWD).exists():
        for i, (user, password) in enumerate(users.items()):
            create = ["-c"] if i == 0 else []
            subprocess.run(
                [MOSQUITTO_PASSWD, "-b", *create, str(path), user, password],
                check=True,
                capture_output=True,
                timeout=10,
            )
    else:
        path.write_text("".join(mosquitto_password_line(u, p) for u, p in users.items()))
    path.chmod(0o644)  # mosquitto started as root reads it after dropping to its own user


# -- the broker ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TlsSite:
    port: int
    folder: Path
    ca_file: Path
    feeder_id: str
    gateway_id: str
    gateway_user: str
    gateway_password: str
    hes_user: str
    hes_password: str

    @property
    def prefix(self) -> str:
        return f"openami/v1/{self.feeder_id}/{self.gateway_id}"

    def client_setup(
        self, user: str, password: str, ca_file: Path | None = None
    ) -> Callable[[mqtt.Client], None]:
        def setup(client: mqtt.Client) -> None:
            client.tls_set(ca_certs=str(ca_file or self.ca_file), tls_version=ssl.PROTOCOL_TLS_CLIENT)
            client.username_pw_set(user, password)

        return setup


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False


@pytest.fixture(scope="module")
def tls_site() -> Iterator[TlsSite]:
    if not Path(MOSQUITTO).exists():
        message = f"{MOSQUITTO} is not installed (Debian/Ubuntu package mosquitto)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    folder = Path(tempfile.mkdtemp(prefix="villageami-mosquitto-tls-"))
    folder.chmod(0o755)
    ca = make_ca("villageami test CA")
    ca_file, _ = ca.write(folder, "ca")
    server_cert, server_key = issue_server_cert(ca).write(folder, "server")
    server_key.chmod(0o644)  # throwaway key; mosquitto may read it after dropping privileges
    site = TlsSite(
        port=free_port(),
        folder=folder,
        ca_file=ca_file,
        feeder_id=f"f-{uuid.uuid4().hex[:8]}",
        gateway_id=f"gw-{uuid.uuid4().hex[:8]}",
        gateway_user="gw-user",
        gateway_password=secrets.token_urlsafe(12),
        hes_user="hes",
        hes_password=secrets.token_urlsafe(12),
    )
    passwords = folder / "passwd"
    write_password_file(
        passwords, {site.gateway_user: site.gateway_password, site.hes_user: site.hes_password}
    )
    acl = folder / "acl"
    acl.write_text(
        f"user {site.gateway_user}\ntopic readwrite {site.prefix}/#\n\n"
        f"user {site.hes_user}\ntopic readwrite #\n"
    )
    acl.chmod(0o644)
    conf = folder / "mosquitto.conf"
    conf.write_text(
        f"listener {site.port} 127.0.0.1\n"
        f"cafile {ca_file}\ncertfile {server_cert}\nkeyfile {server_key}\n"
        f"allow_anonymous false\npassword_file {passwords}\nacl_file {acl}\n"
        "persistence false\nlog_dest stderr\n"
    )
    log_file = (folder / "mosquitto.log").open("wb")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=log_file, stderr=subprocess.STDOUT)
    try:
        if not wait_until(lambda: _listening(site.port) or proc.poll() is not None, 5.0) or proc.poll():
            pytest.fail(f"TLS mosquitto did not start:\n{(folder / 'mosquitto.log').read_text()}")
        yield site
    finally:
        proc.terminate()
        proc.wait(5)
        log_file.close()
        shutil.rmtree(folder, ignore_errors=True)


# -- helpers -------------------------------------------------------------------------------------------------


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    return await asyncio.to_thread(wait_until, predicate, timeout)


def hes_collector(site: TlsSite, topic: str) -> Collector:
    return Collector("127.0.0.1", site.port, topic, setup=site.client_setup(site.hes_user, site.hes_password))


def reading(prefix: str, n: int) -> tuple[str, str, EnvelopeBuilder]:
    def build(msg_id: str, seq: int) -> dict[str, Any]:
        return {"msgId": msg_id, "seq": seq, "n": n, "meterSerial": "M1"}

    return f"{prefix}/meter/M1/telemetry", "telemetry", build


def tls_uplink(site: TlsSite, box: Outbox, *, password: str, ca_file: Path | None = None) -> Uplink:
    settings = BrokerSettings(
        host="127.0.0.1",
        port=site.port,
        client_id=f"gw-{uuid.uuid4().hex[:12]}",
        username=site.gateway_user,
        password=password,
        tls=TlsFiles(ca_file=str(ca_file or site.ca_file)),
        keepalive=5,
        connect_timeout=3.0,
    )
    status = RetainedMessage(f"{site.prefix}/gateway/status", orjson.dumps({"state": "offline"}))
    return Uplink(settings, box, last_will=status, backoff_initial=0.05, backoff_max=0.2)


@contextlib.asynccontextmanager
async def running(uplink: Uplink) -> AsyncIterator[asyncio.Task[None]]:
    task = asyncio.create_task(uplink.run())
    try:
        yield task
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def uplink_errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == UPLINK_LOG and r.levelno >= logging.ERROR]


# -- tests ---------------------------------------------------------------------------------------------------


def test_gateway_publishes_over_tls_with_its_credentials_within_its_acl(
    tls_site: TlsSite, tmp_path: Path
) -> None:
    site = tls_site
    (tmp_path / "secrets").mkdir()
    (tmp_path / "secrets" / "mqtt-password").write_text(site.gateway_password + "\n")
    shutil.copy(site.ca_file, tmp_path / "ca.pem")
    data = config_data(
        tmp_path,
        [meter_entry("M1")],
        broker={
            "url": f"mqtts://127.0.0.1:{site.port}",
            "username": site.gateway_user,
            "passwordFile": "secrets/mqtt-password",
            "tls": {"caFile": "ca.pem"},
        },
    )
    data |= {"feederId": site.feeder_id, "gatewayId": site.gateway_id}
    config = parse_config(data, "tls-site.yaml", tmp_path, check_urls=False)
    gateway = Gateway(config, base_dir=tmp_path, driver_factory=FakeFleet(), profile_loader=no_profile)
    collector = hes_collector(site, f"openami/v1/{site.feeder_id}/#")

    async def scenario() -> None:
        task = asyncio.create_task(gateway.run())
        try:
            assert await eventually(lambda: bool(collector.payloads(f"{site.prefix}/meter/M1/telemetry")))
            statuses = collector.payloads(f"{site.prefix}/gateway/status")
            assert statuses and statuses[0]["state"] == "online"
            assert collector.payloads(f"{site.prefix}/gateway/inventory")
            assert gateway.uplink.stats.connects == 1 and gateway.uplink.stats.failed_connects == 0
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    try:
        asyncio.run(scenario())
        telemetry = collector.payloads(f"{site.prefix}/meter/M1/telemetry")
        assert telemetry[0]["meterSerial"] == "M1"
        assert await_offline(collector, site)
    finally:
        collector.close()

    # The ACL confines the gateway's user to its own subtree: a publish elsewhere is dropped by the broker
    # (MQTT 3.1.1 has no negative PUBACK), one inside arrives. Mosquitto handles one connection's publishes
    # in order, so once the second one arrived the first would have too.
    collector = hes_collector(site, f"openami/v1/{site.feeder_id}/#")
    intruder = mqtt.Client(callback_api_version=CallbackAPIVersion.VERSION2)
    site.client_setup(site.gateway_user, site.gateway_password)(intruder)
    try:
        intruder.connect("127.0.0.1", site.port)
        intruder.loop_start()
        other = f"openami/v1/{site.feeder_id}/gw-other/meter/X/telemetry"
        intruder.publish(other, b'{"denied": true}', qos=1).wait_for_publish(5)
        intruder.publish(f"{site.prefix}/meter/X/probe", b'{"allowed": true}', qos=1).wait_for_publish(5)
        assert wait_until(lambda: bool(collector.payloads("/meter/X/probe")))
        assert not collector.payloads(other)
    finally:
        intruder.disconnect()
        intruder.loop_stop()
        collector.close()


def await_offline(collector: Collector, site: TlsSite) -> bool:
    """A clean stop leaves a retained offline status (the gateway's goodbye went through its ACL)."""
    return wait_until(
        lambda: collector.payloads(f"{site.prefix}/gateway/status")[-1]["state"] == "offline", 5.0
    )


def test_wrong_password_is_refused_logged_retried_and_loses_nothing(
    tls_site: TlsSite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site = tls_site
    collector = hes_collector(site, f"{site.prefix}/meter/#")
    box = Outbox(tmp_path / "o.db")
    for n in range(5):
        box.enqueue(*reading(site.prefix, n))

    async def scenario() -> None:
        refused = tls_uplink(site, box, password="not-" + site.gateway_password)
        with caplog.at_level(logging.WARNING, logger=UPLINK_LOG):
            async with running(refused) as task:
                assert await eventually(lambda: refused.stats.failed_connects >= 4)
                assert not task.done(), "a refusal must not end the uplink"
        assert refused.stats.connects == 0
        assert box.depth() == 5, "nothing leaves the outbox without a PUBACK"
        errors = uplink_errors(caplog)
        assert len(errors) >= 4
        text = errors[0].getMessage()
        assert f"broker 127.0.0.1:{site.port} refused the connection" in text
        assert "Not authorized" in text or "Bad user name or password" in text
        assert repr(site.gateway_user) in text
        # Exponential backoff: 0.05, 0.1, 0.2 (backoff_max), 0.2 ...
        assert [r.__dict__["retryInS"] for r in errors[:4]] == [0.05, 0.1, 0.2, 0.2]
        # The right password (e.g. after the site fixed the file) delivers everything that waited.
        fixed = tls_uplink(site, box, password=site.gateway_password)
        async with running(fixed):
            assert await eventually(lambda: box.depth() == 0)
        assert await eventually(lambda: len(collector.payloads("/telemetry")) >= 5)

    try:
        asyncio.run(scenario())
        got = collector.payloads("/telemetry")
        assert [p["n"] for p in got][:5] == [0, 1, 2, 3, 4]
        assert all(p["replayed"] is True for p in got)
    finally:
        collector.close()


def test_a_broker_certificate_from_another_ca_fails_the_tls_handshake_clearly(
    tls_site: TlsSite, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site = tls_site
    wrong_ca, _ = make_ca("some other CA").write(tmp_path, "other-ca")
    box = Outbox(tmp_path / "o.db")
    box.enqueue(*reading(site.prefix, 0))

    async def scenario() -> None:
        uplink = tls_uplink(site, box, password=site.gateway_password, ca_file=wrong_ca)
        with caplog.at_level(logging.WARNING, logger=UPLINK_LOG):
            async with running(uplink) as task:
                assert await eventually(lambda: uplink.stats.failed_connects >= 2)
                assert not task.done()
        assert uplink.stats.connects == 0
        assert box.depth() == 1

    asyncio.run(scenario())
    errors = uplink_errors(caplog)
    assert errors, "a failed handshake is an error, not a routine reconnect"
    text = errors[0].getMessage()
    assert f"TLS handshake with broker 127.0.0.1:{site.port} failed" in text
    assert "certificate verify failed: " in text
    assert "broker.tls.caFile" in text
