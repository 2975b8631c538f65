"""Notify honours the SMTP settings: STARTTLS when asked (and never otherwise), authentication,
and a private CA. The server is a real aiosmtpd on 127.0.0.1 that insists on STARTTLS and AUTH."""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, AuthResult, LoginPassword, Session
from aiosmtpd.smtp import Envelope as SmtpEnvelope
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr

from runtime.kafka import KafkaAccess
from services.notify.domain import notice_id
from tests.integration.test_notify_delivery import new_application_id, received, running_notify

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def kafka(scratch_kafka: KafkaAccess) -> KafkaAccess:
    """In-process notify handles hand-made events here: on the session's scratch broker, not the shared log."""
    return scratch_kafka


USER, PASSWORD = "notify", "relay-password-for-tests"


def self_signed(folder: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "relay.pem", folder / "relay.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return cert_path, key_path


@dataclass
class GuardedRelay:
    """A mail relay that refuses mail before STARTTLS and AUTH, and records who sent what how."""

    cert: Path
    key: Path
    port: int = 0
    received: list[tuple[str, bool, bytes]] = field(default_factory=list)  # (login, tls, content)
    _server: asyncio.AbstractServer | None = None

    def authenticate(self, server: SMTP, session: Session, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (USER.encode(), PASSWORD.encode())
        return AuthResult(success=ok, handled=False, auth_data=data if ok else None)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: SmtpEnvelope) -> str:
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else ""
        self.received.append((login, session.ssl is not None, bytes(envelope.original_content or b"")))
        return "250 OK"

    async def start(self) -> None:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)

        def protocol() -> SMTP:
            return SMTP(
                self,
                hostname="relay.test",
                tls_context=context,
                require_starttls=True,
                auth_required=True,
                auth_require_tls=True,
                authenticator=self.authenticate,
            )

        self._server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server:
            self._server.close()
            await self._server.wait_closed()


@pytest.fixture
async def relay(tmp_path: Path) -> AsyncIterator[GuardedRelay]:
    server = GuardedRelay(*self_signed(tmp_path))
    await server.start()
    yield server
    await server.stop()


async def deliver_one(pg_admin_dsn: str, kafka: KafkaAccess, relay: GuardedRelay, **smtp: Any) -> Any:
    """One receipt e-mail through the relay with these settings: the notice row when it settled."""
    async with running_notify(pg_admin_dsn, kafka, relay.port, max_attempts=1, **smtp) as notify:
        receipt = received(new_application_id(), "portal-mail-only")
        await notify.feed(receipt)
        email = notice_id(receipt.id, "email")
        await notify.wait_for("SELECT status <> 'pending' FROM notices WHERE notice_id = $1", email)
        return await notify.notice(email)


async def test_starttls_and_authentication_are_used_when_configured(
    pg_admin_dsn: str, kafka: KafkaAccess, relay: GuardedRelay
) -> None:
    notice = await deliver_one(
        pg_admin_dsn,
        kafka,
        relay,
        smtp_starttls=True,
        smtp_ca_file=relay.cert,
        smtp_username=USER,
        smtp_password=SecretStr(PASSWORD),
    )
    assert notice["status"] == "delivered", notice["last_error"]
    assert len(relay.received) == 1
    login, tls, content = relay.received[0]
    assert (login, tls) == (USER, True)
    assert f"Message-ID: <{notice['notice_id']}@".encode() in content


async def test_without_starttls_the_guarded_relay_refuses_and_nothing_is_sent_in_clear(
    pg_admin_dsn: str, kafka: KafkaAccess, relay: GuardedRelay
) -> None:
    notice = await deliver_one(pg_admin_dsn, kafka, relay, smtp_username=USER, smtp_password=SecretStr(PASSWORD))
    assert notice["status"] == "failed"
    assert notice["last_error"].startswith("SMTP ")
    assert relay.received == []


async def test_a_wrong_password_fails_the_attempt_without_leaking_it(
    pg_admin_dsn: str, kafka: KafkaAccess, relay: GuardedRelay
) -> None:
    notice = await deliver_one(
        pg_admin_dsn,
        kafka,
        relay,
        smtp_starttls=True,
        smtp_ca_file=relay.cert,
        smtp_username=USER,
        smtp_password=SecretStr("wrong"),
    )
    assert notice["status"] == "failed"
    assert notice["last_error"] == "SMTP 535 (SMTPAuthenticationError)"
    assert relay.received == []


async def test_an_untrusted_certificate_is_refused(pg_admin_dsn: str, kafka: KafkaAccess, relay: GuardedRelay) -> None:
    notice = await deliver_one(
        pg_admin_dsn, kafka, relay, smtp_starttls=True, smtp_username=USER, smtp_password=SecretStr(PASSWORD)
    )
    assert notice["status"] == "failed"
    assert relay.received == []
